//! The compiled-engine cache against the real wasm host, one injected failure per test: a
//! second load is served from the cache; a flipped byte, a truncated artifact or an artifact of
//! another configuration is never loaded but removed and rebuilt, and the engine still works;
//! the size bound evicts the least recently used entry; a directory others may write is
//! refused and the engine loads without a cache.

use ringfence_bundled_engines as bundled;
use ringfence_engine_host::{
    CacheError, CacheStats, CompileSource, EngineCache, EngineSettings, EngineWorker, LoadedEngine,
    Runtime, RuntimeConfig,
};
use ringfence_protocol::Action;
use ringfence_testkit::events::exec;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const ALLOWLIST: &str = "deny /usr/bin/nc\nallow /**\n";
const BIG: u64 = 1 << 30;

fn cached(dir: &Path, max_bytes: u64) -> Runtime {
    Runtime::new().expect("runtime").with_cache(dir, max_bytes)
}

fn allowlist(runtime: &Runtime) -> Arc<LoadedEngine> {
    let wasm = bundled::get("exec-allowlist").expect("bundled").wasm;
    LoadedEngine::load(
        runtime,
        EngineSettings::new("exec-allowlist"),
        wasm,
        ALLOWLIST.as_bytes(),
    )
    .expect("exec-allowlist loads")
}

fn load(runtime: &Runtime, name: &str) -> Arc<LoadedEngine> {
    let content: &[u8] = match name {
        "exec-allowlist" => ALLOWLIST.as_bytes(),
        "faulty" => b"ok",
        _ => b"",
    };
    let wasm = bundled::get(name).expect("bundled").wasm;
    LoadedEngine::load(runtime, EngineSettings::new(name), wasm, content)
        .unwrap_or_else(|e| panic!("{name} loads: {e}"))
}

/// The engine decides as its content says: it really runs.
fn assert_works(engine: &Arc<LoadedEngine>) {
    let mut worker = EngineWorker::new(Arc::clone(engine)).expect("instantiates");
    let denied = worker.decide(&exec("/usr/bin/nc"));
    assert!(denied.failure.is_none(), "{:?}", denied.failure);
    assert_eq!(denied.verdict.action, Action::Deny);
    let allowed = worker.decide(&exec("/usr/bin/ls"));
    assert!(allowed.failure.is_none(), "{:?}", allowed.failure);
    assert_eq!(allowed.verdict.action, Action::Allow);
}

fn stats(runtime: &Runtime) -> CacheStats {
    runtime.cache().expect("the cache is in use").stats()
}

/// The artifacts in the cache, by name.
fn artifacts(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("list the cache")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    found.sort();
    found
}

fn only_artifact(dir: &Path) -> PathBuf {
    let found = artifacts(dir);
    assert_eq!(found.len(), 1, "{found:?}");
    found.into_iter().next().expect("one")
}

fn cache_dir() -> (tempfile::TempDir, PathBuf) {
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = temp.path().join("engine-cache");
    (temp, dir)
}

#[test]
fn a_second_load_is_served_from_the_cache_even_by_a_new_runtime() {
    let (_temp, dir) = cache_dir();
    let first = cached(&dir, BIG);
    let compiled = allowlist(&first);
    assert_eq!(compiled.compile_source(), CompileSource::Compiled);
    assert_eq!(
        stats(&first),
        CacheStats {
            compiled: 1,
            stored: 1,
            ..CacheStats::default()
        }
    );
    let mode = std::fs::metadata(only_artifact(&dir))
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "artifacts are ours alone");

    let again = allowlist(&first);
    assert_eq!(again.compile_source(), CompileSource::Cache);
    assert_works(&again);

    // A new process (the next start, the upgraded image) opens the same directory.
    let second = cached(&dir, BIG);
    let loaded = allowlist(&second);
    assert_eq!(loaded.compile_source(), CompileSource::Cache);
    assert_eq!(
        stats(&second),
        CacheStats {
            hits: 1,
            ..CacheStats::default()
        }
    );
    assert_works(&loaded);
}

/// Damages the one artifact with `damage`, then checks that a new runtime ignores it, removes
/// it, compiles again, keeps a good entry, and runs the engine.
fn damaged_entry_is_rebuilt(damage: impl FnOnce(&Path)) {
    let (_temp, dir) = cache_dir();
    allowlist(&cached(&dir, BIG));
    let artifact = only_artifact(&dir);
    damage(&artifact);

    let runtime = cached(&dir, BIG);
    let engine = allowlist(&runtime);
    assert_eq!(engine.compile_source(), CompileSource::Compiled);
    assert_eq!(
        stats(&runtime),
        CacheStats {
            rejected: 1,
            compiled: 1,
            stored: 1,
            ..CacheStats::default()
        }
    );
    assert_works(&engine);
    let again = allowlist(&cached(&dir, BIG));
    assert_eq!(
        again.compile_source(),
        CompileSource::Cache,
        "the rebuilt entry is good"
    );
}

#[test]
fn a_flipped_byte_is_never_loaded_and_the_entry_is_rebuilt() {
    damaged_entry_is_rebuilt(|artifact| {
        let mut bytes = std::fs::read(artifact).expect("read");
        // In the middle: machine code or metadata, where wasmtime itself checks nothing.
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x01;
        std::fs::write(artifact, bytes).expect("write");
    });
}

#[test]
fn a_truncated_artifact_is_never_loaded_and_the_entry_is_rebuilt() {
    damaged_entry_is_rebuilt(|artifact| {
        let bytes = std::fs::read(artifact).expect("read");
        std::fs::write(artifact, &bytes[..bytes.len() / 3]).expect("write");
    });
}

