//! fanotify: creating a group, marking, answering permission events, reading events together
//! with the descriptors the kernel put in our table for them, and the directory keys the entry
//! watch compares event records with.

use crate::fd::own;
use crate::{check, check_size};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `fanotify_init(2)`; returns the group descriptor.
pub fn init(flags: u32, event_f_flags: u32) -> io::Result<OwnedFd> {
    // SAFETY: fanotify_init takes two integers and returns a new descriptor or -1; no memory
    // is shared with the kernel.
    let fd = check(unsafe { libc::fanotify_init(flags, event_f_flags) })?;
    // SAFETY: the kernel just created `fd` for us and nothing else owns it.
    Ok(unsafe { own(fd) })
}

/// `fanotify_mark(2)` on a path (or, with `FAN_MARK_FLUSH`, on everything: pass `None`).
pub fn mark(group: &OwnedFd, flags: u32, mask: u64, path: Option<&Path>) -> io::Result<()> {
    let c_path = match path {
        Some(path) => Some(
            CString::new(path.as_os_str().as_bytes())
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?,
        ),
        None => None,
    };
    let ptr = c_path.as_ref().map_or(std::ptr::null(), |p| p.as_ptr());
    // SAFETY: `group` is a live descriptor, `ptr` is null or a NUL-terminated string that
    // outlives the call; the kernel only reads it.
    check(unsafe { libc::fanotify_mark(group.as_raw_fd(), flags, mask, libc::AT_FDCWD, ptr) })?;
    Ok(())
}

/// `fanotify_mark(2)` on the file `file` is open on (an inode mark: `dirfd` is the file and the
/// path is null), whatever names it has now.
pub fn mark_file(group: &OwnedFd, flags: u32, mask: u64, file: &impl AsFd) -> io::Result<()> {
    // SAFETY: both descriptors are live; a null path makes the kernel mark `file`'s inode.
    check(unsafe {
        libc::fanotify_mark(
            group.as_raw_fd(),
            flags,
            mask,
            file.as_fd().as_raw_fd(),
            std::ptr::null(),
        )
    })?;
    Ok(())
}

/// Writes one `fanotify_response` for the event descriptor `event`.
pub fn respond(group: &OwnedFd, event: &OwnedFd, response: u32) -> io::Result<()> {
    let answer = libc::fanotify_response {
        fd: event.as_raw_fd(),
        response,
    };
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

/// The size of `struct fanotify_event_metadata`, and where its `fd` field sits.
const METADATA_LEN: usize = 24;
const FD_OFFSET: usize = 16;

/// One read from a fanotify group: the bytes, and the event descriptors the kernel placed in our
/// table for the events in them. Each descriptor is handed out once ([`EventRead::take_fd`]);
/// whatever is not taken is closed when the read is dropped, so a garbled or ignored event never
/// leaks one.
#[derive(Debug, Default)]
pub struct EventRead {
    bytes: Vec<u8>,
    fds: Vec<OwnedFd>,
}

impl EventRead {
    /// The events as the kernel wrote them.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The descriptor of the event whose metadata names `fd`, once; `None` for `FAN_NOFD`, for a
    /// number no event in this read carries, and for one already taken.
    pub fn take_fd(&mut self, fd: RawFd) -> Option<OwnedFd> {
        let index = self.fds.iter().position(|owned| owned.as_raw_fd() == fd)?;
        Some(self.fds.swap_remove(index))
    }
}

/// Reads up to `capacity` bytes of events from `group`. A group with nothing queued (it is
/// non-blocking) or an interrupted read gives an empty [`EventRead`].
pub fn read_events(group: &OwnedFd, capacity: usize) -> io::Result<EventRead> {
    let mut bytes = vec![0u8; capacity];
    let n = match crate::fd::read(group, &mut bytes) {
        Ok(n) => n,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) =>
        {
            return Ok(EventRead::default());
        }
        Err(e) => return Err(e),
    };
    bytes.truncate(n);
    let fds = event_fds(&bytes)
        .into_iter()
        // SAFETY: the kernel has just created each of these descriptors in our table for an
        // event of this read, and handed it to this read alone.
        .map(|fd| unsafe { own(fd) })
        .collect();
    Ok(EventRead { bytes, fds })
}

/// The event descriptors named by the metadata in `bytes`, in order, skipping `FAN_NOFD`; stops
/// at the first record whose length does not fit (the rest cannot be trusted to be metadata).
fn event_fds(bytes: &[u8]) -> Vec<RawFd> {
    let mut fds = Vec::new();
    let mut rest = bytes;
    while rest.len() >= METADATA_LEN {
        let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len < METADATA_LEN || len > rest.len() {
            break;
        }
        let fd = i32::from_ne_bytes([
            rest[FD_OFFSET],
            rest[FD_OFFSET + 1],
            rest[FD_OFFSET + 2],
            rest[FD_OFFSET + 3],
        ]);
        if fd >= 0 && !fds.contains(&fd) {
            fds.push(fd);
        }
        rest = &rest[len..];
    }
    fds
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
pub fn dir_key(path: &Path) -> io::Result<Vec<u8>> {
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

    fn metadata(len: u32, fd: i32) -> Vec<u8> {
        let mut record = vec![0u8; METADATA_LEN];
        record[..4].copy_from_slice(&len.to_ne_bytes());
        record[FD_OFFSET..FD_OFFSET + 4].copy_from_slice(&fd.to_ne_bytes());
        record.resize(len as usize, 0);
        record
    }

    #[test]
    fn event_descriptors_are_read_from_whole_records_only() {
        let mut bytes = metadata(24, 7);
        bytes.extend(metadata(32, -1));
        bytes.extend(metadata(24, 9));
        assert_eq!(event_fds(&bytes), vec![7, 9]);
        // A record claiming more than is there ends the walk; so does one shorter than metadata.
        let mut garbled = metadata(24, 7);
        garbled.extend(&metadata(24, 8)[..20]);
        assert_eq!(event_fds(&garbled), vec![7]);
        assert_eq!(
            event_fds(&metadata(24, 5)[..METADATA_LEN - 1]),
            Vec::<RawFd>::new()
        );
        let mut short = metadata(24, 3);
        short[..4].copy_from_slice(&8u32.to_ne_bytes());
        assert!(event_fds(&short).is_empty());
    }

    #[test]
    fn a_descriptor_is_taken_once_and_only_if_the_read_carried_it() {
        let (read, _write) = std::io::pipe().expect("pipe");
        let fd = OwnedFd::from(read);
        let number = fd.as_raw_fd();
        let mut events = EventRead {
            bytes: Vec::new(),
            fds: vec![fd],
        };
        assert!(events.take_fd(number + 1000).is_none());
        assert!(events.take_fd(-1).is_none());
        assert_eq!(events.take_fd(number).map(|f| f.as_raw_fd()), Some(number));
        assert!(events.take_fd(number).is_none());
    }
}
