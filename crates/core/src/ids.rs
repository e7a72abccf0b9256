//! Identities: the resident ID number (GB 11643-1999) and the invoice number.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

use thiserror::Error;

/// The GB 11643-1999 weights of the first 17 digits.
const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
/// `sum mod 11` indexes this string to give the check character.
const CHECK_CHARACTERS: &[u8; 11] = b"10X98765432";

/// An 18-character resident ID number with a valid check character.
///
/// Held as the 17 leading digits in one integer: the check character follows
/// from them, so the canonical form (upper-case `X`) is rebuilt on display.
/// Compact, `Copy`, and cheap to hash, which the batch engine relies on.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResidentId(u64);

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ResidentIdError {
    #[error("is empty; expected an 18-character resident ID number")]
    Empty,
    #[error("has {0} characters; a resident ID number has 18")]
    WrongLength(usize),
    #[error("must be 17 digits followed by a digit or X")]
    NotDigits,
    #[error("check character is {found:?} but should be {expected:?} (GB 11643)")]
    WrongCheckCharacter { found: char, expected: char },
}

impl ResidentId {
    /// Parses and checks a resident ID number; a lower-case `x` is accepted.
    pub fn parse(text: &str) -> Result<ResidentId, ResidentIdError> {
        Self::parse_bytes(text.as_bytes())
    }

    pub fn parse_bytes(text: &[u8]) -> Result<ResidentId, ResidentIdError> {
        if text.is_empty() {
            return Err(ResidentIdError::Empty);
        }
        if text.len() != 18 {
            let characters = std::str::from_utf8(text)
                .map(|text| text.chars().count())
                .unwrap_or(text.len());
            return Err(ResidentIdError::WrongLength(characters));
        }
        let mut digits: u64 = 0;
        let mut sum: u32 = 0;
        for (index, &byte) in text[..17].iter().enumerate() {
            if !byte.is_ascii_digit() {
                return Err(ResidentIdError::NotDigits);
            }
            let digit = byte - b'0';
            digits = digits * 10 + u64::from(digit);
            sum += u32::from(digit) * WEIGHTS[index];
        }
        let expected = CHECK_CHARACTERS[(sum % 11) as usize];
        let found = text[17].to_ascii_uppercase();
        if !(found.is_ascii_digit() || found == b'X') {
            return Err(ResidentIdError::NotDigits);
        }
        if found != expected {
            return Err(ResidentIdError::WrongCheckCharacter {
                found: text[17] as char,
                expected: expected as char,
            });
        }
        Ok(ResidentId(digits))
    }

    /// Builds the ID whose first 17 digits are `digits` (below 10^17), with
    /// its check character computed. For generators and tests.
    pub fn from_leading_digits(digits: u64) -> Option<ResidentId> {
        (digits < 100_000_000_000_000_000).then_some(ResidentId(digits))
    }

    /// The 17 leading digits as one integer.
    pub fn leading_digits(self) -> u64 {
        self.0
    }

    /// The canonical 18 ASCII bytes, with an upper-case `X`.
    pub fn to_bytes(self) -> [u8; 18] {
        let mut bytes = [0u8; 18];
        let mut rest = self.0;
        for index in (0..17).rev() {
            bytes[index] = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        let sum: u32 = bytes[..17]
            .iter()
            .zip(WEIGHTS)
            .map(|(&digit, weight)| u32::from(digit - b'0') * weight)
            .sum();
        bytes[17] = CHECK_CHARACTERS[(sum % 11) as usize];
        bytes
    }

    /// Shown to people: the first 6 and last 4 characters, the rest as `*`:
    /// `110101********123X`.
    pub fn masked(self) -> String {
        let bytes = self.to_bytes();
        let mut masked = String::with_capacity(18);
        masked.push_str(std::str::from_utf8(&bytes[..6]).unwrap_or("??????"));
        masked.push_str("********");
        masked.push_str(std::str::from_utf8(&bytes[14..]).unwrap_or("????"));
        masked
    }
}

/// The canonical form, with an upper-case `X`.
impl fmt::Display for ResidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.to_bytes();
        f.write_str(std::str::from_utf8(&bytes).map_err(|_| fmt::Error)?)
    }
}

/// Masked, so that a debug print or a log line never shows a full ID number.
impl fmt::Debug for ResidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResidentId({})", self.masked())
    }
}

/// The longest invoice number allowed.
pub const MAX_INVOICE_NO_LENGTH: usize = 64;
const INLINE_CAPACITY: usize = 22;

/// A bill number: 1 to 64 characters of `A-Z a-z 0-9 - _`, compared
/// exactly (byte order, case matters).
///
/// Numbers of up to 22 characters (nearly all) are held inline without an
/// allocation, so that ten million of them cost no more than their bytes.
#[derive(Clone)]
pub struct InvoiceNo(Repr);

#[derive(Clone)]
enum Repr {
    Inline {
        length: u8,
        bytes: [u8; INLINE_CAPACITY],
    },
    Heap(Box<str>),
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InvoiceNoError {
    #[error("is empty; expected a bill number")]
    Empty,
    #[error("has {0} characters; at most 64 are allowed")]
    TooLong(usize),
    #[error("may hold only A-Z, a-z, 0-9, '-' and '_'")]
    BadCharacter,
}

impl InvoiceNo {
    pub fn parse(text: &str) -> Result<InvoiceNo, InvoiceNoError> {
        Self::parse_bytes(text.as_bytes())
    }

