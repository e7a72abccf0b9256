//! Periodic clearing (定期清算): every invoice of a year recomputed from
//! scratch by the engine, in canonical order, with the spells and the
//! policy as known now, and each person-year's recomputed total compared
//! with what was granted so far (`calculation.md`, "Real time and periodic
//! clearing").
//!
//! # What is recomputed
//!
//! A clearing is run for a month, a quarter or a year
//! ([`jiuzhu_core::Period`]) and recomputes every invoice whose service date
//! lies in that period's year: the counters run over the calendar year and
//! the invoices are decided in order of `settled_at`, so the year is
//! recomputed whole. A reversed invoice (冲正) is left out, as the hospital
//! cancelled the bill. A spell whose category the policy in force does not
//! define is left out and counted.
//!
//! # What was granted
//!
//! A person-year's granted total is the amounts of its decisions not
//! reversed, plus the lines of earlier clearings (a top-up adds, a recovery
//! subtracts). A difference between the two makes one line: a top-up (补发,
//! to pay) or a recovery (追回, to review). Since a line counts as granted
//! from then on, a clearing over unchanged data finds no difference, and
//! two clearings never both find the same one.
//!
//! # In one transaction, without stopping settlements
//!
//! The year is read in one snapshot and recomputed outside any write
//! transaction, while real-time settlement and the feeds go on. Then, in
//! one write transaction: the persons whose decisions or spells changed
//! after the snapshot are read and recomputed again there; a policy loaded
//! or another clearing finished meanwhile refuses the clearing (nothing is
//! stored; run it again). Then the run, its lines, each invoice whose
//! decision changed (amount, deductible applied or outcome,
//! `clearing_invoices`), the person-years' counters (set to the recomputed
//! values, so that real-time settlement goes on from them), the marks of
//! recomputation it takes and one audit entry are stored together.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use jiuzhu_core::{
    decide, Batch, BatchInvoice, Claim, Counters, Date, Difference, Fen, InvoiceNo, Outcome, Period, Policy,
    ResidentId, Spell, SpellBook, Timestamp,
};
use rayon::prelude::*;
use rustc_hash::{FxHashMap, FxHashSet};
use serde::Serialize;
use thiserror::Error;

use super::{Backend, Store, StoreError};
use crate::crypto::{DataKeys, Purpose};

/// A person-year whose recomputed total differs from what was granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DifferenceRow {
    pub person_id: ResidentId,
    pub year: i32,
    pub granted: Fen,
    pub recomputed: Fen,
    /// The invoices whose amounts changed, in canonical order.
    pub invoices: Vec<InvoiceNo>,
}

impl DifferenceRow {
    /// `recomputed − granted`: positive to pay, negative to recover.
    pub fn difference(&self) -> Fen {
        Difference::between(self.granted, self.recomputed).signed()
    }
}

/// Bills of one person at one hospital on one service date with the same
/// visit type and amounts, under different numbers: possibly one bill sent
/// twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuspectedDuplicate {
    pub person_id: ResidentId,
    pub hospital: String,
    pub service_date: Date,
    pub visit_type: String,
    pub total: Fen,
    pub invoices: Vec<InvoiceNo>,
}

/// An invoice whose amount the recomputation capped: the cap would have
/// been exceeded by `raw − amount`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CappedInvoice {
    pub invoice_no: InvoiceNo,
    pub person_id: ResidentId,
    pub year: i32,
    pub pool: String,
    /// The amount before caps.
    pub raw: Fen,
    /// The amount granted.
    pub amount: Fen,
}

/// What a clearing found and stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClearingReport {
    pub clearing_id: i64,
    pub period: Period,
    /// The stored policy it recomputed with.
    pub policy_id: i64,
    /// Invoices recomputed (those of the year, not reversed).
    pub invoices: u64,
    /// Persons with an invoice in the year.
    pub persons: u64,
    /// Person-years whose totals differ, by person ID.
    pub differences: Vec<DifferenceRow>,
    pub duplicates: Vec<SuspectedDuplicate>,
    /// In canonical order within each person, persons by ID.
    pub capped: Vec<CappedInvoice>,
    /// Invoices whose stored decision changed (amount, deductible applied
    /// or outcome).
    pub invoices_changed: u64,
    /// Person-year-pool counters set to new values.
    pub counters_updated: u64,
    /// Marks of recomputation taken by this clearing.
    pub marks_taken: u64,
    /// Persons whose decisions or spells changed while the clearing ran,
    /// recomputed again in its transaction.
    pub persons_rechecked: u64,
    /// Current spells left out: their category is not in the policy.
    pub spells_left_out: u64,
}

impl ClearingReport {
    /// Top-up lines and their total.
    pub fn top_ups(&self) -> (u64, Fen) {
        self.tally(|difference| difference > 0)
    }

    /// Recovery lines and the total to recover (positive).
    pub fn recoveries(&self) -> (u64, Fen) {
        let (count, total) = self.tally(|difference| difference < 0);
        (count, Fen::from_fen(-total.fen()))
    }

    fn tally(&self, which: impl Fn(i64) -> bool) -> (u64, Fen) {
        let mut count = 0;
        let mut total = 0i64;
        for row in &self.differences {
            let difference = row.difference().fen();
            if which(difference) {
                count += 1;
                total += difference;
            }
        }
        (count, Fen::from_fen(total))
    }
}

/// Why a clearing stored nothing.
#[derive(Debug, Error)]
pub enum ClearingError {
    #[error("no policy is loaded: run `jiuzhu policy load FILE` first")]
    NoPolicy,
    #[error(
        "the policy in force does not map these visit types of the year's invoices to a pool: {}; \
         load a policy that does",
        .0.join(", ")
    )]
    UnknownVisitTypes(Vec<String>),
    /// Something the whole clearing depends on changed while it ran.
    #[error("{0}; nothing was stored: run the clearing again")]
    Changed(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Store {
    /// Runs a clearing for `period` (see the module's documentation).
    /// `stage` is told what the clearing is doing, for a progress display.
    pub async fn run_clearing(
        &self,
        period: Period,
        actor: &str,
        stage: &(dyn Fn(&str) + Sync),
    ) -> Result<ClearingReport, ClearingError> {
        self.run(period, actor, stage, None).await
    }

    /// Runs a clearing as [`Store::run_clearing`] does, and meanwhile
    /// `prepare`s its report (the files of a report, say) in a thread of
    /// its own: from when the report is known, while the clearing's rows
    /// are stored. What `prepare` made is given back with the report once
    /// the clearing is committed; `None` if it could not finish (it
    /// panicked). A clearing refused or failed gives back only its error,
    /// and what `prepare` made is dropped.
    pub async fn run_clearing_with<T: Send + 'static>(
        &self,
        period: Period,
        actor: &str,
        stage: &(dyn Fn(&str) + Sync),
        prepare: impl FnOnce(&ClearingReport) -> T + Send + 'static,
    ) -> Result<(ClearingReport, Option<T>), ClearingError> {
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        let preparer: Preparer = Box::new(move |report| {
            // The receiver is gone only if the clearing failed.
            let _ = sender.send(prepare(report));
        });
        let report = self.run(period, actor, stage, Some(preparer)).await?;
        Ok((report, receiver.try_recv().ok()))
    }

    async fn run(
        &self,
        period: Period,
        actor: &str,
        stage: &(dyn Fn(&str) + Sync),
        prepare: Option<Preparer>,
    ) -> Result<ClearingReport, ClearingError> {
        let started_at = super::now_text();
        let job = ClearingJob {
            keys: &self.keys,
            policy_cache: &self.policy,
            period,
            actor,
            started_at: &started_at,
            stage,
        };
        match &self.backend {
            Backend::Sqlite(pool) => sqlite_clearing::run(pool, &job, prepare).await,
            Backend::Postgres(pool) => postgres_clearing::run(pool, &job, prepare).await,
        }
    }

    /// How many clearings were stored for `period`.
    pub async fn clearings_of(&self, period: Period) -> Result<u64, StoreError> {
        match &self.backend {
            Backend::Sqlite(pool) => sqlite_clearing::clearings_of(pool, period).await,
            Backend::Postgres(pool) => postgres_clearing::clearings_of(pool, period).await,
        }
    }
}

/// What is done with a clearing's report while its rows are stored (see
/// [`Store::run_clearing_with`]).
type Preparer = Box<dyn FnOnce(&ClearingReport) + Send>;

struct ClearingJob<'j> {
    keys: &'j DataKeys,
    policy_cache: &'j super::PolicyCache,
    period: Period,
    actor: &'j str,
    started_at: &'j str,
    stage: &'j (dyn Fn(&str) + Sync),
}

/// The highest ids a snapshot saw: what changed after it is above them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Watermarks {
    decision: i64,
    spell: i64,
    clearing: i64,
    policy: i64,
}

/// A decision or a clearing's change of it: what an invoice holds now.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Held {
    /// An [`Outcome`]'s name, or [`REVERSED`].
    outcome: &'static str,
    pool: Option<Arc<str>>,
    deductible_applied: i64,
    amount: i64,
}

impl Held {
    fn as_ref(&self) -> HeldRef<'_> {
        HeldRef {
            outcome: self.outcome,
            pool: self.pool.as_ref(),
            deductible_applied: self.deductible_applied,
            amount: self.amount,
        }
    }
}

/// A [`Held`] looked at where it is, its pool's name not shared again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HeldRef<'h> {
    outcome: &'static str,
    pool: Option<&'h Arc<str>>,
    deductible_applied: i64,
    amount: i64,
}

impl HeldRef<'_> {
    fn to_owned(self) -> Held {
        Held {
            outcome: self.outcome,
            pool: self.pool.cloned(),
            deductible_applied: self.deductible_applied,
            amount: self.amount,
        }
    }
}

/// The place in the batch run of an invoice left out of it (reversed).
const NOT_RUN: u32 = u32::MAX;

/// What a clearing stores as the outcome of an invoice the hospital
/// reversed: it holds nothing now.
const REVERSED: &str = "reversed";

/// The name of a stored outcome, as the clearing holds it.
fn outcome_name(stored: &str) -> Option<&'static str> {
    if stored == REVERSED {
        return Some(REVERSED);
    }
    Outcome::parse(stored).map(Outcome::as_str)
}

#[derive(Debug)]
struct YearInvoice {
    invoice_no: InvoiceNo,
    person: u32,
    /// Indexes into [`YearData::hospitals`] and [`YearData::visit_types`].
    hospital: u32,
    visit_type: u16,
    service_date: Date,
    settled_at: Timestamp,
    total: i64,
    base: i64,
    out_of_scope: i64,
    /// The decision as stored.
    decided: Held,
    reversed: bool,
    /// Reversed after the bank paid its decision to the person: the money
    /// is out, and counts as granted until recovered.
    paid_out: bool,
}

/// A year's invoices and what the clearing compares them with, for all
/// persons or for some.
#[derive(Debug, Default)]
struct YearData {
    /// Each person's key, by slot. The engine tells persons apart by
    /// [`stand_in`] IDs: only the persons a report names are decrypted.
    persons: Vec<Vec<u8>>,
    slots: Slots,
    invoices: Vec<YearInvoice>,
    hospitals: Vec<String>,
    visit_types: Vec<String>,
    spells: Vec<Spell>,
    /// The latest change of each invoice by a clearing.
    cleared: FxHashMap<String, (i64, Held)>,
    /// Each person's lines of earlier clearings, summed (signed).
    lines: FxHashMap<u32, i64>,
    /// Each person's stored counters: pool, deductible used, granted.
    counters: FxHashMap<u32, Vec<(String, i64, i64)>>,
}

/// The queries that read a year, each ending in `year = ` (the year is
/// bound after it), shared by both readers.
const REVERSED_SQL: &str = "SELECT invoice_no FROM decisions WHERE kind = 'reversal' AND year = ";
/// Reversed bills whose decision the bank had paid, found from the year's
/// reversals (few; `CROSS JOIN` keeps SQLite from starting with every
/// payable instead), a payable's paid line through `payment_items_live` (a
/// paid line's items stay live).
const PAID_OUT_SQL: &str = "SELECT p.reference FROM decisions r CROSS JOIN payables p \
    WHERE r.kind = 'reversal' AND p.kind = 'decision' AND p.reference = r.invoice_no \
    AND EXISTS (SELECT 1 FROM payment_items t JOIN payment_lines l ON l.id = t.line_id \
    WHERE t.payable_id = p.id AND t.live = 1 AND l.status = 'paid') AND r.year = ";
const INVOICES_SQL: &str =
    "SELECT d.invoice_no, d.person_key, d.outcome, d.pool, d.deductible_applied, d.amount, \
    i.hospital, i.visit_type, i.service_date, i.settled_at, i.total, i.in_scope_self_pay, \
    i.out_of_scope_self_pay \
    FROM decisions d JOIN invoices i ON i.invoice_no = d.invoice_no \
    WHERE d.kind = 'decision' AND d.year = ";
/// The SQLite reader's halves of [`INVOICES_SQL`], joined in memory: the
/// year's decisions, and the invoices of service dates from `?1` to before
/// `?2` with their persons (an invoice's decision is of its person), of the
/// rowids from `?3` to `?4` (see [`ScanRanges`]).
///
/// The decisions are read from the index of each year's decisions (see
/// migration 0013), in the order they were made.
const DECISIONS_SQL: &str = "SELECT invoice_no, outcome, pool, deductible_applied, amount \
    FROM decisions WHERE kind = 'decision' AND year = ?1 ORDER BY id";
