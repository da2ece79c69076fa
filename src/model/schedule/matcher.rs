//! Which wall-clock times a cron expression names, in a few dozen bytes: one bit set
//! per field, and the day forms that depend on the month (`L`, `LW`, `15W`, `5L`,
//! `5#2`) as small sets of their own. Days of a month are decided a month at a time,
//! as a bit set too, so that a search skips whole months and days in a few steps.
//!
//! Pure and zone-free: the caller turns instants into wall times and back.

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};

/// Searches stop past this year: nothing a jobfile names lies so far ahead.
pub(super) const LAST_YEAR: i32 = 5000;

/// How the two day fields combine, as in Vixie cron: when either starts with `*` a day
/// must match both (the starred one usually matches every day), otherwise either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub(super) enum Days {
    #[default]
    Both,
    Either,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub(super) struct Matcher {
    /// Bit s for second s, 0-59.
    seconds: u64,
    /// Bit m for minute m, 0-59.
    minutes: u64,
    /// Bit h for hour h, 0-23.
    hours: u32,
    /// Bit d for day d of the month, 1-31.
    days: u32,
    /// `15W`: bit d when the weekday nearest day d (within its month) matches.
    nearest_weekdays: u32,
    /// Bit m for month m, 1-12.
    months: u16,
    /// Bit w for weekday w, 0 (Sunday) to 6.
    weekdays: u8,
    /// `5L`: bit w when the last weekday w of a month matches.
    last_weekdays: u8,
    /// `5#2`: bit n-1 of entry w when the nth weekday w of a month matches.
    nth_weekdays: [u8; 7],
    /// `L`: the last day of the month.
    last_day: bool,
    /// `LW`: the last weekday (Monday to Friday) of the month.
    last_working_day: bool,
    combine: Days,
}

/// A field of a cron expression, for `Matcher::add_range`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Unit {
    Second,
    Minute,
    Hour,
    DayOfMonth,
    Month,
    /// 0 and 7 are both Sunday.
    DayOfWeek,
}

impl Matcher {
    /// Values `from..=to`, every `step`th, of `unit`. The caller checks the bounds.
    pub(super) fn add_range(&mut self, unit: Unit, from: u32, to: u32, step: u32) {
        let step = step.max(1) as usize;
        for value in (from..=to).step_by(step) {
            match unit {
                Unit::Second => self.seconds |= 1 << value,
                Unit::Minute => self.minutes |= 1 << value,
                Unit::Hour => self.hours |= 1 << value,
                Unit::DayOfMonth => self.days |= 1 << value,
                Unit::Month => self.months |= 1 << value,
                Unit::DayOfWeek => self.weekdays |= 1 << (value % 7),
            }
        }
    }

    pub(super) fn add_last_day(&mut self) {
        self.last_day = true;
    }

    pub(super) fn add_last_working_day(&mut self) {
        self.last_working_day = true;
    }

    /// `dayW`: the weekday nearest `day` (1-31).
    pub(super) fn add_nearest_weekday(&mut self, day: u32) {
        self.nearest_weekdays |= 1 << day;
    }

    /// `weekdayL`: the last such weekday of the month (0-7, 7 is Sunday).
    pub(super) fn add_last_weekday(&mut self, weekday: u32) {
        self.last_weekdays |= 1 << (weekday % 7);
    }

    /// `weekday#nth`: the `nth` (1-5) such weekday of the month.
    pub(super) fn add_nth_weekday(&mut self, weekday: u32, nth: u32) {
        self.nth_weekdays[(weekday % 7) as usize] |= 1 << (nth - 1);
    }

    pub(super) fn combine_days(&mut self, combine: Days) {
        self.combine = combine;
    }

    /// Whether `wall` (to the second; fractions never match) is named: what the
    /// tests check a search against.
    #[cfg(test)]
    pub(super) fn matches(&self, wall: NaiveDateTime) -> bool {
        wall.nanosecond() == 0
            && bit64(self.seconds, wall.second())
            && bit64(self.minutes, wall.minute())
            && bit32(self.hours, wall.hour())
            && bit32(self.months.into(), wall.month())
            && bit32(self.days_of(wall.year(), wall.month()), wall.day())
    }

