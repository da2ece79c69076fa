//! When jobs fire: cron expressions evaluated in an IANA time zone, and fixed
//! intervals aligned to the Unix epoch.
//!
//! Everything here is pure (no clock reads, no I/O): the supervisor asks
//! [`Schedule::next_after`] for the next instant and sleeps until then.
//!
//! # Cron syntax
//!
//! Five fields (minute hour day-of-month month day-of-week, second 0) or six
//! (second first), or one of the aliases `@yearly`, `@annually`, `@monthly`,
//! `@weekly`, `@daily`, `@midnight`, `@hourly`. Month and day names (`JAN`,
//! `mon`) are case-insensitive. Day-of-month takes `L` (last day), `LW` (last
//! weekday) and `15W` (weekday nearest the 15th, never leaving the month);
//! day-of-week takes `5L` (last Friday) and `5#2` (second Friday). A step needs
//! `*` or a range before it (`*/15`, `5-59/15`), as in Vixie cron.
//!
//! Day-of-month and day-of-week combine as in Vixie cron: when both are
//! restricted a day matches if either matches. A field counts as unrestricted
//! when it starts with `*` (so `*/2` counts, as in Vixie and cronie, and
//! `0 0 */2 * MON` means odd-numbered days that are Mondays) or is `?`.
//!
//! # Daylight saving time
//!
//! Cron jobs follow cronie, which splits them on the minute and hour fields:
//!
//! * A *wildcard* job has a minute or an hour field that starts with `*` (`*`,
//!   `*/5`). It follows elapsed time: it runs whenever the local clock shows a
//!   matching time. Local times skipped by the clock do not run, local times
//!   shown twice run twice (at distinct instants), and nothing else pauses.
//! * Every other cron job is *fixed-time* (`30 2`, `0,30 1,13`, `0 9-17`,
//!   `30 8-18/2`). It runs once at each local time it names. A named time inside
//!   a spring-forward gap runs at the first instant after the gap, and all such
//!   times of one gap make a single run there. A named time that occurs twice
//!   runs at its first occurrence only.
//!
//! The seconds field, which cronie does not have, plays no part: it only says
//! which seconds of a named minute fire.
//!
//! Interval schedules ([`Schedule::every`]) ignore time zones altogether.

use std::fmt;
use std::time::Duration;

use chrono::{
    DateTime, Datelike, FixedOffset, LocalResult, NaiveDate, Offset, SubsecRound, TimeDelta,
    TimeZone, Utc,
};
use chrono_tz::{GapInfo, Tz};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// When a job fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// A cron expression evaluated in a time zone; built by [`Schedule::cron`].
    Cron(CronSchedule),
    /// A fixed interval aligned to the Unix epoch; built by [`Schedule::every`].
    Every(EverySchedule),
}

/// A parsed cron expression and its zone. Two are equal when their normalized
/// expressions and zones are, so `0 0 * * MON` equals `0 0 0 * * 1`.
#[derive(Clone)]
pub struct CronSchedule {
    written: String,
    normalized: String,
    zone: Tz,
    fixed_time: bool,
    matches_some_day: bool,
    /// Shared: croner keeps kilobytes of bitfields per pattern, and the plan and a
    /// reload's old and new jobfile all hold the same schedule.
    cron: std::sync::Arc<Cron>,
}

/// A period and an offset below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EverySchedule {
    period: Duration,
    offset: Duration,
}

/// Why a cron expression was rejected. The message names the field and the
/// problem; the caller adds the file, line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleError {
    message: String,
}

impl ScheduleError {
    fn new(message: impl Into<String>) -> Self {
        ScheduleError {
            message: message.into(),
        }
    }
}

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ScheduleError {}

impl Schedule {
    /// Parses a cron expression evaluated in `zone`.
    pub fn cron(expr: &str, zone: Tz) -> Result<Schedule, ScheduleError> {
        Schedule::parse_cron(expr, zone).map_err(|err| match seconds_first(expr, zone) {
            Some(meant) => ScheduleError::new(format!(
                "{err}; with 6 fields the seconds come first (second minute hour \
                 day-of-month month day-of-week): did you mean `{meant}`?"
            )),
            None => err,
        })
    }

    fn parse_cron(expr: &str, zone: Tz) -> Result<Schedule, ScheduleError> {
        let written = expr.trim();
        let mut fields = split_fields(written)?;
        if fields.len() == 5 {
            fields.insert(0, "0");
        }
        let mut normalized = fields
            .iter()
            .enumerate()
            .map(|(index, text)| FIELDS[index].normalize(text))
            .collect::<Result<Vec<_>, _>>()?;

        // croner treats only an exact `*` as unrestricted and ORs everything
        // else; its `+` marker requests the AND that Vixie uses when a day
        // field merely starts with `*`.
        let (dom, dow) = (&normalized[DAY_OF_MONTH], &normalized[DAY_OF_WEEK]);
        if dom != "*" && dow != "*" && (dom.starts_with('*') || dow.starts_with('*')) {
            normalized[DAY_OF_WEEK].insert(0, '+');
        }
        // cronie's MIN_STAR and HR_STAR: the written field starts with `*`.
        let fixed_time = !fields[MINUTE].starts_with('*') && !fields[HOUR].starts_with('*');
        let normalized = normalized.join(" ");

        let cron = CronParser::builder()
            .seconds(Seconds::Required)
            .year(Year::Disallowed)
            .build()
            .parse(&normalized)
            .map_err(|err| ScheduleError::new(format!("invalid cron expression: {err}")))?;
        Ok(Schedule::Cron(CronSchedule {
            written: written.to_string(),
            normalized,
            zone,
            fixed_time,
            matches_some_day: matches_some_day(&cron),
            cron: std::sync::Arc::new(cron),
        }))
    }

    /// A fixed interval aligned to the Unix epoch plus `offset`: fires at
    /// epoch + offset + k*period for every integer k. An offset of a period or
    /// more is reduced modulo the period.
    ///
    /// # Panics
    ///
    /// If `period` is zero; callers validate the period first.
    pub fn every(period: Duration, offset: Duration) -> Schedule {
        assert!(
            !period.is_zero(),
            "an interval schedule needs a period above zero"
        );
        Schedule::Every(EverySchedule {
            period,
            offset: duration_from_nanos(offset.as_nanos() % period.as_nanos()),
        })
    }

    /// The first fire instant strictly after `t`, or `None` if there is none
    /// (a cron expression that can never match, such as `0 0 30 2 *`, or a
    /// search that runs past the year 5000).
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Cron(cron) => cron.next_after(t),
            Schedule::Every(every) => every.next_after(t),
        }
    }

    /// A cron schedule's expression (as written, trimmed) and zone: what it was
    /// parsed from, so that an unchanged expression need not be parsed again.
    pub fn cron_source(&self) -> Option<(&str, Tz)> {
        match self {
            Schedule::Cron(cron) => Some((&cron.written, cron.zone)),
            Schedule::Every(_) => None,
        }
    }

    /// Whether two schedules name the same times, each in its own zone: a reload that
    /// changes `timezone:` changes every cron schedule, but not what it says.
    pub fn same_rule(&self, other: &Schedule) -> bool {
        match (self, other) {
            (Schedule::Cron(a), Schedule::Cron(b)) => a.normalized == b.normalized,
            (a, b) => a == b,
        }
    }

    /// The expression as written, or e.g. `every 250ms` / `every 1h offset 15m`.
    pub fn describe(&self) -> String {
        match self {
            Schedule::Cron(cron) => cron.written.clone(),
            Schedule::Every(every) if every.offset.is_zero() => {
                format!("every {}", crate::leaf::duration::format(every.period))
            }
            Schedule::Every(every) => format!(
                "every {} offset {}",
                crate::leaf::duration::format(every.period),
                crate::leaf::duration::format(every.offset)
            ),
        }
    }
}

