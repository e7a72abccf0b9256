//! The assistance engine: steps 2 to 8 of `calculation.md` for one invoice
//! against one person-year's counters. Step 1 (duplicates) and the
//! canonical order belong to the caller that sees many invoices: the batch
//! engine ([`crate::batch`]) or the store's unique constraint.

use std::fmt;

use rustc_hash::FxHashMap;

use crate::ids::ResidentId;
use crate::money::{BasisPoints, Fen};
use crate::policy::{CategoryId, Policy, PoolId, VersionId};
use crate::records::{Invoice, Spell};
use crate::time::Date;

/// The outcome of a decision, as written in `results.csv`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    Assisted,
    Capped,
    Duplicate,
    NotEligible,
    NoRule,
}

impl Outcome {
    pub const ALL: [Outcome; 5] = [
        Outcome::Assisted,
        Outcome::Capped,
        Outcome::Duplicate,
        Outcome::NotEligible,
        Outcome::NoRule,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Assisted => "assisted",
            Outcome::Capped => "capped",
            Outcome::Duplicate => "duplicate",
            Outcome::NotEligible => "not_eligible",
            Outcome::NoRule => "no_rule",
        }
    }

    pub fn parse(text: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|outcome| outcome.as_str() == text)
    }

    /// Whether the decision grants money and counts (`assisted`, `capped`).
    pub fn counts(self) -> bool {
        matches!(self, Outcome::Assisted | Outcome::Capped)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A person's counters for one year (`calculation.md`, "Counters").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counters {
    deductible_used: Vec<Fen>,
    granted: Vec<Fen>,
    granted_total: Fen,
}

impl Counters {
    /// Zero counters for a policy with `pool_count` pools.
    pub fn new(pool_count: usize) -> Counters {
        Counters {
            deductible_used: vec![Fen::ZERO; pool_count],
            granted: vec![Fen::ZERO; pool_count],
            granted_total: Fen::ZERO,
        }
    }

    /// Counters as stored (e.g. by the database), per pool index.
    pub fn from_parts(deductible_used: Vec<Fen>, granted: Vec<Fen>, granted_total: Fen) -> Counters {
        Counters {
            deductible_used,
            granted,
            granted_total,
        }
    }

    pub fn deductible_used(&self, pool: PoolId) -> Fen {
        self.deductible_used
            .get(pool.index())
            .copied()
            .unwrap_or_default()
    }

    pub fn granted(&self, pool: PoolId) -> Fen {
        self.granted.get(pool.index()).copied().unwrap_or_default()
    }

    pub fn granted_total(&self) -> Fen {
        self.granted_total
    }

    fn grow_to(&mut self, pool: PoolId) {
        if self.granted.len() <= pool.index() {
            self.granted.resize(pool.index() + 1, Fen::ZERO);
            self.deductible_used.resize(pool.index() + 1, Fen::ZERO);
        }
    }

    /// Step 8: counts a decision. Only `assisted` and `capped` change counters.
    pub fn count(&mut self, decision: &Decision) {
        let (true, Some(pool)) = (decision.outcome.counts(), decision.pool) else {
            return;
        };
        self.grow_to(pool);
        let index = pool.index();
        // Counters are sums of amounts below 10^14 fen each: i64 holds
        // 92,233 of them at the largest; saturate rather than wrap.
        self.deductible_used[index] = Fen::from_fen(
            self.deductible_used[index]
                .fen()
                .saturating_add(decision.deductible_applied.fen()),
        );
        self.granted[index] = Fen::from_fen(self.granted[index].fen().saturating_add(decision.amount.fen()));
        self.granted_total = Fen::from_fen(self.granted_total.fen().saturating_add(decision.amount.fen()));
    }

    /// Gives back a decision (a reversal, 冲正): the exact inverse of
    /// [`Counters::count`].
    pub fn uncount(&mut self, decision: &Decision) {
        let (true, Some(pool)) = (decision.outcome.counts(), decision.pool) else {
            return;
        };
        self.grow_to(pool);
        let index = pool.index();
        self.deductible_used[index] = Fen::from_fen(
            self.deductible_used[index]
                .fen()
                .saturating_sub(decision.deductible_applied.fen()),
        );
        self.granted[index] = Fen::from_fen(self.granted[index].fen().saturating_sub(decision.amount.fen()));
        self.granted_total = Fen::from_fen(self.granted_total.fen().saturating_sub(decision.amount.fen()));
    }
}

