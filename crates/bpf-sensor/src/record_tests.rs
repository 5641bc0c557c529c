//! Decoding of well-formed, truncated and hostile ring buffer records.

use super::*;

fn header(kind: u32, size: usize) -> Vec<u8> {
    let mut r = vec![0u8; size];
    r[0..4].copy_from_slice(&kind.to_ne_bytes());
    r[4..8].copy_from_slice(&u32::try_from(size).expect("small").to_ne_bytes());
    for (i, v) in [41u32, 40, 1, 1000, 1000, 0].iter().enumerate() {
        r[8 + 4 * i..12 + 4 * i].copy_from_slice(&v.to_ne_bytes());
    }
    r[40..44].copy_from_slice(b"bash");
    r
}

fn put(r: &mut [u8], at: usize, bytes: &[u8]) {
    r[at..at + bytes.len()].copy_from_slice(bytes);
}

fn exec_record(argv: &[&str]) -> Vec<u8> {
    let mut r = header(KIND_EXEC, EXEC_SIZE);
    let filename = b"/usr/bin/curl\0";
    put(
        &mut r,
        HEADER,
        &u32::try_from(filename.len()).expect("small").to_ne_bytes(),
    );
    put(&mut r, HEADER + 16, filename);
    let joined: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
    put(
        &mut r,
        HEADER + 4,
        &u32::try_from(joined.len()).expect("small").to_ne_bytes(),
    );
    put(
        &mut r,
        HEADER + 8,
        &u32::try_from(argv.len()).expect("small").to_ne_bytes(),
    );
    put(&mut r, HEADER + 16 + PATH_MAX, &joined);
    r
}

#[test]
fn exec_decodes_argv_and_credentials() {
    let event = decode(&exec_record(&["curl", "-s", "http://127.0.0.1/"])).expect("decodes");
    let BpfEvent::Exec {
        process,
        filename,
        argv,
        truncated,
    } = event
    else {
        panic!("exec expected, got {event:?}")
    };
    assert_eq!(filename, "/usr/bin/curl");
    assert_eq!(argv, ["curl", "-s", "http://127.0.0.1/"]);
    assert!(!truncated);
    assert_eq!((process.pid, process.tgid, process.ppid), (41, 40, 1));
    assert_eq!((process.uid, process.gid, process.euid), (1000, 1000, 0));
    assert_eq!(process.comm, "bash");
}

#[test]
fn argc_larger_than_the_strings_yields_only_the_strings() {
    let mut r = exec_record(&["a", "b"]);
    put(&mut r, HEADER + 8, &u32::MAX.to_ne_bytes());
    let BpfEvent::Exec { argv, .. } = decode(&r).expect("decodes") else {
        panic!("exec expected")
    };
    // The buffer after the last string is zeros: empty strings, bounded by the buffer.
    assert_eq!(&argv[..2], ["a", "b"]);
    assert!(argv.len() <= ARGV_BUF + 1);
}

#[test]
fn lengths_past_their_fields_are_refused() {
    let mut r = exec_record(&["a"]);
    put(&mut r, HEADER + 4, &u32::MAX.to_ne_bytes());
    assert!(matches!(
        decode(&r),
        Err(DecodeError::BadLength { field: "argv", .. })
    ));
    let mut r = exec_record(&["a"]);
    put(&mut r, HEADER, &257u32.to_ne_bytes());
    assert!(matches!(
        decode(&r),
        Err(DecodeError::BadLength {
            field: "filename",
            ..
        })
    ));
    let mut r = header(KIND_RENAME, FILE_SIZE);
    put(&mut r, HEADER + 4, &4096u32.to_ne_bytes());
    assert!(matches!(
        decode(&r),
        Err(DecodeError::BadLength {
            field: "target",
            ..
        })
    ));
}

#[test]
fn every_truncation_of_every_kind_is_an_error_not_a_panic() {
    let records = [
        exec_record(&["x"]),
        header(KIND_NET, NET_SIZE),
        header(KIND_UNLINK, FILE_SIZE),
        header(KIND_BPF, CALL_SIZE),
    ];
    for record in records {
        for len in 0..record.len() {
            assert!(decode(&record[..len]).is_err(), "{len} bytes decoded");
        }
    }
}

#[test]
fn size_field_must_agree_with_the_ring_buffer() {
    let mut r = header(KIND_BPF, CALL_SIZE);
    put(&mut r, 4, &1u32.to_ne_bytes());
    assert!(matches!(decode(&r), Err(DecodeError::SizeMismatch { .. })));
    put(&mut r, 4, &u32::MAX.to_ne_bytes());
    assert!(matches!(decode(&r), Err(DecodeError::SizeMismatch { .. })));
}

