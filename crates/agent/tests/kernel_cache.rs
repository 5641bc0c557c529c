//! Live-kernel tests of the kernel exec cache: an allow of an engine set that judges execs by
//! content alone is answered by the kernel (the agent sees no event for that file again), and
//! every way the answer could go stale takes it back before the next exec: a write, a write
//! through a shared mapping, a mount over the path, an engine swap, a stop or handoff. Path
//! dependent engine sets never reach the kernel, so a rename, hard link or parent rename into a
//! denied path is denied. Root only (fanotify, mounts); each test marks a tmpfs of its own.

mod common;

use common::{Tmpfs, root_or_skip, within};
use ringfence_agent::{Agent, AgentConfig, MuteSet, Sensor, StatsSnapshot};
use ringfence_engine_host::{EngineSettings, ExecInputs, LoadedEngine, Runtime};
use ringfence_protocol::FailurePolicy;
use ringfence_sensor::FanotifyConfig;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(120);

/// What `execve` returns when fanotify denies it.
const EPERM: i32 = 1;

fn config(mount: &Path) -> AgentConfig {
    AgentConfig {
        sensors: vec![Sensor::Fanotify],
        fanotify: FanotifyConfig {
            exec_mounts: vec![mount.to_owned()],
            ..FanotifyConfig::default()
        },
        alerts: Some(mount.join("alerts.jsonl")),
        kernel_cache_filesystems: vec![mount.to_owned()],
        mute: MuteSet::defaults(),
        ..AgentConfig::default()
    }
}

fn load(runtime: &Runtime, name: &str, content: &[u8], inputs: ExecInputs) -> Arc<LoadedEngine> {
    let wasm = ringfence_bundled_engines::get(name)
        .expect("bundled engine")
        .wasm;
    let settings = EngineSettings::new(name)
        .with_policy(FailurePolicy::FailOpen)
        .with_deadline(Duration::from_millis(50))
        .with_exec_inputs(inputs);
    LoadedEngine::load(runtime, settings, wasm, content).expect("engine loads")
}

/// `faulty` with `ok` allows every exec whatever its path: a verdict of the content alone.
fn by_content(runtime: &Runtime) -> Arc<LoadedEngine> {
    load(runtime, "faulty", b"ok", ExecInputs::FileContent)
}

fn run(path: &Path) -> std::io::Result<std::process::ExitStatus> {
    Command::new(path).status()
}

fn is_eperm(result: &std::io::Result<std::process::ExitStatus>) -> bool {
    matches!(result, Err(e) if e.raw_os_error() == Some(EPERM))
}

