//! The engine over many invoices at once (`jiuzhu simulate`, periodic
//! clearing): canonical order, duplicates, and one pass of [`decide`] per
//! invoice, the persons split across threads (each person's counters are
//! touched by one thread only, in canonical order, so the result does not
//! depend on the number of threads).

use std::collections::BTreeMap;

use rayon::prelude::*;
use rustc_hash::{FxHashMap, FxHashSet, FxHasher};
use std::hash::{Hash, Hasher};

use crate::engine::{decide, Claim, Counters, Decision, Outcome, SpellBook};
use crate::ids::{InvoiceNo, ResidentId};
use crate::money::Fen;
use crate::policy::{CategoryId, Policy, PoolId, VersionId};
use crate::time::{Date, Timestamp};

/// One invoice as the batch engine holds it: what the calculation needs,
/// nothing more (hospital and the bill's other amounts are checked by the
/// reader and dropped), so that tens of millions fit in memory.
#[derive(Debug, Clone)]
pub struct BatchInvoice {
    pub settled_at: Timestamp,
    pub invoice_no: InvoiceNo,
    pub person: ResidentId,
    /// In-scope self-pay.
    pub base: Fen,
    pub out_of_scope_self_pay: Fen,
    pub service_date: Date,
    /// Position in the input (0-based), the last key of the canonical order.
    pub position: u32,
    /// Index into the batch's visit type names.
    pub visit_type: u16,
}

/// A decision as the batch engine keeps it, 24 bytes: `base` and
/// `eligible` follow from the invoice and `deductible_applied`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactDecision {
    pub amount: Fen,
    pub deductible_applied: Fen,
    category: u16,
    version: u16,
    pool: u8,
    pub outcome: Outcome,
}

const NONE_U16: u16 = u16::MAX;
const NONE_U8: u8 = u8::MAX;

impl CompactDecision {
    fn from_decision(decision: &Decision) -> CompactDecision {
        CompactDecision {
            amount: decision.amount,
            deductible_applied: decision.deductible_applied,
            category: decision.category.map_or(NONE_U16, |category| category.0),
            version: decision.version.map_or(NONE_U16, |version| version.0),
            pool: decision.pool.map_or(NONE_U8, |pool| pool.0),
            outcome: decision.outcome,
        }
    }

    pub fn category(&self) -> Option<CategoryId> {
        (self.category != NONE_U16).then_some(CategoryId(self.category))
    }

    pub fn version(&self) -> Option<VersionId> {
        (self.version != NONE_U16).then_some(VersionId(self.version))
    }

    pub fn pool(&self) -> Option<PoolId> {
        (self.pool != NONE_U8).then_some(PoolId(self.pool))
    }
}

/// Invoices in canonical order with duplicates marked: built once, run
/// under as many policies as wanted.
#[derive(Debug)]
pub struct Batch {
    invoices: Vec<BatchInvoice>,
    duplicate: Vec<bool>,
    visit_types: Vec<String>,
}

/// A visit type of the invoices that the policy does not map to a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownVisitType(pub String);

impl Batch {
    /// Sorts the invoices into canonical order (`settled_at` as an instant,
    /// then `invoice_no` bytes, then position) and marks every invoice whose
    /// number an earlier one already had.
    pub fn new(mut invoices: Vec<BatchInvoice>, visit_types: Vec<String>) -> Batch {
        invoices.par_sort_unstable_by(|a, b| {
            a.settled_at
                .cmp(&b.settled_at)
                .then_with(|| a.invoice_no.cmp(&b.invoice_no))
                .then(a.position.cmp(&b.position))
        });
        let duplicate = mark_duplicates(&invoices);
        Batch {
            invoices,
            duplicate,
            visit_types,
        }
    }

    /// The invoices, in canonical order.
    pub fn invoices(&self) -> &[BatchInvoice] {
        &self.invoices
    }

    pub fn is_duplicate(&self, index: usize) -> bool {
        self.duplicate[index]
    }

    pub fn visit_types(&self) -> &[String] {
        &self.visit_types
    }

    pub fn len(&self) -> usize {
        self.invoices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.invoices.is_empty()
    }

