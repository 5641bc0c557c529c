//! Decodes the records the BPF programs write into the ring buffer (layouts in
//! `bpf/sensor.bpf.c`) into typed events.
//!
//! The bytes come from the kernel, but they were written by programs we only trust as far as
//! the verifier proves memory safety: every length is checked against its field and the
//! record, every kind and call number is checked, and a bad record is an error, never a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The common header of every record.
const HEADER: usize = 72;
const PATH_MAX: usize = 256;
/// The argv buffer; the programs stop copying new strings at half of it.
const ARGV_BUF: usize = 2048;
const EXEC_SIZE: usize = HEADER + 16 + PATH_MAX + ARGV_BUF;
const FILE_SIZE: usize = HEADER + 32 + 2 * PATH_MAX;
const NET_SIZE: usize = HEADER + 16 + 32;
const CALL_SIZE: usize = HEADER + 8 + 32;

const FLAG_TRUNCATED: u32 = 1;

const KIND_EXEC: u32 = 1;
const KIND_NET: u32 = 2;
const KIND_RENAME: u32 = 10;
const KIND_UNLINK: u32 = 11;
const KIND_CHMOD: u32 = 12;
const KIND_CHOWN: u32 = 13;
const KIND_LINK: u32 = 14;
const KIND_SETID: u32 = 30;
const KIND_PTRACE: u32 = 31;
const KIND_MODULE: u32 = 32;
const KIND_BPF: u32 = 33;

// TCP states as the kernel numbers them (include/net/tcp_states.h).
const TCP_ESTABLISHED: u8 = 1;
const TCP_SYN_SENT: u8 = 2;
const TCP_SYN_RECV: u8 = 3;
const TCP_LISTEN: u8 = 10;

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// Why a record was not decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The record is shorter than its kind's layout.
    #[error("record of kind {kind} is {got} bytes, its layout needs {need}")]
    TooShort { kind: u32, need: usize, got: usize },
    /// The size the program wrote disagrees with the ring buffer's.
    #[error("record says it is {said} bytes, the ring buffer gave {got}")]
    SizeMismatch { said: u32, got: usize },
    /// A kind no program writes.
    #[error("unknown record kind {0}")]
    UnknownKind(u32),
    /// A length field larger than the field it measures.
    #[error("{field} length {len} exceeds its field of {max} bytes")]
    BadLength {
        field: &'static str,
        len: u32,
        max: usize,
    },
    /// A system call number the privilege programs do not attach to.
    #[error("unknown system call {0} in a privilege record")]
    UnknownCall(u32),
    /// A network record whose address family or state change the program filters out.
    #[error("network record with family {family}, state {old} -> {new}")]
    UnexpectedNetwork { family: u16, old: u8, new: u8 },
}

/// Who did it, as the kernel saw at the hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    /// Thread id.
    pub pid: u32,
    /// Process id (thread group).
    pub tgid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub egid: u32,
    /// The task's `comm` (at most 15 bytes, lossy UTF-8).
    pub comm: String,
    /// `CLOCK_MONOTONIC` at the hook, in nanoseconds.
    pub ktime_ns: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetKind {
    /// A TCP connect started (SYN sent).
    Connect,
    /// A socket started listening.
    Listen,
    /// A connection completed its handshake on a listener, to be accepted. The process is
    /// whoever ran the handshake (often the peer, or a softirq), not the accepting one.
    Accept,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileOp {
    Rename,
    Unlink,
    Chmod,
    Chown,
    Link,
}

/// A set-id call and its arguments (`u32::MAX` is "unchanged", as the calls take `-1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetId {
    SetUid { uid: u32 },
    SetGid { gid: u32 },
    SetReUid { ruid: u32, euid: u32 },
    SetReGid { rgid: u32, egid: u32 },
    SetResUid { ruid: u32, euid: u32, suid: u32 },
    SetResGid { rgid: u32, egid: u32, sgid: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleLoad {
    /// `init_module` from a buffer of this many bytes.
    Image { len: u64 },
    /// `finit_module` from this file descriptor.
    File { fd: i32 },
}

/// One decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BpfEvent {
    /// `execve`/`execveat` entered: what is about to be executed and its argv (at most 1 KiB
    /// and 32 strings; `truncated` says more were given).
    Exec {
        process: Process,
        filename: String,
        argv: Vec<String>,
        truncated: bool,
    },
    Network {
        process: Process,
        kind: NetKind,
        local: SocketAddr,
        remote: SocketAddr,
    },
    /// A file change as the caller asked for it: paths are as given (relative to `dfd` unless
    /// absolute), not resolved.
    File {
        process: Process,
        op: FileOp,
        dfd: i32,
        path: String,
        /// The new name of a rename or link.
        target: Option<String>,
        /// chmod's mode.
        mode: u32,
        /// chown's owner and group.
        owner: (u32, u32),
        flags: u32,
    },
    Privilege {
        process: Process,
        call: SetId,
    },
    Ptrace {
        process: Process,
        request: i64,
        target: i32,
    },
    Module {
        process: Process,
        load: ModuleLoad,
    },
    /// A `bpf()` call by another process, with its command number.
    Bpf {
        process: Process,
        cmd: u32,
    },
}

impl BpfEvent {
    pub fn process(&self) -> &Process {
        match self {
            BpfEvent::Exec { process, .. }
            | BpfEvent::Network { process, .. }
            | BpfEvent::File { process, .. }
            | BpfEvent::Privilege { process, .. }
            | BpfEvent::Ptrace { process, .. }
            | BpfEvent::Module { process, .. }
            | BpfEvent::Bpf { process, .. } => process,
        }
    }
}

/// Reads fixed-offset fields of a buffer whose length was checked first; out of range reads
/// as zero instead of panicking, though the checks make that unreachable.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn bytes<const N: usize>(&self, at: usize) -> [u8; N] {
        self.0
            .get(at..at + N)
            .and_then(|s| s.try_into().ok())
            .unwrap_or([0; N])
    }
    fn u8(&self, at: usize) -> u8 {
        self.bytes::<1>(at)[0]
    }
    fn u16(&self, at: usize) -> u16 {
        u16::from_ne_bytes(self.bytes(at))
    }
    fn u32(&self, at: usize) -> u32 {
        u32::from_ne_bytes(self.bytes(at))
    }
    fn u64(&self, at: usize) -> u64 {
        u64::from_ne_bytes(self.bytes(at))
    }
    /// A string of `len` bytes at `at` in a field of `max`, NUL-terminated or not.
    fn string(
        &self,
        field: &'static str,
        at: usize,
        len: u32,
        max: usize,
    ) -> Result<String, DecodeError> {
        let n = usize::try_from(len).unwrap_or(usize::MAX);
        if n > max {
            return Err(DecodeError::BadLength { field, len, max });
        }
        let bytes = self.0.get(at..at + n).unwrap_or_default();
        let bytes = bytes.split(|b| *b == 0).next().unwrap_or_default();
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }
}

