//! Whatever bytes arrive, the readers answer: rows or problems, never a
//! panic, and the full and the batch invoice readers always agree.

use jiuzhu_formats::{
    parse_policy, read_batch_invoices, read_invoices, read_invoices_partitioned, read_spells,
    read_spells_partitioned, Problem, Problems,
};
use proptest::prelude::*;

const INVOICES: &str = "invoice_no,person_id,hospital,visit_type,service_date,settled_at,total,fund_paid,in_scope_self_pay,out_of_scope_self_pay
INV001,110105196001010017,H001,inpatient,2024-03-01,2024-03-05T10:00:00+08:00,10000,7000,2500,500
INV002,11010519600101005x,\"市第一人民医院, 东院\",outpatient,2024-04-01,2024-04-01T09:00:00.5Z,5000.00,0,5000,0
INV003,110105196001010025,H002,emergency,2024-05-03,2024-05-03T12:00:00-05:30,200,100,80,20
";

const SPELLS: &str = "person_id,category,valid_from,valid_to,source
110105196001010017,DB,2023-01-01,,民政
110105196001010025,ZCX,2024-01-01,2024-12-31,民政
";

const POLICY: &str = include_str!("../../../fixtures/example-policy.toml");

fn visit_types() -> Vec<String> {
    ["outpatient", "emergency", "chronic", "inpatient"]
        .iter()
        .map(|name| name.to_string())
        .collect()
}

/// A valid text with a few bytes replaced, inserted or removed.
fn mutated(text: &'static str) -> impl Strategy<Value = Vec<u8>> {
    let edits = proptest::collection::vec((any::<prop::sample::Index>(), 0u8..3, any::<u8>()), 1..6);
    edits.prop_map(move |edits| {
        let mut bytes = text.as_bytes().to_vec();
        for (at, kind, byte) in edits {
            if bytes.is_empty() {
                bytes.push(byte);
                continue;
            }
            let at = at.index(bytes.len());
            match kind {
                0 => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                _ => {
                    bytes.remove(at);
                }
            }
        }
        bytes
    })
}

fn problem_lines(problems: &Problems) -> Vec<String> {
    problems.kept().iter().map(ToString::to_string).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn the_full_and_the_batch_invoice_readers_agree_on_damaged_files(bytes in mutated(INVOICES)) {
        let full = read_invoices("invoices.csv", &bytes, &visit_types());
        let batch = read_batch_invoices("invoices.csv", &bytes, &visit_types());
        match (full, batch) {
            (Ok(full), Ok(batch)) => {
                prop_assert_eq!(full.len(), batch.len());
                for (invoice, record) in full.iter().zip(&batch) {
                    prop_assert_eq!(&invoice.invoice_no, &record.invoice_no);
                    prop_assert_eq!(invoice.person, record.person);
                    prop_assert_eq!(invoice.amounts.in_scope_self_pay(), record.base);
                }
            }
            (Err(full), Err(batch)) => {
                prop_assert!(!full.is_empty());
                prop_assert_eq!(problem_lines(&full), problem_lines(&batch));
                for problem in full.kept() {
                    prop_assert_eq!(problem.file.as_str(), "invoices.csv");
                }
            }
            (full, batch) => prop_assert!(false, "the readers disagree: {:?} against {:?}", full.is_ok(), batch.is_ok()),
        }
    }

    #[test]
    fn arbitrary_bytes_get_rows_or_problems_never_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = read_invoices("invoices.csv", &bytes, &visit_types());
        let _ = read_batch_invoices("invoices.csv", &bytes, &visit_types());
        let _ = read_spells("spells.csv", &bytes, None);
        let _ = read_spells_partitioned("spells.csv", &bytes, None);
        let _ = parse_policy("policy.toml", &String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn the_lenient_reader_keeps_what_the_strict_one_accepts_and_sets_aside_what_it_refuses(
        bytes in mutated(INVOICES)
    ) {
        let strict = read_invoices("invoices.csv", &bytes, &visit_types());
        let lenient = read_invoices_partitioned("invoices.csv", &bytes, &visit_types());
        match (strict, lenient) {
            (Ok(rows), Ok(lenient)) => {
                prop_assert!(lenient.rejected.is_empty());
                prop_assert_eq!(lenient.into_rows(), rows);
            }
            (Err(problems), Ok(lenient)) => {
                prop_assert!(!lenient.rejected.is_empty());
                let reasons: Vec<Problem> =
                    lenient.rejected.iter().flat_map(|rejected| rejected.problems.clone()).collect();
                prop_assert_eq!(problems.kept(), reasons.as_slice());
            }
            (Err(strict), Err(lenient)) => prop_assert_eq!(strict, lenient),
            (Ok(_), Err(lenient)) => prop_assert!(false, "only the lenient reader refuses: {}", lenient),
        }
    }

    #[test]
    fn damaged_spells_get_rows_or_problems_with_a_line(bytes in mutated(SPELLS)) {
        if let Err(problems) = read_spells("spells.csv", &bytes, None) {
            prop_assert!(!problems.is_empty());
        }
    }

    #[test]
    fn a_damaged_policy_is_refused_with_a_line_or_still_valid(bytes in mutated(POLICY)) {
        let text = String::from_utf8_lossy(&bytes);
        if let Err(problems) = parse_policy("policy.toml", &text) {
            prop_assert!(!problems.is_empty());
            for problem in problems.kept() {
                let line = problem.line.unwrap_or(1);
                prop_assert!(line >= 1 && line <= text.lines().count() as u64 + 1, "{}", problem);
            }
        }
    }
}