    /// Decides every invoice under `policy`, in canonical order.
    /// `progress` is called now and then with the number of invoices done by
    /// one thread (for a progress bar); it must be cheap.
    pub fn run(
        &self,
        policy: &Policy,
        spells: &SpellBook,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<BatchRun, Vec<UnknownVisitType>> {
        let pools: Vec<Option<PoolId>> = self
            .visit_types
            .iter()
            .map(|name| policy.pool_of_visit_type(name))
            .collect();
        let unknown: Vec<UnknownVisitType> = self
            .visit_types
            .iter()
            .zip(&pools)
            .filter(|(_, pool)| pool.is_none())
            .map(|(name, _)| UnknownVisitType(name.clone()))
            .collect();
        if !unknown.is_empty() {
            return Err(unknown);
        }
        let pools: Vec<PoolId> = pools.into_iter().flatten().collect();
        let shard_count = rayon::current_num_threads().clamp(1, 64);
        let shards: Vec<ShardRun> = (0..shard_count)
            .into_par_iter()
            .map(|shard| self.run_shard(policy, spells, &pools, shard, shard_count, progress))
            .collect();

        let mut decisions = vec![
            CompactDecision {
                amount: Fen::ZERO,
                deductible_applied: Fen::ZERO,
                category: NONE_U16,
                version: NONE_U16,
                pool: NONE_U8,
                outcome: Outcome::Duplicate,
            };
            self.invoices.len()
        ];
        let mut summary = Summary::default();
        for shard in shards {
            for (index, decision) in shard.decisions {
                decisions[index as usize] = decision;
            }
            summary.merge(shard.summary);
        }
        summary.finish(policy);
        Ok(BatchRun { decisions, summary })
    }

    fn run_shard(
        &self,
        policy: &Policy,
        spells: &SpellBook,
        pools: &[PoolId],
        shard: usize,
        shard_count: usize,
        progress: &(dyn Fn(u64) + Sync),
    ) -> ShardRun {
        let mut counters: FxHashMap<(ResidentId, i32), Counters> = FxHashMap::default();
        let mut decisions = Vec::with_capacity(self.invoices.len() / shard_count + 16);
        let mut summary = Summary::default();
        let mut people: FxHashSet<(ResidentId, CategoryId, PoolId)> = FxHashSet::default();
        const PROGRESS_EVERY: usize = 1 << 16;
        for (index, invoice) in self.invoices.iter().enumerate() {
            if index % PROGRESS_EVERY == PROGRESS_EVERY - 1 && shard == 0 {
                progress(PROGRESS_EVERY as u64);
            }
            if shard_of(invoice.person, shard_count) != shard {
                continue;
            }
            let decision = if self.duplicate[index] {
                Decision::duplicate()
            } else {
                let claim = Claim {
                    category: spells.category_on(invoice.person, invoice.service_date),
                    service_date: invoice.service_date,
                    pool: pools[usize::from(invoice.visit_type)],
                    base: invoice.base,
                    out_of_scope_self_pay: invoice.out_of_scope_self_pay,
                };
                let year = invoice.service_date.year();
                let person_counters = counters
                    .entry((invoice.person, year))
                    .or_insert_with(|| Counters::new(policy.pool_names().len()));
                decide(policy, &claim, person_counters)
            };
            summary.add(&decision, invoice.person, &mut people);
            decisions.push((index as u32, CompactDecision::from_decision(&decision)));
        }
        ShardRun { decisions, summary }
    }
}

fn shard_of(person: ResidentId, shard_count: usize) -> usize {
    // The low digits of an ID are a sequence number and a check: well spread.
    let mixed = person.leading_digits().wrapping_mul(0x9E37_79B9_7F4A_7C15);
    ((mixed >> 32) % shard_count as u64) as usize
}

/// Marks, in canonical order, every invoice whose number an earlier invoice
/// had: hashes sorted in parallel, then equal hashes compared exactly.
fn mark_duplicates(invoices: &[BatchInvoice]) -> Vec<bool> {
    let mut keyed: Vec<(u64, u32)> = invoices
        .par_iter()
        .enumerate()
        .map(|(index, invoice)| {
            let mut hasher = FxHasher::default();
            invoice.invoice_no.hash(&mut hasher);
            (hasher.finish(), index as u32)
        })
        .collect();
    keyed.par_sort_unstable();
    let mut duplicate = vec![false; invoices.len()];
    let mut start = 0;
    while start < keyed.len() {
        let hash = keyed[start].0;
        let end = start
            + keyed[start..]
                .iter()
                .take_while(|(other, _)| *other == hash)
                .count();
        if end - start > 1 {
            let group = &keyed[start..end];
            for (offset, &(_, index)) in group.iter().enumerate().skip(1) {
                let number = &invoices[index as usize].invoice_no;
                if group[..offset]
                    .iter()
                    .any(|&(_, earlier)| invoices[earlier as usize].invoice_no == *number)
                {
                    duplicate[index as usize] = true;
                }
            }
        }
        start = end;
    }
    duplicate
}

struct ShardRun {
    decisions: Vec<(u32, CompactDecision)>,
    summary: Summary,
}

/// Totals of one category and pool over assisted and capped invoices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SummaryRow {
    /// Distinct persons.
    pub people: u64,
    pub invoices: u64,
    pub base_total: Fen,
    pub amount_total: Fen,
    /// Invoices whose outcome is `capped`.
    pub capped: u64,
}

