//! Every raw system call ringfence makes, wrapped once: fanotify, file leases, netlink sockets,
//! descriptors, signals, process control (pidfd, parent-death signal, scheduling), the confinement calls
//! (`prctl`, `seccomp(2)`) and the crash handler.
//!
//! **Architecture invariant:** this is the only crate with `unsafe` code (apart from wasmtime's
//! compiled-artifact cache in `engine-host`, whose `unsafe` is wasmtime's own contract); every
//! other crate says `#![forbid(unsafe_code)]`, and `crates/testkit/tests/tidy.rs` checks it.
//! Each function here is safe to call with any arguments: a descriptor number becomes an
//! [`std::os::fd::OwnedFd`] only where this crate can prove nobody else owns it (the kernel just
//! created it, or handed it over in an event this crate read, or a previous image of this
//! process left it open across `execve`). The crate depends on libc alone, so the guard, which
//! keeps its dependencies few, can use it too.
#![allow(
    unsafe_code,
    reason = "the one place where ringfence talks to the kernel through raw system calls"
)]

pub mod confine;
#[cfg(feature = "crash")]
pub mod crash;
pub mod fanotify;
pub mod fd;
pub mod lease;
pub mod netlink;
pub mod process;
pub mod signals;

use std::io;

/// A libc return value as a result: negative means `errno` says why.
fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// [`check`] for calls that return a byte count.
fn check_size(ret: libc::ssize_t) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret.unsigned_abs())
    }
}
