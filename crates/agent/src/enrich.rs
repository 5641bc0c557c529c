//! What the agent adds to a kernel-observed event before engines see it: user and group names,
//! the executable, the cgroup and the container id, and absolute paths for relative ones.
//!
//! Engines get no file system, so names are resolved here, once, in the agent; BPF programs
//! stay as small as they are (they only observe and forward). Everything is read from local
//! files only (`/etc/passwd`, `/etc/group`, `/proc`): no NSS, LDAP or container runtime is
//! asked, so a lookup can never block the BPF reader on the network. What cannot be read is
//! left empty, never guessed.

use ringfence_protocol::{Ancestor, MAX_ANCESTORS};
use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::RwLock;
use std::time::{Duration, Instant, SystemTime};

/// Processes whose executable and cgroup are kept; the oldest goes first.
const PROCESS_CAPACITY: usize = 4096;
/// How often the account files are checked for a change (by modification time).
const NAMES_CHECK_EVERY: Duration = Duration::from_secs(5);
/// `AT_FDCWD`: a path relative to the working directory.
const AT_FDCWD: i32 = -100;

/// Most strings and bytes of an ancestor's command line that are kept.
const ANCESTOR_ARGS: usize = 64;
const ANCESTOR_ARGV_BYTES: usize = 4096;

/// A command line cut to [`ANCESTOR_ARGS`] strings and [`ANCESTOR_ARGV_BYTES`] bytes.
pub fn bounded_argv(mut argv: Vec<String>) -> Vec<String> {
    argv.truncate(ANCESTOR_ARGS);
    let mut total = 0;
    let keep = argv
        .iter()
        .take_while(|arg| {
            total += arg.len();
            total <= ANCESTOR_ARGV_BYTES
        })
        .count();
    argv.truncate(keep);
    argv
}

/// The ancestors of a process whose parent is `ppid`, parent first, from `proc_root`: at most
/// `depth` (and [`MAX_ANCESTORS`]), ending at pid 1 or the first one that cannot be read. Each
/// costs three reads of `/proc`.
pub fn ancestry(proc_root: &str, ppid: u32, depth: usize) -> Vec<Ancestor> {
    let mut out = Vec::new();
    let mut pid = ppid;
    while pid > 0 && out.len() < depth.min(MAX_ANCESTORS) {
        let dir = format!("{proc_root}/{pid}");
        let Ok(stat) = std::fs::read_to_string(format!("{dir}/stat")) else {
            break;
        };
        let exe = std::fs::read_link(format!("{dir}/exe"))
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let argv = std::fs::read(format!("{dir}/cmdline"))
            .map(|bytes| bounded_argv(ringfence_sensor::procfs::parse_cmdline(&bytes)))
            .unwrap_or_default();
        out.push(Ancestor { pid, exe, argv });
        match ringfence_sensor::procfs::parse_stat_ppid(&stat) {
            Some(parent) if pid != 1 => pid = parent,
            _ => break,
        }
    }
    out
}

/// `id -> name` from a file of `name:password:id:...` lines (`/etc/passwd`, `/etc/group`).
/// The first name of an id wins, as `getpwuid` answers; malformed lines are skipped.
pub fn parse_ids(text: &str) -> HashMap<u32, String> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let mut parts = line.split(':');
        let (Some(name), Some(_), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if name.is_empty() || name.starts_with('#') || name.starts_with('+') {
            continue;
        }
        if let Ok(id) = id.parse::<u32>() {
            out.entry(id).or_insert_with(|| name.to_owned());
        }
    }
    out
}

/// The cgroup path of a process from `/proc/PID/cgroup`: the v2 entry (`0::/path`), else the
/// systemd v1 hierarchy's, else the first one's.
pub fn cgroup_path(text: &str) -> String {
    let mut first = None;
    let mut systemd = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            return path.to_owned();
        }
        if controllers == "name=systemd" {
            systemd = Some(path);
        }
        first.get_or_insert(path);
    }
    systemd.or(first).unwrap_or_default().to_owned()
}

