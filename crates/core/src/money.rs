//! Money in integer fen and ratios in integer basis points. No float ever
//! touches either.

use std::fmt;

use thiserror::Error;

/// The largest number of digits allowed before the decimal point of a yuan
/// amount (`formats.md`: at most 12).
pub const MAX_YUAN_INTEGER_DIGITS: usize = 12;

/// An amount of money in fen (1/100 yuan). Signed, so that differences
/// (top-ups and recoveries) can be expressed; amounts parsed from files are
/// never negative.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fen(i64);

/// Why a yuan string was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MoneyError {
    #[error("is empty; expected an amount in yuan such as 12.50")]
    Empty,
    #[error("{0:?} is not an amount in yuan: use digits, an optional point and at most two decimals, no sign (e.g. 1234.56)")]
    Malformed(String),
    #[error("{0:?} has more than two decimals; amounts are exact to the fen")]
    TooManyDecimals(String),
    #[error("{0:?} has more than 12 digits before the point")]
    TooLarge(String),
}

/// Why a ratio string was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RatioError {
    #[error("is empty; expected a ratio between 0 and 1 such as 0.7")]
    Empty,
    #[error("{0:?} is not a ratio: use a decimal between 0 and 1 such as 0.7")]
    Malformed(String),
    #[error("{0:?} has more than 4 decimals")]
    TooManyDecimals(String),
    #[error("{0:?} is outside 0..1")]
    OutOfRange(String),
}

/// Arithmetic that would leave the range of `i64` fen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("money arithmetic overflowed")]
pub struct Overflow;

impl Fen {
    pub const ZERO: Fen = Fen(0);

    pub const fn from_fen(fen: i64) -> Fen {
        Fen(fen)
    }

    pub const fn fen(self) -> i64 {
        self.0
    }

    /// Parses a yuan string exactly: digits, optionally a point and one or
    /// two decimals; at most 12 digits before the point; no sign.
    pub fn parse_yuan(text: &str) -> Result<Fen, MoneyError> {
        Self::parse_yuan_bytes(text.as_bytes()).map_err(|kind| kind.with_text(text))
    }

    /// The same as [`Fen::parse_yuan`] over bytes, without allocating on
    /// success (the hot path of the file readers).
    pub fn parse_yuan_bytes(text: &[u8]) -> Result<Fen, MoneyErrorKind> {
        if text.is_empty() {
            return Err(MoneyErrorKind::Empty);
        }
        let (integer, fraction) = match memchr_point(text) {
            Some(point) => (&text[..point], Some(&text[point + 1..])),
            None => (text, None),
        };
        if integer.is_empty() || !integer.iter().all(u8::is_ascii_digit) {
            return Err(MoneyErrorKind::Malformed);
        }
        if integer.len() > MAX_YUAN_INTEGER_DIGITS {
            return Err(MoneyErrorKind::TooLarge);
        }
        let mut fen: i64 = 0;
        for &digit in integer {
            fen = fen * 10 + i64::from(digit - b'0');
        }
        fen *= 100;
        if let Some(fraction) = fraction {
            if fraction.is_empty() || !fraction.iter().all(u8::is_ascii_digit) {
                return Err(MoneyErrorKind::Malformed);
            }
            if fraction.len() > 2 {
                return Err(MoneyErrorKind::TooManyDecimals);
            }
            let mut cents = i64::from(fraction[0] - b'0') * 10;
            if fraction.len() == 2 {
                cents += i64::from(fraction[1] - b'0');
            }
            fen += cents;
        }
        Ok(Fen(fen))
    }

    pub fn checked_add(self, other: Fen) -> Result<Fen, Overflow> {
        self.0.checked_add(other.0).map(Fen).ok_or(Overflow)
    }

    pub fn checked_sub(self, other: Fen) -> Result<Fen, Overflow> {
        self.0.checked_sub(other.0).map(Fen).ok_or(Overflow)
    }

    /// `self × ratio`, rounded half up to the fen:
    /// `(x × bp + 5000) div 10000` (`calculation.md`, step 5). Exact for
    /// every non-negative amount: the product is taken in 128 bits.
    pub fn times_ratio_round_half_up(self, ratio: BasisPoints) -> Fen {
        let product = i128::from(self.0) * i128::from(ratio.0) + 5000;
        let rounded = product.div_euclid(10_000);
        // |self| × 1 bounds the result, so it always fits.
        Fen(rounded as i64)
    }

    /// The smaller of two amounts.
    pub fn min(self, other: Fen) -> Fen {
        Ord::min(self, other)
    }

