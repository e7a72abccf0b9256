//! Spells and invoices: what departments and the insurance system report.

use std::fmt;

use thiserror::Error;

use crate::ids::{InvoiceNo, ResidentId};
use crate::money::Fen;
use crate::time::{Date, Timestamp};

/// "Person P holds category C from A to B (inclusive; open when `None`)",
/// as a department reported it. `C` is the category's code: it is bound to
/// a policy's categories by the engine's spell book.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spell {
    person: ResidentId,
    category: String,
    valid_from: Date,
    valid_to: Option<Date>,
    source: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SpellError {
    #[error("ends on {valid_to}, before it starts on {valid_from}")]
    EndsBeforeStart { valid_from: Date, valid_to: Date },
    #[error("category code must not be empty")]
    EmptyCategory,
}

impl Spell {
    pub fn new(
        person: ResidentId,
        category: impl Into<String>,
        valid_from: Date,
        valid_to: Option<Date>,
        source: Option<String>,
    ) -> Result<Spell, SpellError> {
        let category = category.into();
        if category.is_empty() {
            return Err(SpellError::EmptyCategory);
        }
        if let Some(valid_to) = valid_to {
            if valid_to < valid_from {
                return Err(SpellError::EndsBeforeStart { valid_from, valid_to });
            }
        }
        Ok(Spell {
            person,
            category,
            valid_from,
            valid_to,
            source,
        })
    }

    pub fn person(&self) -> ResidentId {
        self.person
    }

    pub fn category(&self) -> &str {
        &self.category
    }

    pub fn valid_from(&self) -> Date {
        self.valid_from
    }

    pub fn valid_to(&self) -> Option<Date> {
        self.valid_to
    }

    pub fn source(&self) -> Option<&str> {
        self.source.as_deref()
    }

    /// Whether the spell covers `date` (both ends inclusive).
    pub fn covers(&self, date: Date) -> bool {
        self.valid_from <= date && self.valid_to.is_none_or(|valid_to| date <= valid_to)
    }
}

/// The longest hospital code or name, in characters.
pub const MAX_HOSPITAL_CHARACTERS: usize = 32;

/// A hospital code or name: 1 to 32 characters (not bytes).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hospital(String);

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HospitalError {
    #[error("is empty; expected a hospital code or name")]
    Empty,
    #[error("has {0} characters; at most 32 are allowed")]
    TooLong(usize),
    #[error("must not hold control characters")]
    ControlCharacter,
}

impl Hospital {
    pub fn parse(text: &str) -> Result<Hospital, HospitalError> {
        Self::check(text)?;
        Ok(Hospital(text.to_owned()))
    }

