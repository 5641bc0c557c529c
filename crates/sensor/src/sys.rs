//! Every raw system call the sensor makes, wrapped once: fanotify, netlink sockets, signal
//! masks, adopting descriptors the kernel hands us, and the real-time scheduling of the
//! agent's deadline responder (which answers the fanotify tickets read here). Nothing outside this module is `unsafe`.
#![allow(
    unsafe_code,
    reason = "the one place where ringfence talks to the kernel through raw system calls"
)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn check_size(ret: libc::ssize_t) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret.unsigned_abs())
    }
}

/// `fanotify_init(2)`; returns the group descriptor.
pub fn fanotify_init(flags: u32, event_f_flags: u32) -> io::Result<OwnedFd> {
    // SAFETY: fanotify_init takes two integers and returns a new descriptor or -1; no memory
    // is shared with the kernel.
    let fd = check(unsafe { libc::fanotify_init(flags, event_f_flags) })?;
    // SAFETY: the kernel just created `fd` for us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `fanotify_mark(2)` on a path (or, with `FAN_MARK_FLUSH`, on everything: pass `None`).
pub fn fanotify_mark(
    group: &OwnedFd,
    flags: u32,
    mask: u64,
    path: Option<&Path>,
) -> io::Result<()> {
    let c_path = match path {
        Some(path) => Some(
            CString::new(path.as_os_str().as_bytes())
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?,
        ),
        None => None,
    };
    let ptr = c_path.as_ref().map_or(std::ptr::null(), |p| p.as_ptr());
    // SAFETY: `group` is a live fanotify descriptor, `ptr` is null or a NUL-terminated string
    // that outlives the call; the kernel only reads it.
    check(unsafe { libc::fanotify_mark(group.as_raw_fd(), flags, mask, libc::AT_FDCWD, ptr) })?;
    Ok(())
}

/// Writes one `fanotify_response` for the event descriptor `fd`.
pub fn fanotify_respond(group: &OwnedFd, fd: RawFd, response: u32) -> io::Result<()> {
    let answer = libc::fanotify_response { fd, response };
    let size = std::mem::size_of::<libc::fanotify_response>();
    // SAFETY: `answer` is a plain C struct that lives for the call; we pass its exact size and
    // the kernel only reads it.
    let written = check_size(unsafe {
        libc::write(
            group.as_raw_fd(),
            std::ptr::from_ref(&answer).cast::<libc::c_void>(),
            size,
        )
    })?;
    if written != size {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "short fanotify response",
        ));
    }
    Ok(())
}

/// A way to end the readers' waits at once: an eventfd in each reader's poll set. Stopping or
/// handing off then takes as long as the reader's current batch, not the rest of its poll
/// timeout (which an in-place upgrade spends with every exec waiting). Once woken it stays
/// readable: a reader that was woken is meant to stop.
#[derive(Debug)]
pub struct Wake(OwnedFd);

impl Wake {
    pub fn new() -> io::Result<Wake> {
        // SAFETY: eventfd takes no pointers; the descriptor it returns is new and ours alone.
        let fd = check(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
        // SAFETY: `fd` was just returned by eventfd and is owned by nobody else.
        Ok(Wake(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Ends every current and later wait on this wake.
    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: an 8-byte write from a valid u64 to our own eventfd; a full counter (after
        // 2^64-2 wakes) fails with EAGAIN, and the eventfd is readable then anyway.
        let _ = unsafe { libc::write(self.0.as_raw_fd(), (&raw const one).cast(), 8) };
    }
}

/// Waits until `fd` is readable or `timeout` passes; true when readable.
pub fn poll_readable(fd: &OwnedFd, timeout: Duration) -> io::Result<bool> {
    poll_readable_or_woken(fd, None, timeout)
}

/// [`poll_readable`] that also returns (false, unless `fd` is readable too) when `wake` is
/// woken.
pub fn poll_readable_or_woken(
    fd: &OwnedFd,
    wake: Option<&Wake>,
    timeout: Duration,
) -> io::Result<bool> {
    let watch = |fd: RawFd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let mut fds = [
        watch(fd.as_raw_fd()),
        watch(wake.map_or(-1, |w| w.0.as_raw_fd())),
    ];
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: two valid pollfds (a negative fd is ignored by the kernel), count 2; the kernel
    // writes only their `revents`.
    match check(unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) }) {
        Ok(_) => Ok(fds[0].revents != 0),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(false),
        Err(e) => Err(e),
    }
}

/// `read(2)` into `buf`; returns how many bytes the kernel wrote.
pub fn read(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is a valid writable slice of `buf.len()` bytes for the whole call.
    check_size(unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) })
}

/// Takes ownership of a descriptor the kernel placed in our table (a fanotify event fd).
///
/// Returns `None` for negative numbers (`FAN_NOFD`) and for numbers that are not open, so a
/// garbled event can never make us close someone else's descriptor... except by the kernel
/// lying, which we cannot defend against.
pub fn adopt_event_fd(fd: RawFd) -> Option<OwnedFd> {
    if fd < 0 {
        return None;
    }
    // SAFETY: F_GETFD only inspects the descriptor table.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return None;
    }
    // SAFETY: the kernel created this descriptor for the event we just read and handed it to
    // us; we are its only owner.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A netlink socket of `protocol`, bound to the multicast `groups`.
