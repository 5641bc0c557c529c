//! Decoders for the bytes the kernel hands us (fanotify event metadata, netlink process
//! connector messages). They are pure functions over `&[u8]` so they can be unit-tested and
//! fuzzed with garbage: short or garbled input yields fewer records or an error, never a panic.

/// Size of `struct fanotify_event_metadata` (version 3).
pub const FAN_METADATA_LEN: usize = 24;

/// One fanotify event as the kernel described it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawFanEvent {
    pub mask: u64,
    /// The event's file descriptor, or `FAN_NOFD` (-1) for queue overflow.
    pub fd: i32,
    pub pid: i32,
}

/// Why a fanotify buffer could not be fully decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The buffer ends inside a record.
    #[error("truncated record at byte {0}")]
    Truncated(usize),
    /// The record declares a length shorter than its header or past the buffer.
    #[error("bad record length {len} at byte {at}")]
    BadLength { at: usize, len: usize },
    /// The kernel speaks a metadata version we do not know.
    #[error("fanotify metadata version {0}, expected 3")]
    Version(u8),
}

fn u16_at(buf: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(buf.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(buf.get(at..at + 4)?.try_into().ok()?))
}

fn i32_at(buf: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_ne_bytes(buf.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(buf: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(buf.get(at..at + 8)?.try_into().ok()?))
}

/// The fixed header of the fanotify record at `at`: (record length, mask, fd, pid), with the
/// length checked against the header size and the buffer.
fn record_header(buf: &[u8], at: usize) -> Result<(usize, u64, i32, i32), DecodeError> {
    let header = (
        u32_at(buf, at),
        buf.get(at + 4).copied(),
        u64_at(buf, at + 8),
        i32_at(buf, at + 16),
        i32_at(buf, at + 20),
    );
    let (Some(len), Some(version), Some(mask), Some(fd), Some(pid)) = header else {
        return Err(DecodeError::Truncated(at));
    };
    if version != libc::FANOTIFY_METADATA_VERSION {
        return Err(DecodeError::Version(version));
    }
    let len = len as usize;
    if len < FAN_METADATA_LEN || at.saturating_add(len) > buf.len() {
        return Err(DecodeError::BadLength { at, len });
    }
    Ok((len, mask, fd, pid))
}

/// Decodes every complete fanotify record in `buf`. Records before an error are returned with
/// it, so the caller can still answer (and close) the events it did get.
pub fn fanotify_events(buf: &[u8]) -> (Vec<RawFanEvent>, Option<DecodeError>) {
    let mut events = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        match record_header(buf, at) {
            Ok((len, mask, fd, pid)) => {
                events.push(RawFanEvent { mask, fd, pid });
                at += len;
            }
            Err(error) => return (events, Some(error)),
        }
    }
    (events, None)
}

/// One event of a group that reports directory entries (`FAN_REPORT_DFID_NAME`): what
/// happened, to which name, in which directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEntryEvent {
    pub mask: u64,
    /// `FAN_NOFD` (-1) in this reporting mode; anything else is a descriptor to close.
    pub fd: i32,
    pub pid: i32,
    /// The directory as the kernel identifies it: filesystem id, handle size, handle type and
    /// handle bytes, exactly as in the record (compare with [`ringfence_sys::fanotify::dir_key`]).
    /// Empty when the record carried no directory (queue overflow).
    pub dir: Vec<u8>,
    /// The entry's name in that directory, without its NUL terminator.
    pub name: Vec<u8>,
}

/// `struct fanotify_event_info_header` + `__kernel_fsid_t`.
const INFO_HEADER_LEN: usize = 4;
const FSID_LEN: usize = 8;
/// `struct file_handle` before its bytes: `handle_bytes` and `handle_type`.
const HANDLE_HEADER_LEN: usize = 8;

/// Decodes every complete record of a `FAN_REPORT_DFID_NAME` group, with the directory and
/// name from its info record. Like [`fanotify_events`], records before an error are returned
/// with it.
pub fn fanotify_entry_events(buf: &[u8]) -> (Vec<RawEntryEvent>, Option<DecodeError>) {
    let mut events = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let (len, mask, fd, pid) = match record_header(buf, at) {
            Ok(header) => header,
            Err(error) => return (events, Some(error)),
        };
        match entry_info(buf, at + FAN_METADATA_LEN, at + len) {
            Ok((dir, name)) => events.push(RawEntryEvent {
                mask,
                fd,
                pid,
                dir: dir.to_vec(),
                name: name.to_vec(),
            }),
            Err(error) => return (events, Some(error)),
        }
        at += len;
    }
    (events, None)
}

