//! Netlink sockets to the kernel (the process connector).

use crate::fd::own;
use crate::{check, check_size};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

/// A netlink socket of `protocol`, bound to the multicast `groups`.
pub fn socket(protocol: libc::c_int, groups: u32) -> io::Result<OwnedFd> {
    // SAFETY: socket takes integers and returns a new descriptor or -1.
    let fd = check(unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            protocol,
        )
    })?;
    // SAFETY: the kernel just created `fd` and nothing else owns it.
    let socket = unsafe { own(fd) };
    let mut addr = kernel_address();
    addr.nl_groups = groups;
    let len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
    // SAFETY: `addr` is a valid sockaddr_nl of `len` bytes that outlives the call.
    check(unsafe {
        libc::bind(
            socket.as_raw_fd(),
            std::ptr::from_ref(&addr).cast::<libc::sockaddr>(),
            len,
        )
    })?;
    Ok(socket)
}

/// A netlink address with port 0 (the kernel) and no groups.
fn kernel_address() -> libc::sockaddr_nl {
    // SAFETY: sockaddr_nl is a plain C struct for which all-zero is a valid value.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    addr
}

/// Sends one datagram to the kernel (netlink port 0).
pub fn send(socket: &OwnedFd, bytes: &[u8]) -> io::Result<()> {
    let addr = kernel_address();
    let len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
    // SAFETY: `bytes` and `addr` are valid for reads for the whole call.
    check_size(unsafe {
        libc::sendto(
            socket.as_raw_fd(),
            bytes.as_ptr().cast(),
            bytes.len(),
            0,
            std::ptr::from_ref(&addr).cast::<libc::sockaddr>(),
            len,
        )
    })?;
    Ok(())
}

/// Sets `SO_RCVBUF` (best effort: a larger buffer loses fewer process events under bursts).
pub fn set_receive_buffer(socket: &OwnedFd, bytes: libc::c_int) -> io::Result<()> {
    // SAFETY: we pass a pointer to a c_int and its size; the kernel only reads it.
    check(unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            std::ptr::from_ref(&bytes).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })?;
    Ok(())
}
