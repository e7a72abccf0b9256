//! The engine, step by step, as `calculation.md` says.

use jiuzhu_core::{
    canonical_order, BasisPoints, Batch, BatchInvoice, BatchRun, BillAmounts, CategoryDraft, Date, Fen,
    Hospital, Invoice, InvoiceNo, Outcome, Policy, PolicyDraft, PoolRule, ResidentId, RuleDraft, Spell,
    SpellBook, Timestamp, VersionDraft,
};

fn date(text: &str) -> Date {
    Date::parse(text).unwrap()
}

fn yuan(text: &str) -> Fen {
    Fen::parse_yuan(text).unwrap()
}

fn ratio(text: &str) -> BasisPoints {
    BasisPoints::parse_ratio(text).unwrap()
}

fn person(n: u64) -> ResidentId {
    ResidentId::from_leading_digits(11010519491231000 + n).unwrap()
}

fn pool(deductible: &str, ratio_text: &str, cap: Option<&str>) -> PoolRule {
    PoolRule {
        deductible: yuan(deductible),
        ratio: ratio(ratio_text),
        out_of_scope_ratio: BasisPoints::ZERO,
        cap: cap.map(yuan),
    }
}

fn rule(category: &str, annual_cap: Option<&str>, pools: Vec<(&str, PoolRule)>) -> RuleDraft {
    RuleDraft {
        category: category.into(),
        annual_cap: annual_cap.map(yuan),
        pools: pools
            .into_iter()
            .map(|(name, rule)| (name.to_owned(), rule))
            .collect(),
    }
}

fn policy(versions: Vec<(&str, Vec<RuleDraft>)>) -> Policy {
    Policy::from_draft(PolicyDraft {
        name: None,
        categories: vec![
            CategoryDraft {
                code: "TK".into(),
                name: None,
                rank: 1,
            },
            CategoryDraft {
                code: "DB".into(),
                name: None,
                rank: 2,
            },
            CategoryDraft {
                code: "DSR".into(),
                name: None,
                rank: 4,
            },
        ],
        pools: vec![
            ("outpatient".into(), "outpatient".into()),
            ("emergency".into(), "outpatient".into()),
            ("inpatient".into(), "inpatient".into()),
            ("dental".into(), "dental".into()),
        ],
        versions: versions
            .into_iter()
            .map(|(from, rules)| VersionDraft {
                effective_from: date(from),
                rules,
            })
            .collect(),
    })
    .unwrap()
}

fn spell(who: u64, category: &str, from: &str, to: Option<&str>) -> Spell {
    Spell::new(person(who), category, date(from), to.map(date), None).unwrap()
}

/// An invoice: number, person, visit type, service date, settled_at, base, out-of-scope.
struct Bill<'a> {
    no: &'a str,
    who: u64,
    visit: &'a str,
    service: &'a str,
    settled: &'a str,
    base: &'a str,
    out_of_scope: &'a str,
}

fn bill<'a>(
    no: &'a str,
    who: u64,
    visit: &'a str,
    service: &'a str,
    settled: &'a str,
    base: &'a str,
) -> Bill<'a> {
    Bill {
        no,
        who,
        visit,
        service,
        settled,
        base,
        out_of_scope: "0",
    }
}

const VISITS: [&str; 4] = ["outpatient", "emergency", "inpatient", "dental"];

fn run(policy: &Policy, spells: &[Spell], bills: &[Bill]) -> (Batch, BatchRun) {
    let invoices = bills
        .iter()
        .enumerate()
        .map(|(position, bill)| BatchInvoice {
            settled_at: Timestamp::parse(bill.settled).unwrap(),
            invoice_no: InvoiceNo::parse(bill.no).unwrap(),
            person: person(bill.who),
            base: yuan(bill.base),
            out_of_scope_self_pay: yuan(bill.out_of_scope),
            service_date: date(bill.service),
            position: position as u32,
            visit_type: VISITS.iter().position(|visit| *visit == bill.visit).unwrap() as u16,
        })
        .collect();
    let batch = Batch::new(invoices, VISITS.iter().map(|visit| visit.to_string()).collect());
    let book = SpellBook::new(policy, spells).unwrap();
    let result = batch.run(policy, &book, &|_| {}).unwrap();
    (batch, result)
}

