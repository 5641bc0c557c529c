//! The event corpus: JSON lines, one [`Event`] per line, blank lines ignored.
//!
//! Corpora are what the recorder writes, what replay sensors read, what preflight runs a
//! release against and what the generator makes for tests. Reading is strict: a malformed line
//! is an error naming the file and line, never skipped silently, because a preflight that
//! quietly ran on half a corpus would pass releases it should not.

use crate::event::{Event, ExecEvent, ExitEvent, ForkEvent, OpenEvent};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// The longest line we accept; longer lines are garbage or an attack.
pub const MAX_LINE_BYTES: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    /// The corpus could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A line is not a valid event.
    #[error("{path}:{line}: {reason}")]
    Malformed {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

/// Reads a whole corpus file.
pub fn read_file(path: &Path) -> Result<Vec<Event>, CorpusError> {
    let file = std::fs::File::open(path).map_err(|source| CorpusError::Io {
        path: path.to_owned(),
        source,
    })?;
    read(BufReader::new(file), path)
}

/// Reads a corpus from any reader; `name` is used in errors.
pub fn read(mut reader: impl BufRead, name: &Path) -> Result<Vec<Event>, CorpusError> {
    let mut events = Vec::new();
    let mut buf = Vec::new();
    let mut line = 0;
    loop {
        buf.clear();
        line += 1;
        let n = std::io::Read::take(&mut reader, MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|source| CorpusError::Io {
                path: name.to_owned(),
                source,
            })?;
        if n == 0 {
            return Ok(events);
        }
        let malformed = |reason: String| CorpusError::Malformed {
            path: name.to_owned(),
            line,
            reason,
        };
        if buf.len() > MAX_LINE_BYTES {
            return Err(malformed(format!(
                "line is longer than {MAX_LINE_BYTES} bytes"
            )));
        }
        let text = std::str::from_utf8(&buf).map_err(|_| malformed("not valid UTF-8".into()))?;
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let event = serde_json::from_str(text).map_err(|e| malformed(e.to_string()))?;
        events.push(event);
    }
}

/// Writes events as JSON lines.
pub fn write(mut out: impl Write, events: &[Event]) -> std::io::Result<()> {
    for event in events {
        serde_json::to_writer(&mut out, event)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

struct Program {
    exe: &'static str,
    args: &'static [&'static [&'static str]],
}

const PROGRAMS: &[Program] = &[
    Program {
        exe: "/usr/bin/ls",
        args: &[&["-la"], &["--color=auto"], &[]],
    },
    Program {
        exe: "/usr/bin/cat",
        args: &[&["/etc/os-release"], &["/proc/meminfo"]],
    },
    Program {
        exe: "/usr/bin/grep",
        args: &[&["-r", "TODO", "."], &["-i", "error", "/var/log/syslog"]],
    },
    Program {
        exe: "/usr/bin/git",
        args: &[
            &["status"],
            &["fetch", "origin"],
            &["log", "--oneline", "-5"],
        ],
    },
    Program {
        exe: "/usr/bin/python3",
        args: &[
            &["manage.py", "migrate"],
            &["-m", "pip", "list"],
            &["/opt/app/worker.py"],
        ],
    },
    Program {
        exe: "/usr/bin/ssh",
        args: &[&["-T", "git@github.com"], &["deploy@10.0.3.7"]],
    },
    Program {
        exe: "/usr/bin/curl",
        args: &[
            &["-fsS", "http://127.0.0.1:8080/health"],
            &["-o", "/tmp/pkg.tgz", "https://example.com/pkg.tgz"],
        ],
    },
    Program {
        exe: "/usr/bin/systemctl",
        args: &[&["status", "nginx"], &["is-active", "postgresql"]],
    },
    Program {
        exe: "/usr/bin/ps",
        args: &[&["aux"], &["-ef"]],
    },
    Program {
        exe: "/usr/bin/sed",
        args: &[&["-i", "s/a/b/", "config.ini"], &["-n", "1p"]],
    },
    Program {
        exe: "/usr/bin/make",
        args: &[&["-j2"], &["test"]],
    },
    Program {
        exe: "/usr/bin/gcc",
        args: &[&["-O2", "-c", "main.c"], &["-o", "app", "main.o"]],
    },
    Program {
        exe: "/usr/bin/tar",
        args: &[&["-xzf", "/tmp/pkg.tgz"], &["-czf", "backup.tgz", "data"]],
    },
    Program {
        exe: "/usr/bin/bash",
        args: &[&["-c", "echo ok"], &["/opt/app/deploy.sh"], &[]],
    },
    Program {
        exe: "/usr/bin/dash",
        args: &[&["-c", "run-parts /etc/cron.daily"]],
    },
    Program {
        exe: "/usr/bin/sudo",
        args: &[
            &["systemctl", "restart", "nginx"],
            &["-u", "postgres", "psql"],
        ],
    },
    Program {
        exe: "/usr/sbin/nginx",
        args: &[&["-t"], &["-s", "reload"]],
    },
    Program {
        exe: "/usr/lib/postgresql/15/bin/postgres",
        args: &[&["-D", "/var/lib/postgresql/15/main"]],
    },
    Program {
        exe: "/usr/bin/apt-get",
        args: &[&["update"], &["install", "-y", "jq"]],
    },
    Program {
        exe: "/usr/bin/jq",
        args: &[&[".items[]"], &["-r", ".name"]],
    },
    Program {
        exe: "/usr/bin/node",
        args: &[&["server.js"], &["/usr/bin/npm", "test"]],
    },
    Program {
        exe: "/usr/bin/docker",
        args: &[&["ps"], &["logs", "web"]],
    },
    Program {
        exe: "/usr/bin/find",
        args: &[
            &[".", "-name", "*.log"],
            &["/tmp", "-mtime", "+7", "-delete"],
        ],
    },
    Program {
        exe: "/usr/bin/uname",
        args: &[&["-a"], &["-r"]],
    },
    Program {
        exe: "/usr/bin/id",
        args: &[&[], &["-u"]],
    },
];

const PARENTS: &[&str] = &[
    "/usr/bin/bash",
    "/usr/sbin/sshd",
    "/usr/lib/systemd/systemd",
    "/usr/sbin/cron",
    "/usr/bin/python3",
    "/usr/bin/make",
    "/usr/bin/sudo",
    "/usr/bin/node",
];

/// (uid, gid, home directory).
const USERS: &[(u32, u32, &str)] = &[
    (0, 0, "/root"),
    (33, 33, "/var/www"),
    (104, 110, "/var/lib/postgresql"),
    (1000, 1000, "/home/alice"),
    (1001, 1001, "/home/bob"),
    (1002, 1002, "/home/ci-runner"),
];

const OPENED: &[&str] = &[
    "/etc/passwd",
    "/etc/ssl/openssl.cnf",
    "/etc/ld.so.cache",
    "/var/log/syslog",
    "/etc/shadow",
    "/etc/sudoers",
    "/home/alice/.ssh/authorized_keys",
];

/// Generates a reproducible corpus of `count` events from `seed`.
///
/// About four in five events are execs of common programs by common parents and users; the
/// rest are opens of familiar files and fork/exit notifications, with plausible pid reuse.
pub fn generate(count: usize, seed: u64) -> Vec<Event> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut next_pid: u32 = 2000;
    let mut live: Vec<u32> = Vec::new();
    let mut events = Vec::with_capacity(count);
    while events.len() < count {
        let roll: u32 = rng.random_range(0..100);
        let event = if roll < 80 || live.is_empty() {
            let program = &PROGRAMS[rng.random_range(0..PROGRAMS.len())];
            let args = program.args[rng.random_range(0..program.args.len())];
            let (uid, gid, home) = USERS[rng.random_range(0..USERS.len())];
            let parent = PARENTS[rng.random_range(0..PARENTS.len())];
            let cwd = if rng.random_bool(0.5) {
                home
            } else {
                "/opt/app"
            };
            next_pid += rng.random_range(1..7);
            let pid = next_pid;
            live.push(pid);
            let argv0 = program.exe.rsplit('/').next().unwrap_or(program.exe);
            let argv = std::iter::once(argv0)
                .chain(args.iter().copied())
                .map(str::to_owned)
                .collect();
            Event::Exec(ExecEvent {
                pid,
                ppid: pid.saturating_sub(rng.random_range(1..50)),
                uid,
                gid,
                exe: program.exe.to_owned(),
                argv,
                cwd: cwd.to_owned(),
                parent_exe: parent.to_owned(),
                user: String::new(),
                group: String::new(),
                ancestors: Vec::new(),
            })
        } else if roll < 88 {
            let (uid, gid, _) = USERS[rng.random_range(0..USERS.len())];
            let pid = live[rng.random_range(0..live.len())];
            Event::Open(OpenEvent {
                pid,
                uid,
                gid,
                path: OPENED[rng.random_range(0..OPENED.len())].to_owned(),
                exe: PROGRAMS[rng.random_range(0..PROGRAMS.len())].exe.to_owned(),
                write: rng.random_bool(0.1),
            })
        } else if roll < 94 {
            let parent_pid = live[rng.random_range(0..live.len())];
            next_pid += 1;
            live.push(next_pid);
            Event::Fork(ForkEvent {
                parent_pid,
                child_pid: next_pid,
            })
        } else {
            let pid = live.swap_remove(rng.random_range(0..live.len()));
            let exit_code = if rng.random_bool(0.9) {
                0
            } else {
                rng.random_range(1..128)
            };
            Event::Exit(ExitEvent { pid, exit_code })
        };
        events.push(event);
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_reproducible() {
        assert_eq!(generate(500, 7), generate(500, 7));
        assert_ne!(generate(500, 7), generate(500, 8));
        assert_eq!(generate(123, 1).len(), 123);
    }

    #[test]
    fn roundtrip_through_json_lines() {
        let events = generate(200, 3);
        let mut bytes = Vec::new();
        write(&mut bytes, &events).expect("writes");
        let back = read(bytes.as_slice(), Path::new("mem")).expect("reads");
        assert_eq!(back, events);
    }

    #[test]
    fn recorded_kernel_kinds_read_and_write_back_the_same() {
        // As `ringfence record --bpf` writes them, next to the connector's kinds.
        let text = r#"{"kind":"fork","parent_pid":1,"child_pid":2}
{"kind":"file_change","process":{"pid":2,"ppid":1,"uid":0,"gid":0,"euid":0,"egid":0,"user":"root","group":"root","exe":"/usr/bin/mv","comm":"mv","cgroup":"/","container_id":""},"op":"rename","path":"/tmp/a","target":"/tmp/b"}
{"kind":"network","process":{"pid":3,"ppid":1,"uid":0,"gid":0,"euid":0,"egid":0,"user":"root","group":"root","exe":"/usr/bin/bash","comm":"bash","cgroup":"","container_id":""},"op":"connect","local_ip":"127.0.0.1","local_port":0,"remote_ip":"127.0.0.1","remote_port":22}
{"kind":"privilege","process":{"pid":4,"ppid":1,"uid":0,"gid":0,"euid":0,"egid":0,"user":"root","group":"root","exe":"/usr/bin/su","comm":"su","cgroup":"","container_id":""},"op":"setresuid","args":[1000,1000,1000]}
"#;
        let events = read(text.as_bytes(), Path::new("k.jsonl")).expect("reads");
        let kinds: Vec<&str> = events.iter().map(Event::kind).collect();
        assert_eq!(kinds, ["fork", "file_change", "network", "privilege"]);
        let mut bytes = Vec::new();
        write(&mut bytes, &events).expect("writes");
        assert_eq!(String::from_utf8(bytes).expect("utf-8"), text);
    }

    #[test]
    fn malformed_line_is_named() {
        let text =
            "{\"kind\":\"exit\",\"pid\":1,\"exit_code\":0}\n\n{\"kind\":\"exec\",\"pid\":\"x\"}\n";
        let err = read(text.as_bytes(), Path::new("c.jsonl")).expect_err("line 3 is bad");
        let message = err.to_string();
        assert!(message.starts_with("c.jsonl:3: "), "{message}");
    }

    #[test]
    fn unknown_kind_and_garbage_are_rejected() {
        for bad in ["{\"kind\":\"teleport\"}", "\u{1}\u{2}garbage", "[1,2]"] {
            let err = read(bad.as_bytes(), Path::new("x")).expect_err(bad);
            assert!(
                matches!(err, CorpusError::Malformed { line: 1, .. }),
                "{err}"
            );
        }
        let err = read(&b"\xff\xfe\n"[..], Path::new("x")).expect_err("not utf-8");
        assert!(err.to_string().contains("UTF-8"));
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = read_file(Path::new("/nonexistent/corpus.jsonl")).expect_err("missing");
        assert!(err.to_string().contains("/nonexistent/corpus.jsonl"));
    }
}
