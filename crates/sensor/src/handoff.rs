//! Handing the live kernel channels to a new image of the agent across `execve` (self-upgrade).
//!
//! The fanotify group is the one thing an agent cannot reopen without a gap: a new group starts
//! empty, and between closing the old one and marking the new one execs would run unchecked
//! (or, with permission events already read, be allowed by the kernel on close). So the old
//! image keeps the group open across `execve`: it stops reading, answers every event it has
//! read, clears close-on-exec on duplicates of the group and of the process-connector socket,
//! and names their numbers in [`HANDOFF_ENV`]. Events that arrive meanwhile wait in the kernel
//! queue and are read by the new image, which adopts the descriptors here, at start, once.
//!
//! The exec keeps the pid, so the guard's child, systemd's `MAINPID` and audit trails stay
//! right without telling anyone.

use crate::ProcConnector;
use crate::entries::EntryWatch;
use crate::error::SensorError;
use crate::fanotify::{Fanotify, FanotifyConfig};
use ringfence_sys as sys;
use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

/// The environment variable naming the handed-over descriptors, e.g.
/// `fanotify=5,audit=1,proc=6,entries=7`.
pub const HANDOFF_ENV: &str = "RINGFENCE_HANDOFF";

/// What `/proc/self/fd/N` reads for a fanotify group.
const FANOTIFY_LINK: &str = "anon_inode:[fanotify]";
/// What `/proc/self/fd/N` reads for any socket.
const SOCKET_LINK: &str = "socket:[";

/// The live channels of a running agent, as handed to or taken from another image.
#[derive(Debug, Default)]
pub struct Channels {
    pub fanotify: Option<Fanotify>,
    pub proc: Option<ProcConnector>,
    /// The group watching the entries of the agent's own files (self-protection).
    pub entries: Option<EntryWatch>,
    /// The BPF sensor, loaded (or refused, with why) before the agent confined itself. Not
    /// handed across `execve`: its programs detach with the old image and the new one loads
    /// them again, a gap in observation only, never in authorisation.
    pub bpf: Option<Result<ringfence_bpf_sensor::BpfSensor, ringfence_bpf_sensor::BpfError>>,
}

/// Duplicates of the channels' descriptors that survive `execve`, and the value of
/// [`HANDOFF_ENV`] that names them. Dropped without an exec, it closes only the duplicates.
#[derive(Debug)]
pub struct Inheritable {
    _fds: Vec<OwnedFd>,
    env: String,
}

impl Inheritable {
    /// The value to put in [`HANDOFF_ENV`] for the new image.
    pub fn env_value(&self) -> &str {
        &self.env
    }
}

impl Channels {
    /// Makes inheritable duplicates of every channel.
    pub fn inheritable(&self) -> Result<Inheritable, SensorError> {
        let mut fds = Vec::new();
        let mut parts = Vec::new();
        if let Some(fan) = &self.fanotify {
            let fd = fan.inheritable_fd()?;
            parts.push(format!("fanotify={}", fd.as_raw_fd()));
            parts.push(format!("audit={}", u8::from(fan.audit_enabled())));
            for path in fan.ignored() {
                parts.push(format!(
                    "ignored={}",
                    hex::encode(path.as_os_str().as_bytes())
                ));
            }
            fds.push(fd);
        }
        if let Some(proc) = &self.proc {
            let fd = proc.inheritable_fd()?;
            parts.push(format!("proc={}", fd.as_raw_fd()));
            fds.push(fd);
        }
        if let Some(entries) = &self.entries {
            let fd = entries.inheritable_fd()?;
            parts.push(format!("entries={}", fd.as_raw_fd()));
            fds.push(fd);
        }
        Ok(Inheritable {
            _fds: fds,
            env: parts.join(","),
        })
    }