/// (invoice_no, outcome, deductible_applied, amount) in canonical order.
fn outcomes(batch: &Batch, result: &BatchRun) -> Vec<(String, Outcome, Fen, Fen)> {
    batch
        .invoices()
        .iter()
        .zip(result.decisions())
        .map(|(invoice, decision)| {
            (
                invoice.invoice_no.to_string(),
                decision.outcome,
                decision.deductible_applied,
                decision.amount,
            )
        })
        .collect()
}

fn row(no: &str, outcome: Outcome, deductible: &str, amount: &str) -> (String, Outcome, Fen, Fen) {
    (no.to_owned(), outcome, yuan(deductible), yuan(amount))
}

const T0: &str = "2024-03-01T09:00:00+08:00";
const T1: &str = "2024-03-02T09:00:00+08:00";
const T2: &str = "2024-03-03T09:00:00+08:00";
const T3: &str = "2024-03-04T09:00:00+08:00";

#[test]
fn half_a_fen_rounds_up_on_each_product_separately() {
    let mut in_half = pool("0", "0.5", None);
    in_half.out_of_scope_ratio = ratio("0.5");
    let policy = policy(vec![(
        "2024-01-01",
        vec![rule("DB", None, vec![("outpatient", in_half)])],
    )]);
    let spells = [spell(1, "DB", "2024-01-01", None)];
    // 0.05 × 0.5 = 0.025 → 0.03, and 0.01 × 0.5 = 0.005 → 0.01: raw 0.04, not round(0.03) = 0.03.
    let bills = [Bill {
        out_of_scope: "0.01",
        ..bill("A", 1, "outpatient", "2024-03-01", T0, "0.05")
    }];
    let (batch, result) = run(&policy, &spells, &bills);
    assert_eq!(
        outcomes(&batch, &result),
        vec![row("A", Outcome::Assisted, "0", "0.04")]
    );
}

#[test]
fn a_deductible_is_split_over_several_invoices() {
    let policy = policy(vec![(
        "2024-01-01",
        vec![rule("DB", None, vec![("inpatient", pool("1000", "0.8", None))])],
    )]);
    let spells = [spell(1, "DB", "2024-01-01", None)];
    let bills = [
        bill("A", 1, "inpatient", "2024-03-01", T0, "400"),
        bill("B", 1, "inpatient", "2024-03-02", T1, "500"),
        bill("C", 1, "inpatient", "2024-03-03", T2, "300"),
        bill("D", 1, "inpatient", "2024-03-04", T3, "100"),
    ];
    let (batch, result) = run(&policy, &spells, &bills);
    assert_eq!(
        outcomes(&batch, &result),
        vec![
            // All of the base goes to the deductible: 0 assisted, not capped.
            row("A", Outcome::Assisted, "400", "0"),
            row("B", Outcome::Assisted, "500", "0"),
            // 100 left of the deductible; 200 × 0.8 = 160.
            row("C", Outcome::Assisted, "100", "160"),
            row("D", Outcome::Assisted, "0", "80"),
        ]
    );
}

