//! Durable file operations: the write-temp, fsync, rename, fsync-directory dance in one place,
//! so that a crash or power cut leaves either the old file or the new one, never half of one.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// `<pid>-<n>`: unique among the temporary names of every live process.
pub(crate) fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{}-{n}", std::process::id())
}

/// A name for a temporary sibling that no other writer in this or another process picks.
pub(crate) fn temp_sibling(path: &Path, tag: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{tag}-{}", unique_suffix()))
}

/// Writes `bytes` to a new file at `path` (which must not exist) and fsyncs it.
pub(crate) fn write_new_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Fsyncs a directory, making renames and creations inside it durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replaces `path` with `bytes` atomically and durably.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temp = temp_sibling(path, "tmp");
    let result = write_new_synced(&temp, bytes).and_then(|()| std::fs::rename(&temp, path));
    if result.is_err() {
        // Best effort: a leftover temp file is harmless but untidy.
        let _ = std::fs::remove_file(&temp);
    }
    result?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// What went wrong reading a file with a size limit.
#[derive(Debug)]
pub(crate) enum ReadLimited {
    Io(std::io::Error),
    TooLarge(u64),
}

/// Reads a whole file, refusing one larger than `limit` without reading it all.
pub(crate) fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, ReadLimited> {
    let file = File::open(path).map_err(ReadLimited::Io)?;
    let len = file.metadata().map_err(ReadLimited::Io)?.len();
    if len > limit {
        return Err(ReadLimited::TooLarge(len));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    // The file may grow between metadata and read; `take` keeps the limit honest.
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadLimited::Io)?;
    if bytes.len() as u64 > limit {
        return Err(ReadLimited::TooLarge(bytes.len() as u64));
    }
    Ok(bytes)
}
