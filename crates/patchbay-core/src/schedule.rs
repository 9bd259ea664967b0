//! Recurrence of stored background jobs: "run the health sweep every 15
//! minutes", "prune logs daily at 03:00".
//!
//! # Syntax
//!
//! Input is case-insensitive, surrounding whitespace is ignored and words are
//! separated by runs of whitespace. Three forms are accepted:
//!
//! * **Intervals**: `every <N><unit>` or `every <N> <unit>`, the unit being
//!   `s`, `m`, `h` or `d` (or `second(s)`, `minute(s)`, `hour(s)`, `day(s)`),
//!   with `N` at least 1 and a period from 1 second to 7 days.
//! * **Macros**: `@hourly` (`0 * * * *`), `@daily` and `@midnight`
//!   (`0 0 * * *`), `@weekly` (`0 0 * * 0`), `@monthly` (`0 0 1 * *`),
//!   `@yearly` and `@annually` (`0 0 1 1 *`).
//! * **Cron expressions** of exactly five fields: minute (0–59), hour (0–23),
//!   day of month (1–31), month (1–12 or `jan`–`dec`) and day of week (0–7 or
//!   `sun`–`sat`, 0 and 7 both meaning Sunday). A field is a comma-separated
//!   list of `*`, a value `a`, a range `a-b`, or a stepped `*/n`, `a-b/n` or
//!   `a/n` (from `a` to the field's maximum). There is no seconds or year
//!   field, and none of the `?`, `L`, `W` or `#` extensions.
//!
//! # Decisions
//!
//! * **UTC.** Schedules are evaluated in UTC. There are no time zones, hence
//!   no daylight-saving gaps or repeated hours.
//! * **Epoch-aligned intervals.** `every 15m` fires at every instant that is
//!   a whole multiple of 15 minutes since 1970-01-01T00:00:00Z, not 15
//!   minutes after some process happened to start, so that every process
//!   agrees on the periods and [`Schedule::current_period`] names a period
//!   the same way everywhere. Intervals that divide a day start at midnight;
//!   `every 7d` periods start on Thursdays (the epoch was a Thursday).
//! * **Vixie day rule.** As in Vixie cron (and cronie, its successor), when
//!   both the day-of-month and the day-of-week field are restricted, a day
//!   matches when *either* matches; when either field is unrestricted, both
//!   must match. Like Vixie cron, a field counts as unrestricted when its text
//!   begins with `*`: `0 0 */2 * 1` fires on odd-numbered days that are
//!   Mondays, while `0 0 1-31/2 * 1` fires on odd-numbered days and on
//!   Mondays.
//! * **Second 0.** Cron schedules fire at second 0 of each matching minute.
//! * **Bounded search.** [`Schedule::next_after`] and
//!   [`Schedule::current_period`] look at most 5 years (1 827 days) ahead or
//!   back, and answer `None` beyond. An expression that never fires, such as
//!   `0 0 30 2 *`, parses but never yields an instant; `0 0 29 2 *` yields
//!   none from March 2096 to February 2099, as 2100 is not a leap year.
//! * **Canonical text.** [`Schedule`]'s `Display` re-renders the parsed
//!   fields: numbers instead of names, Sunday as 0, macros expanded, ranges
//!   and steps (`*/n`, `a-b/n`) wherever they cover at least three values
//!   (`@daily` prints as `0 0 * * *`, `*/15 9,10,11 * * MON-FRI` as
//!   `*/15 9-11 * * 1-5`, `every 3600s` as `every 1h`). Parsing the text gives
//!   back an equal schedule, so it is what is stored and serialized.
//!
//! `next_after` does not scan minute by minute: it skips whole months, days
//! and hours that cannot match, so even a search over five years of
//! Februaries takes microseconds.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::time::Timestamp;

const SECONDS_PER_DAY: u64 = 86_400;
/// The longest `every` period: 7 days.
const MAX_EVERY_SECONDS: u64 = 7 * SECONDS_PER_DAY;
/// How far `next_after` and `current_period` look: 5 years, leap days included.
const HORIZON_DAYS: i64 = 5 * 365 + 2;
const MINUTES_PER_DAY: i64 = 1_440;
const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_MINUTE: i64 = 60 * MICROS_PER_SECOND;

/// When a background job runs: a fixed interval or a cron expression,
/// evaluated in UTC. See the [module documentation](self) for the syntax.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Schedule {
    /// Fires at every whole multiple of `seconds` since the Unix epoch.
    /// [`Schedule::parse`] only produces 1 to 604 800 (7 days); a value of 0
    /// never fires.
    Every { seconds: u32 },
    /// A five-field cron expression (the macros such as `@daily` included).
    Cron(CronSpec),
}

/// The parsed form of a five-field cron expression. It is only built by
/// [`Schedule::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CronSpec {
    /// Bit `n` set: minute `n` (0–59) matches.
    minutes: u64,
    /// Bits 0–23.
    hours: u64,
    /// Bits 1–31.
    days: u64,
    /// Bits 1–12.
    months: u64,
    /// Bits 0–6, 0 being Sunday (a 7 in the text is stored as 0).
    weekdays: u64,
    /// The day-of-month field began with `*` (unrestricted, for the Vixie rule).
    days_star: bool,
    /// The day-of-week field began with `*`.
    weekdays_star: bool,
}

/// Why a text is not a schedule. The message names the offending part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ScheduleError {
    message: String,
}

impl ScheduleError {
    fn new(message: impl Into<String>) -> ScheduleError {
        ScheduleError {
            message: message.into(),
        }
    }
}

impl Schedule {
    /// Parses `every <N><unit>`, a macro such as `@daily`, or a five-field
    /// cron expression.
    pub fn parse(input: &str) -> Result<Schedule, ScheduleError> {
        let lower = input.trim().to_ascii_lowercase();
        let words: Vec<&str> = lower.split_whitespace().collect();
        let text = words.join(" ");
        match words.as_slice() {
            [] => Err(ScheduleError::new(
                "the schedule is empty: write `every 15m`, a macro such as `@daily`, \
                 or five cron fields such as `0 3 * * *`",
            )),
            ["every", rest @ ..] => parse_every(rest, &text),
            [first, ..] if first.starts_with("every") => Err(ScheduleError::new(format!(
                "`{text}` needs a space after `every`, as in `every 15m`"
            ))),
            [first, rest @ ..] if first.starts_with('@') => parse_macro(first, rest, &text),
            fields => CronSpec::parse(fields, &text).map(Schedule::Cron),
        }
    }

    /// The first instant strictly after `t` at which the schedule fires, or
    /// `None` if it does not fire within 5 years after `t`.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let micros = t.as_micros();
        match self {
            Schedule::Every { seconds } => {
                let period = i64::from(*seconds) * MICROS_PER_SECOND;
                if period == 0 {
                    return None;
                }
                let next = micros
                    .div_euclid(period)
                    .checked_add(1)?
                    .checked_mul(period)?;
                (next - micros <= HORIZON_DAYS * MINUTES_PER_DAY * MICROS_PER_MINUTE)
                    .then_some(Timestamp::from_micros(next))
            }
            Schedule::Cron(spec) => {
                let now = micros.div_euclid(MICROS_PER_MINUTE);
                let found =
                    spec.first_at_or_after(now + 1, now + HORIZON_DAYS * MINUTES_PER_DAY)?;
                found
                    .checked_mul(MICROS_PER_MINUTE)
                    .map(Timestamp::from_micros)
            }
        }
    }

    /// The start of the period `t` falls in: the latest instant at or before
    /// `t` at which the schedule fires, or `None` if it did not fire within 5
    /// years before `t`. Every process computes the same value for the same
    /// period, so it names the period.
    pub fn current_period(&self, t: Timestamp) -> Option<Timestamp> {
        let micros = t.as_micros();
        match self {
            Schedule::Every { seconds } => {
                let period = i64::from(*seconds) * MICROS_PER_SECOND;
                if period == 0 {
                    return None;
                }
                let start = micros.div_euclid(period).checked_mul(period)?;
                (micros - start <= HORIZON_DAYS * MINUTES_PER_DAY * MICROS_PER_MINUTE)
                    .then_some(Timestamp::from_micros(start))
            }
            Schedule::Cron(spec) => {
                let now = micros.div_euclid(MICROS_PER_MINUTE);
                // The earliest acceptable minute starts at or after t − 5 years.
                let earliest = now + i64::from(micros.rem_euclid(MICROS_PER_MINUTE) != 0)
                    - HORIZON_DAYS * MINUTES_PER_DAY;
                let found = spec.last_at_or_before(now, earliest)?;
                found
                    .checked_mul(MICROS_PER_MINUTE)
                    .map(Timestamp::from_micros)
            }
        }
    }
}

