//! Landlock: what the agent's least exposed-to-introspection threads may write and execute.
//!
//! The agent cannot be Landlocked as a whole. Landlock also restricts ptrace-mode access
//! checks: a thread in a domain cannot read `/proc/PID/exe`, `cwd` or `syscall` of any process
//! outside that domain (`hook_ptrace_access_check`), whatever its capabilities, and every
//! process the agent watches is outside it. The threads that resolve processes (the fanotify
//! reader, the workers, the notification and process-connector threads) and the main thread
//! (a Landlock domain survives `execve`, and the self-upgrade re-exec happens there) therefore
//! stay outside. The domain goes on a dedicated thread instead, and the threads it creates
//! inherit it: the wasm runtime's threads (the spare builder instantiates guests and runs
//! their `load-content`), and in managed mode the uplink and the alert shipper, which talk to
//! the network and write the data directory.
//!
//! The domain handles writing, creating, removing, truncating, device ioctls and executing:
//! those threads write only the data directory, the alert file and `/dev/null`, and execute
//! only the directory of the agent's binary and the shared libraries. Reading is not handled.

use crate::HardeningError;
use landlock::{
    ABI, AccessFs, BitFlags, CompatLevel, Compatible, LandlockStatus, PathBeneath, PathFd,
    RestrictionStatus, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus,
};
use std::path::{Path, PathBuf};

/// The newest ABI this code asks for; older kernels get what they support (best effort).
const ABI_WANTED: ABI = ABI::V6;

/// What the agent may touch, beyond `/proc` (read) and `/dev/null` (write).
#[derive(Debug, Clone, Default)]
pub struct FsView {
    /// Directories and files the agent writes: its data directory, its alert file.
    pub read_write: Vec<PathBuf>,
    /// Files and directories whose programs the agent may execute: its own binary and the
    /// directory a self-upgrade stages the next one in.
    pub execute: Vec<PathBuf>,
}

/// What Landlock enforced, for the start-up log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LandlockReport {
    /// The ABI both the kernel and this build understand (0: no Landlock).
    pub abi: i32,
    pub status: &'static str,
}

impl std::fmt::Display for LandlockReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.abi == 0 {
            write!(f, "landlock unsupported by the kernel")
        } else {
            write!(f, "landlock ABI {} {}", self.abi, self.status)
        }
    }
}

/// Shared-library directories: a re-exec maps the interpreter and libraries again, and the
/// kernel opens the interpreter (`ld.so`) for execution.
const LIBRARY_DIRS: &[&str] = &["/lib", "/lib64", "/usr/lib", "/usr/lib64"];

fn write_access() -> BitFlags<AccessFs> {
    AccessFs::from_write(ABI_WANTED)
}

fn report(status: &RestrictionStatus) -> LandlockReport {
    let abi = match status.landlock {
        LandlockStatus::Available { effective_abi, .. } => effective_abi as i32,
        _ => 0,
    };
    let status = match status.ruleset {
        RulesetStatus::FullyEnforced => "fully enforced",
        RulesetStatus::PartiallyEnforced => "partially enforced (older kernel)",
        RulesetStatus::NotEnforced => "not enforced",
    };
    LandlockReport { abi, status }
}

fn rule(
    path: &Path,
    access: BitFlags<AccessFs>,
) -> Result<Option<PathBeneath<PathFd>>, HardeningError> {
    match PathFd::new(path) {
        Ok(fd) => Ok(Some(PathBeneath::new(fd, access))),
        // A library directory that this distribution does not have is not an error.
        Err(_) if !path.exists() => Ok(None),
        Err(error) => Err(HardeningError::Landlock(format!(
            "{}: {error}",
            path.display()
        ))),
    }
}

fn landlock_error(error: impl std::fmt::Display) -> HardeningError {
    HardeningError::Landlock(error.to_string())
}

/// Restricts the calling thread (and threads it creates afterwards) to `view`.
pub fn restrict_thread(view: &FsView) -> Result<LandlockReport, HardeningError> {
    let handled = write_access() | AccessFs::Execute;
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(handled)
        .map_err(landlock_error)?
        .create()
        .map_err(landlock_error)?
        .no_new_privs(false);
    let mut rules = Vec::new();
    for path in &view.read_write {
        let access = if path.is_dir() {
            write_access()
        } else {
            AccessFs::from_file(ABI_WANTED) & write_access()
        };
        rules.push(rule(path, access)?);
    }
    rules.push(rule(Path::new("/dev/null"), AccessFs::WriteFile.into())?);
    for path in &view.execute {
        rules.push(rule(path, AccessFs::Execute.into())?);
    }
    for dir in LIBRARY_DIRS {
        rules.push(rule(Path::new(dir), AccessFs::Execute.into())?);
    }
    for rule in rules.into_iter().flatten() {
        ruleset = ruleset.add_rule(rule).map_err(landlock_error)?;
    }
    let status = ruleset.restrict_self().map_err(landlock_error)?;
    Ok(report(&status))
}
