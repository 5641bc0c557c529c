//! Atomic file replacement, written once: the state and status files must never be seen half
//! written, and the state must survive a power cut.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A file operation that failed, with the path it failed on.
#[derive(Debug, thiserror::Error)]
#[error("{op} {path}: {source}")]
pub struct FsError {
    op: &'static str,
    path: PathBuf,
    source: io::Error,
}

fn err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> FsError {
    let path = path.to_path_buf();
    move |source| FsError { op, path, source }
}

/// Reads a whole (small) file, `None` when it does not exist.
pub fn read_if_exists(path: &Path) -> Result<Option<Vec<u8>>, FsError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(err("read", path)(e)),
    }
}

/// Replaces `path` with `bytes` so that readers see the old or the new content, never a mix.
/// With `durable`, the data and the rename are fsynced (temp file, fsync, rename, fsync dir).
pub fn write_atomic(path: &Path, bytes: &[u8], durable: bool) -> Result<(), FsError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(err("create directory", dir))?;
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(err("create", &tmp))?;
    file.write_all(bytes).map_err(err("write", &tmp))?;
    if durable {
        file.sync_all().map_err(err("fsync", &tmp))?;
    }
    drop(file);
    fs::rename(&tmp, path).map_err(err("rename into", path))?;
    if durable {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(err("fsync directory", dir))?;
    }
    Ok(())
}
