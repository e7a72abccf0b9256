//! The engine over many invoices at once (`jiuzhu simulate`, periodic
//! clearing): canonical order, duplicates, and one pass of [`decide`] per
//! invoice, the persons split across threads (each person's counters are
//! touched by one thread only, in canonical order, so the result does not
//! depend on the number of threads).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
use rustc_hash::FxHasher;
use std::hash::{Hash, Hasher};

use crate::engine::{decide, Claim, Counters, Decision, Outcome, SpellBook};
use crate::ids::{InvoiceNo, ResidentId};
use crate::money::Fen;
use crate::policy::{CategoryId, Policy, PoolId, VersionId};
use crate::records::Invoice;
use crate::time::{Date, Timestamp};

/// The canonical order of two invoices (`calculation.md`, "Order"), each
/// given as `(settled_at, invoice_no, position in the input)`: by
/// `settled_at` as an instant, then `invoice_no` bytes, then position.
/// Every path that decides many invoices sorts with this.
pub fn canonical_cmp(
    a: (&Timestamp, &InvoiceNo, u32),
    b: (&Timestamp, &InvoiceNo, u32),
) -> std::cmp::Ordering {
    a.0.cmp(b.0).then_with(|| a.1.cmp(b.1)).then(a.2.cmp(&b.2))
}

/// The positions of `invoices` (their indexes) in canonical order, as
/// [`Batch::new`] sorts.
///
/// # Panics
///
/// If there are more than `u32::MAX` invoices (positions are `u32`, as in
/// [`BatchInvoice`]).
pub fn canonical_order(invoices: &[Invoice]) -> Vec<u32> {
    let count = u32::try_from(invoices.len()).expect("at most u32::MAX invoices");
    let mut order: Vec<u32> = (0..count).collect();
    order.par_sort_unstable_by(|&a, &b| {
        let (first, second) = (&invoices[a as usize], &invoices[b as usize]);
        canonical_cmp(
            (&first.settled_at, &first.invoice_no, a),
            (&second.settled_at, &second.invoice_no, b),
        )
    });
    order
}

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
            canonical_cmp(
                (&a.settled_at, &a.invoice_no, a.position),
                (&b.settled_at, &b.invoice_no, b.position),
            )
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

    /// The full decision, with every step, of the invoice at `index` in
    /// canonical order: the person's earlier invoices are decided again
    /// from zero counters, as the run did, up to that one.
    pub fn explain(&self, policy: &Policy, spells: &SpellBook, index: usize) -> Option<Decision> {
        let target = self.invoices.get(index)?;
        if self.duplicate[index] {
            return Some(Decision::duplicate());
        }
        let Some(slot) = spells.slot_of(target.person) else {
            return Some(Decision::not_eligible());
        };
        let mut years: Vec<(i32, Counters)> = Vec::new();
        for (position, invoice) in self.invoices[..=index].iter().enumerate() {
            if invoice.person != target.person || self.duplicate[position] {
                continue;
            }
            let pool = policy.pool_of_visit_type(&self.visit_types[usize::from(invoice.visit_type)])?;
            let claim = invoice.claim(spells.category_in_slot(slot, invoice.service_date), pool);
            let counters = counters_for(&mut years, invoice.service_date.year(), policy.pool_names().len());
            let decision = decide(policy, &claim, counters);
            if position == index {
                return Some(decision);
            }
        }
        None
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
        let count = self.invoices.len();
        // Each invoice's person slot in the spell book, looked up once;
        // duplicates and persons without a spell need no counters.
        let slots: Vec<u32> = self
            .invoices
            .par_iter()
            .zip(self.duplicate.par_iter())
            .map(|(invoice, duplicate)| match duplicate {
                true => NO_SLOT,
                false => spells.slot_of(invoice.person).unwrap_or(NO_SLOT),
            })
            .collect();
        let groups = PersonGroups::new(&slots, spells.person_count());
        drop(slots);
        // Every invoice's decision, in canonical order: written by the
        // tasks at their invoices' places (disjoint), read in order after.
        let decisions = PackedDecisions::new(count, &self.duplicate);
        let tasks = groups.tasks(rayon::current_num_threads() * 8);
        let category_count = policy.categories().len();
        let pool_count = policy.pool_names().len();
        let summaries: Vec<Summary> = tasks
            .into_par_iter()
            .map(|slot_range| {
                let mut tally = Tally::new(category_count, pool_count);
                let mut years: Vec<(i32, Counters)> = Vec::new();
                let mut seen: Vec<(CategoryId, PoolId)> = Vec::new();
                let mut decided = 0;
                for slot in slot_range {
                    years.clear();
                    seen.clear();
                    let mut assisted = false;
                    for &index in groups.invoices_of(slot) {
                        let index = index as usize;
                        let invoice = &self.invoices[index];
                        let category = spells.category_in_slot(slot as u32, invoice.service_date);
                        let claim = invoice.claim(category, pools[usize::from(invoice.visit_type)]);
                        let counters = counters_for(&mut years, invoice.service_date.year(), pool_count);
                        let decision = decide(policy, &claim, counters);
                        decided += 1;
                        tally.add(&decision, &mut seen, &mut assisted);
                        decisions.store(index, &CompactDecision::from_decision(&decision));
                    }
                }
                progress(decided);
                tally.into_summary()
            })
            .collect();

        let grouped = groups.len();
        drop(groups);
        let mut summary = Summary::default();
        for part in summaries {
            summary.merge(part);
        }
        let duplicates = self.duplicate.iter().filter(|duplicate| **duplicate).count() as u64;
        summary.outcomes[outcome_index(Outcome::Duplicate)] += duplicates;
        summary.outcomes[outcome_index(Outcome::NotEligible)] += count as u64 - duplicates - grouped as u64;
        Ok(BatchRun { decisions, summary })
    }
}