/// What the engine needs to know of one invoice that is not a duplicate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The category that holds on the service date (lowest rank), if any.
    pub category: Option<CategoryId>,
    pub service_date: Date,
    /// The pool the visit type maps to.
    pub pool: PoolId,
    /// In-scope self-pay.
    pub base: Fen,
    pub out_of_scope_self_pay: Fen,
}

/// The engine's answer for one invoice, with every step that led to it:
/// the explanation that the citizen and the auditor see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub outcome: Outcome,
    /// Filled for `assisted`, `capped` and `no_rule`.
    pub category: Option<CategoryId>,
    /// Filled for `assisted`, `capped` and `no_rule`.
    pub pool: Option<PoolId>,
    /// The version in force on the service date, when there is one
    /// (never for `duplicate` and `not_eligible`).
    pub version: Option<VersionId>,
    /// The in-scope self-pay; zero unless assisted or capped.
    pub base: Fen,
    pub deductible_applied: Fen,
    /// `base − deductible_applied`.
    pub eligible: Fen,
    /// The out-of-scope self-pay the out-of-scope ratio applied to; zero
    /// unless assisted or capped.
    pub out_of_scope_self_pay: Fen,
    pub ratio: BasisPoints,
    pub out_of_scope_ratio: BasisPoints,
    /// `round(eligible × ratio)`.
    pub raw_in_scope: Fen,
    /// `round(out_of_scope_self_pay × out_of_scope_ratio)`.
    pub raw_out_of_scope: Fen,
    /// `raw_in_scope + raw_out_of_scope`: the amount before caps.
    pub raw: Fen,
    /// `max(0, pool cap − granted[pool])` before this invoice, when the pool has a cap.
    pub pool_cap_room: Option<Fen>,
    /// `max(0, annual cap − granted_total)` before this invoice, when the rule has one.
    pub annual_cap_room: Option<Fen>,
    /// What assistance pays.
    pub amount: Fen,
}

impl Decision {
    fn zero(outcome: Outcome) -> Decision {
        Decision {
            outcome,
            category: None,
            pool: None,
            version: None,
            base: Fen::ZERO,
            deductible_applied: Fen::ZERO,
            eligible: Fen::ZERO,
            out_of_scope_self_pay: Fen::ZERO,
            ratio: BasisPoints::ZERO,
            out_of_scope_ratio: BasisPoints::ZERO,
            raw_in_scope: Fen::ZERO,
            raw_out_of_scope: Fen::ZERO,
            raw: Fen::ZERO,
            pool_cap_room: None,
            annual_cap_room: None,
            amount: Fen::ZERO,
        }
    }

    /// Step 1: an earlier invoice had the same number.
    pub fn duplicate() -> Decision {
        Decision::zero(Outcome::Duplicate)
    }

    /// Step 2: no spell covers the service date.
    pub fn not_eligible() -> Decision {
        Decision::zero(Outcome::NotEligible)
    }

    /// The cap room that limited (or could have limited) the amount: the
    /// smaller of the pool's and the annual room.
    pub fn cap_room(&self) -> Option<Fen> {
        match (self.pool_cap_room, self.annual_cap_room) {
            (Some(pool), Some(annual)) => Some(pool.min(annual)),
            (room, None) | (None, room) => room,
        }
    }
}