    /// The channels a previous image handed over, if [`HANDOFF_ENV`] names any: `Ok(None)` for
    /// a fresh start. Works once per process; later calls return `Ok(None)`. A handoff that
    /// names a descriptor which is not open or not of the right kind is an error: the caller
    /// should exit so that its supervisor starts a fresh agent, rather than run blind.
    pub fn adopt_from_env(config: &FanotifyConfig) -> Result<Option<Channels>, SensorError> {
        let Ok(value) = std::env::var(HANDOFF_ENV) else {
            return Ok(None);
        };
        let Some(mut inherited) = sys::fd::Inherited::claim() else {
            return Ok(None);
        };
        let spec = HandoffSpec::parse(&value)?;
        let mut channels = Channels::default();
        if let Some(fd) = spec.fanotify {
            expect_group(fd, false)?;
            let group = inherited
                .adopt(fd, FANOTIFY_LINK)
                .map_err(|e| SensorError::io(format!("adopt fanotify descriptor {fd}"), e))?;
            channels.fanotify = Some(Fanotify::adopt(group, config, spec.audit, spec.ignored)?);
        }
        if let Some(fd) = spec.proc {
            let socket = inherited.adopt(fd, SOCKET_LINK).map_err(|e| {
                SensorError::io(format!("adopt process connector descriptor {fd}"), e)
            })?;
            channels.proc = Some(ProcConnector::adopt(socket));
        }
        if let Some(fd) = spec.entries {
            expect_group(fd, true)?;
            let group = inherited
                .adopt(fd, FANOTIFY_LINK)
                .map_err(|e| SensorError::io(format!("adopt entry watch descriptor {fd}"), e))?;
            channels.entries = Some(EntryWatch::adopt(group));
        }
        Ok(Some(channels))
    }
}

/// Checks that descriptor `fd` is the right one of our two fanotify groups: the entry watch
/// reports directory and name (`FAN_REPORT_DFID_NAME`), the permission group does not. Both
/// read `anon_inode:[fanotify]` in /proc, so swapped numbers would otherwise pass, and the
/// permission group read as an entry watch would never answer its events.
fn expect_group(fd: i32, entry_watch: bool) -> Result<(), SensorError> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))
        .map_err(|e| SensorError::io(format!("read fdinfo of descriptor {fd}"), e))?;
    let flags = group_flags(&info)
        .ok_or_else(|| SensorError::Handoff(format!("descriptor {fd} is not a fanotify group")))?;
    let reports_names = flags & libc::FAN_REPORT_DFID_NAME == libc::FAN_REPORT_DFID_NAME;
    if reports_names == entry_watch {
        Ok(())
    } else {
        Err(SensorError::Handoff(format!(
            "descriptor {fd} is a fanotify group of the other kind (flags {flags:#x})"
        )))
    }
}

/// The `fanotify flags:` of a group's /proc/self/fdinfo text.
fn group_flags(fdinfo: &str) -> Option<u32> {
    fdinfo.lines().find_map(|line| {
        let rest = line.strip_prefix("fanotify flags:")?;
        u32::from_str_radix(rest.split_whitespace().next()?, 16).ok()
    })
}

/// The files an `execve` of `binary` opens for exec: the binary and its ELF interpreter (the
/// dynamic loader), which the kernel opens for exec too. A statically linked binary has none.
pub fn exec_opens(binary: &std::path::Path) -> std::io::Result<Vec<PathBuf>> {
    use std::io::Read;
    let mut header = Vec::new();
    // Program headers sit near the start; 64 KiB covers any sane layout.
    std::fs::File::open(binary)?
        .take(64 * 1024)
        .read_to_end(&mut header)?;
    let mut files = vec![binary.to_owned()];
    if let Some(interpreter) = elf_interpreter(&header) {
        files.push(interpreter);
    }
    Ok(files)
}

/// `PT_INTERP` of a little-endian ELF64 image, from its first bytes.
fn elf_interpreter(image: &[u8]) -> Option<PathBuf> {
    const PT_INTERP: u32 = 3;
    let u16_at = |at: usize| {
        Some(u16::from_le_bytes(
            image.get(at..at.checked_add(2)?)?.try_into().ok()?,
        ))
    };
    let u32_at = |at: usize| {
        Some(u32::from_le_bytes(
            image.get(at..at.checked_add(4)?)?.try_into().ok()?,
        ))
    };
    let u64_at = |at: usize| {
        Some(u64::from_le_bytes(
            image.get(at..at.checked_add(8)?)?.try_into().ok()?,
        ))
    };
    // ELF magic, 64-bit, little-endian.
    if image.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let phoff = usize::try_from(u64_at(0x20)?).ok()?;
    let phentsize = usize::from(u16_at(0x36)?);
    let phnum = usize::from(u16_at(0x38)?);
    for index in 0..phnum {
        let header = phoff.checked_add(index.checked_mul(phentsize)?)?;
        if u32_at(header)? != PT_INTERP {
            continue;
        }
        let offset = usize::try_from(u64_at(header.checked_add(8)?)?).ok()?;
        let size = usize::try_from(u64_at(header.checked_add(32)?)?).ok()?;
        let raw = image.get(offset..offset.checked_add(size)?)?;
        let path = raw.split(|b| *b == 0).next()?;
        return (!path.is_empty()).then(|| PathBuf::from(OsString::from_vec(path.to_vec())));
    }
    None
}

