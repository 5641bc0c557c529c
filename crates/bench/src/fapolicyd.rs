//! fapolicyd as the yardstick for `ringfence bench exec`: the user-mode fanotify authoriser
//! most Linux hosts would otherwise run. This module installs nothing; when `fapolicyd` is on
//! the machine it runs it in the foreground with one allow-all rule, so the benchmark can time
//! the same execs under it, under ringfence and under no listener in one process, and it puts
//! back every file of fapolicyd's it changed, also on error, on panic and on Ctrl-C.

use anyhow::Context;
use sha2::Digest;
use std::collections::VecDeque;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// Where fapolicyd reads its configuration.
pub(crate) const ETC: &str = "/etc/fapolicyd";

/// What fapolicyd prints on stderr once its marks are in place and it answers events.
const READY: &str = "Starting to listen for events";

/// Files fapolicyd writes as it runs. Those absent before the benchmark are removed after it;
/// those present are left, since fapolicyd checks its trust database against its backends and
/// rebuilds it on its next start.
const STATE: &[&str] = &[
    "/var/lib/fapolicyd/data.mdb",
    "/var/lib/fapolicyd/lock.mdb",
    "/var/lib/fapolicyd/db.ver",
    "/var/log/fapolicyd-access.log",
    "/run/fapolicyd.state",
    "/run/fapolicyd.pid",
    // The directory of its fifo, which systemd's tmpfiles creates at boot; last, so it is
    // empty by the time it is removed.
    "/run/fapolicyd",
];

/// Ctrl-C while fapolicyd's files are changed: the default action would end the process
/// without unwinding, leaving the benchmark's allow-all rule in `/etc/fapolicyd`. Instead the
/// signal sets a flag, the benchmark stops at its next step with an error, and the files are
/// put back as it unwinds.
#[derive(Debug, Clone)]
pub(crate) struct Interrupt(Arc<AtomicBool>);

impl Interrupt {
    pub(crate) fn install() -> anyhow::Result<Interrupt> {
        let flag = Arc::new(AtomicBool::new(false));
        let set = Arc::clone(&flag);
        ctrlc::set_handler(move || set.store(true, Ordering::SeqCst))
            .context("catch Ctrl-C so fapolicyd's files are restored")?;
        Ok(Interrupt(flag))
    }

    /// An error once Ctrl-C was pressed: the caller stops and unwinds.
    pub(crate) fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.0.load(Ordering::SeqCst),
            "interrupted; fapolicyd's configuration is being restored"
        );
        Ok(())
    }
}