#[test]
fn losses_travel_in_the_next_record() {
    let mut r = header(KIND_BPF, CALL_SIZE);
    assert_eq!(lost_before(&r), 0);
    put(&mut r, 64, &17u64.to_ne_bytes());
    assert_eq!(lost_before(&r), 17);
    assert_eq!(lost_before(&r[..HEADER - 1]), 0);
}

#[test]
fn unknown_kinds_and_calls_are_refused() {
    assert_eq!(decode(&header(99, 256)), Err(DecodeError::UnknownKind(99)));
    let mut r = header(KIND_SETID, CALL_SIZE);
    put(&mut r, HEADER, &9999u32.to_ne_bytes());
    assert_eq!(decode(&r), Err(DecodeError::UnknownCall(9999)));
    let mut r = header(KIND_MODULE, CALL_SIZE);
    put(&mut r, HEADER, &9999u32.to_ne_bytes());
    assert_eq!(decode(&r), Err(DecodeError::UnknownCall(9999)));
}

#[test]
fn network_decodes_the_tuple_and_the_kind() {
    let mut r = header(KIND_NET, NET_SIZE);
    put(&mut r, HEADER, &AF_INET.to_ne_bytes());
    put(&mut r, HEADER + 4, &40000u16.to_ne_bytes());
    put(&mut r, HEADER + 6, &8080u16.to_ne_bytes());
    r[HEADER + 8] = 7;
    r[HEADER + 9] = TCP_SYN_SENT;
    put(&mut r, HEADER + 16, &[127, 0, 0, 1]);
    put(&mut r, HEADER + 32, &[127, 0, 0, 2]);
    let BpfEvent::Network {
        kind,
        local,
        remote,
        ..
    } = decode(&r).expect("decodes")
    else {
        panic!("network expected")
    };
    assert_eq!(kind, NetKind::Connect);
    assert_eq!(local.to_string(), "127.0.0.1:40000");
    assert_eq!(remote.to_string(), "127.0.0.2:8080");
    r[HEADER + 9] = 5;
    assert!(matches!(
        decode(&r),
        Err(DecodeError::UnexpectedNetwork { .. })
    ));
    r[HEADER + 9] = TCP_LISTEN;
    put(&mut r, HEADER, &77u16.to_ne_bytes());
    assert!(matches!(
        decode(&r),
        Err(DecodeError::UnexpectedNetwork { family: 77, .. })
    ));
}

#[test]
fn file_and_privilege_records_decode() {
    let mut r = header(KIND_RENAME, FILE_SIZE);
    put(&mut r, HEADER, &4u32.to_ne_bytes());
    put(&mut r, HEADER + 4, &4u32.to_ne_bytes());
    put(&mut r, HEADER + 20, &(-100i32).to_ne_bytes());
    put(&mut r, HEADER + 32, b"old\0");
    put(&mut r, HEADER + 32 + PATH_MAX, b"new\0");
    let BpfEvent::File {
        op,
        path,
        target,
        dfd,
        ..
    } = decode(&r).expect("decodes")
    else {
        panic!("file expected")
    };
    assert_eq!(
        (op, path.as_str(), target.as_deref(), dfd),
        (FileOp::Rename, "old", Some("new"), -100)
    );

    let mut r = header(KIND_SETID, CALL_SIZE);
    put(
        &mut r,
        HEADER,
        &u32::try_from(libc::SYS_setresuid)
            .expect("small")
            .to_ne_bytes(),
    );
    put(&mut r, HEADER + 8, &0u64.to_ne_bytes());
    put(&mut r, HEADER + 16, &u64::MAX.to_ne_bytes());
    put(&mut r, HEADER + 24, &5u64.to_ne_bytes());
    assert!(matches!(
        decode(&r),
        Ok(BpfEvent::Privilege {
            call: SetId::SetResUid {
                ruid: 0,
                euid: u32::MAX,
                suid: 5
            },
            ..
        })
    ));
}

#[test]
fn random_bytes_never_panic() {
    // A fixed-seed generator: every run tries the same hostile records.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..2000 {
        let kind = [
            KIND_EXEC,
            KIND_NET,
            KIND_RENAME,
            KIND_SETID,
            KIND_MODULE,
            KIND_BPF,
        ][usize::try_from(next() % 6).expect("small")];
        let len = usize::try_from(next() % 2600).expect("small");
        let mut r: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if r.len() >= 8 {
            put(&mut r, 0, &kind.to_ne_bytes());
            put(&mut r, 4, &u32::try_from(len).expect("small").to_ne_bytes());
        }
        let _ = decode(&r);
    }
}
