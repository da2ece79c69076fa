//! How jobd writes instants: one fixed form for what programs read, a short one for
//! the log.

use chrono::{DateTime, SecondsFormat, Utc};

/// RFC 3339 in UTC with microseconds, one fixed width for every instant:
/// `JOBD_SCHEDULED_AT`, the history, results, everything a program reads.
pub fn precise(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// RFC 3339 in UTC with only the fraction it has, for the log.
pub fn short(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precise_has_one_width_and_short_only_what_is_there() {
        let at = DateTime::parse_from_rfc3339("2026-11-27T17:30:05Z")
            .unwrap()
            .to_utc();
        assert_eq!(precise(at), "2026-11-27T17:30:05.000000Z");
        assert_eq!(short(at), "2026-11-27T17:30:05Z");
    }
}