/// The fapolicyd binary, or why the fapolicyd rows are skipped.
pub(crate) fn find() -> Result<PathBuf, String> {
    // Root's PATH has the sbin directories, a user's often does not: look there too.
    let binary = crate::program("fapolicyd", &["/usr/sbin", "/sbin"])
        .ok_or_else(|| "fapolicyd is not installed (apt-get install fapolicyd)".to_owned())?;
    let running = ringfence_sensor::procfs::pids_named("fapolicyd");
    if !running.is_empty() {
        return Err(format!(
            "a fapolicyd is already running (pid {}); stop it to compare, this benchmark will not \
             reconfigure a live one",
            running
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !Path::new(ETC).is_dir() {
        return Err(format!("{ETC} does not exist"));
    }
    Ok(binary)
}

/// Backs up files, lets the caller overwrite them, and puts every one back when dropped: the
/// original bytes where there was a file, nothing where there was none. Restoring in `Drop`
/// covers a benchmark that fails or panics half-way as well as one that finishes.
#[derive(Debug)]
pub(crate) struct Restore {
    /// Each file with its original content (`None`: it did not exist).
    backups: Vec<(PathBuf, Option<Vec<u8>>)>,
    /// Files the benchmark may cause to appear, absent before; removed on restore.
    absent: Vec<PathBuf>,
}

impl Restore {
    /// Backs up `files` now; `state` lists files something else (fapolicyd) may create.
    pub(crate) fn new(files: &[PathBuf], state: &[PathBuf]) -> anyhow::Result<Restore> {
        let mut backups = Vec::new();
        for file in files {
            let original = match std::fs::read(file) {
                Ok(bytes) => Some(bytes),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(e).with_context(|| format!("back up {}", file.display())),
            };
            backups.push((file.clone(), original));
        }
        let absent = state.iter().filter(|p| !p.exists()).cloned().collect();
        Ok(Restore { backups, absent })
    }

    /// Overwrites one of the backed-up files.
    pub(crate) fn write(&self, file: &Path, content: &[u8]) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.backups.iter().any(|(f, _)| f == file),
            "{} was not backed up",
            file.display()
        );
        std::fs::write(file, content).with_context(|| format!("write {}", file.display()))
    }

    /// Puts everything back; safe to call twice. Returns the first failure, after trying all.
    pub(crate) fn restore(&mut self) -> std::io::Result<()> {
        let mut first = None;
        for (file, original) in self.backups.drain(..) {
            let result = match original {
                Some(bytes) => std::fs::write(&file, bytes),
                None => match std::fs::remove_file(&file) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    other => other,
                },
            };
            if let Err(e) = result {
                first.get_or_insert(std::io::Error::new(
                    e.kind(),
                    format!("restore {}: {e}", file.display()),
                ));
            }
        }
        for file in self.absent.drain(..) {
            let removed = if file.is_dir() {
                std::fs::remove_dir(&file)
            } else {
                std::fs::remove_file(&file)
            };
            if let Err(e) = removed
                && e.kind() != std::io::ErrorKind::NotFound
            {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        if let Err(e) = self.restore() {
            eprintln!("bench exec: could not restore fapolicyd's files: {e}");
        }
    }
}

/// fapolicyd's configuration for the benchmark, taken over from the host's: the keys the
/// comparison depends on are replaced, everything else (cache sizes, queue size) stays.
pub(crate) fn conf(original: &str, watch_fs: &[String]) -> String {
    let overrides = [
        ("permissive", "0".to_owned()),
        // Debian ships nice_val = 14; the in-process agent it is compared with runs at the
        // benchmark's own priority, so fapolicyd does too, or a loaded machine would slow it
        // for its priority rather than its work.
        ("nice_val", "0".to_owned()),
        // Some containers refuse the switch to the fapolicyd user ("Cannot change to uid"); as
        // root it starts everywhere, and the decision path is the same.
        ("uid", "0".to_owned()),
        ("gid", "0".to_owned()),
        ("watch_fs", watch_fs.join(",")),
        // The file backend with a one-line trust file starts in well under a second; rpmdb
        // would read a package database and is not built on Debian anyway.
        ("trust", "file".to_owned()),
        ("integrity", "none".to_owned()),
        // The report is written at exit only, but nothing here needs it.
        ("do_stat_report", "0".to_owned()),
    ];
    let key = |line: &str| line.split('=').next().unwrap_or("").trim().to_owned();
    let mut out: String = original
        .lines()
        .filter(|line| !overrides.iter().any(|(k, _)| key(line) == *k))
        .map(|line| format!("{line}\n"))
        .collect();
    out.push_str("# Written by `ringfence bench exec`; the original is restored afterwards.\n");
    for (k, v) in overrides {
        out.push_str(&format!("{k} = {v}\n"));
    }
    out
}

/// One trusted file in fapolicyd's file-backend format (path, size, SHA-256). The trust file is
/// not left empty: with no entries fapolicyd never creates its trust table, and every lookup
/// then fails and logs ("open_dbi: Permission denied"), an error path it never takes in use.
fn trust_line(file: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(file).with_context(|| format!("read {}", file.display()))?;
    let digest = sha2::Sha256::digest(&bytes);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("{} {} {hex}\n", file.display(), bytes.len()))
}

/// fapolicyd's files backed up and rewritten for the benchmark.
pub(crate) struct Setup {
    restore: Restore,
    etc: PathBuf,
    original_conf: String,
}

impl Setup {
    /// Backs up the files fapolicyd 1.1.7 reads (its configuration, the compiled rules it
    /// prefers over `fapolicyd.rules`, the file-backend trust list) and writes the one
    /// allow-all rule and a one-entry trust list. `trust.d/` is read too and left as it is.
    pub(crate) fn new(etc: &Path, state: &[PathBuf]) -> anyhow::Result<Setup> {
        let files = ["fapolicyd.conf", "compiled.rules", "fapolicyd.trust"].map(|f| etc.join(f));
        let restore = Restore::new(&files, state)?;
        // Without systemd nothing has created the directory of fapolicyd's fifo.
        std::fs::create_dir_all("/run/fapolicyd").context("create /run/fapolicyd")?;
        let original_conf = std::fs::read_to_string(&files[0]).unwrap_or_default();
        restore.write(&files[1], b"allow perm=any all : all\n")?;
        restore.write(
            &files[2],
            trust_line(Path::new("/usr/bin/true"))?.as_bytes(),
        )?;
        Ok(Setup {
            restore,
            etc: etc.to_owned(),
            original_conf,
        })
    }

    /// Points fapolicyd at these filesystem types (as `/proc/mounts` names them).
    pub(crate) fn watch(&self, watch_fs: &[String]) -> anyhow::Result<()> {
        self.restore.write(
            &self.etc.join("fapolicyd.conf"),
            conf(&self.original_conf, watch_fs).as_bytes(),
        )
    }

    /// Restores now, reporting failure (dropping restores too, but can only print).
    pub(crate) fn finish(mut self) -> anyhow::Result<()> {
        self.restore
            .restore()
            .context("restore fapolicyd's configuration")
    }
}

/// The standard state files as paths.
pub(crate) fn state_files() -> Vec<PathBuf> {
    STATE.iter().map(PathBuf::from).collect()
}

/// A `fapolicyd --debug-deny` child: foreground, and printing only denials, of which an
/// allow-all rule makes none (`--debug` would print every decision and charge fapolicyd for
/// formatting them). Stopped on drop.
pub(crate) struct Daemon {
    child: Child,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Daemon {
    /// Starts fapolicyd and returns once it listens.
    pub(crate) fn start(binary: &Path) -> anyhow::Result<Daemon> {
        let mut child = Command::new(binary)
            .arg("--debug-deny")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("start {}", binary.display()))?;
        let stderr = child.stderr.take().context("fapolicyd's stderr")?;
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        // Reads stderr to the end, so fapolicyd never blocks on a full pipe, keeping the last
        // lines for an error message.
        let reader = {
            let tail = Arc::clone(&tail);
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stderr)
                    .lines()
                    .map_while(Result::ok)
                {
                    if line.contains(READY) {
                        let _ = ready_tx.send(());
                    }
                    if let Ok(mut tail) = tail.lock() {
                        tail.push_back(line);
                        if tail.len() > 20 {
                            tail.pop_front();
                        }
                    }
                }
            })
        };
        let mut daemon = Daemon {
            child,
            reader: Some(reader),
        };
        if ready_rx.recv_timeout(Duration::from_secs(60)).is_err() {
            daemon.stop();
            let said = tail
                .lock()
                .map(|t| t.iter().cloned().collect::<Vec<_>>().join("\n  "))
                .unwrap_or_default();
            anyhow::bail!("fapolicyd did not start listening; it said:\n  {said}");
        }
        Ok(daemon)
    }

    /// SIGTERM, up to ten seconds for a clean exit, then SIGKILL.
    fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if matches!(self.child.try_wait(), Ok(None)) {
                let _ = self.child.kill();
            }
        }
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The type of the filesystem holding `path` (the mount with the longest matching mount point),
/// as `/proc/mounts` names it: what fapolicyd's `watch_fs` wants.
pub(crate) fn fs_type(path: &Path) -> Option<String> {
    let path = std::fs::canonicalize(path).ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    // On a tie the later entry wins: a later mount on the same point hides the earlier ones.
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let _source = fields.next()?;
            let target = fields.next()?;
            let kind = fields.next()?;
            path.starts_with(target)
                .then(|| (target.len(), kind.to_owned()))
        })
        .fold(
            None,
            |best: Option<(usize, String)>, (len, kind)| match best {
                Some((best_len, _)) if best_len > len => best,
                _ => Some((len, kind)),
            },
        )
        .map(|(_, kind)| kind)
}