#[test]
fn a_deductible_is_per_pool_and_per_year() {
    let policy = policy(vec![(
        "2024-01-01",
        vec![rule(
            "DB",
            None,
            vec![
                ("inpatient", pool("100", "1", None)),
                ("outpatient", pool("100", "1", None)),
            ],
        )],
    )]);
    let spells = [spell(1, "DB", "2024-01-01", None)];
    let bills = [
        bill("A", 1, "inpatient", "2024-03-01", T0, "150"),
        bill("B", 1, "outpatient", "2024-03-01", T1, "150"),
        bill(
            "C",
            1,
            "inpatient",
            "2025-01-02",
            "2025-01-02T10:00:00+08:00",
            "150",
        ),
    ];
    let (batch, result) = run(&policy, &spells, &bills);
    assert_eq!(
        outcomes(&batch, &result),
        vec![
            row("A", Outcome::Assisted, "100", "50"),
            row("B", Outcome::Assisted, "100", "50"),
            row("C", Outcome::Assisted, "100", "50"),
        ]
    );
}

#[test]
fn a_pool_cap_hit_in_the_middle_of_an_invoice_caps_it() {
    let policy = policy(vec![(
        "2024-01-01",
        vec![rule(
            "DB",
            None,
            vec![("outpatient", pool("0", "0.7", Some("3000")))],
        )],
    )]);
    let spells = [spell(1, "DB", "2024-01-01", None)];
    let bills = [
        bill("A", 1, "outpatient", "2024-03-01", T0, "4000"),
        bill("B", 1, "emergency", "2024-03-02", T1, "300"),
        bill("C", 1, "outpatient", "2024-03-03", T2, "100"),
        bill("D", 1, "outpatient", "2024-03-04", T3, "0"),
    ];
    let (batch, result) = run(&policy, &spells, &bills);
    assert_eq!(
        outcomes(&batch, &result),
        vec![
            row("A", Outcome::Assisted, "0", "2800"),
            // 210 raw, 200 room left in the pool (emergency draws on outpatient).
            row("B", Outcome::Capped, "0", "200"),
            row("C", Outcome::Capped, "0", "0"),
            // Nothing raw, nothing capped.
            row("D", Outcome::Assisted, "0", "0"),
        ]
    );
}

#[test]
fn an_annual_cap_limits_all_pools_together() {
    let policy = policy(vec![(
        "2024-01-01",
        vec![rule(
            "TK",
            Some("1000"),
            vec![
                ("inpatient", pool("0", "1", None)),
                ("outpatient", pool("0", "1", Some("800"))),
            ],
        )],
    )]);
    let spells = [spell(1, "TK", "2024-01-01", None)];
    let bills = [
        bill("A", 1, "outpatient", "2024-03-01", T0, "900"),
        bill("B", 1, "inpatient", "2024-03-02", T1, "500"),
        bill(
            "C",
            1,
            "inpatient",
            "2025-03-02",
            "2025-03-02T10:00:00+08:00",
            "500",
        ),
    ];
    let (batch, result) = run(&policy, &spells, &bills);
    assert_eq!(
        outcomes(&batch, &result),
        vec![
            row("A", Outcome::Capped, "0", "800"),
            row("B", Outcome::Capped, "0", "200"),
            // A new year, new counters.
            row("C", Outcome::Assisted, "0", "500"),
        ]
    );
}

#[test]
fn the_lowest_rank_wins_among_categories_covering_the_date() {
    let policy = policy(vec![(
        "2024-01-01",
        vec![
            rule("TK", None, vec![("inpatient", pool("0", "1", None))]),
            rule("DB", None, vec![("inpatient", pool("0", "0.9", None))]),
            rule("DSR", None, vec![("inpatient", pool("0", "0.5", None))]),
        ],
    )]);
    let spells = [
        spell(1, "DSR", "2024-01-01", None),
        spell(1, "DB", "2024-03-01", Some("2024-03-01")),
        spell(1, "TK", "2024-03-03", None),
    ];
    let bills = [
        bill("A", 1, "inpatient", "2024-03-01", T0, "100"),
        bill("B", 1, "inpatient", "2024-03-02", T1, "100"),
        bill("C", 1, "inpatient", "2024-03-03", T2, "100"),
    ];
    let (batch, result) = run(&policy, &spells, &bills);
    let categories: Vec<&str> = result
        .decisions()
        .map(|decision| policy.category(decision.category().unwrap()).code.as_str())
        .collect();
    assert_eq!(categories, ["DB", "DSR", "TK"]);
    assert_eq!(
        outcomes(&batch, &result)
            .into_iter()
            .map(|row| row.3)
            .collect::<Vec<_>>(),
        [yuan("90"), yuan("50"), yuan("100")]
    );
}

