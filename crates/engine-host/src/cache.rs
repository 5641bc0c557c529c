//! Compiled engines kept on disk: compiling a large engine with Cranelift takes seconds and
//! hundreds of MiB, so a process start, an in-place upgrade or a preflight should load the
//! compiler's output instead, in milliseconds.
//!
//! An entry is two files named by its key: `<key>.cwasm`, what `Component::serialize` produced,
//! and `<key>.sha256`, that artifact's SHA-256 and length (rewritten on every use, so its
//! modification time is the entry's last use). The key is the SHA-256 of the component and of
//! wasmtime's `precompile_compatibility_hash`, which covers the wasmtime version, the compiler's
//! target and flags (the host CPU features it compiles for included) and the engine
//! configuration: another engine, wasmtime, CPU or configuration looks under another name.
//!
//! Loading a tampered artifact is memory-unsafe, so an entry is trusted only when the directory
//! is ours and no one else can write it or rename it away (checked at [`EngineCache::open`]),
//! its files are regular files of ours, and the artifact's SHA-256 matches the one recorded
//! beside it (checked in `verified`, the crate's only `unsafe`). An entry that fails any check,
//! or that wasmtime refuses, is removed and the engine compiled again: the cache can make a
//! load faster, never make it fail.
//!
//! Files are written atomically (a 0600 temporary file, fsync, rename), the artifact before its
//! digest. Another process writing the same key at the same time can pair one process's
//! artifact with the other's digest for a moment; the next reader then finds a mismatch and
//! recompiles, which is safe. Past the size bound the least recently used entries go.

mod verified;

use sha2::{Digest, Sha256};
use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};
use wasmtime::component::Component;

/// The default bound of a cache directory: a dozen large engines, or one per release for a
/// good while.
pub const DEFAULT_CACHE_BYTES: u64 = 512 << 20;

const ARTIFACT: &str = "cwasm";
const DIGEST: &str = "sha256";
const TEMP_PREFIX: &str = ".tmp-";
/// A temporary file this old was left by a process that died while writing it.
const STALE_TEMP: Duration = Duration::from_secs(600);
/// Names the layout of an entry; a new layout gives every entry a new key.
const FORMAT: &[u8] = b"ringfence-engine-cache-1\0";

/// Why a directory was refused as a cache. The load goes on without one.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("{} belongs to uid {owner}, not to this process's uid {us}", path.display())]
    NotOurs { path: PathBuf, owner: u32, us: u32 },
    #[error("{} is writable by users other than its owner (mode {mode:o})", path.display())]
    OpenToOthers { path: PathBuf, mode: u32 },
    #[error(
        "{} lets another user replace what is below it (owner uid {owner}, mode {mode:o})",
        path.display()
    )]
    UnsafeAncestor {
        path: PathBuf,
        owner: u32,
        mode: u32,
    },
}

/// Where a [`LoadedEngine`](crate::LoadedEngine)'s machine code came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CompileSource {
    /// Compiled by Cranelift in this process.
    Compiled,
    /// Loaded from the compiled-engine cache.
    Cache,
}

impl std::fmt::Display for CompileSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CompileSource::Compiled => "compiled",
            CompileSource::Cache => "from the engine cache",
        })
    }
}

/// What a cache did since it was opened in this process.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CacheStats {
    /// Loads served from a verified entry.
    pub hits: u64,
    /// Loads that compiled (no entry, or a refused one).
    pub compiled: u64,
    /// Entries found corrupt, truncated, foreign or tampered with, and removed.
    pub rejected: u64,
    /// Entries written.
    pub stored: u64,
    /// Entries removed to stay under the size bound.
    pub evicted: u64,
    /// Entries that could not be written (the load still succeeded).
    pub store_failures: u64,
}

/// A directory of compiled engines, bounded in size. Shared by every load of a [`Runtime`].
///
/// [`Runtime`]: crate::Runtime
#[derive(Debug)]
pub struct EngineCache {
    dir: PathBuf,
    max_bytes: u64,
    us: u32,
    /// One store (write and sweep) at a time in this process.
    writing: Mutex<()>,
    hits: AtomicU64,
    compiled: AtomicU64,
    rejected: AtomicU64,
    stored: AtomicU64,
    evicted: AtomicU64,
    store_failures: AtomicU64,
}

