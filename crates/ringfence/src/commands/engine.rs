//! `ringfence engine`: the vendor's local check of an engine and its content.

use anyhow::Context;
use clap::Subcommand;
use ringfence_engine_host::{
    CorpusReport, DEFAULT_CACHE_BYTES, EngineSettings, LoadedEngine, Runtime, run_corpus,
};
use ringfence_protocol::{FailurePolicy, content, corpus};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub enum EngineCommand {
    /// Run every event of a corpus through an engine in the real host and report.
    ///
    /// Exits 1 when any event failed (trap, deadline, memory), 2 on bad input.
    #[command(
        after_help = "Examples:\n  ringfence engine test --engine bundled:sigma --content rules/sigma --events events.jsonl\n  ringfence engine test --engine my-engine.wasm --content rules.json --events events.jsonl --deadline 2ms --json"
    )]
    Test(TestArgs),
    /// List the engines built into this binary.
    #[command(after_help = "Examples:\n  ringfence engine list\n  ringfence engine list -o json")]
    List {
        /// How to print: `table` or `wide` (aligned columns, wide adds the SHA-256) or `json`.
        #[arg(short = 'o', long, value_enum, default_value_t = super::agent_admin::Output::Table)]
        output: super::agent_admin::Output,
    },
}

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// The engine component: a .wasm file, or `bundled:<name>` for a built-in engine.
    #[arg(long)]
    engine: String,
    /// Content for the engine: a file, or a directory of Sigma .yml rules.
    #[arg(long)]
    content: Option<PathBuf>,
    /// Event corpus (JSON lines).
    #[arg(long)]
    events: PathBuf,
    /// Per-call deadline (the wasm epoch deadline).
    #[arg(long, default_value = "5ms", value_parser = ringfence_protocol::duration::parse)]
    deadline: Duration,
    /// Memory limit per instance in MiB.
    #[arg(long, default_value_t = 64)]
    memory_mib: usize,
    /// fail-open (allow and alert) or fail-closed (deny) when the engine cannot answer.
    #[arg(long, default_value = "fail-open")]
    policy: FailurePolicy,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Where compiled engines are kept between runs [default: $XDG_CACHE_HOME/ringfence/engines,
    /// or ~/.cache/ringfence/engines].
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Compile the engine every run and keep no compiled copy.
    #[arg(long, conflicts_with = "cache_dir")]
    no_cache: bool,
}