/// `every` followed by `rest` (already lower-cased; `text` is the whole
/// normalized input, for messages).
fn parse_every(rest: &[&str], text: &str) -> Result<Schedule, ScheduleError> {
    let (digits, unit) = match rest {
        [] => {
            return Err(ScheduleError::new(
                "`every` needs a period, as in `every 15m`",
            ));
        }
        [period] => period.split_at(period.bytes().take_while(u8::is_ascii_digit).count()),
        [count, unit] if count.bytes().all(|b| b.is_ascii_digit()) => (*count, *unit),
        _ => {
            return Err(ScheduleError::new(format!(
                "`{text}` is not an interval: write `every <N><unit>`, as in `every 15m`"
            )));
        }
    };
    if digits.is_empty() {
        return Err(ScheduleError::new(format!(
            "`{text}` has no count: write `every <N><unit>`, as in `every 15m`"
        )));
    }
    let unit_seconds: u64 = match unit {
        "s" | "second" | "seconds" => 1,
        "m" | "minute" | "minutes" => 60,
        "h" | "hour" | "hours" => 3_600,
        "d" | "day" | "days" => SECONDS_PER_DAY,
        "" => {
            return Err(ScheduleError::new(format!(
                "`{text}` has no unit: use s, m, h or d, as in `every 15m`"
            )));
        }
        _ => {
            return Err(ScheduleError::new(format!(
                "unknown unit `{unit}` in `{text}`: use s, m, h or d"
            )));
        }
    };
    // Only digits remain, so the sole failure is overflow: a count far too large.
    let count: u64 = digits.parse().unwrap_or(u64::MAX);
    if count == 0 {
        return Err(ScheduleError::new(format!(
            "the count in `{text}` must be at least 1"
        )));
    }
    let too_long = || {
        ScheduleError::new(format!(
            "`{text}` is longer than the longest interval, 7 days (`every 7d`)"
        ))
    };
    let seconds = count.saturating_mul(unit_seconds);
    if seconds > MAX_EVERY_SECONDS {
        return Err(too_long());
    }
    let seconds = u32::try_from(seconds).map_err(|_| too_long())?;
    Ok(Schedule::Every { seconds })
}

/// A macro such as `@daily`, with `rest` the words after it.
fn parse_macro(name: &str, rest: &[&str], text: &str) -> Result<Schedule, ScheduleError> {
    let expansion = match name {
        "@hourly" => "0 * * * *",
        "@daily" | "@midnight" => "0 0 * * *",
        "@weekly" => "0 0 * * 0",
        "@monthly" => "0 0 1 * *",
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@reboot" => {
            return Err(ScheduleError::new(
                "`@reboot` is not supported: a stored schedule recurs in time, not at start-up",
            ));
        }
        _ => {
            return Err(ScheduleError::new(format!(
                "unknown macro `{name}`: use @hourly, @daily, @midnight, @weekly, @monthly, \
                 @yearly or @annually"
            )));
        }
    };
    if !rest.is_empty() {
        return Err(ScheduleError::new(format!(
            "unexpected text after `{name}` in `{text}`"
        )));
    }
    let fields: Vec<&str> = expansion.split(' ').collect();
    CronSpec::parse(&fields, expansion).map(Schedule::Cron)
}

/// One of the five cron fields.
#[derive(Debug)]
struct Field {
    name: &'static str,
    min: i64,
    max: i64,
    /// Names for the values `min`, `min + 1`, …; empty when the field has none.
    names: &'static [&'static str],
    /// How refusals describe an acceptable value.
    expected: &'static str,
}

const MINUTE: Field = Field {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
    expected: "a number",
};
const HOUR: Field = Field {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
    expected: "a number",
};
const DAY: Field = Field {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
    expected: "a number",
};
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
    expected: "a number or a month name (jan–dec)",
};
const WEEKDAY: Field = Field {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
    expected: "a number or a day name (sun–sat)",
};

impl Field {
    /// The refusal of `token` (a part of the field's `text`).
    fn error(&self, text: &str, token: &str, what: &str) -> ScheduleError {
        let name = self.name;
        ScheduleError::new(if token == text {
            format!("{name} field `{text}` {what}")
        } else {
            format!("{name} field `{text}`: `{token}` {what}")
        })
    }

    /// The set `lo, lo + step, …` up to `hi`, with day-of-week 7 stored as 0.
    fn expand(&self, lo: i64, hi: i64, step: i64) -> u64 {
        let mut mask = 0u64;
        let mut value = lo;
        while value <= hi {
            mask |= 1 << value;
            value += step;
        }
        if self.max == 7 && has(mask, 7) {
            mask = (mask & !(1 << 7)) | 1;
        }
        mask
    }

    /// Parses the field's text into a set of values.
    fn parse(&self, text: &str) -> Result<u64, ScheduleError> {
        let span = self.max - self.min;
        let mut mask = 0;
        for item in text.split(',') {
            if item.is_empty() {
                return Err(self.error(text, text, "has an empty list item"));
            }
            let (range, step) = match item.split_once('/') {
                Some((range, step)) => (range, Some(step)),
                None => (item, None),
            };
            let step_value = match step {
                None => 1,
                Some("") => return Err(self.error(text, item, "has an empty step")),
                Some(step) => match parse_digits(step) {
                    None => {
                        return Err(self.error(
                            text,
                            item,
                            &format!("has a step `{step}` that is not a number"),
                        ));
                    }
                    Some(0) => {
                        return Err(self.error(
                            text,
                            item,
                            "has a step of 0; a step must be at least 1",
                        ));
                    }
                    Some(n) if n > span => {
                        return Err(self.error(
                            text,
                            item,
                            &format!("has a step of {n}; a step must be 1–{span}"),
                        ));
                    }
                    Some(n) => n,
                },
            };
            let (lo, hi) = if range == "*" {
                (self.min, self.max)
            } else if range.is_empty() {
                return Err(self.error(text, item, "has no value before the `/`"));
            } else if let Some((start, end)) = range.split_once('-') {
                if start.is_empty() || end.is_empty() {
                    return Err(self.error(text, item, "is an incomplete range"));
                }
                let (lo, hi) = (self.value(text, start)?, self.value(text, end)?);
                if lo > hi {
                    return Err(self.error(
                        text,
                        item,
                        "is a reversed range: its start is after its end",
                    ));
                }
                (lo, hi)
            } else {
                let value = self.value(text, range)?;
                (value, if step.is_some() { self.max } else { value })
            };
            mask |= self.expand(lo, hi, step_value);
        }
        Ok(mask)
    }

    /// One value of the field: a number in range, or a name.
    fn value(&self, text: &str, token: &str) -> Result<i64, ScheduleError> {
        if let Some(index) = self.names.iter().position(|n| *n == token) {
            // At most 12 names.
            return Ok(self.min + i64::try_from(index).unwrap_or(0));
        }
        if !token.bytes().all(|b| b.is_ascii_digit()) {
            let what = format!("is not {}", self.expected);
            return Err(self.error(text, token, &what));
        }
        match parse_digits(token) {
            Some(value) if (self.min..=self.max).contains(&value) => Ok(value),
            _ => {
                let what = format!("is out of range {}–{}", self.min, self.max);
                Err(self.error(text, token, &what))
            }
        }
    }