/// The agent's figures once `done` says they are complete (a worker places the entry after
/// it answered, so the exec may finish first); the last ones read after 30 s otherwise.
fn stats_when(agent: &Agent, done: impl Fn(&StatsSnapshot) -> bool) -> StatsSnapshot {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let stats = agent.stats();
        if done(&stats) || Instant::now() > until {
            return stats;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Runs `bin` twice (the engines decide the first exec, the user-space cache answers the
/// second and puts the file in the kernel), and returns the figures once its entry is there.
fn cache_in_kernel(agent: &Agent, bin: &Path) -> StatsSnapshot {
    let placed = agent.stats().kernel_cache_placed;
    assert!(run(bin).expect("first exec").success());
    assert!(run(bin).expect("second exec").success());
    let stats = stats_when(agent, |s| s.kernel_cache_placed > placed);
    assert!(stats.kernel_cache_placed > placed, "not placed: {stats:?}");
    stats
}

/// Runs `bin` `n` times and asserts that the agent saw none of them: the kernel answered.
fn kernel_answers(agent: &Agent, bin: &Path, n: usize) {
    let before = agent.stats();
    for _ in 0..n {
        assert!(run(bin).expect("cached exec").success());
    }
    let after = agent.stats();
    assert_eq!(
        after.events, before.events,
        "the agent saw execs the kernel should have answered: {after:?}"
    );
}

/// Runs `bin` and asserts that the agent was asked (its event counter moved): the kernel's
/// answer was taken back.
fn agent_asked(agent: &Agent, bin: &Path) -> std::io::Result<std::process::ExitStatus> {
    let before = agent.stats().events;
    let result = run(bin);
    let after = agent.stats();
    assert!(
        after.events > before,
        "the kernel answered an exec whose answer should be gone: {after:?}"
    );
    result
}

#[test]
fn kernel_answers_a_cached_allow_without_an_event() {
    if !root_or_skip("kernel_answers_a_cached_allow_without_an_event") {
        return;
    }
    within(LIMIT, || {
        let fs = Tmpfs::mount();
        let bin = fs.binary("bin");
        let runtime = Runtime::new().expect("runtime");
        let agent = Agent::start(config(fs.path()), vec![by_content(&runtime)]).expect("starts");
        let placed = cache_in_kernel(&agent, &bin);
        assert_eq!(placed.engine_calls, 1, "{placed:?}");
        assert_eq!(agent.kernel_cached(), 1);
        kernel_answers(&agent, &bin, 50);
        let stats = agent.shutdown();
        assert_eq!(stats.engine_calls, 1, "{stats:?}");
        assert_eq!(
            stats.kernel_cache_cleared, 1,
            "stop removes the entry: {stats:?}"
        );
    });
}

#[test]
fn a_write_takes_the_kernels_answer_back() {
    if !root_or_skip("a_write_takes_the_kernels_answer_back") {
        return;
    }
    within(LIMIT, || {
        let fs = Tmpfs::mount();
        let bin = fs.binary("bin");
        let runtime = Runtime::new().expect("runtime");
        let agent = Agent::start(config(fs.path()), vec![by_content(&runtime)]).expect("starts");
        cache_in_kernel(&agent, &bin);
        // Another program's content: if the kernel still answered, the new content would run
        // unjudged.
        let other = std::fs::read("/usr/bin/false").expect("read false");
        std::fs::write(&bin, other).expect("rewrite");
        let status = agent_asked(&agent, &bin).expect("runs");
        assert!(!status.success(), "the new content ran: {status:?}");
        let stats = stats_when(&agent, |s| s.engine_calls >= 2);
        assert!(stats.kernel_cache_invalidated >= 1, "{stats:?}");
        assert_eq!(
            stats.engine_calls, 2,
            "the rewritten file was judged again: {stats:?}"
        );
        agent.shutdown();
    });
}

#[test]
fn a_write_through_a_shared_mapping_takes_the_kernels_answer_back() {
    if !root_or_skip("a_write_through_a_shared_mapping_takes_the_kernels_answer_back") {
        return;
    }
    if Command::new("python3")
        .arg("-c")
        .arg("import mmap")
        .status()
        .is_err()
    {
        ringfence_testkit::skip(
            "a_write_through_a_shared_mapping_takes_the_kernels_answer_back",
            "needs python3 to write through a shared mapping without unsafe Rust",
        );
        return;
    }
    within(LIMIT, || {
        let fs = Tmpfs::mount();
        let bin = fs.binary("bin");
        let runtime = Runtime::new().expect("runtime");
        let agent = Agent::start(config(fs.path()), vec![by_content(&runtime)]).expect("starts");
        cache_in_kernel(&agent, &bin);
        let before = agent.stats().events;
        // A mapped write raises no FS_MODIFY, so the kernel keeps an ignore mark through it;
        // the writer then execs the file the moment its descriptor is closed, before any
        // notification could have been read. Only the lease, broken by the open, stands in
        // the way. The write turns /usr/bin/true's code into garbage at the entry point's
        // page, so the exec must not succeed quietly if it ran unjudged either.
        let script = r#"
import mmap, os, subprocess, sys
path = sys.argv[1]
fd = os.open(path, os.O_RDWR)
m = mmap.mmap(fd, 0, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
m[4] = 0x01
m.close()
os.close(fd)
try:
    code = subprocess.run([path]).returncode
except OSError as error:
    code = -error.errno
print(code)
"#;
        let out = Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(&bin)
            .output()
            .expect("python3 runs");
        assert!(out.status.success(), "{out:?}");
        let after = stats_when(&agent, |s| s.events > before);
        assert!(
            after.events > before,
            "an exec right after a mapped write was answered by the kernel: {after:?}"
        );
        assert!(after.kernel_cache_invalidated >= 1, "{after:?}");
        agent.shutdown();
    });
}

#[test]
fn a_mount_over_the_path_is_asked_about() {
    if !root_or_skip("a_mount_over_the_path_is_asked_about") {
        return;
    }
    within(LIMIT, || {
        let fs = Tmpfs::mount();
        let bin = fs.binary("bin");
        let other = fs.path().join("other");
        std::fs::copy("/usr/bin/false", &other).expect("copy false");
        let runtime = Runtime::new().expect("runtime");
        // A filesystem mark: a bind mount is a new mount, which a mount mark does not cover.
        let mut config = config(fs.path());
        config.fanotify = FanotifyConfig {
            exec_filesystems: vec![fs.path().to_owned()],
            ..FanotifyConfig::default()
        };
        let agent = Agent::start(config, vec![by_content(&runtime)]).expect("starts");
        cache_in_kernel(&agent, &bin);
        let status = Command::new("mount")
            .arg("--bind")
            .arg(&other)
            .arg(&bin)
            .status()
            .expect("mount");
        assert!(status.success(), "bind mount");
        // The mark is on the inode underneath; the path now names another inode.
        let result = agent_asked(&agent, &bin);
        let _ = Command::new("umount").arg(&bin).status();
        assert!(!result.expect("runs").success(), "the mounted file ran");
        agent.shutdown();
    });
}

#[test]
fn a_path_dependent_engine_set_never_reaches_the_kernel() {
    if !root_or_skip("a_path_dependent_engine_set_never_reaches_the_kernel") {
        return;
    }
    within(LIMIT, || {
        let fs = Tmpfs::mount();
        let ok_dir = fs.path().join("ok");
        std::fs::create_dir(&ok_dir).expect("mkdir");
        let bin = ok_dir.join("bin");
        std::fs::copy("/usr/bin/true", &bin).expect("copy");
        let denied = fs.path().join("denied");
        std::fs::create_dir(&denied).expect("mkdir");
        let runtime = Runtime::new().expect("runtime");
        let rules = format!("deny {}/**\nallow /**\n", denied.display());
        // Next to a content-only engine: one path-dependent engine keeps the whole set out.
        let engines = vec![
            by_content(&runtime),
            load(
                &runtime,
                "exec-allowlist",
                rules.as_bytes(),
                ExecInputs::Event,
            ),
        ];
        let agent = Agent::start(config(fs.path()), engines).expect("starts");
        for _ in 0..3 {
            assert!(run(&bin).expect("allowed").success());
        }
        // A hard link gives the same inode a denied path without any permission event.
        let link = denied.join("link");
        std::fs::hard_link(&bin, &link).expect("link");
        assert!(is_eperm(&agent_asked(&agent, &link)), "hard link ran");
        // So does a rename of the file.
        let renamed = denied.join("renamed");
        std::fs::rename(&link, &renamed).expect("rename");
        assert!(is_eperm(&agent_asked(&agent, &renamed)), "renamed file ran");
        // And a rename of a directory above it.
        let moved = denied.join("ok");
        std::fs::rename(&ok_dir, &moved).expect("rename dir");
        assert!(
            is_eperm(&agent_asked(&agent, &moved.join("bin"))),
            "moved dir ran"
        );
        let stats = agent.shutdown();
        assert_eq!(stats.kernel_cache_placed, 0, "{stats:?}");
        assert_eq!(stats.denied, 3, "{stats:?}");
    });
}

#[test]
fn a_swap_takes_every_kernel_answer_back_before_the_new_engines_answer() {
    if !root_or_skip("a_swap_takes_every_kernel_answer_back_before_the_new_engines_answer") {
        return;
    }
    within(LIMIT, || {
        let fs = Tmpfs::mount();
        let bin = fs.binary("bin");
        let runtime = Runtime::new().expect("runtime");
        let agent = Agent::start(config(fs.path()), vec![by_content(&runtime)]).expect("starts");
        cache_in_kernel(&agent, &bin);
        kernel_answers(&agent, &bin, 3);
        let rules = format!("deny {}\nallow /**\n", bin.display());
        let deny = load(
            &runtime,
            "exec-allowlist",
            rules.as_bytes(),
            ExecInputs::Event,
        );
        agent.swap_engines(vec![deny]);
        assert_eq!(agent.kernel_cached(), 0);
        // The very next exec is the new engines' to answer.
        assert!(is_eperm(&agent_asked(&agent, &bin)), "old allow served");
        let stats = agent.shutdown();
        assert_eq!(stats.kernel_cache_cleared, 1, "{stats:?}");
    });
}

#[test]
fn kernel_entries_are_bounded_and_leave_with_their_file() {
    if !root_or_skip("kernel_entries_are_bounded_and_leave_with_their_file") {
        return;
    }
    within(LIMIT, || {
        let fs = Tmpfs::mount();
        let bins: Vec<_> = (0..3).map(|i| fs.binary(&format!("bin{i}"))).collect();
        let runtime = Runtime::new().expect("runtime");
        let mut config = config(fs.path());
        config.kernel_cache = 2;
        let agent = Agent::start(config, vec![by_content(&runtime)]).expect("starts");
        for bin in &bins {
            cache_in_kernel(&agent, bin);
        }
        let stats = agent.stats();
        assert_eq!(stats.kernel_cache_evicted, 1, "{stats:?}");
        assert_eq!(agent.kernel_cached(), 2);
        // The oldest went: the kernel asks about it again.
        assert!(agent_asked(&agent, &bins[0]).expect("runs").success());
        // A file that lost its last name is let go (the lease thread looks every second).
        let placed = stats_when(&agent, |s| s.kernel_cache_placed >= 4);
        assert_eq!(placed.kernel_cache_placed, 4, "{placed:?}");
        std::fs::remove_file(&bins[2]).expect("unlink");
        let gone = stats_when(&agent, |s| s.kernel_cache_unlinked >= 1);
        assert_eq!(gone.kernel_cache_unlinked, 1, "{gone:?}");
        assert_eq!(agent.kernel_cached(), 1);
        agent.shutdown();
    });
}

#[test]
fn only_the_filesystems_named_are_kernel_cached() {
    if !root_or_skip("only_the_filesystems_named_are_kernel_cached") {
        return;
    }
    within(LIMIT, || {
        let fs = Tmpfs::mount();
        let bin = fs.binary("bin");
        let runtime = Runtime::new().expect("runtime");
        // The default, the root filesystem, which this tmpfs is not: an entry would keep the
        // tmpfs busy, and its `umount` would fail.
        let mut config = config(fs.path());
        config.kernel_cache_filesystems = vec!["/".into()];
        let agent = Agent::start(config, vec![by_content(&runtime)]).expect("starts");
        for _ in 0..3 {
            assert!(run(&bin).expect("runs").success());
        }
        let stats = stats_when(&agent, |s| s.kernel_cache_refused >= 1);
        assert_eq!(stats.kernel_cache_placed, 0, "{stats:?}");
        assert_eq!(stats.events, 3, "{stats:?}");
        agent.shutdown();
    });
}

#[test]
fn a_handoff_leaves_no_kernel_answer_to_the_next_image() {
    if !root_or_skip("a_handoff_leaves_no_kernel_answer_to_the_next_image") {
        return;
    }
    within(LIMIT, || {
        let fs = Tmpfs::mount();
        let bin = fs.binary("bin");
        let runtime = Runtime::new().expect("runtime");
        let agent = Agent::start(config(fs.path()), vec![by_content(&runtime)]).expect("starts");
        cache_in_kernel(&agent, &bin);
        let (channels, stats) = agent.handoff();
        assert_eq!(stats.kernel_cache_cleared, 1, "{stats:?}");
        // The next image, with an engine that denies the file, hears its next exec.
        let rules = format!("deny {}\nallow /**\n", bin.display());
        let deny = load(
            &runtime,
            "exec-allowlist",
            rules.as_bytes(),
            ExecInputs::Event,
        );
        let next = Agent::start_with(config(fs.path()), vec![deny], channels).expect("adopts");
        assert!(
            is_eperm(&agent_asked(&next, &bin)),
            "the previous image's allow served"
        );
        next.shutdown();
    });
}
