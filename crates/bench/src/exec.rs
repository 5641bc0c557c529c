//! `ringfence bench exec`: what exec authorisation costs. fork+exec+wait of a small binary on a
//! private tmpfs, without an agent, with a bare responder that only answers (the floor under
//! any user-mode authoriser), and with agents of increasing work, in one run; what the seccomp
//! filters of a hardened agent add to that path (the same agent with and without them); plus
//! the RSS of a real `ringfence agent` process with two engines loaded. The side-by-side
//! comparison with fapolicyd runs the agent with the kernel exec cache (an engine that judges
//! execs by content alone), so a cached exec never reaches user space.

use crate::fapolicyd::{self as fapd, Comparison};
use crate::stats::{Percentiles, Row, print};
use anyhow::Context;
use ringfence_agent::{Agent, AgentConfig, MuteSet, Sensor};
use ringfence_engine_host::{EngineSettings, ExecInputs, LoadedEngine, Runtime};
use ringfence_hardening::{FsView, Hardening};
use ringfence_protocol::FailurePolicy;
use ringfence_sensor::{Channels, Fanotify, FanotifyConfig};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options for `ringfence bench exec`.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Execs per scenario.
    #[arg(long, default_value_t = 1000)]
    pub iterations: usize,
    /// Rules in the allow-list scenario.
    #[arg(long, default_value_t = 100)]
    pub rules: usize,
    /// Alternating rounds of the side-by-side comparison (no listener, ringfence, fapolicyd),
    /// so drift on the machine hits each scenario alike (their order rotates each round);
    /// `--iterations` execs are shared between the rounds.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Runs per scenario of the checked-in autoconf `configure` (the exec-heavy workload),
    /// interleaved; 0 leaves it out.
    #[arg(long, default_value_t = 3)]
    pub configure_runs: usize,
    /// Leave fapolicyd out even when it is installed (the comparison otherwise rewrites
    /// /etc/fapolicyd for the run and restores it).
    #[arg(long)]
    pub no_fapolicyd: bool,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// A tmpfs on a temporary directory, so only the benchmark's binaries are marked.
pub(crate) struct Tmpfs {
    pub(crate) dir: PathBuf,
}

impl Tmpfs {
    fn new() -> anyhow::Result<Tmpfs> {
        Tmpfs::sized("exec", "16m")
    }