#[test]
fn a_category_change_mid_year_carries_the_counters_over() {
    // 80,000 cap as DSR, then 150,000 as TK: up to 150,000 in total that year.
    let policy = policy(vec![(
        "2024-01-01",
        vec![
            rule("TK", Some("150000"), vec![("inpatient", pool("0", "1", None))]),
            rule("DSR", Some("80000"), vec![("inpatient", pool("500", "1", None))]),
        ],
    )]);
    let spells = [
        spell(1, "DSR", "2024-01-01", Some("2024-05-31")),
        spell(1, "TK", "2024-06-01", None),
    ];
    let bills = [
        bill(
            "A",
            1,
            "inpatient",
            "2024-03-01",
            "2024-03-10T09:00:00+08:00",
            "90000",
        ),
        bill(
            "B",
            1,
            "inpatient",
            "2024-07-01",
            "2024-07-10T09:00:00+08:00",
            "100000",
        ),
        bill(
            "C",
            1,
            "inpatient",
            "2024-08-01",
            "2024-08-10T09:00:00+08:00",
            "100",
        ),
    ];
    let (batch, result) = run(&policy, &spells, &bills);
    assert_eq!(
        outcomes(&batch, &result),
        vec![
            // 500 deductible, 89,500 raw, capped at 80,000.
            row("A", Outcome::Capped, "500", "80000"),
            // TK has no deductible; 70,000 of room left under 150,000.
            row("B", Outcome::Capped, "0", "70000"),
            row("C", Outcome::Capped, "0", "0"),
        ]
    );
}

#[test]
fn the_version_in_force_on_the_service_date_applies() {
    let policy = policy(vec![
        (
            "2024-01-01",
            vec![rule("DB", None, vec![("inpatient", pool("0", "0.5", None))])],
        ),
        (
            "2024-07-01",
            vec![rule("DB", None, vec![("inpatient", pool("0", "0.9", None))])],
        ),
    ]);
    let spells = [spell(1, "DB", "2023-01-01", None)];
    let bills = [
        bill(
            "A",
            1,
            "inpatient",
            "2023-12-31",
            "2024-01-05T09:00:00+08:00",
            "100",
        ),
        bill(
            "B",
            1,
            "inpatient",
            "2024-06-30",
            "2024-07-05T09:00:00+08:00",
            "100",
        ),
        bill(
            "C",
            1,
            "inpatient",
            "2024-07-01",
            "2024-07-05T09:00:01+08:00",
            "100",
        ),
    ];
    let (batch, result) = run(&policy, &spells, &bills);
    let versions: Vec<Option<Date>> = result
        .decisions()
        .map(|decision| {
            decision
                .version()
                .map(|version| policy.version(version).effective_from)
        })
        .collect();
    assert_eq!(
        versions,
        [None, Some(date("2024-01-01")), Some(date("2024-07-01"))]
    );
    assert_eq!(
        outcomes(&batch, &result),
        vec![
            row("A", Outcome::NoRule, "0", "0"),
            row("B", Outcome::Assisted, "0", "50"),
            row("C", Outcome::Assisted, "0", "90"),
        ]
    );
}