impl PartialEq for CronSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.normalized == other.normalized && self.zone == other.zone
    }
}

impl Eq for CronSchedule {}

impl fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // croner's parsed form is a wall of bitfields; the text says it all.
        f.debug_struct("CronSchedule")
            .field("expr", &self.written)
            .field("normalized", &self.normalized)
            .field("zone", &self.zone)
            .field("fixed_time", &self.fixed_time)
            .finish_non_exhaustive()
    }
}

impl CronSchedule {
    fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if !self.matches_some_day {
            return None;
        }
        // Fires fall on whole seconds, so "after t" and "after t's second" agree.
        let after = t.trunc_subsecs(0);
        if self.fixed_time {
            self.next_fixed_time(after)
        } else {
            self.next_elapsed_time(after)
        }
    }

    /// A fixed-time job fires when the local clock first reaches a matching
    /// wall time: at that time, at the end of a gap that skips it, or in the
    /// first of two passes. That instant never decreases as the wall time
    /// grows, so the answer is the first match above the current wall time
    /// whose instant lies after `after`. Matches are passed over only in the
    /// second pass of a repeated range, where the first pass reached them.
    fn next_fixed_time(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut from = after
            .with_timezone(&offset_at(self.zone, after))
            .naive_local();
        loop {
            let wall = self.cron.find_next_occurrence(&from, false).ok()?;
            let reached = match self.zone.from_local_datetime(&wall) {
                LocalResult::Single(at) | LocalResult::Ambiguous(at, _) => Some(at),
                LocalResult::None => GapInfo::new(&wall, &self.zone).and_then(|gap| gap.end),
            };
            match reached.map(|at| at.with_timezone(&Utc)) {
                Some(at) if at > after => return Some(at),
                _ => from = wall,
            }
        }
    }

    /// An elapsed-time job fires whenever the local clock shows a matching wall
    /// time. Between two offset changes the wall time is the instant plus a
    /// constant, so the search runs one such stretch at a time.
    fn next_elapsed_time(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut from = after;
        let mut inclusive = false;
        loop {
            let offset = offset_at(self.zone, from);
            let wall = from.with_timezone(&offset).naive_local();
            let wall = self.cron.find_next_occurrence(&wall, inclusive).ok()?;
            let at = offset.from_local_datetime(&wall).single()?.to_utc();
            match first_offset_change(self.zone, from, at) {
                Some(change) => {
                    from = change;
                    inclusive = true;
                }
                None => return Some(at),
            }
        }
    }
}

impl EverySchedule {
    fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        const NANOS_PER_SECOND: i128 = 1_000_000_000;
        let period = i128::try_from(self.period.as_nanos()).ok()?;
        let offset = i128::try_from(self.offset.as_nanos()).ok()?;
        let now =
            i128::from(t.timestamp()) * NANOS_PER_SECOND + i128::from(t.timestamp_subsec_nanos());
        let next = offset + ((now - offset).div_euclid(period) + 1) * period;
        let seconds = i64::try_from(next.div_euclid(NANOS_PER_SECOND)).ok()?;
        let nanos = u32::try_from(next.rem_euclid(NANOS_PER_SECOND)).ok()?;
        DateTime::from_timestamp(seconds, nanos)
    }
}

/// In the tz database bundled with chrono-tz no zone changes its offset
/// twice within six days, so probing a day at a time finds every change.
const PROBE_STEP: TimeDelta = TimeDelta::days(1);

fn offset_at(zone: Tz, at: DateTime<Utc>) -> FixedOffset {
    zone.offset_from_utc_datetime(&at.naive_utc()).fix()
}

/// The first instant in `(from, until]` whose offset differs from `from`'s.
fn first_offset_change(
    zone: Tz,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let base = offset_at(zone, from);
    let mut below = from;
    while below < until {
        let probe = below
            .checked_add_signed(PROBE_STEP)
            .map_or(until, |probe| probe.min(until));
        if offset_at(zone, probe) != base {
            let (mut same, mut changed) = (below, probe);
            while changed - same > TimeDelta::seconds(1) {
                let middle = same + TimeDelta::seconds((changed - same).num_seconds() / 2);
                if offset_at(zone, middle) == base {
                    same = middle;
                } else {
                    changed = middle;
                }
            }
            return Some(changed);
        }
        below = probe;
    }
    None
}

/// Whether any calendar day satisfies the month and day fields. Those repeat
/// with the 400-year Gregorian cycle (146097 days, a whole number of weeks),
/// so one cycle decides it. croner itself would search up to the year 5000
/// before giving up, which takes a noticeable fraction of a second.
fn matches_some_day(cron: &Cron) -> bool {
    let pattern = &cron.pattern;
    (2000..2400).any(|year| {
        (1..=12).any(|month| {
            pattern.month_match(month).unwrap_or(false)
                && NaiveDate::from_ymd_opt(year, month, 1).is_some_and(|first| {
                    let first = croner::Weekday::from_days_from_sunday(
                        first.weekday().num_days_from_sunday(),
                    );
                    (1..=croner::time::days_in_month(year, month)).any(|day| {
                        let weekday = first.shift(day as i32 - 1);
                        pattern
                            .day_match(year, month, day, weekday)
                            .unwrap_or(false)
                    })
                })
        })
    })
}

/// croniter (django-q2, Celery's crontab parsers) writes six fields with the seconds
/// last: `0 3 * * 1-5 30`. When a six-field expression fails and would parse with its
/// last field moved to the front, that is what was meant.
fn seconds_first(expr: &str, zone: Tz) -> Option<String> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    let [rest @ .., seconds] = fields.as_slice() else {
        return None;
    };
    if fields.len() != 6 {
        return None;
    }
    let meant = format!("{seconds} {}", rest.join(" "));
    Schedule::parse_cron(&meant, zone).ok().map(|_| meant)
}

fn split_fields(expr: &str) -> Result<Vec<&str>, ScheduleError> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    match fields.first() {
        None => Err(ScheduleError::new(
            "empty cron expression: expected 5 or 6 fields (or an alias like @daily)",
        )),
        Some(alias) if alias.starts_with('@') => {
            let expansion = expand_alias(alias)?;
            if fields.len() > 1 {
                return Err(ScheduleError::new(format!(
                    "{alias} must stand alone, found {} more field(s) after it",
                    fields.len() - 1
                )));
            }
            Ok(expansion.split_whitespace().collect())
        }
        Some(_) if matches!(fields.len(), 5 | 6) => Ok(fields),
        Some(_) => Err(ScheduleError::new(format!(
            "expected 5 or 6 fields (or an alias like @daily), found {}",
            fields.len()
        ))),
    }
}

fn expand_alias(alias: &str) -> Result<&'static str, ScheduleError> {
    match alias.to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => Ok("0 0 1 1 *"),
        "@monthly" => Ok("0 0 1 * *"),
        "@weekly" => Ok("0 0 * * 0"),
        "@daily" | "@midnight" => Ok("0 0 * * *"),
        "@hourly" => Ok("0 * * * *"),
        "@reboot" => Err(ScheduleError::new(
            "@reboot is not supported: a schedule names recurring times; use a cron expression or an alias like @daily",
        )),
        _ => Err(ScheduleError::new(format!(
            "unknown alias {alias}; expected @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly"
        ))),
    }
}

