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
use std::sync::Arc;

/// Compiled policies, ready to apply.
#[derive(Debug)]
pub struct Hardening {
    view: FsView,
    agent: BpfProgram,
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
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "caps kept [{}]{}, no_new_privs, seccomp agent ({} syscalls, all threads) + engine ({} \
             syscalls, wasm threads)",
            self.caps_kept.join(" "),
            if self.caps_dropped_now {
                ""
            } else {
                " (already reduced)"
            },
            self.agent_syscalls,
            self.engine_syscalls,
        )
    }
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
        Ok(Hardening {
            view,
            agent: seccomp::compile(Role::Agent)?,
            engine: Arc::new(EngineConfinement {
                program: seccomp::compile(Role::Engine)?,
            }),
        })
    }

    /// Confines the whole process. Call on the main thread after the kernel channels are open
    /// and before any other thread is created: threads created earlier keep their
    /// capabilities and escape the Landlock domain (seccomp reaches them through TSYNC).
    pub fn confine_process(&self) -> Result<Report, HardeningError> {
        let caps_dropped_now = if caps::already_reduced() {
            false
        } else {
            caps::drop_to_kept()?;
            true
        };
        sys::set_no_new_privs().map_err(HardeningError::NoNewPrivs)?;
        install(Role::Agent, &self.agent, true)?;
        Ok(Report {
            caps_kept: kept_names(),
            caps_dropped_now,
            agent_syscalls: allowed(Role::Agent)?.len(),
            engine_syscalls: allowed(Role::Engine)?.len(),
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
