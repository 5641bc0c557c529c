//! `ringfence agent`: the agent's flags, turned into an agent configuration and handed to the
//! lifecycle in `ringfence_host` (`standalone::run`, or `managed::run` with `--server`); it
//! reads the standalone agent's engines and words its exit summary.

use super::engine::read_engine;
use anyhow::Context;
use ringfence_agent::{AgentConfig, MuteSet, Sensor};
use ringfence_engine_host::{EngineSettings, ExecInputs, LoadedEngine, Runtime};
use ringfence_host::SelfUpgrade;
use ringfence_host::standalone::{StandaloneOptions, Stopped};
use ringfence_protocol::{Enforcement, FailurePolicy, content};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SensorArg {
    /// fanotify permission events (exec on --mount, open on --watch-open); root.
    Fanotify,
    /// Netlink process connector notifications (fork/exec/exit); root.
    Proc,
    /// The BPF sensor: argv for exec decisions, network, file and privilege activity counted;
    /// root and a kernel with BTF. Refused, the agent serves on the others with reduced
    /// visibility.
    Bpf,
    /// Replay the corpus given with --events, then exit.
    Replay,
    /// No event source: a managed agent fed only by --traffic, or a dry run.
    None,
}

/// Run the host agent.
#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// Run without a server, on the engines given here.
    #[arg(long, conflicts_with = "server")]
    standalone: bool,
    #[command(flatten)]
    managed: super::managed::ManagedArgs,
    /// Engine component: a .wasm file or `bundled:<name>`; repeat, paired with --content.
    #[arg(long)]
    engine: Vec<String>,
    /// Content for the engine at the same position.
    #[arg(long)]
    content: Vec<PathBuf>,
    /// A JSON file: {"engines":[{"engine":"..","content":"..","policy":"fail-closed"}]}.
    #[arg(long)]
    engine_config: Option<PathBuf>,
    /// Settings file (TOML) whose keys are this command's long options, e.g. `server =
    /// "https://ringfence.example:7700"`, `tag = ["canary"]`, `perm-deadline = "20ms"`. Flags
    /// and environment variables win over it [default: /etc/ringfence/agent.toml if it exists].
    #[arg(long = "config", value_name = "FILE")]
    settings: Option<PathBuf>,
    /// fail-open or fail-closed: once for every engine, or once per engine in order.
    #[arg(long)]
    policy: Vec<FailurePolicy>,
    /// Event sources; repeat for several.
    #[arg(long, value_enum, default_values_t = vec![SensorArg::Fanotify])]
    sensor: Vec<SensorArg>,
    /// Corpus for the replay sensor.
    #[arg(long)]
    events: Option<PathBuf>,
    /// The kernel BTF the BPF sensor's programs are relocated against.
    #[arg(long, default_value = ringfence_bpf_sensor::KERNEL_BTF)]
    bpf_btf: PathBuf,
    /// Alert file (OCSF JSON lines); standard output when absent.
    #[arg(long)]
    alerts: Option<PathBuf>,
    /// Every permission event is answered within this long (at least 1ms).
    #[arg(long, default_value = "20ms", value_parser = ringfence_protocol::duration::parse)]
    perm_deadline: Duration,
    /// Deadline of one engine call (the wasm epoch deadline; at least 1ms).
    #[arg(long, default_value = "5ms", value_parser = ringfence_protocol::duration::parse)]
    engine_deadline: Duration,
    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Permission events waiting for a worker before policy answers at once.
    #[arg(long, default_value_t = 1024)]
    queue: usize,
    /// Mount points whose execs need authorisation (default: /).
    #[arg(long)]
    mount: Vec<PathBuf>,
    /// Paths whose filesystems' execs need authorisation (every mount of them).
    #[arg(long)]
    filesystem: Vec<PathBuf>,
    /// Files or directories whose opens need authorisation.
    #[arg(long)]
    watch_open: Vec<PathBuf>,
    /// Do not cache decisions.
    #[arg(long)]
    no_cache: bool,
    /// Files whose allowed execs the kernel answers without asking the agent (the kernel exec
    /// cache); 0 turns it off. Only engine sets whose every engine is declared to judge execs
    /// by file content alone (`"exec_by_content": true` in --engine-config) use it.
    #[arg(long, default_value_t = ringfence_agent::KERNEL_CACHE_FILES)]
    kernel_cache_files: usize,
    /// A path on a filesystem whose files the kernel exec cache may hold (repeat for several;
    /// default: /). Each entry keeps its file open, so `umount` of that filesystem fails with
    /// EBUSY while the agent runs: name only filesystems that stay mounted.
    #[arg(long = "kernel-cache-fs")]
    kernel_cache_fs: Vec<PathBuf>,
    /// More pids never to block (besides the agent, its parent and journald).
    #[arg(long)]
    mute_pid: Vec<u32>,
    /// More paths never to block.
    #[arg(long)]
    mute_path: Vec<PathBuf>,
    /// The agent's data directory (muted).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Bound of the compiled-engine cache in `<data-dir>/engine-cache/`, in MiB; 0 turns it
    /// off. A standalone agent without --data-dir compiles every engine at every start.
    #[arg(long, default_value_t = 512)]
    engine_cache_mib: u64,
    /// Print the final counters as JSON on standard error at exit.
    #[arg(long)]
    stats_json: bool,
    /// The binary a self-upgrade (SIGUSR2) executes; by default the one this agent was
    /// started from, as the package manager replaces it.
    #[arg(long)]
    upgrade_binary: Option<PathBuf>,
    /// Trusted public key for self-upgrades (repeat for several): the new binary must carry a
    /// valid `<binary>.sig` by one of them (`ringfence release sign-binary`).
    #[arg(long = "upgrade-pub")]
    upgrade_pub: Vec<PathBuf>,
    /// Do not protect the agent's configuration and data directory from being
    /// modified by other processes (fanotify sensor only).
    #[arg(long)]
    no_self_protect: bool,
    /// `enforce` (deny verdicts deny) or `audit` (permissive: every verdict is decided and a
    /// deny is logged and counted as "would deny", but the exec is allowed). Self-protection
    /// of the agent's own files is enforced in either mode. A managed agent started with
    /// `audit` stays in audit whatever the server assigns.
    #[arg(long, default_value_t = Enforcement::Enforce)]
    mode: Enforcement,
    #[command(flatten)]
    harden: super::harden::HardenArgs,
}

