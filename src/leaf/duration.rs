//! Durations as users write them: `250ms`, `5s`, `2m`, `1h`, `1d`, or sums like `1h30m`.

use std::fmt;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationError {
    pub text: String,
    pub reason: &'static str,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is not a duration: {} (write it like 250ms, 5s, 2m, 1h, 1d or 1h30m)",
            self.text, self.reason
        )
    }
}

impl std::error::Error for DurationError {}

const UNITS: [(&str, u64); 5] = [
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60 * 1_000_000_000),
    ("h", 3_600 * 1_000_000_000),
    ("d", 86_400 * 1_000_000_000),
];

/// Parse a duration. Every number needs a unit: a bare `30` is refused rather than
/// guessed, because cron users and systemd users would guess different units.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let fail = |reason| DurationError {
        text: text.to_string(),
        reason,
    };
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(fail("it is empty"));
    }
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(fail("expected a whole number"));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| fail("the number is too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let nanos_per = match UNITS.iter().find(|(name, _)| *name == unit) {
            Some((_, nanos)) => *nanos,
            None if unit.is_empty() => return Err(fail("a number needs a unit")),
            None => return Err(fail("unknown unit")),
        };
        total = number
            .checked_mul(nanos_per)
            .and_then(|n| total.checked_add(n))
            .ok_or_else(|| fail("it is too long"))?;
    }
    Ok(Duration::from_nanos(total))
}

/// Format a duration the way `parse` reads it, using the largest units that fit exactly.
pub fn format(duration: Duration) -> String {
    let mut nanos = duration.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (name, per) in UNITS.iter().rev() {
        let per = u128::from(*per);
        if nanos >= per {
            out.push_str(&format!("{}{}", nanos / per, name));
            nanos %= per;
        }
    }
    if nanos > 0 {
        out.push_str(&format!("{nanos}ns"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_unit_and_sums() {
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse("1d").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("0s").unwrap(), Duration::ZERO);
    }

    #[test]
    fn refuses_what_it_cannot_read_exactly() {
        for bad in [
            "",
            "30",
            "5x",
            "1.5s",
            "-5s",
            "s",
            "5 s",
            "99999999999999999999s",
        ] {
            assert!(parse(bad).is_err(), "{bad} was accepted");
        }
        let err = parse("30").unwrap_err();
        assert!(err.to_string().contains("needs a unit"), "{err}");
    }

    #[test]
    fn formats_round_trip() {
        for text in ["250ms", "5s", "2m", "1h30m", "1d", "1d1h1m1s1ms", "0s"] {
            assert_eq!(format(parse(text).unwrap()), text);
        }
    }
}