/// The container id a cgroup path names: the last component holding a 64-hex-digit id, as
/// Docker (`/docker/<id>`, `docker-<id>.scope`), containerd (`cri-containerd-<id>.scope`),
/// CRI-O (`crio-<id>.scope`), Podman (`libpod-<id>.scope`) and Kubernetes pods
/// (`/kubepods/.../<id>`) write it.
pub fn container_id(cgroup: &str) -> Option<&str> {
    cgroup.rsplit('/').find_map(|component| {
        let bytes = component.as_bytes();
        (0..bytes.len().saturating_sub(63)).find_map(|start| {
            let run = component.get(start..start + 64)?;
            let boundary = |at: Option<&u8>| at.is_none_or(|b| !b.is_ascii_hexdigit());
            (run.bytes().all(|b| b.is_ascii_hexdigit())
                && (start == 0 || boundary(bytes.get(start - 1)))
                && boundary(bytes.get(start + 64)))
            .then_some(run)
        })
    })
}

/// Whether `exe`'s file name is what the kernel would call the task (`comm`: the name cut to
/// 15 bytes).
pub fn names_task(exe: &str, comm: &str) -> bool {
    let name = exe.rsplit('/').next().unwrap_or_default().as_bytes();
    !comm.is_empty() && name.get(..name.len().min(15)) == Some(comm.as_bytes())
}

/// `path` made absolute against `base` when it is relative and `base` is known.
pub fn absolute(path: &str, base: Option<&str>) -> String {
    match base {
        Some(base) if !path.starts_with('/') && base.starts_with('/') => {
            Path::new(base).join(path).display().to_string()
        }
        _ => path.to_owned(),
    }
}

struct Accounts {
    file: &'static str,
    ids: HashMap<u32, String>,
    modified: Option<SystemTime>,
}

impl Accounts {
    fn new(file: &'static str) -> Accounts {
        Accounts {
            file,
            ids: HashMap::new(),
            modified: None,
        }
    }

    /// The file's new modification time when it changed since it was read (or never was).
    fn changed(&self) -> Option<Option<SystemTime>> {
        let modified = std::fs::metadata(self.file).and_then(|m| m.modified()).ok();
        (modified.is_none() || modified != self.modified).then_some(modified)
    }
}

/// User and group names for every thread that decides: the permission workers name the user
/// of each exec, the BPF reader the user of each kernel-observed event. Lookups take a read
/// lock; one caller at a time checks the files for a change, at most every few seconds.
pub struct AccountNames {
    tables: RwLock<(Accounts, Accounts)>,
    checked: std::sync::Mutex<Option<Instant>>,
}

impl Default for AccountNames {
    fn default() -> Self {
        AccountNames {
            tables: RwLock::new((Accounts::new("/etc/passwd"), Accounts::new("/etc/group"))),
            checked: std::sync::Mutex::new(None),
        }
    }
}

impl std::fmt::Debug for AccountNames {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountNames").finish_non_exhaustive()
    }
}

impl AccountNames {
    /// The names of `uid` and `gid`; empty when the local files have none.
    pub fn user_group(&self, uid: u32, gid: u32) -> (String, String) {
        self.check();
        let Ok(tables) = self.tables.read() else {
            return (String::new(), String::new());
        };
        let (users, groups) = &*tables;
        (
            users.ids.get(&uid).cloned().unwrap_or_default(),
            groups.ids.get(&gid).cloned().unwrap_or_default(),
        )
    }

    /// Rereads the files that changed, when it is time and no other thread is at it.
    fn check(&self) {
        let Ok(mut checked) = self.checked.try_lock() else {
            return;
        };
        if checked.is_some_and(|at| at.elapsed() < NAMES_CHECK_EVERY) {
            return;
        }
        *checked = Some(Instant::now());
        let (users, groups) = match self.tables.read() {
            Ok(tables) => (tables.0.changed(), tables.1.changed()),
            Err(_) => return,
        };
        // Files are read outside the write lock; only swapping the tables takes it.
        let users = users.map(|modified| (modified, read_ids("/etc/passwd")));
        let groups = groups.map(|modified| (modified, read_ids("/etc/group")));
        if let Ok(mut tables) = self.tables.write() {
            if let Some((modified, ids)) = users {
                tables.0.modified = modified;
                tables.0.ids = ids;
            }
            if let Some((modified, ids)) = groups {
                tables.1.modified = modified;
                tables.1.ids = ids;
            }
        }
    }
}

