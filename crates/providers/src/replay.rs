//! The replay provider: answers from a folder of fixtures with no network.
//! A fixture is either a bare Chat Completions response body (hand-made ones,
//! such as the seed's), served in file-name order whatever is asked, or an
//! exchange that `--record` saved (`record.rs`), which replays as the HTTP
//! provider would have read it: a recorded error status as the same
//! classified error, so a recorded 429 is retried, and a recorded stream
//! through the same parser.
//!
//! A folder of recorded exchanges is served by request: request slot i,
//! resample r, gets the exchanges recorded for slot i, resample r, in file
//! order. The job loop's issue order varies with concurrency and timing; the
//! slots do not, so a recording replays byte for byte at any `--concurrency`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use corpusgen_core::{ChatProvider, ChatRequest, ChatResponse, ProviderError, ProviderErrorKind};

use crate::http::{rate_limit_hint, reads_as_event_stream};
use crate::record::{Exchange, as_exchange};
use crate::stream::read_event_stream;
use crate::wire::{HttpFailure, parse_response};

/// Recorded answers: bare bodies served one per request in file-name order,
/// recorded exchanges by the request's slot and resample.
#[derive(Debug)]
pub struct ReplayProvider {
    name: String,
    folder: PathBuf,
    fixtures: Vec<Fixture>,
    /// The next fixture in file order, for a folder of bare bodies.
    next: AtomicUsize,
    /// For a folder of recorded exchanges only: the exchanges of each
    /// (slot, resample).
    by_request: Option<HashMap<(u64, u32), RecordedRequest>>,
}

/// The exchanges recorded for one (slot, resample): their positions in file
/// order, and how many of them were served.
#[derive(Debug, Default)]
struct RecordedRequest {
    positions: Vec<usize>,
    served: AtomicUsize,
}

/// One fixture file, read.
#[derive(Debug)]
enum Fixture {
    /// A bare response body, parsed when the folder is loaded.
    Body(ChatResponse),
    /// A recorded exchange, read like an HTTP response when it is served
    /// (a `Retry-After` date counts from then).
    Exchange(Box<Exchange>),
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
    /// Loads every `*.json` file of `folder`, in the order of the number its
    /// name starts with (`0009-` before `0010-`, and `10000-` after `9999-`),
    /// then of the name.
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
        paths.sort_by_cached_key(|path| {
            let file_name = path
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default();
            let digits: String = file_name.chars().take_while(char::is_ascii_digit).collect();
            (digits.parse::<u64>().unwrap_or(u64::MAX), file_name)
        });
        if paths.is_empty() {
            return Err(ReplayError::Empty(folder.to_path_buf()));
        }
        let fixtures = paths
            .iter()
            .map(|path| {
                read_fixture(name, path).map_err(|message| ReplayError::Fixture {
                    path: path.clone(),
                    message,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut by_request = Some(HashMap::<(u64, u32), RecordedRequest>::new());
        for (position, fixture) in fixtures.iter().enumerate() {
            match (fixture, by_request.as_mut()) {
                (Fixture::Exchange(exchange), Some(map)) => map
                    .entry((exchange.request.index, exchange.request.resample))
                    .or_default()
                    .positions
                    .push(position),
                _ => by_request = None,
            }
        }
        Ok(ReplayProvider {
            name: name.to_string(),
            folder: folder.to_path_buf(),
            fixtures,
            next: AtomicUsize::new(0),
            by_request,
        })
    }

    /// How many fixtures the folder holds (recorded failures included).
    pub fn len(&self) -> usize {
        self.fixtures.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fixtures.is_empty()
    }
}

impl ChatProvider for ReplayProvider {
    fn name(&self) -> &str {
        &self.name
    }

    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        let Some(by_request) = &self.by_request else {
            let position = self.next.fetch_add(1, Ordering::Relaxed);
            return self.serve(position).await;
        };
        let position = by_request
            .get(&(request.index, request.resample))
            .and_then(|recorded| {
                let served = recorded.served.fetch_add(1, Ordering::Relaxed);
                recorded.positions.get(served).copied()
            });
        match position {
            Some(position) => self.serve(position).await,
            None => Err(ProviderError::new(
                ProviderErrorKind::FixturesExhausted,
                format!(
                    "the recording in {} has no exchange left for request {} (resample {}); record the job again, or lower the target",
                    self.folder.display(),
                    request.index,
                    request.resample
                ),
            )),
        }
    }
}

impl ReplayProvider {
    async fn serve(&self, position: usize) -> Result<ChatResponse, ProviderError> {
        match self.fixtures.get(position) {
            Some(Fixture::Body(response)) => Ok(response.clone()),
            Some(Fixture::Exchange(exchange)) => replay_exchange(&self.name, exchange).await,
            None => Err(ProviderError::new(
                ProviderErrorKind::FixturesExhausted,
                format!(
                    "the {} recorded responses in {} ran out before the target was met; record more or lower the target",
                    self.fixtures.len(),
                    self.folder.display()
                ),
            )),
        }
    }
}

/// Reads one fixture file: an exchange if it says so, else a response body.
fn read_fixture(provider: &str, path: &Path) -> Result<Fixture, String> {
    let bytes = std::fs::read(path).map_err(|err| err.to_string())?;
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes)
        && let Some(exchange) = as_exchange(&value)
    {
        return exchange.map(|exchange| Fixture::Exchange(Box::new(exchange)));
    }
    parse_response(provider, &bytes)
        .map(Fixture::Body)
        .map_err(|err| err.message)
}

/// What the HTTP provider would have made of a recorded response.
async fn replay_exchange(
    provider: &str,
    exchange: &Exchange,
) -> Result<ChatResponse, ProviderError> {
    let response = &exchange.response;
    let header = |name: &str| response.headers.get(name).cloned();
    let body = match &response.body {
        serde_json::Value::String(text) => text.clone().into_bytes(),
        json => serde_json::to_vec(json).expect("JSON values always serialize"),
    };
    let asked_for_stream =
        exchange.request.body.get("stream") == Some(&serde_json::Value::Bool(true));
    let content_type = header("content-type").unwrap_or_default();
    let rate_limit = rate_limit_hint(&header);
    let with_rate_limit = |response: ChatResponse| ChatResponse {
        rate_limit,
        ..response
    };
    if reads_as_event_stream(response.status, asked_for_stream, &content_type) {
        let pieces = futures::stream::iter([Ok::<_, Infallible>(body)]);
        return read_event_stream(provider, pieces, |never| match never {})
            .await
            .map(with_rate_limit);
    }
    if (200..300).contains(&response.status) {
        return parse_response(provider, &body).map(with_rate_limit);
    }
    Err(HttpFailure {
        provider,
        key_env: None,
        status: response.status,
        retry_after_ms: header("retry-after-ms").as_deref(),
        retry_after: header("retry-after").as_deref(),
        body: &body,
    }
    .classify())
}
