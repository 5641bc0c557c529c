//! Seccomp allow-lists per thread role, checked in as data (`policy/*.json`, seccompiler's
//! format) with a reason for every system call, compiled at start. An unknown system call name
//! or a rule without a reason fails the compilation: the agent then refuses to harden instead
//! of guessing.
//!
//! A system call outside the list fails with `EPERM` and is logged by the kernel (audit type
//! 1326, `SECCOMP_FILTER_FLAG_LOG`). Not `KILL`: the agent answers every exec of the host, and
//! a list that missed a rare call (an error path, a new libc) must fail that call, not take
//! the host's security agent down and leave its guard restarting it into the same death.

use crate::HardeningError;
use seccompiler::{BpfProgram, TargetArch};

/// A thread role: which allow-list a thread runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The whole process: sensors, responder, uplink, spool, alerts, crash monitor start,
    /// self-upgrade. Installed with TSYNC on every thread.
    Agent,
    /// Threads that run wasm guests (the permission workers and the notification thread),
    /// stacked on the agent filter: the tightest list.
    Engine,
}

impl Role {
    pub const ALL: [Role; 2] = [Role::Agent, Role::Engine];

    pub fn name(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Engine => "engine",
        }
    }

    /// The checked-in policy file of this role.
    pub fn policy(self) -> &'static str {
        match self {
            Role::Agent => include_str!("../policy/agent.json"),
            Role::Engine => include_str!("../policy/engine.json"),
        }
    }
}

/// One allowed system call and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allowed {
    pub syscall: String,
    #[serde(rename = "comment")]
    pub reason: String,
}

#[derive(serde::Deserialize)]
struct Filter {
    #[serde(rename = "filter")]
    rules: Vec<Allowed>,
    #[serde(rename = "mismatch_action")]
    _mismatch: serde_json::Value,
    #[serde(rename = "match_action")]
    _match: serde_json::Value,
}

/// The allow-list of a role, in file order, each with its reason (reasons must not be empty).
pub fn allowed(role: Role) -> Result<Vec<Allowed>, HardeningError> {
    let invalid = |reason: String| HardeningError::Policy {
        role: role.name(),
        reason,
    };
    let mut file: std::collections::BTreeMap<String, Filter> =
        serde_json::from_str(role.policy()).map_err(|e| invalid(e.to_string()))?;
    let filter = file
        .remove(role.name())
        .ok_or_else(|| invalid(format!("no filter named {:?}", role.name())))?;
    if let Some(rule) = filter.rules.iter().find(|r| r.reason.trim().is_empty()) {
        return Err(invalid(format!("{} has no reason", rule.syscall)));
    }
    Ok(filter.rules)
}

fn target_arch() -> Result<TargetArch, HardeningError> {
    TargetArch::try_from(std::env::consts::ARCH).map_err(|_| HardeningError::Policy {
        role: "any",
        reason: format!("no seccomp policy for {}", std::env::consts::ARCH),
    })
}

/// Compiles a role's list into a BPF program for this machine's architecture.
pub fn compile(role: Role) -> Result<BpfProgram, HardeningError> {
    allowed(role)?;
    let mut programs = seccompiler::compile_from_json(role.policy().as_bytes(), target_arch()?)
        .map_err(|e| HardeningError::Policy {
            role: role.name(),
            reason: e.to_string(),
        })?;
    programs
        .remove(role.name())
        .ok_or_else(|| HardeningError::Policy {
            role: role.name(),
            reason: "compiled to nothing".into(),
        })
}

