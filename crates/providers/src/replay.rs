//! The replay provider: answers from a folder of recorded Chat Completions
//! response bodies, in file-name order, with no network.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use corpusgen_core::{ChatProvider, ChatRequest, ChatResponse, ProviderError, ProviderErrorKind};

use crate::wire::parse_response;

/// Recorded responses, served one per request in the order of their file names.
#[derive(Debug)]
pub struct ReplayProvider {
    name: String,
    folder: PathBuf,
    responses: Vec<ChatResponse>,
    next: AtomicUsize,
}

/// A fixtures folder that cannot be replayed, with what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(
        "cannot read the fixtures folder {folder}: {source}; pass --fixtures DIR with recorded responses"
    )]
    Folder {
        folder: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the fixtures folder {0} holds no .json responses; pass --fixtures DIR with recorded responses"
    )]
    Empty(PathBuf),
    #[error("the fixture {path} is not a chat completion response: {message}")]
    Fixture { path: PathBuf, message: String },
}

impl ReplayProvider {
    /// Loads every `*.json` file of `folder`, sorted by file name.
    pub fn from_folder(name: &str, folder: &Path) -> Result<ReplayProvider, ReplayError> {
        let folder_error = |source| ReplayError::Folder {
            folder: folder.to_path_buf(),
            source,
        };
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(folder).map_err(folder_error)? {
            let path = entry.map_err(folder_error)?.path();
            if path.extension().is_some_and(|ext| ext == "json") && path.is_file() {
                paths.push(path);
            }
        }
        paths.sort();
        if paths.is_empty() {
            return Err(ReplayError::Empty(folder.to_path_buf()));
        }
        let responses = paths
            .iter()
            .map(|path| {
                let body = std::fs::read(path).map_err(|err| ReplayError::Fixture {
                    path: path.clone(),
                    message: err.to_string(),
                })?;
                parse_response(name, &body).map_err(|err| ReplayError::Fixture {
                    path: path.clone(),
                    message: err.message,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ReplayProvider {
            name: name.to_string(),
            folder: folder.to_path_buf(),
            responses,
            next: AtomicUsize::new(0),
        })
    }

    /// How many recorded responses the folder holds.
    pub fn len(&self) -> usize {
        self.responses.len()
    }

    pub fn is_empty(&self) -> bool {
        self.responses.is_empty()
    }
}

impl ChatProvider for ReplayProvider {
    fn name(&self) -> &str {
        &self.name
    }

    async fn complete(&self, _request: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        let position = self.next.fetch_add(1, Ordering::Relaxed);
        self.responses.get(position).cloned().ok_or_else(|| {
            ProviderError::new(
                ProviderErrorKind::FixturesExhausted,
                format!(
                    "the {} recorded responses in {} ran out before the target was met; record more or lower the target",
                    self.responses.len(),
                    self.folder.display()
                ),
            )
        })
    }
}