/// The digest file's contents.
struct Recorded {
    sha256: String,
    len: u64,
}

impl Recorded {
    fn line(&self) -> String {
        format!("{} {}\n", self.sha256, self.len)
    }

    fn parse(bytes: &[u8]) -> Option<Recorded> {
        let text = std::str::from_utf8(bytes).ok()?.strip_suffix('\n')?;
        let (sha256, len) = text.split_once(' ')?;
        let hex_digest = sha256.len() == 64
            && sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        hex_digest.then_some(())?;
        Some(Recorded {
            sha256: sha256.to_owned(),
            len: len.parse().ok()?,
        })
    }
}

/// Feeds what `Hash` writes into SHA-256: wasmtime's compatibility hash becomes a digest that
/// means the same in every process of this build, unlike `DefaultHasher`'s.
struct Sha256Hasher(Sha256);

impl std::hash::Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_le_bytes(first)
    }
}

/// The name of `wasm`'s entry when compiled by `engine`.
fn key(engine: &wasmtime::Engine, wasm: &[u8]) -> String {
    use std::hash::Hash;
    let mut compat = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut compat);
    let mut key = Sha256::new();
    key.update(FORMAT);
    key.update(Sha256::digest(wasm));
    key.update(compat.0.finalize());
    hex::encode(key.finalize())
}

