//! Durations on the command line (`30s`, `10m`) and in output, in milliseconds of virtual time.

use crate::SimError;

/// Parses `250ms`, `30s`, `10m`, `1h`, `2d`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<u64, SimError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| SimError::Duration(text.to_owned()))?;
    let scale = match unit.trim() {
        "ms" => 1.0,
        "" | "s" => 1_000.0,
        "m" | "min" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return Err(SimError::Duration(text.to_owned())),
    };
    let ms = number * scale;
    if !ms.is_finite() || ms < 0.0 || ms > u32::MAX as f64 {
        return Err(SimError::Duration(text.to_owned()));
    }
    Ok(ms.round() as u64)
}

/// The shortest exact rendering: `90s` stays `90s`, `600000` ms is `10m`.
pub fn format_duration(ms: u64) -> String {
    for (unit, scale) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms >= scale && ms.is_multiple_of(scale) {
            return format!("{}{unit}", ms / scale);
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_parse_and_print_back() {
        assert_eq!(parse_duration("30s"), Ok(30_000));
        assert_eq!(parse_duration("10m"), Ok(600_000));
        assert_eq!(parse_duration("1.5h"), Ok(5_400_000));
        assert_eq!(parse_duration("250ms"), Ok(250));
        assert_eq!(parse_duration("45"), Ok(45_000));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("99999d").is_err());
        assert_eq!(format_duration(600_000), "10m");
        assert_eq!(format_duration(90_000), "90s");
        assert_eq!(format_duration(1_500), "1500ms");
    }
}
