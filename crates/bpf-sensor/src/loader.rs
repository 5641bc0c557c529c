//! Loads the embedded BPF object, attaches each program on its own (one refused hook costs that
//! hook, not the sensor), and reads the ring buffer and the loss counter.

use crate::error::BpfError;
use crate::record::{self, BpfEvent, DecodeError};
use aya::maps::{Map, MapData, PerCpuArray, RingBuf};
use aya::programs::TracePoint;
use aya::{Btf, Ebpf, EbpfLoader, Endianness};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The object built by build.rs; absent when the build machine had no clang. Aligned: the ELF
/// parser reads its headers in place.
#[cfg(not(ringfence_no_bpf))]
const OBJECT: Option<&[u8]> = Some(aya::include_bytes_aligned!(concat!(
    env!("OUT_DIR"),
    "/sensor.bpf.o"
)));
#[cfg(ringfence_no_bpf)]
const OBJECT: Option<&[u8]> = None;

/// Where the running kernel publishes its BTF.
pub const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Each program and the tracepoint it attaches to, as (program, category, tracepoint).
const HOOKS: &[(&str, &str, &str)] = &[
    ("rf_execve", "syscalls", "sys_enter_execve"),
    ("rf_execveat", "syscalls", "sys_enter_execveat"),
    ("rf_inet_sock_set_state", "sock", "inet_sock_set_state"),
    ("rf_renameat2", "syscalls", "sys_enter_renameat2"),
    ("rf_unlinkat", "syscalls", "sys_enter_unlinkat"),
    ("rf_fchmodat", "syscalls", "sys_enter_fchmodat"),
    ("rf_fchmodat2", "syscalls", "sys_enter_fchmodat2"),
    ("rf_fchownat", "syscalls", "sys_enter_fchownat"),
    ("rf_linkat", "syscalls", "sys_enter_linkat"),
    ("rf_setuid", "syscalls", "sys_enter_setuid"),
    ("rf_setgid", "syscalls", "sys_enter_setgid"),
    ("rf_setreuid", "syscalls", "sys_enter_setreuid"),
    ("rf_setregid", "syscalls", "sys_enter_setregid"),
    ("rf_setresuid", "syscalls", "sys_enter_setresuid"),
    ("rf_setresgid", "syscalls", "sys_enter_setresgid"),
    ("rf_ptrace", "syscalls", "sys_enter_ptrace"),
    ("rf_init_module", "syscalls", "sys_enter_init_module"),
    ("rf_finit_module", "syscalls", "sys_enter_finit_module"),
    ("rf_bpf", "syscalls", "sys_enter_bpf"),
];

/// Loads of one program tried when the kernel answers EAGAIN, as libbpf does.
const LOAD_TRIES: u32 = 5;

/// Records drained per [`BpfSensor::read`], so a flood cannot keep a reader from its stop
/// flag.
const DRAIN_MAX: usize = 4096;

#[derive(Debug, Clone)]
pub struct BpfConfig {
    /// The kernel's BTF, against which the programs are relocated.
    pub btf: PathBuf,
    /// The process whose own activity the programs leave out (the agent; 0 for none).
    pub self_tgid: u32,
    /// Set to why when the sensor must not load (the guard's boot-loop protection): loading
    /// then touches nothing in the kernel and reports this as reduced visibility.
    pub switched_off: Option<String>,
}

impl Default for BpfConfig {
    fn default() -> Self {
        BpfConfig {
            btf: PathBuf::from(KERNEL_BTF),
            self_tgid: std::process::id(),
            switched_off: None,
        }
    }
}

/// Which hooks are attached, and why the others are not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hooks {
    pub attached: Vec<&'static str>,
    /// Tracepoints this kernel does not have because it lacks the feature (e.g. no
    /// `init_module` without `CONFIG_MODULES`): nothing to see there, so not lost visibility.
    pub absent: Vec<&'static str>,
    /// Hooks the kernel has but refused, and why: visibility lost.
    pub refused: Vec<(&'static str, String)>,
}

