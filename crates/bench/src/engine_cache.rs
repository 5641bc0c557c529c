//! `ringfence bench engine-cache`: what the compiled-engine cache saves. For each bundled
//! engine, in one run: compiling it with Cranelift (no cache, the baseline) against loading it
//! from a warm cache (read, SHA-256 check, deserialize), and the whole engine load (code,
//! linking, a first instance accepting its content) both ways. The SHA-256 share of a hit is
//! printed too: unoptimised in a debug build, it is most of the hit.

use crate::stats::{Row, print};
use anyhow::Context;
use ringfence_engine_host::{
    CompileSource, DEFAULT_CACHE_BYTES, EngineSettings, LoadedEngine, Runtime,
};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Options for `ringfence bench engine-cache`.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Loads per measurement; the fastest counts (compiles are slow: keep this small).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Bundled engines to measure (default: all).
    #[arg(long, value_delimiter = ',')]
    pub engines: Vec<String>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Content each bundled engine accepts; what it says does not change the compile.
fn content(name: &str) -> Vec<u8> {
    match name {
        "exec-allowlist" => b"allow /**\n".to_vec(),
        "faulty" => b"ok".to_vec(),
        "sigma" => ringfence_sigma::testgen::rules(10, 1).into_bytes(),
        _ => Vec::new(),
    }
}

/// The fastest of `rounds` loads: (code ready, whole load).
fn fastest(
    runtime: &Runtime,
    name: &str,
    wasm: &[u8],
    content: &[u8],
    rounds: usize,
    expect: CompileSource,
) -> anyhow::Result<(Duration, Duration)> {
    let mut best = (Duration::MAX, Duration::MAX);
    for _ in 0..rounds.max(1) {
        let started = Instant::now();
        let engine = LoadedEngine::load(runtime, EngineSettings::new(name), wasm, content)
            .with_context(|| format!("load {name}"))?;
        let whole = started.elapsed();
        anyhow::ensure!(
            engine.compile_source() == expect,
            "{name}: expected code {expect}, got {}",
            engine.compile_source()
        );
        best = (best.0.min(engine.compile_time()), best.1.min(whole));
    }
    Ok(best)
}

fn artifacts(dir: &Path) -> anyhow::Result<BTreeSet<PathBuf>> {
    Ok(std::fs::read_dir(dir)?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "cwasm"))
        .collect())
}

/// The fastest of `rounds` SHA-256 passes over what a hit hashes: the component (its key)
/// and the artifact (its check).
fn hashing(wasm: &[u8], artifact: &[u8], rounds: usize) -> Duration {
    (0..rounds.max(1))
        .map(|_| {
            let started = Instant::now();
            std::hint::black_box(Sha256::digest(wasm));
            std::hint::black_box(Sha256::digest(artifact));
            started.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// Runs the benchmark and prints its report.
pub fn run(options: &Options) -> anyhow::Result<()> {
    let temp = tempfile::tempdir().context("temporary cache directory")?;
    let plain = Runtime::new()?;
    let cached = Runtime::new()?.with_cache(temp.path().join("engine-cache"), DEFAULT_CACHE_BYTES);
    let cache = cached
        .cache()
        .context("the temporary cache directory was refused")?;
    let mut rows = Vec::new();
    for engine in ringfence_bundled_engines::ALL {
        if !options.engines.is_empty() && !options.engines.iter().any(|e| e == engine.name) {
            continue;
        }
        let name = engine.name;
        let content = content(name);
        let (compile, cold) = fastest(
            &plain,
            name,
            engine.wasm,
            &content,
            options.rounds,
            CompileSource::Compiled,
        )?;
        // The first cached load compiles and writes the entry; it is not measured.
        let before = artifacts(cache.dir())?;
        fastest(
            &cached,
            name,
            engine.wasm,
            &content,
            1,
            CompileSource::Compiled,
        )?;
        let (hit, warm) = fastest(
            &cached,
            name,
            engine.wasm,
            &content,
            options.rounds,
            CompileSource::Cache,
        )?;
        let written = artifacts(cache.dir())?;
        let artifact = written
            .difference(&before)
            .next()
            .context("the cached load wrote no artifact")?;
        let artifact = std::fs::read(artifact)?;
        let hashed = hashing(engine.wasm, &artifact, options.rounds);
        let kib = engine.wasm.len() as f64 / 1024.0;
        rows.push(Row::new(
            format!("{name} ({kib:.0} KiB): compile"),
            ms(compile),
            "ms",
        ));
        rows.push(
            Row::new(format!("{name}: code from the cache"), ms(hit), "ms").ratio(
                compile.as_secs_f64() / hit.as_secs_f64(),
                "faster than compiling",
            ),
        );
        rows.push(Row::new(
            format!(
                "{name}: of which SHA-256 of component and artifact ({:.0} KiB)",
                artifact.len() as f64 / 1024.0
            ),
            ms(hashed),
            "ms",
        ));
        rows.push(Row::new(
            format!("{name}: whole load, compiling"),
            ms(cold),
            "ms",
        ));
        rows.push(
            Row::new(format!("{name}: whole load, cache hit"), ms(warm), "ms").ratio(
                cold.as_secs_f64() / warm.as_secs_f64(),
                "faster than compiling",
            ),
        );
    }
    let stats = cache.stats();
    anyhow::ensure!(
        stats.rejected == 0 && stats.store_failures == 0,
        "the cache misbehaved: {stats:?}"
    );
    let bytes: u64 = std::fs::read_dir(cache.dir())?
        .flatten()
        .filter_map(|entry| entry.metadata().ok())
        .map(|meta| meta.len())
        .sum();
    rows.push(Row::new(
        "cache directory after the run",
        bytes as f64 / 1024.0,
        "KiB",
    ));
    print("ringfence bench engine-cache", &rows, options.json)
}