    /// Canonical text that parses back to `mask`. `star` says whether the
    /// text must, may or must not start with `*` (the day fields carry the
    /// Vixie "unrestricted" flag in that first character). Where it may,
    /// `*/n` is used for progressions of at least three values (`*/15`, but
    /// `0,30` rather than `*/30`).
    fn render(&self, mask: u64, star: Star) -> String {
        let every = |step| self.expand(self.min, self.max, step);
        let span = self.max - self.min;
        match star {
            Star::Forbidden => {}
            _ if mask == every(1) => return "*".to_owned(),
            Star::Free => {
                if let Some(step) = (2..=span).find(|&s| every(s) == mask && mask.count_ones() >= 3)
                {
                    return format!("*/{step}");
                }
            }
            Star::Required => {
                if let Some(step) = (2..=span).find(|&s| every(s) == mask) {
                    return format!("*/{step}");
                }
                // Parsing put some `*/step` first, so one is contained.
                if let Some(step) = (2..=span).find(|&s| every(s) & !mask == 0) {
                    return format!("*/{step},{}", self.render_list(mask & !every(step)));
                }
            }
        }
        self.render_list(mask)
    }

    /// `mask` as `a-b/n` if it is one arithmetic progression of at least
    /// three values, else as a list of values and ranges.
    fn render_list(&self, mask: u64) -> String {
        let values: Vec<i64> = (self.min..=self.max).filter(|&v| has(mask, v)).collect();
        if let [first, second, .., last] = values[..] {
            let step = second - first;
            if step >= 2 && values.windows(2).all(|w| w[1] - w[0] == step) {
                return format!("{first}-{last}/{step}");
            }
        }
        let mut parts = Vec::new();
        let mut rest = values.as_slice();
        while let [start, ..] = rest {
            let run = rest
                .iter()
                .zip(*start..)
                .take_while(|(value, expected)| **value == *expected)
                .count();
            if run >= 3 {
                parts.push(format!("{start}-{}", rest[run - 1]));
            } else {
                parts.extend(rest[..run].iter().map(ToString::to_string));
            }
            rest = &rest[run..];
        }
        parts.join(",")
    }
}

/// Whether a rendered field starts with `*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Star {
    /// The minute, hour and month fields: either way.
    Free,
    /// A day field that was unrestricted (began with `*`).
    Required,
    /// A day field that was restricted.
    Forbidden,
}

impl Star {
    fn day_field(star: bool) -> Star {
        if star {
            Star::Required
        } else {
            Star::Forbidden
        }
    }
}

/// A string of ASCII digits as a number (`i64::MAX` when it overflows, which
/// is out of range anyway); `None` if empty or not all digits.
fn parse_digits(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse().unwrap_or(i64::MAX))
}

impl CronSpec {
    fn parse(fields: &[&str], text: &str) -> Result<CronSpec, ScheduleError> {
        let [minute, hour, day, month, weekday] = fields else {
            let n = fields.len();
            let extra = if n > 5 {
                "; seconds and year fields are not supported"
            } else {
                ""
            };
            return Err(ScheduleError::new(format!(
                "`{text}` has {n} field{}, but a cron expression has five (minute hour \
                 day-of-month month day-of-week){extra}; other forms are `every <N><unit>` \
                 and macros such as `@daily`",
                if n == 1 { "" } else { "s" }
            )));
        };
        Ok(CronSpec {
            minutes: MINUTE.parse(minute)?,
            hours: HOUR.parse(hour)?,
            days: DAY.parse(day)?,
            months: MONTH.parse(month)?,
            weekdays: WEEKDAY.parse(weekday)?,
            days_star: day.starts_with('*'),
            weekdays_star: weekday.starts_with('*'),
        })
    }

    /// The days (bits 1–31) of `month` of `year` on which the expression fires.
    fn day_mask(&self, year: i64, month: i64) -> u64 {
        if !has(self.months, month) {
            return 0;
        }
        let len = days_in_month(year, month);
        let first_weekday = weekday(days_from_civil(year, month, 1));
        let mut by_weekday = 0u64;
        for day in 1..=len {
            if has(self.weekdays, (first_weekday + day - 1) % 7) {
                by_weekday |= 1 << day;
            }
        }
        // Bits 0..=len; bit 0 is never set.
        let by_day = self.days & (u64::MAX >> (63 - len));
        if self.days_star || self.weekdays_star {
            by_day & by_weekday
        } else {
            by_day | by_weekday
        }
    }

    /// The first firing minute (counted from the epoch) in `from..=limit`.
    fn first_at_or_after(&self, from: i64, limit: i64) -> Option<i64> {
        let mut day = from.div_euclid(MINUTES_PER_DAY);
        let mut hour = from.rem_euclid(MINUTES_PER_DAY) / 60;
        let mut minute = from.rem_euclid(60);
        loop {
            if day * MINUTES_PER_DAY + hour * 60 + minute > limit {
                return None;
            }
            let (year, month, dom) = civil_from_days(day);
            match next_bit(self.day_mask(year, month), dom) {
                None => {
                    // The first day of the next month.
                    day += days_in_month(year, month) - dom + 1;
                    (hour, minute) = (0, 0);
                    continue;
                }
                Some(next) if next > dom => {
                    day += next - dom;
                    (hour, minute) = (0, 0);
                }
                Some(_) => {}
            }
            match next_bit(self.hours, hour) {
                None => {
                    day += 1;
                    (hour, minute) = (0, 0);
                    continue;
                }
                Some(next) if next > hour => (hour, minute) = (next, 0),
                Some(_) => {}
            }
            match next_bit(self.minutes, minute) {
                Some(next) => {
                    let found = day * MINUTES_PER_DAY + hour * 60 + next;
                    return (found <= limit).then_some(found);
                }
                None if hour == 23 => (day, hour, minute) = (day + 1, 0, 0),
                None => (hour, minute) = (hour + 1, 0),
            }
        }
    }

    /// The last firing minute (counted from the epoch) in `limit..=from`.
    fn last_at_or_before(&self, from: i64, limit: i64) -> Option<i64> {
        let mut day = from.div_euclid(MINUTES_PER_DAY);
        let mut hour = from.rem_euclid(MINUTES_PER_DAY) / 60;
        let mut minute = from.rem_euclid(60);
        loop {
            if day * MINUTES_PER_DAY + hour * 60 + minute < limit {
                return None;
            }
            let (year, month, dom) = civil_from_days(day);
            match prev_bit(self.day_mask(year, month), dom) {
                None => {
                    // The last day of the previous month.
                    day -= dom;
                    (hour, minute) = (23, 59);
                    continue;
                }
                Some(prev) if prev < dom => {
                    day -= dom - prev;
                    (hour, minute) = (23, 59);
                }
                Some(_) => {}
            }
            match prev_bit(self.hours, hour) {
                None => {
                    day -= 1;
                    (hour, minute) = (23, 59);
                    continue;
                }
                Some(prev) if prev < hour => (hour, minute) = (prev, 59),
                Some(_) => {}
            }
            match prev_bit(self.minutes, minute) {
                Some(prev) => {
                    let found = day * MINUTES_PER_DAY + hour * 60 + prev;
                    return (found >= limit).then_some(found);
                }
                None if hour == 0 => (day, hour, minute) = (day - 1, 23, 59),
                None => (hour, minute) = (hour - 1, 59),
            }
        }
    }
}

/// Whether bit `bit` of `mask` is set.
fn has(mask: u64, bit: i64) -> bool {
    (0..64).contains(&bit) && (mask >> bit) & 1 == 1
}

/// The lowest set bit of `mask` at or above `from`.
fn next_bit(mask: u64, from: i64) -> Option<i64> {
    let masked = match from {
        ..=0 => mask,
        1..=63 => mask & (u64::MAX << from),
        _ => 0,
    };
    (masked != 0).then(|| i64::from(masked.trailing_zeros()))
}

/// The highest set bit of `mask` at or below `upto`.
fn prev_bit(mask: u64, upto: i64) -> Option<i64> {
    let masked = match upto {
        ..0 => 0,
        0..63 => mask & (u64::MAX >> (63 - upto)),
        _ => mask,
    };
    (masked != 0).then(|| 63 - i64::from(masked.leading_zeros()))
}

/// The day of the week of a day counted from the epoch; 0 is Sunday.
fn weekday(days: i64) -> i64 {
    // 1970-01-01 was a Thursday.
    (days + 4).rem_euclid(7)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if year.rem_euclid(4) == 0
            && (year.rem_euclid(100) != 0 || year.rem_euclid(400) == 0) =>
        {
            29
        }
        2 => 28,
        _ => 31,
    }
}