    /// A tmpfs of `size` (mount's `size=` syntax) named after the benchmark.
    pub(crate) fn sized(bench: &str, size: &str) -> anyhow::Result<Tmpfs> {
        let dir =
            std::env::temp_dir().join(format!("ringfence-bench-{bench}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .context("run mount")?
            .success();
        anyhow::ensure!(ok, "could not mount a tmpfs on {}", dir.display());
        Ok(Tmpfs { dir })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        let _ = std::fs::remove_dir(&self.dir);
    }
}

fn measure(bin: &Path, iterations: usize) -> anyhow::Result<Percentiles> {
    Ok(Percentiles::of(&mut samples(bin, iterations)?))
}

/// fork+exec+wait times of `bin`, after a warm-up.
fn samples(bin: &Path, iterations: usize) -> anyhow::Result<Vec<Duration>> {
    // Warm up page cache and the decision cache alike.
    for _ in 0..20 {
        Command::new(bin).status()?;
    }
    let mut samples = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let started = Instant::now();
        let status = Command::new(bin).status()?;
        samples.push(started.elapsed());
        anyhow::ensure!(status.success(), "{} failed: {status}", bin.display());
    }
    Ok(samples)
}

fn engine(runtime: &Runtime, name: &str, content: &[u8]) -> anyhow::Result<Arc<LoadedEngine>> {
    engine_judging(runtime, name, content, ExecInputs::Event)
}

fn engine_judging(
    runtime: &Runtime,
    name: &str,
    content: &[u8],
    inputs: ExecInputs,
) -> anyhow::Result<Arc<LoadedEngine>> {
    let wasm = ringfence_bundled_engines::get(name)
        .with_context(|| format!("bundled engine {name}"))?
        .wasm;
    let settings = EngineSettings::new(name)
        .with_policy(FailurePolicy::FailOpen)
        .with_exec_inputs(inputs);
    Ok(LoadedEngine::load(runtime, settings, wasm, content)?)
}

/// The agent on `mount`; its kernel exec cache may hold files of `mount` (it serves only
/// engine sets that judge by content, so the others never use it).
fn agent_config(mount: &Path, cache: bool) -> AgentConfig {
    AgentConfig {
        sensors: vec![Sensor::Fanotify],
        fanotify: FanotifyConfig {
            exec_mounts: vec![mount.to_owned()],
            ..FanotifyConfig::default()
        },
        discard_alerts: true,
        cache,
        kernel_cache_filesystems: vec![mount.to_owned()],
        mute: MuteSet::defaults(),
        ..AgentConfig::default()
    }
}

/// The floor: a thread that answers every exec permission event on the mount with allow and
/// does nothing else (no path, no file identity, no decision). What remains is the kernel's
/// round trip and two context switches; no authoriser can add less.
fn with_bare_responder(mount: &Path, bin: &Path, iterations: usize) -> anyhow::Result<Percentiles> {
    use ringfence_sensor::decode;
    use ringfence_sys as sys;
    use std::sync::atomic::{AtomicBool, Ordering};
    let group = sys::fanotify::init(
        libc::FAN_CLASS_CONTENT | libc::FAN_CLOEXEC | libc::FAN_NONBLOCK,
        (libc::O_RDONLY | libc::O_LARGEFILE | libc::O_CLOEXEC) as u32,
    )
    .context("fanotify_init")?;
    sys::fanotify::mark(
        &group,
        libc::FAN_MARK_ADD | libc::FAN_MARK_MOUNT,
        libc::FAN_OPEN_EXEC_PERM,
        Some(mount),
    )
    .context("fanotify_mark")?;
    let stop = Arc::new(AtomicBool::new(false));
    let responder = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || -> std::io::Result<()> {
            while !stop.load(Ordering::Relaxed) {
                if !sys::fd::poll_readable(&group, std::time::Duration::from_millis(50))? {
                    continue;
                }
                let mut read = sys::fanotify::read_events(&group, 16 * 1024)?;
                for event in decode::fanotify_events(read.bytes()).0 {
                    if let Some(fd) = read.take_fd(event.fd) {
                        sys::fanotify::respond(&group, &fd, libc::FAN_ALLOW)?;
                    }
                }
            }
            // Closing the group removes the mark and allows anything still queued.
            Ok(())
        })
    };
    let result = measure(bin, iterations);
    stop.store(true, Ordering::Relaxed);
    responder
        .join()
        .map_err(|_| anyhow::anyhow!("the bare responder panicked"))?
        .context("bare responder")?;
    result
}

/// The sensor alone: every exec permission event read as the agent reads it (path from the
/// event fd, file identity) and allowed, with no decision. Between the floor and the cached
/// agent, it says where the agent's cached path spends its time.
fn with_sensor_only(mount: &Path, bin: &Path, iterations: usize) -> anyhow::Result<Percentiles> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let fan = Fanotify::open(&FanotifyConfig {
        exec_mounts: vec![mount.to_owned()],
        ..FanotifyConfig::default()
    })?;
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || -> Result<(), ringfence_sensor::SensorError> {
            while !stop.load(Ordering::Relaxed) {
                for event in fan.read(std::time::Duration::from_millis(50))? {
                    if let Some(ticket) = event.ticket {
                        ticket.respond(true);
                    }
                }
            }
            fan.unmark();
            Ok(())
        })
    };
    let result = measure(bin, iterations);
    stop.store(true, Ordering::Relaxed);
    reader
        .join()
        .map_err(|_| anyhow::anyhow!("the sensor reader panicked"))??;
    result
}

