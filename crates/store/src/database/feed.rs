//! The insurance feed (免申即享): bills that basic insurance settled without
//! real-time assistance (before the person's category was known, or at a
//! hospital not connected), decided after the fact by the same engine and
//! the same decision path as a real-time settlement.
//!
//! An import runs in two stages:
//!
//! 1. **Check, storing nothing.** The bills are put in canonical order
//!    (`calculation.md`, as [`jiuzhu_core::Batch`] sorts). A later bill under
//!    a number already in the file is a *duplicate* when it is the same
//!    bill ([`BillContent`]: every field but `settled_at`) and is not stored
//!    again; otherwise it is a conflict. A bill whose number the store
//!    already holds (decided in real time or by an earlier feed) is
//!    *already decided* when it is the same bill, and a conflict otherwise.
//!    A visit type that the policy in force does not map is a problem of
//!    its row. Any conflict or problem refuses the whole file: every one is
//!    listed with its line, and nothing is stored.
//! 2. **Decide and store, in chunks.** The remaining bills are decided in
//!    canonical order, [`FeedOptions::chunk_invoices`] per transaction, each
//!    chunk read, decided in memory and written exactly as a run of real-time
//!    settlements is (`decide_run`, `write_decided`): an invoice and a
//!    decision row per bill (`channel = 'feed'`, `decided_by =
//!    'feed:<actor>'`), the person-year counters, and, instead of one audit
//!    entry per bill, one per chunk (counts, first and last invoice number,
//!    and the SHA-256 of the chunk's decision rows, see
//!    [`decision_row_line`](super::decision_row_line)).
//!
//! An import stopped midway (a crash, a database error) leaves whole chunks
//! stored; the same file imported again finds them already decided and
//! decides the rest. A bill that another channel stores under the same
//! number with a different bill between the check and its chunk is not
//! stored, and the report lists it ([`FeedReport::refused`]).

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use jiuzhu_core::{canonical_order, Fen, Invoice, InvoiceNo, Outcome, ResidentId};
use jiuzhu_formats::{InvoiceRecord, Problem, Problems};
use thiserror::Error;

use super::{
    postgres, sqlite, Backend, BillContent, Channel, ChunkLabel, FeedAnswer, PersonRow, SettleRequest, Store,
    StoreError, STORED_LOOKUP,
};
use crate::crypto::Purpose;

/// Bills per transaction unless told otherwise.
pub const FEED_CHUNK_INVOICES: usize = 1024;
/// The most bills per transaction: each table is written with one
/// statement per chunk, and SQLite takes at most 32,766 parameters in one.
pub const MAX_FEED_CHUNK_INVOICES: usize = 2048;

/// How an import runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedOptions {
    /// Bills decided and written per transaction (1 to
    /// [`MAX_FEED_CHUNK_INVOICES`]).
    pub chunk_invoices: usize,
}

impl Default for FeedOptions {
    fn default() -> FeedOptions {
        FeedOptions {
            chunk_invoices: FEED_CHUNK_INVOICES,
        }
    }
}

/// A later line of the file that repeats a bill of an earlier one (in
/// canonical order): not stored again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedDuplicate {
    pub invoice_no: InvoiceNo,
    pub line: u64,
    /// The line of the bill that was decided.
    pub first_line: u64,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedReport {
    /// Rows of the file.
    pub rows: u64,
    /// Bills decided and stored now, per outcome in the order of
    /// [`Outcome::ALL`] (never `duplicate`).
    pub outcomes: [u64; 5],
    /// The assistance granted by the bills decided now.
    pub amount: Fen,
    /// Distinct persons granted anything (`assisted` or `capped`) by the
    /// bills decided now.
    pub persons_assisted: u64,
    /// Bills the store held already, the same (decided in real time or by
    /// an earlier feed): not decided again.
    pub already_decided: u64,
    /// Lines repeating a bill of this file, in the order of their lines.
    pub duplicates: Vec<FeedDuplicate>,
    /// Transactions committed.
    pub transactions: u64,
    /// Bills refused while storing, after the check had passed (another
    /// channel stored a different bill under the number meanwhile, or a new
    /// policy does not map the visit type): not stored.
    pub refused: Problems,
}

impl FeedReport {
    /// Bills decided and stored now.
    pub fn decided(&self) -> u64 {
        self.outcomes.iter().sum()
    }

