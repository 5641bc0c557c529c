//! The one way a person writes a duration to ringfence: `250ms`, `30s`, `10m`, `12h`, `30d`
//! (a decimal number and a unit), on every command line flag and in every settings file.
//!
//! A bare number is refused: `--perm-deadline 5` could mean milliseconds or seconds, and the
//! wrong guess is a thousandfold. `0` alone is allowed, since it means the same in every unit.

use std::time::Duration;

/// The longest duration accepted: ten years, the longest an operator token may live.
const LONGEST: Duration = Duration::from_secs(3_660 * 86_400);

/// Why a text is not a duration; the message shows what would be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("{0:?} needs a unit: 250ms, 30s, 10m, 12h or 30d")]
    NoUnit(String),
    #[error("{0:?} is not a duration (examples: 250ms, 30s, 10m, 12h, 30d)")]
    Malformed(String),
    #[error("{0:?} is longer than ten years")]
    TooLong(String),
}

/// Parses `250ms`, `1.5s`, `30s`, `10m`, `12h`, `30d` (`sec`, `min` also read).
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| DurationError::Malformed(text.to_owned()))?;
    let seconds_per_unit = match unit.trim() {
        "" if number == 0.0 => 1.0,
        "" => return Err(DurationError::NoUnit(text.to_owned())),
        "ms" => 0.001,
        "s" | "sec" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3_600.0,
        "d" => 86_400.0,
        _ => return Err(DurationError::Malformed(text.to_owned())),
    };
    let duration = Duration::try_from_secs_f64(number * seconds_per_unit)
        .map_err(|_| DurationError::Malformed(text.to_owned()))?;
    if duration > LONGEST {
        return Err(DurationError::TooLong(text.to_owned()));
    }
    Ok(duration)
}

/// [`parse`] in whole milliseconds, for flags counted in them (virtual time, benchmarks).
pub fn parse_millis(text: &str) -> Result<u64, DurationError> {
    // At most ten years: always fits.
    parse(text).map(|span| u64::try_from(span.as_millis()).unwrap_or(u64::MAX))
}

/// The shortest exact rendering in the same syntax: 90 s stays `90s`, 600 s is `10m`;
/// what is not a whole number of milliseconds is rounded to one.
pub fn format(duration: Duration) -> String {
    let ms = duration.as_millis();
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
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse("10min"), Ok(Duration::from_secs(600)));
        assert_eq!(parse("1.5h"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse(" 2d "), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert_eq!(format(Duration::from_secs(600)), "10m");
        assert_eq!(format(Duration::from_secs(90)), "90s");
        assert_eq!(format(Duration::from_millis(1_500)), "1500ms");
        assert_eq!(format(Duration::ZERO), "0ms");
        assert_eq!(parse_millis("1.5s"), Ok(1_500));
        assert!(parse_millis("15").is_err());
    }

    #[test]
    fn a_bare_number_is_refused_with_the_units_it_could_have() {
        let error = parse("45").expect_err("no unit");
        assert_eq!(error, DurationError::NoUnit("45".into()));
        assert!(error.to_string().contains("250ms, 30s"), "{error}");
    }

    #[test]
    fn nonsense_is_refused() {
        for text in [
            "", "ten", "5y", "s", "1..2s", "-3s", "1e3s", "NaNs", "3661d",
        ] {
            assert!(parse(text).is_err(), "{text:?} parsed");
        }
    }
}