impl BatchInvoice {
    fn claim(&self, category: Option<CategoryId>, pool: PoolId) -> Claim {
        Claim {
            category,
            service_date: self.service_date,
            pool,
            base: self.base,
            out_of_scope_self_pay: self.out_of_scope_self_pay,
        }
    }
}

/// A person's counters for `year`, made on first use; a person's bills
/// span few years, so a short list beats a map.
fn counters_for(years: &mut Vec<(i32, Counters)>, year: i32, pool_count: usize) -> &mut Counters {
    let at = match years.iter().position(|(other, _)| *other == year) {
        Some(at) => at,
        None => {
            years.push((year, Counters::new(pool_count)));
            years.len() - 1
        }
    };
    &mut years[at].1
}

/// Invoice indexes grouped by person slot, each person's in canonical
/// order: a counting sort by slot. The pass then reads each person's
/// spells and counters once, and whole persons split across threads.
struct PersonGroups {
    /// Per slot, where its invoices start in `order`; one more at the end.
    starts: Vec<u32>,
    order: Vec<u32>,
}

impl PersonGroups {
    /// Groups the invoices whose slot is not [`NO_SLOT`].
    fn new(slots: &[u32], person_count: usize) -> PersonGroups {
        let mut starts = vec![0u32; person_count + 1];
        for &slot in slots {
            if slot != NO_SLOT {
                starts[slot as usize + 1] += 1;
            }
        }
        for slot in 0..person_count {
            starts[slot + 1] += starts[slot];
        }
        let mut order = vec![0u32; starts[person_count] as usize];
        let mut next = starts.clone();
        for (index, &slot) in slots.iter().enumerate() {
            if slot != NO_SLOT {
                order[next[slot as usize] as usize] = index as u32;
                next[slot as usize] += 1;
            }
        }
        PersonGroups { starts, order }
    }

    fn invoices_of(&self, slot: usize) -> &[u32] {
        &self.order[self.starts[slot] as usize..self.starts[slot + 1] as usize]
    }

    /// All grouped invoices.
    fn len(&self) -> usize {
        self.order.len()
    }

    /// About `count` ranges of whole persons, about equal in invoices.
    fn tasks(&self, count: usize) -> Vec<std::ops::Range<usize>> {
        let person_count = self.starts.len() - 1;
        let per_task = self.order.len().div_ceil(count.max(1)).max(1);
        let mut tasks = Vec::new();
        let mut first = 0usize;
        while first < person_count {
            let target = self.starts[first] as usize + per_task;
            let mut end = first + 1;
            while end < person_count && (self.starts[end] as usize) < target {
                end += 1;
            }
            tasks.push(first..end);
            first = end;
        }
        tasks
    }
}

/// Decisions in canonical order, three words each, that parallel tasks
/// can write at disjoint places without locks: a relaxed atomic store or
/// load of a word is a plain move.
#[derive(Debug)]
struct PackedDecisions {
    words: Vec<AtomicU64>,
}

impl PackedDecisions {
    /// Every invoice not eligible, but duplicates.
    fn new(count: usize, duplicate: &[bool]) -> PackedDecisions {
        let not_eligible = Self::pack(&CompactDecision::from_decision(&Decision::not_eligible()));
        let duplicate_words = Self::pack(&CompactDecision::from_decision(&Decision::duplicate()));
        let words = duplicate
            .iter()
            .take(count)
            .flat_map(|&duplicate| if duplicate { duplicate_words } else { not_eligible })
            .map(AtomicU64::new)
            .collect();
        PackedDecisions { words }
    }

