//! The decision cache: repeated execs of an unchanged binary are answered without engines.
//!
//! The key is the file's identity (device, inode, change time), the path it was executed by
//! (an allow-list decides by path, and hard links share an inode) and the engine-set
//! generation. Writing to a file changes its ctime, so a modified binary misses; a new engine
//! set or content changes the generation, so a swap misses. Only clean verdicts (no engine
//! failure) are cached, and only allow/deny: observe verdicts must raise their alert each time.
//! With the BPF sensor an exec's verdict may turn on its argv, which the key does not hold, so
//! the agent then caches no exec verdicts (`sensors.rs` builds no key).

use ringfence_sensor::FileId;
use std::collections::HashMap;
use std::sync::Mutex;

/// Entries kept before the cache starts over; bounded so a burst of unique binaries cannot
/// grow the agent without limit.
pub const CAPACITY: usize = 65_536;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    pub file: FileId,
    pub path: String,
    pub generation: u64,
}

/// A cached answer: allow, or deny with the verdict to alert with.
#[derive(Debug, Clone)]
pub struct Cached {
    pub allow: bool,
    pub verdict: ringfence_protocol::Verdict,
}

#[derive(Debug, Default)]
pub struct DecisionCache {
    entries: Mutex<HashMap<CacheKey, Cached>>,
}

impl DecisionCache {
    pub fn get(&self, key: &CacheKey) -> Option<Cached> {
        self.entries.lock().ok()?.get(key).cloned()
    }

    pub fn insert(&self, key: CacheKey, value: Cached) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= CAPACITY {
                entries.clear();
            }
            entries.insert(key, value);
        }
    }

    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }

    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ctime_nsec: i64, generation: u64) -> CacheKey {
        CacheKey {
            file: FileId {
                dev: 1,
                ino: 2,
                ctime_sec: 3,
                ctime_nsec,
            },
            path: "/bin/x".into(),
            generation,
        }
    }

    #[test]
    fn changed_file_or_generation_misses() {
        let cache = DecisionCache::default();
        cache.insert(
            key(0, 1),
            Cached {
                allow: true,
                verdict: ringfence_protocol::Verdict::allow(),
            },
        );
        assert!(cache.get(&key(0, 1)).is_some());
        assert!(cache.get(&key(1, 1)).is_none());
        assert!(cache.get(&key(0, 2)).is_none());
    }
}