fn is_key(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

impl EngineCache {
    /// Opens (creating it 0700 if needed) the cache directory `dir`, holding at most
    /// `max_bytes` of artifacts.
    ///
    /// Refuses a directory that is not ours or that others may write, and one below a directory
    /// that would let another user rename it away and put their own in its place: what is in it
    /// becomes machine code we run.
    pub fn open(dir: impl Into<PathBuf>, max_bytes: u64) -> Result<EngineCache, CacheError> {
        let dir = dir.into();
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| CacheError::Io { path, source }
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io(&dir))?;
        let dir = fs::canonicalize(&dir).map_err(io(&dir))?;
        let us = nix::unistd::geteuid().as_raw();
        let meta = fs::symlink_metadata(&dir).map_err(io(&dir))?;
        if !meta.is_dir() {
            return Err(CacheError::NotADirectory(dir));
        }
        if meta.uid() != us {
            return Err(CacheError::NotOurs {
                path: dir,
                owner: meta.uid(),
                us,
            });
        }
        if meta.mode() & 0o022 != 0 {
            return Err(CacheError::OpenToOthers {
                path: dir,
                mode: meta.mode() & 0o7777,
            });
        }
        for ancestor in dir.ancestors().skip(1) {
            let meta = fs::metadata(ancestor).map_err(io(ancestor))?;
            // A sticky directory (like /tmp) lets others create entries but not rename ours.
            let sticky = meta.mode() & 0o1000 != 0;
            let trusted_owner = meta.uid() == us || meta.uid() == 0;
            if !trusted_owner || (meta.mode() & 0o022 != 0 && !sticky) {
                return Err(CacheError::UnsafeAncestor {
                    path: ancestor.to_owned(),
                    owner: meta.uid(),
                    mode: meta.mode() & 0o7777,
                });
            }
        }
        Ok(EngineCache {
            dir,
            max_bytes,
            us,
            writing: Mutex::new(()),
            hits: AtomicU64::new(0),
            compiled: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            stored: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            store_failures: AtomicU64::new(0),
        })
    }

    /// The directory, as resolved and checked at open.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn stats(&self) -> CacheStats {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        CacheStats {
            hits: read(&self.hits),
            compiled: read(&self.compiled),
            rejected: read(&self.rejected),
            stored: read(&self.stored),
            evicted: read(&self.evicted),
            store_failures: read(&self.store_failures),
        }
    }

    /// `wasm` compiled for `engine`: from a verified entry, or compiled and then kept.
    pub(crate) fn component(
        &self,
        engine: &wasmtime::Engine,
        wasm: &[u8],
    ) -> wasmtime::Result<(Component, CompileSource)> {
        let key = key(engine, wasm);
        if let Some(component) = self.lookup(engine, &key) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok((component, CompileSource::Cache));
        }
        let component = Component::new(engine, wasm)?;
        self.compiled.fetch_add(1, Ordering::Relaxed);
        self.store(&key, &component);
        Ok((component, CompileSource::Compiled))
    }

    fn path(&self, key: &str, extension: &str) -> PathBuf {
        self.dir.join(format!("{key}.{extension}"))
    }

    /// The entry `key`, if it passes every check; a failing entry is removed.
    fn lookup(&self, engine: &wasmtime::Engine, key: &str) -> Option<Component> {
        let recorded = match self.read(&self.path(key, DIGEST), 128) {
            Ok(None) => return None,
            Ok(Some(bytes)) => match Recorded::parse(&bytes) {
                Some(recorded) => recorded,
                None => return self.reject(key, "its digest file is malformed"),
            },
            Err(reason) => return self.reject(key, &format!("its digest file {reason}")),
        };
        if recorded.len > self.max_bytes {
            return self.reject(key, "it is larger than the cache may hold");
        }
        let bytes = match self.read(&self.path(key, ARTIFACT), recorded.len) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return self.reject(key, "its artifact is missing"),
            Err(reason) => return self.reject(key, &format!("its artifact {reason}")),
        };
        if bytes.len() as u64 != recorded.len {
            return self.reject(
                key,
                &format!(
                    "its artifact is {} bytes, not the {} recorded (truncated?)",
                    bytes.len(),
                    recorded.len
                ),
            );
        }
        match verified::deserialize(engine, &bytes, &recorded.sha256) {
            Ok(component) => {
                // The digest file's modification time is the entry's last use.
                if let Err(reason) =
                    self.write_atomically(&self.path(key, DIGEST), recorded.line().as_bytes())
                {
                    tracing::debug!(key, "engine cache: could not mark the entry used: {reason}");
                }
                Some(component)
            }
            Err(error) => self.reject(key, &error.to_string()),
        }
    }

    /// Reads a file of the cache if it is a regular file of ours that no one else may write,
    /// of at most `limit` bytes; `Ok(None)` when there is none. The error completes a sentence.
    fn read(&self, path: &Path, limit: u64) -> Result<Option<Vec<u8>>, CacheFileFault> {
        let file = match OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(path)
        {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(CacheFileFault::Open(error)),
        };
        let meta = file.metadata().map_err(CacheFileFault::Read)?;
        if !meta.is_file() {
            return Err(CacheFileFault::NotRegular);
        }
        if meta.uid() != self.us || meta.mode() & 0o022 != 0 {
            return Err(CacheFileFault::NotOurs {
                uid: meta.uid(),
                mode: meta.mode() & 0o7777,
            });
        }
        if meta.len() > limit {
            return Err(CacheFileFault::TooLarge {
                len: meta.len(),
                limit,
            });
        }
        let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
        file.take(limit)
            .read_to_end(&mut bytes)
            .map_err(CacheFileFault::Read)?;
        Ok(Some(bytes))
    }

    /// Removes the entry `key` and says why; returns `None` for [`EngineCache::lookup`].
    fn reject<T>(&self, key: &str, reason: &str) -> Option<T> {
        tracing::warn!(
            dir = %self.dir.display(),
            key,
            "engine cache: not using a compiled engine, removing it and compiling again: {reason}"
        );
        self.rejected.fetch_add(1, Ordering::Relaxed);
        for extension in [ARTIFACT, DIGEST] {
            let _ = fs::remove_file(self.path(key, extension));
        }
        None
    }

    /// Keeps `component` as the entry `key`, then keeps the directory under its bound. A
    /// failure is logged and counted; the component serves all the same.
    fn store(&self, key: &str, component: &Component) {
        let result = (|| {
            let bytes = component
                .serialize()
                .map_err(|e| NotKept::Serialize(format!("{e:#}")))?;
            let len = bytes.len() as u64;
            if len > self.max_bytes {
                return Err(NotKept::TooLarge {
                    len,
                    bound: self.max_bytes,
                });
            }
            let recorded = Recorded {
                sha256: hex::encode(Sha256::digest(&bytes)),
                len,
            };
            let _writing = self
                .writing
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            self.write_atomically(&self.path(key, ARTIFACT), &bytes)?;
            self.write_atomically(&self.path(key, DIGEST), recorded.line().as_bytes())?;
            self.stored.fetch_add(1, Ordering::Relaxed);
            self.sweep(key);
            Ok(())
        })();
        if let Err(reason) = result {
            self.store_failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                dir = %self.dir.display(),
                "engine cache: not keeping a compiled engine: {reason}"
            );
        }
    }

    /// Writes `bytes` to `path` through a new 0600 file and a rename: readers see the old
    /// file or the whole new one.
    fn write_atomically(&self, path: &Path, bytes: &[u8]) -> Result<(), NotKept> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let temp = self.dir.join(format!(
            "{TEMP_PREFIX}{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let written = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(nix::libc::O_NOFOLLOW)
                .open(&temp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            fs::rename(&temp, path)
        })();
        written.map_err(|error| {
            let _ = fs::remove_file(&temp);
            NotKept::Write {
                path: path.to_owned(),
                source: error,
            }
        })
    }

    /// Removes temporary files left by dead writers, digest files without an artifact, and the
    /// least recently used entries (never `keep`, the one just written) past the bound.
    fn sweep(&self, keep: &str) {
        let Ok(listing) = fs::read_dir(&self.dir) else {
            return;
        };
        let now = SystemTime::now();
        let modified = |path: &Path| fs::metadata(path).and_then(|m| m.modified()).ok();
        let mut entries = Vec::new();
        for item in listing.flatten() {
            let name = item.file_name();
            let Some(name) = name.to_str() else { continue };
            let path = item.path();
            if name.starts_with(TEMP_PREFIX) {
                let stale = modified(&path)
                    .and_then(|at| now.duration_since(at).ok())
                    .is_some_and(|age| age > STALE_TEMP);
                if stale {
                    let _ = fs::remove_file(&path);
                }
            } else if let Some(key) = name.strip_suffix(".cwasm").filter(|k| is_key(k)) {
                let Ok(meta) = item.metadata() else { continue };
                let last_used = modified(&self.path(key, DIGEST))
                    .or_else(|| meta.modified().ok())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                entries.push((last_used, meta.len(), key.to_owned()));
            } else if let Some(key) = name.strip_suffix(".sha256").filter(|k| is_key(k))
                && !self.path(key, ARTIFACT).exists()
            {
                let _ = fs::remove_file(&path);
            }
        }
        let mut total: u64 = entries.iter().map(|(_, len, _)| len).sum();
        entries.sort();
        for (_, len, key) in entries {
            if total <= self.max_bytes {
                break;
            }
            if key == keep {
                continue;
            }
            for extension in [ARTIFACT, DIGEST] {
                let _ = fs::remove_file(self.path(&key, extension));
            }
            total -= len;
            self.evicted.fetch_add(1, Ordering::Relaxed);
            tracing::info!(key, "engine cache: evicted the least recently used entry");
        }
    }
}