/// The directory key and name of the first `DFID_NAME` info record in `buf[start..end]`;
/// empty for a record that has none.
fn entry_info(buf: &[u8], start: usize, end: usize) -> Result<(&[u8], &[u8]), DecodeError> {
    let mut at = start;
    while at < end {
        let (Some(info_type), Some(info_len)) = (buf.get(at).copied(), u16_at(buf, at + 2)) else {
            return Err(DecodeError::Truncated(at));
        };
        let info_len = usize::from(info_len);
        if info_len < INFO_HEADER_LEN || at + info_len > end {
            return Err(DecodeError::BadLength { at, len: info_len });
        }
        if info_type == libc::FAN_EVENT_INFO_TYPE_DFID_NAME {
            let record = &buf[at..at + info_len];
            let key_start = INFO_HEADER_LEN;
            let handle_start = key_start + FSID_LEN;
            let handle_bytes =
                u32_at(record, handle_start).ok_or(DecodeError::BadLength { at, len: info_len })?;
            let key_end = (handle_start + HANDLE_HEADER_LEN)
                .checked_add(handle_bytes as usize)
                .filter(|&e| e <= record.len())
                .ok_or(DecodeError::BadLength { at, len: info_len })?;
            let rest = &record[key_end..];
            let name = rest.split(|&b| b == 0).next().unwrap_or_default();
            return Ok((&record[key_start..key_end], name));
        }
        at += info_len;
    }
    Ok((&[], &[]))
}

/// `CN_IDX_PROC` / `CN_VAL_PROC`: the connector id of the process events connector.
pub const CN_IDX_PROC: u32 = 1;
pub const CN_VAL_PROC: u32 = 1;
const NLMSG_HDRLEN: usize = 16;
const CN_MSG_LEN: usize = 20;
const NLMSG_DONE: u16 = 3;
const PROC_CN_MCAST_LISTEN: u32 = 1;

/// One process connector event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcEvent {
    Fork {
        parent_tgid: u32,
        child_pid: u32,
        child_tgid: u32,
    },
    Exec {
        pid: u32,
        tgid: u32,
    },
    Exit {
        pid: u32,
        tgid: u32,
        exit_code: u32,
    },
}

/// The subscribe message: nlmsghdr + cn_msg + `PROC_CN_MCAST_LISTEN`.
pub fn proc_listen_message() -> Vec<u8> {
    let total = NLMSG_HDRLEN + CN_MSG_LEN + 4;
    let mut msg = Vec::with_capacity(total);
    msg.extend_from_slice(&(total as u32).to_ne_bytes());
    msg.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
    msg.extend_from_slice(&0u16.to_ne_bytes()); // flags
    msg.extend_from_slice(&0u32.to_ne_bytes()); // seq
    msg.extend_from_slice(&std::process::id().to_ne_bytes());
    msg.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
    msg.extend_from_slice(&CN_VAL_PROC.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes()); // seq
    msg.extend_from_slice(&0u32.to_ne_bytes()); // ack
    msg.extend_from_slice(&4u16.to_ne_bytes()); // len
    msg.extend_from_slice(&0u16.to_ne_bytes()); // flags
    msg.extend_from_slice(&PROC_CN_MCAST_LISTEN.to_ne_bytes());
    msg
}

/// Decodes one netlink datagram from the process connector. Unknown event types (uid, sid,
/// ptrace, comm, coredump changes) and malformed messages are skipped.
pub fn proc_events(buf: &[u8]) -> Vec<ProcEvent> {
    let mut events = Vec::new();
    let mut at = 0;
    while let Some(len) = u32_at(buf, at) {
        let len = len as usize;
        if len < NLMSG_HDRLEN || at.saturating_add(len) > buf.len() {
            break;
        }
        if let Some(event) = buf.get(at..at + len).and_then(proc_event) {
            events.push(event);
        }
        // Netlink messages are 4-byte aligned.
        at += (len + 3) & !3;
    }
    events
}