/// What a run decided, in totals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Per (category, pool), ordered by category (policy order) then pool.
    pub rows: BTreeMap<(CategoryId, PoolId), SummaryRow>,
    /// Invoices per outcome, in the order of [`Outcome::ALL`].
    pub outcomes: [u64; 5],
    /// Distinct persons granted anything (assisted or capped).
    pub people_assisted: u64,
    pub amount_total: Fen,
    assisted_persons: FxHashSet<ResidentId>,
}

impl Summary {
    fn add(
        &mut self,
        decision: &Decision,
        person: ResidentId,
        people: &mut FxHashSet<(ResidentId, CategoryId, PoolId)>,
    ) {
        let outcome_index = Outcome::ALL
            .iter()
            .position(|outcome| *outcome == decision.outcome)
            .unwrap_or(0);
        self.outcomes[outcome_index] += 1;
        let (true, Some(category), Some(pool)) =
            (decision.outcome.counts(), decision.category, decision.pool)
        else {
            return;
        };
        let row = self.rows.entry((category, pool)).or_default();
        row.invoices += 1;
        row.base_total = Fen::from_fen(row.base_total.fen() + decision.base.fen());
        row.amount_total = Fen::from_fen(row.amount_total.fen() + decision.amount.fen());
        row.capped += u64::from(decision.outcome == Outcome::Capped);
        if people.insert((person, category, pool)) {
            row.people += 1;
        }
        self.amount_total = Fen::from_fen(self.amount_total.fen() + decision.amount.fen());
        self.assisted_persons.insert(person);
    }

    /// Adds the totals of another shard; shards hold disjoint persons, so
    /// distinct-person counts add up.
    fn merge(&mut self, other: Summary) {
        for (key, row) in other.rows {
            let total = self.rows.entry(key).or_default();
            total.people += row.people;
            total.invoices += row.invoices;
            total.base_total = Fen::from_fen(total.base_total.fen() + row.base_total.fen());
            total.amount_total = Fen::from_fen(total.amount_total.fen() + row.amount_total.fen());
            total.capped += row.capped;
        }
        for (total, count) in self.outcomes.iter_mut().zip(other.outcomes) {
            *total += count;
        }
        self.amount_total = Fen::from_fen(self.amount_total.fen() + other.amount_total.fen());
        self.people_assisted += other.assisted_persons.len() as u64;
    }

    fn finish(&mut self, _policy: &Policy) {
        self.assisted_persons = FxHashSet::default();
    }

    pub fn invoices(&self) -> u64 {
        self.outcomes.iter().sum()
    }

    pub fn count(&self, outcome: Outcome) -> u64 {
        let index = Outcome::ALL
            .iter()
            .position(|other| *other == outcome)
            .unwrap_or(0);
        self.outcomes[index]
    }

    /// Amount granted per category, over all pools.
    pub fn amount_by_category(&self) -> BTreeMap<CategoryId, Fen> {
        let mut totals = BTreeMap::new();
        for ((category, _), row) in &self.rows {
            let total: &mut Fen = totals.entry(*category).or_default();
            *total = Fen::from_fen(total.fen() + row.amount_total.fen());
        }
        totals
    }
}

/// The decisions of one run, in canonical order, and their totals.
#[derive(Debug)]
pub struct BatchRun {
    pub decisions: Vec<CompactDecision>,
    pub summary: Summary,
}
