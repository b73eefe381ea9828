//! Where a job's files go, and how they are written so that a reader never
//! sees half a file.

use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// The three files of a job, all beside the corpus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputPaths {
    pub corpus: PathBuf,
    /// `FILE.jsonl`: the corpus path with its extension replaced.
    pub journal: PathBuf,
    /// `FILE.manifest.json`, likewise.
    pub manifest: PathBuf,
}

impl OutputPaths {
    pub fn for_corpus(corpus: &Path) -> OutputPaths {
        OutputPaths {
            corpus: corpus.to_path_buf(),
            journal: corpus.with_extension("jsonl"),
            manifest: corpus.with_extension("manifest.json"),
        }
    }

    /// A corpus named `x.jsonl` or `x.manifest.json` would be overwritten by its
    /// own journal or manifest.
    pub fn collides(&self) -> bool {
        self.corpus == self.journal || self.corpus == self.manifest
    }
}

/// Creates the folder of `path` when it does not exist yet.
pub fn create_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => fs::create_dir_all(parent),
        _ => Ok(()),
    }
}

/// Writes a file atomically: into a temporary file in the same folder, synced,
/// then renamed over `path`. A crash leaves either the old file or the new one.
/// `private` creates it readable by its owner only (mode 0600).
pub fn write_atomic(
    path: &Path,
    private: bool,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<()> {
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".corpusgen-").suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = if private { 0o600 } else { 0o644 };
        builder.permissions(fs::Permissions::from_mode(mode));
    }
    let temporary = builder.tempfile_in(folder)?;
    {
        let mut writer = BufWriter::new(temporary.as_file());
        write(&mut writer)?;
        writer.flush()?;
    }
    temporary.as_file().sync_all()?;
    temporary.persist(path).map_err(|err| err.error)?;
    sync_folder(folder);
    Ok(())
}

/// Makes the rename itself durable. Best effort: not every platform or file
/// system lets a folder be opened and synced.
fn sync_folder(folder: &Path) {
    #[cfg(unix)]
    if let Ok(handle) = fs::File::open(folder) {
        let _ = handle.sync_all();
    }
    #[cfg(not(unix))]
    let _ = folder;
}