/// What an authoriser adds to a baseline and how two authorisers compare, from the same run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Comparison {
    /// ringfence's time over the baseline's (p50 or wall clock), in the baseline's unit.
    pub(crate) ringfence_added: f64,
    pub(crate) fapolicyd_added: f64,
    /// Each as a multiple of the baseline.
    pub(crate) ringfence_ratio: f64,
    pub(crate) fapolicyd_ratio: f64,
    /// ringfence's added cost as a share of fapolicyd's; `None` when fapolicyd added nothing
    /// measurable, where a share means nothing.
    pub(crate) share: Option<f64>,
}

impl Comparison {
    pub(crate) fn of(base: f64, ringfence: f64, fapolicyd: f64) -> Comparison {
        let base_div = if base > 0.0 { base } else { f64::MIN_POSITIVE };
        let ringfence_added = ringfence - base;
        let fapolicyd_added = fapolicyd - base;
        Comparison {
            ringfence_added,
            fapolicyd_added,
            ringfence_ratio: ringfence / base_div,
            fapolicyd_ratio: fapolicyd / base_div,
            share: (fapolicyd_added > 0.0).then(|| ringfence_added / fapolicyd_added),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctrl_c_turns_into_an_error_the_benchmark_unwinds_with() {
        // The only test in this binary that touches SIGINT: with the handler in place the
        // signal sets the flag instead of ending the process.
        let interrupt = Interrupt::install().expect("handler");
        interrupt.check().expect("not interrupted yet");
        nix::sys::signal::raise(nix::sys::signal::Signal::SIGINT).expect("raise");
        let deadline = Instant::now() + Duration::from_secs(10);
        while interrupt.check().is_ok() {
            assert!(Instant::now() < deadline, "Ctrl-C never reached the flag");
            std::thread::sleep(Duration::from_millis(5));
        }
        let error = interrupt.check().expect_err("interrupted");
        assert!(error.to_string().contains("restored"), "{error}");
    }

    fn files(dir: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
        (
            vec![dir.join("fapolicyd.conf"), dir.join("compiled.rules")],
            vec![dir.join("data.mdb")],
        )
    }

    /// A directory standing in for /etc/fapolicyd: a conf that exists, rules that do not.
    fn etc() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("fapolicyd.conf"), "watch_fs = ext4\n").expect("conf");
        dir
    }

