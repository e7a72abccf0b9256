//! Periodic clearing (定期清算), the pure part: which period a clearing
//! names and what a person-year's difference is.
//!
//! A clearing names a month (`2024-06`), a quarter (`2024-Q2`) or a year
//! (`2024`). The counters run over a calendar year, and the invoices of a
//! year are decided in canonical order (by `settled_at`, which a service
//! date does not bound), so a clearing recomputes every invoice of its
//! period's year, from scratch: a month's clearing is the year so far as
//! known now. The store compares each person-year's recomputed total with
//! what was already granted ([`Difference::between`]).

use std::fmt;

use crate::money::Fen;
use crate::time::Date;

/// The period a clearing is run for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Period {
    year: i32,
    span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Span {
    Year,
    Quarter(u8),
    Month(u8),
}

/// A period that does not parse, with what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeriodError(pub String);

impl fmt::Display for PeriodError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl std::error::Error for PeriodError {}

impl Period {
    /// Parses `YYYY`, `YYYY-MM` or `YYYY-Qn`.
    pub fn parse(text: &str) -> Result<Period, PeriodError> {
        let bad = |why: &str| {
            PeriodError(format!(
                "{text:?} is not a period: {why} (write 2024, 2024-06 or 2024-Q2)"
            ))
        };
        let (year_text, rest) = match text.split_once('-') {
            Some((year, rest)) => (year, Some(rest)),
            None => (text, None),
        };
        if year_text.len() != 4 || !year_text.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(bad("the year must be four digits"));
        }
        let year: i32 = year_text
            .parse()
            .map_err(|_| bad("the year must be four digits"))?;
        if year < 1900 {
            return Err(bad("the year is before 1900"));
        }
        let span = match rest {
            None => Span::Year,
            Some(quarter) if quarter.starts_with(['Q', 'q']) => match &quarter[1..] {
                "1" => Span::Quarter(1),
                "2" => Span::Quarter(2),
                "3" => Span::Quarter(3),
                "4" => Span::Quarter(4),
                _ => return Err(bad("a quarter is Q1 to Q4")),
            },
            Some(month) => {
                if month.len() != 2 || !month.bytes().all(|byte| byte.is_ascii_digit()) {
                    return Err(bad("the month must be two digits"));
                }
                match month.parse::<u8>() {
                    Ok(month @ 1..=12) => Span::Month(month),
                    _ => return Err(bad("a month is 01 to 12")),
                }
            }
        };
        Ok(Period { year, span })
    }

    /// The month of `date`.
    pub fn month_of(date: Date) -> Period {
        Period {
            year: date.year(),
            span: Span::Month(date.month() as u8),
        }
    }

    /// The calendar year whose invoices the clearing recomputes.
    pub fn year(&self) -> i32 {
        self.year
    }

    /// The first day of the period.
    pub fn first_day(&self) -> Date {
        let month = match self.span {
            Span::Year => 1,
            Span::Quarter(quarter) => u32::from(quarter) * 3 - 2,
            Span::Month(month) => u32::from(month),
        };
        Date::from_ymd(self.year, month, 1).expect("a period's first day is a date")
    }

    /// The last day of the period.
    pub fn last_day(&self) -> Date {
        let last_month = match self.span {
            Span::Year => 12,
            Span::Quarter(quarter) => u32::from(quarter) * 3,
            Span::Month(month) => u32::from(month),
        };
        // The first of the next month, less a day; December ends on the 31st
        // (so that the year 9999 has a last day too).
        let last = match last_month {
            12 => Date::from_ymd(self.year, 12, 31),
            month => Date::from_ymd(self.year, month + 1, 1).and_then(|date| date.add_days(-1)),
        };
        last.expect("a period's last day is a date")
    }

    /// The period before this one, of the same kind.
    pub fn previous(&self) -> Period {
        let (year, span) = match self.span {
            Span::Year => (self.year - 1, Span::Year),
            Span::Quarter(1) => (self.year - 1, Span::Quarter(4)),
            Span::Quarter(quarter) => (self.year, Span::Quarter(quarter - 1)),
            Span::Month(1) => (self.year - 1, Span::Month(12)),
            Span::Month(month) => (self.year, Span::Month(month - 1)),
        };
        Period { year, span }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.span {
            Span::Year => write!(formatter, "{:04}", self.year),
            Span::Quarter(quarter) => write!(formatter, "{:04}-Q{quarter}", self.year),
            Span::Month(month) => write!(formatter, "{:04}-{month:02}", self.year),
        }
    }
}