/// Days since the epoch of a proleptic Gregorian date (Howard Hinnant's
/// algorithm, as in [`crate::time`]).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian (year, month, day) of a day counted from the
/// epoch (the inverse of [`days_from_civil`], as in [`crate::date`]).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let doe = shifted.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

impl fmt::Display for CronSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {} {}",
            MINUTE.render(self.minutes, Star::Free),
            HOUR.render(self.hours, Star::Free),
            DAY.render(self.days, Star::day_field(self.days_star)),
            MONTH.render(self.months, Star::Free),
            WEEKDAY.render(self.weekdays, Star::day_field(self.weekdays_star)),
        )
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Every { seconds } => {
                let seconds = u64::from(*seconds);
                let (count, unit) = match seconds {
                    0 => (0, 's'),
                    s if s % SECONDS_PER_DAY == 0 => (s / SECONDS_PER_DAY, 'd'),
                    s if s % 3_600 == 0 => (s / 3_600, 'h'),
                    s if s % 60 == 0 => (s / 60, 'm'),
                    s => (s, 's'),
                };
                write!(f, "every {count}{unit}")
            }
            Schedule::Cron(spec) => spec.fmt(f),
        }
    }
}

impl FromStr for Schedule {
    type Err = ScheduleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Schedule::parse(s)
    }
}

impl Serialize for Schedule {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Schedule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Schedule::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for Schedule {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Schedule".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "When a job runs, in UTC: `every <N><unit>` (unit s, m, h or d; \
                1 second to 7 days; aligned to the Unix epoch), a macro (@hourly, @daily, \
                @weekly, @monthly, @yearly), or five cron fields: minute hour day-of-month \
                month day-of-week",
            "examples": ["every 15m", "@daily", "0 3 * * *", "*/10 9-17 * * mon-fri"]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap()
    }

    fn schedule(s: &str) -> Schedule {
        Schedule::parse(s).unwrap_or_else(|e| panic!("`{s}` should parse: {e}"))
    }

    fn error(s: &str) -> String {
        match Schedule::parse(s) {
            Ok(parsed) => panic!("`{s}` should be refused, parsed as `{parsed}`"),
            Err(e) => e.to_string(),
        }
    }

    fn next(expr: &str, from: &str) -> Option<String> {
        schedule(expr).next_after(at(from)).map(|t| t.to_string())
    }

    fn period(expr: &str, t: &str) -> Option<String> {
        schedule(expr).current_period(at(t)).map(|t| t.to_string())
    }

    fn spec(expr: &str) -> CronSpec {
        match schedule(expr) {
            Schedule::Cron(spec) => spec,
            other @ Schedule::Every { .. } => panic!("`{expr}` is not cron: {other:?}"),
        }
    }

