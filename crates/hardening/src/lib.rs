//! The agent's self-protection by privilege reduction, applied once at start:
//!
//! 1. capabilities: every one dropped but [`caps::KEPT`], from every set including bounding and
//!    ambient, secure bits locked so that executing as root regains nothing;
//! 2. `no_new_privs`: no setuid or file-capability gain through `execve`, ever;
//! 3. Landlock: what the threads that never look at other processes may write and execute
//!    ([`FsView`], [`Hardening::landlocked`]; why not every thread: see the `landlock` module);
//! 4. seccomp allow-lists per thread role ([`Role`], `policy/*.json`): the agent list on every
//!    thread (TSYNC), the engine list stacked on each thread that runs wasm guests.
//!
//! Order matters. Capabilities are per thread and inherited at thread creation, so
//! [`Hardening::confine_process`] runs on the main thread after the kernel channels are open
//! (they need `CAP_SYS_ADMIN`/`CAP_NET_ADMIN`) and before any other thread exists.
//! Seccomp filters stack and TSYNC refuses a thread whose filter stack is not the caller's, so
//! the process filter goes first and engine threads stack theirs afterwards
//! ([`EngineConfinement::confine_current_thread`]).
//!
//! **Architecture Invariant:** this crate only ever removes privileges; it never raises a
//! capability beyond what the thread already has, never loosens a filter, and never opens a
//! way around one for debugging (`--no-harden` skips it entirely, loudly).

mod caps;
mod error;
mod landlock;
mod seccomp;
mod sys;

pub use crate::caps::{KEPT, kept_mask, kept_names};
pub use crate::landlock::{FsView, LandlockReport};
pub use crate::seccomp::{Allowed, Role, allowed};
pub use error::HardeningError;

use seccompiler::BpfProgram;
use std::sync::{Arc, OnceLock};

/// Names, across the `execve` of an in-place upgrade, the agent filter the previous image left
/// in force (its [`Hardening::agent_filter_id`]). Filters survive `execve`; a new image whose
/// own filter is that same program does not stack a second copy, so upgrades do not fill the
/// kernel's filter stack.
pub const INHERITED_FILTER_ENV: &str = "RINGFENCE_SECCOMP_AGENT";

/// The id of the agent filter this process put (or found) in force.
static AGENT_FILTER_IN_FORCE: OnceLock<String> = OnceLock::new();

/// The id of the agent filter in force in this process, to name in [`INHERITED_FILTER_ENV`]
/// for the next image; `None` when the process is not confined.
pub fn agent_filter_in_force() -> Option<&'static str> {
    AGENT_FILTER_IN_FORCE.get().map(String::as_str)
}

/// Compiled policies, ready to apply.
#[derive(Debug)]
pub struct Hardening {
    view: FsView,
    agent: BpfProgram,
    agent_id: String,
    engine: Arc<EngineConfinement>,
}

/// What [`Hardening::confine_process`] applied, for the start-up log line.
#[derive(Debug, Clone)]
pub struct Report {
    pub caps_kept: Vec<String>,
    /// False when the capabilities had already been dropped (a re-executed agent).
    pub caps_dropped_now: bool,
    pub agent_syscalls: usize,
    pub engine_syscalls: usize,
    /// True when the same agent filter was already in force (left by the previous image of an
    /// in-place upgrade) and none was added.
    pub agent_filter_inherited: bool,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "caps kept [{}]{}, no_new_privs, seccomp agent ({} syscalls, all threads{}) + engine \
             ({} syscalls, wasm threads)",
            self.caps_kept.join(" "),
            if self.caps_dropped_now {
                ""
            } else {
                " (already reduced)"
            },
            self.agent_syscalls,
            if self.agent_filter_inherited {
                ", in force since the previous image"
            } else {
                ""
            },
            self.engine_syscalls,
        )
    }
}

/// True when the kernel says this thread runs under a seccomp filter (`Seccomp: 2`).
fn in_filter_mode() -> bool {
    std::fs::read_to_string("/proc/thread-self/status").is_ok_and(|status| {
        status
            .lines()
            .any(|line| line.split_whitespace().eq(["Seccomp:", "2"]))
    })
}