/// What a clearing finds for one person-year: what was granted so far
/// (decisions not reversed, plus the lines of earlier clearings) and what
/// the recomputation grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Difference {
    pub granted: Fen,
    pub recomputed: Fen,
}

/// What a difference asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    /// 补发: the recomputation grants more; the difference is to pay.
    TopUp(Fen),
    /// 追回: the recomputation grants less; the difference is to review.
    Recovery(Fen),
}

impl Difference {
    pub fn between(granted: Fen, recomputed: Fen) -> Difference {
        Difference { granted, recomputed }
    }

    /// `recomputed − granted`: positive to pay, negative to recover.
    pub fn signed(&self) -> Fen {
        Fen::from_fen(self.recomputed.fen() - self.granted.fen())
    }

    /// The line it makes, if the totals differ.
    pub fn line(&self) -> Option<Line> {
        let signed = self.signed().fen();
        match signed.cmp(&0) {
            std::cmp::Ordering::Greater => Some(Line::TopUp(Fen::from_fen(signed))),
            std::cmp::Ordering::Less => Some(Line::Recovery(Fen::from_fen(-signed))),
            std::cmp::Ordering::Equal => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_quarters_and_years_parse_and_print_back() {
        for text in ["2024", "2024-06", "2024-Q2", "2023-12", "2024-Q4"] {
            assert_eq!(Period::parse(text).unwrap().to_string(), text);
        }
        assert_eq!(Period::parse("2024-q3").unwrap().to_string(), "2024-Q3");
    }

    #[test]
    fn a_period_knows_its_first_and_last_day_and_its_year() {
        let june = Period::parse("2024-06").unwrap();
        assert_eq!(
            (june.first_day().to_string(), june.last_day().to_string()),
            ("2024-06-01".into(), "2024-06-30".into())
        );
        let february = Period::parse("2024-02").unwrap();
        assert_eq!(february.last_day().to_string(), "2024-02-29");
        let q4 = Period::parse("2023-Q4").unwrap();
        assert_eq!(
            (q4.first_day().to_string(), q4.last_day().to_string()),
            ("2023-10-01".into(), "2023-12-31".into())
        );
        let year = Period::parse("2025").unwrap();
        assert_eq!(
            (year.first_day().to_string(), year.last_day().to_string()),
            ("2025-01-01".into(), "2025-12-31".into())
        );
        assert_eq!(q4.year(), 2023);
        assert_eq!(
            Period::parse("9999").unwrap().last_day().to_string(),
            "9999-12-31"
        );
    }

    #[test]
    fn the_previous_period_crosses_years() {
        assert_eq!(
            Period::parse("2024-01").unwrap().previous().to_string(),
            "2023-12"
        );
        assert_eq!(
            Period::parse("2024-Q1").unwrap().previous().to_string(),
            "2023-Q4"
        );
        assert_eq!(Period::parse("2024").unwrap().previous().to_string(), "2023");
        assert_eq!(
            Period::month_of(Date::parse("2024-03-15").unwrap()).to_string(),
            "2024-03"
        );
    }

    #[test]
    fn bad_periods_say_what_is_wrong() {
        for (text, why) in [
            ("24-06", "four digits"),
            ("2024-13", "01 to 12"),
            ("2024-6", "two digits"),
            ("2024-Q5", "Q1 to Q4"),
            ("2024-00", "01 to 12"),
            ("", "four digits"),
            ("1800", "before 1900"),
        ] {
            let error = Period::parse(text).unwrap_err();
            assert!(error.0.contains(why), "{text}: {error}");
        }
    }

    #[test]
    fn a_difference_is_a_top_up_a_recovery_or_nothing() {
        let fen = Fen::from_fen;
        assert_eq!(
            Difference::between(fen(100), fen(150)).line(),
            Some(Line::TopUp(fen(50)))
        );
        assert_eq!(
            Difference::between(fen(150), fen(100)).line(),
            Some(Line::Recovery(fen(50)))
        );
        assert_eq!(Difference::between(fen(150), fen(100)).signed(), fen(-50));
        assert_eq!(Difference::between(fen(7), fen(7)).line(), None);
    }
}
