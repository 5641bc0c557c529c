//! The server's content-addressed blob store: bundles and their members stored under their
//! SHA-256, written atomically, and checked against their name every time they are read, so a
//! corrupted disk never serves wrong bytes to a fleet.
//!
//! Layout: `<dir>/sha256/<first two hex digits>/<64 hex digits>`, temporary files in `<dir>/tmp`.

use crate::MAX_BUNDLE_BYTES;
use crate::digest::Sha256Digest;
use crate::fsutil::{self, ReadLimited};
use std::path::{Path, PathBuf};

/// Why a blob operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("blob is {size} bytes, more than the {limit} allowed")]
    TooLarge { size: u64, limit: u64 },
    /// The bytes on disk no longer hash to their name.
    #[error("blob {expected} is corrupt on disk (its bytes hash to {actual})")]
    Corrupt {
        expected: Sha256Digest,
        actual: Sha256Digest,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BlobError + '_ {
    move |source| BlobError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Content-addressed storage in a directory.
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
    max_size: u64,
}

impl BlobStore {
    /// Opens (and creates) a store in `dir`, accepting blobs up to a bundle's maximum size.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, BlobError> {
        let root = dir.into();
        for sub in ["sha256", "tmp"] {
            let path = root.join(sub);
            std::fs::create_dir_all(&path).map_err(io(&path))?;
        }
        Ok(Self {
            root,
            max_size: MAX_BUNDLE_BYTES,
        })
    }

    /// Changes the largest blob accepted by `put` and `get`.
    pub fn with_max_size(mut self, max_size: u64) -> Self {
        self.max_size = max_size;
        self
    }

    /// Where a blob lives (whether or not it exists).
    pub fn path(&self, digest: &Sha256Digest) -> PathBuf {
        let hex = digest.to_hex();
        self.root.join("sha256").join(&hex[..2]).join(hex)
    }

    /// Stores `bytes` and returns their digest. Storing the same bytes twice is a no-op;
    /// a corrupt copy already on disk is replaced.
    pub fn put(&self, bytes: &[u8]) -> Result<Sha256Digest, BlobError> {
        if bytes.len() as u64 > self.max_size {
            return Err(BlobError::TooLarge {
                size: bytes.len() as u64,
                limit: self.max_size,
            });
        }
        let digest = Sha256Digest::of(bytes);
        if matches!(self.get(&digest), Ok(Some(_))) {
            return Ok(digest);
        }
        let path = self.path(&digest);
        let parent = path.parent().unwrap_or(&self.root).to_owned();
        std::fs::create_dir_all(&parent).map_err(io(&parent))?;
        // The temp file lives in tmp/ (same filesystem) so a crash leaves nothing under a
        // content name; rename is atomic, and the directory fsync makes it durable.
        let temp =
            self.root
                .join("tmp")
                .join(format!("{}.{}", digest.to_hex(), fsutil::unique_suffix()));
        let written = fsutil::write_new_synced(&temp, bytes)
            .and_then(|()| std::fs::rename(&temp, &path))
            .and_then(|()| fsutil::sync_dir(&parent));
        if written.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        written.map_err(io(&path))?;
        Ok(digest)
    }

    /// The blob's bytes, `None` if absent; [`BlobError::Corrupt`] if they no longer match.
    pub fn get(&self, digest: &Sha256Digest) -> Result<Option<Vec<u8>>, BlobError> {
        let path = self.path(digest);
        let bytes = match fsutil::read_limited(&path, self.max_size) {
            Ok(bytes) => bytes,
            Err(ReadLimited::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(ReadLimited::Io(e)) => return Err(io(&path)(e)),
            Err(ReadLimited::TooLarge(size)) => {
                return Err(BlobError::TooLarge {
                    size,
                    limit: self.max_size,
                });
            }
        };
        let actual = Sha256Digest::of(&bytes);
        if actual != *digest {
            return Err(BlobError::Corrupt {
                expected: *digest,
                actual,
            });
        }
        Ok(Some(bytes))
    }

    /// Whether a blob exists (without checking its bytes).
    pub fn contains(&self, digest: &Sha256Digest) -> bool {
        self.path(digest).is_file()
    }

    /// Deletes a blob; absent is fine.
    pub fn remove(&self, digest: &Sha256Digest) -> Result<(), BlobError> {
        let path = self.path(digest);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&path)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_and_dedup() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = BlobStore::open(dir.path()).expect("open");
        let digest = store.put(b"hello").expect("put");
        assert_eq!(digest, Sha256Digest::of(b"hello"));
        assert_eq!(store.put(b"hello").expect("put again"), digest);
        assert_eq!(store.get(&digest).expect("get"), Some(b"hello".to_vec()));
        assert!(store.contains(&digest));
        let absent = Sha256Digest::of(b"absent");
        assert_eq!(store.get(&absent).expect("get absent"), None);
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp"))
                .expect("tmp")
                .count(),
            0,
            "no temp files left"
        );
        store.remove(&digest).expect("remove");
        assert!(!store.contains(&digest));
    }

    #[test]
    fn tampered_blob_is_refused_and_healed_by_put() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = BlobStore::open(dir.path()).expect("open");
        let digest = store.put(b"release bytes").expect("put");
        std::fs::write(store.path(&digest), b"evil bytes").expect("tamper");
        assert!(matches!(store.get(&digest), Err(BlobError::Corrupt { .. })));
        store.put(b"release bytes").expect("heal");
        assert_eq!(
            store.get(&digest).expect("get"),
            Some(b"release bytes".to_vec())
        );
    }

    #[test]
    fn size_limit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = BlobStore::open(dir.path()).expect("open").with_max_size(4);
        assert!(matches!(
            store.put(b"12345"),
            Err(BlobError::TooLarge { .. })
        ));
        assert!(store.put(b"1234").is_ok());
    }
}
