//! The BPF sensor against the live kernel, as root: each event kind produced by a real action
//! (a process exec'd with arguments, a loopback TCP connection, `mv`, `chmod`, `chown`, `ln`,
//! `rm`, `setpriv`, a ptrace attach, a module load attempt, `bpftool`), and a load the kernel
//! cannot do (missing BTF) refused with a typed error.

use ringfence_bpf_sensor::{
    BpfConfig, BpfError, BpfEvent, BpfSensor, FileOp, ModuleLoad, NetKind, SetId,
};
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

/// Loads the sensor as root; mounts tracefs first when the host has not (systemd would have).
fn sensor(test: &str) -> Option<Live> {
    if !ringfence_testkit::root_or_skip(test) {
        return None;
    }
    ringfence_testkit::mount_tracefs();
    // The test process's own calls (the module load, the ptrace attach) are the actions.
    let config = BpfConfig {
        self_tgid: 0,
        ..BpfConfig::default()
    };
    let sensor = match BpfSensor::load(&config) {
        Ok(sensor) => sensor,
        Err(BpfError::NotBuilt) => {
            ringfence_testkit::skip(test, "built without BPF support (no clang at build time)");
            return None;
        }
        Err(error) => panic!("the BPF sensor does not load as root: {error}"),
    };
    assert!(
        sensor.hooks().refused.is_empty(),
        "refused hooks: {:?}",
        sensor.hooks().refused
    );
    Some(Live {
        sensor,
        seen: Vec::new(),
    })
}

/// The sensor and the events read but not yet looked for: one read returns several kinds.
struct Live {
    sensor: BpfSensor,
    seen: Vec<BpfEvent>,
}

impl Live {
    /// Takes the first event `found` matches, reading for up to five seconds.
    fn expect(&mut self, what: &str, found: impl Fn(&BpfEvent) -> bool) -> BpfEvent {
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(at) = self.seen.iter().position(&found) {
                return self.seen.remove(at);
            }
            assert!(Instant::now() < until, "no {what} event within 5 s");
            // The host's other activity comes too; bounded, oldest first out.
            if self.seen.len() > 100_000 {
                self.seen.drain(..50_000);
            }
            self.sensor
                .read(Duration::from_millis(50), &mut self.seen)
                .expect("read the ring buffer");
        }
    }
}

