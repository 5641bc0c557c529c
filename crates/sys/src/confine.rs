//! The confinement calls no well-kept crate wraps the way we need: secure bits
//! (`PR_SET_SECUREBITS`), `PR_SET_NO_NEW_PRIVS`, and installing a seccomp program with flags
//! (`SECCOMP_FILTER_FLAG_TSYNC | SECCOMP_FILTER_FLAG_LOG`; `seccompiler` only offers TSYNC alone).

use std::io;

/// `SECBIT_NOROOT | SECBIT_NOROOT_LOCKED`: executing a program as uid 0 grants no capabilities.
pub const SECBIT_NOROOT: libc::c_ulong = 1 << 0 | 1 << 1;
/// `SECBIT_NO_SETUID_FIXUP | _LOCKED`: uid changes never adjust capability sets.
pub const SECBIT_NO_SETUID_FIXUP: libc::c_ulong = 1 << 2 | 1 << 3;
/// `SECBIT_KEEP_CAPS_LOCKED` (with `SECBIT_KEEP_CAPS` clear): a setuid away from 0 keeps nothing.
pub const SECBIT_KEEP_CAPS_LOCKED: libc::c_ulong = 1 << 5;
/// `SECBIT_NO_CAP_AMBIENT_RAISE | _LOCKED`: the ambient set can only shrink from here on.
pub const SECBIT_NO_CAP_AMBIENT_RAISE: libc::c_ulong = 1 << 6 | 1 << 7;

/// `prctl(PR_SET_SECUREBITS, bits)`; needs `CAP_SETPCAP`.
pub fn set_securebits(bits: libc::c_ulong) -> io::Result<()> {
    // SAFETY: PR_SET_SECUREBITS takes one integer argument; no memory is passed.
    let ret = unsafe { libc::prctl(libc::PR_SET_SECUREBITS, bits, 0, 0, 0) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `prctl(PR_SET_NO_NEW_PRIVS, 1)`: execve can never grant privileges again (setuid bits and
/// file capabilities are ignored). Inherited by every thread and child created afterwards.
pub fn set_no_new_privs() -> io::Result<()> {
    // SAFETY: PR_SET_NO_NEW_PRIVS takes integer arguments only.
    let ret = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Why installing a seccomp program failed.
#[derive(Debug)]
pub enum InstallError {
    Os(io::Error),
    /// TSYNC could not move this thread (it has a filter the caller's stack does not have).
    Thread(libc::c_long),
}

/// Installs the classic BPF `program` on the calling thread (and with `tsync`, on every thread
/// of the process). Denials are logged by the kernel (`SECCOMP_FILTER_FLAG_LOG`, audit type
/// 1326).
pub fn install_seccomp(program: &[libc::sock_filter], tsync: bool) -> Result<(), InstallError> {
    let len = u16::try_from(program.len()).map_err(|_| {
        InstallError::Os(io::Error::new(
            io::ErrorKind::InvalidInput,
            "seccomp program too long",
        ))
    })?;
    let fprog = libc::sock_fprog {
        len,
        filter: program.as_ptr().cast_mut(),
    };
    let mut flags = libc::SECCOMP_FILTER_FLAG_LOG;
    if tsync {
        flags |= libc::SECCOMP_FILTER_FLAG_TSYNC;
    }
    // SAFETY: `fprog` points at `program`, which outlives the call; the kernel copies the
    // program in (copy_from_user), never writes through the pointer, and keeps no reference to
    // our memory.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            std::ptr::from_ref(&fprog),
        )
    };
    match ret {
        0 => Ok(()),
        tid if tid > 0 => Err(InstallError::Thread(tid)),
        _ => Err(InstallError::Os(io::Error::last_os_error())),
    }
}