fn read_ids(file: &str) -> HashMap<u32, String> {
    std::fs::read_to_string(file)
        .map(|text| parse_ids(&text))
        .unwrap_or_default()
}

/// What the agent knows about one process between its execs.
#[derive(Clone, Default)]
struct Known {
    exe: String,
    cgroup: String,
    container_id: String,
    /// False while all we know is the name its last `execve` was given: `/proc` is read on the
    /// process's first event after it.
    read: bool,
    /// The working directory when its `execve` was read (an exec keeps it), for the relative
    /// paths of a process gone before its later events are read.
    cwd: Option<String>,
    ancestors: Vec<Ancestor>,
}

/// What [`Enricher::process`] tells about a process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    pub exe: String,
    pub cgroup: String,
    pub container_id: String,
    pub ancestors: Vec<Ancestor>,
}

/// Caches for the BPF reader thread (one owner, no locks).
pub struct Enricher {
    proc_root: &'static str,
    names: AccountNames,
    processes: HashMap<u32, Known>,
    order: VecDeque<u32>,
}

impl Default for Enricher {
    fn default() -> Self {
        Enricher {
            proc_root: "/proc",
            names: AccountNames::default(),
            processes: HashMap::new(),
            order: VecDeque::new(),
        }
    }
}

impl Enricher {
    /// The names of `uid` and `gid`; empty when the local files have none.
    pub fn user_group(&self, uid: u32, gid: u32) -> (String, String) {
        self.names.user_group(uid, gid)
    }

    /// `tgid` is executing `filename` (as given to `execve`): what was known about it is
    /// stale (a new image, maybe a new cgroup set just before), and `filename`, when absolute,
    /// is its exe if the process is gone before `/proc` is read (a short `mv` often is).
    pub fn exec(&mut self, tgid: u32, filename: &str) {
        let known = Known {
            exe: if filename.starts_with('/') {
                filename.to_owned()
            } else {
                String::new()
            },
            cwd: self.link(tgid, "cwd"),
            ..Known::default()
        };
        self.remember(tgid, known);
    }

    /// The target of `/proc/<tgid>/<name>`, when it can be read.
    fn link(&self, tgid: u32, name: &str) -> Option<String> {
        std::fs::read_link(format!("{}/{tgid}/{name}", self.proc_root))
            .ok()
            .and_then(|p| p.to_str().map(str::to_owned))
    }

