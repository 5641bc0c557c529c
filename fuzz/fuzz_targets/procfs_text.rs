//! The /proc text parsers (cmdline, stat, status, mountinfo, syscall) and the " (deleted)"
//! suffix strip on arbitrary bytes. /proc is the kernel's, but what it shows is chosen by
//! whoever runs a process: command lines, `comm` names with spaces and parentheses, mount paths
//! with escapes, system call arguments. None of it may panic the agent or smuggle a NUL into an
//! argument, and self-protection may only take a blocked call for a read when it is an open.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringfence_sensor::intent::{OpenIntent, parse_syscall_line};
use ringfence_sensor::mounts::parse_mount_points;
use ringfence_sensor::procfs::{parse_cmdline, parse_stat_ppid, parse_status_ids};
use ringfence_sensor::resolve::clean_path;

fuzz_target!(|data: &[u8]| {
    let argv = parse_cmdline(data);
    assert!(argv.len() <= data.len());
    assert!(
        argv.iter()
            .all(|arg| !arg.is_empty() && !arg.contains('\0'))
    );

    let text = String::from_utf8_lossy(data);
    let _ = parse_stat_ppid(&text);
    let _ = parse_status_ids(&text);
    // Unescaping only ever shortens a field: four bytes of `\040` become one, and even an
    // escaped byte that is not UTF-8 becomes a three-byte replacement character.
    let mounts = parse_mount_points(&text);
    assert!(mounts.len() <= text.lines().count());
    assert!(mounts.iter().map(String::len).sum::<usize>() <= text.len());
    let cleaned = clean_path(&text);
    assert!(text.starts_with(cleaned));

    if parse_syscall_line(&text) == OpenIntent::Read {
        let nr = text
            .split_ascii_whitespace()
            .next()
            .and_then(|n| n.parse().ok());
        assert!(
            nr == Some(libc::SYS_openat) || nr == Some(libc::SYS_open),
            "a read from syscall {nr:?}"
        );
    }
});