fn run(program: &str, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn exec_carries_argv_and_credentials() {
    let Some(mut sensor) = sensor("exec_carries_argv_and_credentials") else {
        return;
    };
    run("/bin/echo", &["ringfence-argv-marker", "second arg"]);
    let event = sensor.expect("exec", |e| {
        matches!(e, BpfEvent::Exec { argv, .. } if argv.iter().any(|a| a == "ringfence-argv-marker"))
    });
    let BpfEvent::Exec {
        process,
        filename,
        argv,
        truncated,
    } = event
    else {
        unreachable!("matched above")
    };
    assert_eq!(filename, "/bin/echo");
    assert_eq!(argv, ["/bin/echo", "ringfence-argv-marker", "second arg"]);
    assert!(!truncated);
    assert_eq!((process.uid, process.euid), (0, 0));
    assert_eq!(process.ppid, std::process::id());
    assert_eq!(sensor.sensor.lost().expect("loss counter"), 0);
}

#[test]
fn loopback_tcp_listen_connect_accept() {
    let Some(mut sensor) = sensor("loopback_tcp_listen_connect_accept") else {
        return;
    };
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let listen = sensor.expect("listen", |e| {
        matches!(e, BpfEvent::Network { kind: NetKind::Listen, local, .. } if local.port() == port)
    });
    assert_eq!(listen.process().tgid, std::process::id());
    // bash's /dev/tcp is a plain connect(2) from another process.
    run(
        "bash",
        &["-c", &format!("exec 3<>/dev/tcp/127.0.0.1/{port}")],
    );
    let (_conn, _) = listener.accept().expect("accept");
    sensor.expect("connect", |e| {
        matches!(e, BpfEvent::Network { kind: NetKind::Connect, remote, .. } if remote.port() == port)
    });
    sensor.expect("accept", |e| {
        matches!(e, BpfEvent::Network { kind: NetKind::Accept, local, .. } if local.port() == port)
    });
}

#[test]
fn file_changes_by_coreutils() {
    let Some(mut sensor) = sensor("file_changes_by_coreutils") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    let c = dir.path().join("c");
    std::fs::write(&a, b"x").expect("write");
    let (a, b, c) = (
        a.to_str().expect("utf-8"),
        b.to_str().expect("utf-8"),
        c.to_str().expect("utf-8"),
    );
    let file = |op: FileOp, path: &str| {
        let path = path.to_owned();
        move |e: &BpfEvent| matches!(e, BpfEvent::File { op: o, path: p, .. } if *o == op && *p == path)
    };
    run("mv", &[a, b]);
    let BpfEvent::File { target, .. } = sensor.expect("rename", file(FileOp::Rename, a)) else {
        unreachable!("matched")
    };
    assert_eq!(target.as_deref(), Some(b));
    run("chmod", &["4755", b]);
    let BpfEvent::File { mode, .. } = sensor.expect("chmod", file(FileOp::Chmod, b)) else {
        unreachable!("matched")
    };
    assert_eq!(mode, 0o4755);
    run("chown", &["65534:65534", b]);
    let BpfEvent::File { owner, .. } = sensor.expect("chown", file(FileOp::Chown, b)) else {
        unreachable!("matched")
    };
    assert_eq!(owner, (65534, 65534));
    run("ln", &[b, c]);
    sensor.expect("link", file(FileOp::Link, b));
    run("rm", &[c]);
    sensor.expect("unlink", file(FileOp::Unlink, c));
}

#[test]
fn privilege_ptrace_module_and_bpf_calls() {
    let Some(mut sensor) = sensor("privilege_ptrace_module_and_bpf_calls") else {
        return;
    };
    run(
        "setpriv",
        &["--reuid=65534", "--regid=65534", "--clear-groups", "true"],
    );
    sensor.expect("setresuid", |e| {
        matches!(
            e,
            BpfEvent::Privilege {
                call: SetId::SetResUid { ruid: 65534, .. } | SetId::SetReUid { ruid: 65534, .. },
                ..
            }
        )
    });

    let mut child = Command::new("sleep").arg("30").spawn().expect("sleep");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::ptrace::attach(pid).expect("ptrace attach");
    let _ = child.kill();
    let _ = child.wait();
    sensor.expect(
        "ptrace",
        |e| matches!(e, BpfEvent::Ptrace { target, .. } if *target == pid.as_raw()),
    );

    // /dev/null is no module: the kernel refuses the load, after the hook saw the attempt. A
    // kernel without module support has no such tracepoint, and no way to load one either.
    let null = std::fs::File::open("/dev/null").expect("/dev/null");
    let result = nix::kmod::finit_module(&null, c"", nix::kmod::ModuleInitFlags::empty());
    if sensor
        .sensor
        .hooks()
        .absent
        .contains(&"sys_enter_finit_module")
    {
        assert_eq!(
            result,
            Err(nix::errno::Errno::ENOSYS),
            "modules load without a hook"
        );
    } else {
        assert!(result.is_err(), "/dev/null loaded as a module");
        sensor.expect("module load", |e| {
            matches!(e, BpfEvent::Module { load: ModuleLoad::File { .. }, process } if process.tgid == std::process::id())
        });
    }

    run("bpftool", &["prog", "show"]);
    sensor.expect(
        "bpf()",
        |e| matches!(e, BpfEvent::Bpf { process, .. } if process.comm == "bpftool"),
    );
}

#[test]
fn missing_btf_is_refused_with_a_reason() {
    if !ringfence_testkit::root_or_skip("missing_btf_is_refused_with_a_reason") {
        return;
    }
    let config = BpfConfig {
        btf: "/nonexistent/vmlinux".into(),
        ..BpfConfig::default()
    };
    let error = BpfSensor::load(&config).expect_err("no BTF, no sensor");
    assert!(matches!(error, BpfError::Btf { .. }), "{error}");
    assert!(
        error.to_string().contains("/nonexistent/vmlinux"),
        "{error}"
    );
}

#[test]
fn a_full_ring_buffer_counts_what_it_lost() {
    let Some(mut live) = sensor("a_full_ring_buffer_counts_what_it_lost") else {
        return;
    };
    // Nobody reads meanwhile: 1,000 exec records of 2.4 KiB do not fit in 1 MiB.
    for _ in 0..1000 {
        run("/bin/true", &[]);
    }
    let mut events = Vec::new();
    let mut drain = |live: &mut Live| {
        let mut carried = 0u64;
        loop {
            events.clear();
            let outcome = live
                .sensor
                .read(Duration::from_millis(50), &mut events)
                .expect("read");
            carried += outcome.lost;
            if events.is_empty() {
                return carried;
            }
        }
    };
    let mut carried = drain(&mut live);
    // Some losses came in-band with later records, the rest wait in the per-CPU counter. The
    // host's other activity may take the counter into a record after the drain: drain again
    // after reading it, so every loss is seen once.
    let waiting = live.sensor.lost().expect("loss counter");
    carried += drain(&mut live);
    assert!(carried + waiting > 0, "1,000 unread execs lost nothing");
}