fn proc_event(msg: &[u8]) -> Option<ProcEvent> {
    let cn = NLMSG_HDRLEN;
    if u32_at(msg, cn)? != CN_IDX_PROC || u32_at(msg, cn + 4)? != CN_VAL_PROC {
        return None;
    }
    let data_len = usize::from(u16_at(msg, cn + 16)?);
    let ev = msg.get(cn + CN_MSG_LEN..(cn + CN_MSG_LEN).checked_add(data_len)?)?;
    // struct proc_event: what u32, cpu u32, timestamp u64, then the union at offset 16.
    let what = u32_at(ev, 0)?;
    let d = 16;
    match what {
        0x0000_0001 => Some(ProcEvent::Fork {
            parent_tgid: u32_at(ev, d + 4)?,
            child_pid: u32_at(ev, d + 8)?,
            child_tgid: u32_at(ev, d + 12)?,
        }),
        0x0000_0002 => Some(ProcEvent::Exec {
            pid: u32_at(ev, d)?,
            tgid: u32_at(ev, d + 4)?,
        }),
        0x8000_0000 => Some(ProcEvent::Exit {
            pid: u32_at(ev, d)?,
            tgid: u32_at(ev, d + 4)?,
            exit_code: u32_at(ev, d + 8)?,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fan_record(len: u32, version: u8, mask: u64, fd: i32, pid: i32) -> Vec<u8> {
        let mut r = Vec::new();
        r.extend_from_slice(&len.to_ne_bytes());
        r.push(version);
        r.push(0);
        r.extend_from_slice(&24u16.to_ne_bytes());
        r.extend_from_slice(&mask.to_ne_bytes());
        r.extend_from_slice(&fd.to_ne_bytes());
        r.extend_from_slice(&pid.to_ne_bytes());
        r
    }

    /// A `FAN_REPORT_DFID_NAME` record: metadata, then one info record with fsid, a handle
    /// and a NUL-padded name.
    fn entry_record(mask: u64, pid: i32, handle: &[u8], name: &str) -> Vec<u8> {
        let mut info = vec![libc::FAN_EVENT_INFO_TYPE_DFID_NAME, 0, 0, 0];
        info.extend_from_slice(&[7, 0, 0, 0, 9, 0, 0, 0]);
        info.extend_from_slice(&(handle.len() as u32).to_ne_bytes());
        info.extend_from_slice(&1i32.to_ne_bytes());
        info.extend_from_slice(handle);
        info.extend_from_slice(name.as_bytes());
        info.push(0);
        while info.len() % 4 != 0 {
            info.push(0);
        }
        let info_len = info.len() as u16;
        info[2..4].copy_from_slice(&info_len.to_ne_bytes());
        let mut record = fan_record(
            (FAN_METADATA_LEN + info.len()) as u32,
            libc::FANOTIFY_METADATA_VERSION,
            mask,
            -1,
            pid,
        );
        record.extend_from_slice(&info);
        record
    }

    #[test]
    fn decodes_directory_entry_records() {
        let mut buf = entry_record(
            libc::FAN_MOVED_TO,
            42,
            &[1, 2, 3, 4, 5, 6, 7, 8],
            "ringfence",
        );
        buf.extend(entry_record(libc::FAN_DELETE, 43, &[9; 12], "agent.toml"));
        // An overflow record carries no info record at all.
        buf.extend(fan_record(
            24,
            libc::FANOTIFY_METADATA_VERSION,
            libc::FAN_Q_OVERFLOW,
            -1,
            0,
        ));
        let (events, error) = fanotify_entry_events(&buf);
        assert_eq!(error, None);
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].mask, libc::FAN_MOVED_TO);
        assert_eq!(events[0].pid, 42);
        assert_eq!(events[0].name, b"ringfence");
        assert_eq!(events[0].dir.len(), FSID_LEN + HANDLE_HEADER_LEN + 8);
        assert_eq!(&events[0].dir[..4], &[7, 0, 0, 0]);
        assert_eq!(events[1].name, b"agent.toml");
        assert_ne!(events[0].dir, events[1].dir);
        assert!(events[2].dir.is_empty() && events[2].name.is_empty());
    }

    #[test]
    fn garbled_entry_records_keep_the_good_ones_and_never_panic() {
        let good = entry_record(libc::FAN_CREATE, 1, &[1; 8], "x");
        // A handle claiming more bytes than its record holds.
        let mut lying = entry_record(libc::FAN_CREATE, 2, &[1; 8], "y");
        let at = FAN_METADATA_LEN + INFO_HEADER_LEN + FSID_LEN;
        lying[at..at + 4].copy_from_slice(&4096u32.to_ne_bytes());
        let mut buf = good.clone();
        buf.extend(&lying);
        let (events, error) = fanotify_entry_events(&buf);
        assert_eq!(events.len(), 1);
        assert!(
            matches!(error, Some(DecodeError::BadLength { .. })),
            "{error:?}"
        );
        for cut in 0..buf.len() {
            let _ = fanotify_entry_events(&buf[..cut]);
        }
        // An info length of zero must not loop for ever.
        let mut zero = good;
        zero[FAN_METADATA_LEN + 2..FAN_METADATA_LEN + 4].copy_from_slice(&0u16.to_ne_bytes());
        assert!(fanotify_entry_events(&zero).1.is_some());
    }

    #[test]
    fn decodes_two_fanotify_records() {
        let mut buf = fan_record(24, 3, libc::FAN_OPEN_EXEC_PERM, 7, 100);
        buf.extend(fan_record(24, 3, libc::FAN_OPEN_PERM, 8, 101));
        let (events, err) = fanotify_events(&buf);
        assert_eq!(err, None);
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].fd, 8);
        assert_eq!(events[0].mask, libc::FAN_OPEN_EXEC_PERM);
    }

    #[test]
    fn short_and_garbled_fanotify_input_never_panics() {
        let good = fan_record(24, 3, 1, 7, 100);
        for cut in 0..good.len() {
            let (events, err) = fanotify_events(&good[..cut]);
            assert!(events.is_empty());
            assert_eq!(err.is_some(), cut > 0);
        }
        // A zero length would loop forever if accepted.
        let (events, err) = fanotify_events(&fan_record(0, 3, 1, 7, 100));
        assert!(events.is_empty());
        assert!(matches!(err, Some(DecodeError::BadLength { .. })));
        let (_, err) = fanotify_events(&fan_record(u32::MAX, 3, 1, 7, 100));
        assert!(matches!(err, Some(DecodeError::BadLength { .. })));
        let (_, err) = fanotify_events(&fan_record(24, 9, 1, 7, 100));
        assert_eq!(err, Some(DecodeError::Version(9)));
        // Pseudo-random garbage.
        let mut x: u32 = 12345;
        for _ in 0..2000 {
            let buf: Vec<u8> = (0..64)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) as u8
                })
                .collect();
            let _ = fanotify_events(&buf);
            let _ = proc_events(&buf);
        }
    }

    fn proc_msg(what: u32, data: &[u32]) -> Vec<u8> {
        let mut ev = Vec::new();
        ev.extend_from_slice(&what.to_ne_bytes());
        ev.extend_from_slice(&0u32.to_ne_bytes());
        ev.extend_from_slice(&0u64.to_ne_bytes());
        for d in data {
            ev.extend_from_slice(&d.to_ne_bytes());
        }
        let total = NLMSG_HDRLEN + CN_MSG_LEN + ev.len();
        let mut msg = Vec::new();
        msg.extend_from_slice(&(total as u32).to_ne_bytes());
        msg.extend_from_slice(&[0; 12]);
        msg.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
        msg.extend_from_slice(&CN_VAL_PROC.to_ne_bytes());
        msg.extend_from_slice(&[0; 8]);
        msg.extend_from_slice(&(ev.len() as u16).to_ne_bytes());
        msg.extend_from_slice(&[0; 2]);
        msg.extend(ev);
        msg
    }

    #[test]
    fn decodes_process_connector_messages() {
        let exec = proc_msg(2, &[42, 42]);
        assert_eq!(
            proc_events(&exec),
            vec![ProcEvent::Exec { pid: 42, tgid: 42 }]
        );
        let fork = proc_msg(1, &[1, 1, 50, 50]);
        assert_eq!(
            proc_events(&fork),
            vec![ProcEvent::Fork {
                parent_tgid: 1,
                child_pid: 50,
                child_tgid: 50
            }]
        );
        let exit = proc_msg(0x8000_0000, &[9, 9, 256, 17, 1, 1]);
        assert_eq!(
            proc_events(&exit),
            vec![ProcEvent::Exit {
                pid: 9,
                tgid: 9,
                exit_code: 256
            }]
        );
        for cut in 0..exit.len() {
            assert!(proc_events(&exit[..cut]).is_empty());
        }
        assert_eq!(proc_listen_message().len(), 40);
    }
}