const YEAR_INVOICES_SQL: &str = "SELECT invoice_no, hospital, visit_type, service_date, settled_at, total, \
    in_scope_self_pay, out_of_scope_self_pay, person_key FROM invoices \
    WHERE rowid BETWEEN ?3 AND ?4 AND service_date >= ?1 AND service_date < ?2";
/// Current spells (no year: `AND person_key IN (…)` may follow).
const SPELLS_SQL: &str = "SELECT person_key, category, valid_from, valid_to, source FROM spells \
    WHERE superseded_by IS NULL";
const CLEARED_SQL: &str = "SELECT invoice_no, clearing_id, outcome, pool, deductible_applied, amount \
    FROM clearing_invoices WHERE year = ";
const LINES_SQL: &str = "SELECT person_key, kind, amount FROM clearing_lines WHERE year = ";
const COUNTERS_SQL: &str = "SELECT person_key, pool, deductible_used, granted FROM counters WHERE year = ";
const WATERMARKS_SQL: &str = "SELECT (SELECT COALESCE(MAX(id), 0) FROM decisions) AS decision, \
    (SELECT COALESCE(MAX(id), 0) FROM spells) AS spell, \
    (SELECT COALESCE(MAX(id), 0) FROM clearings) AS clearing, \
    (SELECT COALESCE(MAX(id), 0) FROM policies) AS policy";

/// An invoice row of [`INVOICES_SQL`], its columns in order.
struct InvoiceRow<'r> {
    invoice_no: &'r str,
    key: &'r [u8],
    decided: Held,
    hospital: &'r str,
    visit_type: &'r str,
    service_date: &'r str,
    settled_at: &'r str,
    total: i64,
    base: i64,
    out_of_scope: i64,
}

/// A [`Held`] as a row gives it.
struct StoredHeld<'r> {
    outcome: &'r str,
    pool: Option<&'r str>,
    deductible_applied: i64,
    amount: i64,
}

/// A year's data built from the rows of the queries above, taken in their
/// order (reversals and payments first: an invoice's flags need them),
/// whichever reader runs them.
#[derive(Debug, Default)]
struct YearReader {
    data: YearData,
    reversed: FxHashSet<String>,
    paid_out: FxHashSet<String>,
    names: Names,
    pools: FxHashMap<String, Arc<str>>,
}

impl YearReader {
    fn reversed(&mut self, invoice_no: String) {
        self.reversed.insert(invoice_no);
    }

    fn paid_out(&mut self, reference: String) {
        self.paid_out.insert(reference);
    }

    fn invoice(&mut self, row: InvoiceRow<'_>) -> Result<(), StoreError> {
        let person = self.slot(row.key)?;
        let scanned = self.names.scanned(
            (row.invoice_no, person),
            row.hospital,
            row.visit_type,
            row.service_date,
            row.settled_at,
            (row.total, row.base, row.out_of_scope),
        )?;
        self.parts().0.push(row.decided, scanned);
        Ok(())
    }

    /// The slot of the person whose key is `key`, given now if they have
    /// none yet.
    fn slot(&mut self, key: &[u8]) -> Result<u32, StoreError> {
        slot_of(&mut self.data.slots, &mut self.data.persons, key)
    }

    /// The reader's invoices and the rest of its persons' rows, apart, to
    /// be filled at once.
    fn parts(&mut self) -> (InvoiceParts<'_>, PersonParts<'_>) {
        let data = &mut self.data;
        (
            InvoiceParts {
                invoices: &mut data.invoices,
                reversed: &self.reversed,
                paid_out: &self.paid_out,
            },
            PersonParts {
                slots: &data.slots,
                spells: &mut data.spells,
                lines: &mut data.lines,
                counters: &mut data.counters,
            },
        )
    }

    /// A stored decision or change, its pool's name shared.
    fn held(&mut self, stored: StoredHeld<'_>) -> Option<Held> {
        let pool = match stored.pool {
            None => None,
            Some(name) => Some(match self.pools.get(name) {
                Some(pool) => pool.clone(),
                None => {
                    let pool: Arc<str> = Arc::from(name);
                    self.pools.insert(name.to_owned(), pool.clone());
                    pool
                }
            }),
        };
        Some(Held {
            outcome: outcome_name(stored.outcome)?,
            pool,
            deductible_applied: stored.deductible_applied,
            amount: stored.amount,
        })
    }

    fn cleared(&mut self, invoice_no: String, clearing: i64, held: StoredHeld<'_>) -> Result<(), StoreError> {
        let held = self.held(held).ok_or_else(|| {
            StoreError::Damaged(format!(
                "a clearing's change of invoice {invoice_no} has a bad outcome"
            ))
        })?;
        match self.data.cleared.get(&invoice_no) {
            Some((later, _)) if *later > clearing => {}
            _ => {
                self.data.cleared.insert(invoice_no, (clearing, held));
            }
        }
        Ok(())
    }

    fn finish(mut self) -> YearData {
        self.data.hospitals = self.names.hospitals;
        self.data.visit_types = self.names.visit_types;
        self.data
    }
}

/// The invoices of a [`YearReader`], with what they are told apart by.
struct InvoiceParts<'r> {
    invoices: &'r mut Vec<YearInvoice>,
    reversed: &'r FxHashSet<String>,
    paid_out: &'r FxHashSet<String>,
}

impl InvoiceParts<'_> {
    /// Adds an invoice whose hospital and visit type are numbered in
    /// [`YearReader::names`], its person in the reader's slots.
    fn push(&mut self, decided: Held, invoice: ScannedInvoice) {
        let paid_out = !self.paid_out.is_empty() && self.paid_out.contains(invoice.invoice_no.as_str());
        let reversed = !self.reversed.is_empty() && self.reversed.contains(invoice.invoice_no.as_str());
        self.invoices.push(YearInvoice {
            invoice_no: invoice.invoice_no,
            person: invoice.person,
            hospital: invoice.hospital,
            visit_type: invoice.visit_type,
            service_date: invoice.service_date,
            settled_at: invoice.settled_at,
            total: invoice.total,
            base: invoice.base,
            out_of_scope: invoice.out_of_scope,
            decided,
            paid_out,
            reversed,
        });
    }
}

/// The rows of persons of a [`YearReader`] other than their invoices: the
/// slots they are given by, spells, earlier lines and counters.
struct PersonParts<'r> {
    slots: &'r Slots,
    spells: &'r mut Vec<Spell>,
    lines: &'r mut FxHashMap<u32, i64>,
    counters: &'r mut FxHashMap<u32, Vec<(String, i64, i64)>>,
}

impl PersonParts<'_> {
    fn spell(
        &mut self,
        key: &[u8],
        category: String,
        valid_from: &str,
        valid_to: Option<&str>,
        source: String,
    ) -> Result<(), StoreError> {
        let Some(slot) = self.slots.get(key) else {
            return Ok(());
        };
        let damaged = |what: &str| StoreError::Damaged(format!("a stored spell has a bad {what}"));
        let valid_from = Date::parse(valid_from).map_err(|_| damaged("valid_from"))?;
        let valid_to = match valid_to {
            Some(text) => Some(Date::parse(text).map_err(|_| damaged("valid_to"))?),
            None => None,
        };
        let spell = Spell::new(stand_in(slot), category, valid_from, valid_to, Some(source))
            .map_err(|_| damaged("period"))?;
        self.spells.push(spell);
        Ok(())
    }

    fn line(&mut self, key: &[u8], kind: &str, amount: i64) {
        if let Some(slot) = self.slots.get(key) {
            *self.lines.entry(slot).or_default() += if kind == "top_up" { amount } else { -amount };
        }
    }

    fn counter(&mut self, key: &[u8], pool: String, used: i64, granted: i64) {
        if let Some(slot) = self.slots.get(key) {
            self.counters.entry(slot).or_default().push((pool, used, granted));
        }
    }
}

/// A person's key (a blind index: an HMAC-SHA-256, 32 bytes) as the
/// slots hold it: inline, so that a look-up follows no pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PersonKey([u8; 32]);

impl PersonKey {
    /// The key stored as `bytes`, if it is one.
    fn of(bytes: &[u8]) -> Option<PersonKey> {
        bytes.try_into().ok().map(PersonKey)
    }
}

impl std::hash::Hash for PersonKey {
    /// A key is an HMAC under the bureau's secret: its bytes are as good as
    /// random and chosen by nobody, so its first eight are its hash.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let mut first = [0; 8];
        first.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(first));
    }
}

/// The hasher of [`PersonKey`]s: the value [`PersonKey`] hashes to, as it
/// is (other values are folded in eight bytes at a time).
#[derive(Default)]
struct PersonKeyHasher(u64);

impl std::hash::Hasher for PersonKeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(29) ^ u64::from_le_bytes(word);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

/// The persons' slots by their keys. Neither an `FxHashMap` of the keys as
/// `Vec<u8>` (its hash of them collided so often that a year of a million
/// persons took a minute to read) nor the standard hash of them (a third
/// of the reading went into hashing the keys and following them to the
/// heap to compare them).
#[derive(Debug, Default)]
struct Slots(std::collections::HashMap<PersonKey, u32, std::hash::BuildHasherDefault<PersonKeyHasher>>);

impl Slots {
    /// The slot of the person whose key is `key`, if they have one.
    fn get(&self, key: &[u8]) -> Option<u32> {
        self.0.get(&PersonKey::of(key)?).copied()
    }
}

/// The slot of the person whose key is `key` in `slots`, given now (the
/// next one, the key pushed on `persons`) if they have none yet.
fn slot_of(slots: &mut Slots, persons: &mut Vec<Vec<u8>>, key: &[u8]) -> Result<u32, StoreError> {
    let person = PersonKey::of(key)
        .ok_or_else(|| damaged(format!("a stored person key is {} bytes long, not 32", key.len())))?;
    let next = slots.0.len() as u32;
    Ok(*slots.0.entry(person).or_insert_with(|| {
        persons.push(key.to_vec());
        next
    }))
}

/// An invoice's columns as the clearing holds them, its hospital and visit
/// type numbered by a [`Names`], its person by their slot.
struct ScannedInvoice {
    invoice_no: InvoiceNo,
    person: u32,
    hospital: u32,
    visit_type: u16,
    service_date: Date,
    settled_at: Timestamp,
    total: i64,
    base: i64,
    out_of_scope: i64,
}

/// The hospitals and visit types of a year's invoices, each numbered once.
#[derive(Debug, Default)]
struct Names {
    hospitals: Vec<String>,
    visit_types: Vec<String>,
    hospital_numbers: FxHashMap<String, u32>,
    visit_type_numbers: FxHashMap<String, u16>,
}

impl Names {
    /// An invoice's stored columns, parsed, its names numbered.
    fn scanned(
        &mut self,
        (invoice_no, person): (&str, u32),
        hospital: &str,
        visit_type: &str,
        service_date: &str,
        settled_at: &str,
        (total, base, out_of_scope): (i64, i64, i64),
    ) -> Result<ScannedInvoice, StoreError> {
        let bad = |what: &str| StoreError::Damaged(format!("invoice {invoice_no} has a bad stored {what}"));
        let hospital = self.hospital(hospital);
        let visit_type = self.visit_type(visit_type).ok_or_else(|| bad("visit type"))?;
        Ok(ScannedInvoice {
            invoice_no: InvoiceNo::parse(invoice_no).map_err(|_| bad("number"))?,
            person,
            hospital,
            visit_type,
            service_date: Date::parse(service_date).map_err(|_| bad("service date"))?,
            settled_at: Timestamp::parse(settled_at).map_err(|_| bad("settled_at"))?,
            total,
            base,
            out_of_scope,
        })
    }

    /// The number of `hospital`, given now if it has none yet.
    fn hospital(&mut self, hospital: &str) -> u32 {
        match self.hospital_numbers.get(hospital) {
            Some(&index) => index,
            None => {
                let index = self.hospitals.len() as u32;
                self.hospitals.push(hospital.to_owned());
                self.hospital_numbers.insert(hospital.to_owned(), index);
                index
            }
        }
    }

    /// The number of `visit_type`, given now if it has none yet; `None`
    /// past 65,536 visit types.
    fn visit_type(&mut self, visit_type: &str) -> Option<u16> {
        match self.visit_type_numbers.get(visit_type) {
            Some(&index) => Some(index),
            None => {
                let index = u16::try_from(self.visit_types.len()).ok()?;
                self.visit_types.push(visit_type.to_owned());
                self.visit_type_numbers.insert(visit_type.to_owned(), index);
                Some(index)
            }
        }
    }
}

/// How much of the database file the snapshot's reader maps (SQLite maps
/// at most what the file holds).
const SNAPSHOT_MMAP_BYTES: i64 = 1 << 40;

/// A read-only connection of the clearing's own to the SQLite file at
/// `path`.
fn snapshot_connection(path: &std::path::Path) -> Result<rusqlite::Connection, StoreError> {
    use rusqlite::OpenFlags;
    let failed =
        |error: rusqlite::Error| StoreError::NotCommitted(format!("reading the year failed: {error}"));
    let connection = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(failed)?;
    connection
        .busy_timeout(std::time::Duration::from_secs(30))
        .map_err(failed)?;
    connection
        .pragma_update(None, "cache_size", format!("-{}", super::SQLITE_CACHE_KIB))
        .map_err(failed)?;
    // Pages read in place from the file's mapping, not copied one by one.
    connection
        .pragma_update(None, "mmap_size", SNAPSHOT_MMAP_BYTES)
        .map_err(failed)?;
    Ok(connection)
}