const MINUTE: usize = 1;
const HOUR: usize = 2;
const DAY_OF_MONTH: usize = 3;
const DAY_OF_WEEK: usize = 5;

#[derive(PartialEq, Eq)]
enum Kind {
    Plain,
    DayOfMonth,
    DayOfWeek,
}

struct Field {
    name: &'static str,
    kind: Kind,
    min: u32,
    max: u32,
    /// Names for the values from `min` up, matched case-insensitively.
    names: &'static [&'static str],
    names_hint: &'static str,
}

/// In six-field order.
const FIELDS: [Field; 6] = [
    Field::numeric("second", 0, 59),
    Field::numeric("minute", 0, 59),
    Field::numeric("hour", 0, 23),
    Field {
        name: "day-of-month",
        kind: Kind::DayOfMonth,
        min: 1,
        max: 31,
        names: &[],
        names_hint: "",
    },
    Field {
        name: "month",
        kind: Kind::Plain,
        min: 1,
        max: 12,
        names: &[
            "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
        ],
        names_hint: " or a month name (JAN-DEC)",
    },
    Field {
        name: "day-of-week",
        kind: Kind::DayOfWeek,
        min: 0,
        max: 7,
        names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
        names_hint: " or a day name (SUN-SAT)",
    },
];

impl Field {
    const fn numeric(name: &'static str, min: u32, max: u32) -> Field {
        Field {
            name,
            kind: Kind::Plain,
            min,
            max,
            names: &[],
            names_hint: "",
        }
    }

    fn error(&self, problem: impl fmt::Display) -> ScheduleError {
        ScheduleError::new(format!("{} field: {problem}", self.name))
    }

    /// Checks one field and rewrites it in the form handed to croner: upper
    /// case, names replaced by numbers, `?` replaced by `*`. Checking here,
    /// rather than relying on croner, gives messages that name the field, and
    /// keeps croner's looser habits (empty list entries, names accepted in
    /// any field) out.
    fn normalize(&self, text: &str) -> Result<String, ScheduleError> {
        if text == "?" && self.kind != Kind::Plain {
            return Ok("*".to_string());
        }
        let items = text
            .split(',')
            .map(|item| self.normalize_item(item, text))
            .collect::<Result<Vec<_>, _>>()?;
        // `*` in a list (`*,5`) makes the list every value, as in Vixie cron; croner
        // refuses it. A day field keeps its restricted-or-not reading (which looks at
        // the written text), so it gets the full range rather than `*`.
        if items.len() > 1 && items.iter().any(|item| item == "*") {
            return Ok(match self.kind {
                Kind::Plain => "*".to_string(),
                Kind::DayOfMonth => "1-31".to_string(),
                Kind::DayOfWeek => "0-6".to_string(),
            });
        }
        Ok(items.join(","))
    }

    fn normalize_item(&self, item: &str, list: &str) -> Result<String, ScheduleError> {
        if item.is_empty() {
            return Err(self.error(format!("empty entry in the list '{list}'")));
        }
        match self.kind {
            Kind::DayOfMonth => {
                if item.eq_ignore_ascii_case("L") || item.eq_ignore_ascii_case("LW") {
                    return Ok(item.to_ascii_uppercase());
                }
                if let Some(day) = strip_letter(item, 'W') {
                    return Ok(format!("{}W", self.value(day, item)?));
                }
            }
            Kind::DayOfWeek => {
                // croner accepts a bare `L` here but then never matches it.
                if item.eq_ignore_ascii_case("L") {
                    return Err(self.error(
                        "'L' needs a day before it, e.g. 5L or FRIL for the last Friday of the month",
                    ));
                }
                if let Some((day, nth)) = item.split_once('#') {
                    let day = self.value(day, item)?;
                    return match number(nth) {
                        Some(nth @ 1..=5) => Ok(format!("{day}#{nth}")),
                        _ => Err(self.error(format!(
                            "'{item}': the number after '#' must be 1-5 (which occurrence in the month)"
                        ))),
                    };
                }
                if let Some(day) = strip_letter(item, 'L') {
                    return Ok(format!("{}L", self.value(day, item)?));
                }
            }
            Kind::Plain => {}
        }

        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (range, Some(step)),
            None => (item, None),
        };
        let range = if range == "*" {
            range.to_string()
        } else if let Some((low, high)) = range.split_once('-') {
            let (low, high) = (self.value(low, item)?, self.value(high, item)?);
            if low > high {
                return Err(self.error(format!(
                    "range {range} runs backwards; put the lower value first"
                )));
            }
            format!("{low}-{high}")
        } else if let Some(step) = step {
            return Err(self.error(format!(
                "'{item}' needs '*' or a range before the '/', e.g. */{step} or {range}-{}/{step}",
                self.max
            )));
        } else {
            self.value(range, item)?.to_string()
        };
        match step {
            None => Ok(range),
            Some(step) => match number(step) {
                Some(step) if (1..=self.max).contains(&step) => Ok(format!("{range}/{step}")),
                _ => Err(self.error(format!(
                    "'{item}': the step after '/' must be a number from 1 to {}",
                    self.max
                ))),
            },
        }
    }

    /// One value, as a number or a name, within the field's range.
    fn value(&self, token: &str, item: &str) -> Result<u32, ScheduleError> {
        let value = match number(token) {
            Some(value) => value,
            None => {
                let named = self
                    .names
                    .iter()
                    .zip(self.min..)
                    .find(|(name, _)| name.eq_ignore_ascii_case(token));
                match named {
                    Some((_, value)) => value,
                    None if token.is_empty() => {
                        return Err(self.error(format!("'{item}' is missing a value")));
                    }
                    None if token == item => {
                        return Err(
                            self.error(format!("'{token}' is not a number{}", self.names_hint))
                        );
                    }
                    None => {
                        return Err(self.error(format!(
                            "'{token}' in '{item}' is not a number{}",
                            self.names_hint
                        )));
                    }
                }
            }
        };
        if (self.min..=self.max).contains(&value) {
            Ok(value)
        } else {
            Err(self.error(format!("{token} is out of range {}-{}", self.min, self.max)))
        }
    }
}

/// Plain decimal digits. Too many digits saturate, which every range rejects.
fn number(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    Some(text.parse().unwrap_or(u32::MAX))
}

/// `text` without a trailing `letter` in either case.
fn strip_letter(text: &str, letter: char) -> Option<&str> {
    text.strip_suffix(letter)
        .or_else(|| text.strip_suffix(letter.to_ascii_lowercase()))
}

fn duration_from_nanos(nanos: u128) -> Duration {
    const NANOS_PER_SECOND: u128 = 1_000_000_000;
    // The remainder of a Duration's nanoseconds by another fits a Duration.
    Duration::new(
        u64::try_from(nanos / NANOS_PER_SECOND).unwrap_or(u64::MAX),
        (nanos % NANOS_PER_SECOND) as u32,
    )
}