    pub fn count(&self, outcome: Outcome) -> u64 {
        Outcome::ALL
            .iter()
            .position(|other| *other == outcome)
            .map_or(0, |index| self.outcomes[index])
    }
}

/// Why an import stored nothing.
#[derive(Debug, Error)]
pub enum FeedError {
    #[error("no policy is loaded: run `jiuzhu policy load FILE` first")]
    NoPolicy,
    /// The file was refused whole: conflicts with the store or within the
    /// file, or rows the policy in force cannot decide. Nothing was stored.
    #[error("the file was refused; nothing was stored:\n{0}")]
    Refused(Problems),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Store {
    /// Imports the insurance feed's bills of `file` (as read, each with its
    /// line): checks them all, then decides and stores them in canonical
    /// order (see the module's documentation). `actor` is who imports, for
    /// the audit log; the decisions are stored as decided by
    /// `feed:<actor>`. `progress` is called now and then with the number of
    /// rows done since its last call.
    pub async fn import_invoices(
        &self,
        file: &str,
        records: Vec<InvoiceRecord>,
        actor: &str,
        options: FeedOptions,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<FeedReport, FeedError> {
        let chunk_invoices = options.chunk_invoices.clamp(1, MAX_FEED_CHUNK_INVOICES);
        let Some((policy_id, policy)) = self.policy_in_force().await? else {
            return Err(FeedError::NoPolicy);
        };
        if u32::try_from(records.len()).is_err() {
            return Err(FeedError::Refused(
                Problem::whole_file(
                    file,
                    format!("has more than {} records: split it into smaller files", u32::MAX),
                )
                .into(),
            ));
        }
        let mut report = FeedReport {
            rows: records.len() as u64,
            ..FeedReport::default()
        };
        let (invoices, lines): (Vec<Invoice>, Vec<u64>) = records
            .into_iter()
            .map(|record| (record.invoice, record.line))
            .unzip();
        let order = canonical_order(&invoices);
        let mut problems: Vec<Problem> = Vec::new();

        // Rows the policy in force cannot decide.
        let mut visit_types: HashMap<&str, bool> = HashMap::new();
        for (invoice, line) in invoices.iter().zip(&lines) {
            let known = *visit_types
                .entry(invoice.visit_type.as_str())
                .or_insert_with(|| policy.pool_of_visit_type(&invoice.visit_type).is_some());
            if !known {
                problems.push(Problem::at(
                    file,
                    *line,
                    "visit_type",
                    format!(
                        "{:?} is not a key of the [pools] of the policy in force (stored version {policy_id})",
                        invoice.visit_type
                    ),
                ));
            }
        }

        // Duplicates and conflicts within the file, in canonical order.
        let person_key = |person: ResidentId| {
            self.keys
                .blind_index(Purpose::ResidentId, person.to_string().as_bytes())
        };
        let mut first: HashMap<&InvoiceNo, u32> = HashMap::with_capacity(invoices.len());
        let mut unique: Vec<u32> = Vec::with_capacity(invoices.len());
        for &index in &order {
            let invoice = &invoices[index as usize];
            match first.entry(&invoice.invoice_no) {
                Entry::Vacant(vacant) => {
                    vacant.insert(index);
                    unique.push(index);
                }
                Entry::Occupied(occupied) => {
                    let earlier = *occupied.get() as usize;
                    let here = BillContent::of(invoice, &person_key(invoice.person));
                    let there = BillContent::of(&invoices[earlier], &person_key(invoices[earlier].person));
                    let (line, first_line) = (lines[index as usize], lines[earlier]);
                    if here == there {
                        report.duplicates.push(FeedDuplicate {
                            invoice_no: invoice.invoice_no.clone(),
                            line,
                            first_line,
                        });
                    } else {
                        problems.push(Problem::at(
                            file,
                            line,
                            "invoice_no",
                            format!(
                                "{} is also on line {first_line} with a different bill: {}",
                                invoice.invoice_no,
                                here.differences(&there, "there")
                            ),
                        ));
                    }
                }
            }
        }
        drop(first);
        report.duplicates.sort_by_key(|duplicate| duplicate.line);

        // Bills the store holds already.
        let mut stored_same = vec![false; invoices.len()];
        for part in unique.chunks(STORED_LOOKUP) {
            let numbers: Vec<&str> = part
                .iter()
                .map(|&index| invoices[index as usize].invoice_no.as_str())
                .collect();
            let stored = match &self.backend {
                Backend::Sqlite(pool) => sqlite::stored_bills_of(pool, &numbers).await?,
                Backend::Postgres(pool) => postgres::stored_bills_of(pool, &numbers).await?,
            };
            if stored.is_empty() {
                continue;
            }
            for &index in part {
                let invoice = &invoices[index as usize];
                let Some(bill) = stored.get(invoice.invoice_no.as_str()) else {
                    continue;
                };
                let here = BillContent::of(invoice, &person_key(invoice.person));
                if here == bill.content {
                    stored_same[index as usize] = true;
                    report.already_decided += 1;
                } else {
                    problems.push(Problem::at(
                        file,
                        lines[index as usize],
                        "invoice_no",
                        format!(
                            "{} was already settled with different amounts or details: {}",
                            invoice.invoice_no,
                            here.differences(&bill.content, "stored")
                        ),
                    ));
                }
            }
        }
        if !problems.is_empty() {
            problems.sort_by_key(|problem| problem.line);
            let mut refused = Problems::new();
            for problem in problems {
                refused.push(problem);
            }
            return Err(FeedError::Refused(refused));
        }
        progress(report.rows - unique.len() as u64 + report.already_decided);

        // Decide and store, chunk by chunk.
        let to_decide: Vec<u32> = unique
            .into_iter()
            .filter(|&index| !stored_same[index as usize])
            .collect();
        drop(stored_same);
        let chunks = to_decide.len().div_ceil(chunk_invoices);
        let decided_by = format!("feed:{actor}");
        let mut persons: HashMap<ResidentId, PersonRow> = HashMap::new();
        let mut assisted: HashSet<ResidentId> = HashSet::new();
        let mut amount = 0i64;
        for (chunk, part) in to_decide.chunks(chunk_invoices).enumerate() {
            let at = super::now_text();
            let mut requests = Vec::with_capacity(part.len());
            for &index in part {
                let invoice = &invoices[index as usize];
                let person = match persons.entry(invoice.person) {
                    Entry::Occupied(known) => known.get().clone(),
                    Entry::Vacant(vacant) => vacant
                        .insert(self.person_row(invoice.person).map_err(StoreError::from)?)
                        .clone(),
                };
                requests.push(SettleRequest {
                    invoice: invoice.clone(),
                    person,
                    digest: jiuzhu_formats::json::canonical_request_digest(invoice),
                    actor: decided_by.clone(),
                    at: at.clone(),
                    channel: Channel::Feed,
                });
            }
            let label = ChunkLabel {
                file,
                chunk: chunk + 1,
                chunks,
                actor,
            };
            let answers = match &self.backend {
                Backend::Sqlite(pool) => sqlite::import_chunk(pool, &self.policy, &requests, &label).await?,
                Backend::Postgres(pool) => {
                    postgres::import_chunk(pool, &self.policy, &requests, &label).await?
                }
            };
            report.transactions += 1;
            self.between_transactions().await;
            for (&index, answer) in part.iter().zip(answers) {
                let invoice = &invoices[index as usize];
                let line = lines[index as usize];
                match answer {
                    FeedAnswer::Decided {
                        outcome,
                        amount: granted,
                    } => {
                        if let Some(slot) = Outcome::ALL.iter().position(|other| *other == outcome) {
                            report.outcomes[slot] += 1;
                        }
                        amount += granted.fen();
                        if outcome.counts() {
                            assisted.insert(invoice.person);
                        }
                    }
                    FeedAnswer::AlreadyDecided => report.already_decided += 1,
                    FeedAnswer::Conflict => report.refused.push(Problem::at(
                        file,
                        line,
                        "invoice_no",
                        format!(
                            "{} was settled by another channel with a different bill while this file was \
                             imported; this line was not stored",
                            invoice.invoice_no
                        ),
                    )),
                    FeedAnswer::UnknownVisitType => report.refused.push(Problem::at(
                        file,
                        line,
                        "visit_type",
                        format!(
                            "{:?} is not a key of the [pools] of the policy loaded while this file was \
                             imported; this line was not stored",
                            invoice.visit_type
                        ),
                    )),
                    FeedAnswer::NoPolicy => report.refused.push(Problem::at_line(
                        file,
                        line,
                        "no policy was in force; this line was not stored",
                    )),
                }
            }
            progress(part.len() as u64);
        }
        report.amount = Fen::from_fen(amount);
        report.persons_assisted = assisted.len() as u64;
        Ok(report)
    }
}