/// The invoices' rows are scanned in this many ranges of their rowids,
/// each taken by whichever reader is free first.
const SCAN_RANGES: i64 = 64;

/// The ranges of the invoices' rowids the readers share: up to `last`
/// (the highest rowid of the first reader's snapshot: an invoice stored
/// later is of a decision it does not see), `width` each, the next one
/// to take in `next`.
struct ScanRanges {
    next: std::sync::atomic::AtomicI64,
    width: i64,
    last: i64,
}

impl ScanRanges {
    fn up_to(last: i64) -> ScanRanges {
        ScanRanges {
            next: std::sync::atomic::AtomicI64::new(0),
            width: (last / SCAN_RANGES).max(1) + 1,
            last,
        }
    }

    /// The next range not taken (its number, first and last rowid).
    fn take(&self) -> Option<(i64, i64, i64)> {
        let number = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let first = number.checked_mul(self.width)?;
        (first <= self.last).then(|| (number, first, first.saturating_add(self.width - 1)))
    }
}

/// A reader's share of the scan of a year's invoices: their names
/// numbered and their persons given slots, its own, and the invoices of
/// each range it took, by the range's number.
#[derive(Default)]
struct ScanShare {
    names: Names,
    slots: Slots,
    persons: Vec<Vec<u8>>,
    ranges: Vec<(i64, Vec<ScannedInvoice>)>,
}

impl ScanShare {
    /// Takes ranges of `ranges` until none is left, scanning each in `tx`
    /// for the invoices of the service dates of `year`.
    fn scan(
        &mut self,
        tx: &rusqlite::Transaction<'_>,
        year: i64,
        ranges: &ScanRanges,
    ) -> Result<(), StoreError> {
        let failed =
            |error: rusqlite::Error| StoreError::NotCommitted(format!("reading the year failed: {error}"));
        let get = row_error;
        let (from, to) = (format!("{year:04}-01-01"), format!("{:04}-01-01", year + 1));
        let mut statement = tx.prepare(YEAR_INVOICES_SQL).map_err(failed)?;
        while let Some((number, first, last)) = ranges.take() {
            // Room for a row of each rowid: only what is filled is touched.
            let mut invoices = Vec::with_capacity(usize::try_from(ranges.width).unwrap_or(0));
            let mut rows = statement
                .query(rusqlite::params![from, to, first, last])
                .map_err(failed)?;
            while let Some(row) = rows.next().map_err(failed)? {
                let text = |index: usize| {
                    row.get_ref(index)
                        .and_then(|value| Ok(value.as_str()?))
                        .map_err(get)
                };
                let key = row
                    .get_ref(8)
                    .and_then(|value| Ok(value.as_blob()?))
                    .map_err(get)?;
                let person = slot_of(&mut self.slots, &mut self.persons, key)?;
                invoices.push(self.names.scanned(
                    (text(0)?, person),
                    text(1)?,
                    text(2)?,
                    text(3)?,
                    text(4)?,
                    (
                        row.get(5).map_err(get)?,
                        row.get(6).map_err(get)?,
                        row.get(7).map_err(get)?,
                    ),
                )?);
            }
            self.ranges.push((number, invoices));
        }
        Ok(())
    }

    /// Takes in `other`'s ranges, its names and persons numbered as this
    /// share's.
    fn merge(&mut self, other: ScanShare) -> Result<(), StoreError> {
        let persons = other
            .persons
            .iter()
            .map(|key| slot_of(&mut self.slots, &mut self.persons, key))
            .collect::<Result<Vec<u32>, StoreError>>()?;
        let hospitals: Vec<u32> = other
            .names
            .hospitals
            .iter()
            .map(|name| self.names.hospital(name))
            .collect();
        let visit_types = other
            .names
            .visit_types
            .iter()
            .map(|name| self.names.visit_type(name))
            .collect::<Option<Vec<u16>>>()
            .ok_or_else(|| damaged("the invoices have more than 65,536 visit types".into()))?;
        for (number, mut invoices) in other.ranges {
            for invoice in &mut invoices {
                invoice.person = persons[invoice.person as usize];
                invoice.hospital = hospitals[invoice.hospital as usize];
                invoice.visit_type = visit_types[usize::from(invoice.visit_type)];
            }
            self.ranges.push((number, invoices));
        }
        Ok(())
    }
}

/// The invoices of the ranges, in the order of their rowids.
fn in_rowid_order(mut ranges: Vec<(i64, Vec<ScannedInvoice>)>) -> impl Iterator<Item = ScannedInvoice> {
    ranges.sort_unstable_by_key(|(number, _)| *number);
    ranges.into_iter().flat_map(|(_, invoices)| invoices)
}

/// The scan thread's share of the invoices of the service dates of
/// `year`, in a read transaction of its own.
fn scan_year_invoices(
    path: &std::path::Path,
    year: i64,
    ranges: &ScanRanges,
) -> Result<ScanShare, StoreError> {
    let failed =
        |error: rusqlite::Error| StoreError::NotCommitted(format!("reading the year failed: {error}"));
    let mut connection = snapshot_connection(path)?;
    let tx = connection.transaction().map_err(failed)?;
    let mut share = ScanShare::default();
    share.scan(&tx, year, ranges)?;
    tx.commit().map_err(failed)?;
    Ok(share)
}

/// The SQLite snapshot of a whole year, read through SQLite's own API on
/// read-only connections of its own: no row crosses a thread, as each row
/// of a pool connection does. One read transaction holds the watermarks,
/// the policy's source and every row but the invoices'. Those are scanned
/// meanwhile on a second connection, whose read transaction starts after
/// the first has taken its snapshot: it holds the invoice of every
/// decision the first sees (an invoice is stored with its decision), and
/// the invoices of later decisions, which are left out here (the clearing
/// reads their persons again, above the watermark). The first connection,
/// done with its rows, scans the ranges of invoices the second has not
/// taken yet: its snapshot holds every invoice of its decisions too.
fn read_sqlite_snapshot(
    path: &std::path::Path,
    year: i32,
) -> Result<(Watermarks, String, YearData), StoreError> {
    let failed =
        |error: rusqlite::Error| StoreError::NotCommitted(format!("reading the year failed: {error}"));
    let mut connection = snapshot_connection(path)?;
    let tx = connection.transaction().map_err(failed)?;
    let marks = tx
        .query_row(WATERMARKS_SQL, [], |row| {
            Ok(Watermarks {
                decision: row.get(0)?,
                spell: row.get(1)?,
                clearing: row.get(2)?,
                policy: row.get(3)?,
            })
        })
        .map_err(failed)?;
    let year = i64::from(year);
    let last: i64 = tx
        .query_row("SELECT COALESCE(MAX(rowid), 0) FROM invoices", [], |row| {
            row.get(0)
        })
        .map_err(failed)?;
    let ranges = ScanRanges::up_to(last);
    std::thread::scope(|scope| {
        let scan = scope.spawn(|| scan_year_invoices(path, year, &ranges));
        // Meanwhile, the rest of the year, then the ranges of invoices not
        // scanned yet: the rows of persons wait for the scan to give the
        // persons their slots.
        let first = read_snapshot_rest(&tx, marks, year).and_then(|(source, mut reader, decided)| {
            let persons = read_snapshot_after(&tx, year, &mut reader)?;
            let mut share = ScanShare::default();
            share.scan(&tx, year, &ranges)?;
            Ok((source, reader, decided, persons, share))
        });
        let scanned = scan
            .join()
            .map_err(|_| StoreError::NotCommitted("the invoices' scan stopped".into()))?;
        let (source, mut reader, decided, persons, share) = first?;
        let mut scanned = scanned?;
        scanned.merge(share)?;
        let ScanShare {
            names,
            slots,
            persons: keys,
            ranges,
        } = scanned;
        reader.names = names;
        reader.data.slots = slots;
        reader.data.persons = keys;
        // The invoices and the rest of the persons' rows go in at once.
        let (invoices, rest) = reader.parts();
        std::thread::scope(|scope| {
            let applying = scope.spawn(|| persons.apply(rest));
            let joined = decided.join(in_rowid_order(ranges), invoices);
            applying
                .join()
                .map_err(|_| StoreError::NotCommitted("reading the persons' rows stopped".into()))??;
            joined
        })?;
        Ok((marks, source, reader))
    })
    .and_then(|(marks, source, reader)| {
        tx.commit().map_err(failed)?;
        Ok((marks, source, reader.finish()))
    })
}

/// The year's decisions in the order of their ids: each one's invoice
/// number and what the invoice holds.
#[derive(Default)]
struct Decided {
    /// The invoice numbers one after the other, each ending at its `ends`.
    numbers: String,
    ends: Vec<usize>,
    held: Vec<Held>,
}

impl Decided {
    fn push(&mut self, invoice_no: &str, held: Held) {
        self.numbers.push_str(invoice_no);
        self.ends.push(self.numbers.len());
        self.held.push(held);
    }

    /// Gives each decision its invoice, from `invoices` in the order they
    /// were stored, into `reader`. An invoice is stored in the transaction
    /// of its decision, so the two orders are nearly always the same: the
    /// join walks both, and only an invoice met before its decision (or
    /// one without a decision of the year) waits in a map.
    fn join(
        self,
        invoices: impl IntoIterator<Item = ScannedInvoice>,
        mut reader: InvoiceParts<'_>,
    ) -> Result<(), StoreError> {
        let mut invoices = invoices.into_iter();
        // Room for them all at once: a vector grown as it goes is copied
        // each time it doubles, into memory touched the first time.
        reader.invoices.reserve(self.held.len());
        let mut waiting: FxHashMap<String, ScannedInvoice> = FxHashMap::default();
        let mut start = 0;
        for (end, held) in self.ends.into_iter().zip(self.held) {
            let number = &self.numbers[start..end];
            start = end;
            let found = match waiting.is_empty() {
                true => None,
                false => waiting.remove(number),
            };
            let invoice = match found {
                Some(invoice) => invoice,
                None => loop {
                    match invoices.next() {
                        Some(invoice) if invoice.invoice_no.as_str() == number => break invoice,
                        Some(invoice) => {
                            waiting.insert(invoice.invoice_no.as_str().to_owned(), invoice);
                        }
                        None => {
                            return Err(damaged(format!(
                                "the decision of invoice {number} has no invoice of its year"
                            )))
                        }
                    }
                },
            };
            reader.push(held, invoice);
        }
        Ok(())
    }
}

/// Runs `sql` in `tx`, each row to `step`, with `year` bound to `?1` (put
/// at the end of `sql` when it ends in `year = `).
fn each_row(
    tx: &rusqlite::Transaction<'_>,
    sql: &str,
    year: Option<i64>,
    step: &mut dyn FnMut(&rusqlite::Row<'_>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let failed =
        |error: rusqlite::Error| StoreError::NotCommitted(format!("reading the year failed: {error}"));
    let sql = match year {
        Some(_) => year_bound(sql),
        None => sql.into(),
    };
    let mut statement = tx.prepare(&sql).map_err(failed)?;
    let mut rows = match year {
        Some(year) => statement.query([year]),
        None => statement.query([]),
    }
    .map_err(failed)?;
    while let Some(row) = rows.next().map_err(failed)? {
        step(row)?;
    }
    Ok(())
}

/// `sql` with the year bound to `?1`: a query shared with the PostgreSQL
/// reader ends in `year = `.
fn year_bound(sql: &str) -> std::borrow::Cow<'_, str> {
    match sql.contains("?1") {
        true => sql.into(),
        false => format!("{sql}?1").into(),
    }
}

fn row_error(error: rusqlite::Error) -> StoreError {
    StoreError::Damaged(format!("a stored row does not read: {error}"))
}

/// What the snapshot reads before the invoices: the policy's source, the
/// reversed and paid-out bills, the year's decisions.
fn read_snapshot_rest(
    tx: &rusqlite::Transaction<'_>,
    marks: Watermarks,
    year: i64,
) -> Result<(String, YearReader, Decided), StoreError> {
    let failed =
        |error: rusqlite::Error| StoreError::NotCommitted(format!("reading the year failed: {error}"));
    let get = row_error;
    let source: String = if marks.policy == 0 {
        String::new()
    } else {
        tx.query_row(
            "SELECT source FROM policies WHERE id = ?1",
            [marks.policy],
            |row| row.get(0),
        )
        .map_err(failed)?
    };
    let mut reader = YearReader::default();
    each_row(tx, REVERSED_SQL, Some(year), &mut |row| {
        reader.reversed(row.get(0).map_err(get)?);
        Ok(())
    })?;
    each_row(tx, PAID_OUT_SQL, Some(year), &mut |row| {
        reader.paid_out(row.get(0).map_err(get)?);
        Ok(())
    })?;
    // The year's decisions, joined with the invoices of the second scan in
    // memory: two scans rather than a look-up in the invoices' index for
    // each decision.
    let mut decided = Decided::default();
    each_row(tx, DECISIONS_SQL, Some(year), &mut |row| {
        let text = |index: usize| {
            row.get_ref(index)
                .and_then(|value| Ok(value.as_str()?))
                .map_err(get)
        };
        let invoice_no = text(0)?;
        let held = reader
            .held(StoredHeld {
                outcome: text(1)?,
                pool: row
                    .get_ref(2)
                    .and_then(|value| Ok(value.as_str_or_null()?))
                    .map_err(get)?,
                deductible_applied: row.get(3).map_err(get)?,
                amount: row.get(4).map_err(get)?,
            })
            .ok_or_else(|| damaged(format!("the decision of invoice {invoice_no} has a bad outcome")))?;
        decided.push(invoice_no, held);
        Ok(())
    })?;
    Ok((source, reader, decided))
}