/// Records the programs could not fit since the previous record from the same CPU, as this
/// record carries them (0 when it is too short to tell).
pub fn lost_before(record: &[u8]) -> u64 {
    if record.len() < HEADER {
        return 0;
    }
    Fields(record).u64(64)
}

/// Decodes one ring buffer record.
pub fn decode(record: &[u8]) -> Result<BpfEvent, DecodeError> {
    let f = Fields(record);
    if record.len() < HEADER {
        return Err(DecodeError::TooShort {
            kind: f.u32(0),
            need: HEADER,
            got: record.len(),
        });
    }
    let kind = f.u32(0);
    let need = match kind {
        KIND_EXEC => EXEC_SIZE,
        KIND_NET => NET_SIZE,
        KIND_RENAME..=KIND_LINK => FILE_SIZE,
        KIND_SETID..=KIND_BPF => CALL_SIZE,
        other => return Err(DecodeError::UnknownKind(other)),
    };
    if record.len() < need {
        return Err(DecodeError::TooShort {
            kind,
            need,
            got: record.len(),
        });
    }
    let said = f.u32(4);
    // The ring buffer rounds records up to 8 bytes; more than that is not the same record.
    if usize::try_from(said).map_or(true, |s| s > record.len() || s < need) {
        return Err(DecodeError::SizeMismatch {
            said,
            got: record.len(),
        });
    }
    let comm = f.string("comm", 40, 16, 16)?;
    let process = Process {
        pid: f.u32(8),
        tgid: f.u32(12),
        ppid: f.u32(16),
        uid: f.u32(20),
        gid: f.u32(24),
        euid: f.u32(28),
        ktime_ns: f.u64(32),
        comm,
        egid: f.u32(56),
    };
    let flags = f.u32(60);
    match kind {
        KIND_EXEC => exec(&f, process, flags),
        KIND_NET => network(&f, process),
        KIND_RENAME..=KIND_LINK => file(&f, process, kind),
        _ => call(&f, process, kind),
    }
}

fn exec(f: &Fields, process: Process, flags: u32) -> Result<BpfEvent, DecodeError> {
    let filename = f.string("filename", HEADER + 16, f.u32(HEADER), PATH_MAX)?;
    let argv_len = f.u32(HEADER + 4);
    let argc = f.u32(HEADER + 8);
    let n = usize::try_from(argv_len).unwrap_or(usize::MAX);
    if n > ARGV_BUF {
        return Err(DecodeError::BadLength {
            field: "argv",
            len: argv_len,
            max: ARGV_BUF,
        });
    }
    let at = HEADER + 16 + PATH_MAX;
    let bytes = f.0.get(at..at + n).unwrap_or_default();
    // Each string was copied with its NUL; argc bounds how many we believe.
    let argv = bytes
        .split(|b| *b == 0)
        .take(usize::try_from(argc).unwrap_or(usize::MAX))
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    Ok(BpfEvent::Exec {
        process,
        filename,
        argv,
        truncated: flags & FLAG_TRUNCATED != 0,
    })
}