/// Why a file of the cache is not used; completes "its artifact …" or "its digest file …".
#[derive(Debug, thiserror::Error)]
enum CacheFileFault {
    #[error("cannot be opened: {0}")]
    Open(std::io::Error),
    #[error("cannot be read: {0}")]
    Read(std::io::Error),
    #[error("is not a regular file")]
    NotRegular,
    #[error("belongs to uid {uid} with mode {mode:o}, not to us alone")]
    NotOurs { uid: u32, mode: u32 },
    #[error("is {len} bytes, more than {limit}")]
    TooLarge { len: u64, limit: u64 },
}

/// Why a compiled engine is not kept (or an entry not marked used).
#[derive(Debug, thiserror::Error)]
enum NotKept {
    /// Wasmtime's error, with its chain, in words.
    #[error("could not serialize it: {0}")]
    Serialize(String),
    #[error("it is {len} bytes, more than the cache's bound of {bound}")]
    TooLarge { len: u64, bound: u64 },
    #[error("could not write {}: {source}", path.display())]
    Write {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_file_parses_only_in_the_form_written() {
        let line = Recorded {
            sha256: "ab".repeat(32),
            len: 42,
        }
        .line();
        let parsed = Recorded::parse(line.as_bytes()).expect("parses");
        assert_eq!(
            (parsed.sha256.as_str(), parsed.len),
            ("ab".repeat(32).as_str(), 42)
        );
        for bad in [
            "",
            "ab 42\n",
            &format!("{} 42", "ab".repeat(32)),
            &format!("{} -1\n", "ab".repeat(32)),
            &format!("{} 42\n", "AB".repeat(32)),
            &format!("{} 42\n", "zz".repeat(32)),
        ] {
            assert!(Recorded::parse(bad.as_bytes()).is_none(), "{bad:?}");
        }
    }
}
