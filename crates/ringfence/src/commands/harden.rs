//! `ringfence agent`'s flags about privilege reduction: on by default for a root agent with live
//! sensors (`ringfence_host::confine` applies it), off with `--no-harden` for debugging, and
//! `--print-policy` to see what a hardened agent keeps.

use ringfence_hardening::Role;

/// Flags of `ringfence agent` about hardening.
#[derive(Debug, Clone, clap::Args)]
pub struct HardenArgs {
    /// Do not drop capabilities, set no_new_privs, install seccomp filters or Landlock
    /// (debugging only: a confined agent's failed system calls are logged by the kernel).
    #[arg(long)]
    pub no_harden: bool,
    /// Print the seccomp allow-lists with their reasons and the kept capabilities, and exit.
    #[arg(long)]
    pub print_policy: bool,
}

/// `ringfence agent --print-policy`: what a hardened agent keeps and may call, with reasons.
pub fn print_policy() -> anyhow::Result<()> {
    println!("capabilities kept (all others dropped from every set, bounding included):");
    for (cap, reason) in ringfence_hardening::KEPT {
        println!("  {cap}: {reason}");
    }
    for role in Role::ALL {
        let rules = ringfence_hardening::allowed(role)?;
        println!(
            "seccomp role {} ({} syscalls; others fail with EPERM):",
            role.name(),
            rules.len()
        );
        for rule in rules {
            println!("  {:<24} {}", rule.syscall, rule.reason);
        }
    }
    Ok(())
}