pub fn netlink_socket(protocol: libc::c_int, groups: u32) -> io::Result<OwnedFd> {
    // SAFETY: socket takes integers and returns a new descriptor or -1.
    let fd = check(unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            protocol,
        )
    })?;
    // SAFETY: the kernel just created `fd` and nothing else owns it.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_nl is a plain C struct for which all-zero is a valid value.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    addr.nl_pid = 0;
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

/// Sends one datagram to the kernel (netlink pid 0).
pub fn netlink_send(socket: &OwnedFd, bytes: &[u8]) -> io::Result<()> {
    // SAFETY: see netlink_socket; all-zero sockaddr_nl is valid and means "the kernel".
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
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

/// The signal that asks a running agent to upgrade itself in place (re-exec its binary).
pub const UPGRADE_SIGNAL: libc::c_int = libc::SIGUSR2;

/// Signals a daemon collects instead of dying by them: the termination signals, which it turns
/// into a clean shutdown, and [`UPGRADE_SIGNAL`].
pub const DAEMON_SIGNALS: [libc::c_int; 4] =
    [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, UPGRADE_SIGNAL];

fn termination_set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before any use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t owned by this frame.
    unsafe { libc::sigemptyset(&mut set) };
    for signal in DAEMON_SIGNALS {
        // SAFETY: as above; the signal numbers are valid constants.
        unsafe { libc::sigaddset(&mut set, signal) };
    }
    set
}

/// Blocks [`DAEMON_SIGNALS`] in the calling thread, and so in every thread it starts
/// afterwards; call it first thing in `main`, then collect them with [`wait_termination`].
pub fn block_termination_signals() -> io::Result<()> {
    let set = termination_set();
    // SAFETY: `set` is initialised; the old mask is not wanted (null).
    let ret = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if ret != 0 {
        return Err(io::Error::from_raw_os_error(ret));
    }
    Ok(())
}

/// Restores the default action for SIGPIPE, which Rust's runtime ignores: a command-line tool
/// whose output is piped into `head` should end quietly when the reader goes, not panic on
/// the failed write.
pub fn restore_default_sigpipe() {
    // SAFETY: installing the default disposition for SIGPIPE has no preconditions; it runs
    // before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Gives the heap's free pages back to the kernel. Compiling an engine with Cranelift allocates
/// tens of MiB that glibc keeps for reuse once freed; an agent compiles only at start and on an
/// install, never reuses that memory in between, and on a fleet it is resident size paid on
/// every host (`ringfence bench memory`).
pub fn release_free_heap() {
    // SAFETY: malloc_trim walks glibc's own arenas under their own locks; it has no
    // preconditions and may be called from any thread at any time.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Waits up to `timeout` for one of [`DAEMON_SIGNALS`]; returns its number.
pub fn wait_termination(timeout: Duration) -> Option<libc::c_int> {
    let set = termination_set();
    let ts = libc::timespec {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(timeout.subsec_nanos().min(999_999_999) as i32),
    };
    // SAFETY: `set` and `ts` are initialised and outlive the call; siginfo is not wanted.
    let signal = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
    (signal > 0).then_some(signal)
}

/// Puts the calling thread under `SCHED_RR` at `priority` (1 is the lowest real-time
/// priority): it then runs before every normal thread of the host whenever it is runnable, so
/// a loaded machine cannot keep it from answering on time. Needs `CAP_SYS_NICE` or an
/// `RLIMIT_RTPRIO` of at least `priority`.
pub fn set_realtime_round_robin(priority: i32) -> io::Result<()> {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: `param` is initialised and outlives the call; pid 0 names the calling thread.
    check(unsafe { libc::sched_setscheduler(0, libc::SCHED_RR, &param) }).map(|_| ())
}

/// The pid of this process.
pub fn getpid() -> u32 {
    std::process::id()
}

/// Sets or clears `FD_CLOEXEC`: a descriptor handed to a re-executed agent must survive
/// `execve`, and every other one must not.
pub fn set_cloexec(fd: &OwnedFd, cloexec: bool) -> io::Result<()> {
    // SAFETY: F_GETFD only reads the descriptor flags of a descriptor we own.
    let flags = check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) })?;
    let flags = if cloexec {
        flags | libc::FD_CLOEXEC
    } else {
        flags & !libc::FD_CLOEXEC
    };
    // SAFETY: F_SETFD only writes the descriptor flags of a descriptor we own.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, flags) })?;
    Ok(())
}