/// A current spell as stored: key, category, valid from, valid to, source.
type SpellRow = (Vec<u8>, String, String, Option<String>, String);

/// The rows of persons the snapshot reads while the invoices are scanned,
/// kept as read until the scan has given the year's persons their slots:
/// current spells, earlier clearings' lines, the counters.
#[derive(Default)]
struct PersonRows {
    spells: Vec<SpellRow>,
    /// Key, kind, amount.
    lines: Vec<(Vec<u8>, String, i64)>,
    /// Key, pool, deductible used, granted.
    counters: Vec<(Vec<u8>, String, i64, i64)>,
}

impl PersonRows {
    /// Gives `reader` the rows of the persons it has a slot for.
    fn apply(self, mut reader: PersonParts<'_>) -> Result<(), StoreError> {
        for (key, category, valid_from, valid_to, source) in self.spells {
            reader.spell(&key, category, &valid_from, valid_to.as_deref(), source)?;
        }
        for (key, kind, amount) in self.lines {
            reader.line(&key, &kind, amount);
        }
        for (key, pool, used, granted) in self.counters {
            reader.counter(&key, pool, used, granted);
        }
        Ok(())
    }
}

/// What the snapshot reads after the decisions: earlier clearings'
/// changes, into `reader`, and the rows of persons (see [`PersonRows`]).
fn read_snapshot_after(
    tx: &rusqlite::Transaction<'_>,
    year: i64,
    reader: &mut YearReader,
) -> Result<PersonRows, StoreError> {
    let get = row_error;
    let mut persons = PersonRows::default();
    each_row(tx, SPELLS_SQL, None, &mut |row| {
        persons.spells.push((
            row.get(0).map_err(get)?,
            row.get(1).map_err(get)?,
            row.get(2).map_err(get)?,
            row.get(3).map_err(get)?,
            row.get(4).map_err(get)?,
        ));
        Ok(())
    })?;
    each_row(tx, CLEARED_SQL, Some(year), &mut |row| {
        let held = StoredHeld {
            outcome: row
                .get_ref(2)
                .and_then(|value| Ok(value.as_str()?))
                .map_err(get)?,
            pool: row
                .get_ref(3)
                .and_then(|value| Ok(value.as_str_or_null()?))
                .map_err(get)?,
            deductible_applied: row.get(4).map_err(get)?,
            amount: row.get(5).map_err(get)?,
        };
        reader.cleared(row.get(0).map_err(get)?, row.get(1).map_err(get)?, held)
    })?;
    each_row(tx, LINES_SQL, Some(year), &mut |row| {
        persons.lines.push((
            row.get(0).map_err(get)?,
            row.get(1).map_err(get)?,
            row.get(2).map_err(get)?,
        ));
        Ok(())
    })?;
    each_row(tx, COUNTERS_SQL, Some(year), &mut |row| {
        persons.counters.push((
            row.get(0).map_err(get)?,
            row.get(1).map_err(get)?,
            row.get(2).map_err(get)?,
            row.get(3).map_err(get)?,
        ));
        Ok(())
    })?;
    Ok(persons)
}

/// An invoice's decision changed by the clearing.
#[derive(Debug, Clone)]
struct ChangedInvoice {
    invoice_no: String,
    now: Held,
    previous_amount: i64,
}

/// A person-year's counter of one pool: the pool, the deductible used and
/// the amount granted.
type Counter = (String, i64, i64);

/// What the clearing finds for one person in the year.
#[derive(Debug, Clone)]
struct PersonResult {
    id: ResidentId,
    granted: i64,
    recomputed: i64,
    /// Invoices whose amounts changed, in canonical order.
    amounts_changed: Vec<InvoiceNo>,
    changed: Vec<ChangedInvoice>,
    /// Counters to store.
    counters: Vec<Counter>,
    duplicates: Vec<SuspectedDuplicate>,
    capped: Vec<CappedInvoice>,
    invoices: u64,
}

#[derive(Debug, Default)]
struct Computed {
    /// The persons with something to store or report: a difference, a
    /// changed invoice or counter, a suspected duplicate, a capped bill.
    /// The others are only counted.
    persons: BTreeMap<Vec<u8>, PersonResult>,
    /// Persons with an invoice of the year, and their invoices not
    /// reversed, each person counted whether in `persons` or not.
    persons_counted: u64,
    invoices_counted: u64,
    /// By slot of the data computed: whether the person has an invoice of
    /// the year, and how many not reversed (what they add to the counts).
    counted: Vec<(bool, u32)>,
    spells_left_out: u64,
}

impl Computed {
    /// Puts the persons of `again` (the persons at `rechecked` computed
    /// again from fresh data) in place of what was computed for them from
    /// `data_slots`, the slots of the data computed first.
    fn merge(&mut self, again: Computed, rechecked: &[Vec<u8>], data_slots: &Slots) {
        for key in rechecked {
            self.persons.remove(key);
            if let Some(&(seen, invoices)) = data_slots
                .get(key)
                .and_then(|slot| self.counted.get(slot as usize))
            {
                self.persons_counted -= u64::from(seen);
                self.invoices_counted -= u64::from(invoices);
            }
        }
        self.persons.extend(again.persons);
        self.persons_counted += again.persons_counted;
        self.invoices_counted += again.invoices_counted;
    }
}

/// The ID the engine knows the person in `slot` by: distinct for each
/// slot, not the person's own (which is decrypted only for the persons a
/// report names, see `resolve_ids`).
fn stand_in(slot: u32) -> ResidentId {
    ResidentId::from_leading_digits(u64::from(slot)).expect("a slot is below 10^17")
}

/// What makes two bills of a person look like one: hospital, service
/// date, visit type (as [`YearInvoice`] numbers them), total, in-scope and
/// out-of-scope self-pay.
type SameBill = (u32, Date, u16, i64, i64, i64);

/// Recomputes the year's invoices of `data` under `policy`.
/// The invoices of `data` that are not reversed, as the engine takes them
/// (each person by [`stand_in`], `position` its place in `data.invoices`),
/// and the visit types they name, in the batch's numbering.
fn batch_invoices(data: &YearData) -> (Vec<BatchInvoice>, Vec<String>) {
    let mut batch_visit: Vec<Option<u16>> = vec![None; data.visit_types.len()];
    let mut visit_types: Vec<String> = Vec::new();
    let mut batch_invoices = Vec::with_capacity(data.invoices.len());
    for (position, invoice) in data.invoices.iter().enumerate() {
        if invoice.reversed {
            continue;
        }
        let index = usize::from(invoice.visit_type);
        let visit_type = match batch_visit[index] {
            Some(visit_type) => visit_type,
            None => {
                let visit_type = visit_types.len() as u16;
                visit_types.push(data.visit_types[index].clone());
                batch_visit[index] = Some(visit_type);
                visit_type
            }
        };
        batch_invoices.push(BatchInvoice {
            settled_at: invoice.settled_at.clone(),
            invoice_no: invoice.invoice_no.clone(),
            person: stand_in(invoice.person),
            base: Fen::from_fen(invoice.base),
            out_of_scope_self_pay: Fen::from_fen(invoice.out_of_scope),
            service_date: invoice.service_date,
            position: position as u32,
            visit_type,
        });
    }
    (batch_invoices, visit_types)
}

/// A year's bills as the clearing reads them, not reversed, for the
/// what-if (`console.rs`): as the engine takes them, the visit types they
/// name, how many persons they are of, and those persons' current spells
/// (each person by the same stand-in ID).
pub(super) struct YearBills {
    pub(super) invoices: Vec<BatchInvoice>,
    pub(super) visit_types: Vec<String>,
    pub(super) persons: u64,
    pub(super) spells: Vec<Spell>,
}

impl Store {
    /// The bills of `year` as a clearing reads them, in one read
    /// transaction (see [`YearBills`]).
    pub(super) async fn year_bills(&self, year: i32) -> Result<YearBills, StoreError> {
        let data = match &self.backend {
            Backend::Sqlite(pool) => sqlite_clearing::read_whole_year(pool, year).await?,
            Backend::Postgres(pool) => postgres_clearing::read_whole_year(pool, year).await?,
        };
        let (invoices, visit_types) = batch_invoices(&data);
        let mut persons: Vec<u32> = data
            .invoices
            .iter()
            .filter(|invoice| !invoice.reversed)
            .map(|invoice| invoice.person)
            .collect();
        persons.sort_unstable();
        persons.dedup();
        Ok(YearBills {
            invoices,
            visit_types,
            persons: persons.len() as u64,
            spells: data.spells,
        })
    }
}

fn compute(policy: &Policy, data: &YearData, year: i32) -> Result<Computed, ClearingError> {
    let (book, left_out) = SpellBook::new_lenient(policy, &data.spells);
    let (batch_invoices, visit_types) = batch_invoices(data);
    let batch = Batch::new(batch_invoices, visit_types);
    let run = batch.run(policy, &book, &|_| {}).map_err(|unknown| {
        ClearingError::UnknownVisitTypes(unknown.into_iter().map(|visit| visit.0).collect())
    })?;

    // Each invoice's place in the run (its recomputed decision), by its
    // place in `data.invoices`; [`NOT_RUN`] for a reversed one. A decision
    // is looked at where it is compared, not copied out for every invoice.
    let pool_names: Vec<Arc<str>> = policy
        .pool_names()
        .iter()
        .map(|name| Arc::from(name.as_str()))
        .collect();
    let mut run_index: Vec<u32> = vec![NOT_RUN; data.invoices.len()];
    for (index, batch_invoice) in batch.invoices().iter().enumerate() {
        run_index[batch_invoice.position as usize] = index as u32;
    }
    let recomputed = |index: u32| {
        let decision = run.decision(index as usize);
        HeldRef {
            outcome: decision.outcome.as_str(),
            pool: decision.pool().map(|pool| &pool_names[pool.index()]),
            deductible_applied: decision.deductible_applied.fen(),
            amount: decision.amount.fen(),
        }
    };

    // Per person, in canonical order: the invoices recomputed in the
    // batch's order, then the reversed ones in theirs. Each person's are
    // one slice of `by_person`, from `starts[slot]` to `starts[slot + 1]`
    // (a vector a person would cost an allocation each).
    let mut starts = vec![0usize; data.persons.len() + 1];
    let mut counted = vec![(false, 0u32); data.persons.len()];
    for invoice in &data.invoices {
        starts[invoice.person as usize + 1] += 1;
        let count = &mut counted[invoice.person as usize];
        count.0 = true;
        count.1 += u32::from(!invoice.reversed);
    }
    for slot in 0..data.persons.len() {
        starts[slot + 1] += starts[slot];
    }
    let mut by_person = vec![(0usize, 0usize); data.invoices.len()];
    let mut next = starts.clone();
    for (position, invoice) in data.invoices.iter().enumerate() {
        let order = match run_index[position] {
            NOT_RUN => usize::MAX,
            index => index as usize,
        };
        let place = &mut next[invoice.person as usize];
        by_person[*place] = (order, position);
        *place += 1;
    }
    drop(next);
    let canonical = |position: usize| {
        let invoice = &data.invoices[position];
        (&invoice.settled_at, &invoice.invoice_no)
    };
    let mut computed = Computed {
        persons_counted: counted.iter().filter(|(seen, _)| *seen).count() as u64,
        invoices_counted: counted.iter().map(|(_, invoices)| u64::from(*invoices)).sum(),
        counted,
        spells_left_out: left_out as u64,
        ..Computed::default()
    };
    // Each person's invoices, the persons split across threads, each
    // thread with its own scratch maps.
    type Scratch = (BTreeMap<Arc<str>, (i64, i64)>, FxHashMap<SameBill, Vec<usize>>);
    let person_result = |scratch: &mut Scratch, (slot, positions): (usize, &mut [(usize, usize)])| {
        positions.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| canonical(a.1).cmp(&canonical(b.1))));
        let key = &data.persons[slot];
        let id = &stand_in(slot as u32);
        let mut result = PersonResult {
            id: *id,
            granted: data.lines.get(&(slot as u32)).copied().unwrap_or(0),
            recomputed: 0,
            amounts_changed: Vec::new(),
            changed: Vec::new(),
            counters: Vec::new(),
            duplicates: Vec::new(),
            capped: Vec::new(),
            invoices: 0,
        };
        let (counters, same_bill) = (&mut scratch.0, &mut scratch.1);
        counters.clear();
        same_bill.clear();
        let mut capped_positions: Vec<usize> = Vec::new();
        for &(_, position) in positions.iter() {
            let invoice = &data.invoices[position];
            let held = match data.cleared.is_empty() {
                true => None,
                false => data
                    .cleared
                    .get(invoice.invoice_no.as_str())
                    .map(|(_, held)| held),
            };
            if !invoice.reversed || invoice.paid_out {
                result.granted += invoice.decided.amount;
            }
            let now = match run_index[position] {
                // Reversed: nothing is held by it now.
                NOT_RUN => HeldRef {
                    outcome: REVERSED,
                    pool: invoice.decided.pool.as_ref(),
                    deductible_applied: 0,
                    amount: 0,
                },
                index => recomputed(index),
            };
            let before = match held {
                Some(held) => held.as_ref(),
                None if invoice.reversed && !invoice.paid_out => now,
                None => invoice.decided.as_ref(),
            };
            if now != before {
                if now.amount != before.amount {
                    result.amounts_changed.push(invoice.invoice_no.clone());
                }
                result.changed.push(ChangedInvoice {
                    invoice_no: invoice.invoice_no.as_str().to_owned(),
                    previous_amount: before.amount,
                    now: now.to_owned(),
                });
            }
            if invoice.reversed {
                continue;
            }
            result.invoices += 1;
            result.recomputed += now.amount;
            if let (Some(outcome), Some(pool)) = (Outcome::parse(now.outcome), now.pool) {
                if outcome.counts() {
                    let entry = match counters.get_mut(&**pool) {
                        Some(entry) => entry,
                        None => counters.entry(Arc::clone(pool)).or_default(),
                    };
                    entry.0 += now.deductible_applied;
                    entry.1 += now.amount;
                }
                if outcome == Outcome::Capped {
                    capped_positions.push(position);
                }
            }
            same_bill
                .entry((
                    invoice.hospital,
                    invoice.service_date,
                    invoice.visit_type,
                    invoice.total,
                    invoice.base,
                    invoice.out_of_scope,
                ))
                .or_default()
                .push(position);
        }
        if !capped_positions.is_empty() {
            result.capped = capped_of(policy, &book, data, positions, &capped_positions, *id, year);
        }
        if same_bill.len() < result.invoices as usize {
            let mut duplicates: Vec<SuspectedDuplicate> = same_bill
                .drain()
                .filter(|(_, positions)| positions.len() > 1)
                .map(
                    |((hospital, service_date, visit_type, total, _, _), positions)| SuspectedDuplicate {
                        person_id: *id,
                        hospital: data.hospitals[hospital as usize].clone(),
                        service_date,
                        visit_type: data.visit_types[usize::from(visit_type)].clone(),
                        total: Fen::from_fen(total),
                        invoices: positions
                            .iter()
                            .map(|&position| data.invoices[position].invoice_no.clone())
                            .collect(),
                    },
                )
                .collect();
            duplicates.sort_by(|a, b| (a.service_date, &a.invoices).cmp(&(b.service_date, &b.invoices)));
            result.duplicates = duplicates;
        }

        // Counters that differ from the stored ones.
        let stored = data
            .counters
            .get(&(slot as u32))
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut pools: Vec<&str> = stored
            .iter()
            .map(|(pool, _, _)| pool.as_str())
            .chain(counters.keys().map(|pool| &**pool))
            .collect();
        pools.sort_unstable();
        pools.dedup();
        for pool in pools {
            let now = counters.get(pool).copied().unwrap_or_default();
            let before = stored
                .iter()
                .find(|(name, _, _)| name == pool)
                .map_or((0, 0), |(_, used, granted)| (*used, *granted));
            if before != now {
                result.counters.push((pool.to_owned(), now.0, now.1));
            }
        }
        let quiet = result.granted == result.recomputed
            && result.changed.is_empty()
            && result.counters.is_empty()
            && result.duplicates.is_empty()
            && result.capped.is_empty();
        (!quiet).then(|| (key.clone(), result))
    };
    let mut persons: Vec<(usize, &mut [(usize, usize)])> = Vec::with_capacity(data.persons.len());
    let mut rest = by_person.as_mut_slice();
    for slot in 0..data.persons.len() {
        let (positions, after) = rest.split_at_mut(starts[slot + 1] - starts[slot]);
        rest = after;
        if !positions.is_empty() {
            persons.push((slot, positions));
        }
    }
    let results: Vec<(Vec<u8>, PersonResult)> = persons
        .into_par_iter()
        .map_init(Scratch::default, person_result)
        .flatten()
        .collect();
    computed.persons = results.into_iter().collect();
    drop_aside((batch, run, book, run_index, by_person, starts));
    Ok(computed)
}