/// The per-user cache directory of compiled engines, as the XDG base directory spec places it.
fn default_cache_dir() -> Option<PathBuf> {
    let set = |name| std::env::var_os(name).filter(|value| !value.is_empty());
    set("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| set("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .map(|base| base.join("ringfence").join("engines"))
}

/// Reads an engine given as a path or as `bundled:<name>`; returns (name, bytes).
pub fn read_engine(spec: &str) -> anyhow::Result<(String, Vec<u8>)> {
    if let Some(name) = spec.strip_prefix("bundled:") {
        let engine = ringfence_bundled_engines::get(name).with_context(|| {
            let names: Vec<_> = ringfence_bundled_engines::ALL
                .iter()
                .map(|e| e.name)
                .collect();
            format!(
                "no bundled engine {name:?}; there are: {}",
                names.join(", ")
            )
        })?;
        return Ok((engine.name.to_owned(), engine.wasm.to_vec()));
    }
    let path = Path::new(spec);
    let bytes = std::fs::read(path).with_context(|| format!("read engine {}", path.display()))?;
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("engine")
        .to_owned();
    Ok((name, bytes))
}

pub fn run(command: EngineCommand) -> anyhow::Result<ExitCode> {
    match command {
        EngineCommand::Test(args) => test(args),
        EngineCommand::List { output } => {
            use super::agent_admin::Output;
            let engines = ringfence_bundled_engines::ALL.iter().map(|engine| {
                let sha256 = ringfence_release::Sha256Digest::of(engine.wasm).to_string();
                (
                    format!("bundled:{}", engine.name),
                    engine.wasm.len(),
                    sha256,
                )
            });
            match output {
                Output::Json => {
                    let list: Vec<serde_json::Value> = engines
                        .map(|(name, bytes, sha256)| {
                            serde_json::json!({"engine": name, "bytes": bytes, "sha256": sha256})
                        })
                        .collect();
                    println!("{}", serde_json::json!({ "engines": list }));
                }
                Output::Table | Output::Wide => {
                    let wide = output == Output::Wide;
                    let rows: Vec<Vec<String>> = engines
                        .map(|(name, bytes, sha256)| {
                            let mut row =
                                vec![name, format!("{:.1} MiB", bytes as f64 / 1_048_576.0)];
                            if wide {
                                row.push(sha256);
                            }
                            row
                        })
                        .collect();
                    let header: &[&str] = if wide {
                        &["ENGINE", "SIZE", "SHA-256"]
                    } else {
                        &["ENGINE", "SIZE"]
                    };
                    super::agent_admin::print_table(header, &rows);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn test(args: TestArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(!args.deadline.is_zero(), "--deadline must be longer than 0");
    let (name, wasm) = read_engine(&args.engine)?;
    let content_bytes = match &args.content {
        Some(path) => content::read_content(path)?,
        None => Vec::new(),
    };
    let events = corpus::read_file(&args.events)?;
    let mut settings = EngineSettings::new(name)
        .with_policy(args.policy)
        .with_deadline(args.deadline)
        .with_memory_limit(args.memory_mib << 20);
    // A vendor's check should report every failure, not stop calling after a few.
    settings.quarantine.failures = u32::MAX;
    let mut runtime = Runtime::new()?;
    if !args.no_cache {
        // A vendor re-runs the same engine over and over while editing content or corpora.
        match args.cache_dir.clone().or_else(default_cache_dir) {
            Some(dir) => runtime = runtime.with_cache(dir, DEFAULT_CACHE_BYTES),
            None => tracing::info!("no cache directory (neither HOME nor XDG_CACHE_HOME is set)"),
        }
    }
    let engine =
        LoadedEngine::load(&runtime, settings, &wasm, &content_bytes).with_context(|| {
            let content = args
                .content
                .as_ref()
                .map(|p| format!(" with content {}", p.display()))
                .unwrap_or_default();
            format!("loading engine {}{content}", args.engine)
        })?;
    let report = run_corpus(&engine, &events)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer(&mut out, &report)?;
        writeln!(out)?;
    } else {
        print_report(&mut out, &report, &args)?;
        writeln!(
            out,
            "code     {} in {:.1} ms",
            engine.compile_source(),
            engine.compile_time().as_secs_f64() * 1e3
        )?;
    }
    Ok(if report.failed_events() > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_report(
    out: &mut impl Write,
    report: &CorpusReport,
    args: &TestArgs,
) -> std::io::Result<()> {
    writeln!(out, "engine   {} ({})", args.engine, report.engine)?;
    if let Some(content) = &args.content {
        writeln!(
            out,
            "content  {} — {} rule{}, sha256 {}",
            content.display(),
            report.content.rules,
            if report.content.rules == 1 { "" } else { "s" },
            &report.content_sha256[..16]
        )?;
    }
    for warning in &report.content.warnings {
        writeln!(out, "warning  {warning}")?;
    }
    writeln!(
        out,
        "events   {} from {}",
        report.events,
        args.events.display()
    )?;
    let verdicts: Vec<String> = report
        .verdicts
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    writeln!(out, "verdicts {}", verdicts.join(", "))?;
    let failures: Vec<String> = report
        .failures
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    writeln!(
        out,
        "failures {}",
        if failures.is_empty() {
            "none".to_owned()
        } else {
            failures.join(", ")
        }
    )?;
    writeln!(
        out,
        "latency  p50 {} µs, p99 {} µs, max {} µs",
        report.latency_us.p50, report.latency_us.p99, report.latency_us.max
    )?;
    writeln!(
        out,
        "memory   peak {} KiB per instance",
        report.peak_memory_bytes / 1024
    )?;
    if !report.rules.is_empty() {
        writeln!(out, "rules")?;
        let mut rules: Vec<_> = report.rules.iter().collect();
        rules.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (rule, count) in rules.into_iter().take(20) {
            writeln!(out, "  {count:>8}  {rule}")?;
        }
    }
    if let Some(record) = report.failure_records.first() {
        writeln!(
            out,
            "first failure: {} in {}, on an event of kind {}: {}",
            record.kind,
            record.top_function().unwrap_or("?"),
            record.event_kind.as_deref().unwrap_or("?"),
            record.message
        )?;
    }
    if let Some(quarantine) = &report.quarantine {
        writeln!(out, "{}", quarantine.message)?;
    }
    Ok(())
}