    /// The first named wall time after `from`, or at it when `inclusive`; None when
    /// there is none before the year `LAST_YEAR` ends.
    pub(super) fn next(&self, from: NaiveDateTime, inclusive: bool) -> Option<NaiveDateTime> {
        // Named times are whole seconds: start from the first one the search may return.
        let whole = from.with_nanosecond(0)?;
        let start = if inclusive && whole == from {
            whole
        } else {
            whole.checked_add_signed(chrono::TimeDelta::seconds(1))?
        };
        let mut date = start.date();
        let mut floor = Some(start.time());
        while date.year() <= LAST_YEAR {
            if bit32(self.months.into(), date.month()) {
                let mut days = self.days_of(date.year(), date.month()) >> date.day() << date.day();
                while days != 0 {
                    let day = days.trailing_zeros();
                    days &= days - 1;
                    let at_start = floor.filter(|_| day == date.day());
                    if let Some(time) = self.time_from(at_start.unwrap_or(NaiveTime::MIN)) {
                        return date.with_day(day).map(|date| date.and_time(time));
                    }
                }
            }
            floor = None;
            date = first_of_next_month(date)?;
        }
        None
    }

    /// Whether any day of any year matches the month and day fields. A month's days
    /// depend only on its length and the weekday it starts on, and every pair of them
    /// the calendar has occurs in the 28 years from 2001 (as in any 28 years without a
    /// century year that is not a leap year).
    pub(super) fn matches_some_day(&self) -> bool {
        (2001..2029).any(|year| {
            (1..=12).any(|month| bit32(self.months.into(), month) && self.days_of(year, month) != 0)
        })
    }

    /// The first named time of day at or after `floor`.
    fn time_from(&self, floor: NaiveTime) -> Option<NaiveTime> {
        let (h, m, s) = (floor.hour(), floor.minute(), floor.second());
        let mut hour = next32(self.hours, h)?;
        loop {
            let mut minute_floor = if hour == h { m } else { 0 };
            while let Some(minute) = next64(self.minutes, minute_floor) {
                let second_floor = if (hour, minute) == (h, m) { s } else { 0 };
                if let Some(second) = next64(self.seconds, second_floor) {
                    return NaiveTime::from_hms_opt(hour, minute, second);
                }
                minute_floor = minute + 1;
            }
            hour = next32(self.hours, hour + 1)?;
        }
    }

    /// The days of a month the day fields name, as bit d for day d.
    fn days_of(&self, year: i32, month: u32) -> u32 {
        let Some(first) = NaiveDate::from_ymd_opt(year, month, 1) else {
            return 0;
        };
        let length = days_in_month(year, month);
        let valid = (u32::MAX >> (31 - length)) & !1;
        // Weekday of day d: (first_weekday + d - 1) % 7, Sunday 0.
        let first_weekday = first.weekday().num_days_from_sunday();
        let weekday_of = |day: u32| (first_weekday + day - 1) % 7;

        let mut of_month = self.days & valid;
        if self.last_day {
            of_month |= 1 << length;
        }
        if self.last_working_day {
            let last = match weekday_of(length) {
                6 => length - 1,
                0 => length - 2,
                _ => length,
            };
            of_month |= 1 << last;
        }
        let mut nearest = self.nearest_weekdays & valid;
        while nearest != 0 {
            let day = nearest.trailing_zeros();
            nearest &= nearest - 1;
            // The weekday nearest `day` without leaving the month: a Saturday moves to
            // the Friday before (the Monday after, on the 1st), a Sunday to the Monday
            // after (the Friday before, on the last day).
            let target = match weekday_of(day) {
                6 if day > 1 => day - 1,
                6 => day + 2,
                0 if day < length => day + 1,
                0 => day - 2,
                _ => day,
            };
            of_month |= 1 << target;
        }

        let mut of_week = 0;
        for day in 1..=length {
            let weekday = weekday_of(day);
            let named = bit32(self.weekdays.into(), weekday)
                || bit32(self.nth_weekdays[weekday as usize].into(), (day - 1) / 7)
                || (bit32(self.last_weekdays.into(), weekday) && day + 7 > length);
            if named {
                of_week |= 1 << day;
            }
        }

        match self.combine {
            Days::Both => of_month & of_week,
            Days::Either => of_month | of_week,
        }
    }
}