/// Lets `value` go on a thread of its own: freeing a year's millions of
/// allocations takes a good part of a second, which the clearing need not
/// wait for. Dropped here if no thread can be started.
fn drop_aside<T: Send + 'static>(value: T) {
    // A thread that cannot start drops its closure, and `value` with it.
    let spawned = std::thread::Builder::new()
        .name("clearing-free".into())
        .spawn(move || drop(value));
    if let Err(error) = spawned {
        tracing::debug!(%error, "the clearing's data was freed in place");
    }
}

/// The invoices of one person at `capped` with the amount before caps: the
/// person's invoices of the year decided again in canonical order
/// (`positions`, sorted), as the run decided them.
fn capped_of(
    policy: &Policy,
    book: &SpellBook,
    data: &YearData,
    positions: &[(usize, usize)],
    capped: &[usize],
    person: ResidentId,
    year: i32,
) -> Vec<CappedInvoice> {
    let mut counters = Counters::new(policy.pool_names().len());
    let mut found = Vec::with_capacity(capped.len());
    for &(_, position) in positions {
        let invoice = &data.invoices[position];
        if invoice.reversed {
            continue;
        }
        let Some(pool) = policy.pool_of_visit_type(&data.visit_types[usize::from(invoice.visit_type)]) else {
            continue;
        };
        let claim = Claim {
            category: book.category_on(person, invoice.service_date),
            service_date: invoice.service_date,
            pool,
            base: Fen::from_fen(invoice.base),
            out_of_scope_self_pay: Fen::from_fen(invoice.out_of_scope),
        };
        let decision = decide(policy, &claim, &mut counters);
        if capped.contains(&position) {
            found.push(CappedInvoice {
                invoice_no: invoice.invoice_no.clone(),
                person_id: person,
                year,
                pool: policy.pool_name(pool).to_owned(),
                raw: decision.raw,
                amount: decision.amount,
            });
        }
    }
    found
}

/// The report of a computed year.
fn report(
    computed: Computed,
    period: Period,
    policy_id: i64,
    persons_rechecked: u64,
) -> (ClearingReport, Vec<(Vec<u8>, PersonResult)>) {
    let year = period.year();
    let mut report = ClearingReport {
        clearing_id: 0,
        period,
        policy_id,
        invoices: computed.invoices_counted,
        persons: computed.persons_counted,
        differences: Vec::new(),
        duplicates: Vec::new(),
        capped: Vec::new(),
        invoices_changed: 0,
        counters_updated: 0,
        marks_taken: 0,
        persons_rechecked,
        spells_left_out: computed.spells_left_out,
    };
    let mut persons: Vec<(Vec<u8>, PersonResult)> = computed.persons.into_iter().collect();
    persons.sort_by_key(|(_, person)| person.id);
    for (_, person) in &mut persons {
        report.invoices_changed += person.changed.len() as u64;
        report.counters_updated += person.counters.len() as u64;
        if person.granted != person.recomputed {
            report.differences.push(DifferenceRow {
                person_id: person.id,
                year,
                granted: Fen::from_fen(person.granted),
                recomputed: Fen::from_fen(person.recomputed),
                invoices: person.amounts_changed.clone(),
            });
        }
        report.duplicates.append(&mut person.duplicates);
        report.capped.append(&mut person.capped);
    }
    (report, persons)
}

/// The lines of a clearing as text, one per line, for the audit entry's
/// digest: `person_key_hex,year,granted,recomputed,invoices`.
fn lines_text(persons: &[(Vec<u8>, PersonResult)], year: i32) -> String {
    let mut text = String::new();
    for (key, person) in persons {
        if person.granted == person.recomputed {
            continue;
        }
        for byte in key {
            text.push(char::from(HEX_DIGITS[usize::from(byte >> 4)]));
            text.push(char::from(HEX_DIGITS[usize::from(byte & 15)]));
        }
        let invoices: Vec<&str> = person.amounts_changed.iter().map(InvoiceNo::as_str).collect();
        let _ = writeln!(
            text,
            ",{year},{},{},{}",
            Fen::from_fen(person.granted),
            Fen::from_fen(person.recomputed),
            invoices.join(" ")
        );
    }
    text
}

#[derive(Serialize)]
struct ReportSummary<'a> {
    period: String,
    year: i32,
    policy_id: i64,
    invoices: u64,
    persons: u64,
    top_ups: u64,
    top_up_total: String,
    recoveries: u64,
    recovery_total: String,
    invoices_changed: u64,
    counters_updated: u64,
    marks_taken: u64,
    persons_rechecked: u64,
    suspected_duplicates: usize,
    capped: usize,
    lines_sha256: &'a str,
}

fn summary_json(report: &ClearingReport, lines_digest: &str) -> String {
    let (top_ups, top_up_total) = report.top_ups();
    let (recoveries, recovery_total) = report.recoveries();
    serde_json::to_string(&ReportSummary {
        period: report.period.to_string(),
        year: report.period.year(),
        policy_id: report.policy_id,
        invoices: report.invoices,
        persons: report.persons,
        top_ups,
        top_up_total: top_up_total.to_string(),
        recoveries,
        recovery_total: recovery_total.to_string(),
        invoices_changed: report.invoices_changed,
        counters_updated: report.counters_updated,
        marks_taken: report.marks_taken,
        persons_rechecked: report.persons_rechecked,
        suspected_duplicates: report.duplicates.len(),
        capped: report.capped.len(),
        lines_sha256: lines_digest,
    })
    .unwrap_or_default()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn damaged(what: String) -> StoreError {
    StoreError::Damaged(what)
}

/// A person's key and sealed resident ID, as stored.
type SealedId = (Vec<u8>, Vec<u8>);

/// Each of `keys` with its person's sealed resident ID, read on a
/// read-only connection of its own to the SQLite file at `path`.
fn sqlite_sealed_ids(path: &std::path::Path, keys: &[Vec<u8>]) -> Result<Vec<SealedId>, StoreError> {
    let failed =
        |error: rusqlite::Error| StoreError::NotCommitted(format!("reading the persons failed: {error}"));
    let mut connection = snapshot_connection(path)?;
    let tx = connection.transaction().map_err(failed)?;
    let mut sealed = Vec::with_capacity(keys.len());
    {
        let mut statement = tx
            .prepare("SELECT resident_id_encrypted FROM persons WHERE person_key = ?1")
            .map_err(failed)?;
        for key in keys {
            let mut rows = statement.query([key]).map_err(failed)?;
            if let Some(row) = rows.next().map_err(failed)? {
                sealed.push((key.clone(), row.get(0).map_err(row_error)?));
            }
        }
    }
    tx.commit().map_err(failed)?;
    Ok(sealed)
}

fn decrypt_id(keys: &DataKeys, encrypted: &[u8]) -> Result<ResidentId, StoreError> {
    let plain = keys.decrypt(Purpose::ResidentId, encrypted)?;
    let text = String::from_utf8(plain).map_err(|_| damaged("a stored resident ID is not text".into()))?;
    ResidentId::parse(&text).map_err(|_| damaged("a stored resident ID does not parse".into()))
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Rows a SQLite statement takes at once, as one JSON text.
const JSON_ROWS_PER_STATEMENT: usize = 20_000;

/// What a clearing stores besides its run: the lines of the persons whose
/// totals differ, the changed invoices and the counters, each in the order
/// of the index it goes into (pages met one after the other).
struct Rows<'r> {
    clearing_id: i64,
    year: i64,
    /// The lines' time.
    now: &'r str,
    lines: Vec<&'r (Vec<u8>, PersonResult)>,
    changed: Vec<(&'r Vec<u8>, &'r ChangedInvoice)>,
    counters: Vec<(&'r Vec<u8>, &'r Counter)>,
}

impl<'r> Rows<'r> {
    fn of(persons: &'r [(Vec<u8>, PersonResult)], clearing_id: i64, year: i64, now: &'r str) -> Rows<'r> {
        let mut lines: Vec<&(Vec<u8>, PersonResult)> = persons
            .iter()
            .filter(|(_, person)| person.granted != person.recomputed)
            .collect();
        lines.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut changed: Vec<(&Vec<u8>, &ChangedInvoice)> = persons
            .iter()
            .flat_map(|(key, person)| person.changed.iter().map(move |change| (key, change)))
            .collect();
        changed.sort_unstable_by(|a, b| a.1.invoice_no.cmp(&b.1.invoice_no));
        let mut counters: Vec<(&Vec<u8>, &Counter)> = persons
            .iter()
            .flat_map(|(key, person)| person.counters.iter().map(move |counter| (key, counter)))
            .collect();
        counters.sort_unstable_by(|a, b| (a.0, &a.1 .0).cmp(&(b.0, &b.1 .0)));
        Rows {
            clearing_id,
            year,
            now,
            lines,
            changed,
            counters,
        }
    }
}

/// The kind and amount of a person's line.
fn line_of(person: &PersonResult) -> (&'static str, i64) {
    let kind = if person.recomputed > person.granted {
        "top_up"
    } else {
        "recovery"
    };
    (kind, (person.recomputed - person.granted).abs())
}

/// `rows` as JSON arrays of at most [`JSON_ROWS_PER_STATEMENT`] rows each,
/// built in parallel, each row by `row` (one JSON array).
fn json_parts<T: Sync>(rows: &[T], row: impl Fn(&mut JsonRow, &T) + Sync) -> Vec<String> {
    rows.par_chunks(JSON_ROWS_PER_STATEMENT)
        .map(|part| {
            let mut json = JsonRow(String::with_capacity(part.len() * 128));
            json.0.push('[');
            for (index, item) in part.iter().enumerate() {
                if index > 0 {
                    json.0.push(',');
                }
                json.0.push('[');
                row(&mut json, item);
                json.0.push(']');
            }
            json.0.push(']');
            json.0
        })
        .collect()
}