/// The identity of a compiled program: SHA-256 over its instructions, in hex. Two images built
/// from the same policy for the same architecture compile the same program.
pub fn program_id(program: &[seccompiler::sock_filter]) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for instruction in program {
        hash.update(instruction.code.to_le_bytes());
        hash.update([instruction.jt, instruction.jf]);
        hash.update(instruction.k.to_le_bytes());
    }
    hex::encode(hash.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_compiles_with_a_reason_per_syscall() {
        for role in Role::ALL {
            let rules = allowed(role).expect("policy parses");
            assert!(!rules.is_empty());
            compile(role).expect("policy compiles for this architecture");
        }
    }

    /// Filters survive `execve`, so every in-place upgrade that changes the policy stacks one
    /// more agent filter, and the kernel refuses a stack over 32,768 instructions (each filter
    /// costs 4 more): the agent filter must stay small enough for a long run of such upgrades
    /// between restarts (`docs/hardening.md` says what happens past it).
    #[test]
    fn fifty_in_place_upgrades_fit_the_kernel_filter_stack() {
        let agent = compile(Role::Agent).expect("agent").len() + 4;
        let engine = compile(Role::Engine).expect("engine").len() + 4;
        assert!(
            51 * agent + engine <= 32_768,
            "agent {agent}, engine {engine}"
        );
    }

    #[test]
    fn a_program_id_is_stable_and_tells_policies_apart() {
        let agent = program_id(&compile(Role::Agent).expect("agent"));
        assert_eq!(agent, program_id(&compile(Role::Agent).expect("agent")));
        assert_ne!(agent, program_id(&compile(Role::Engine).expect("engine")));
        assert_eq!(agent.len(), 64);
    }

    #[test]
    fn no_syscall_is_listed_twice() {
        for role in Role::ALL {
            let mut names: Vec<_> = allowed(role)
                .expect("parses")
                .into_iter()
                .map(|r| r.syscall)
                .collect();
            let total = names.len();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), total, "{} lists a syscall twice", role.name());
        }
    }

    /// The engine filter stacks on the agent filter, so a call only the engine list has would
    /// still fail: the engine list must be a subset.
    #[test]
    fn engine_list_is_a_subset_of_the_agent_list() {
        let agent: Vec<_> = allowed(Role::Agent)
            .expect("agent")
            .into_iter()
            .map(|r| r.syscall)
            .collect();
        for rule in allowed(Role::Engine).expect("engine") {
            assert!(
                agent.contains(&rule.syscall),
                "{} is in engine only",
                rule.syscall
            );
        }
    }

    #[test]
    fn engine_threads_cannot_reach_the_network_or_spawn() {
        let engine: Vec<_> = allowed(Role::Engine)
            .expect("engine")
            .into_iter()
            .map(|r| r.syscall)
            .collect();
        for forbidden in [
            "socket",
            "connect",
            "execve",
            "clone",
            "clone3",
            "ptrace",
            "fanotify_mark",
            "mkdir",
            "unlink",
        ] {
            assert!(
                !engine.iter().any(|s| s == forbidden),
                "engine allows {forbidden}"
            );
        }
    }

    #[test]
    fn agent_never_allows_what_only_an_attacker_needs() {
        let agent: Vec<_> = allowed(Role::Agent)
            .expect("agent")
            .into_iter()
            .map(|r| r.syscall)
            .collect();
        for forbidden in [
            "ptrace",
            "process_vm_readv",
            "process_vm_writev",
            "mount",
            "umount2",
            "pivot_root",
            "chroot",
            "bpf",
            "perf_event_open",
            "init_module",
            "finit_module",
            "delete_module",
            "kexec_load",
            "setuid",
            "setgid",
            "setns",
            "unshare",
            "keyctl",
            "io_uring_setup",
            "userfaultfd",
            "pidfd_getfd",
            "fanotify_init",
            "bind",
        ] {
            assert!(
                !agent.iter().any(|s| s == forbidden),
                "agent allows {forbidden}"
            );
        }
    }

    #[test]
    fn an_unknown_syscall_name_fails_closed() {
        let text = r#"{"agent": {"mismatch_action": {"errno": 1}, "match_action": "allow",
            "filter": [{"syscall": "no_such_call", "comment": "x"}]}}"#;
        assert!(
            seccompiler::compile_from_json(text.as_bytes(), target_arch().expect("arch")).is_err()
        );
    }
}