#[derive(Debug, serde::Deserialize)]
struct ConfigFile {
    engines: Vec<EngineEntry>,
}

#[derive(Debug, serde::Deserialize)]
struct EngineEntry {
    engine: String,
    #[serde(default)]
    content: Option<PathBuf>,
    #[serde(default)]
    policy: Option<FailurePolicy>,
    /// The engine's exec verdicts depend on the executed file's content alone (never its path,
    /// argv, parent or user), so its allows may be kernel-cached.
    #[serde(default)]
    exec_by_content: bool,
}

fn engine_entries(args: &AgentArgs) -> anyhow::Result<Vec<EngineEntry>> {
    let mut entries = Vec::new();
    if let Some(path) = &args.engine_config {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        let file: ConfigFile =
            serde_json::from_str(&text).with_context(|| format!("parse {}", path.display()))?;
        entries.extend(file.engines);
    }
    anyhow::ensure!(
        args.content.len() <= args.engine.len(),
        "more --content than --engine: each --content pairs with the --engine before it"
    );
    for (i, engine) in args.engine.iter().enumerate() {
        entries.push(EngineEntry {
            engine: engine.clone(),
            content: args.content.get(i).cloned(),
            policy: None,
            exec_by_content: false,
        });
    }
    anyhow::ensure!(
        !entries.is_empty(),
        "give at least one --engine (or --engine-config)"
    );
    match args.policy.len() {
        0 => {}
        1 => entries
            .iter_mut()
            .for_each(|e| e.policy = e.policy.or(Some(args.policy[0]))),
        n if n == entries.len() => entries
            .iter_mut()
            .zip(&args.policy)
            .for_each(|(e, p)| e.policy = Some(*p)),
        n => anyhow::bail!("{n} --policy values for {} engines", entries.len()),
    }
    Ok(entries)
}

/// Loads every engine of the command line or config file.
pub fn load_engines(runtime: &Runtime, args: &AgentArgs) -> anyhow::Result<Vec<Arc<LoadedEngine>>> {
    let mut engines = Vec::new();
    for entry in engine_entries(args)? {
        let (name, wasm) = read_engine(&entry.engine)?;
        let bytes = match &entry.content {
            Some(path) => content::read_content(path)?,
            None => Vec::new(),
        };
        let settings = EngineSettings::new(name)
            .with_policy(entry.policy.unwrap_or_default())
            .with_deadline(args.engine_deadline.max(Duration::from_millis(1)))
            .with_exec_inputs(if entry.exec_by_content {
                ExecInputs::FileContent
            } else {
                ExecInputs::Event
            });
        let engine = LoadedEngine::load(runtime, settings, &wasm, &bytes)
            .with_context(|| format!("loading engine {}", entry.engine))?;
        eprintln!(
            "ringfence agent: engine {} code {} in {:.1} ms",
            engine.name(),
            engine.compile_source(),
            engine.compile_time().as_secs_f64() * 1e3
        );
        engines.push(engine);
    }
    Ok(engines)
}