/// One row of a JSON array being written: its values, comma-separated.
struct JsonRow(String);

impl JsonRow {
    fn separate(&mut self) {
        if !self.0.ends_with('[') {
            self.0.push(',');
        }
    }

    fn text(&mut self, text: &str) -> &mut JsonRow {
        self.separate();
        self.0.push('"');
        self.escaped(text);
        self.0.push('"');
        self
    }

    /// `text` as the inside of a JSON string.
    fn escaped(&mut self, text: &str) {
        if !text
            .bytes()
            .any(|byte| byte == b'"' || byte == b'\\' || byte < 0x20)
        {
            self.0.push_str(text);
            return;
        }
        for c in text.chars() {
            match c {
                '"' => self.0.push_str("\\\""),
                '\\' => self.0.push_str("\\\\"),
                c if u32::from(c) < 0x20 => {
                    let _ = write!(self.0, "\\u{:04x}", u32::from(c));
                }
                c => self.0.push(c),
            }
        }
    }

    fn optional(&mut self, text: Option<&str>) -> &mut JsonRow {
        match text {
            Some(text) => self.text(text),
            None => {
                self.separate();
                self.0.push_str("null");
                self
            }
        }
    }

    /// `bytes` as a hex text, for SQLite's `unhex`.
    fn hex(&mut self, bytes: &[u8]) -> &mut JsonRow {
        self.separate();
        self.0.push('"');
        for byte in bytes {
            self.0.push(char::from(HEX_DIGITS[usize::from(byte >> 4)]));
            self.0.push(char::from(HEX_DIGITS[usize::from(byte & 15)]));
        }
        self.0.push('"');
        self
    }

    fn number(&mut self, number: i64) -> &mut JsonRow {
        self.separate();
        let _ = write!(self.0, "{number}");
        self
    }
}

/// Statements of SQLite, each with what it stores (for the progress
/// display), its SQL and the JSON arrays it is run with, one at a time.
type SqliteStatements = Vec<(&'static str, &'static str, Vec<String>)>;

/// A clearing's lines, changed invoices and counters as SQLite statements
/// take them: each statement its rows as one JSON array, which SQLite
/// reads far faster than it binds values a row. The arrays are built on
/// every core, before the report is prepared on one of them while the
/// rows are stored on the other.
fn sqlite_statements(rows: &Rows<'_>) -> SqliteStatements {
    let (lines, (changed, counters)) = rayon::join(
        || {
            json_parts(&rows.lines, |json, (key, person)| {
                let (kind, amount) = line_of(person);
                json.hex(key)
                    .text(kind)
                    .number(amount)
                    .number(person.granted)
                    .number(person.recomputed)
                    .separate();
                json.0.push('"');
                for (index, invoice) in person.amounts_changed.iter().enumerate() {
                    if index > 0 {
                        json.0.push(' ');
                    }
                    json.escaped(invoice.as_str());
                }
                json.0.push('"');
            })
        },
        || {
            rayon::join(
                || {
                    json_parts(&rows.changed, |json, (key, change)| {
                        json.text(&change.invoice_no)
                            .hex(key)
                            .text(change.now.outcome)
                            .optional(change.now.pool.as_deref())
                            .number(change.now.deductible_applied)
                            .number(change.now.amount)
                            .number(change.previous_amount);
                    })
                },
                || {
                    json_parts(&rows.counters, |json, (key, (pool, used, granted))| {
                        json.hex(key).text(pool).number(*used).number(*granted);
                    })
                },
            )
        },
    );
    // Each array is walked as JSONB (`jsonb_each`): each row's fields are
    // taken from its binary form, not from its text parsed again (with
    // `json_each`, SQLite's JSON text parsing was about 7% of the changed
    // invoices' profile).
    vec![
        (
            "storing the lines",
            "INSERT INTO clearing_lines (clearing_id, person_key, year, kind, amount, granted, recomputed, \
             invoices, created_at) \
             SELECT ?1, unhex(value ->> 0), ?2, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, ?3 \
             FROM jsonb_each(?4)",
            lines,
        ),
        (
            "storing the changed invoices",
            "INSERT INTO clearing_invoices (year, invoice_no, clearing_id, person_key, outcome, pool, \
             deductible_applied, amount, previous_amount) \
             SELECT ?2, value ->> 0, ?1, unhex(value ->> 1), value ->> 2, value ->> 3, value ->> 4, \
             value ->> 5, value ->> 6 FROM jsonb_each(?4)",
            changed,
        ),
        (
            "storing the counters",
            "INSERT INTO counters (person_key, year, pool, deductible_used, granted) \
             SELECT unhex(value ->> 0), ?2, value ->> 1, value ->> 2, value ->> 3 FROM jsonb_each(?4) \
             WHERE true ON CONFLICT (person_key, year, pool) DO UPDATE SET \
             deductible_used = excluded.deductible_used, granted = excluded.granted",
            counters,
        ),
    ]
}

/// Stores a clearing's lines, changed invoices and counters on SQLite, as
/// [`sqlite_statements`] made them.
async fn sqlite_rows(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    rows: &Rows<'_>,
    statements: SqliteStatements,
    stage: &(dyn Fn(&str) + Sync),
) -> Result<(), StoreError> {
    for (what, sql, parts) in statements {
        stage(what);
        for json in parts {
            sqlx::query(sql)
                .bind(rows.clearing_id)
                .bind(rows.year)
                .bind(rows.now)
                .bind(json)
                .execute(&mut **tx)
                .await?;
        }
    }
    Ok(())
}