    /// Deterministic pseudo-random numbers: Knuth's MMIX LCG, its state
    /// scrambled by the `SplitMix64` finalizer so all 64 bits are usable.
    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)) % n
        }

        fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[usize::try_from(self.below(u64::try_from(items.len()).unwrap())).unwrap()]
        }
    }

    #[test]
    fn parses_intervals_in_every_spelling() {
        for (input, seconds) in [
            ("every 15m", 900),
            ("every 15 m", 900),
            ("EVERY 15 Minutes", 900),
            ("  every\t1   hour  ", 3_600),
            ("every 90s", 90),
            ("every 1 second", 1),
            ("every 1s", 1),
            ("every 2 days", 172_800),
            ("every 1 day", 86_400),
            ("every 3H", 10_800),
            ("every 7d", 604_800),
            ("every 604800s", 604_800),
            ("every 001m", 60),
            ("every 10080 minutes", 604_800),
        ] {
            assert_eq!(schedule(input), Schedule::Every { seconds }, "{input}");
        }
    }

    #[test]
    fn refuses_bad_intervals_with_reasons() {
        assert_eq!(
            error("every 2w"),
            "unknown unit `w` in `every 2w`: use s, m, h or d"
        );
        assert_eq!(
            error("Every 2 Weeks"),
            "unknown unit `weeks` in `every 2 weeks`: use s, m, h or d"
        );
        assert!(error("every 0m").contains("at least 1"));
        assert!(error("every 0 s").contains("at least 1"));
        assert!(error("every 8d").contains("7 days"));
        assert!(error("every 604801s").contains("7 days"));
        assert!(error("every 169h").contains("7 days"));
        assert!(error("every 99999999999999999999999999s").contains("7 days"));
        assert!(error("every").contains("needs a period"));
        assert!(error("every m").contains("no count"));
        assert!(error("every -5m").contains("no count"));
        assert!(error("every 15").contains("no unit"));
        assert!(error("every 1.5h").contains("unknown unit `.5h`"));
        assert!(error("every 15m extra").contains("not an interval"));
        assert!(error("every 15 m s").contains("not an interval"));
        assert!(error("every15m").contains("space after `every`"));
    }

    #[test]
    fn displays_intervals_in_the_largest_exact_unit() {
        for (input, canonical) in [
            ("every 90s", "every 90s"),
            ("every 60s", "every 1m"),
            ("every 3600s", "every 1h"),
            ("every 86400 seconds", "every 1d"),
            ("every 120 s", "every 2m"),
            ("every 90 minutes", "every 90m"),
            ("every 24h", "every 1d"),
            ("every 36h", "every 36h"),
            ("every 7 days", "every 7d"),
            ("every 1s", "every 1s"),
        ] {
            let parsed = schedule(input);
            assert_eq!(parsed.to_string(), canonical, "{input}");
            assert_eq!(schedule(canonical), parsed, "{input}");
        }
    }

    #[test]
    fn intervals_fire_on_multiples_of_the_period_since_the_epoch() {
        assert_eq!(
            next("every 15m", "2026-02-24T10:07:30Z").as_deref(),
            Some("2026-02-24T10:15:00Z")
        );
        // Exactly on a boundary: the next one, not the same instant.
        assert_eq!(
            next("every 15m", "2026-02-24T10:15:00Z").as_deref(),
            Some("2026-02-24T10:30:00Z")
        );
        assert_eq!(
            next("every 15m", "2026-02-24T10:14:59.999999Z").as_deref(),
            Some("2026-02-24T10:15:00Z")
        );
        assert_eq!(
            next("every 15m", "2026-02-24T23:50:00Z").as_deref(),
            Some("2026-02-25T00:00:00Z")
        );
        assert_eq!(
            next("every 1s", "2026-02-24T10:00:00.5Z").as_deref(),
            Some("2026-02-24T10:00:01Z")
        );
        assert_eq!(
            next("every 90s", "2026-02-24T00:00:00Z").as_deref(),
            Some("2026-02-24T00:01:30Z")
        );
        assert_eq!(
            next("every 1d", "2026-02-24T10:00:00Z").as_deref(),
            Some("2026-02-25T00:00:00Z")
        );
        // 2026-02-24 is a Tuesday; weekly periods start on Thursdays.
        assert_eq!(
            next("every 7d", "2026-02-24T10:00:00Z").as_deref(),
            Some("2026-02-26T00:00:00Z")
        );
        // Before the epoch too.
        assert_eq!(
            next("every 1h", "1969-12-31T23:30:00Z").as_deref(),
            Some("1970-01-01T00:00:00Z")
        );
        assert_eq!(
            period("every 1h", "1969-12-31T23:30:00Z").as_deref(),
            Some("1969-12-31T23:00:00Z")
        );
    }

    #[test]
    fn interval_periods_start_at_the_latest_boundary() {
        assert_eq!(
            period("every 15m", "2026-02-24T10:07:30Z").as_deref(),
            Some("2026-02-24T10:00:00Z")
        );
        assert_eq!(
            period("every 15m", "2026-02-24T10:15:00Z").as_deref(),
            Some("2026-02-24T10:15:00Z")
        );
        assert_eq!(
            period("every 15m", "2026-02-24T10:29:59.999999Z").as_deref(),
            Some("2026-02-24T10:15:00Z")
        );
        assert_eq!(
            period("every 1d", "2026-02-24T23:59:59Z").as_deref(),
            Some("2026-02-24T00:00:00Z")
        );
        // Periods that do not divide a day still tile the time line exactly.
        let mut rng = Lcg(7);
        for seconds in [1, 7, 59, 420, 3_599, 86_399, 100_000, 604_800] {
            let every = Schedule::Every { seconds };
            let len = i64::from(seconds) * MICROS_PER_SECOND;
            for _ in 0..200 {
                let t = Timestamp::from_micros(
                    i64::try_from(rng.below(8_000_000_000_000_000)).unwrap()
                        - 2_000_000_000_000_000,
                );
                let start = every.current_period(t).unwrap();
                let next = every.next_after(t).unwrap();
                assert!(start <= t && t < next, "{every} at {t}");
                assert_eq!(start.as_micros() % len, 0);
                assert_eq!(next.as_micros() - start.as_micros(), len, "{every} at {t}");
                assert_eq!(every.current_period(start), Some(start));
                assert_eq!(every.next_after(start), Some(next));
            }
        }
        let never = Schedule::Every { seconds: 0 };
        assert_eq!(never.next_after(at("2026-02-24")), None);
        assert_eq!(never.current_period(at("2026-02-24")), None);
    }

    #[test]
    fn expands_macros() {
        for (input, expansion) in [
            ("@hourly", "0 * * * *"),
            ("@daily", "0 0 * * *"),
            ("@midnight", "0 0 * * *"),
            ("@weekly", "0 0 * * 0"),
            ("@monthly", "0 0 1 * *"),
            ("@yearly", "0 0 1 1 *"),
            ("@annually", "0 0 1 1 *"),
            ("  @DAILY ", "0 0 * * *"),
        ] {
            assert_eq!(schedule(input), schedule(expansion), "{input}");
            assert_eq!(schedule(input).to_string(), expansion, "{input}");
        }
        assert!(error("@reboot").contains("not supported"));
        assert_eq!(
            error("@fortnightly"),
            "unknown macro `@fortnightly`: use @hourly, @daily, @midnight, @weekly, @monthly, \
             @yearly or @annually"
        );
        assert!(error("@daily 5").contains("unexpected text after `@daily`"));
        assert!(error("@").contains("unknown macro"));
    }

    #[test]
    fn parses_cron_fields_values_ranges_steps_and_names() {
        for (a, b) in [
            ("0 0 * * 7", "0 0 * * 0"),
            ("0 0 * * sun", "0 0 * * 0"),
            ("0 9 * JAN-Mar Mon-Fri", "0 9 * 1-3 1-5"),
            ("0 9 * * sat-7", "0 9 * * 0,6"),
            ("*/15 * * * *", "0,15,30,45 * * * *"),
            ("5/20 * * * *", "5,25,45 * * * *"),
            ("0 0 1-31/10 * *", "0 0 1,11,21,31 * *"),
            ("0 20-23/2,1 * * *", "0 1,20,22 * * *"),
            ("0 0 * * */2", "0 0 * * */2"),
            ("0 0 * * 0-7/7", "0 0 * * 0"),
            ("   0   3  *\t* *  ", "0 3 * * *"),
            ("00 03 01 01 00", "0 3 1 1 0"),
            ("*/1 * * * *", "* * * * *"),
            ("0-59 * * * *", "* * * * *"),
        ] {
            assert_eq!(schedule(a), schedule(b), "{a} vs {b}");
        }
        let parsed = spec("*/20 9-17/4 1,15 jun-aug mon,fri");
        assert_eq!(parsed.minutes, 1 << 0 | 1 << 20 | 1 << 40);
        assert_eq!(parsed.hours, 1 << 9 | 1 << 13 | 1 << 17);
        assert_eq!(parsed.days, 1 << 1 | 1 << 15);
        assert_eq!(parsed.months, 1 << 6 | 1 << 7 | 1 << 8);
        assert_eq!(parsed.weekdays, 1 << 1 | 1 << 5);
        assert!(!parsed.days_star && !parsed.weekdays_star);
        // `0 0 1-31 * *` restricts the day of month (Vixie): not the same as `*`.
        assert_ne!(schedule("0 0 1-31 * 1"), schedule("0 0 * * 1"));
        assert!(spec("0 0 */2 * *").days_star);
    }

    #[test]
    fn refuses_bad_cron_expressions_naming_the_problem() {
        for (input, message) in [
            ("61 * * * *", "minute field `61` is out of range 0–59"),
            (
                "0,61 * * * *",
                "minute field `0,61`: `61` is out of range 0–59",
            ),
            ("0 24 * * *", "hour field `24` is out of range 0–23"),
            ("0 0 0 * *", "day-of-month field `0` is out of range 1–31"),
            ("0 0 32 * *", "day-of-month field `32` is out of range 1–31"),
            ("0 0 * 13 *", "month field `13` is out of range 1–12"),
            ("0 0 * 0 *", "month field `0` is out of range 1–12"),
            ("0 0 * * 8", "day-of-week field `8` is out of range 0–7"),
            (
                "0 0 * * 1-8",
                "day-of-week field `1-8`: `8` is out of range 0–7",
            ),
            (
                "99999999999999999999 * * * *",
                "minute field `99999999999999999999` is out of range 0–59",
            ),
            ("1,,2 * * * *", "minute field `1,,2` has an empty list item"),
            ("0, * * * *", "minute field `0,` has an empty list item"),
            (", * * * *", "minute field `,` has an empty list item"),
            (
                "*/0 * * * *",
                "minute field `*/0` has a step of 0; a step must be at least 1",
            ),
            (
                "0 1-5/0 * * *",
                "hour field `1-5/0` has a step of 0; a step must be at least 1",
            ),
            (
                "*/60 * * * *",
                "minute field `*/60` has a step of 60; a step must be 1–59",
            ),
            (
                "*/x * * * *",
                "minute field `*/x` has a step `x` that is not a number",
            ),
            ("*/ * * * *", "minute field `*/` has an empty step"),
            (
                "/5 * * * *",
                "minute field `/5` has no value before the `/`",
            ),
            (
                "0 17-9 * * *",
                "hour field `17-9` is a reversed range: its start is after its end",
            ),
            (
                "0 0 * * fri-mon",
                "day-of-week field `fri-mon` is a reversed range: its start is after its end",
            ),
            ("0 5- * * *", "hour field `5-` is an incomplete range"),
            ("0 -5 * * *", "hour field `-5` is an incomplete range"),
            ("5x * * * *", "minute field `5x` is not a number"),
            (
                "0 0 1-2-3 * *",
                "day-of-month field `1-2-3`: `2-3` is not a number",
            ),
            (
                "0 0 * foo *",
                "month field `foo` is not a number or a month name (jan–dec)",
            ),
            (
                "0 0 * * monday",
                "day-of-week field `monday` is not a number or a day name (sun–sat)",
            ),
            (
                "0 0 * 1/feb *",
                "month field `1/feb` has a step `feb` that is not a number",
            ),
            (
                "*/99999999999999999999 * * * *",
                "minute field `*/99999999999999999999` has a step of 9223372036854775807; \
                 a step must be 1–59",
            ),
            ("0 0 ? * *", "day-of-month field `?` is not a number"),
            ("0 0 L * *", "day-of-month field `l` is not a number"),
            ("0 0 15W * *", "day-of-month field `15w` is not a number"),
            (
                "0 0 * * 5#3",
                "day-of-week field `5#3` is not a number or a day name (sun–sat)",
            ),
            ("*5 * * * *", "minute field `*5` is not a number"),
        ] {
            assert_eq!(error(input), message, "{input}");
        }
        assert_eq!(
            error("0 0 0 * * *"),
            "`0 0 0 * * *` has 6 fields, but a cron expression has five (minute hour \
             day-of-month month day-of-week); seconds and year fields are not supported; \
             other forms are `every <N><unit>` and macros such as `@daily`"
        );
        assert!(error("0 0 * * * junk").contains("has 6 fields"));
        assert!(error("0 0 1 1 * 2027 x").contains("has 7 fields"));
        assert!(error("0 0 * *").contains("has 4 fields"));
        assert!(error("hourly").contains("has 1 field,"));
        assert!(error("").contains("empty"));
        assert!(error(" \t ").contains("empty"));
    }

    #[test]
    fn jan_is_a_name_only_in_the_month_field() {
        assert!(error("0 0 jan * *").contains("day-of-month field `jan` is not a number"));
        assert!(error("0 0 * * jan").contains("not a number or a day name"));
        assert!(error("0 0 * sun *").contains("not a number or a month name"));
    }

    #[test]
    fn displays_cron_canonically_and_round_trips() {
        for (input, canonical) in [
            ("0 3 * * *", "0 3 * * *"),
            ("*/15 9-17 * * MON-FRI", "*/15 9-17 * * 1-5"),
            ("0 0 * * 7", "0 0 * * 0"),
            ("0 0 * * 0-7", "0 0 * * 0-6"),
            ("0 0 1,15 jan,jul *", "0 0 1,15 1,7 *"),
            ("*/30 */12 * * *", "0,30 0,12 * * *"),
            ("0 0 */30 * *", "0 0 */30 * *"),
            ("5/20 * * * *", "5-45/20 * * * *"),
            ("0,20,40 8,9,10,11 * * *", "*/20 8-11 * * *"),
            ("0 0 */2 * 1", "0 0 */2 * 1"),
            ("0 0 */2,4 * 1", "0 0 */2,4 * 1"),
            ("0 0 */10,2-4 * *", "0 0 */10,2-4 * *"),
            ("0 0 1-31/2 * 1", "0 0 1-31/2 * 1"),
            ("0 0 1-31 * 1", "0 0 1-31 * 1"),
            ("0 0 * * */7", "0 0 * * */7"),
            ("0 0 * * */1", "0 0 * * *"),
            ("0 0 * */3 *", "0 0 * */3 *"),
            ("0 0 * 1,4,7,10 *", "0 0 * */3 *"),
            ("1,2,4,5,6 * * * *", "1,2,4-6 * * * *"),
            ("0 12 * * sat,sun", "0 12 * * 0,6"),
            ("59 23 31 dec *", "59 23 31 12 *"),
        ] {
            let parsed = schedule(input);
            assert_eq!(parsed.to_string(), canonical, "{input}");
            assert_eq!(schedule(canonical), parsed, "{input}");
            assert_eq!(canonical.parse::<Schedule>(), Ok(parsed));
        }
    }

    #[test]
    fn never_panics_and_round_trips_whatever_it_accepts() {
        let atoms = [
            "*", "*/", "/", "-", ",", "0", "1", "2", "5", "7", "12", "13", "23", "29", "31", "59",
            "60", "jan", "dec", "sun", "sat", "every", "@daily", "@", "m", "h", "d", "s", " ",
            "  ", "\t", "x", "é", "–", "?", "L", "#",
        ];
        let mut rng = Lcg(42);
        let mut accepted = 0;
        for _ in 0..20_000 {
            let len = rng.below(16);
            let input: String = (0..len).map(|_| *rng.pick(&atoms)).collect();
            if let Ok(parsed) = Schedule::parse(&input) {
                accepted += 1;
                let text = parsed.to_string();
                assert_eq!(Schedule::parse(&text).as_ref(), Ok(&parsed), "{input:?}");
            }
        }
        assert!(accepted > 0);
    }

    /// A random well-formed (mostly valid) cron field.
    fn random_field(rng: &mut Lcg, field: &Field) -> String {
        let value = |rng: &mut Lcg| {
            let v = field.min
                + i64::try_from(rng.below(u64::try_from(field.max - field.min + 1).unwrap()))
                    .unwrap();
            match usize::try_from(v - field.min) {
                Ok(i) if i < field.names.len() && rng.below(3) == 0 => field.names[i].to_owned(),
                _ => v.to_string(),
            }
        };
        let items = 1 + rng.below(3);
        let mut parts = Vec::new();
        for _ in 0..items {
            let step = 1 + rng.below(u64::try_from(field.max - field.min).unwrap());
            parts.push(match rng.below(6) {
                0 => "*".to_owned(),
                1 => format!("*/{step}"),
                2 => value(rng),
                3 => format!("{}-{}", value(rng), value(rng)),
                4 => format!("{}-{}/{step}", value(rng), value(rng)),
                _ => format!("{}/{step}", value(rng)),
            });
        }
        parts.join(",")
    }

    #[test]
    fn random_expressions_display_canonically_and_round_trip() {
        let mut rng = Lcg(2026);
        let mut accepted = 0;
        for _ in 0..5_000 {
            let input = [&MINUTE, &HOUR, &DAY, &MONTH, &WEEKDAY]
                .map(|field| random_field(&mut rng, field))
                .join(" ");
            let Ok(parsed) = Schedule::parse(&input) else {
                continue; // reversed ranges
            };
            accepted += 1;
            let text = parsed.to_string();
            assert_eq!(schedule(&text), parsed, "{input} → {text}");
            assert_eq!(schedule(&text).to_string(), text, "{input}");
        }
        // About one in five survives: reversed ranges (`9-3`) are rejected.
        assert!(accepted > 500, "{accepted}");
    }

    #[test]
    fn cron_crosses_minute_hour_day_month_and_year_boundaries() {
        let cases = [
            ("* * * * *", "2026-02-24T10:07:30Z", "2026-02-24T10:08:00Z"),
            ("* * * * *", "2026-02-24T10:08:00Z", "2026-02-24T10:09:00Z"),
            ("* * * * *", "2026-02-24T23:59:59Z", "2026-02-25T00:00:00Z"),
            ("30 * * * *", "2026-02-24T10:45:00Z", "2026-02-24T11:30:00Z"),
            ("30 * * * *", "2026-02-24T10:29:59Z", "2026-02-24T10:30:00Z"),
            (
                "15 */6 * * *",
                "2026-02-24T05:20:00Z",
                "2026-02-24T06:15:00Z",
            ),
            ("0 3 * * *", "2026-02-24T03:00:00Z", "2026-02-25T03:00:00Z"),
            (
                "0 3 * * *",
                "2026-02-24T02:59:59.999999Z",
                "2026-02-24T03:00:00Z",
            ),
            ("0 0 * * *", "2026-12-31T12:00:00Z", "2027-01-01T00:00:00Z"),
            ("0 12 1 * *", "2026-01-31T13:00:00Z", "2026-02-01T12:00:00Z"),
            (
                "59 23 31 12 *",
                "2026-12-31T23:59:00Z",
                "2027-12-31T23:59:00Z",
            ),
            ("0 0 1 1 *", "2026-06-15T00:00:00Z", "2027-01-01T00:00:00Z"),
            (
                "0 0 1 jan,jul *",
                "2026-02-01T00:00:00Z",
                "2026-07-01T00:00:00Z",
            ),
            (
                "0 0 1 */3 *",
                "2026-04-01T00:00:00Z",
                "2026-07-01T00:00:00Z",
            ),
            (
                "*/15 9-17/4 * * *",
                "2026-02-24T17:50:00Z",
                "2026-02-25T09:00:00Z",
            ),
            (
                "*/15 9-17/4 * * *",
                "2026-02-24T09:50:00Z",
                "2026-02-24T13:00:00Z",
            ),
            (
                "5/20 * * * *",
                "2026-02-24T10:46:00Z",
                "2026-02-24T11:05:00Z",
            ),
            // 2026-02-27 is a Friday.
            (
                "0 9 * * mon-fri",
                "2026-02-27T10:00:00Z",
                "2026-03-02T09:00:00Z",
            ),
            ("0 0 * * 0", "1969-12-31T12:00:00Z", "1970-01-04T00:00:00Z"),
        ];
        for (expr, from, expected) in cases {
            assert_eq!(
                next(expr, from).as_deref(),
                Some(expected),
                "{expr} after {from}"
            );
        }
    }

    #[test]
    fn cron_skips_months_without_the_day() {
        // The 31st skips February and the 30-day months.
        for (from, expected) in [
            ("2026-01-31T00:00:00Z", "2026-03-31T00:00:00Z"),
            ("2026-03-31T00:00:00Z", "2026-05-31T00:00:00Z"),
            ("2026-05-31T00:00:00Z", "2026-07-31T00:00:00Z"),
            ("2026-07-31T00:00:00Z", "2026-08-31T00:00:00Z"),
            ("2026-08-31T00:00:00Z", "2026-10-31T00:00:00Z"),
            ("2026-10-31T00:00:00Z", "2026-12-31T00:00:00Z"),
            ("2026-12-31T00:00:00Z", "2027-01-31T00:00:00Z"),
        ] {
            assert_eq!(
                next("0 0 31 * *", from).as_deref(),
                Some(expected),
                "{from}"
            );
        }
        assert_eq!(
            next("0 0 30 * *", "2026-01-30T00:00:00Z").as_deref(),
            Some("2026-03-30T00:00:00Z")
        );
        assert_eq!(
            period("0 0 31 * *", "2026-05-15T00:00:00Z").as_deref(),
            Some("2026-03-31T00:00:00Z")
        );
    }

    #[test]
    fn cron_handles_leap_years() {
        let feb29 = "0 0 29 2 *";
        assert_eq!(
            next(feb29, "2025-03-01T00:00:00Z").as_deref(),
            Some("2028-02-29T00:00:00Z")
        );
        assert_eq!(
            next(feb29, "2028-02-29T00:00:00Z").as_deref(),
            Some("2032-02-29T00:00:00Z")
        );
        // 2000 is a leap year (divisible by 400).
        assert_eq!(
            next(feb29, "1999-01-01T00:00:00Z").as_deref(),
            Some("2000-02-29T00:00:00Z")
        );
        // 2100 is not: after 2096 the next is 2104, more than 5 years away
        // until early 2099.
        assert_eq!(next(feb29, "2097-01-01T00:00:00Z"), None);
        assert_eq!(
            next(feb29, "2099-03-01T00:00:00Z").as_deref(),
            Some("2104-02-29T00:00:00Z")
        );
        assert_eq!(
            period(feb29, "2028-03-05T12:00:00Z").as_deref(),
            Some("2028-02-29T00:00:00Z")
        );
        assert_eq!(
            next("0 0 28 2 *", "2028-02-28T00:00:00Z").as_deref(),
            Some("2029-02-28T00:00:00Z")
        );
        assert_eq!(
            next("0 0 1 3 *", "2028-02-29T00:00:00Z").as_deref(),
            Some("2028-03-01T00:00:00Z")
        );
        assert_eq!(
            next("0 0 * 2 *", "2028-02-28T00:00:00Z").as_deref(),
            Some("2028-02-29T00:00:00Z")
        );
        assert_eq!(
            next("0 0 * 2 *", "2027-02-28T00:00:00Z").as_deref(),
            Some("2028-02-01T00:00:00Z")
        );
    }

    #[test]
    fn cron_that_never_fires_yields_none() {
        for expr in ["0 0 30 2 *", "0 0 31 2 *", "0 0 31 4,6,9,11 *"] {
            assert_eq!(next(expr, "2026-02-24T00:00:00Z"), None, "{expr}");
            assert_eq!(period(expr, "2026-02-24T00:00:00Z"), None, "{expr}");
        }
    }

    #[test]
    fn day_of_month_or_day_of_week_when_both_are_restricted() {
        // 2026-02-01 is a Sunday; its Fridays are the 6th, 13th, 20th and 27th.
        let either = "0 0 10 * 5";
        assert_eq!(
            next(either, "2026-02-01T00:00:00Z").as_deref(),
            Some("2026-02-06T00:00:00Z")
        );
        assert_eq!(
            next(either, "2026-02-07T00:00:00Z").as_deref(),
            Some("2026-02-10T00:00:00Z")
        );
        assert_eq!(
            next(either, "2026-02-10T00:00:00Z").as_deref(),
            Some("2026-02-13T00:00:00Z")
        );
        // Only the day of week restricted: Fridays only.
        assert_eq!(
            next("0 0 * * 5", "2026-02-07T00:00:00Z").as_deref(),
            Some("2026-02-13T00:00:00Z")
        );
        // Only the day of month restricted: the 10th only.
        assert_eq!(
            next("0 0 10 * *", "2026-02-01T00:00:00Z").as_deref(),
            Some("2026-02-10T00:00:00Z")
        );
        // Vixie: a field starting with `*` is unrestricted, so `*/2` with a
        // weekday means odd days that are Mondays (Feb 2026: the 9th and 23rd)…
        assert_eq!(
            next("0 0 */2 * 1", "2026-02-01T00:00:00Z").as_deref(),
            Some("2026-02-09T00:00:00Z")
        );
        assert_eq!(
            next("0 0 */2 * 1", "2026-02-09T00:00:00Z").as_deref(),
            Some("2026-02-23T00:00:00Z")
        );
        // …while `1-31/2` is restricted: odd days or Mondays.
        assert_eq!(
            next("0 0 1-31/2 * 1", "2026-02-01T12:00:00Z").as_deref(),
            Some("2026-02-02T00:00:00Z")
        );
        assert_eq!(
            next("0 0 1-31/2 * 1", "2026-02-02T00:00:00Z").as_deref(),
            Some("2026-02-03T00:00:00Z")
        );
        // Friday the 13th is written with both, and fires on every 13th and Friday.
        assert_eq!(
            next("0 0 13 * fri", "2026-03-06T00:00:00Z").as_deref(),
            Some("2026-03-13T00:00:00Z")
        );
    }

    #[test]
    fn day_of_week_seven_and_names_mean_the_same_days() {
        // 2026-03-01 is a Sunday.
        for expr in ["0 0 * * 7", "0 0 * * 0", "0 0 * * sun", "0 0 * * SUN"] {
            assert_eq!(
                next(expr, "2026-02-24T10:00:00Z").as_deref(),
                Some("2026-03-01T00:00:00Z"),
                "{expr}"
            );
        }
        assert_eq!(
            next("0 0 * * 5-7", "2026-02-28T00:00:00Z").as_deref(),
            Some("2026-03-01T00:00:00Z")
        );
        assert_eq!(
            next("0 0 * * 5-7", "2026-03-01T00:00:00Z").as_deref(),
            Some("2026-03-06T00:00:00Z")
        );
    }

    #[test]
    fn cron_current_period_is_the_latest_firing_at_or_before() {
        let daily = "0 3 * * *";
        assert_eq!(
            period(daily, "2026-02-24T02:59:59Z").as_deref(),
            Some("2026-02-23T03:00:00Z")
        );
        assert_eq!(
            period(daily, "2026-02-24T03:00:00Z").as_deref(),
            Some("2026-02-24T03:00:00Z")
        );
        assert_eq!(
            period(daily, "2026-02-24T03:00:00.000001Z").as_deref(),
            Some("2026-02-24T03:00:00Z")
        );
        assert_eq!(
            period("*/15 * * * *", "2026-01-01T00:14:59Z").as_deref(),
            Some("2026-01-01T00:00:00Z")
        );
        assert_eq!(
            period("0 0 1 1 *", "2026-01-01T00:00:00Z").as_deref(),
            Some("2026-01-01T00:00:00Z")
        );
        assert_eq!(
            period("59 23 31 12 *", "2026-12-31T23:58:59Z").as_deref(),
            Some("2025-12-31T23:59:00Z")
        );
        assert_eq!(
            period("0 9 * * mon-fri", "2026-03-01T12:00:00Z").as_deref(),
            Some("2026-02-27T09:00:00Z")
        );
    }

    #[test]
    fn extreme_instants_do_not_panic() {
        let schedules = [
            "every 1s",
            "every 7d",
            "* * * * *",
            "59 23 31 12 *",
            "0 0 29 2 *",
            "0 0 30 2 *",
        ];
        for expr in schedules {
            let s = schedule(expr);
            for micros in [i64::MIN, i64::MIN + 1, -1, 0, 1, i64::MAX - 1, i64::MAX] {
                let t = Timestamp::from_micros(micros);
                if let Some(n) = s.next_after(t) {
                    assert!(n > t);
                }
                if let Some(p) = s.current_period(t) {
                    assert!(p <= t);
                }
            }
        }
    }

    /// Whether the cron expression fires on the day starting at `minute`
    /// (counted from the epoch), decided independently of the search code:
    /// through [`Timestamp::date`] and Sakamoto's day-of-week formula.
    fn day_matches(spec: &CronSpec, minute: i64) -> bool {
        const OFFSETS: [i64; 12] = [0, 3, 2, 5, 0, 3, 5, 1, 4, 6, 2, 4];
        let date = Timestamp::from_micros(minute * MICROS_PER_MINUTE).date();
        let (year, month, day) = (
            i64::from(date.year()),
            i64::from(date.month()),
            i64::from(date.day()),
        );
        let y = if month < 3 { year - 1 } else { year };
        let dow =
            (y + y / 4 - y / 100 + y / 400 + OFFSETS[usize::try_from(month - 1).unwrap()] + day)
                % 7;
        let by_day = has(spec.days, day);
        let by_weekday = has(spec.weekdays, dow);
        let day_ok = if spec.days_star || spec.weekdays_star {
            by_day && by_weekday
        } else {
            by_day || by_weekday
        };
        has(spec.months, month) && day_ok
    }

    fn time_matches(spec: &CronSpec, minute: i64) -> bool {
        let of_day = minute.rem_euclid(MINUTES_PER_DAY);
        has(spec.hours, of_day / 60) && has(spec.minutes, of_day % 60)
    }

    /// The first firing minute in `from..=to`, scanning minute by minute
    /// (whole days that do not match are stepped over).
    fn scan_forward(spec: &CronSpec, from: i64, to: i64) -> Option<i64> {
        let mut minute = from;
        while minute <= to {
            let day_start = minute - minute.rem_euclid(MINUTES_PER_DAY);
            if !day_matches(spec, day_start) {
                minute = day_start + MINUTES_PER_DAY;
            } else if time_matches(spec, minute) {
                return Some(minute);
            } else {
                minute += 1;
            }
        }
        None
    }

    /// The last firing minute in `to..=from`, scanning backwards.
    fn scan_backward(spec: &CronSpec, from: i64, to: i64) -> Option<i64> {
        let mut minute = from;
        while minute >= to {
            let day_start = minute - minute.rem_euclid(MINUTES_PER_DAY);
            if !day_matches(spec, day_start) {
                minute = day_start - 1;
            } else if time_matches(spec, minute) {
                return Some(minute);
            } else {
                minute -= 1;
            }
        }
        None
    }

    #[test]
    fn cron_search_agrees_with_a_brute_force_scan() {
        const EXPRESSIONS: [&str; 34] = [
            "* * * * *",
            "*/15 * * * *",
            "0 * * * *",
            "30 3 * * *",
            "59 23 * * *",
            "0 0 * * 0",
            "0 0 1 * *",
            "0 0 1 1 *",
            "59 23 31 12 *",
            "0 0 29 2 *",
            "0 0 31 * *",
            "0 0 30 * *",
            "0 0 28-31 * *",
            "0 0 30 2 *",
            "0 0 31 4,6,9,11 *",
            "0 0 13 * 5",
            "0 0 29 2 1",
            "0 12 * * mon-fri",
            "*/7 */5 * * *",
            "5/20 1-22/3 * * *",
            "0 0 */2 * 1",
            "0 0 1-31/2 * 1",
            "0 0 1,15 * 3",
            "15 10 * * 7",
            "0 9-17 * jan,jul sat,sun",
            "1-5,50-55 0,23 * * *",
            "0 0 * 2 *",
            "45 23 * * 6",
            "0 0 1-7 * 1",
            "*/30 * 31 1,3,5 *",
            "0 0 1 */3 *",
            "20 2 10-20/5 jun-aug tue",
            "0 6 * 12 */3",
            "@yearly",
        ];
        const HORIZON: i64 = 400 * MINUTES_PER_DAY;
        let base = at("1965-01-01T00:00:00Z").as_micros();
        let span = u64::try_from(at("2095-01-01T00:00:00Z").as_micros() - base).unwrap();
        let mut rng = Lcg(0x5eed);
        let mut checked = 0;
        for expr in EXPRESSIONS {
            let parsed = schedule(expr);
            let Schedule::Cron(spec) = &parsed else {
                unreachable!()
            };
            for _ in 0..120 {
                let mut micros = base + i64::try_from(rng.below(span)).unwrap();
                match rng.below(4) {
                    0 => {}
                    1 => micros -= micros.rem_euclid(MICROS_PER_MINUTE),
                    2 => micros -= micros.rem_euclid(MINUTES_PER_DAY * MICROS_PER_MINUTE),
                    _ => {
                        micros -= micros.rem_euclid(MINUTES_PER_DAY * MICROS_PER_MINUTE)
                            + i64::try_from(rng.below(3)).unwrap() * MICROS_PER_MINUTE;
                    }
                }
                let t = Timestamp::from_micros(micros);
                let now = micros.div_euclid(MICROS_PER_MINUTE);
                let to_micros = |m: i64| Timestamp::from_micros(m * MICROS_PER_MINUTE);

                let actual = parsed.next_after(t);
                match scan_forward(spec, now + 1, now + HORIZON) {
                    Some(m) => assert_eq!(actual, Some(to_micros(m)), "{expr} after {t}"),
                    None => assert!(
                        actual.is_none_or(|a| a > to_micros(now + HORIZON)),
                        "{expr} after {t}: {actual:?}"
                    ),
                }

                let actual = parsed.current_period(t);
                match scan_backward(spec, now, now - HORIZON) {
                    Some(m) => assert_eq!(actual, Some(to_micros(m)), "{expr} at {t}"),
                    None => assert!(
                        actual.is_none_or(|a| a < to_micros(now - HORIZON)),
                        "{expr} at {t}: {actual:?}"
                    ),
                }
                checked += 1;
            }
        }
        assert_eq!(checked, EXPRESSIONS.len() * 120);
    }

    #[test]
    fn rare_schedules_are_found_without_scanning_minutes() {
        // A coarse guard: a minute-by-minute scan of five years takes
        // milliseconds per call even in release builds; skipping months and
        // days takes microseconds. 2 000 searches must stay far below a second.
        let started = std::time::Instant::now();
        let mut t = at("2026-01-01T00:00:00Z");
        for expr in ["0 0 29 2 *", "0 0 30 2 *", "59 23 31 12 *", "0 0 13 * 5"] {
            let s = schedule(expr);
            for _ in 0..250 {
                std::hint::black_box(s.next_after(t));
                std::hint::black_box(s.current_period(t));
                t = t.plus_seconds(86_399);
            }
        }
        let elapsed = started.elapsed();
        assert!(elapsed < std::time::Duration::from_secs(1), "{elapsed:?}");
    }

    #[test]
    fn serializes_as_the_canonical_string() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Job {
            schedule: Schedule,
        }
        let job: Job = toml::from_str("schedule = \"@DAILY\"").unwrap();
        assert_eq!(job.schedule, schedule("0 0 * * *"));
        assert_eq!(
            serde_json::to_string(&job).unwrap(),
            r#"{"schedule":"0 0 * * *"}"#
        );
        let every: Schedule = serde_json::from_str(r#""every 60 minutes""#).unwrap();
        assert_eq!(serde_json::to_string(&every).unwrap(), r#""every 1h""#);
        let err = serde_json::from_str::<Schedule>(r#""every 2w""#).unwrap_err();
        assert!(err.to_string().contains("unknown unit `w`"), "{err}");
        assert!(serde_json::from_str::<Schedule>("15").is_err());

        let schema = serde_json::to_value(schemars::schema_for!(Schedule)).unwrap();
        assert_eq!(schema["type"], "string");
        assert!(
            schema["description"]
                .as_str()
                .is_some_and(|d| d.contains("every <N><unit>"))
        );
    }

    #[test]
    fn errors_are_std_errors() {
        let err: Box<dyn std::error::Error> = Box::new(Schedule::parse("every 0s").unwrap_err());
        assert_eq!(
            err.to_string(),
            "the count in `every 0s` must be at least 1"
        );
        assert_eq!(
            "nonsense".parse::<Schedule>().unwrap_err(),
            Schedule::parse("NONSENSE").unwrap_err()
        );
    }
}