fn install(
    role: Role,
    program: &[seccompiler::sock_filter],
    tsync: bool,
) -> Result<(), HardeningError> {
    sys::install_seccomp(program, tsync).map_err(|error| HardeningError::Seccomp {
        role: role.name(),
        reason: match error {
            sys::InstallError::Os(error) => error.to_string(),
            sys::InstallError::Thread(tid) => {
                format!("thread {tid} has a filter of its own; TSYNC cannot move it")
            }
        },
    })
}

impl Hardening {
    /// Compiles both allow-lists; fails on an unknown system call name or a missing reason.
    pub fn new(view: FsView) -> Result<Hardening, HardeningError> {
        let agent = seccomp::compile(Role::Agent)?;
        Ok(Hardening {
            view,
            agent_id: seccomp::program_id(&agent),
            agent,
            engine: Arc::new(EngineConfinement {
                program: seccomp::compile(Role::Engine)?,
            }),
        })
    }

    /// The id of the compiled agent filter (see [`INHERITED_FILTER_ENV`]).
    pub fn agent_filter_id(&self) -> &str {
        &self.agent_id
    }

    /// Confines the whole process. Call on the main thread after the kernel channels are open
    /// and before any other thread is created: threads created earlier keep their
    /// capabilities and escape the Landlock domain (seccomp reaches them through TSYNC).
    ///
    /// `inherited_filter` is what a previous image of an in-place upgrade said it left in force
    /// ([`INHERITED_FILTER_ENV`]). When it is this very program and the kernel confirms the
    /// process is filtered, no second copy is stacked: the filter in force is at least as
    /// strict as ours. Anything else installs ours, on top of whatever is there.
    pub fn confine_process(
        &self,
        inherited_filter: Option<&str>,
    ) -> Result<Report, HardeningError> {
        let caps_dropped_now = if caps::already_reduced() {
            false
        } else {
            caps::drop_to_kept()?;
            true
        };
        sys::set_no_new_privs().map_err(HardeningError::NoNewPrivs)?;
        let agent_filter_inherited =
            inherited_filter == Some(self.agent_id.as_str()) && in_filter_mode();
        if !agent_filter_inherited {
            install(Role::Agent, &self.agent, true)?;
        }
        let _ = AGENT_FILTER_IN_FORCE.set(self.agent_id.clone());
        Ok(Report {
            caps_kept: kept_names(),
            caps_dropped_now,
            agent_syscalls: allowed(Role::Agent)?.len(),
            engine_syscalls: allowed(Role::Engine)?.len(),
            agent_filter_inherited,
        })
    }

    /// Runs `f` on a new thread restricted to the Landlock view; threads `f` creates inherit
    /// the domain. For the threads that never read other processes' `/proc` entries.
    pub fn landlocked<T: Send>(
        &self,
        f: impl FnOnce() -> T + Send,
    ) -> Result<(T, LandlockReport), HardeningError> {
        std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("rf-landlock".into())
                .spawn_scoped(scope, || {
                    let report = landlock::restrict_thread(&self.view)?;
                    Ok((f(), report))
                })
                .map_err(|e| HardeningError::Landlock(e.to_string()))?
                .join()
                .map_err(|_| HardeningError::Landlock("the Landlock thread panicked".into()))?
        })
    }

    /// Installs the agent filter on the calling thread only (no TSYNC); threads it creates
    /// afterwards inherit it. For measuring what the filters cost beside an unfiltered
    /// baseline in one process (`ringfence bench exec`).
    pub fn filter_current_thread(&self) -> Result<(), HardeningError> {
        sys::set_no_new_privs().map_err(HardeningError::NoNewPrivs)?;
        install(Role::Agent, &self.agent, false)
    }

    /// What each engine thread applies to itself when it starts.
    pub fn engine_confinement(&self) -> Arc<EngineConfinement> {
        Arc::clone(&self.engine)
    }
}

/// The engine role: the engine allow-list, stacked on the calling thread's agent filter.
#[derive(Debug)]
pub struct EngineConfinement {
    program: BpfProgram,
}

impl EngineConfinement {
    /// Confines the calling thread; the rest of the process is untouched.
    pub fn confine_current_thread(&self) -> Result<(), HardeningError> {
        sys::set_no_new_privs().map_err(HardeningError::NoNewPrivs)?;
        install(Role::Engine, &self.program, false)
    }
}
