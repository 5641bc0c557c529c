//! Wall-clock time since the Unix epoch, defined once: report times, signature validity windows
//! and failure timestamps all read it here. A clock before 1970 reads as 0, one past the range
//! of the unit as its maximum; neither panics.

use std::time::{SystemTime, UNIX_EPOCH};

fn since_epoch() -> std::time::Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Whole seconds since the epoch.
pub fn unix_secs() -> u64 {
    since_epoch().as_secs()
}

/// Milliseconds since the epoch, as the wire format and the database keep them.
pub fn unix_ms() -> i64 {
    i64::try_from(since_epoch().as_millis()).unwrap_or(i64::MAX)
}

/// Nanoseconds since the epoch (failure records).
pub fn unix_ns() -> u64 {
    u64::try_from(since_epoch().as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_units_agree() {
        let ms = unix_ms();
        assert!(ms > 1_700_000_000_000, "after 2023: {ms}");
        let secs = unix_secs();
        assert!(secs.abs_diff(u64::try_from(ms / 1000).unwrap_or(0)) <= 1);
        assert!(unix_ns() / 1_000_000 >= u64::try_from(ms).unwrap_or(0));
    }
}