/// The parsed value of [`HANDOFF_ENV`].
#[derive(Debug, Default, PartialEq, Eq)]
struct HandoffSpec {
    fanotify: Option<i32>,
    audit: bool,
    proc: Option<i32>,
    entries: Option<i32>,
    /// Paths (hex of their bytes: any byte may be in a path) under an exec ignore mark.
    ignored: Vec<PathBuf>,
}

impl HandoffSpec {
    fn parse(value: &str) -> Result<HandoffSpec, SensorError> {
        let bad = |why: String| SensorError::Handoff(format!("{HANDOFF_ENV}={value:?}: {why}"));
        let mut spec = HandoffSpec::default();
        for part in value.split(',').filter(|p| !p.is_empty()) {
            let (key, number) = part
                .split_once('=')
                .ok_or_else(|| bad(format!("{part:?} is not key=value")))?;
            if key == "ignored" {
                let bytes =
                    hex::decode(number).map_err(|_| bad(format!("{number:?} is not hex")))?;
                spec.ignored.push(PathBuf::from(OsString::from_vec(bytes)));
                continue;
            }
            let number: i32 = number
                .parse()
                .map_err(|_| bad(format!("{number:?} is not a number")))?;
            match key {
                "fanotify" => spec.fanotify = Some(number),
                "proc" => spec.proc = Some(number),
                "entries" => spec.entries = Some(number),
                "audit" => spec.audit = number != 0,
                other => return Err(bad(format!("unknown key {other:?}"))),
            }
        }
        let fds: Vec<i32> = [spec.fanotify, spec.proc, spec.entries]
            .into_iter()
            .flatten()
            .collect();
        for (i, fd) in fds.iter().enumerate() {
            // 0–2 are stdio: a handoff never names them.
            if *fd < 3 {
                return Err(bad(format!(
                    "descriptor {fd} cannot be a handed-over channel"
                )));
            }
            if fds[..i].contains(fd) {
                return Err(bad(format!("descriptor {fd} is named twice")));
            }
        }
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_inheritable_writes() {
        let spec = HandoffSpec::parse("fanotify=5,audit=1,proc=6,entries=7,ignored=2f62696e2f78")
            .expect("parse");
        assert_eq!(
            spec,
            HandoffSpec {
                fanotify: Some(5),
                audit: true,
                proc: Some(6),
                entries: Some(7),
                ignored: vec![PathBuf::from("/bin/x")],
            }
        );
        assert_eq!(
            HandoffSpec::parse("").expect("empty"),
            HandoffSpec::default()
        );
    }

    #[test]
    fn rejects_garbage_and_stdio() {
        for bad in [
            "fanotify",
            "fanotify=x",
            "fanotify=1",
            "pid=7",
            "proc=-4",
            "entries=2",
            "ignored=zz",
        ] {
            let error = HandoffSpec::parse(bad).expect_err(bad).to_string();
            assert!(error.contains(HANDOFF_ENV), "{error}");
        }
    }

    #[test]
    fn a_descriptor_named_twice_is_refused() {
        let error = HandoffSpec::parse("fanotify=5,entries=5")
            .expect_err("twice")
            .to_string();
        assert!(error.contains("named twice"), "{error}");
    }

    #[test]
    fn group_flags_are_read_from_fdinfo() {
        let info = "pos:\t0\nflags:\t02004000\nmnt_id:\t15\nino:\t1057\n\
                    fanotify flags:e04 event-flags:8000\n";
        assert_eq!(group_flags(info), Some(0xe04));
        assert_eq!(group_flags("pos:\t0\n"), None);
        assert_eq!(group_flags("fanotify flags:zz event-flags:0\n"), None);
    }

    #[test]
    fn finds_the_interpreter_of_a_dynamic_binary_and_none_in_garbage() {
        let files = exec_opens(std::path::Path::new("/proc/self/exe")).expect("read");
        assert_eq!(files.len(), 2, "{files:?}");
        assert!(files[1].to_string_lossy().contains("ld-"), "{files:?}");
        assert_eq!(elf_interpreter(b"\x7fELF\x02\x01garbage"), None);
        assert_eq!(elf_interpreter(b""), None);
        let mut huge = b"\x7fELF\x02\x01".to_vec();
        huge.resize(0x40, 0xff);
        assert_eq!(elf_interpreter(&huge), None);
    }
}