/// What one [`BpfSensor::read`] saw besides its events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadOutcome {
    /// Records that did not decode (each logged once at debug level).
    pub malformed: u64,
    /// The last decode error, for the operator's log.
    pub last_error: Option<DecodeError>,
    /// Records the programs could not fit in the ring buffer, as the records read carried
    /// them (see [`record::lost_before`]).
    pub lost: u64,
}

/// The loaded, attached sensor. Dropping it detaches every program.
pub struct BpfSensor {
    // Holds the programs and their links: attached as long as this lives.
    _ebpf: Ebpf,
    ring: RingBuf<MapData>,
    ring_fd: OwnedFd,
    lost: PerCpuArray<MapData, u64>,
    hooks: Hooks,
}

impl std::fmt::Debug for BpfSensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BpfSensor")
            .field("hooks", &self.hooks)
            .finish_non_exhaustive()
    }
}

impl BpfSensor {
    /// Loads and attaches the sensor. Call it before the process confines itself: loading
    /// needs `bpf()` commands, capabilities and tracefs that the confined agent no longer has.
    pub fn load(config: &BpfConfig) -> Result<BpfSensor, BpfError> {
        if let Some(why) = &config.switched_off {
            return Err(BpfError::SwitchedOff(why.clone()));
        }
        load_object(OBJECT.ok_or(BpfError::NotBuilt)?, config)
    }

    pub fn hooks(&self) -> &Hooks {
        &self.hooks
    }

    /// Waits up to `timeout` for records, then decodes at most [`DRAIN_MAX`] into `out`.
    pub fn read(
        &mut self,
        timeout: Duration,
        out: &mut Vec<BpfEvent>,
    ) -> Result<ReadOutcome, BpfError> {
        let millis = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(self.ring_fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(millis)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(errno) => return Err(BpfError::Poll(errno.into())),
        }
        let mut outcome = ReadOutcome::default();
        for _ in 0..DRAIN_MAX {
            let Some(item) = self.ring.next() else { break };
            outcome.lost = outcome.lost.saturating_add(record::lost_before(&item));
            match record::decode(&item) {
                Ok(event) => out.push(event),
                Err(error) => {
                    outcome.malformed += 1;
                    outcome.last_error = Some(error);
                }
            }
        }
        Ok(outcome)
    }

    /// Records the programs could not fit in the ring buffer and have not yet reported in a
    /// later record, over every CPU. A map lookup: a `bpf()` call, which the confined agent
    /// does not make (it counts [`ReadOutcome::lost`]).
    pub fn lost(&self) -> Result<u64, BpfError> {
        let values = self.lost.get(&0, 0).map_err(|e| BpfError::Map {
            name: "LOST",
            reason: e.to_string(),
        })?;
        Ok(values.iter().fold(0u64, |sum, v| sum.saturating_add(*v)))
    }
}

fn load_object(object: &[u8], config: &BpfConfig) -> Result<BpfSensor, BpfError> {
    let btf =
        Btf::parse_file(&config.btf, Endianness::default()).map_err(|source| BpfError::Btf {
            path: config.btf.clone(),
            source,
        })?;
    if !tracefs_mounted() {
        return Err(BpfError::NoTracefs);
    }
    let mut ebpf = EbpfLoader::new()
        .btf(Some(&btf))
        .set_global("rf_self_tgid", &config.self_tgid, true)
        .load(object)
        .map_err(BpfError::Object)?;
    let mut hooks = Hooks::default();
    for &(program, category, tracepoint) in HOOKS {
        if !tracefs_has(category, tracepoint) {
            hooks.absent.push(tracepoint);
            continue;
        }
        match attach(&mut ebpf, program, category, tracepoint) {
            Ok(()) => hooks.attached.push(tracepoint),
            Err(reason) => {
                let reason = reason.replace('\n', " ");
                tracing::warn!(tracepoint, %reason, "BPF hook not attached");
                hooks.refused.push((tracepoint, reason));
            }
        }
    }
    if hooks.attached.is_empty() {
        let (hook, reason) = hooks
            .refused
            .first()
            .cloned()
            .unwrap_or(("none", "no hooks defined".into()));
        return Err(BpfError::NothingAttached { hook, reason });
    }
    let ring_data = match ebpf.take_map("EVENTS") {
        Some(Map::RingBuf(data)) => data,
        _ => return Err(map_error("EVENTS", "missing or not a ring buffer")),
    };
    let ring_fd = ring_data
        .fd()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| map_error("EVENTS", &e.to_string()))?;
    let ring = RingBuf::try_from(Map::RingBuf(ring_data))
        .map_err(|e| map_error("EVENTS", &e.to_string()))?;
    let lost = ebpf
        .take_map("LOST")
        .ok_or_else(|| map_error("LOST", "missing"))
        .and_then(|map| {
            PerCpuArray::try_from(map).map_err(|e| map_error("LOST", &e.to_string()))
        })?;
    Ok(BpfSensor {
        _ebpf: ebpf,
        ring,
        ring_fd,
        lost,
        hooks,
    })
}