    fn assert_restored(dir: &Path) {
        assert_eq!(
            std::fs::read_to_string(dir.join("fapolicyd.conf")).expect("conf back"),
            "watch_fs = ext4\n"
        );
        assert!(!dir.join("compiled.rules").exists(), "created file removed");
        assert!(!dir.join("data.mdb").exists(), "state file removed");
    }

    fn change(restore: &Restore, dir: &Path) {
        restore
            .write(&dir.join("fapolicyd.conf"), b"watch_fs = tmpfs\n")
            .expect("write conf");
        restore
            .write(&dir.join("compiled.rules"), b"allow perm=any all : all\n")
            .expect("write rules");
        std::fs::write(dir.join("data.mdb"), b"db").expect("state appears");
    }

    #[test]
    fn restores_after_success() {
        let dir = etc();
        let (f, s) = files(dir.path());
        {
            let restore = Restore::new(&f, &s).expect("back up");
            change(&restore, dir.path());
            assert_eq!(
                std::fs::read_to_string(dir.path().join("fapolicyd.conf")).expect("conf"),
                "watch_fs = tmpfs\n"
            );
        }
        assert_restored(dir.path());
    }

    #[test]
    fn restores_after_error() {
        let dir = etc();
        let (f, s) = files(dir.path());
        let run = || -> anyhow::Result<()> {
            let restore = Restore::new(&f, &s)?;
            change(&restore, dir.path());
            anyhow::bail!("the benchmark failed half-way")
        };
        assert!(run().is_err());
        assert_restored(dir.path());
    }

