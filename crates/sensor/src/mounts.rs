//! Which paths are mount points, from /proc/self/mountinfo: a mount mark on a path that is not
//! a mount point would silently mark the enclosing mount (often `/`), so we refuse it.

use std::path::Path;

/// Undoes the octal escapes (`\040` for space) mountinfo uses in paths.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .and_then(|oct| std::str::from_utf8(oct).ok())
            .and_then(|oct| u8::from_str_radix(oct, 8).ok());
        if bytes[i] == b'\\'
            && let Some(b) = octal
        {
            out.push(b);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mount points listed in a mountinfo text (field 5).
pub fn parse_mount_points(mountinfo: &str) -> Vec<String> {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4).map(unescape))
        .collect()
}

/// True when `path` (canonicalised by the caller) is a mount point of this mount namespace.
pub fn is_mount_point(path: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    parse_mount_points(&info)
        .iter()
        .any(|mp| Path::new(mp) == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mount_points_with_escapes() {
        let info = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
                    40 22 0:5 / /tmp/a\\040b rw - tmpfs tmpfs rw\nshort line\n";
        assert_eq!(parse_mount_points(info), vec!["/", "/tmp/a b"]);
        assert!(is_mount_point(Path::new("/")));
        assert!(!is_mount_point(Path::new("/definitely/not/a/mount")));
    }
}
