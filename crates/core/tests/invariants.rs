//! Property tests of what always holds (`calculation.md`, "What always holds").

use std::collections::{BTreeMap, BTreeSet};

use jiuzhu_core::{
    decide_invoice, BasisPoints, Batch, BatchInvoice, BillAmounts, CategoryDraft, Counters, Date, Fen,
    Hospital, Invoice, InvoiceNo, Outcome, Policy, PolicyDraft, PoolRule, ResidentId, RuleDraft, Spell,
    SpellBook, Timestamp, VersionDraft,
};
use proptest::prelude::*;

const CATEGORIES: [&str; 3] = ["TK", "DB", "DSR"];
const VISITS: [&str; 3] = ["outpatient", "emergency", "inpatient"];

fn pool_rule() -> impl Strategy<Value = PoolRule> {
    (
        0i64..3000,
        0u16..=10_000,
        0u16..=10_000,
        proptest::option::of(0i64..20_000),
    )
        .prop_map(|(deductible, ratio, out_of_scope_ratio, cap)| PoolRule {
            deductible: Fen::from_fen(deductible * 10),
            ratio: BasisPoints::new(ratio).unwrap(),
            out_of_scope_ratio: BasisPoints::new(out_of_scope_ratio).unwrap(),
            cap: cap.map(|cap| Fen::from_fen(cap * 10)),
        })
}

fn rule_draft(category: &'static str) -> impl Strategy<Value = Option<RuleDraft>> {
    proptest::option::weighted(
        0.85,
        (
            proptest::option::of(0i64..30_000),
            proptest::option::weighted(0.9, pool_rule()),
            proptest::option::weighted(0.9, pool_rule()),
        )
            .prop_map(move |(annual_cap, outpatient, inpatient)| {
                let mut pools = Vec::new();
                if let Some(rule) = outpatient {
                    pools.push(("outpatient".to_owned(), rule));
                }
                if let Some(rule) = inpatient {
                    pools.push(("inpatient".to_owned(), rule));
                }
                RuleDraft {
                    category: category.into(),
                    annual_cap: annual_cap.map(|cap| Fen::from_fen(cap * 10)),
                    pools,
                }
            }),
    )
}

fn policy() -> impl Strategy<Value = Policy> {
    let version = (0i32..900, rule_draft("TK"), rule_draft("DB"), rule_draft("DSR"));
    (
        proptest::collection::vec(version, 1..4),
        Just(vec![1i64, 2, 3]).prop_shuffle(),
    )
        .prop_map(|(versions, ranks)| {
            let start = Date::parse("2023-06-01").unwrap();
            let mut seen = BTreeSet::new();
            let versions = versions
                .into_iter()
                .filter(|(offset, ..)| seen.insert(*offset))
                .map(|(offset, tk, db, dsr)| VersionDraft {
                    effective_from: start.add_days(offset).unwrap(),
                    rules: [tk, db, dsr].into_iter().flatten().collect(),
                })
                .collect();
            Policy::from_draft(PolicyDraft {
                name: None,
                categories: CATEGORIES
                    .iter()
                    .zip(ranks)
                    .map(|(code, rank)| CategoryDraft {
                        code: (*code).into(),
                        name: None,
                        rank,
                    })
                    .collect(),
                pools: vec![
                    ("outpatient".into(), "outpatient".into()),
                    ("emergency".into(), "outpatient".into()),
                    ("inpatient".into(), "inpatient".into()),
                ],
                versions,
            })
            .unwrap()
        })
}

fn person(n: u8) -> ResidentId {
    ResidentId::from_leading_digits(44052418800101000 + u64::from(n)).unwrap()
}

fn spells() -> impl Strategy<Value = Vec<Spell>> {
    proptest::collection::vec(
        (0u8..6, 0usize..3, 0i32..900, proptest::option::of(0i32..400)),
        0..12,
    )
    .prop_map(|rows| {
        let start = Date::parse("2023-06-01").unwrap();
        rows.into_iter()
            .map(|(who, category, from, length)| {
                let valid_from = start.add_days(from).unwrap();
                let valid_to = length.map(|length| valid_from.add_days(length).unwrap());
                Spell::new(person(who), CATEGORIES[category], valid_from, valid_to, None).unwrap()
            })
            .collect()
    })
}