/// Steps 3 to 7 of `calculation.md` for one invoice, then step 8 on
/// `counters` (the person's counters for the service date's year).
/// Step 2 is the caller's through `claim.category` (see [`SpellBook`]).
pub fn decide(policy: &Policy, claim: &Claim, counters: &mut Counters) -> Decision {
    // Step 2. Category.
    let Some(category) = claim.category else {
        return Decision::zero(Outcome::NotEligible);
    };
    // Step 3. Rule.
    let no_rule = |version: Option<VersionId>| Decision {
        category: Some(category),
        pool: Some(claim.pool),
        version,
        ..Decision::zero(Outcome::NoRule)
    };
    let Some(version_id) = policy.version_on(claim.service_date) else {
        return no_rule(None);
    };
    let Some(rule) = policy.version(version_id).rule(category) else {
        return no_rule(Some(version_id));
    };
    let Some(pool_rule) = rule.pool(claim.pool) else {
        return no_rule(Some(version_id));
    };
    // Step 4. Deductible.
    let room = pool_rule
        .deductible
        .checked_sub(counters.deductible_used(claim.pool))
        .unwrap_or(Fen::ZERO)
        .clamp_to_zero();
    let deductible_applied = claim.base.min(room);
    let eligible = Fen::from_fen(claim.base.fen() - deductible_applied.fen());
    // Step 5. Raw amount, each product rounded half up on its own.
    let raw_in_scope = eligible.times_ratio_round_half_up(pool_rule.ratio);
    let raw_out_of_scope = claim
        .out_of_scope_self_pay
        .times_ratio_round_half_up(pool_rule.out_of_scope_ratio);
    let raw = Fen::from_fen(raw_in_scope.fen() + raw_out_of_scope.fen());
    // Step 6. Caps.
    let mut amount = raw;
    let pool_cap_room = pool_rule.cap.map(|cap| {
        Fen::from_fen(cap.fen().saturating_sub(counters.granted(claim.pool).fen())).clamp_to_zero()
    });
    if let Some(room) = pool_cap_room {
        amount = amount.min(room);
    }
    let annual_cap_room = rule
        .annual_cap
        .map(|cap| Fen::from_fen(cap.fen().saturating_sub(counters.granted_total().fen())).clamp_to_zero());
    if let Some(room) = annual_cap_room {
        amount = amount.min(room);
    }
    // Step 7. Outcome.
    let outcome = if amount < raw {
        Outcome::Capped
    } else {
        Outcome::Assisted
    };
    let decision = Decision {
        outcome,
        category: Some(category),
        pool: Some(claim.pool),
        version: Some(version_id),
        base: claim.base,
        deductible_applied,
        eligible,
        out_of_scope_self_pay: claim.out_of_scope_self_pay,
        ratio: pool_rule.ratio,
        out_of_scope_ratio: pool_rule.out_of_scope_ratio,
        raw_in_scope,
        raw_out_of_scope,
        raw,
        pool_cap_room,
        annual_cap_room,
        amount,
    };
    // Step 8. Count.
    counters.count(&decision);
    decision
}

/// Step 2 for one person: among `spells` (the person's) that cover `date`,
/// the category with the lowest rank. Spells of categories the policy does
/// not define hold no category under it.
pub fn category_on(policy: &Policy, spells: &[Spell], date: Date) -> Option<CategoryId> {
    spells
        .iter()
        .filter(|spell| spell.covers(date))
        .filter_map(|spell| policy.category_by_code(spell.category()))
        .min_by_key(|category| policy.category(*category).rank)
}

/// One invoice, as real-time settlement sees it: the person's spells and
/// the counters of the service date's year as stored, the engine's steps 2
/// to 8 (step 1, duplicates, is the store's unique invoice number). The
/// batch engine decides the same way, person by person in canonical order.
/// `None` when the policy maps the invoice's visit type to no pool.
pub fn decide_invoice(
    policy: &Policy,
    person_spells: &[Spell],
    invoice: &Invoice,
    counters: &mut Counters,
) -> Option<Decision> {
    let pool = policy.pool_of_visit_type(&invoice.visit_type)?;
    let claim = Claim {
        category: category_on(policy, person_spells, invoice.service_date),
        service_date: invoice.service_date,
        pool,
        base: invoice.amounts.in_scope_self_pay(),
        out_of_scope_self_pay: invoice.amounts.out_of_scope_self_pay(),
    };
    Some(decide(policy, &claim, counters))
}

/// Every person's spells bound to one policy's categories, for step 2:
/// the category with the lowest rank among the spells covering a date.
///
/// Each person with a spell has a dense slot (0, 1, 2, …) so that callers
/// can keep per-person state in a vector instead of a map.
#[derive(Debug, Clone, Default)]
pub struct SpellBook {
    slots: FxHashMap<ResidentId, u32>,
    /// Per slot, its range in `entries`.
    ranges: Vec<(u32, u32)>,
    /// Each person's spells, lowest rank first.
    entries: Vec<SpellEntry>,
}

#[derive(Debug, Clone, Copy)]
struct SpellEntry {
    rank: i64,
    category: CategoryId,
    valid_from: Date,
    valid_to: Option<Date>,
}