#[test]
fn no_rule_when_the_version_lacks_the_category_or_the_pool() {
    let policy = policy(vec![(
        "2024-01-01",
        vec![rule("DB", None, vec![("inpatient", pool("0", "1", None))])],
    )]);
    let spells = [
        spell(1, "DB", "2024-01-01", None),
        spell(2, "DSR", "2024-01-01", None),
    ];
    let bills = [
        bill("A", 1, "dental", "2024-03-01", T0, "100"),
        bill("B", 2, "inpatient", "2024-03-01", T1, "100"),
        bill("C", 3, "inpatient", "2024-03-01", T2, "100"),
    ];
    let (batch, result) = run(&policy, &spells, &bills);
    assert_eq!(
        outcomes(&batch, &result),
        vec![
            row("A", Outcome::NoRule, "0", "0"),
            row("B", Outcome::NoRule, "0", "0"),
            row("C", Outcome::NotEligible, "0", "0"),
        ]
    );
    assert!(result.decision(0).pool().is_some() && result.decision(0).version().is_some());
    assert!(result.decision(2).pool().is_none() && result.decision(2).category().is_none());
}

#[test]
fn the_first_in_canonical_order_wins_among_duplicates_even_on_equal_settled_at() {
    let policy = policy(vec![(
        "2024-01-01",
        vec![rule("DB", None, vec![("inpatient", pool("0", "1", None))])],
    )]);
    let spells = [spell(1, "DB", "2024-01-01", None)];
    // Same instant written three ways; ties broken by invoice_no, then position.
    let bills = [
        bill(
            "B",
            1,
            "inpatient",
            "2024-03-01",
            "2024-03-01T09:00:00+08:00",
            "10",
        ),
        bill("A", 1, "inpatient", "2024-03-01", "2024-03-01T01:00:00Z", "20"),
        bill(
            "B",
            1,
            "inpatient",
            "2024-03-01",
            "2024-03-01T01:00:00.000+00:00",
            "30",
        ),
        bill(
            "B",
            1,
            "inpatient",
            "2024-03-01",
            "2024-03-01T08:59:59.999+08:00",
            "40",
        ),
    ];
    let (batch, result) = run(&policy, &spells, &bills);
    assert_eq!(
        outcomes(&batch, &result),
        vec![
            // Settled a millisecond earlier: first, though last in the file.
            row("B", Outcome::Assisted, "0", "40"),
            row("A", Outcome::Assisted, "0", "20"),
            row("B", Outcome::Duplicate, "0", "0"),
            row("B", Outcome::Duplicate, "0", "0"),
        ]
    );
    let positions: Vec<u32> = batch.invoices().iter().map(|invoice| invoice.position).collect();
    assert_eq!(positions, [3, 1, 0, 2]);
}

#[test]
fn canonical_order_compares_instants_across_offsets() {
    // 10:00 in Beijing is before 09:00 in London.
    let policy = policy(vec![(
        "2024-01-01",
        vec![rule("DB", None, vec![("inpatient", pool("0", "1", Some("100")))])],
    )]);
    let spells = [spell(1, "DB", "2024-01-01", None)];
    let bills = [
        bill(
            "LONDON",
            1,
            "inpatient",
            "2024-03-01",
            "2024-03-01T09:00:00+00:00",
            "100",
        ),
        bill(
            "BEIJING",
            1,
            "inpatient",
            "2024-03-01",
            "2024-03-01T10:00:00+08:00",
            "100",
        ),
    ];
    let (batch, result) = run(&policy, &spells, &bills);
    assert_eq!(
        outcomes(&batch, &result),
        vec![
            row("BEIJING", Outcome::Assisted, "0", "100"),
            row("LONDON", Outcome::Capped, "0", "0")
        ]
    );
}