fn invoices() -> impl Strategy<Value = Vec<BatchInvoice>> {
    let invoice = (
        0u8..6,
        0u8..40,
        0usize..3,
        0i32..900,
        0i64..50,
        0i64..400_000,
        0i64..50_000,
        0usize..3,
    );
    proptest::collection::vec(invoice, 0..60).prop_map(|rows| {
        let start = Date::parse("2023-06-01").unwrap();
        rows.into_iter()
            .enumerate()
            .map(
                |(position, (who, number, visit, service, delay_hours, base, out_of_scope, offset))| {
                    let service_date = start.add_days(service).unwrap();
                    let offsets = ["+08:00", "Z", "-05:00"];
                    let settled = format!("{service_date}T{:02}:00:00{}", delay_hours % 24, offsets[offset]);
                    BatchInvoice {
                        settled_at: Timestamp::parse(&settled).unwrap(),
                        invoice_no: InvoiceNo::parse(&format!("N{number}")).unwrap(),
                        person: person(who),
                        base: Fen::from_fen(base),
                        out_of_scope_self_pay: Fen::from_fen(out_of_scope),
                        service_date,
                        position: position as u32,
                        visit_type: visit as u16,
                    }
                },
            )
            // Rows that tie on both settled_at and invoice_no are ordered by
            // their position alone; keep one of each such pair so that a
            // reordering cannot change which one comes first.
            .fold(Vec::<BatchInvoice>::new(), |mut kept, invoice| {
                if !kept.iter().any(|other| {
                    other.settled_at == invoice.settled_at && other.invoice_no == invoice.invoice_no
                }) {
                    let position = kept.len() as u32;
                    kept.push(BatchInvoice { position, ..invoice });
                }
                kept
            })
    })
}