/// Compact form such as `250ms`, `1h30m` or `36h`.
#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDateTime;
    use chrono_tz::America::New_York;
    use chrono_tz::Europe::Amsterdam;
    use std::collections::HashSet;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap_or_else(|err| panic!("bad instant {text}: {err}"))
            .to_utc()
    }

    fn cron(zone: Tz, expr: &str) -> Schedule {
        Schedule::cron(expr, zone).unwrap_or_else(|err| panic!("{expr}: {err}"))
    }

    fn every(period_ms: u64, offset_ms: u64) -> Schedule {
        Schedule::every(
            Duration::from_millis(period_ms),
            Duration::from_millis(offset_ms),
        )
    }

    fn walk(schedule: &Schedule, from: DateTime<Utc>, count: usize) -> Vec<DateTime<Utc>> {
        let mut fires = Vec::with_capacity(count);
        let mut t = from;
        for _ in 0..count {
            match schedule.next_after(t) {
                Some(next) => {
                    assert!(next > t, "{schedule:?}: {next} is not after {t}");
                    fires.push(next);
                    t = next;
                }
                None => break,
            }
        }
        fires
    }

    fn check(schedule: &Schedule, from: &str, expected: &[&str]) {
        let fires = walk(schedule, at(from), expected.len());
        let expected: Vec<_> = expected.iter().map(|text| at(text)).collect();
        let zone = match schedule {
            Schedule::Cron(cron) => cron.zone,
            Schedule::Every(_) => Tz::UTC,
        };
        let shown = |list: &[DateTime<Utc>]| -> Vec<String> {
            list.iter()
                .map(|fire| fire.with_timezone(&zone).to_rfc3339())
                .collect()
        };
        assert_eq!(
            fires,
            expected,
            "{} from {from}:\n   got {:?}\n  want {:?}",
            schedule.describe(),
            shown(&fires),
            shown(&expected)
        );
    }

    #[test]
    fn daylight_saving_table() {
        let rows: Vec<(Schedule, &str, Vec<&str>)> = vec![
            // Amsterdam, spring forward 2027-03-28: 02:00 CET -> 03:00 CEST.
            (
                cron(Amsterdam, "30 2 * * *"),
                "2027-03-27T12:00:00+01:00",
                vec![
                    "2027-03-28T03:00:00+02:00",
                    "2027-03-29T02:30:00+02:00",
                    "2027-03-30T02:30:00+02:00",
                ],
            ),
            (
                cron(Amsterdam, "30 2 * * *"),
                "2027-03-28T03:00:00+02:00",
                vec!["2027-03-29T02:30:00+02:00"],
            ),
            (
                cron(Amsterdam, "0,30 2 * * *"),
                "2027-03-27T23:00:00+01:00",
                vec![
                    "2027-03-28T03:00:00+02:00",
                    "2027-03-29T02:00:00+02:00",
                    "2027-03-29T02:30:00+02:00",
                ],
            ),
            (
                cron(Amsterdam, "0 2 * * *"),
                "2027-03-27T23:00:00+01:00",
                vec!["2027-03-28T03:00:00+02:00", "2027-03-29T02:00:00+02:00"],
            ),
            // cronie's rule: a minute field starting with `*` makes a wildcard job,
            // which follows the clock: the skipped 02:xx does not run at all.
            (
                cron(Amsterdam, "*/5 2 * * *"),
                "2027-03-27T12:00:00+01:00",
                vec!["2027-03-29T02:00:00+02:00", "2027-03-29T02:05:00+02:00"],
            ),
            // A stepped hour that does not start with `*` is fixed-time: 02:30 is in
            // the gap and runs right after it.
            (
                cron(Amsterdam, "30 2-4/2 * * *"),
                "2027-03-27T12:00:00+01:00",
                vec![
                    "2027-03-28T03:00:00+02:00",
                    "2027-03-28T04:30:00+02:00",
                    "2027-03-29T02:30:00+02:00",
                ],
            ),
            // A named time in the gap and the time right after it share one run.
            (
                cron(Amsterdam, "0 2,3 * * *"),
                "2027-03-27T23:00:00+01:00",
                vec![
                    "2027-03-28T03:00:00+02:00",
                    "2027-03-29T02:00:00+02:00",
                    "2027-03-29T03:00:00+02:00",
                ],
            ),
            (
                cron(Amsterdam, "0 4 * * *"),
                "2027-03-27T04:00:00+01:00",
                vec!["2027-03-28T04:00:00+02:00", "2027-03-29T04:00:00+02:00"],
            ),
            (
                cron(Amsterdam, "0 */15 * * * *"),
                "2027-03-28T01:30:00+01:00",
                vec![
                    "2027-03-28T01:45:00+01:00",
                    "2027-03-28T03:00:00+02:00",
                    "2027-03-28T03:15:00+02:00",
                    "2027-03-28T03:30:00+02:00",
                ],
            ),
            (
                cron(Amsterdam, "0 30 * * * *"),
                "2027-03-28T00:45:00+01:00",
                vec![
                    "2027-03-28T01:30:00+01:00",
                    "2027-03-28T03:30:00+02:00",
                    "2027-03-28T04:30:00+02:00",
                ],
            ),
            (
                cron(Amsterdam, "0 0 */1 * * *"),
                "2027-03-28T00:30:00+01:00",
                vec![
                    "2027-03-28T01:00:00+01:00",
                    "2027-03-28T03:00:00+02:00",
                    "2027-03-28T04:00:00+02:00",
                ],
            ),
            (
                every(30 * 60_000, 0),
                "2027-03-28T01:10:00+01:00",
                vec![
                    "2027-03-28T01:30:00+01:00",
                    "2027-03-28T03:00:00+02:00",
                    "2027-03-28T03:30:00+02:00",
                ],
            ),
            // Amsterdam, fall back 2027-10-31: 03:00 CEST -> 02:00 CET.
            // A wildcard job runs in both passes of the repeated hour, as cronie's do.
            (
                cron(Amsterdam, "*/30 2 * * *"),
                "2027-10-30T12:00:00+02:00",
                vec![
                    "2027-10-31T02:00:00+02:00",
                    "2027-10-31T02:30:00+02:00",
                    "2027-10-31T02:00:00+01:00",
                    "2027-10-31T02:30:00+01:00",
                    "2027-11-01T02:00:00+01:00",
                ],
            ),
            // A fixed-time job with a stepped hour runs in the first pass only.
            (
                cron(Amsterdam, "30 2-4/2 * * *"),
                "2027-10-30T12:00:00+02:00",
                vec![
                    "2027-10-31T02:30:00+02:00",
                    "2027-10-31T04:30:00+01:00",
                    "2027-11-01T02:30:00+01:00",
                ],
            ),
            (
                cron(Amsterdam, "30 2 * * *"),
                "2027-10-30T12:00:00+02:00",
                vec!["2027-10-31T02:30:00+02:00", "2027-11-01T02:30:00+01:00"],
            ),
            (
                cron(Amsterdam, "30 2 * * *"),
                "2027-10-31T02:45:00+02:00",
                vec!["2027-11-01T02:30:00+01:00"],
            ),
            (
                cron(Amsterdam, "30 2 * * *"),
                "2027-10-31T02:10:00+01:00",
                vec!["2027-11-01T02:30:00+01:00"],
            ),
            // The first second of the second pass.
            (
                cron(Amsterdam, "30 2 * * *"),
                "2027-10-31T02:00:00+01:00",
                vec!["2027-11-01T02:30:00+01:00"],
            ),
            (
                cron(Amsterdam, "0,30 2 * * *"),
                "2027-10-31T01:00:00+02:00",
                vec![
                    "2027-10-31T02:00:00+02:00",
                    "2027-10-31T02:30:00+02:00",
                    "2027-11-01T02:00:00+01:00",
                ],
            ),
            (
                cron(Amsterdam, "0 2 * * *"),
                "2027-10-31T00:00:00+02:00",
                vec!["2027-10-31T02:00:00+02:00", "2027-11-01T02:00:00+01:00"],
            ),
            (
                cron(Amsterdam, "0 4 * * *"),
                "2027-10-30T04:00:00+02:00",
                vec!["2027-10-31T04:00:00+01:00", "2027-11-01T04:00:00+01:00"],
            ),
            (
                cron(Amsterdam, "0 */15 * * * *"),
                "2027-10-31T02:40:00+02:00",
                vec![
                    "2027-10-31T02:45:00+02:00",
                    "2027-10-31T02:00:00+01:00",
                    "2027-10-31T02:15:00+01:00",
                    "2027-10-31T02:30:00+01:00",
                    "2027-10-31T02:45:00+01:00",
                    "2027-10-31T03:00:00+01:00",
                ],
            ),
            (
                cron(Amsterdam, "0 0,30 * * * *"),
                "2027-10-31T01:50:00+02:00",
                vec![
                    "2027-10-31T02:00:00+02:00",
                    "2027-10-31T02:30:00+02:00",
                    "2027-10-31T02:00:00+01:00",
                    "2027-10-31T02:30:00+01:00",
                    "2027-10-31T03:00:00+01:00",
                ],
            ),
            (
                cron(Amsterdam, "0 0 */1 * * *"),
                "2027-10-31T01:30:00+02:00",
                vec![
                    "2027-10-31T02:00:00+02:00",
                    "2027-10-31T02:00:00+01:00",
                    "2027-10-31T03:00:00+01:00",
                ],
            ),
            (
                every(30 * 60_000, 0),
                "2027-10-31T01:50:00+02:00",
                vec![
                    "2027-10-31T02:00:00+02:00",
                    "2027-10-31T02:30:00+02:00",
                    "2027-10-31T02:00:00+01:00",
                    "2027-10-31T02:30:00+01:00",
                ],
            ),
            // New York, spring forward 2027-03-14: 02:00 EST -> 03:00 EDT.
            (
                cron(New_York, "30 2 * * *"),
                "2027-03-13T12:00:00-05:00",
                vec!["2027-03-14T03:00:00-04:00", "2027-03-15T02:30:00-04:00"],
            ),
            (
                cron(New_York, "0,30 2 * * *"),
                "2027-03-13T12:00:00-05:00",
                vec![
                    "2027-03-14T03:00:00-04:00",
                    "2027-03-15T02:00:00-04:00",
                    "2027-03-15T02:30:00-04:00",
                ],
            ),
            (
                cron(New_York, "0 2 * * *"),
                "2027-03-13T12:00:00-05:00",
                vec!["2027-03-14T03:00:00-04:00", "2027-03-15T02:00:00-04:00"],
            ),
            (
                cron(New_York, "0 4 * * *"),
                "2027-03-13T12:00:00-05:00",
                vec!["2027-03-14T04:00:00-04:00", "2027-03-15T04:00:00-04:00"],
            ),
            (
                cron(New_York, "0 */15 * * * *"),
                "2027-03-14T01:40:00-05:00",
                vec![
                    "2027-03-14T01:45:00-05:00",
                    "2027-03-14T03:00:00-04:00",
                    "2027-03-14T03:15:00-04:00",
                ],
            ),
            (
                cron(New_York, "0 0 */1 * * *"),
                "2027-03-14T00:30:00-05:00",
                vec![
                    "2027-03-14T01:00:00-05:00",
                    "2027-03-14T03:00:00-04:00",
                    "2027-03-14T04:00:00-04:00",
                ],
            ),
            (
                every(30 * 60_000, 0),
                "2027-03-14T01:40:00-05:00",
                vec!["2027-03-14T03:00:00-04:00", "2027-03-14T03:30:00-04:00"],
            ),
            // New York, fall back 2027-11-07: 02:00 EDT -> 01:00 EST, so the
            // repeated hour is 01:00-02:00.
            (
                cron(New_York, "30 1 * * *"),
                "2027-11-06T12:00:00-04:00",
                vec!["2027-11-07T01:30:00-04:00", "2027-11-08T01:30:00-05:00"],
            ),
            (
                cron(New_York, "30 1 * * *"),
                "2027-11-07T01:10:00-05:00",
                vec!["2027-11-08T01:30:00-05:00"],
            ),
            (
                cron(New_York, "0,30 1 * * *"),
                "2027-11-07T00:50:00-04:00",
                vec![
                    "2027-11-07T01:00:00-04:00",
                    "2027-11-07T01:30:00-04:00",
                    "2027-11-08T01:00:00-05:00",
                ],
            ),
            (
                cron(New_York, "0 1 * * *"),
                "2027-11-06T12:00:00-04:00",
                vec!["2027-11-07T01:00:00-04:00", "2027-11-08T01:00:00-05:00"],
            ),
            // 02:00 and 02:30 occur once that night, after the repeated hour.
            (
                cron(New_York, "0,30 2 * * *"),
                "2027-11-07T00:00:00-04:00",
                vec![
                    "2027-11-07T02:00:00-05:00",
                    "2027-11-07T02:30:00-05:00",
                    "2027-11-08T02:00:00-05:00",
                ],
            ),
            (
                cron(New_York, "0 4 * * *"),
                "2027-11-06T12:00:00-04:00",
                vec!["2027-11-07T04:00:00-05:00"],
            ),
            (
                cron(New_York, "0 */15 * * * *"),
                "2027-11-07T01:40:00-04:00",
                vec![
                    "2027-11-07T01:45:00-04:00",
                    "2027-11-07T01:00:00-05:00",
                    "2027-11-07T01:15:00-05:00",
                    "2027-11-07T01:30:00-05:00",
                    "2027-11-07T01:45:00-05:00",
                    "2027-11-07T02:00:00-05:00",
                ],
            ),
            (
                cron(New_York, "0 0 */1 * * *"),
                "2027-11-07T00:30:00-04:00",
                vec![
                    "2027-11-07T01:00:00-04:00",
                    "2027-11-07T01:00:00-05:00",
                    "2027-11-07T02:00:00-05:00",
                ],
            ),
            (
                every(30 * 60_000, 0),
                "2027-11-07T01:40:00-04:00",
                vec![
                    "2027-11-07T01:00:00-05:00",
                    "2027-11-07T01:30:00-05:00",
                    "2027-11-07T02:00:00-05:00",
                ],
            ),
            // Lord Howe Island moves its clock by half an hour: 02:00 -> 02:30
            // on 2027-10-03 and 02:00 -> 01:30 on 2027-04-04.
            (
                cron(chrono_tz::Australia::Lord_Howe, "15 2 * * *"),
                "2027-10-02T12:00:00+10:30",
                vec!["2027-10-03T02:30:00+11:00", "2027-10-04T02:15:00+11:00"],
            ),
            (
                cron(chrono_tz::Australia::Lord_Howe, "0 */20 * * * *"),
                "2027-04-04T01:30:00+11:00",
                vec![
                    "2027-04-04T01:40:00+11:00",
                    "2027-04-04T01:40:00+10:30",
                    "2027-04-04T02:00:00+10:30",
                ],
            ),
        ];
        for (schedule, from, expected) in &rows {
            check(schedule, from, expected);
        }
    }

    #[test]
    fn calendar_table() {
        let utc = Tz::UTC;
        let rows: Vec<(Schedule, &str, Vec<&str>)> = vec![
            (
                cron(utc, "0 0 29 2 *"),
                "2027-01-01T00:00:00Z",
                vec!["2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"],
            ),
            // 2100 is not a leap year.
            (
                cron(utc, "0 0 29 2 *"),
                "2096-03-01T00:00:00Z",
                vec!["2104-02-29T00:00:00Z"],
            ),
            (
                cron(utc, "0 0 L * *"),
                "2028-02-01T00:00:00Z",
                vec!["2028-02-29T00:00:00Z", "2028-03-31T00:00:00Z"],
            ),
            (
                cron(utc, "0 0 L * *"),
                "2027-02-01T00:00:00Z",
                vec!["2027-02-28T00:00:00Z", "2027-03-31T00:00:00Z"],
            ),
            (
                cron(utc, "0 0 LW * *"),
                "2027-01-01T00:00:00Z",
                vec!["2027-01-29T00:00:00Z", "2027-02-26T00:00:00Z"],
            ),
            // 2027-05-15 is a Saturday, 2027-08-15 a Sunday.
            (
                cron(utc, "0 0 15W * *"),
                "2027-05-01T00:00:00Z",
                vec![
                    "2027-05-14T00:00:00Z",
                    "2027-06-15T00:00:00Z",
                    "2027-07-15T00:00:00Z",
                    "2027-08-16T00:00:00Z",
                ],
            ),
            // 31W in a month of 30 days (or fewer) names no day: that month has no
            // run. 2027-03-31 is a Wednesday, 2027-05-31 a Monday, 2027-07-31 a
            // Saturday.
            (
                cron(utc, "0 0 31W * *"),
                "2027-03-01T00:00:00Z",
                vec![
                    "2027-03-31T00:00:00Z",
                    "2027-05-31T00:00:00Z",
                    "2027-07-30T00:00:00Z",
                    "2027-08-31T00:00:00Z",
                ],
            ),
            // 2027-05-01 is a Saturday; W does not leave the month.
            (
                cron(utc, "0 0 1w * *"),
                "2027-04-30T00:00:00Z",
                vec!["2027-05-03T00:00:00Z"],
            ),
            (
                cron(utc, "0 0 * * 5#2"),
                "2027-01-01T00:00:00Z",
                vec![
                    "2027-01-08T00:00:00Z",
                    "2027-02-12T00:00:00Z",
                    "2027-03-12T00:00:00Z",
                ],
            ),
            (
                cron(utc, "0 0 * * fri#2"),
                "2027-01-01T00:00:00Z",
                vec!["2027-01-08T00:00:00Z", "2027-02-12T00:00:00Z"],
            ),
            (
                cron(utc, "0 0 * * FRIL"),
                "2027-01-01T00:00:00Z",
                vec!["2027-01-29T00:00:00Z", "2027-02-26T00:00:00Z"],
            ),
            (
                cron(utc, "@hourly"),
                "2027-06-15T10:20:00Z",
                vec!["2027-06-15T11:00:00Z", "2027-06-15T12:00:00Z"],
            ),
            (
                cron(utc, "@daily"),
                "2027-06-15T10:20:00Z",
                vec!["2027-06-16T00:00:00Z", "2027-06-17T00:00:00Z"],
            ),
            (
                cron(utc, "@midnight"),
                "2027-06-15T10:20:00Z",
                vec!["2027-06-16T00:00:00Z"],
            ),
            (
                cron(utc, "@weekly"),
                "2027-06-15T10:20:00Z",
                vec!["2027-06-20T00:00:00Z", "2027-06-27T00:00:00Z"],
            ),
            (
                cron(utc, "@monthly"),
                "2027-06-15T10:20:00Z",
                vec!["2027-07-01T00:00:00Z", "2027-08-01T00:00:00Z"],
            ),
            (
                cron(utc, "@yearly"),
                "2027-06-15T10:20:00Z",
                vec!["2028-01-01T00:00:00Z", "2029-01-01T00:00:00Z"],
            ),
            (
                cron(utc, "@ANNUALLY"),
                "2027-06-15T10:20:00Z",
                vec!["2028-01-01T00:00:00Z"],
            ),
            // Vixie OR: every 13th and every Friday.
            (
                cron(utc, "0 0 13 * 5"),
                "2027-01-01T00:00:00Z",
                vec![
                    "2027-01-08T00:00:00Z",
                    "2027-01-13T00:00:00Z",
                    "2027-01-15T00:00:00Z",
                    "2027-01-22T00:00:00Z",
                    "2027-01-29T00:00:00Z",
                    "2027-02-05T00:00:00Z",
                    "2027-02-12T00:00:00Z",
                    "2027-02-13T00:00:00Z",
                    "2027-02-19T00:00:00Z",
                ],
            ),
            // Friday the 13th fires once.
            (
                cron(utc, "0 0 13 * 5"),
                "2027-08-01T00:00:00Z",
                vec![
                    "2027-08-06T00:00:00Z",
                    "2027-08-13T00:00:00Z",
                    "2027-08-20T00:00:00Z",
                ],
            ),
            // A day field starting with `*` counts as unrestricted, so the
            // fields AND: odd-numbered days that are Mondays.
            (
                cron(utc, "0 0 */2 * 1"),
                "2027-01-01T00:00:00Z",
                vec![
                    "2027-01-11T00:00:00Z",
                    "2027-01-25T00:00:00Z",
                    "2027-02-01T00:00:00Z",
                    "2027-02-15T00:00:00Z",
                ],
            ),
            (
                cron(utc, "0 0 ? * mon"),
                "2027-01-01T00:00:00Z",
                vec!["2027-01-04T00:00:00Z", "2027-01-11T00:00:00Z"],
            ),
            (
                cron(utc, "0 0 * * 7"),
                "2027-01-01T00:00:00Z",
                vec!["2027-01-03T00:00:00Z", "2027-01-10T00:00:00Z"],
            ),
            (
                cron(utc, "0 12 * jan,Jul mon-fri"),
                "2027-01-29T13:00:00Z",
                vec!["2027-07-01T12:00:00Z", "2027-07-02T12:00:00Z"],
            ),
            // Friday OR an impossible day still fires on Fridays.
            (
                cron(utc, "0 0 30 2 5"),
                "2027-01-01T00:00:00Z",
                vec!["2027-02-05T00:00:00Z", "2027-02-12T00:00:00Z"],
            ),
            (
                cron(utc, "*/5 * * * * *"),
                "2027-06-15T10:20:03Z",
                vec![
                    "2027-06-15T10:20:05Z",
                    "2027-06-15T10:20:10Z",
                    "2027-06-15T10:20:15Z",
                ],
            ),
            (
                cron(utc, "*/5 * * * * *"),
                "2027-06-15T10:20:05.500Z",
                vec!["2027-06-15T10:20:10Z"],
            ),
            (
                cron(utc, "30 0 9 * * *"),
                "2027-06-15T09:00:29.999Z",
                vec!["2027-06-15T09:00:30Z", "2027-06-16T09:00:30Z"],
            ),
            (
                cron(utc, "59 23 31 12 *"),
                "2027-12-31T23:58:00Z",
                vec!["2027-12-31T23:59:00Z", "2028-12-31T23:59:00Z"],
            ),
            (
                cron(utc, "0 0 1 1 *"),
                "2027-12-31T23:59:59.999Z",
                vec!["2028-01-01T00:00:00Z", "2029-01-01T00:00:00Z"],
            ),
            (
                cron(New_York, "0 0 1 1 *"),
                "2027-12-31T23:00:00-05:00",
                vec!["2028-01-01T00:00:00-05:00", "2029-01-01T00:00:00-05:00"],
            ),
            (
                cron(Amsterdam, "59 23 31 12 *"),
                "2027-12-31T23:59:00+01:00",
                vec!["2028-12-31T23:59:00+01:00"],
            ),
        ];
        for (schedule, from, expected) in &rows {
            check(schedule, from, expected);
        }
    }

    #[test]
    fn every_table() {
        let rows: Vec<(Schedule, &str, Vec<&str>)> = vec![
            (
                every(250, 0),
                "2027-06-15T10:20:00.100Z",
                vec![
                    "2027-06-15T10:20:00.250Z",
                    "2027-06-15T10:20:00.500Z",
                    "2027-06-15T10:20:00.750Z",
                    "2027-06-15T10:20:01Z",
                ],
            ),
            (
                every(250, 0),
                "2027-06-15T10:20:00.250Z",
                vec!["2027-06-15T10:20:00.500Z"],
            ),
            (
                every(250, 100),
                "2027-06-15T10:20:00Z",
                vec!["2027-06-15T10:20:00.100Z", "2027-06-15T10:20:00.350Z"],
            ),
            (
                every(3_600_000, 15 * 60_000),
                "2027-06-15T10:20:00Z",
                vec!["2027-06-15T11:15:00Z", "2027-06-15T12:15:00Z"],
            ),
            (
                every(3_600_000, 75 * 60_000),
                "2027-06-15T10:20:00Z",
                vec!["2027-06-15T11:15:00Z", "2027-06-15T12:15:00Z"],
            ),
            (
                every(1, 0),
                "2027-06-15T10:20:00.000500Z",
                vec![
                    "2027-06-15T10:20:00.001Z",
                    "2027-06-15T10:20:00.002Z",
                    "2027-06-15T10:20:00.003Z",
                ],
            ),
            // 36h multiples of the epoch: 13990 * 129600 s is 2027-06-16T00:00Z.
            (
                every(36 * 3_600_000, 0),
                "2027-06-15T00:00:00Z",
                vec![
                    "2027-06-16T00:00:00Z",
                    "2027-06-17T12:00:00Z",
                    "2027-06-19T00:00:00Z",
                ],
            ),
            (
                every(3_600_000, 0),
                "1969-12-31T22:30:00Z",
                vec!["1969-12-31T23:00:00Z", "1970-01-01T00:00:00Z"],
            ),
        ];
        for (schedule, from, expected) in &rows {
            check(schedule, from, expected);
        }
        assert_eq!(1_813_104_000 % 129_600, 0);
        assert_eq!(
            at("2027-06-16T00:00:00Z").timestamp(),
            1_813_104_000,
            "the 36h row's arithmetic"
        );
    }

    #[test]
    fn impossible_days_give_none_quickly() {
        let started = crate::leaf::cpu::thread_time();
        for expr in [
            "0 0 30 2 *",
            "0 0 31 2 *",
            "0 0 30,31 2 *",
            "0 0 31 4,6,9,11 *",
        ] {
            for zone in [Tz::UTC, Amsterdam] {
                let schedule = cron(zone, expr);
                assert_eq!(
                    schedule.next_after(at("2027-01-01T00:00:00Z")),
                    None,
                    "{expr}"
                );
            }
        }
        let took = crate::leaf::cpu::thread_time() - started;
        assert!(took < Duration::from_secs(2), "took {took:?}");
    }

    #[test]
    fn error_messages() {
        let rows = [
            (
                "0 0 * *",
                "expected 5 or 6 fields (or an alias like @daily), found 4",
            ),
            (
                "0 0 0 0 * * *",
                "expected 5 or 6 fields (or an alias like @daily), found 7",
            ),
            (
                "   ",
                "empty cron expression: expected 5 or 6 fields (or an alias like @daily)",
            ),
            ("61 * * * *", "minute field: 61 is out of range 0-59"),
            ("60 * * * * *", "second field: 60 is out of range 0-59"),
            ("0 24 * * *", "hour field: 24 is out of range 0-23"),
            ("0 0 32 * *", "day-of-month field: 32 is out of range 1-31"),
            ("0 0 0 * *", "day-of-month field: 0 is out of range 1-31"),
            ("0 0 * 13 *", "month field: 13 is out of range 1-12"),
            ("0 0 * * 8", "day-of-week field: 8 is out of range 0-7"),
            (
                "0 0 99999999999 * *",
                "day-of-month field: 99999999999 is out of range 1-31",
            ),
            ("0 x * * *", "hour field: 'x' is not a number"),
            ("0 MON * * *", "hour field: 'MON' is not a number"),
            (
                "0 0 * * foo",
                "day-of-week field: 'foo' is not a number or a day name (SUN-SAT)",
            ),
            (
                "0 0 * jan-foo *",
                "month field: 'foo' in 'jan-foo' is not a number or a month name (JAN-DEC)",
            ),
            ("0 -5 * * *", "hour field: '-5' is missing a value"),
            (
                "0 5-1 * * *",
                "hour field: range 5-1 runs backwards; put the lower value first",
            ),
            (
                "*/0 * * * *",
                "minute field: '*/0': the step after '/' must be a number from 1 to 59",
            ),
            (
                "0/15 * * * *",
                "minute field: '0/15' needs '*' or a range before the '/', e.g. */15 or 0-59/15",
            ),
            ("0 1,,2 * * *", "hour field: empty entry in the list '1,,2'"),
            (
                "0 0 * * L",
                "day-of-week field: 'L' needs a day before it, e.g. 5L or FRIL for the last Friday of the month",
            ),
            (
                "0 0 * * 5#6",
                "day-of-week field: '5#6': the number after '#' must be 1-5 (which occurrence in the month)",
            ),
            (
                "@reboot",
                "@reboot is not supported: a schedule names recurring times; use a cron expression or an alias like @daily",
            ),
            (
                "@Reboot",
                "@reboot is not supported: a schedule names recurring times; use a cron expression or an alias like @daily",
            ),
            (
                "@often",
                "unknown alias @often; expected @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly",
            ),
            (
                "@daily 0",
                "@daily must stand alone, found 1 more field(s) after it",
            ),
            // croniter's order, seconds last.
            (
                "0 3 * * 1-5 30",
                "day-of-week field: 30 is out of range 0-7; with 6 fields the seconds come \
                 first (second minute hour day-of-month month day-of-week): did you mean \
                 `30 0 3 * * 1-5`?",
            ),
        ];
        for (expr, message) in rows {
            let err = Schedule::cron(expr, Tz::UTC).expect_err(expr);
            assert_eq!(err.to_string(), message, "for {expr:?}");
        }
    }

    #[test]
    fn equality_and_description() {
        assert_eq!(
            cron(Amsterdam, "0 0 * * MON"),
            cron(Amsterdam, " 0  0 0 * * 1 ")
        );
        assert_eq!(cron(Amsterdam, "@daily"), cron(Amsterdam, "0 0 * * *"));
        assert!(cron(Amsterdam, "@daily").same_rule(&cron(New_York, "0 0 * * *")));
        assert!(!cron(Amsterdam, "@daily").same_rule(&cron(New_York, "0 1 * * *")));
        assert_ne!(
            cron(Amsterdam, "0 0 * * MON"),
            cron(New_York, "0 0 * * MON")
        );
        assert_ne!(
            cron(Amsterdam, "0 0 * * MON"),
            cron(Amsterdam, "0 0 * * TUE")
        );
        assert_ne!(cron(Tz::UTC, "0 0 * * *"), every(86_400_000, 0));
        assert_eq!(every(3_600_000, 75 * 60_000), every(3_600_000, 15 * 60_000));
        assert_ne!(every(3_600_000, 0), every(3_600_000, 1));

        assert_eq!(cron(Tz::UTC, "  @daily ").describe(), "@daily");
        assert_eq!(cron(Tz::UTC, "0 2 * * mon").describe(), "0 2 * * mon");
        assert_eq!(every(250, 0).describe(), "every 250ms");
        assert_eq!(every(36 * 3_600_000, 0).describe(), "every 1d12h");
        assert_eq!(every(90_000, 0).describe(), "every 1m30s");
        assert_eq!(
            every(3_600_000, 75 * 60_000).describe(),
            "every 1h offset 15m"
        );
        let debug = format!("{:?}", cron(Amsterdam, "0 2 * * *"));
        assert!(
            debug.contains("Europe/Amsterdam") && debug.len() < 200,
            "{debug}"
        );
    }

    /// Each UTC midnight of `year` after which the zone's offset differs at
    /// the next midnight.
    fn days_before_changes(zone: Tz, year: i32) -> Vec<DateTime<Utc>> {
        let mut day = NaiveDate::from_ymd_opt(year, 1, 1)
            .and_then(|date| date.and_hms_opt(0, 0, 0))
            .map(|start| start.and_utc())
            .expect("valid date");
        let mut days = Vec::new();
        while day.year() == year {
            let next = day + TimeDelta::days(1);
            if offset_at(zone, day) != offset_at(zone, next) {
                days.push(day);
            }
            day = next;
        }
        days
    }

    const ZONES: [Tz; 11] = [
        Amsterdam,
        New_York,
        chrono_tz::Europe::London,
        chrono_tz::Australia::Lord_Howe,
        chrono_tz::Australia::Sydney,
        chrono_tz::America::Santiago,
        chrono_tz::America::Havana,
        chrono_tz::Pacific::Chatham,
        chrono_tz::Africa::Casablanca,
        chrono_tz::Asia::Kolkata,
        Tz::UTC,
    ];

    const FIXED_TIME: [&str; 12] = [
        "30 2 * * *",
        "0,30 2 * * *",
        "0 2 * * *",
        "0 2,3 * * *",
        "5 1-3/1 * * *",
        "0-59/10 1-3 * * *",
        "45 0 * * *",
        "30 23 * * *",
        "0 0 * * *",
        "15 1 * * *",
        "0 0-23 * * *",
        "0 12 * * *",
    ];

    const ELAPSED_TIME: [&str; 10] = [
        "*/15 * * * *",
        "30 * * * *",
        "0 */1 * * *",
        "0 */2 * * *",
        "*/7 * * * *",
        "* 2 * * *",
        "*/10 1-3 * * *",
        "*/5 2 * * *",
        "* * * * *",
        "@hourly",
    ];

    /// Compares next_after with a brute-force scan, minute by minute, of the
    /// days around every offset change of 2027 in several zones. The scan
    /// knows nothing of croner's search or of offset stretches: an
    /// elapsed-time job fires at each minute whose wall time matches, and a
    /// fixed-time job fires at the first minute whose wall time reaches a
    /// matching wall time.
    #[test]
    fn agrees_with_brute_force_around_offset_changes() {
        for zone in ZONES {
            let mut windows = days_before_changes(zone, 2027);
            windows.push(at("2027-07-01T00:00:00Z"));
            for change_day in windows {
                let start = change_day - TimeDelta::days(1);
                let end = change_day + TimeDelta::days(2);
                for expr in FIXED_TIME.iter().chain(&ELAPSED_TIME) {
                    let schedule = cron(zone, expr);
                    let Schedule::Cron(parsed) = &schedule else {
                        unreachable!("built from a cron expression")
                    };
                    assert_eq!(parsed.fixed_time, FIXED_TIME.contains(expr), "{expr}");
                    let expected = brute_force(parsed, start, end);
                    let mut actual = Vec::new();
                    let mut t = start;
                    while let Some(next) = schedule.next_after(t).filter(|next| *next <= end) {
                        assert!(next > t);
                        actual.push(next);
                        t = next;
                    }
                    let shown = |list: &[DateTime<Utc>]| -> Vec<String> {
                        list.iter()
                            .map(|fire| fire.with_timezone(&zone).to_rfc3339())
                            .collect()
                    };
                    assert!(
                        actual == expected,
                        "{zone} {expr} from {start}:\n   got {:?}\n  want {:?}",
                        shown(&actual),
                        shown(&expected)
                    );
                }
            }
        }
    }

    fn brute_force(
        schedule: &CronSchedule,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Vec<DateTime<Utc>> {
        let matches = |wall: NaiveDateTime| schedule.cron.is_time_matching(&wall).unwrap();
        let wall_at = |instant: DateTime<Utc>| {
            instant
                .with_timezone(&offset_at(schedule.zone, instant))
                .naive_local()
        };
        let mut fires = Vec::new();
        let mut highest = wall_at(start);
        let mut instant = start + TimeDelta::minutes(1);
        while instant <= end {
            let wall = wall_at(instant);
            if schedule.fixed_time {
                let mut reached = highest + TimeDelta::minutes(1);
                while reached <= wall {
                    if matches(reached) {
                        fires.push(instant);
                        break;
                    }
                    reached += TimeDelta::minutes(1);
                }
            } else if matches(wall) {
                fires.push(instant);
            }
            highest = highest.max(wall);
            instant += TimeDelta::minutes(1);
        }
        fires
    }

    /// Long walks: strictly increasing, and a fixed-time job never runs twice
    /// for the same local date and time.
    #[test]
    fn long_walks_stay_monotone() {
        let expressions = [
            "30 2 * * *",
            "0,30 2 * * *",
            "* 1-2 * * *",
            "*/20 * * * * *",
            "0 */15 * * * *",
            "0 0 */1 * * *",
            "0 0 13 * 5",
            "0 0 L * *",
            "0 0 * * 5#5",
        ];
        for zone in ZONES {
            for expr in expressions {
                let schedule = cron(zone, expr);
                let Schedule::Cron(parsed) = &schedule else {
                    unreachable!("built from a cron expression")
                };
                for start in days_before_changes(zone, 2027)
                    .into_iter()
                    .take(2)
                    .chain([at("2027-01-01T00:00:00Z")])
                {
                    let fires = walk(&schedule, start - TimeDelta::hours(12), 2000);
                    assert_eq!(fires.len(), 2000, "{zone} {expr}");
                    let mut seen = HashSet::new();
                    for fire in &fires {
                        let wall = fire.with_timezone(&zone).naive_local();
                        if parsed.fixed_time {
                            assert!(seen.insert(wall), "{zone} {expr}: {wall} twice");
                        } else {
                            assert!(parsed.cron.is_time_matching(&wall).unwrap());
                        }
                    }
                }
            }
        }
        for schedule in [every(250, 0), every(1, 0), every(36 * 3_600_000, 7)] {
            walk(&schedule, at("2027-03-28T00:00:00Z"), 2000);
        }
    }
}