    pub fn parse_bytes(text: &[u8]) -> Result<InvoiceNo, InvoiceNoError> {
        if text.is_empty() {
            return Err(InvoiceNoError::Empty);
        }
        if !text
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(InvoiceNoError::BadCharacter);
        }
        if text.len() > MAX_INVOICE_NO_LENGTH {
            return Err(InvoiceNoError::TooLong(text.len()));
        }
        if text.len() <= INLINE_CAPACITY {
            let mut bytes = [0u8; INLINE_CAPACITY];
            bytes[..text.len()].copy_from_slice(text);
            Ok(InvoiceNo(Repr::Inline {
                length: text.len() as u8,
                bytes,
            }))
        } else {
            // Checked above: ASCII only.
            let text = std::str::from_utf8(text).map_err(|_| InvoiceNoError::BadCharacter)?;
            Ok(InvoiceNo(Repr::Heap(text.into())))
        }
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII bytes are ever stored, so this never falls back.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    /// The bytes, without the UTF-8 check of [`InvoiceNo::as_str`]: what
    /// sorting and hashing use.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { length, bytes } => &bytes[..usize::from(*length)],
            Repr::Heap(text) => text.as_bytes(),
        }
    }
}

impl PartialEq for InvoiceNo {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for InvoiceNo {}

impl PartialOrd for InvoiceNo {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for InvoiceNo {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl Hash for InvoiceNo {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl Borrow<[u8]> for InvoiceNo {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl fmt::Display for InvoiceNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for InvoiceNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InvoiceNo({:?})", self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_resident_id_parses_and_displays_canonically() {
        // 11010519491231002X is the standard's own example.
        let id = ResidentId::parse("11010519491231002X").unwrap();
        assert_eq!(id.to_string(), "11010519491231002X");
        let lower = ResidentId::parse("11010519491231002x").unwrap();
        assert_eq!(id, lower);
        assert_eq!(lower.to_string(), "11010519491231002X");
        let digit_check = ResidentId::parse("440524188001010014").unwrap();
        assert_eq!(digit_check.to_string(), "440524188001010014");
    }

    #[test]
    fn a_wrong_check_character_is_refused_with_the_expected_one() {
        assert_eq!(
            ResidentId::parse("110105194912310021"),
            Err(ResidentIdError::WrongCheckCharacter {
                found: '1',
                expected: 'X'
            })
        );
    }

    #[test]
    fn malformed_resident_ids_are_refused() {
        assert_eq!(ResidentId::parse(""), Err(ResidentIdError::Empty));
        assert_eq!(
            ResidentId::parse("1101051949123100"),
            Err(ResidentIdError::WrongLength(16))
        );
        assert_eq!(
            ResidentId::parse("11010519491231002XX"),
            Err(ResidentIdError::WrongLength(19))
        );
        assert_eq!(
            ResidentId::parse("1101051949123100AX"),
            Err(ResidentIdError::NotDigits)
        );
        assert_eq!(
            ResidentId::parse("11010519491231002Y"),
            Err(ResidentIdError::NotDigits)
        );
    }

    #[test]
    fn resident_ids_are_masked_for_people() {
        let id = ResidentId::parse("11010519491231002X").unwrap();
        assert_eq!(id.masked(), "110105********002X");
        assert!(!format!("{id:?}").contains("19491231"));
    }

    #[test]
    fn built_ids_carry_a_valid_check_character() {
        for digits in [0u64, 11010519491231002, 99_999_999_999_999_999] {
            let id = ResidentId::from_leading_digits(digits).unwrap();
            assert_eq!(ResidentId::parse(&id.to_string()), Ok(id));
        }
        assert_eq!(ResidentId::from_leading_digits(100_000_000_000_000_000), None);
    }

    #[test]
    fn invoice_numbers_are_checked_and_compared_by_bytes() {
        let short = InvoiceNo::parse("INV-2024_001").unwrap();
        assert_eq!(short.as_str(), "INV-2024_001");
        let long_text = "A".repeat(64);
        let long = InvoiceNo::parse(&long_text).unwrap();
        assert_eq!(long.as_str(), long_text);
        assert!(InvoiceNo::parse("B").unwrap() < InvoiceNo::parse("a").unwrap());
        assert!(InvoiceNo::parse("A").unwrap() < InvoiceNo::parse("AA").unwrap());
        assert_ne!(InvoiceNo::parse("abc").unwrap(), InvoiceNo::parse("ABC").unwrap());
        assert_eq!(InvoiceNo::parse(""), Err(InvoiceNoError::Empty));
        assert_eq!(
            InvoiceNo::parse(&"A".repeat(65)),
            Err(InvoiceNoError::TooLong(65))
        );
        for bad in ["A B", "A/1", "发票1", "A.1", "A+1"] {
            assert_eq!(InvoiceNo::parse(bad), Err(InvoiceNoError::BadCharacter), "{bad}");
        }
    }
}