    fn remember(&mut self, tgid: u32, known: Known) {
        if self.processes.insert(tgid, known).is_none() {
            self.order.push_back(tgid);
        }
        while self.order.len() > PROCESS_CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.processes.remove(&old);
            }
        }
    }

    /// The executable, cgroup path, container id and ancestors of `tgid` (whose parent is
    /// `ppid`), from `/proc` on its first event since its exec. `comm` is the task name the
    /// record carries: when `/proc` already shows a later image (a shell that executed its last
    /// command in place), the name the process was executed by is its exe at the time of the
    /// event, if that agrees with `comm`.
    pub fn process(&mut self, tgid: u32, ppid: u32, comm: &str) -> Seen {
        let known = self.processes.get(&tgid);
        if let Some(known) = known.filter(|known| known.read) {
            return Seen {
                exe: known.exe.clone(),
                cgroup: known.cgroup.clone(),
                container_id: known.container_id.clone(),
                ancestors: known.ancestors.clone(),
            };
        }
        let exec_name = known.map(|known| known.exe.clone()).unwrap_or_default();
        let cwd = known.and_then(|known| known.cwd.clone());
        let proc_exe = self.link(tgid, "exe");
        let cgroup = std::fs::read_to_string(format!("{}/{tgid}/cgroup", self.proc_root))
            .map(|text| cgroup_path(&text))
            .unwrap_or_default();
        let container_id = container_id(&cgroup).unwrap_or_default().to_owned();
        let ancestors = ancestry(self.proc_root, ppid, MAX_ANCESTORS);
        let read = proc_exe.is_some();
        let exe = match proc_exe {
            Some(exe) if names_task(&exe, comm) || !names_task(&exec_name, comm) => exe,
            _ => exec_name,
        };
        // A process gone before we looked is not remembered as read: its pid may be reused.
        if read || !exe.is_empty() {
            self.remember(
                tgid,
                Known {
                    exe: exe.clone(),
                    cgroup: cgroup.clone(),
                    container_id: container_id.clone(),
                    read,
                    cwd,
                    ancestors: ancestors.clone(),
                },
            );
        }
        Seen {
            exe,
            cgroup,
            container_id,
            ancestors,
        }
    }

    /// `path` as `tgid` gave it relative to `dfd`, made absolute when it can still be read
    /// where it pointed (the working directory, or the directory descriptor's target); for a
    /// process already gone, the working directory it had at its exec.
    pub fn resolve(&self, tgid: u32, dfd: i32, path: &str) -> String {
        if path.starts_with('/') {
            return path.to_owned();
        }
        let base = if dfd == AT_FDCWD {
            self.link(tgid, "cwd").or_else(|| {
                self.processes
                    .get(&tgid)
                    .and_then(|known| known.cwd.clone())
            })
        } else if dfd >= 0 {
            self.link(tgid, &format!("fd/{dfd}"))
        } else {
            None
        };
        absolute(path, base.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_files_map_ids_to_their_first_name() {
        let ids = parse_ids(
            "root:x:0:0:root:/root:/bin/bash\n# comment\nbroken\nalice:x:1000:1000::/home/alice:/bin/sh\ntoor:x:0:0::/:/bin/sh\n+nis::::::\n",
        );
        assert_eq!(ids.get(&0).map(String::as_str), Some("root"));
        assert_eq!(ids.get(&1000).map(String::as_str), Some("alice"));
        assert_eq!(ids.len(), 2);
        let groups = parse_ids("wheel:x:10:alice,bob\n");
        assert_eq!(groups.get(&10).map(String::as_str), Some("wheel"));
    }

    #[test]
    fn cgroup_paths_and_container_ids_of_each_runtime() {
        let id = "4f2a1c9e0b7d3e5f6a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f";
        assert_eq!(
            cgroup_path("0::/user.slice/session-1.scope\n"),
            "/user.slice/session-1.scope"
        );
        assert_eq!(
            cgroup_path("12:cpu:/x\n1:name=systemd:/docker/abc\n"),
            "/docker/abc"
        );
        for cgroup in [
            format!("/system.slice/docker-{id}.scope"),
            format!("/docker/{id}"),
            format!("/system.slice/cri-containerd-{id}.scope"),
            format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234.slice/crio-{id}.scope"
            ),
            format!("/kubepods/besteffort/pod0d3c6f1e-1b2a-4c3d-9e8f-7a6b5c4d3e2f/{id}"),
            format!("/machine.slice/libpod-{id}.scope/container"),
        ] {
            assert_eq!(container_id(&cgroup), Some(id), "{cgroup}");
        }
        assert_eq!(
            container_id("/user.slice/user-1000.slice/session-3.scope"),
            None
        );
        assert_eq!(container_id(""), None);
        // 65 hex digits is not an id of 64.
        assert_eq!(container_id(&format!("/docker/{id}a")), None);
    }

    #[test]
    fn relative_paths_are_made_absolute_against_the_process() {
        assert_eq!(absolute("b.txt", Some("/tmp/w")), "/tmp/w/b.txt");
        assert_eq!(absolute("/etc/x", Some("/tmp/w")), "/etc/x");
        assert_eq!(absolute("b.txt", None), "b.txt");
        let enricher = Enricher::default();
        let cwd = std::env::current_dir().expect("cwd");
        assert_eq!(
            enricher.resolve(std::process::id(), AT_FDCWD, "x"),
            cwd.join("x").display().to_string()
        );
        assert_eq!(enricher.resolve(u32::MAX, AT_FDCWD, "x"), "x");
    }

    #[test]
    fn this_process_is_known_by_its_exe_and_cgroup() {
        let mut enricher = Enricher::default();
        let comm = std::fs::read_to_string("/proc/self/comm").expect("comm");
        let seen = enricher.process(
            std::process::id(),
            std::os::unix::process::parent_id(),
            comm.trim(),
        );
        let (exe, cgroup) = (seen.exe, seen.cgroup);
        assert_eq!(
            seen.ancestors.first().map(|a| a.pid),
            Some(std::os::unix::process::parent_id())
        );
        assert_eq!(
            exe,
            std::env::current_exe().expect("exe").display().to_string()
        );
        assert!(cgroup.starts_with('/'), "{cgroup:?}");
        let (user, _) = enricher.user_group(0, 0);
        assert_eq!(user, "root");
    }

    #[test]
    fn ancestry_is_bounded_and_ends_at_init() {
        let me = std::process::id();
        let chain = ancestry("/proc", me, MAX_ANCESTORS);
        assert!(
            !chain.is_empty() && chain.len() <= MAX_ANCESTORS,
            "{chain:?}"
        );
        assert_eq!(chain[0].pid, me);
        assert_eq!(
            chain[0].exe,
            std::env::current_exe().expect("exe").display().to_string()
        );
        assert!(!chain[0].argv.is_empty());
        let init = ancestry("/proc", 1, MAX_ANCESTORS);
        assert_eq!(init.iter().map(|a| a.pid).collect::<Vec<_>>(), [1]);
        assert!(ancestry("/proc", 0, MAX_ANCESTORS).is_empty());
        assert!(ancestry("/nonexistent", me, MAX_ANCESTORS).is_empty());
        assert_eq!(ancestry("/proc", me, 1).len(), 1);
        let long = bounded_argv(vec!["x".repeat(3000), "y".repeat(2000), "z".into()]);
        assert_eq!(long.len(), 1);
        assert_eq!(bounded_argv(vec!["a".into(); 100]).len(), 64);
    }

    #[test]
    fn an_image_executed_since_the_event_does_not_name_its_process() {
        assert!(names_task("/usr/bin/bash", "bash"));
        assert!(names_task(
            "/opt/a-very-long-program-name",
            "a-very-long-pro"
        ));
        assert!(!names_task("/usr/bin/sleep", "bash"));
        assert!(!names_task("", "bash"));
        // This test's process as seen for an event of a shell it has since replaced: the
        // shell it was executed as, not what /proc shows now.
        let mut enricher = Enricher::default();
        let me = std::process::id();
        enricher.exec(me, "/usr/bin/bash");
        assert_eq!(enricher.process(me, 1, "bash").exe, "/usr/bin/bash");
        // A task that renamed itself keeps the exe /proc shows.
        enricher.exec(me, "/usr/bin/bash");
        let exe = std::env::current_exe().expect("exe").display().to_string();
        assert_eq!(enricher.process(me, 1, "renamed").exe, exe);
    }

    #[test]
    fn a_process_gone_before_its_event_keeps_the_name_it_was_executed_by() {
        let mut enricher = Enricher::default();
        enricher.exec(u32::MAX, "/usr/bin/mv");
        assert_eq!(
            enricher.process(u32::MAX, u32::MAX, "mv"),
            Seen {
                exe: "/usr/bin/mv".to_owned(),
                ..Seen::default()
            }
        );
        enricher.exec(u32::MAX - 1, "mv");
        assert_eq!(enricher.process(u32::MAX - 1, u32::MAX, "mv").exe, "");
        // The working directory read at the exec outlives the process.
        let me = std::process::id();
        enricher.exec(me, "/x");
        enricher
            .processes
            .entry(me)
            .and_modify(|known| known.cwd = Some("/at/exec".into()));
        enricher.proc_root = "/nonexistent";
        assert_eq!(enricher.resolve(me, AT_FDCWD, "f"), "/at/exec/f");
    }
}