/// Each invoice's result as text, in canonical order, with the input
/// position left out (it is the only thing a reordering may change).
fn results(policy: &Policy, spells: &[Spell], invoices: Vec<BatchInvoice>) -> Vec<String> {
    let batch = Batch::new(invoices, VISITS.iter().map(|visit| visit.to_string()).collect());
    let book = SpellBook::new(policy, spells).unwrap();
    let run = batch.run(policy, &book, &|_| {}).unwrap();
    batch
        .invoices()
        .iter()
        .zip(run.decisions())
        .map(|(invoice, decision)| {
            format!(
                "{} {} {} {} {} {:?} {:?} {:?} {:?} {}",
                invoice.invoice_no,
                invoice.person,
                invoice.settled_at,
                invoice.base,
                invoice.out_of_scope_self_pay,
                decision.category(),
                decision.pool(),
                decision.version(),
                decision.outcome,
                decision.amount
            )
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn no_invoice_number_is_assisted_twice(policy in policy(), spells in spells(), invoices in invoices()) {
        let batch = Batch::new(invoices, VISITS.iter().map(|visit| visit.to_string()).collect());
        let book = SpellBook::new(&policy, &spells).unwrap();
        let run = batch.run(&policy, &book, &|_| {}).unwrap();
        let mut first_seen = BTreeSet::new();
        for (invoice, decision) in batch.invoices().iter().zip(run.decisions()) {
            let first = first_seen.insert(invoice.invoice_no.to_string());
            prop_assert_eq!(decision.outcome == Outcome::Duplicate, !first);
        }
    }

    #[test]
    fn caps_are_never_exceeded_and_amounts_never_exceed_what_the_person_paid(
        policy in policy(), spells in spells(), invoices in invoices()
    ) {
        let batch = Batch::new(invoices, VISITS.iter().map(|visit| visit.to_string()).collect());
        let book = SpellBook::new(&policy, &spells).unwrap();
        let run = batch.run(&policy, &book, &|_| {}).unwrap();
        let mut granted_per_pool: BTreeMap<(ResidentId, i32, usize), i64> = BTreeMap::new();
        let mut granted_per_year: BTreeMap<(ResidentId, i32), i64> = BTreeMap::new();
        let mut largest_pool_cap: BTreeMap<(ResidentId, i32, usize), Option<i64>> = BTreeMap::new();
        let mut largest_annual_cap: BTreeMap<(ResidentId, i32), Option<i64>> = BTreeMap::new();
        for (invoice, decision) in batch.invoices().iter().zip(run.decisions()) {
            prop_assert!(decision.amount.fen() >= 0);
            prop_assert!(decision.amount.fen() <= invoice.base.fen() + invoice.out_of_scope_self_pay.fen());
            if !decision.outcome.counts() {
                prop_assert_eq!(decision.amount, Fen::ZERO);
                continue;
            }
            let pool = decision.pool().unwrap();
            let rule = policy.version(decision.version().unwrap()).rule(decision.category().unwrap()).unwrap();
            let year = invoice.service_date.year();
            let pool_key = (invoice.person, year, pool.index());
            *granted_per_pool.entry(pool_key).or_default() += decision.amount.fen();
            *granted_per_year.entry((invoice.person, year)).or_default() += decision.amount.fen();
            // None means "uncapped somewhere that year": no bound to check.
            let cap = rule.pool(pool).unwrap().cap.map(Fen::fen);
            let largest = largest_pool_cap.entry(pool_key).or_insert(cap);
            *largest = match (*largest, cap) { (Some(a), Some(b)) => Some(a.max(b)), _ => None };
            let annual = rule.annual_cap.map(Fen::fen);
            let largest = largest_annual_cap.entry((invoice.person, year)).or_insert(annual);
            *largest = match (*largest, annual) { (Some(a), Some(b)) => Some(a.max(b)), _ => None };
        }
        for (key, granted) in &granted_per_pool {
            if let Some(cap) = largest_pool_cap[key] {
                prop_assert!(*granted <= cap, "{:?}: granted {} over cap {}", key, granted, cap);
            }
        }
        for (key, granted) in &granted_per_year {
            if let Some(cap) = largest_annual_cap[key] {
                prop_assert!(*granted <= cap, "{:?}: granted {} over annual cap {}", key, granted, cap);
            }
        }
    }

    #[test]
    fn the_result_does_not_depend_on_the_order_of_input_rows(
        policy in policy(),
        spells in spells(),
        invoices in invoices(),
        seed in any::<u64>(),
    ) {
        let expected = results(&policy, &spells, invoices.clone());
        // Reverse and rotate the rows of both files: positions change with
        // them, as they would in a reordered file.
        let mut shuffled = invoices;
        shuffled.reverse();
        let rotate = if shuffled.is_empty() { 0 } else { (seed as usize) % shuffled.len() };
        shuffled.rotate_left(rotate);
        // Positions only break ties between rows that are identical in every
        // other key; renumbering keeps identical rows interchangeable.
        for (position, invoice) in shuffled.iter_mut().enumerate() {
            invoice.position = position as u32;
        }
        let mut spells = spells;
        spells.reverse();
        prop_assert_eq!(results(&policy, &spells, shuffled), expected);
    }

    #[test]
    fn the_result_does_not_depend_on_the_number_of_threads(
        policy in policy(), spells in spells(), invoices in invoices()
    ) {
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let five = rayon::ThreadPoolBuilder::new().num_threads(5).build().unwrap();
        let single = one.install(|| results(&policy, &spells, invoices.clone()));
        let several = five.install(|| results(&policy, &spells, invoices));
        prop_assert_eq!(single, several);
    }

    #[test]
    fn explaining_a_bill_replays_the_same_decision_the_run_made(
        policy in policy(), spells in spells(), invoices in invoices()
    ) {
        let batch = Batch::new(invoices, VISITS.iter().map(|visit| visit.to_string()).collect());
        let book = SpellBook::new(&policy, &spells).unwrap();
        let run = batch.run(&policy, &book, &|_| {}).unwrap();
        for (index, compact) in run.decisions().enumerate() {
            let full = batch.explain(&policy, &book, index).unwrap();
            prop_assert_eq!(full.outcome, compact.outcome);
            prop_assert_eq!(full.amount, compact.amount);
            prop_assert_eq!(full.deductible_applied, compact.deductible_applied);
            prop_assert_eq!((full.category, full.pool, full.version), (compact.category(), compact.pool(), compact.version()));
            prop_assert!(!full.explanation(&policy).is_empty());
        }
    }

    #[test]
    fn settling_each_bill_on_its_own_agrees_with_the_batch_to_the_fen(
        policy in policy(), spells in spells(), invoices in invoices()
    ) {
        let batch = Batch::new(invoices, VISITS.iter().map(|visit| visit.to_string()).collect());
        let book = SpellBook::new(&policy, &spells).unwrap();
        let run = batch.run(&policy, &book, &|_| {}).unwrap();
        // As the counter would: one bill at a time, in canonical order,
        // against the person's stored counters for the service year.
        let mut stored: BTreeMap<(ResidentId, i32), Counters> = BTreeMap::new();
        let mut seen_numbers = BTreeSet::new();
        for (index, record) in batch.invoices().iter().enumerate() {
            let expected = run.decision(index);
            if !seen_numbers.insert(record.invoice_no.to_string()) {
                prop_assert_eq!(expected.outcome, Outcome::Duplicate);
                continue;
            }
            let invoice = Invoice {
                invoice_no: record.invoice_no.clone(),
                person: record.person,
                hospital: Hospital::parse("H1").unwrap(),
                visit_type: VISITS[usize::from(record.visit_type)].to_owned(),
                service_date: record.service_date,
                settled_at: record.settled_at.clone(),
                amounts: BillAmounts::new(
                    Fen::from_fen(record.base.fen() + record.out_of_scope_self_pay.fen()),
                    Fen::ZERO,
                    record.base,
                    record.out_of_scope_self_pay,
                ).unwrap(),
            };
            let person_spells: Vec<Spell> =
                spells.iter().filter(|spell| spell.person() == record.person).cloned().collect();
            let counters = stored
                .entry((record.person, record.service_date.year()))
                .or_insert_with(|| Counters::new(policy.pool_names().len()));
            let decision = decide_invoice(&policy, &person_spells, &invoice, counters).unwrap();
            prop_assert_eq!(decision.outcome, expected.outcome);
            prop_assert_eq!(decision.amount, expected.amount);
            prop_assert_eq!(decision.deductible_applied, expected.deductible_applied);
            prop_assert_eq!(decision.category, expected.category());
            prop_assert_eq!(decision.version, expected.version());
        }
    }
}