fn attach(ebpf: &mut Ebpf, program: &str, category: &str, name: &str) -> Result<(), String> {
    let program: &mut TracePoint = ebpf
        .program_mut(program)
        .ok_or("not in the object")?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| e.to_string())?;
    // The kernel can answer a load with EAGAIN when the verifier is interrupted (a signal,
    // or a busy host); libbpf retries those, and so do we.
    let mut tries = 0;
    loop {
        match program.load() {
            Ok(()) => break,
            Err(aya::programs::ProgramError::LoadError { io_error, .. })
                if io_error.raw_os_error() == Some(libc::EAGAIN) && tries < LOAD_TRIES =>
            {
                tries += 1;
            }
            Err(e) => return Err(format!("load: {}", chain(&e))),
        }
    }
    program
        .attach(category, name)
        .map_err(|e| format!("attach: {}", chain(&e)))?;
    Ok(())
}

/// An error and its sources on one line: aya's outer messages name the call, the source the
/// errno.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

fn map_error(name: &'static str, reason: &str) -> BpfError {
    BpfError::Map {
        name,
        reason: reason.to_owned(),
    }
}

fn tracefs_has(category: &str, tracepoint: &str) -> bool {
    [
        "/sys/kernel/tracing/events",
        "/sys/kernel/debug/tracing/events",
    ]
    .iter()
    .any(|root| Path::new(root).join(category).join(tracepoint).is_dir())
}

/// What aya looks for (a non-empty tracefs mount), checked first so the error says so.
fn tracefs_mounted() -> bool {
    [
        "/sys/kernel/tracing/events",
        "/sys/kernel/debug/tracing/events",
    ]
    .iter()
    .any(|p| Path::new(p).is_dir())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_btf_is_a_typed_error() {
        let config = BpfConfig {
            btf: PathBuf::from("/nonexistent/vmlinux"),
            ..BpfConfig::default()
        };
        let error = load_object(b"", &config).expect_err("no BTF");
        assert!(matches!(error, BpfError::Btf { .. }), "{error}");
    }

    #[test]
    fn switched_off_loads_nothing_and_says_why() {
        let config = BpfConfig {
            switched_off: Some("boot loop".into()),
            ..BpfConfig::default()
        };
        let error = BpfSensor::load(&config).expect_err("off");
        assert!(matches!(&error, BpfError::SwitchedOff(why) if why == "boot loop"));
    }

    #[test]
    fn a_corrupt_object_is_refused() {
        let config = BpfConfig {
            self_tgid: 0,
            ..BpfConfig::default()
        };
        if !Path::new(KERNEL_BTF).exists() || !tracefs_mounted() {
            ringfence_testkit::skip(
                "a_corrupt_object_is_refused",
                "needs kernel BTF and tracefs",
            );
            return;
        }
        let error = load_object(b"\x7fELF not really", &config).expect_err("corrupt");
        assert!(matches!(error, BpfError::Object(_)), "{error}");
    }
}