    fn pack(decision: &CompactDecision) -> [u64; 3] {
        let tags = u64::from(decision.category)
            | u64::from(decision.version) << 16
            | u64::from(decision.pool) << 32
            | (outcome_index(decision.outcome) as u64) << 40;
        [
            decision.amount.fen() as u64,
            decision.deductible_applied.fen() as u64,
            tags,
        ]
    }

    fn store(&self, index: usize, decision: &CompactDecision) {
        for (word, value) in self.words[index * 3..index * 3 + 3]
            .iter()
            .zip(Self::pack(decision))
        {
            word.store(value, Ordering::Relaxed);
        }
    }

    fn load(&self, index: usize) -> CompactDecision {
        let [amount, deductible_applied, tags] =
            [0, 1, 2].map(|offset| self.words[index * 3 + offset].load(Ordering::Relaxed));
        CompactDecision {
            amount: Fen::from_fen(amount as i64),
            deductible_applied: Fen::from_fen(deductible_applied as i64),
            category: tags as u16,
            version: (tags >> 16) as u16,
            pool: (tags >> 32) as u8,
            outcome: Outcome::ALL[((tags >> 40) as usize).min(Outcome::ALL.len() - 1)],
        }
    }

    fn len(&self) -> usize {
        self.words.len() / 3
    }
}

/// A task's totals while it runs: a grid of (category, pool) rows.
struct Tally {
    pool_count: usize,
    rows: Vec<SummaryRow>,
    summary: Summary,
}

impl Tally {
    fn new(category_count: usize, pool_count: usize) -> Tally {
        Tally {
            pool_count,
            rows: vec![SummaryRow::default(); category_count * pool_count],
            summary: Summary::default(),
        }
    }

    /// Counts one decision of a person; `seen` and `assisted` are that
    /// person's, for the distinct-person counts.
    fn add(&mut self, decision: &Decision, seen: &mut Vec<(CategoryId, PoolId)>, assisted: &mut bool) {
        self.summary.outcomes[outcome_index(decision.outcome)] += 1;
        let (true, Some(category), Some(pool)) =
            (decision.outcome.counts(), decision.category, decision.pool)
        else {
            return;
        };
        let row = &mut self.rows[category.index() * self.pool_count + pool.index()];
        row.invoices += 1;
        row.base_total = Fen::from_fen(row.base_total.fen() + decision.base.fen());
        row.amount_total = Fen::from_fen(row.amount_total.fen() + decision.amount.fen());
        row.capped += u64::from(decision.outcome == Outcome::Capped);
        if !seen.contains(&(category, pool)) {
            seen.push((category, pool));
            row.people += 1;
        }
        if !*assisted {
            *assisted = true;
            self.summary.people_assisted += 1;
        }
        self.summary.amount_total = Fen::from_fen(self.summary.amount_total.fen() + decision.amount.fen());
    }

    fn into_summary(self) -> Summary {
        let mut summary = self.summary;
        for (index, row) in self.rows.into_iter().enumerate() {
            if row.invoices > 0 {
                let key = (
                    CategoryId((index / self.pool_count) as u16),
                    PoolId((index % self.pool_count) as u8),
                );
                summary.rows.insert(key, row);
            }
        }
        summary
    }
}

/// The slot of an invoice whose person holds no spell (or a duplicate).
const NO_SLOT: u32 = u32::MAX;

fn outcome_index(outcome: Outcome) -> usize {
    Outcome::ALL
        .iter()
        .position(|other| *other == outcome)
        .unwrap_or(0)
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
}

impl Summary {
    /// Adds the totals of another task; tasks hold disjoint persons, so
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
        self.people_assisted += other.people_assisted;
    }

    pub fn invoices(&self) -> u64 {
        self.outcomes.iter().sum()
    }

    pub fn count(&self, outcome: Outcome) -> u64 {
        self.outcomes[outcome_index(outcome)]
    }
}

/// The decisions of one run and their totals.
#[derive(Debug)]
pub struct BatchRun {
    decisions: PackedDecisions,
    pub summary: Summary,
}

impl BatchRun {
    /// The decision of the invoice at `index` in canonical order
    /// ([`Batch::invoices`]).
    pub fn decision(&self, index: usize) -> CompactDecision {
        self.decisions.load(index)
    }

    /// Every decision, in canonical order.
    pub fn decisions(&self) -> impl ExactSizeIterator<Item = CompactDecision> + '_ {
        (0..self.decisions.len()).map(|index| self.decision(index))
    }

    pub fn len(&self) -> usize {
        self.decisions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.decisions.len() == 0
    }
}