    #[test]
    fn restores_after_panic() {
        let dir = etc();
        let (f, s) = files(dir.path());
        let outcome = std::panic::catch_unwind(|| {
            let restore = Restore::new(&f, &s).expect("back up");
            change(&restore, dir.path());
            panic!("the benchmark panicked half-way");
        });
        assert!(outcome.is_err());
        assert_restored(dir.path());
    }

    #[test]
    fn restore_twice_is_harmless() {
        let dir = etc();
        let (f, s) = files(dir.path());
        let mut restore = Restore::new(&f, &s).expect("back up");
        change(&restore, dir.path());
        restore.restore().expect("first restore");
        // The conf is changed after the restore: a second restore must not undo that.
        std::fs::write(dir.path().join("fapolicyd.conf"), "later\n").expect("write");
        restore.restore().expect("second restore");
        drop(restore);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("fapolicyd.conf")).expect("conf"),
            "later\n"
        );
    }

    #[test]
    fn removes_a_state_directory_that_appeared_and_keeps_one_that_was_there() {
        let dir = etc();
        let (appeared, existed) = (dir.path().join("run"), dir.path().join("lib"));
        std::fs::create_dir(&existed).expect("existing dir");
        let restore = Restore::new(&[], &[appeared.clone(), existed.clone()]).expect("back up");
        std::fs::create_dir(&appeared).expect("dir appears");
        drop(restore);
        assert!(!appeared.exists());
        assert!(existed.is_dir());
    }

    #[test]
    fn refuses_to_write_what_was_not_backed_up() {
        let dir = etc();
        let (f, s) = files(dir.path());
        let restore = Restore::new(&f, &s).expect("back up");
        assert!(restore.write(&dir.path().join("other"), b"x").is_err());
        assert!(!dir.path().join("other").exists());
    }

    #[test]
    fn conf_replaces_the_compared_keys_and_keeps_the_rest() {
        let original =
            "# comment\nq_size = 640\nwatch_fs = ext4,xfs\ntrust = rpmdb,file\nuid = fapolicyd\n";
        let out = conf(original, &["tmpfs".to_owned(), "ext4".to_owned()]);
        assert!(out.contains("q_size = 640\n"));
        assert!(out.contains("# comment\n"));
        assert!(out.contains("watch_fs = tmpfs,ext4\n"));
        assert!(!out.contains("ext4,xfs"));
        assert!(out.contains("trust = file\n"));
        assert!(!out.contains("rpmdb"));
        assert!(out.contains("uid = 0\n"));
        assert!(out.contains("nice_val = 0\n"));
        assert!(out.contains("integrity = none\n"));
        assert_eq!(out.matches("watch_fs").count(), 1);
    }

    #[test]
    fn comparison_arithmetic() {
        // 500 µs bare, ringfence adds 5, fapolicyd adds 50.
        let c = Comparison::of(500.0, 505.0, 550.0);
        assert_eq!(c.ringfence_added, 5.0);
        assert_eq!(c.fapolicyd_added, 50.0);
        assert!((c.ringfence_ratio - 1.01).abs() < 1e-12);
        assert!((c.fapolicyd_ratio - 1.1).abs() < 1e-12);
        assert_eq!(c.share, Some(0.1));
    }

    #[test]
    fn comparison_without_a_fapolicyd_cost_has_no_share() {
        let c = Comparison::of(500.0, 510.0, 495.0);
        assert_eq!(c.fapolicyd_added, -5.0);
        assert_eq!(c.share, None);
        // A negative ringfence cost (noise) is reported as it is, not clamped.
        let c = Comparison::of(500.0, 490.0, 600.0);
        assert_eq!(c.share, Some(-0.1));
    }

    #[test]
    fn comparison_with_a_zero_baseline_does_not_divide_by_zero() {
        let c = Comparison::of(0.0, 1.0, 2.0);
        assert!(!c.ringfence_ratio.is_nan());
        assert_eq!(c.share, Some(0.5));
    }
}