#[test]
fn an_artifact_given_write_access_for_others_is_never_loaded() {
    damaged_entry_is_rebuilt(|artifact| {
        std::fs::set_permissions(artifact, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    });
}

#[test]
fn an_artifact_of_another_configuration_is_not_used() {
    let (_temp, dir) = cache_dir();
    allowlist(&cached(&dir, BIG));
    let with_deadlines = only_artifact(&dir);

    // Another configuration has another compatibility hash, so another key: no hit.
    let other = Runtime::with_config(RuntimeConfig { deadlines: false })
        .expect("runtime")
        .with_cache(&dir, BIG);
    let engine = allowlist(&other);
    assert_eq!(engine.compile_source(), CompileSource::Compiled);
    assert_eq!(stats(&other).hits, 0);
    let without_deadlines = artifacts(&dir)
        .into_iter()
        .find(|path| *path != with_deadlines)
        .expect("a second entry");

    // Even an intact artifact of the first configuration, with a valid digest, put under the
    // second's name is refused (by wasmtime's own checks), removed and rebuilt.
    for extension in ["cwasm", "sha256"] {
        std::fs::copy(
            with_deadlines.with_extension(extension),
            without_deadlines.with_extension(extension),
        )
        .expect("plant the foreign entry");
    }
    let other = Runtime::with_config(RuntimeConfig { deadlines: false })
        .expect("runtime")
        .with_cache(&dir, BIG);
    let engine = allowlist(&other);
    assert_eq!(engine.compile_source(), CompileSource::Compiled);
    assert_eq!(
        stats(&other),
        CacheStats {
            rejected: 1,
            compiled: 1,
            stored: 1,
            ..CacheStats::default()
        }
    );
    assert_works(&engine);
}

#[test]
fn past_the_bound_the_least_recently_used_entry_is_evicted() {
    let (_temp, dir) = cache_dir();
    let unbounded = cached(&dir, BIG);
    load(&unbounded, "exec-allowlist");
    load(&unbounded, "faulty");
    let size = |path: &PathBuf| std::fs::metadata(path).expect("stat").len();
    let two: u64 = artifacts(&dir).iter().map(size).sum();
    // Room for those two and half of one more: a third entry must push one out.
    let bound = two + two / 4;
    // Use the older entry, so the other one is the least recently used.
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(
        load(&unbounded, "exec-allowlist").compile_source(),
        CompileSource::Cache
    );

    // The third entry is the allow-list compiled for another configuration, about its size.
    let bounded = Runtime::with_config(RuntimeConfig { deadlines: false })
        .expect("runtime")
        .with_cache(&dir, bound);
    std::thread::sleep(std::time::Duration::from_millis(20));
    load(&bounded, "exec-allowlist");
    let stats = stats(&bounded);
    assert_eq!((stats.stored, stats.evicted), (1, 1), "{stats:?}");
    assert_eq!(artifacts(&dir).len(), 2);
    let total: u64 = artifacts(&dir).iter().map(size).sum();
    assert!(total <= bound, "{total} > {bound}");

    let check = cached(&dir, BIG);
    assert_eq!(
        load(&check, "exec-allowlist").compile_source(),
        CompileSource::Cache,
        "the recently used entry stays"
    );
    assert_eq!(
        load(&bounded, "exec-allowlist").compile_source(),
        CompileSource::Cache,
        "the new entry stays"
    );
    assert_eq!(
        load(&check, "faulty").compile_source(),
        CompileSource::Compiled,
        "the least recently used entry went"
    );
}

#[test]
fn an_artifact_larger_than_the_bound_is_not_kept() {
    let (_temp, dir) = cache_dir();
    let tiny = cached(&dir, 4096);
    assert_works(&allowlist(&tiny));
    let stats = stats(&tiny);
    assert_eq!((stats.stored, stats.store_failures), (0, 1), "{stats:?}");
    assert!(artifacts(&dir).is_empty());
}

#[test]
fn a_cache_directory_others_may_write_is_refused_and_engines_still_load() {
    let (_temp, dir) = cache_dir();
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let error = EngineCache::open(&dir, BIG).expect_err("refused");
    assert!(matches!(error, CacheError::OpenToOthers { .. }), "{error}");
    assert!(
        error.to_string().contains("writable by users other"),
        "{error}"
    );

    let runtime = cached(&dir, BIG);
    assert!(runtime.cache().is_none(), "no cache");
    let engine = allowlist(&runtime);
    assert_eq!(engine.compile_source(), CompileSource::Compiled);
    assert_works(&engine);
    assert!(artifacts(&dir).is_empty(), "nothing written there");
}

#[test]
fn a_cache_below_a_directory_others_may_write_is_refused() {
    let temp = tempfile::tempdir().expect("tempdir");
    let open = temp.path().join("open");
    std::fs::create_dir(&open).expect("mkdir");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let error = EngineCache::open(open.join("engine-cache"), BIG).expect_err("refused");
    assert!(
        matches!(error, CacheError::UnsafeAncestor { .. }),
        "{error}"
    );

    // The sticky bit (as on /tmp) keeps others from renaming our directory away: accepted.
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    EngineCache::open(open.join("engine-cache"), BIG).expect("accepted under a sticky dir");
}

#[test]
fn a_runtime_without_a_cache_compiles_every_time() {
    let runtime = Runtime::new().expect("runtime");
    assert!(runtime.cache().is_none());
    for _ in 0..2 {
        assert_eq!(
            allowlist(&runtime).compile_source(),
            CompileSource::Compiled
        );
    }
}
