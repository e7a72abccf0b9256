//! Calendar dates and RFC 3339 timestamps with offsets, compared as instants
//! and exactly (a fraction of a second of any length).

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

use thiserror::Error;

/// A day of the proleptic Gregorian calendar, years 0000 to 9999.
/// Held as days since 1970-01-01.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date(i32);

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DateError {
    #[error("is empty; expected a date as YYYY-MM-DD")]
    Empty,
    #[error("{0:?} is not a date as YYYY-MM-DD")]
    Malformed(String),
    #[error("{0:?} is not a day of the calendar")]
    NoSuchDay(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TimestampError {
    #[error("is empty; expected a timestamp such as 2024-03-05T10:22:31+08:00")]
    Empty,
    #[error("{0:?} is not an RFC 3339 timestamp with an offset, such as 2024-03-05T10:22:31+08:00")]
    Malformed(String),
    #[error("{0:?} is not a day of the calendar")]
    NoSuchDay(String),
    #[error("{0:?} has a time of day out of range (hours 00-23, minutes and seconds 00-59)")]
    TimeOutOfRange(String),
    #[error("{0:?} has an offset out of range (at most ±23:59)")]
    OffsetOutOfRange(String),
}

fn is_leap_year(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days from 1970-01-01 to the given civil date (H. Hinnant's algorithm).
fn days_from_civil(year: i32, month: u32, day: u32) -> i32 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = month as i32;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day as i32 - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn civil_from_days(days: i32) -> (i32, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i32::from(month <= 2);
    (year, month, day)
}

fn digits<const N: usize>(text: &[u8]) -> Option<u32> {
    if text.len() != N {
        return None;
    }
    let mut value = 0u32;
    for &byte in text {
        if !byte.is_ascii_digit() {
            return None;
        }
        value = value * 10 + u32::from(byte - b'0');
    }
    Some(value)
}

/// Why the first ten bytes are not a date: malformed or not a calendar day.
enum DateProblem {
    Malformed,
    NoSuchDay,
}

fn parse_date_bytes(text: &[u8]) -> Result<Date, DateProblem> {
    if text.len() != 10 || text[4] != b'-' || text[7] != b'-' {
        return Err(DateProblem::Malformed);
    }
    let (Some(year), Some(month), Some(day)) = (
        digits::<4>(&text[..4]),
        digits::<2>(&text[5..7]),
        digits::<2>(&text[8..10]),
    ) else {
        return Err(DateProblem::Malformed);
    };
    Date::from_ymd(year as i32, month, day).ok_or(DateProblem::NoSuchDay)
}

impl Date {
    /// A date from year, month and day; `None` when it is not a day of the
    /// calendar or the year is outside 0000..=9999.
    pub fn from_ymd(year: i32, month: u32, day: u32) -> Option<Date> {
        if !(0..=9999).contains(&year) || !(1..=12).contains(&month) {
            return None;
        }
        if day == 0 || day > days_in_month(year, month) {
            return None;
        }
        Some(Date(days_from_civil(year, month, day)))
    }

    /// Parses `YYYY-MM-DD`.
    pub fn parse(text: &str) -> Result<Date, DateError> {
        if text.is_empty() {
            return Err(DateError::Empty);
        }
        parse_date_bytes(text.as_bytes()).map_err(|problem| match problem {
            DateProblem::Malformed => DateError::Malformed(text.to_owned()),
            DateProblem::NoSuchDay => DateError::NoSuchDay(text.to_owned()),
        })
    }

    pub fn days_since_epoch(self) -> i32 {
        self.0
    }

    pub fn from_days_since_epoch(days: i32) -> Option<Date> {
        let (year, _, _) = civil_from_days(days);
        (0..=9999).contains(&year).then_some(Date(days))
    }

    pub fn year(self) -> i32 {
        civil_from_days(self.0).0
    }

    pub fn month(self) -> u32 {
        civil_from_days(self.0).1
    }

    pub fn day(self) -> u32 {
        civil_from_days(self.0).2
    }

    /// The date `days` later (or earlier when negative), if still in range.
    pub fn add_days(self, days: i32) -> Option<Date> {
        Date::from_days_since_epoch(self.0.checked_add(days)?)
    }

    /// Writes `YYYY-MM-DD` into the first ten bytes of `out`.
    pub fn write_iso(self, out: &mut [u8; 10]) {
        let (year, month, day) = civil_from_days(self.0);
        let year = year as u32;
        out[0] = b'0' + (year / 1000 % 10) as u8;
        out[1] = b'0' + (year / 100 % 10) as u8;
        out[2] = b'0' + (year / 10 % 10) as u8;
        out[3] = b'0' + (year % 10) as u8;
        out[4] = b'-';
        out[5] = b'0' + (month / 10) as u8;
        out[6] = b'0' + (month % 10) as u8;
        out[7] = b'-';
        out[8] = b'0' + (day / 10) as u8;
        out[9] = b'0' + (day % 10) as u8;
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = [0u8; 10];
        self.write_iso(&mut out);
        f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Date({self})")
    }
}

/// The number of fractional digits held in [`Timestamp::attoseconds`].
const ATTO_DIGITS: usize = 18;

/// An RFC 3339 timestamp with an offset.
///
/// Ordered and compared as an instant: `10:00:00+08:00` equals
/// `02:00:00Z`, and `.5` equals `.500`. The fraction is exact whatever its
/// length: the first 18 digits are held as attoseconds, any further digits
/// (trailing zeros removed) as text, which compares exactly as a number
/// once trailing zeros are gone. The offset is kept for display.
#[derive(Clone)]
pub struct Timestamp {
    unix_seconds: i64,
    attoseconds: u64,
    /// Boxed twice so that the rare long fraction costs one pointer, not
    /// two, in every timestamp (the batch engine holds tens of millions).
    #[allow(clippy::box_collection)]
    finer_digits: Option<Box<String>>,
    offset_minutes: i16,
}

impl Timestamp {
    /// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`; `T` and `Z` in
    /// either case.
    pub fn parse(text: &str) -> Result<Timestamp, TimestampError> {
        Self::parse_bytes(text.as_bytes()).map_err(|problem| problem.with_text(text))
    }

    /// The same as [`Timestamp::parse`] over bytes, without allocating on
    /// success unless the fraction is longer than 18 digits.
    pub fn parse_bytes(text: &[u8]) -> Result<Timestamp, TimestampErrorKind> {
        use TimestampErrorKind as Kind;
        if text.is_empty() {
            return Err(Kind::Empty);
        }
        if text.len() < 20 {
            return Err(Kind::Malformed);
        }
        let date = match parse_date_bytes(&text[..10]) {
            Ok(date) => date,
            Err(DateProblem::Malformed) => return Err(Kind::Malformed),
            Err(DateProblem::NoSuchDay) => return Err(Kind::NoSuchDay),
        };
        if !matches!(text[10], b'T' | b't') || text[13] != b':' || text[16] != b':' {
            return Err(Kind::Malformed);
        }
        let (Some(hour), Some(minute), Some(second)) = (
            digits::<2>(&text[11..13]),
            digits::<2>(&text[14..16]),
            digits::<2>(&text[17..19]),
        ) else {
            return Err(Kind::Malformed);
        };
        let mut rest = &text[19..];
        let mut attoseconds = 0u64;
        let mut finer_digits = None;
        if rest.first() == Some(&b'.') {
            let count = rest[1..].iter().take_while(|b| b.is_ascii_digit()).count();
            if count == 0 {
                return Err(Kind::Malformed);
            }
            let fraction = &rest[1..1 + count];
            for place in 0..ATTO_DIGITS {
                let digit = fraction.get(place).map_or(0, |&b| u64::from(b - b'0'));
                attoseconds = attoseconds * 10 + digit;
            }
            if fraction.len() > ATTO_DIGITS {
                let finer = &fraction[ATTO_DIGITS..];
                let significant = finer.len() - finer.iter().rev().take_while(|&&b| b == b'0').count();
                if significant > 0 {
                    let finer = std::str::from_utf8(&finer[..significant]).map_err(|_| Kind::Malformed)?;
                    finer_digits = Some(Box::new(finer.to_owned()));
                }
            }
            rest = &rest[1 + count..];
        }
        let offset_minutes: i32 = match rest {
            [b'Z' | b'z'] => 0,
            [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
                let (Some(hours), Some(minutes)) = (digits::<2>(&[*h1, *h2]), digits::<2>(&[*m1, *m2]))
                else {
                    return Err(Kind::Malformed);
                };
                if hours > 23 || minutes > 59 {
                    return Err(Kind::OffsetOutOfRange);
                }
                let magnitude = (hours * 60 + minutes) as i32;
                if *sign == b'-' {
                    -magnitude
                } else {
                    magnitude
                }
            }
            _ => return Err(Kind::Malformed),
        };
        if hour > 23 || minute > 59 || second > 59 {
            return Err(Kind::TimeOutOfRange);
        }
        let local_seconds =
            i64::from(date.days_since_epoch()) * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
        Ok(Timestamp {
            unix_seconds: local_seconds - i64::from(offset_minutes) * 60,
            attoseconds,
            finer_digits,
            offset_minutes: offset_minutes as i16,
        })
    }

    /// Whole seconds since 1970-01-01T00:00:00Z.
    pub fn unix_seconds(&self) -> i64 {
        self.unix_seconds
    }

    /// The first 18 digits of the fraction of a second.
    pub fn attoseconds(&self) -> u64 {
        self.attoseconds
    }

    /// Fraction digits beyond the 18th, trailing zeros removed; `None` when
    /// there are none (nearly always).
    pub fn finer_digits(&self) -> Option<&str> {
        self.finer_digits.as_deref().map(String::as_str)
    }

    pub fn offset_minutes(&self) -> i16 {
        self.offset_minutes
    }

    /// The local calendar date at the timestamp's own offset.
    pub fn local_date(&self) -> Date {
        let local = self.unix_seconds + i64::from(self.offset_minutes) * 60;
        Date(local.div_euclid(86_400) as i32)
    }
}

impl PartialEq for Timestamp {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Timestamp {}

impl PartialOrd for Timestamp {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// As instants; the offset does not take part.
impl Ord for Timestamp {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.unix_seconds, self.attoseconds)
            .cmp(&(other.unix_seconds, other.attoseconds))
            .then_with(|| self.finer_digits.cmp(&other.finer_digits))
    }
}

impl Hash for Timestamp {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.unix_seconds.hash(state);
        self.attoseconds.hash(state);
        self.finer_digits.hash(state);
    }
}

/// RFC 3339 at the timestamp's own offset, the fraction without trailing
/// zeros: `2024-03-05T10:22:31.5+08:00`.
impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let local = self.unix_seconds + i64::from(self.offset_minutes) * 60;
        let date = Date(local.div_euclid(86_400) as i32);
        let second_of_day = local.rem_euclid(86_400);
        write!(
            f,
            "{date}T{:02}:{:02}:{:02}",
            second_of_day / 3600,
            second_of_day / 60 % 60,
            second_of_day % 60
        )?;
        if self.attoseconds != 0 || self.finer_digits.is_some() {
            let fraction = format!("{:018}", self.attoseconds);
            match &self.finer_digits {
                Some(finer) => write!(f, ".{fraction}{finer}")?,
                None => write!(f, ".{}", fraction.trim_end_matches('0'))?,
            }
        }
        if self.offset_minutes == 0 {
            f.write_str("Z")
        } else {
            let sign = if self.offset_minutes < 0 { '-' } else { '+' };
            let magnitude = self.offset_minutes.unsigned_abs();
            write!(f, "{sign}{:02}:{:02}", magnitude / 60, magnitude % 60)
        }
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({self})")
    }
}

/// The kind of a timestamp parse error, without the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampErrorKind {
    Empty,
    Malformed,
    NoSuchDay,
    TimeOutOfRange,
    OffsetOutOfRange,
}