    /// Checks a hospital without keeping it (the batch engine does not
    /// need it).
    pub fn check(text: &str) -> Result<(), HospitalError> {
        if text.is_empty() {
            return Err(HospitalError::Empty);
        }
        let characters = text.chars().count();
        if characters > MAX_HOSPITAL_CHARACTERS {
            return Err(HospitalError::TooLong(characters));
        }
        if text.chars().any(char::is_control) {
            return Err(HospitalError::ControlCharacter);
        }
        Ok(())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Hospital {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Hospital {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hospital({:?})", self.0)
    }
}

/// The money of a bill: `fund_paid + in_scope_self_pay + out_of_scope_self_pay`
/// always equals `total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BillAmounts {
    total: Fen,
    fund_paid: Fen,
    in_scope_self_pay: Fen,
    out_of_scope_self_pay: Fen,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BillAmountsError {
    #[error("fund_paid {fund_paid} + in_scope_self_pay {in_scope} + out_of_scope_self_pay {out_of_scope} = {sum}, but total is {total}")]
    DoNotAddUp {
        total: Fen,
        fund_paid: Fen,
        in_scope: Fen,
        out_of_scope: Fen,
        sum: Fen,
    },
    #[error("an amount is negative")]
    Negative,
}

impl BillAmounts {
    pub fn new(
        total: Fen,
        fund_paid: Fen,
        in_scope_self_pay: Fen,
        out_of_scope_self_pay: Fen,
    ) -> Result<BillAmounts, BillAmountsError> {
        if [total, fund_paid, in_scope_self_pay, out_of_scope_self_pay]
            .iter()
            .any(|fen| fen.is_negative())
        {
            return Err(BillAmountsError::Negative);
        }
        // Each part is below 10^14 fen, so the sum cannot overflow.
        let sum = Fen::from_fen(fund_paid.fen() + in_scope_self_pay.fen() + out_of_scope_self_pay.fen());
        if sum != total {
            return Err(BillAmountsError::DoNotAddUp {
                total,
                fund_paid,
                in_scope: in_scope_self_pay,
                out_of_scope: out_of_scope_self_pay,
                sum,
            });
        }
        Ok(BillAmounts {
            total,
            fund_paid,
            in_scope_self_pay,
            out_of_scope_self_pay,
        })
    }

    pub fn total(&self) -> Fen {
        self.total
    }

    pub fn fund_paid(&self) -> Fen {
        self.fund_paid
    }

    /// 政策范围内个人自付: the base of assistance.
    pub fn in_scope_self_pay(&self) -> Fen {
        self.in_scope_self_pay
    }

    /// 自费: outside the insurance catalogue.
    pub fn out_of_scope_self_pay(&self) -> Fen {
        self.out_of_scope_self_pay
    }
}

/// One medical bill after basic insurance settled it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoice {
    pub invoice_no: InvoiceNo,
    pub person: ResidentId,
    pub hospital: Hospital,
    /// A key of the policy's `[pools]`; checked against a policy by the engine.
    pub visit_type: String,
    pub service_date: Date,
    pub settled_at: Timestamp,
    pub amounts: BillAmounts,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(text: &str) -> Date {
        Date::parse(text).unwrap()
    }

    fn person() -> ResidentId {
        ResidentId::parse("11010519491231002X").unwrap()
    }

    #[test]
    fn a_spell_covers_its_first_and_last_day() {
        let spell = Spell::new(person(), "DB", date("2024-01-01"), Some(date("2024-06-30")), None).unwrap();
        assert!(!spell.covers(date("2023-12-31")));
        assert!(spell.covers(date("2024-01-01")));
        assert!(spell.covers(date("2024-06-30")));
        assert!(!spell.covers(date("2024-07-01")));
        let open = Spell::new(person(), "DB", date("2024-01-01"), None, Some("民政".into())).unwrap();
        assert!(open.covers(date("9999-12-31")));
    }

    #[test]
    fn a_spell_may_not_end_before_it_starts() {
        assert!(Spell::new(person(), "DB", date("2024-01-02"), Some(date("2024-01-02")), None).is_ok());
        assert_eq!(
            Spell::new(person(), "DB", date("2024-01-02"), Some(date("2024-01-01")), None),
            Err(SpellError::EndsBeforeStart {
                valid_from: date("2024-01-02"),
                valid_to: date("2024-01-01")
            })
        );
    }

    #[test]
    fn hospital_length_counts_characters_not_bytes() {
        assert!(Hospital::parse(&"医".repeat(32)).is_ok());
        assert_eq!(Hospital::parse(&"医".repeat(33)), Err(HospitalError::TooLong(33)));
        assert_eq!(Hospital::parse(""), Err(HospitalError::Empty));
    }

    #[test]
    fn bill_amounts_must_add_up_to_the_total() {
        let fen = Fen::from_fen;
        assert!(BillAmounts::new(fen(1000), fen(600), fen(300), fen(100)).is_ok());
        assert!(matches!(
            BillAmounts::new(fen(1000), fen(600), fen(300), fen(99)),
            Err(BillAmountsError::DoNotAddUp { .. })
        ));
    }
}