    /// `max(0, self)`.
    pub fn clamp_to_zero(self) -> Fen {
        Fen(self.0.max(0))
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    pub fn is_negative(self) -> bool {
        self.0 < 0
    }
}

fn memchr_point(text: &[u8]) -> Option<usize> {
    text.iter().position(|&b| b == b'.')
}

/// The kind of a money parse error, without the offending text (so the hot
/// path allocates nothing); [`MoneyErrorKind::with_text`] makes the full error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoneyErrorKind {
    Empty,
    Malformed,
    TooManyDecimals,
    TooLarge,
}

impl MoneyErrorKind {
    pub fn with_text(self, text: &str) -> MoneyError {
        match self {
            MoneyErrorKind::Empty => MoneyError::Empty,
            MoneyErrorKind::Malformed => MoneyError::Malformed(text.to_owned()),
            MoneyErrorKind::TooManyDecimals => MoneyError::TooManyDecimals(text.to_owned()),
            MoneyErrorKind::TooLarge => MoneyError::TooLarge(text.to_owned()),
        }
    }
}

/// Yuan with exactly two decimals, a leading `-` for negative amounts:
/// `12.50`, `-0.05`.
impl fmt::Display for Fen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let magnitude = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", magnitude / 100, magnitude % 100)
    }
}

/// A ratio in basis points (1/10000), from 0 to 10000 inclusive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BasisPoints(u16);

impl BasisPoints {
    pub const ZERO: BasisPoints = BasisPoints(0);
    pub const ONE: BasisPoints = BasisPoints(10_000);

    /// A ratio from basis points; `None` above 10000.
    pub const fn new(basis_points: u16) -> Option<BasisPoints> {
        if basis_points <= 10_000 {
            Some(BasisPoints(basis_points))
        } else {
            None
        }
    }

    pub const fn basis_points(self) -> u16 {
        self.0
    }

    pub const fn is_zero_ratio(self) -> bool {
        self.0 == 0
    }

    /// Parses a decimal ratio between 0 and 1 with at most 4 decimals:
    /// `0`, `1`, `0.7`, `0.8512`, `1.0000`.
    pub fn parse_ratio(text: &str) -> Result<BasisPoints, RatioError> {
        if text.is_empty() {
            return Err(RatioError::Empty);
        }
        let malformed = || RatioError::Malformed(text.to_owned());
        let (integer, fraction) = match text.split_once('.') {
            Some((integer, fraction)) => (integer, fraction),
            None => (text, ""),
        };
        if integer.is_empty()
            || !integer.bytes().all(|b| b.is_ascii_digit())
            || !fraction.bytes().all(|b| b.is_ascii_digit())
            || (text.contains('.') && fraction.is_empty())
        {
            return Err(malformed());
        }
        if fraction.len() > 4 {
            return Err(RatioError::TooManyDecimals(text.to_owned()));
        }
        let integer = integer.trim_start_matches('0');
        if integer.len() > 1 {
            return Err(RatioError::OutOfRange(text.to_owned()));
        }
        let whole: u32 = integer.parse().unwrap_or(0);
        let mut fraction_bp: u32 = 0;
        for (place, digit) in fraction.bytes().enumerate() {
            fraction_bp += u32::from(digit - b'0') * 10u32.pow(3 - place as u32);
        }
        let total = whole * 10_000 + fraction_bp;
        if total > 10_000 {
            return Err(RatioError::OutOfRange(text.to_owned()));
        }
        Ok(BasisPoints(total as u16))
    }
}

/// As a decimal without trailing zeros: `0.7`, `1`, `0.8512`.
impl fmt::Display for BasisPoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / 10_000;
        let fraction = self.0 % 10_000;
        if fraction == 0 {
            return write!(f, "{whole}");
        }
        let digits = format!("{fraction:04}");
        write!(f, "{whole}.{}", digits.trim_end_matches('0'))
    }
}