fn config(args: &AgentArgs) -> anyhow::Result<AgentConfig> {
    let mut mute = MuteSet::defaults();
    for pid in &args.mute_pid {
        mute = mute.with_pid(*pid);
    }
    for path in args.mute_path.iter().chain(&args.data_dir) {
        mute = mute.with_path(path.clone());
    }
    let mut config = AgentConfig {
        alerts: args.alerts.clone(),
        perm_deadline: args.perm_deadline.max(Duration::from_millis(1)),
        workers: args.workers,
        queue_capacity: args.queue,
        cache: !args.no_cache,
        kernel_cache: args.kernel_cache_files,
        mute,
        sensors: Vec::new(),
        enforcement: args.mode,
        ..AgentConfig::default()
    };
    if !args.mount.is_empty() || !args.filesystem.is_empty() {
        config.fanotify.exec_mounts = args.mount.clone();
    }
    config.fanotify.exec_filesystems = args.filesystem.clone();
    if !args.kernel_cache_fs.is_empty() {
        config.kernel_cache_filesystems = args.kernel_cache_fs.clone();
    }
    config.fanotify.watch_open = args.watch_open.clone();
    // The binary is not marked: the kernel already refuses to open a running executable for
    // writing (ETXTBSY), and the crash monitor reads it while the agent is stopped for a dump,
    // when nobody could answer a permission event for it.
    if !args.no_self_protect {
        config.protect.extend(args.engine_config.iter().cloned());
        config.protect.extend(crate::settings::effective_path(
            "agent",
            args.settings.as_deref(),
        ));
        config.protect.extend(args.data_dir.iter().cloned());
    }
    for sensor in &args.sensor {
        config.sensors.push(match sensor {
            SensorArg::None => continue,
            SensorArg::Fanotify => Sensor::Fanotify,
            SensorArg::Proc => Sensor::Proc,
            SensorArg::Bpf => Sensor::Bpf(ringfence_bpf_sensor::BpfConfig {
                btf: args.bpf_btf.clone(),
                // The guard's boot-loop protection: a host in trouble runs without it.
                switched_off: std::env::var(ringfence_protocol::guard_link::BPF_OFF_ENV)
                    .ok()
                    .filter(|why| !why.is_empty()),
                ..ringfence_bpf_sensor::BpfConfig::default()
            }),
            SensorArg::Replay => {
                let path = args
                    .events
                    .as_ref()
                    .context("--sensor replay needs --events CORPUS")?;
                Sensor::Replay(ringfence_sensor::replay(path)?)
            }
        });
    }
    Ok(config)
}

pub fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.standalone || args.managed.server.is_some(),
        "give --standalone (with --engine) or --server URL (managed by a control plane)"
    );
    // Before any thread exists, so every thread inherits the mask and SIGTERM is collected
    // here as a clean shutdown instead of killing the process mid-answer.
    ringfence_sys::signals::block_termination_signals().context("block SIGTERM")?;
    if args.harden.print_policy {
        super::harden::print_policy()?;
        return Ok(ExitCode::SUCCESS);
    }
    let trusted = if args.upgrade_pub.is_empty() {
        None
    } else {
        Some(ringfence_release::TrustedKeys::read_files(
            &args.upgrade_pub,
        )?)
    };
    let upgrade = SelfUpgrade::new(args.upgrade_binary.clone(), trusted)?;
    let mut config = config(&args)?;
    let harden = !args.harden.no_harden;
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("/var/lib/ringfence/agent"));
    if let Some(options) =
        args.managed
            .clone()
            .options(data_dir.clone(), args.engine_cache_mib, harden)
    {
        if !args.no_self_protect && args.data_dir.is_none() {
            config.protect.push(data_dir);
        }
        ringfence_host::managed::run(config, options, &upgrade)?;
        return Ok(ExitCode::SUCCESS);
    }
    let options = StandaloneOptions {
        data_dir: args.data_dir.clone(),
        engine_cache_mib: args.engine_cache_mib,
        harden,
    };
    let Stopped { mode, stats } =
        ringfence_host::standalone::run(config, &options, &upgrade, |runtime| {
            load_engines(runtime, &args).map_err(Into::into)
        })?;
    if args.stats_json {
        let mut err = std::io::stderr().lock();
        serde_json::to_writer(&mut err, &stats)?;
        writeln!(err)?;
    } else {
        eprintln!(
            "ringfence agent: stopped (mode {mode}): {}",
            in_words(&stats)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The exit summary a person reads: what was decided and how, not a struct dump
/// (`--stats-json` gives every counter).
fn in_words(stats: &ringfence_agent::StatsSnapshot) -> String {
    let mut parts = vec![format!(
        "{} permission event{}: {} allowed, {} denied",
        stats.permission_events,
        if stats.permission_events == 1 {
            ""
        } else {
            "s"
        },
        stats.allowed,
        stats.denied
    )];
    let by_policy = stats.deadline_answers + stats.queue_full + stats.failure_answers;
    for (count, what) in [
        (stats.would_deny, "would have been denied (audit mode)"),
        (stats.cache_hits, "answered from the decision cache"),
        (
            stats.kernel_cache_placed,
            "files whose execs the kernel answered from then on",
        ),
        (
            stats.kernel_cache_invalidated,
            "kernel-cached files taken back because they were opened for writing",
        ),
        (stats.muted, "muted"),
        (
            by_policy,
            "answered by policy (deadline, full queue or a failed engine)",
        ),
        (stats.engine_failures, "engine calls failed"),
        (stats.alerts, "alerts written"),
        (stats.overflows, "kernel queue overflows"),
        (
            stats.bpf_argv_matched,
            "exec decisions with the BPF sensor's argv",
        ),
        (stats.bpf_lost, "BPF records lost (ring buffer full)"),
    ] {
        if count > 0 {
            parts.push(format!("{count} {what}"));
        }
    }
    parts.join("; ")
}