/// Takes ownership of a descriptor a previous image of this process left open for us across
/// `execve` (the self-upgrade handoff), after checking that it is open and that
/// `/proc/self/fd/<fd>` names the kind of object we expect (e.g. `anon_inode:[fanotify]`).
///
/// The caller must adopt each handed-over number once; [`crate::handoff`] guarantees that by
/// consuming the handoff description exactly once per process.
pub fn adopt_inherited_fd(fd: RawFd, expected_link_prefix: &str) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "negative descriptor",
        ));
    }
    // SAFETY: F_GETFD only inspects the descriptor table.
    check(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}"))?;
    if !link.to_string_lossy().starts_with(expected_link_prefix) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "descriptor {fd} is {}, not {expected_link_prefix}",
                link.display()
            ),
        ));
    }
    // SAFETY: the descriptor is open, is the kind of object our previous image handed over,
    // and nothing else in this process owns it: the handoff is consumed once, at start,
    // before any other code could have wrapped the number.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    set_cloexec(&owned, true)?;
    Ok(owned)
}

/// `MAX_HANDLE_SZ` of `<linux/exportfs.h>`: the largest file handle any filesystem makes.
const MAX_HANDLE_SZ: usize = 128;

/// `struct file_handle` with room for the largest handle.
#[repr(C)]
struct FileHandleBuf {
    handle_bytes: libc::c_uint,
    handle_type: libc::c_int,
    f_handle: [u8; MAX_HANDLE_SZ],
}

/// How a `FAN_REPORT_DFID_NAME` group names the directory `path` in its events: the filesystem
/// id (`statfs`), then the directory's file handle (`name_to_handle_at`) with its size and
/// type, laid out as in the event's info record, so that a key and an event compare bytewise.
pub fn fanotify_dir_key(path: &Path) -> io::Result<Vec<u8>> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    // SAFETY: `struct statfs` is plain old data; all zeroes is a valid value.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: statfs reads the NUL-terminated path and writes one `struct statfs` into the
    // value we own.
    check(unsafe { libc::statfs(c_path.as_ptr(), &mut stat) })?;
    // SAFETY: `fsid_t` is `#[repr(C)]` around `[c_int; 2]` (its field is private in libc);
    // transmute checks the sizes are equal.
    let fsid: [libc::c_int; 2] = unsafe { std::mem::transmute(stat.f_fsid) };
    let mut handle = FileHandleBuf {
        handle_bytes: MAX_HANDLE_SZ as libc::c_uint,
        handle_type: 0,
        f_handle: [0; MAX_HANDLE_SZ],
    };
    let mut mount_id: libc::c_int = 0;
    let mut name_to_handle = |flags: libc::c_int| {
        handle.handle_bytes = MAX_HANDLE_SZ as libc::c_uint;
        // SAFETY: `handle` is a `struct file_handle` whose `handle_bytes` says how much room
        // follows it; the kernel writes no more than that, and `mount_id` is a valid int.
        check(unsafe {
            libc::name_to_handle_at(
                libc::AT_FDCWD,
                c_path.as_ptr(),
                std::ptr::from_mut(&mut handle).cast::<libc::file_handle>(),
                &mut mount_id,
                flags,
            )
        })
    };
    // A filesystem that cannot export handles (overlayfs without nfs_export, as in many
    // containers) still names directories to fanotify by an id-only handle, which
    // `AT_HANDLE_FID` (Linux 6.5) asks for.
    if let Err(error) = name_to_handle(0) {
        if error.raw_os_error() != Some(libc::EOPNOTSUPP) {
            return Err(error);
        }
        name_to_handle(libc::AT_HANDLE_FID)?;
    }
    let len = (handle.handle_bytes as usize).min(MAX_HANDLE_SZ);
    let mut key = Vec::with_capacity(16 + len);
    key.extend_from_slice(&fsid[0].to_ne_bytes());
    key.extend_from_slice(&fsid[1].to_ne_bytes());
    key.extend_from_slice(&handle.handle_bytes.to_ne_bytes());
    key.extend_from_slice(&handle.handle_type.to_ne_bytes());
    key.extend_from_slice(&handle.f_handle[..len]);
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A descriptor that never becomes readable: the read end of a pipe nobody writes to.
    fn quiet() -> (OwnedFd, std::io::PipeWriter) {
        let (read, write) = std::io::pipe().expect("pipe");
        (OwnedFd::from(read), write)
    }

    #[test]
    fn a_woken_wait_returns_without_the_descriptor_being_readable() {
        let (read, _write) = quiet();
        let wake = Wake::new().expect("eventfd");
        assert!(!poll_readable_or_woken(&read, Some(&wake), Duration::ZERO).expect("poll"));
        wake.wake();
        // An hour's timeout: the call returns only because it was woken.
        assert!(
            !poll_readable_or_woken(&read, Some(&wake), Duration::from_secs(3600)).expect("poll")
        );
    }

    #[test]
    fn a_readable_descriptor_is_reported_even_when_woken() {
        let (read, mut write) = quiet();
        std::io::Write::write_all(&mut write, b"x").expect("write");
        let wake = Wake::new().expect("eventfd");
        wake.wake();
        assert!(
            poll_readable_or_woken(&read, Some(&wake), Duration::from_secs(3600)).expect("poll")
        );
    }
}