fn network(f: &Fields, process: Process) -> Result<BpfEvent, DecodeError> {
    let family = f.u16(HEADER);
    let (old, new) = (f.u8(HEADER + 8), f.u8(HEADER + 9));
    let kind = match (old, new) {
        (_, TCP_SYN_SENT) => NetKind::Connect,
        (_, TCP_LISTEN) => NetKind::Listen,
        (TCP_SYN_RECV, TCP_ESTABLISHED) => NetKind::Accept,
        _ => return Err(DecodeError::UnexpectedNetwork { family, old, new }),
    };
    let addr = |at: usize| -> Option<IpAddr> {
        match family {
            AF_INET => Some(IpAddr::V4(Ipv4Addr::from(f.bytes::<4>(at)))),
            AF_INET6 => Some(IpAddr::V6(Ipv6Addr::from(f.bytes::<16>(at)))),
            _ => None,
        }
    };
    let (Some(saddr), Some(daddr)) = (addr(HEADER + 16), addr(HEADER + 32)) else {
        return Err(DecodeError::UnexpectedNetwork { family, old, new });
    };
    Ok(BpfEvent::Network {
        process,
        kind,
        local: SocketAddr::new(saddr, f.u16(HEADER + 4)),
        remote: SocketAddr::new(daddr, f.u16(HEADER + 6)),
    })
}

fn file(f: &Fields, process: Process, kind: u32) -> Result<BpfEvent, DecodeError> {
    let op = match kind {
        KIND_RENAME => FileOp::Rename,
        KIND_UNLINK => FileOp::Unlink,
        KIND_CHMOD => FileOp::Chmod,
        KIND_CHOWN => FileOp::Chown,
        _ => FileOp::Link,
    };
    let path = f.string("path", HEADER + 32, f.u32(HEADER), PATH_MAX)?;
    let target = match op {
        FileOp::Rename | FileOp::Link => Some(f.string(
            "target",
            HEADER + 32 + PATH_MAX,
            f.u32(HEADER + 4),
            PATH_MAX,
        )?),
        _ => None,
    };
    Ok(BpfEvent::File {
        process,
        op,
        path,
        target,
        mode: f.u32(HEADER + 8),
        owner: (f.u32(HEADER + 12), f.u32(HEADER + 16)),
        dfd: i32::from_ne_bytes(f.bytes(HEADER + 20)),
        flags: f.u32(HEADER + 24),
    })
}

fn call(f: &Fields, process: Process, kind: u32) -> Result<BpfEvent, DecodeError> {
    let nr = f.u32(HEADER);
    let arg = |i: usize| f.u64(HEADER + 8 + 8 * i);
    // Ids are 32 bits wide; the calls take them as unsigned ints in 64-bit registers.
    let id = |i: usize| arg(i) as u32;
    Ok(match kind {
        KIND_SETID => BpfEvent::Privilege {
            process,
            call: set_id(nr, id)?,
        },
        KIND_PTRACE => BpfEvent::Ptrace {
            process,
            request: arg(0) as i64,
            target: arg(1) as i32,
        },
        KIND_MODULE if i64::from(nr) == libc::SYS_init_module => BpfEvent::Module {
            process,
            load: ModuleLoad::Image { len: arg(1) },
        },
        KIND_MODULE if i64::from(nr) == libc::SYS_finit_module => BpfEvent::Module {
            process,
            load: ModuleLoad::File { fd: arg(0) as i32 },
        },
        KIND_MODULE => return Err(DecodeError::UnknownCall(nr)),
        _ => BpfEvent::Bpf {
            process,
            cmd: id(0),
        },
    })
}

fn set_id(nr: u32, id: impl Fn(usize) -> u32) -> Result<SetId, DecodeError> {
    let nr64 = i64::from(nr);
    Ok(if nr64 == libc::SYS_setuid {
        SetId::SetUid { uid: id(0) }
    } else if nr64 == libc::SYS_setgid {
        SetId::SetGid { gid: id(0) }
    } else if nr64 == libc::SYS_setreuid {
        SetId::SetReUid {
            ruid: id(0),
            euid: id(1),
        }
    } else if nr64 == libc::SYS_setregid {
        SetId::SetReGid {
            rgid: id(0),
            egid: id(1),
        }
    } else if nr64 == libc::SYS_setresuid {
        SetId::SetResUid {
            ruid: id(0),
            euid: id(1),
            suid: id(2),
        }
    } else if nr64 == libc::SYS_setresgid {
        SetId::SetResGid {
            rgid: id(0),
            egid: id(1),
            sgid: id(2),
        }
    } else {
        return Err(DecodeError::UnknownCall(nr));
    })
}

#[cfg(test)]
#[path = "record_tests.rs"]
mod tests;