/// Stores a clearing's lines, changed invoices and counters on
/// PostgreSQL, with multi-row inserts.
async fn postgres_rows(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    rows: &Rows<'_>,
    (): (),
    stage: &(dyn Fn(&str) + Sync),
) -> Result<(), StoreError> {
    use sqlx::QueryBuilder;
    stage("storing the lines");
    for part in rows.lines.chunks(super::ROWS_PER_STATEMENT) {
        let mut query = QueryBuilder::<sqlx::Postgres>::new(
            "INSERT INTO clearing_lines (clearing_id, person_key, year, kind, amount, granted, recomputed, \
             invoices, created_at) ",
        );
        query.push_values(part, |mut values, (key, person)| {
            let (kind, amount) = line_of(person);
            let invoices: Vec<&str> = person.amounts_changed.iter().map(InvoiceNo::as_str).collect();
            values
                .push_bind(rows.clearing_id)
                .push_bind(key.clone())
                .push_bind(rows.year)
                .push_bind(kind)
                .push_bind(amount)
                .push_bind(person.granted)
                .push_bind(person.recomputed)
                .push_bind(invoices.join(" "))
                .push_bind(rows.now.to_owned());
        });
        query.build().execute(&mut **tx).await?;
    }
    stage("storing the changed invoices");
    for part in rows.changed.chunks(super::ROWS_PER_STATEMENT) {
        let mut query = QueryBuilder::<sqlx::Postgres>::new(
            "INSERT INTO clearing_invoices (year, invoice_no, clearing_id, person_key, outcome, pool, \
             deductible_applied, amount, previous_amount) ",
        );
        query.push_values(part, |mut values, (key, change)| {
            values
                .push_bind(rows.year)
                .push_bind(change.invoice_no.clone())
                .push_bind(rows.clearing_id)
                .push_bind((*key).clone())
                .push_bind(change.now.outcome)
                .push_bind(change.now.pool.as_deref().map(str::to_owned))
                .push_bind(change.now.deductible_applied)
                .push_bind(change.now.amount)
                .push_bind(change.previous_amount);
        });
        query.build().execute(&mut **tx).await?;
    }
    stage("storing the counters");
    for part in rows.counters.chunks(super::ROWS_PER_STATEMENT) {
        let mut query = QueryBuilder::<sqlx::Postgres>::new(
            "INSERT INTO counters (person_key, year, pool, deductible_used, granted) ",
        );
        query.push_values(part, |mut values, (key, (pool, used, granted))| {
            values
                .push_bind((*key).clone())
                .push_bind(rows.year)
                .push_bind(pool.clone())
                .push_bind(*used)
                .push_bind(*granted);
        });
        query.push(
            " ON CONFLICT (person_key, year, pool) DO UPDATE SET \
             deductible_used = excluded.deductible_used, granted = excluded.granted",
        );
        query.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// The clearing's SQL for one backend. `$snapshot` makes the reading
/// transaction see one snapshot (PostgreSQL's default isolation does not).
macro_rules! clearing_backend {
    (
        $module:ident, $backend:ident, $Pool:ty, $Db:ty, $snapshot:expr, $file:expr,
        $statements:expr, $Statements:ty, $rows:path
    ) => {
        mod $module {
            use sqlx::{QueryBuilder, Row as _};

            use super::{
                compute, decrypt_id, hex, lines_text, report, summary_json, ClearingError, ClearingJob, ClearingReport,
                Computed, PersonResult, StoredHeld, Watermarks, YearData,
            };
            use crate::database::$backend::{audit, begin_write};
            use crate::database::{sha256, StoreError, KEYS_PER_STATEMENT};
            use crate::crypto::DataKeys;

            type Tx<'t> = sqlx::Transaction<'t, $Db>;

            /// Every row of `year` a clearing reads, in one read
            /// transaction: the watermarks, the policy in force's source
            /// (SQLite's reader only) and the year.
            async fn read_all(
                pool: &$Pool,
                year: i32,
            ) -> Result<Option<(super::Watermarks, String, super::YearData)>, StoreError> {
                match ($file)(pool) {
                    Some(path) => Ok(Some(
                        tokio::task::spawn_blocking(move || super::read_sqlite_snapshot(&path, year))
                            .await
                            .map_err(|error| StoreError::NotCommitted(format!("the read stopped: {error}")))??,
                    )),
                    None => Ok(None),
                }
            }

            /// The year as a clearing reads it, for every person.
            pub(super) async fn read_whole_year(pool: &$Pool, year: i32) -> Result<super::YearData, StoreError> {
                if let Some((_, _, data)) = read_all(pool, year).await? {
                    return Ok(data);
                }
                let mut read = pool.begin().await?;
                if let Some(statement) = $snapshot {
                    sqlx::raw_sql(statement).execute(&mut *read).await?;
                }
                let data = read_year(&mut read, year, None).await?;
                read.commit().await?;
                Ok(data)
            }

            pub(super) async fn run(
                pool: &$Pool,
                job: &ClearingJob<'_>,
                prepare: Option<super::Preparer>,
            ) -> Result<ClearingReport, ClearingError> {
                let year = job.period.year();
                (job.stage)("reading the year's invoices");
                let (marks, policy, data) = match read_all(pool, year).await? {
                    Some((marks, source, data)) => {
                        if marks.policy == 0 {
                            return Err(ClearingError::NoPolicy);
                        }
                        let policy = match job.policy_cache.get(marks.policy) {
                            Some((_, policy)) => policy,
                            None => job.policy_cache.parse(marks.policy, &source)?.1,
                        };
                        (marks, policy, data)
                    }
                    None => {
                        let mut read = pool.begin().await.map_err(StoreError::from)?;
                        if let Some(statement) = $snapshot {
                            sqlx::raw_sql(statement).execute(&mut *read).await.map_err(StoreError::from)?;
                        }
                        let marks = watermarks(&mut read).await?;
                        if marks.policy == 0 {
                            return Err(ClearingError::NoPolicy);
                        }
                        let policy = policy_of(&mut read, job, marks.policy).await?;
                        let data = read_year(&mut read, year, None).await?;
                        read.commit().await.map_err(StoreError::from)?;
                        (marks, policy, data)
                    }
                };

                (job.stage)("recomputing the year");
                let computing = policy.clone();
                // The data's slots are kept, to find the persons computed
                // again below; the rest is let go in the computing thread.
                let (mut computed, slots) = tokio::task::spawn_blocking(move || {
                    let mut data = data;
                    let computed = compute(&computing, &data, year);
                    let slots = std::mem::take(&mut data.slots);
                    super::drop_aside(data);
                    computed.map(|computed| (computed, slots))
                })
                .await
                .map_err(|error| StoreError::NotCommitted(format!("the recomputation stopped: {error}")))??;

                (job.stage)("storing the clearing");
                let mut tx = begin_write(pool).await?;
                let now = watermarks(&mut tx).await?;
                if now.policy != marks.policy {
                    return Err(ClearingError::Changed("a policy was loaded while the clearing ran"));
                }
                if now.clearing != marks.clearing {
                    return Err(ClearingError::Changed("another clearing finished while this one ran"));
                }
                (job.stage)("rereading the persons changed meanwhile");
                let rechecked = changed_persons(&mut tx, &marks, year).await?;
                if !rechecked.is_empty() {
                    let fresh = read_year(&mut tx, year, Some(&rechecked)).await?;
                    let again = compute(&policy, &fresh, year)?;
                    computed.merge(again, &rechecked, &slots);
                }
                (job.stage)("naming the persons of the report");
                resolve_ids(pool, &mut tx, job.keys, &mut computed).await?;
                let (mut report, persons) = report(computed, job.period, marks.policy, rechecked.len() as u64);
                let (clearing_id, summary, now) = open_run(&mut tx, job, &mut report, &persons).await?;
                report.clearing_id = clearing_id;
                let rows = super::Rows::of(&persons, clearing_id, i64::from(year), &now);
                let statements = $statements(&rows);
                // The report is known: it is prepared on the other core
                // while the rows are stored.
                let report = std::sync::Arc::new(report);
                let preparing = prepare.map(|prepare| {
                    let report = std::sync::Arc::clone(&report);
                    tokio::task::spawn_blocking(move || prepare(&report))
                });
                store(&mut tx, job, &summary, &rows, statements).await?;
                (job.stage)("committing");
                tx.commit().await.map_err(StoreError::from)?;
                if let Some(preparing) = preparing {
                    // A preparer that panicked gives nothing back, which
                    // the caller is told of; the clearing is stored.
                    let _ = preparing.await;
                }
                Ok(std::sync::Arc::try_unwrap(report).unwrap_or_else(|shared| (*shared).clone()))
            }

            pub(super) async fn clearings_of(pool: &$Pool, period: jiuzhu_core::Period) -> Result<u64, StoreError> {
                let row = sqlx::query("SELECT COUNT(*) AS runs FROM clearings WHERE period = $1")
                    .bind(period.to_string())
                    .fetch_one(pool)
                    .await?;
                let runs: i64 = row.try_get("runs")?;
                Ok(runs as u64)
            }

            /// Decrypts the IDs of the persons the report names (a
            /// difference, a suspected duplicate, a capped bill) and puts
            /// them in place of their stand-ins.
            async fn resolve_ids(
                pool: &$Pool,
                tx: &mut Tx<'_>,
                keys: &DataKeys,
                computed: &mut Computed,
            ) -> Result<(), StoreError> {
                let named: Vec<Vec<u8>> = computed
                    .persons
                    .iter()
                    .filter(|(_, person)| {
                        person.granted != person.recomputed || !person.duplicates.is_empty() || !person.capped.is_empty()
                    })
                    .map(|(key, _)| key.clone())
                    .collect();
                let mut sealed = Vec::with_capacity(named.len());
                match ($file)(pool) {
                    // A person's sealed ID never changes once stored: read
                    // through SQLite's own API beside the writer, rather
                    // than a row at a time through the pool's connection.
                    Some(path) => {
                        sealed = tokio::task::spawn_blocking(move || super::sqlite_sealed_ids(&path, &named))
                            .await
                            .map_err(|error| StoreError::NotCommitted(format!("the read stopped: {error}")))??;
                    }
                    None => {
                        for part in named.chunks(KEYS_PER_STATEMENT) {
                            let mut query = QueryBuilder::<$Db>::new(
                                "SELECT person_key, resident_id_encrypted FROM persons WHERE 1 = 1",
                            );
                            push_keys(&mut query, "person_key", Some(part));
                            for row in query.build().fetch_all(&mut **tx).await? {
                                sealed.push((row.try_get(0)?, row.try_get(1)?));
                            }
                        }
                    }
                }
                for (key, cipher) in sealed {
                    let Some(person) = computed.persons.get_mut(&key) else {
                        continue;
                    };
                    let id = decrypt_id(keys, &cipher)?;
                    person.id = id;
                    for duplicate in &mut person.duplicates {
                        duplicate.person_id = id;
                    }
                    for capped in &mut person.capped {
                        capped.person_id = id;
                    }
                }
                Ok(())
            }

            async fn policy_of(
                tx: &mut Tx<'_>,
                job: &ClearingJob<'_>,
                id: i64,
            ) -> Result<std::sync::Arc<jiuzhu_core::Policy>, StoreError> {
                if let Some((_, policy)) = job.policy_cache.get(id) {
                    return Ok(policy);
                }
                let row = sqlx::query("SELECT source FROM policies WHERE id = $1").bind(id).fetch_one(&mut **tx).await?;
                let source: String = row.try_get("source")?;
                Ok(job.policy_cache.parse(id, &source)?.1)
            }

            async fn watermarks(tx: &mut Tx<'_>) -> Result<Watermarks, StoreError> {
                let row = sqlx::query(super::WATERMARKS_SQL).fetch_one(&mut **tx).await?;
                Ok(Watermarks {
                    decision: row.try_get("decision")?,
                    spell: row.try_get("spell")?,
                    clearing: row.try_get("clearing")?,
                    policy: row.try_get("policy")?,
                })
            }

            /// The persons with a decision of the year or a spell stored
            /// after the snapshot.
            async fn changed_persons(tx: &mut Tx<'_>, marks: &Watermarks, year: i32) -> Result<Vec<Vec<u8>>, StoreError> {
                let rows = sqlx::query(
                    "SELECT DISTINCT person_key FROM decisions WHERE id > $1 AND year = $2 \
                     UNION SELECT DISTINCT person_key FROM spells WHERE id > $3",
                )
                .bind(marks.decision)
                .bind(i64::from(year))
                .bind(marks.spell)
                .fetch_all(&mut **tx)
                .await?;
                let mut keys = Vec::with_capacity(rows.len());
                for row in rows {
                    keys.push(row.try_get::<Vec<u8>, _>("person_key")?);
                }
                keys.sort_unstable();
                Ok(keys)
            }

            /// Appends ` AND <column> IN (…)` for one part of the persons.
            fn push_keys(query: &mut QueryBuilder<$Db>, column: &str, keys: Option<&[Vec<u8>]>) {
                if let Some(keys) = keys {
                    query.push(format!(" AND {column} IN ("));
                    let mut list = query.separated(", ");
                    for key in keys {
                        list.push_bind(key.clone());
                    }
                    query.push(")");
                }
            }

            /// The parts to read: everything at once, or the persons in
            /// parts of [`KEYS_PER_STATEMENT`].
            fn parts(persons: Option<&[Vec<u8>]>) -> Vec<Option<&[Vec<u8>]>> {
                match persons {
                    None => vec![None],
                    Some(keys) => keys.chunks(KEYS_PER_STATEMENT).map(Some).collect(),
                }
            }

            /// The rows `select` (which ends in `year = `) finds for
            /// `year`, of every person or of `persons` (by `column`), read
            /// in parts of [`KEYS_PER_STATEMENT`] persons.
            async fn year_rows(
                tx: &mut Tx<'_>,
                select: &'static str,
                year: i64,
                column: &str,
                persons: Option<&[Vec<u8>]>,
            ) -> Result<Vec<<$Db as sqlx::Database>::Row>, StoreError> {
                let mut rows = Vec::new();
                for part in parts(persons) {
                    let mut query = QueryBuilder::<$Db>::new(select);
                    query.push_bind(year);
                    push_keys(&mut query, column, part);
                    rows.extend(query.build().fetch_all(&mut **tx).await?);
                }
                Ok(rows)
            }

            async fn read_year(
                tx: &mut Tx<'_>,
                year: i32,
                persons: Option<&[Vec<u8>]>,
            ) -> Result<YearData, StoreError> {
                let year_value = i64::from(year);
                let mut reader = super::YearReader::default();
                for row in year_rows(tx, super::REVERSED_SQL, year_value, "person_key", persons).await? {
                    reader.reversed(row.try_get("invoice_no")?);
                }
                for row in year_rows(tx, super::PAID_OUT_SQL, year_value, "p.person_key", persons).await? {
                    reader.paid_out(row.try_get("reference")?);
                }
                for row in year_rows(tx, super::INVOICES_SQL, year_value, "d.person_key", persons).await? {
                    let invoice_no: &str = row.try_get(0)?;
                    let decided = reader
                        .held(StoredHeld {
                            outcome: row.try_get(2)?,
                            pool: row.try_get(3)?,
                            deductible_applied: row.try_get(4)?,
                            amount: row.try_get(5)?,
                        })
                        .ok_or_else(|| {
                            StoreError::Damaged(format!("the decision of invoice {invoice_no} has a bad outcome"))
                        })?;
                    reader.invoice(super::InvoiceRow {
                        invoice_no,
                        key: row.try_get(1)?,
                        decided,
                        hospital: row.try_get(6)?,
                        visit_type: row.try_get(7)?,
                        service_date: row.try_get(8)?,
                        settled_at: row.try_get(9)?,
                        total: row.try_get(10)?,
                        base: row.try_get(11)?,
                        out_of_scope: row.try_get(12)?,
                    })?;
                }
                let wanted: Vec<Vec<u8>> = reader.data.persons.clone();
                let spell_parts: Vec<Option<&[Vec<u8>]>> = match persons {
                    None => vec![None],
                    Some(_) => wanted.chunks(KEYS_PER_STATEMENT).map(Some).collect(),
                };
                for part in spell_parts {
                    let mut query = QueryBuilder::<$Db>::new(super::SPELLS_SQL);
                    push_keys(&mut query, "person_key", part);
                    for row in query.build().fetch_all(&mut **tx).await? {
                        let key: Vec<u8> = row.try_get("person_key")?;
                        let valid_from: String = row.try_get("valid_from")?;
                        let valid_to: Option<String> = row.try_get("valid_to")?;
                        reader.parts().1.spell(
                            &key,
                            row.try_get("category")?,
                            &valid_from,
                            valid_to.as_deref(),
                            row.try_get("source")?,
                        )?;
                    }
                }
                for row in year_rows(tx, super::CLEARED_SQL, year_value, "person_key", persons).await? {
                    let held = StoredHeld {
                        outcome: row.try_get("outcome")?,
                        pool: row.try_get("pool")?,
                        deductible_applied: row.try_get("deductible_applied")?,
                        amount: row.try_get("amount")?,
                    };
                    reader.cleared(row.try_get("invoice_no")?, row.try_get("clearing_id")?, held)?;
                }
                for row in year_rows(tx, super::LINES_SQL, year_value, "person_key", persons).await? {
                    let key: Vec<u8> = row.try_get("person_key")?;
                    let kind: String = row.try_get("kind")?;
                    reader.parts().1.line(&key, &kind, row.try_get("amount")?);
                }
                for row in year_rows(tx, super::COUNTERS_SQL, year_value, "person_key", persons).await? {
                    let key: Vec<u8> = row.try_get("person_key")?;
                    reader.parts().1.counter(
                        &key,
                        row.try_get("pool")?,
                        row.try_get("deductible_used")?,
                        row.try_get("granted")?,
                    );
                }
                Ok(reader.finish())
            }

            /// Takes the marks and stores the run. Returns the run's id, its
            /// summary and its time (the lines').
            async fn open_run(
                tx: &mut Tx<'_>,
                job: &ClearingJob<'_>,
                report: &mut ClearingReport,
                persons: &[(Vec<u8>, PersonResult)],
            ) -> Result<(i64, String, String), StoreError> {
                let year = job.period.year();
                let year_value = i64::from(year);
                let now = crate::database::now_text();
                let marks = sqlx::query(
                    "UPDATE recompute_marks SET cleared_at = $1 WHERE cleared_at IS NULL AND since >= $2 AND since <= $3",
                )
                .bind(&now)
                .bind(format!("{year:04}-01-01"))
                .bind(format!("{year:04}-12-31"))
                .execute(&mut **tx)
                .await?;
                report.marks_taken = marks.rows_affected();
                let text = lines_text(persons, year);
                let digest = hex(&sha256(text.as_bytes()));
                let summary = summary_json(report, &digest);
                let row = sqlx::query(
                    "INSERT INTO clearings (period, year, policy_id, started_at, finished_at, run_by, report) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                )
                .bind(job.period.to_string())
                .bind(year_value)
                .bind(report.policy_id)
                .bind(job.started_at)
                .bind(&now)
                .bind(job.actor)
                .bind(&summary)
                .fetch_one(&mut **tx)
                .await?;
                let clearing_id: i64 = row.try_get("id")?;
                Ok((clearing_id, summary, now))
            }

            /// Stores the run's lines, the changed invoices and counters,
            /// and writes the audit entry.
            async fn store(
                tx: &mut Tx<'_>,
                job: &ClearingJob<'_>,
                summary: &str,
                rows: &super::Rows<'_>,
                statements: $Statements,
            ) -> Result<(), StoreError> {
                $rows(tx, rows, statements, job.stage).await?;
                let clearing_id = rows.clearing_id;
                let details = format!("{{\"clearing_id\":{clearing_id},\"report\":{summary}}}");
                audit(tx, job.actor, "clearing.run", &format!("clearing {}", job.period), details).await?;
                Ok(())
            }
        }
    };
}

clearing_backend!(
    sqlite_clearing,
    sqlite,
    sqlx::SqlitePool,
    sqlx::Sqlite,
    None::<&str>,
    |pool: &sqlx::SqlitePool| Some(pool.connect_options().get_filename().to_owned()),
    super::sqlite_statements,
    super::SqliteStatements,
    super::sqlite_rows
);
clearing_backend!(
    postgres_clearing,
    postgres,
    sqlx::PgPool,
    sqlx::Postgres,
    Some("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"),
    |_: &sqlx::PgPool| None::<std::path::PathBuf>,
    |_: &super::Rows<'_>| (),
    (),
    super::postgres_rows
);

#[cfg(test)]
mod tests {
    use super::*;

    fn scanned(number: &str, person: u32) -> ScannedInvoice {
        ScannedInvoice {
            invoice_no: InvoiceNo::parse(number).unwrap(),
            person,
            hospital: 0,
            visit_type: 0,
            service_date: Date::parse("2024-03-01").unwrap(),
            settled_at: Timestamp::parse("2024-03-01T10:00:00+08:00").unwrap(),
            total: 100,
            base: 80,
            out_of_scope: 20,
        }
    }

    fn held(amount: i64) -> Held {
        Held {
            outcome: "granted",
            pool: None,
            deductible_applied: 0,
            amount,
        }
    }

    fn decided(rows: &[(&str, i64)]) -> Decided {
        let mut decided = Decided::default();
        for &(number, amount) in rows {
            decided.push(number, held(amount));
        }
        decided
    }

    /// Each joined invoice as (number, slot, amount held).
    fn joined(reader: &YearReader) -> Vec<(String, u32, i64)> {
        reader
            .data
            .invoices
            .iter()
            .map(|invoice| {
                (
                    invoice.invoice_no.as_str().to_owned(),
                    invoice.person,
                    invoice.decided.amount,
                )
            })
            .collect()
    }

    #[test]
    fn decisions_and_invoices_in_the_same_order_are_joined_in_step() {
        let mut reader = YearReader::default();
        decided(&[("A1", 10), ("A2", 20), ("A3", 30)])
            .join(
                vec![scanned("A1", 0), scanned("A2", 1), scanned("A3", 0)],
                reader.parts().0,
            )
            .unwrap();
        assert_eq!(
            joined(&reader),
            [("A1".into(), 0, 10), ("A2".into(), 1, 20), ("A3".into(), 0, 30)]
        );
    }

    #[test]
    fn invoices_out_of_order_or_without_a_decision_of_the_year_are_joined_by_number() {
        let mut reader = YearReader::default();
        // B3 was stored first (an application's bill, decided later), X9
        // has no decision of the year, B1 comes after B2.
        decided(&[("B1", 10), ("B2", 20), ("B3", 30), ("B4", 40)])
            .join(
                vec![
                    scanned("B3", 2),
                    scanned("X9", 3),
                    scanned("B2", 1),
                    scanned("B1", 0),
                    scanned("B4", 0),
                ],
                reader.parts().0,
            )
            .unwrap();
        assert_eq!(
            joined(&reader),
            [
                ("B1".into(), 0, 10),
                ("B2".into(), 1, 20),
                ("B3".into(), 2, 30),
                ("B4".into(), 0, 40)
            ]
        );
    }

    #[test]
    fn a_decision_without_its_invoice_is_refused_by_its_number() {
        let mut reader = YearReader::default();
        let error = decided(&[("C1", 10), ("C2", 20)])
            .join(vec![scanned("C2", 0)], reader.parts().0)
            .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("invoice C1 has no invoice of its year"),
            "{error}"
        );
    }

    /// The snapshot maps the whole file, however large: SQLite is built to
    /// allow it (`.cargo/config.toml`), not cut at its 2 GB default.
    #[test]
    fn the_snapshot_maps_the_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch("CREATE TABLE t (x INTEGER)")
            .unwrap();
        let connection = snapshot_connection(&path).unwrap();
        let mapped: i64 = connection
            .query_row("PRAGMA mmap_size", [], |row| row.get(0))
            .unwrap();
        assert_eq!(mapped, SNAPSHOT_MMAP_BYTES);
    }

    /// The plan SQLite makes for `sql`, its year bound, on the schema of
    /// every migration: one line a step.
    fn plan_of(sql: &str) -> String {
        let connection = rusqlite::Connection::open_in_memory().unwrap();
        for (_, migration) in super::super::SQLITE_MIGRATIONS {
            connection.execute_batch(migration).unwrap();
        }
        let mut statement = connection
            .prepare(&format!("EXPLAIN QUERY PLAN {}", year_bound(sql)))
            .unwrap();
        let steps = statement
            .query_map([2025], |row| row.get::<_, String>(3))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        steps.join("\n")
    }

    /// A year's decisions and reversals are read through their indexes,
    /// not by scanning the decisions of every year; the reversed bills
    /// paid out are found from the year's reversals, not from every
    /// payable.
    #[test]
    fn a_years_decisions_and_reversals_are_read_through_their_indexes() {
        let decisions = plan_of(DECISIONS_SQL);
        assert!(
            decisions.contains("USING COVERING INDEX decisions_of_year (year=?)"),
            "{decisions}"
        );
        assert!(!decisions.contains("TEMP B-TREE"), "{decisions}");
        let reversed = plan_of(REVERSED_SQL);
        assert!(
            reversed.contains("USING COVERING INDEX reversals_of_year (year=?)"),
            "{reversed}"
        );
        let paid_out = plan_of(PAID_OUT_SQL);
        assert!(
            paid_out.starts_with("SEARCH r USING COVERING INDEX reversals_of_year (year=?)"),
            "{paid_out}"
        );
        assert!(
            paid_out.contains("SEARCH t USING INDEX payment_items_live (payable_id=?)"),
            "{paid_out}"
        );
        assert!(!paid_out.contains("SCAN"), "{paid_out}");
    }

    /// Migration 14 moves the changed invoices stored before it into the
    /// table keyed by year, each as it was.
    #[test]
    fn the_changed_invoices_stored_before_migration_14_are_kept() {
        let connection = rusqlite::Connection::open_in_memory().unwrap();
        // The rows' clearings and invoices are not the point here.
        connection.pragma_update(None, "foreign_keys", false).unwrap();
        for (version, migration) in super::super::SQLITE_MIGRATIONS {
            if *version == 14 {
                connection
                    .execute_batch(
                        "INSERT INTO clearing_invoices (invoice_no, clearing_id, person_key, year, outcome, pool, \
                         deductible_applied, amount, previous_amount) VALUES \
                         ('A-1', 1, x'07', 2024, 'assisted', '门诊', 100, 2500, 0), \
                         ('A-1', 2, x'07', 2024, 'capped', '门诊', 100, 2000, 2500), \
                         ('B-2', 2, x'08', 2025, 'reversed', NULL, 0, 0, 300)",
                    )
                    .unwrap();
            }
            connection.execute_batch(migration).unwrap();
        }
        let mut statement = connection
            .prepare(
                "SELECT year, invoice_no, clearing_id, hex(person_key), outcome, pool, deductible_applied, amount, \
                 previous_amount FROM clearing_invoices ORDER BY year, invoice_no, clearing_id",
            )
            .unwrap();
        let rows: Vec<String> = statement
            .query_map([], |row| {
                Ok(format!(
                    "{} {} {} {} {} {:?} {} {} {}",
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, String>(4)?,
                    row.get::<_, Option<String>>(5)?,
                    row.get::<_, i64>(6)?,
                    row.get::<_, i64>(7)?,
                    row.get::<_, i64>(8)?,
                ))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            [
                "2024 A-1 1 07 assisted Some(\"门诊\") 100 2500 0",
                "2024 A-1 2 07 capped Some(\"门诊\") 100 2000 2500",
                "2025 B-2 2 08 reversed None 0 0 300",
            ]
        );
    }

    /// The JSON rows SQLite is given are JSON, whatever their texts hold.
    #[test]
    fn json_rows_escape_what_json_strings_cannot_hold() {
        let texts = ["门诊", "a\"b", "back\\slash", "line\nbreak\u{1}", ""];
        let parts = json_parts(&texts, |json, text| {
            json.text(text).optional(None).hex(&[0, 0xab, 0xff]).number(-42);
        });
        assert_eq!(parts.len(), 1);
        let parsed: Vec<(String, Option<String>, String, i64)> = serde_json::from_str(&parts[0]).unwrap();
        let expected: Vec<(String, Option<String>, String, i64)> = texts
            .iter()
            .map(|text| (text.to_string(), None, "00abff".to_owned(), -42))
            .collect();
        assert_eq!(parsed, expected);
    }

    /// A year's changed invoices are one range of their table, read in
    /// its own order: no index beside it, no scan of other years'.
    #[test]
    fn a_years_changed_invoices_are_one_range_of_their_table() {
        let cleared = plan_of(CLEARED_SQL);
        assert_eq!(cleared, "SEARCH clearing_invoices USING PRIMARY KEY (year=?)");
    }

    fn key(first: u8, last: u8) -> Vec<u8> {
        let mut key = vec![7; 32];
        key[0] = first;
        key[31] = last;
        key
    }

    #[test]
    fn each_person_key_has_one_slot_and_a_key_not_32_bytes_long_is_refused() {
        let (mut slots, mut persons) = (Slots::default(), Vec::new());
        // The same first eight bytes (the same hash): told apart by the rest.
        let keys = [key(1, 1), key(1, 2), key(2, 1)];
        for (expected, key) in keys.iter().enumerate() {
            assert_eq!(slot_of(&mut slots, &mut persons, key).unwrap(), expected as u32);
        }
        for (expected, key) in keys.iter().enumerate() {
            assert_eq!(slot_of(&mut slots, &mut persons, key).unwrap(), expected as u32);
            assert_eq!(slots.get(key), Some(expected as u32));
        }
        assert_eq!(persons, keys.to_vec());
        assert_eq!(slots.get(&key(3, 3)), None);
        assert_eq!(slots.get(&[1; 31]), None);
        let refused = slot_of(&mut slots, &mut persons, &[1; 33]).unwrap_err();
        assert!(refused.to_string().contains("33 bytes long"), "{refused}");
        assert_eq!(persons.len(), 3);
    }

    #[test]
    fn the_scan_ranges_cover_each_rowid_once() {
        for last in [0, 1, 5, 63, 64, 65, 1_000, 2_000_003] {
            let ranges = ScanRanges::up_to(last);
            let mut next = 0;
            let mut taken = 0;
            while let Some((number, first, end)) = ranges.take() {
                assert_eq!((number, first), (taken, next), "last {last}");
                assert!(end >= first, "last {last}");
                next = end + 1;
                taken += 1;
            }
            assert!(next > last, "last {last}: rowids after {next} left out");
            assert!(taken <= SCAN_RANGES + 1, "last {last}: {taken} ranges");
            assert_eq!(ranges.take(), None);
        }
    }

    /// A share's invoice: its number, its person's key, its hospital and
    /// visit type, as named.
    fn named(share: &ScanShare, invoice: &ScannedInvoice) -> (String, Vec<u8>, String, String) {
        (
            invoice.invoice_no.as_str().to_owned(),
            share.persons[invoice.person as usize].clone(),
            share.names.hospitals[invoice.hospital as usize].clone(),
            share.names.visit_types[usize::from(invoice.visit_type)].clone(),
        )
    }

    #[test]
    fn two_shares_of_the_scan_merge_with_their_persons_and_names_numbered_once() {
        let mut shares = [ScanShare::default(), ScanShare::default()];
        // Share 0 takes ranges 0 and 2, share 1 ranges 1 and 3; some
        // persons, hospitals and visit types are met by both.
        let rows = [
            (0, "A1", key(1, 1), "H1", "outpatient"),
            (0, "A2", key(2, 2), "H2", "outpatient"),
            (1, "B1", key(3, 3), "H3", "inpatient"),
            (1, "B2", key(1, 1), "H2", "outpatient"),
            (2, "C1", key(2, 2), "H1", "inpatient"),
            (3, "D1", key(4, 4), "H3", "pharmacy"),
            (3, "D2", key(3, 3), "H4", "inpatient"),
        ];
        let mut expected = Vec::new();
        for range in 0..4 {
            let share = &mut shares[(range % 2) as usize];
            let mut invoices = Vec::new();
            for (_, number, person, hospital, visit_type) in rows.iter().filter(|row| row.0 == range) {
                let slot = slot_of(&mut share.slots, &mut share.persons, person).unwrap();
                let invoice = share
                    .names
                    .scanned(
                        (number, slot),
                        hospital,
                        visit_type,
                        "2024-03-01",
                        "2024-03-01T10:00:00+08:00",
                        (100, 80, 20),
                    )
                    .unwrap();
                expected.push(named(share, &invoice));
                invoices.push(invoice);
            }
            share.ranges.push((range, invoices));
        }
        let [mut merged, other] = shares;
        merged.merge(other).unwrap();
        assert_eq!(merged.persons.len(), 4);
        assert_eq!(merged.names.hospitals.len(), 4);
        assert_eq!(merged.names.visit_types.len(), 3);
        for (index, key) in merged.persons.iter().enumerate() {
            assert_eq!(merged.slots.get(key), Some(index as u32));
        }
        let ranges = std::mem::take(&mut merged.ranges);
        let found: Vec<_> = in_rowid_order(ranges)
            .map(|invoice| named(&merged, &invoice))
            .collect();
        assert_eq!(found, expected);
    }

    #[test]
    fn a_person_computed_again_is_counted_once() {
        let (mut slots, mut persons) = (Slots::default(), Vec::new());
        let (quiet, changed) = (key(1, 1), key(2, 2));
        slot_of(&mut slots, &mut persons, &quiet).unwrap();
        slot_of(&mut slots, &mut persons, &changed).unwrap();
        // Two persons, of 3 and 2 invoices; the second computed again with 4.
        let mut computed = Computed {
            persons_counted: 2,
            invoices_counted: 5,
            counted: vec![(true, 3), (true, 2)],
            ..Computed::default()
        };
        let again = Computed {
            persons_counted: 1,
            invoices_counted: 4,
            counted: vec![(true, 4)],
            ..Computed::default()
        };
        computed.merge(again, &[changed, key(3, 3)], &slots);
        assert_eq!((computed.persons_counted, computed.invoices_counted), (2, 7));
    }
}