fn bit32(set: u32, value: u32) -> bool {
    value < 32 && set >> value & 1 == 1
}

#[cfg(test)]
fn bit64(set: u64, value: u32) -> bool {
    value < 64 && set >> value & 1 == 1
}

/// The smallest value at or above `from` in `set`.
fn next32(set: u32, from: u32) -> Option<u32> {
    let above = set.checked_shr(from)?.checked_shl(from)?;
    (above != 0).then(|| above.trailing_zeros())
}

fn next64(set: u64, from: u32) -> Option<u32> {
    let above = set.checked_shr(from)?.checked_shl(from)?;
    (above != 0).then(|| above.trailing_zeros())
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if NaiveDate::from_ymd_opt(year, 2, 29).is_some() => 29,
        2 => 28,
        _ => 31,
    }
}

fn first_of_next_month(date: NaiveDate) -> Option<NaiveDate> {
    match date.month() {
        12 => NaiveDate::from_ymd_opt(date.year().checked_add(1)?, 1, 1),
        month => NaiveDate::from_ymd_opt(date.year(), month + 1, 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wall(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").expect(text)
    }

    /// Every second, minute, hour and month; days as `setup` says.
    fn matcher(setup: impl FnOnce(&mut Matcher)) -> Matcher {
        let mut matcher = Matcher::default();
        matcher.add_range(Unit::Second, 0, 0, 1);
        matcher.add_range(Unit::Minute, 0, 0, 1);
        matcher.add_range(Unit::Hour, 0, 0, 1);
        matcher.add_range(Unit::Month, 1, 12, 1);
        setup(&mut matcher);
        matcher
    }

    fn days(matcher: &Matcher, from: &str, count: usize) -> Vec<String> {
        let mut at = wall(from);
        let mut found = Vec::new();
        while found.len() < count {
            at = matcher.next(at, false).expect("a next day");
            found.push(at.format("%Y-%m-%d").to_string());
        }
        found
    }

    #[test]
    fn a_search_carries_from_seconds_up_to_years() {
        let mut m = Matcher::default();
        m.add_range(Unit::Second, 30, 30, 1);
        m.add_range(Unit::Minute, 15, 45, 30);
        m.add_range(Unit::Hour, 23, 23, 1);
        m.add_range(Unit::DayOfMonth, 31, 31, 1);
        m.add_range(Unit::Month, 12, 12, 1);
        m.add_range(Unit::DayOfWeek, 0, 7, 1);
        let rows = [
            ("2027-12-31 23:15:29", false, "2027-12-31 23:15:30"),
            ("2027-12-31 23:15:30", true, "2027-12-31 23:15:30"),
            ("2027-12-31 23:15:30", false, "2027-12-31 23:45:30"),
            ("2027-12-31 23:45:30", false, "2028-12-31 23:15:30"),
            ("2027-06-01 00:00:00", false, "2027-12-31 23:15:30"),
        ];
        for (from, inclusive, expected) in rows {
            assert_eq!(
                m.next(wall(from), inclusive),
                Some(wall(expected)),
                "{from} {inclusive}"
            );
        }
        let fraction = wall("2027-12-31 23:15:30") + chrono::TimeDelta::milliseconds(1);
        assert_eq!(m.next(fraction, true), Some(wall("2027-12-31 23:45:30")));
        assert!(m.matches(wall("2028-12-31 23:45:30")));
        assert!(!m.matches(fraction));
        assert!(!m.matches(wall("2028-12-30 23:45:30")));
    }

    #[test]
    fn day_forms_that_depend_on_the_month() {
        let last = matcher(|m| {
            m.add_last_day();
            m.add_range(Unit::DayOfWeek, 0, 7, 1);
        });
        assert_eq!(
            days(&last, "2028-01-31 00:00:00", 3),
            ["2028-02-29", "2028-03-31", "2028-04-30"]
        );
        // 2027-07-31 is a Saturday, 2027-10-31 a Sunday.
        let last_working = matcher(|m| {
            m.add_last_working_day();
            m.add_range(Unit::DayOfWeek, 0, 7, 1);
        });
        assert_eq!(
            days(&last_working, "2027-07-01 00:00:00", 4),
            ["2027-07-30", "2027-08-31", "2027-09-30", "2027-10-29"]
        );
        // 2027-05-01 is a Saturday (moves to Monday the 3rd), 2027-02-28 a Sunday
        // (moves back to Friday the 26th), 2027-08-15 a Sunday (Monday the 16th).
        let nearest = matcher(|m| {
            m.add_nearest_weekday(1);
            m.add_nearest_weekday(28);
            m.add_nearest_weekday(15);
            m.add_range(Unit::DayOfWeek, 0, 7, 1);
        });
        assert_eq!(
            days(&nearest, "2027-04-30 00:00:00", 3),
            ["2027-05-03", "2027-05-14", "2027-05-28"]
        );
        assert_eq!(days(&nearest, "2027-02-16 00:00:00", 1), ["2027-02-26"]);
        assert_eq!(days(&nearest, "2027-08-02 00:00:00", 1), ["2027-08-16"]);
        let fifth_friday_or_last_monday = matcher(|m| {
            m.add_range(Unit::DayOfMonth, 1, 31, 1);
            m.add_nth_weekday(5, 5);
            m.add_last_weekday(1);
        });
        assert_eq!(
            days(&fifth_friday_or_last_monday, "2027-01-01 00:00:00", 4),
            ["2027-01-25", "2027-01-29", "2027-02-22", "2027-03-29"]
        );
    }

    #[test]
    fn day_fields_combine_as_in_vixie_cron() {
        let thirteenth_or_friday = matcher(|m| {
            m.add_range(Unit::DayOfMonth, 13, 13, 1);
            m.add_range(Unit::DayOfWeek, 5, 5, 1);
            m.combine_days(Days::Either);
        });
        assert_eq!(
            days(&thirteenth_or_friday, "2027-08-01 00:00:00", 3),
            ["2027-08-06", "2027-08-13", "2027-08-20"]
        );
        let odd_mondays = matcher(|m| {
            m.add_range(Unit::DayOfMonth, 1, 31, 2);
            m.add_range(Unit::DayOfWeek, 1, 1, 1);
            m.combine_days(Days::Both);
        });
        assert_eq!(
            days(&odd_mondays, "2027-01-01 00:00:00", 3),
            ["2027-01-11", "2027-01-25", "2027-02-01"]
        );
    }

    #[test]
    fn impossible_days_are_known_without_a_search() {
        let mut february_30 = Matcher::default();
        february_30.add_range(Unit::Second, 0, 0, 1);
        february_30.add_range(Unit::Minute, 0, 0, 1);
        february_30.add_range(Unit::Hour, 0, 0, 1);
        february_30.add_range(Unit::DayOfMonth, 30, 30, 1);
        february_30.add_range(Unit::Month, 2, 2, 1);
        february_30.add_range(Unit::DayOfWeek, 0, 7, 1);
        assert!(!february_30.matches_some_day());
        assert_eq!(february_30.next(wall("2027-01-01 00:00:00"), false), None);
        let mut leap_day = february_30.clone();
        leap_day.add_range(Unit::DayOfMonth, 29, 29, 1);
        assert!(leap_day.matches_some_day());
        assert_eq!(
            leap_day.next(wall("2097-01-01 00:00:00"), false),
            Some(wall("2104-02-29 00:00:00"))
        );
        assert_eq!(leap_day.next(wall("4999-01-01 00:00:00"), false), None);
    }

    #[test]
    fn it_stays_small() {
        assert!(size_of::<Matcher>() <= 48, "{}", size_of::<Matcher>());
    }
}
