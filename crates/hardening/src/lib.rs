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
//! way around one for debugging (`--no-harden` skips it entirely, loudly). Its raw system calls
//! (`prctl`, `seccomp(2)`) are in `ringfence_sys::confine`.

#![forbid(unsafe_code)]

mod caps;
mod error;
mod landlock;
mod seccomp;

pub use crate::caps::{KEPT, kept_mask, kept_names};
pub use crate::landlock::{FsView, LandlockReport};
pub use crate::seccomp::{Allowed, Role, allowed};
pub use error::HardeningError;

use ringfence_sys::confine;
use seccompiler::BpfProgram;
use std::sync::{Arc, OnceLock};

/// Names, across the `execve` of an in-place upgrade, the agent filter the previous image left
/// in force: `<id>:<filters>`, its [`Hardening::agent_filter_id`] and how many filters were
/// stacked on the exec'ing thread. Filters survive `execve`; a new image whose own filter is
/// that same program, and which finds at least that many filters on itself, does not stack a
/// second copy, so upgrades do not fill the kernel's filter stack.
pub const INHERITED_FILTER_ENV: &str = "RINGFENCE_SECCOMP_AGENT";

/// The id of the agent filter this process put (or found) in force.
static AGENT_FILTER_IN_FORCE: OnceLock<String> = OnceLock::new();

/// The value of [`INHERITED_FILTER_ENV`] for the next image, read on the thread that will
/// exec; `None` when the process is not confined.
pub fn agent_filter_in_force() -> Option<String> {
    let id = AGENT_FILTER_IN_FORCE.get()?;
    Some(format!("{id}:{}", stacked_filters()?))
}

/// What a previous image said it left in force (see [`INHERITED_FILTER_ENV`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InheritedFilter {
    id: String,
    filters: u32,
}

impl InheritedFilter {
    /// Parses `<id>:<filters>`; anything else is no evidence at all.
    pub fn parse(value: &str) -> Option<InheritedFilter> {
        let (id, filters) = value.split_once(':')?;
        Some(InheritedFilter {
            id: id.to_owned(),
            filters: filters.parse().ok().filter(|&n| n > 0)?,
        })
    }
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

/// How many seccomp filters the kernel says are stacked on this thread, when it runs under
/// filters at all (`Seccomp: 2`).
fn stacked_filters() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/thread-self/status").ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .map(str::trim)
    };
    if field("Seccomp:")? != "2" {
        return None;
    }
    field("Seccomp_filters:")?.parse().ok()
}

fn install(
    role: Role,
    program: &[seccompiler::sock_filter],
    tsync: bool,
) -> Result<(), HardeningError> {
    // seccompiler's instructions and the kernel's have the same fields; copied, not cast.
    let program: Vec<libc::sock_filter> = program
        .iter()
        .map(|op| libc::sock_filter {
            code: op.code,
            jt: op.jt,
            jf: op.jf,
            k: op.k,
        })
        .collect();
    confine::install_seccomp(&program, tsync).map_err(|error| HardeningError::Seccomp {
        role: role.name(),
        reason: match error {
            confine::InstallError::Os(error) => error.to_string(),
            confine::InstallError::Thread(tid) => {
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
    /// ([`INHERITED_FILTER_ENV`]); pass it only when this image really adopted that image's
    /// channels. When it names this very program and the kernel shows at least as many filters
    /// on this thread as that image had, no second copy is stacked: the filters in force are at
    /// least as strict as ours. Anything else installs ours, on top of whatever is there.
    pub fn confine_process(
        &self,
        inherited_filter: Option<&InheritedFilter>,
    ) -> Result<Report, HardeningError> {
        let caps_dropped_now = if caps::already_reduced() {
            false
        } else {
            caps::drop_to_kept()?;
            true
        };
        confine::set_no_new_privs().map_err(HardeningError::NoNewPrivs)?;
        let agent_filter_inherited = inherited_filter.is_some_and(|inherited| {
            inherited.id == self.agent_id
                && stacked_filters().is_some_and(|now| now >= inherited.filters)
        });
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
        confine::set_no_new_privs().map_err(HardeningError::NoNewPrivs)?;
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
        confine::set_no_new_privs().map_err(HardeningError::NoNewPrivs)?;
        install(Role::Engine, &self.program, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inherited_filter_needs_an_id_and_a_positive_count() {
        let parsed = InheritedFilter::parse("abc:3").expect("parses");
        assert_eq!(parsed.id, "abc");
        assert_eq!(parsed.filters, 3);
        for bad in ["abc", "abc:0", "abc:-1", "abc:x", ""] {
            assert_eq!(InheritedFilter::parse(bad), None, "{bad}");
        }
    }
}