impl TimestampErrorKind {
    pub fn with_text(self, text: &str) -> TimestampError {
        let text = text.to_owned();
        match self {
            TimestampErrorKind::Empty => TimestampError::Empty,
            TimestampErrorKind::Malformed => TimestampError::Malformed(text),
            TimestampErrorKind::NoSuchDay => TimestampError::NoSuchDay(text),
            TimestampErrorKind::TimeOutOfRange => TimestampError::TimeOutOfRange(text),
            TimestampErrorKind::OffsetOutOfRange => TimestampError::OffsetOutOfRange(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        Timestamp::parse(text).unwrap()
    }

    #[test]
    fn dates_parse_and_round_trip_through_the_calendar() {
        for text in [
            "1970-01-01",
            "2024-02-29",
            "2000-02-29",
            "1900-03-01",
            "0000-01-01",
            "9999-12-31",
        ] {
            let date = Date::parse(text).unwrap();
            assert_eq!(date.to_string(), text);
        }
        assert_eq!(Date::parse("1970-01-02").unwrap().days_since_epoch(), 1);
        let date = Date::parse("2024-03-05").unwrap();
        assert_eq!((date.year(), date.month(), date.day()), (2024, 3, 5));
        assert!(Date::parse("2024-03-05").unwrap() < Date::parse("2024-03-06").unwrap());
    }

    #[test]
    fn every_day_of_four_centuries_round_trips() {
        let start = Date::parse("1900-01-01").unwrap().days_since_epoch();
        let end = Date::parse("2300-01-01").unwrap().days_since_epoch();
        for days in start..end {
            let date = Date::from_days_since_epoch(days).unwrap();
            assert_eq!(Date::from_ymd(date.year(), date.month(), date.day()), Some(date));
        }
    }

    #[test]
    fn impossible_or_malformed_dates_are_refused() {
        for bad in [
            "2023-02-29",
            "1900-02-29",
            "2024-04-31",
            "2024-13-01",
            "2024-00-10",
            "2024-01-00",
        ] {
            assert!(matches!(Date::parse(bad), Err(DateError::NoSuchDay(_))), "{bad}");
        }
        for bad in [
            "2024-1-01",
            "2024/01/01",
            "20240101",
            "2024-01-01 ",
            "24-01-01",
            "2024-01-0a",
        ] {
            assert!(matches!(Date::parse(bad), Err(DateError::Malformed(_))), "{bad}");
        }
        assert_eq!(Date::parse(""), Err(DateError::Empty));
    }

    #[test]
    fn timestamps_with_different_offsets_compare_as_instants() {
        assert_eq!(ts("2024-03-05T10:00:00+08:00"), ts("2024-03-05T02:00:00Z"));
        assert_eq!(ts("2024-03-05T10:00:00+08:00"), ts("2024-03-04T21:00:00-05:00"));
        // Later on the wall clock, earlier as an instant.
        assert!(
            ts("2024-03-05T09:00:00+00:00")
                < ts("2024-03-05T10:00:00+08:00")
                    .clone()
                    .max(ts("2024-03-05T09:00:01Z"))
        );
        assert!(ts("2024-03-05T10:00:00+08:00") < ts("2024-03-05T09:00:00+00:00"));
        assert_eq!(ts("2024-03-05t02:00:00z"), ts("2024-03-05T02:00:00Z"));
    }

    #[test]
    fn fractions_of_any_length_compare_exactly() {
        assert_eq!(
            ts("2024-03-05T10:00:00.5+08:00"),
            ts("2024-03-05T10:00:00.500000+08:00")
        );
        assert!(ts("2024-03-05T10:00:00.49999+08:00") < ts("2024-03-05T10:00:00.5+08:00"));
        assert!(ts("2024-03-05T10:00:00+08:00") < ts("2024-03-05T10:00:00.000000000000000000001+08:00"));
        assert!(
            ts("2024-03-05T10:00:00.0000000000000000001+08:00")
                < ts("2024-03-05T10:00:00.00000000000000000010000001+08:00")
        );
        assert_eq!(
            ts("2024-03-05T10:00:00.1234567890123456789+08:00"),
            ts("2024-03-05T10:00:00.12345678901234567890000+08:00")
        );
        assert!(
            ts("2024-03-05T10:00:00.12345678901234567890001+08:00")
                > ts("2024-03-05T10:00:00.1234567890123456789+08:00")
        );
    }

    #[test]
    fn timestamps_display_at_their_own_offset() {
        assert_eq!(
            ts("2024-03-05T10:22:31+08:00").to_string(),
            "2024-03-05T10:22:31+08:00"
        );
        assert_eq!(
            ts("2024-03-05t10:22:31.250z").to_string(),
            "2024-03-05T10:22:31.25Z"
        );
        assert_eq!(
            ts("2024-01-01T00:30:00-05:30").to_string(),
            "2024-01-01T00:30:00-05:30"
        );
        assert_eq!(
            ts("2024-01-01T00:30:00+08:00").local_date(),
            Date::parse("2024-01-01").unwrap()
        );
    }

    #[test]
    fn malformed_timestamps_are_refused() {
        for bad in [
            "2024-03-05T10:22:31",
            "2024-03-05 10:22:31+08:00",
            "2024-03-05T10:22+08:00",
            "2024-03-05T10:22:31.+08:00",
            "2024-03-05T10:22:31+0800",
            "2024-03-05T10:22:31+08",
            "2024-03-05T10:22:31+08:00 ",
            "2024-03-05T1:22:31+08:00",
        ] {
            assert!(
                matches!(Timestamp::parse(bad), Err(TimestampError::Malformed(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            Timestamp::parse("2024-03-05T10:22:60+08:00"),
            Err(TimestampError::TimeOutOfRange(_))
        ));
        assert!(matches!(
            Timestamp::parse("2024-03-05T24:00:00+08:00"),
            Err(TimestampError::TimeOutOfRange(_))
        ));
        assert!(matches!(
            Timestamp::parse("2024-02-30T10:00:00+08:00"),
            Err(TimestampError::NoSuchDay(_))
        ));
        assert!(matches!(
            Timestamp::parse("2024-03-05T10:00:00+24:00"),
            Err(TimestampError::OffsetOutOfRange(_))
        ));
        assert_eq!(Timestamp::parse(""), Err(TimestampError::Empty));
    }
}