/// A spell whose category the policy does not define.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownCategory {
    /// Index of the spell in the input.
    pub spell: usize,
    pub code: String,
}

impl SpellBook {
    /// Binds spells to a policy. Spells of categories the policy does not
    /// define are returned as errors, all of them.
    pub fn new<'a>(
        policy: &Policy,
        spells: impl IntoIterator<Item = &'a Spell>,
    ) -> Result<SpellBook, Vec<UnknownCategory>> {
        let mut unknown = Vec::new();
        let mut keyed = Vec::new();
        for (index, spell) in spells.into_iter().enumerate() {
            match SpellBook::bind(policy, spell) {
                Some(entry) => keyed.push(entry),
                None => unknown.push(UnknownCategory {
                    spell: index,
                    code: spell.category().to_owned(),
                }),
            }
        }
        if !unknown.is_empty() {
            return Err(unknown);
        }
        Ok(SpellBook::from_keyed(keyed))
    }

    /// Binds spells to a policy, leaving out those whose category the policy
    /// does not define (for a what-if policy that drops a category); returns
    /// how many were left out.
    pub fn new_lenient<'a>(
        policy: &Policy,
        spells: impl IntoIterator<Item = &'a Spell>,
    ) -> (SpellBook, usize) {
        let mut left_out = 0;
        let mut keyed = Vec::new();
        for spell in spells {
            match SpellBook::bind(policy, spell) {
                Some(entry) => keyed.push(entry),
                None => left_out += 1,
            }
        }
        (SpellBook::from_keyed(keyed), left_out)
    }

    fn bind(policy: &Policy, spell: &Spell) -> Option<(ResidentId, SpellEntry)> {
        let category = policy.category_by_code(spell.category())?;
        Some((
            spell.person(),
            SpellEntry {
                rank: policy.category(category).rank,
                category,
                valid_from: spell.valid_from(),
                valid_to: spell.valid_to(),
            },
        ))
    }

    fn from_keyed(mut keyed: Vec<(ResidentId, SpellEntry)>) -> SpellBook {
        keyed.sort_unstable_by_key(|(person, entry)| (*person, entry.rank, entry.valid_from, entry.valid_to));
        let mut slots = FxHashMap::default();
        let mut ranges = Vec::new();
        let mut entries = Vec::with_capacity(keyed.len());
        let mut start = 0usize;
        while start < keyed.len() {
            let person = keyed[start].0;
            let end = start
                + keyed[start..]
                    .iter()
                    .take_while(|(other, _)| *other == person)
                    .count();
            slots.insert(person, ranges.len() as u32);
            ranges.push((start as u32, (end - start) as u32));
            entries.extend(keyed[start..end].iter().map(|(_, entry)| *entry));
            start = end;
        }
        SpellBook {
            slots,
            ranges,
            entries,
        }
    }

    /// Step 2: the category with the lowest rank among the person's spells
    /// covering `date`.
    pub fn category_on(&self, person: ResidentId, date: Date) -> Option<CategoryId> {
        self.category_in_slot(self.slot_of(person)?, date)
    }

    /// The person's slot, if the person holds any spell.
    pub fn slot_of(&self, person: ResidentId) -> Option<u32> {
        self.slots.get(&person).copied()
    }

    /// Step 2 for the person in `slot`.
    pub fn category_in_slot(&self, slot: u32, date: Date) -> Option<CategoryId> {
        let (start, length) = self.ranges[slot as usize];
        self.entries[start as usize..(start + length) as usize]
            .iter()
            .find(|entry| entry.valid_from <= date && entry.valid_to.is_none_or(|valid_to| date <= valid_to))
            .map(|entry| entry.category)
    }

    /// How many persons hold at least one spell: slots are below this.
    pub fn person_count(&self) -> usize {
        self.ranges.len()
    }

    pub fn contains(&self, person: ResidentId) -> bool {
        self.slots.contains_key(&person)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{CategoryDraft, PolicyDraft, PoolRule, RuleDraft, VersionDraft};

    fn policy() -> Policy {
        Policy::from_draft(PolicyDraft {
            name: None,
            categories: vec![CategoryDraft {
                code: "DB".into(),
                name: None,
                rank: 1,
            }],
            pools: vec![("inpatient".into(), "inpatient".into())],
            versions: vec![VersionDraft {
                effective_from: Date::parse("2024-01-01").unwrap(),
                rules: vec![RuleDraft {
                    category: "DB".into(),
                    annual_cap: Some(Fen::from_fen(100_000)),
                    pools: vec![(
                        "inpatient".into(),
                        PoolRule {
                            deductible: Fen::from_fen(10_000),
                            ratio: BasisPoints::new(8000).unwrap(),
                            out_of_scope_ratio: BasisPoints::new(5000).unwrap(),
                            cap: Some(Fen::from_fen(60_000)),
                        },
                    )],
                }],
            }],
        })
        .unwrap()
    }

    fn claim(policy: &Policy, base: i64, out_of_scope: i64) -> Claim {
        Claim {
            category: policy.category_by_code("DB"),
            service_date: Date::parse("2024-05-01").unwrap(),
            pool: policy.pool_of_visit_type("inpatient").unwrap(),
            base: Fen::from_fen(base),
            out_of_scope_self_pay: Fen::from_fen(out_of_scope),
        }
    }

    #[test]
    fn a_decision_carries_every_step_of_its_explanation() {
        let policy = policy();
        let mut counters = Counters::new(1);
        let decision = decide(&policy, &claim(&policy, 50_000, 1_001), &mut counters);
        assert_eq!(decision.outcome, Outcome::Assisted);
        assert_eq!(decision.deductible_applied, Fen::from_fen(10_000));
        assert_eq!(decision.eligible, Fen::from_fen(40_000));
        assert_eq!(decision.raw_in_scope, Fen::from_fen(32_000));
        // 1,001 fen × 0.5 = 500.5 → 501.
        assert_eq!(decision.raw_out_of_scope, Fen::from_fen(501));
        assert_eq!(decision.raw, Fen::from_fen(32_501));
        assert_eq!(decision.pool_cap_room, Some(Fen::from_fen(60_000)));
        assert_eq!(decision.annual_cap_room, Some(Fen::from_fen(100_000)));
        assert_eq!(decision.cap_room(), Some(Fen::from_fen(60_000)));
        assert_eq!(decision.amount, Fen::from_fen(32_501));
        let second = decide(&policy, &claim(&policy, 50_000, 0), &mut counters);
        assert_eq!(second.outcome, Outcome::Capped);
        assert_eq!(second.pool_cap_room, Some(Fen::from_fen(60_000 - 32_501)));
        assert_eq!(second.amount, Fen::from_fen(60_000 - 32_501));
    }

    #[test]
    fn uncounting_a_decision_gives_back_exactly_what_it_counted() {
        let policy = policy();
        let pool = policy.pool_of_visit_type("inpatient").unwrap();
        let mut counters = Counters::new(1);
        let first = decide(&policy, &claim(&policy, 4_000, 0), &mut counters);
        let before = counters.clone();
        let second = decide(&policy, &claim(&policy, 30_000, 200), &mut counters);
        assert_ne!(counters, before);
        counters.uncount(&second);
        assert_eq!(counters, before);
        counters.uncount(&first);
        assert_eq!(counters, Counters::new(1));
        // Stored counters decide the same as counters built up in memory.
        let mut stored = Counters::from_parts(vec![Fen::from_fen(4_000)], vec![Fen::ZERO], Fen::ZERO);
        assert_eq!(decide(&policy, &claim(&policy, 30_000, 200), &mut stored), second);
        assert_eq!(counters.deductible_used(pool), Fen::ZERO);
    }

    #[test]
    fn decisions_that_grant_nothing_leave_the_counters_alone() {
        let policy = policy();
        let mut counters = Counters::new(1);
        let mut not_eligible = claim(&policy, 5_000, 0);
        not_eligible.category = None;
        assert_eq!(
            decide(&policy, &not_eligible, &mut counters).outcome,
            Outcome::NotEligible
        );
        let mut too_early = claim(&policy, 5_000, 0);
        too_early.service_date = Date::parse("2023-12-31").unwrap();
        let decision = decide(&policy, &too_early, &mut counters);
        assert_eq!((decision.outcome, decision.version), (Outcome::NoRule, None));
        assert_eq!(counters, Counters::new(1));
    }
}