fn with_agent(
    mount: &Path,
    bin: &Path,
    engines: Vec<Arc<LoadedEngine>>,
    cache: bool,
    iterations: usize,
) -> anyhow::Result<(Percentiles, ringfence_agent::StatsSnapshot)> {
    let agent = Agent::start(agent_config(mount, cache), engines)?;
    let result = measure(bin, iterations);
    let stats = agent.shutdown();
    Ok((result?, stats))
}

/// Like [`with_agent`], with the agent's threads under the seccomp filters of a hardened agent
/// (the agent list on every agent thread, the engine list stacked on workers). The filters are
/// installed on a thread that then starts the agent, so its threads inherit them while this
/// process's own fork+exec loop, like every other process on a host, runs unfiltered.
fn with_filtered_agent(
    mount: &Path,
    bin: &Path,
    engines: Vec<Arc<LoadedEngine>>,
    iterations: usize,
) -> anyhow::Result<Percentiles> {
    let hardening = Hardening::new(FsView::default())?;
    let mut config = agent_config(mount, false);
    config.engine_threads = Some(hardening.engine_confinement());
    let agent = std::thread::scope(|scope| {
        scope
            .spawn(|| -> anyhow::Result<Agent> {
                // The group is opened before the filter: fanotify_init is not on the agent list.
                let channels = Channels {
                    fanotify: Some(Fanotify::open(&config.fanotify)?),
                    ..Channels::default()
                };
                hardening.filter_current_thread()?;
                Ok(Agent::start_with(config, engines, channels)?)
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the filtered agent's starter panicked"))?
    })?;
    let result = measure(bin, iterations);
    agent.shutdown();
    result
}

/// Resident set size of a process, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Starts `ringfence agent` with two engines on the tmpfs, runs some execs, reads its RSS.
fn agent_process_rss(mount: &Path, bin: &Path, rules: &Path) -> anyhow::Result<Option<u64>> {
    let exe = std::env::current_exe()?;
    if exe.file_stem().and_then(|s| s.to_str()) != Some("ringfence") {
        return Ok(None);
    }
    let ok = mount.join("ok.txt");
    std::fs::write(&ok, "ok")?;
    let mut child = Command::new(exe)
        .args([
            "agent",
            "--standalone",
            "--engine",
            "bundled:exec-allowlist",
            "--content",
        ])
        .arg(rules)
        .args(["--engine", "bundled:faulty", "--content"])
        .arg(&ok)
        .arg("--mount")
        .arg(mount)
        .arg("--alerts")
        .arg(mount.join("alerts.jsonl"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().context("agent stderr")?;
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let ready = lines.any(|l| l.is_ok_and(|l| l.contains("ready")));
    for _ in 0..200 {
        Command::new(bin).status()?;
    }
    let rss = if ready { rss_kib(child.id()) } else { None };
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    Ok(rss)
}

/// Runs the benchmark and prints its report.
pub fn run(options: &Options) -> anyhow::Result<()> {
    anyhow::ensure!(
        ringfence_sensor::procfs::has_capability(ringfence_sensor::procfs::CAP_SYS_ADMIN),
        "`bench exec` measures real fanotify permission events: run it as root"
    );
    let iterations = options.iterations.max(10);
    let fs = Tmpfs::new()?;
    let bin = fs.dir.join("true");
    std::fs::copy("/usr/bin/true", &bin).context("copy /usr/bin/true")?;
    let mut rules = String::new();
    for i in 0..options.rules.saturating_sub(1) {
        rules.push_str(&format!("deny /opt/never/{i}/**\n"));
    }
    rules.push_str("allow /**\n");
    let rules_path = fs.dir.join("rules.txt");
    std::fs::write(&rules_path, &rules)?;

    let runtime = Runtime::new()?;
    let trivial = engine(&runtime, "faulty", b"ok")?;
    // The same engine, declared to judge execs by content alone (it allows every exec, so it
    // does): its allows go to the kernel exec cache.
    let by_content = engine_judging(&runtime, "faulty", b"ok", ExecInputs::FileContent)?;
    let allowlist = engine(&runtime, "exec-allowlist", rules.as_bytes())?;

    let base = measure(&bin, iterations)?;
    let bare = with_bare_responder(&fs.dir, &bin, iterations)?;
    let sensor = with_sensor_only(&fs.dir, &bin, iterations)?;
    let (no_cache, _) = with_agent(&fs.dir, &bin, vec![Arc::clone(&trivial)], false, iterations)?;
    let (cached, cached_stats) =
        with_agent(&fs.dir, &bin, vec![Arc::clone(&trivial)], true, iterations)?;
    let (kernel, kernel_stats) = with_agent(
        &fs.dir,
        &bin,
        vec![Arc::clone(&by_content)],
        true,
        iterations,
    )?;
    let (list, _) = with_agent(&fs.dir, &bin, vec![allowlist], false, iterations)?;
    // Unfiltered and filtered back to back, with the same engine, so the ratio is the filters'.
    let (unfiltered, _) = with_agent(&fs.dir, &bin, vec![Arc::clone(&trivial)], false, iterations)?;
    let filtered = with_filtered_agent(&fs.dir, &bin, vec![Arc::clone(&trivial)], iterations)?;
    let rss = agent_process_rss(&fs.dir, &bin, &rules_path)?;

    let us = |ns: u64| ns as f64 / 1000.0;
    let added = |p: &Percentiles, q: fn(&Percentiles) -> u64| us(q(p).saturating_sub(q(&base)));
    let mut rows = vec![
        Row::new("no agent: exec p50", us(base.p50_ns), "µs"),
        Row::new("no agent: exec p99", us(base.p99_ns), "µs"),
    ];
    for (name, p) in [
        ("bare responder (the floor)", &bare),
        ("sensor only, no decision", &sensor),
        ("trivial engine, no cache", &no_cache),
        ("trivial engine, cache", &cached),
        ("trivial engine by content, kernel cache", &kernel),
        (
            &*format!("exec-allowlist {} rules, no cache", options.rules),
            &list,
        ),
    ] {
        rows.push(
            Row::new(format!("{name}: added p50"), added(p, |p| p.p50_ns), "µs")
                .ratio(p.p50_ns as f64 / base.p50_ns.max(1) as f64, "no agent p50"),
        );
        let row = Row::new(format!("{name}: added p99"), added(p, |p| p.p99_ns), "µs")
            .ratio(p.p99_ns as f64 / base.p99_ns.max(1) as f64, "no agent p99");
        rows.push(if name == "trivial engine, cache" {
            row.goal("≤ 50 µs")
        } else {
            row
        });
    }
    for (name, q) in [
        (
            "p50",
            (|p: &Percentiles| p.p50_ns) as fn(&Percentiles) -> u64,
        ),
        ("p99", |p: &Percentiles| p.p99_ns),
    ] {
        rows.push(
            Row::new(
                format!("seccomp-filtered agent, no cache: exec {name}"),
                us(q(&filtered)),
                "µs",
            )
            .ratio(
                q(&filtered) as f64 / q(&unfiltered).max(1) as f64,
                format!("same agent unfiltered ({:.1} µs)", us(q(&unfiltered))),
            ),
        );
        rows.push(
            Row::new(
                format!("trivial engine, cache: added over the floor, {name}"),
                us(q(&cached).saturating_sub(q(&bare))),
                "µs",
            )
            .ratio(
                q(&cached) as f64 / q(&bare).max(1) as f64,
                format!("bare responder ({:.1} µs)", us(q(&bare))),
            ),
        );
    }
    rows.push(Row::new(
        "cache hits in the cached run",
        cached_stats.cache_hits as f64,
        "execs",
    ));
    rows.push(Row::new(
        "execs the agent saw in the kernel-cached run",
        kernel_stats.events as f64,
        "events",
    ));
    if let Some(kib) = rss {
        rows.push(Row::new("agent RSS, two engines", kib as f64 / 1024.0, "MiB").goal("≤ 30 MiB"));
    }
    let side = side_by_side(&fs.dir, &bin, &by_content, iterations, options)?;
    rows.extend(side.rows);
    if let Some(why) = &side.skipped {
        eprintln!("bench exec: fapolicyd rows skipped: {why}");
    }
    print(
        &format!(
            "bench exec: fork+exec+wait of {} ({} execs per scenario; side by side: {} rounds)",
            bin.display(),
            iterations,
            options.rounds.max(1),
        ),
        &rows,
        options.json,
    )?;
    Ok(())
}

/// The autoconf-generated `configure` (see `bench/fixtures/configure/README.md`), built into
/// the binary so an operator can run the workload without the source tree.
const CONFIGURE: &[u8] = include_bytes!("../../../bench/fixtures/configure/configure");

/// One scenario of the side-by-side comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    None,
    Ringfence,
    Fapolicyd,
}

/// The scenarios of a round, rotated by one each round: on a shared machine whatever runs
/// right after an authoriser stops (or while it slows the host's other processes) is not
/// always the same scenario, so an order effect falls on each alike over every three rounds.
fn order(round: usize) -> [Scenario; 3] {
    let all = [Scenario::None, Scenario::Ringfence, Scenario::Fapolicyd];
    [0, 1, 2].map(|i| all[(round + i) % 3])
}

/// The side-by-side rows and, when fapolicyd is left out, why.
struct SideBySide {
    rows: Vec<Row>,
    skipped: Option<String>,
}

/// The comparison with fapolicyd: no listener, the cached ringfence agent and fapolicyd with
/// one allow-all rule, alternating in rounds, first on the exec loop (each authoriser watching
/// the benchmark's tmpfs), then on the `configure` workload (each watching the filesystem its
/// compilers and test programs live on). Without fapolicyd the ringfence rows are still
/// measured the same way.
fn side_by_side(
    mount: &Path,
    bin: &Path,
    trivial: &Arc<LoadedEngine>,
    iterations: usize,
    options: &Options,
) -> anyhow::Result<SideBySide> {
    let rounds = options.rounds.max(1);
    let per_round = (iterations / rounds).max(10);
    let mut skipped = None;
    let fapolicyd = if options.no_fapolicyd {
        skipped = Some("--no-fapolicyd was given".to_owned());
        None
    } else {
        match fapd::find() {
            Ok(binary) => Some(binary),
            Err(why) => {
                skipped = Some(why);
                None
            }
        }
    };
    // Backed up before anything is written, restored when `setup` goes out of scope, whatever
    // way that happens.
    let interrupt = fapolicyd
        .as_ref()
        .map(|_| fapd::Interrupt::install())
        .transpose()?;
    let setup = match &fapolicyd {
        Some(_) => Some(fapd::Setup::new(
            Path::new(fapd::ETC),
            &fapd::state_files(),
        )?),
        None => None,
    };
    let interrupted = || interrupt.as_ref().map_or(Ok(()), fapd::Interrupt::check);
    let daemon = |watch: &[String]| -> anyhow::Result<Option<fapd::Daemon>> {
        interrupted()?;
        match (&fapolicyd, &setup) {
            (Some(binary), Some(setup)) => {
                setup.watch(watch)?;
                Ok(Some(fapd::Daemon::start(binary)?))
            }
            _ => Ok(None),
        }
    };

    let tmpfs = vec![fapd::fs_type(mount).unwrap_or_else(|| "tmpfs".to_owned())];
    let (mut none, mut ringfence, mut theirs) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        for scenario in order(round) {
            interrupted()?;
            match scenario {
                Scenario::None => none.extend(samples(bin, per_round)?),
                Scenario::Ringfence => {
                    // A fresh agent each round: its first exec of the binary reaches the
                    // engine, and the kernel answers every later one.
                    let agent = Agent::start(agent_config(mount, true), vec![Arc::clone(trivial)])?;
                    let result = samples(bin, per_round);
                    agent.shutdown();
                    ringfence.extend(result?);
                }
                Scenario::Fapolicyd => {
                    if let Some(running) = daemon(&tmpfs)? {
                        let result = samples(bin, per_round);
                        drop(running);
                        theirs.extend(result?);
                    }
                }
            }
        }
    }
    let mut rows = exec_rows(
        rounds,
        per_round,
        &mut none,
        &mut ringfence,
        &mut theirs,
        &tmpfs,
    );

    if options.configure_runs > 0 {
        match configure_rows(options.configure_runs, trivial, &daemon)? {
            Ok(more) => rows.extend(more),
            Err(why) => eprintln!("bench exec: configure workload skipped: {why}"),
        }
    }
    if let Some(setup) = setup {
        setup.finish()?;
    }
    Ok(SideBySide { rows, skipped })
}

/// p50 and p99 of one authoriser against no listener, and what it adds at p50.
fn listener_rows(name: &str, with: &Percentiles, none: &Percentiles) -> [Row; 3] {
    let us = |ns: u64| ns as f64 / 1000.0;
    let ratio = |with: u64, without: u64| with as f64 / without.max(1) as f64;
    [
        Row::new(format!("{name}p50"), us(with.p50_ns), "µs")
            .ratio(ratio(with.p50_ns, none.p50_ns), "no listener"),
        Row::new(format!("{name}p99"), us(with.p99_ns), "µs")
            .ratio(ratio(with.p99_ns, none.p99_ns), "no listener"),
        Row::new(
            format!("{name}added p50"),
            us(with.p50_ns) - us(none.p50_ns),
            "µs",
        ),
    ]
}

fn exec_rows(
    rounds: usize,
    per_round: usize,
    none: &mut [Duration],
    ringfence: &mut [Duration],
    theirs: &mut [Duration],
    watch: &[String],
) -> Vec<Row> {
    let us = |ns: u64| ns as f64 / 1000.0;
    let (none, ringfence) = (Percentiles::of(none), Percentiles::of(ringfence));
    let label = format!("side by side ({rounds}×{per_round})");
    let mut rows = vec![
        Row::new(format!("{label}: no listener, p50"), us(none.p50_ns), "µs"),
        Row::new(format!("{label}: no listener, p99"), us(none.p99_ns), "µs"),
    ];
    let [p50, p99, added] = listener_rows(
        &format!("{label}: ringfence kernel-cached, "),
        &ringfence,
        &none,
    );
    rows.extend([p50, p99, added.goal("≤ 5 µs")]);
    if theirs.is_empty() {
        return rows;
    }
    let theirs = Percentiles::of(theirs);
    rows.extend(listener_rows(
        &format!("{label}: fapolicyd ({}), ", watch.join(",")),
        &theirs,
        &none,
    ));
    let p50 = Comparison::of(
        none.p50_ns as f64,
        ringfence.p50_ns as f64,
        theirs.p50_ns as f64,
    );
    if let Some(share) = p50.share {
        rows.push(
            Row::new(
                format!("{label}: ringfence added p50 / fapolicyd added p50"),
                share,
                "×",
            )
            .goal("≤ 0.1×"),
        );
    }
    rows
}

/// Runs `configure` once in a fresh copy under `work`, returning its wall-clock time.
fn configure_once(work: &Path, run: usize) -> anyhow::Result<Duration> {
    let dir = work.join(format!("run-{run}"));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("configure"), CONFIGURE)?;
    let started = Instant::now();
    let status = Command::new("sh")
        .arg("configure")
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("run sh configure")?;
    let elapsed = started.elapsed();
    if !status.success() {
        // Kept for the operator to read; the directory is the temporary one of this run.
        anyhow::bail!(
            "configure failed ({status}); see {}",
            dir.join("config.log").display()
        );
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(elapsed)
}

/// The configure workload, or why it was skipped. Each authoriser watches the filesystem of
/// `/` (where `sh`, the compiler and the test programs' directory live): ringfence marks it
/// whole, fapolicyd watches every filesystem of its type.
fn configure_rows(
    runs: usize,
    trivial: &Arc<LoadedEngine>,
    daemon: &dyn Fn(&[String]) -> anyhow::Result<Option<fapd::Daemon>>,
) -> anyhow::Result<Result<Vec<Row>, String>> {
    if crate::program("cc", &[]).is_none() {
        return Ok(Err("no C compiler (`cc`) on PATH".to_owned()));
    }
    // /var/tmp rather than /tmp: it is on the root filesystem by convention, where /tmp is
    // often a tmpfs, and the test programs configure builds and runs must be on a watched one.
    let work = tempfile::Builder::new()
        .prefix("ringfence-bench-configure-")
        .tempdir_in("/var/tmp")
        .context("temporary directory in /var/tmp")?;
    let mut watch: Vec<String> = [Path::new("/"), work.path()]
        .iter()
        .filter_map(|p| fapd::fs_type(p))
        .collect();
    watch.dedup();
    let config = AgentConfig {
        sensors: vec![Sensor::Fanotify],
        fanotify: FanotifyConfig {
            exec_filesystems: vec![PathBuf::from("/"), work.path().to_owned()],
            ..FanotifyConfig::default()
        },
        discard_alerts: true,
        cache: true,
        kernel_cache_filesystems: vec![PathBuf::from("/"), work.path().to_owned()],
        mute: MuteSet::defaults(),
        ..AgentConfig::default()
    };
    // One unmeasured run fills the page cache for all three scenarios.
    configure_once(work.path(), 0)?;
    let (mut none, mut ringfence, mut theirs) = (Vec::new(), Vec::new(), Vec::new());
    let mut execs = 0;
    for run in 0..runs {
        for scenario in order(run) {
            match scenario {
                Scenario::None => none.push(configure_once(work.path(), 1)?),
                Scenario::Ringfence => {
                    let agent = Agent::start(config.clone(), vec![Arc::clone(trivial)])?;
                    let result = configure_once(work.path(), 2);
                    execs += agent.shutdown().events;
                    ringfence.push(result?);
                }
                Scenario::Fapolicyd => {
                    if let Some(running) = daemon(&watch)? {
                        let result = configure_once(work.path(), 3);
                        drop(running);
                        theirs.push(result?);
                    }
                }
            }
        }
    }
    let secs = |ns: u64| ns as f64 / 1e9;
    let (none, ringfence) = (Percentiles::of(&mut none), Percentiles::of(&mut ringfence));
    let label = format!("configure ({runs} runs, median)");
    let mut rows = vec![
        Row::new(format!("{label}: no listener"), secs(none.p50_ns), "s"),
        Row::new(
            format!("{label}: ringfence kernel-cached"),
            secs(ringfence.p50_ns),
            "s",
        )
        .ratio(
            ringfence.p50_ns as f64 / none.p50_ns.max(1) as f64,
            "no listener",
        )
        .goal("≤ 1.03×"),
        Row::new(
            format!("{label}: exec events per run under ringfence (whole host)"),
            execs as f64 / runs as f64,
            "events",
        ),
    ];
    if !theirs.is_empty() {
        let theirs = Percentiles::of(&mut theirs);
        rows.push(
            Row::new(
                format!("{label}: fapolicyd ({})", watch.join(",")),
                secs(theirs.p50_ns),
                "s",
            )
            .ratio(
                theirs.p50_ns as f64 / none.p50_ns.max(1) as f64,
                "no listener",
            ),
        );
    }
    Ok(Ok(rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_takes_every_place_over_three_rounds() {
        for place in 0..3 {
            let seen: Vec<Scenario> = (0..3).map(|round| order(round)[place]).collect();
            assert!(
                seen[0] != seen[1] && seen[1] != seen[2] && seen[0] != seen[2],
                "place {place}: {seen:?}"
            );
        }
        assert_eq!(order(0), order(3));
    }
}