impl BasisPoints {
    /// As a percentage for people: `90%`, `87.5%`.
    pub fn percent(self) -> String {
        let whole = self.0 / 100;
        let fraction = self.0 % 100;
        if fraction == 0 {
            format!("{whole}%")
        } else {
            let digits = format!("{fraction:02}");
            format!("{whole}.{}%", digits.trim_end_matches('0'))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuan_strings_parse_exactly_into_fen() {
        assert_eq!(Fen::parse_yuan("0"), Ok(Fen(0)));
        assert_eq!(Fen::parse_yuan("12.5"), Ok(Fen(1250)));
        assert_eq!(Fen::parse_yuan("1234.56"), Ok(Fen(123_456)));
        assert_eq!(Fen::parse_yuan("0.05"), Ok(Fen(5)));
        assert_eq!(Fen::parse_yuan("007.10"), Ok(Fen(710)));
        assert_eq!(Fen::parse_yuan("999999999999.99"), Ok(Fen(99_999_999_999_999)));
    }

    #[test]
    fn malformed_yuan_strings_are_refused_with_their_reason() {
        assert_eq!(Fen::parse_yuan(""), Err(MoneyError::Empty));
        for bad in [
            "-1", "+1", "1.", ".5", "1,000", " 1", "1 ", "1e3", "0x10", "1.2.3", "１",
        ] {
            assert!(
                matches!(Fen::parse_yuan(bad), Err(MoneyError::Malformed(_))),
                "{bad:?} should be malformed"
            );
        }
        assert!(matches!(
            Fen::parse_yuan("1.234"),
            Err(MoneyError::TooManyDecimals(_))
        ));
        assert!(matches!(
            Fen::parse_yuan("1000000000000"),
            Err(MoneyError::TooLarge(_))
        ));
    }

    #[test]
    fn fen_display_has_exactly_two_decimals() {
        assert_eq!(Fen(0).to_string(), "0.00");
        assert_eq!(Fen(1250).to_string(), "12.50");
        assert_eq!(Fen(5).to_string(), "0.05");
        assert_eq!(Fen(-5).to_string(), "-0.05");
        assert_eq!(Fen(-123_456).to_string(), "-1234.56");
    }

    #[test]
    fn half_a_fen_rounds_up() {
        // 0.05 yuan × 0.5 = 2.5 fen → 3 fen.
        let half = BasisPoints::parse_ratio("0.5").unwrap();
        assert_eq!(Fen(5).times_ratio_round_half_up(half), Fen(3));
        // 0.03 yuan × 0.5 = 1.5 fen → 2 fen; 0.01 × 0.5 = 0.5 → 1.
        assert_eq!(Fen(3).times_ratio_round_half_up(half), Fen(2));
        assert_eq!(Fen(1).times_ratio_round_half_up(half), Fen(1));
        // Just below a half rounds down: 1 fen × 0.4999 = 0.4999 → 0.
        let below = BasisPoints::parse_ratio("0.4999").unwrap();
        assert_eq!(Fen(1).times_ratio_round_half_up(below), Fen(0));
        // The largest amount times 1 is itself.
        let max = Fen(99_999_999_999_999);
        assert_eq!(max.times_ratio_round_half_up(BasisPoints::ONE), max);
        assert_eq!(max.times_ratio_round_half_up(BasisPoints::ZERO), Fen(0));
    }

    #[test]
    fn ratios_parse_into_basis_points() {
        assert_eq!(BasisPoints::parse_ratio("0"), Ok(BasisPoints(0)));
        assert_eq!(BasisPoints::parse_ratio("1"), Ok(BasisPoints(10_000)));
        assert_eq!(BasisPoints::parse_ratio("1.0000"), Ok(BasisPoints(10_000)));
        assert_eq!(BasisPoints::parse_ratio("0.7"), Ok(BasisPoints(7000)));
        assert_eq!(BasisPoints::parse_ratio("0.8512"), Ok(BasisPoints(8512)));
        assert_eq!(BasisPoints::parse_ratio("0.0001"), Ok(BasisPoints(1)));
        assert_eq!(BasisPoints::parse_ratio("00.5"), Ok(BasisPoints(5000)));
    }

    #[test]
    fn ratios_outside_zero_to_one_or_too_fine_are_refused() {
        for bad in ["1.0001", "2", "10", "1.5"] {
            assert!(
                matches!(BasisPoints::parse_ratio(bad), Err(RatioError::OutOfRange(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            BasisPoints::parse_ratio("0.12345"),
            Err(RatioError::TooManyDecimals(_))
        ));
        for bad in ["-0.5", ".5", "0.", "0,5", "50%", "abc"] {
            assert!(
                matches!(BasisPoints::parse_ratio(bad), Err(RatioError::Malformed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn ratios_display_as_short_decimals_and_percentages() {
        assert_eq!(BasisPoints(7000).to_string(), "0.7");
        assert_eq!(BasisPoints(10_000).to_string(), "1");
        assert_eq!(BasisPoints(8512).to_string(), "0.8512");
        assert_eq!(BasisPoints(9000).percent(), "90%");
        assert_eq!(BasisPoints(8750).percent(), "87.5%");
    }
}