#[test]
fn counters_follow_the_service_year_not_the_settlement_year() {
    let policy = policy(vec![(
        "2024-01-01",
        vec![rule("DB", None, vec![("inpatient", pool("0", "1", Some("100")))])],
    )]);
    let spells = [spell(1, "DB", "2024-01-01", None)];
    let bills = [
        bill(
            "A",
            1,
            "inpatient",
            "2024-12-30",
            "2025-01-03T09:00:00+08:00",
            "80",
        ),
        bill(
            "B",
            1,
            "inpatient",
            "2025-01-02",
            "2025-01-02T09:00:00+08:00",
            "80",
        ),
        bill(
            "C",
            1,
            "inpatient",
            "2024-12-31",
            "2025-01-04T09:00:00+08:00",
            "80",
        ),
    ];
    let (batch, result) = run(&policy, &spells, &bills);
    assert_eq!(
        outcomes(&batch, &result),
        vec![
            row("B", Outcome::Assisted, "0", "80"),
            row("A", Outcome::Assisted, "0", "80"),
            row("C", Outcome::Capped, "0", "20"),
        ]
    );
}

#[test]
fn the_summary_counts_people_invoices_and_totals_per_category_and_pool() {
    let policy = policy(vec![(
        "2024-01-01",
        vec![rule(
            "DB",
            None,
            vec![("inpatient", pool("0", "0.5", Some("60")))],
        )],
    )]);
    let spells = [
        spell(1, "DB", "2024-01-01", None),
        spell(2, "DB", "2024-01-01", None),
    ];
    let bills = [
        bill("A", 1, "inpatient", "2024-03-01", T0, "100"),
        bill("B", 1, "inpatient", "2024-03-02", T1, "100"),
        bill("C", 2, "inpatient", "2024-03-03", T2, "10"),
        bill("C", 2, "inpatient", "2024-03-03", T3, "10"),
        bill("D", 3, "inpatient", "2024-03-03", T3, "10"),
    ];
    let (_, result) = run(&policy, &spells, &bills);
    let summary = &result.summary;
    assert_eq!(summary.rows.len(), 1);
    let row = summary.rows.values().next().unwrap();
    assert_eq!((row.people, row.invoices, row.capped), (2, 3, 1));
    assert_eq!((row.base_total, row.amount_total), (yuan("210"), yuan("65")));
    assert_eq!(summary.count(Outcome::Duplicate), 1);
    assert_eq!(summary.count(Outcome::NotEligible), 1);
    assert_eq!(summary.people_assisted, 2);
    assert_eq!(summary.amount_total, yuan("65"));
}

#[test]
fn full_invoices_are_put_in_the_same_canonical_order_as_a_batch() {
    // Same instant written with two offsets, a tie on the instant broken by
    // the number, and a tie on both broken by the position.
    let bills = [
        ("B", "2024-03-01T10:00:00+08:00"),
        ("A", "2024-03-01T02:00:00Z"),
        ("A", "2024-02-29T10:00:00+08:00"),
        ("C", "2024-03-01T09:59:59.999+08:00"),
        ("A", "2024-03-01T02:00:00Z"),
    ];
    let invoices: Vec<Invoice> = bills
        .iter()
        .map(|(no, settled)| Invoice {
            invoice_no: InvoiceNo::parse(no).unwrap(),
            person: person(1),
            hospital: Hospital::parse("H001").unwrap(),
            visit_type: "outpatient".into(),
            service_date: date("2024-02-29"),
            settled_at: Timestamp::parse(settled).unwrap(),
            amounts: BillAmounts::new(yuan("1"), Fen::ZERO, yuan("1"), Fen::ZERO).unwrap(),
        })
        .collect();
    let order = canonical_order(&invoices);
    assert_eq!(order, vec![2, 3, 1, 4, 0]);
    let records = invoices
        .iter()
        .enumerate()
        .map(|(position, invoice)| BatchInvoice {
            settled_at: invoice.settled_at.clone(),
            invoice_no: invoice.invoice_no.clone(),
            person: invoice.person,
            base: yuan("1"),
            out_of_scope_self_pay: Fen::ZERO,
            service_date: invoice.service_date,
            position: position as u32,
            visit_type: 0,
        })
        .collect();
    let batch = Batch::new(records, vec!["outpatient".into()]);
    let batch_order: Vec<u32> = batch.invoices().iter().map(|invoice| invoice.position).collect();
    assert_eq!(order, batch_order);
}
