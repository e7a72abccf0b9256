//! `results.csv` (`formats.md`, "Results"): one row per input invoice, in
//! canonical order, exactly these columns, UTF-8 without BOM, LF, a field
//! quoted only when it must be.

use std::io::{self, Write};

use jiuzhu_core::{Batch, BatchRun, Fen, Outcome, Policy};
use rayon::prelude::*;

/// The header line, without its LF.
pub const RESULTS_HEADER: &str =
    "invoice_no,person_id,year,category,pool,base,deductible_applied,eligible,amount,outcome,policy_version";

/// Rows formatted per parallel task.
const ROWS_PER_TASK: usize = 16_384;
/// Rows formatted before they are written out: bounds the memory held in
/// formatted text (about 100 bytes a row).
const ROWS_PER_WINDOW: usize = 1 << 20;

/// One row of `results.csv`, borrowed from its sources.
#[derive(Debug, Clone, Copy)]
pub struct ResultRow<'a> {
    pub invoice_no: &'a [u8],
    /// The canonical 18 characters.
    pub person_id: &'a [u8; 18],
    pub year: i32,
    /// Empty when not filled; already quoted if it needs to be.
    pub category: &'a str,
    pub pool: &'a str,
    pub base: Fen,
    pub deductible_applied: Fen,
    pub eligible: Fen,
    pub amount: Fen,
    pub outcome: Outcome,
    /// `YYYY-MM-DD`, or empty.
    pub policy_version: &'a [u8],
}

/// A field as CSV: quoted (with doubled quotes) only when it holds a comma,
/// a double quote, CR or LF.
pub fn csv_field(text: &str) -> String {
    if text.bytes().any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n')) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// Appends `fen` as yuan with exactly two decimals.
pub fn push_money(out: &mut Vec<u8>, fen: Fen) {
    let value = fen.fen();
    if value < 0 {
        out.push(b'-');
    }
    let magnitude = value.unsigned_abs();
    push_unsigned(out, magnitude / 100);
    let cents = (magnitude % 100) as u8;
    out.extend_from_slice(&[b'.', b'0' + cents / 10, b'0' + cents % 10]);
}

fn push_unsigned(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// Appends one row and its LF.
pub fn push_row(out: &mut Vec<u8>, row: &ResultRow<'_>) {
    out.extend_from_slice(row.invoice_no);
    out.push(b',');
    out.extend_from_slice(row.person_id);
    out.push(b',');
    if row.year < 0 {
        out.push(b'-');
    }
    push_unsigned(out, u64::from(row.year.unsigned_abs()));
    out.push(b',');
    out.extend_from_slice(row.category.as_bytes());
    out.push(b',');
    out.extend_from_slice(row.pool.as_bytes());
    out.push(b',');
    push_money(out, row.base);
    out.push(b',');
    push_money(out, row.deductible_applied);
    out.push(b',');
    push_money(out, row.eligible);
    out.push(b',');
    push_money(out, row.amount);
    out.push(b',');
    out.extend_from_slice(row.outcome.as_str().as_bytes());
    out.push(b',');
    out.extend_from_slice(row.policy_version);
    out.push(b'\n');
}

/// Writes the results of `run` (a run of `batch` under `policy`): the header,
/// then one row per invoice in canonical order. Rows are formatted in
/// parallel and written in order; `progress` is told the rows written.
pub fn write_results(
    out: &mut dyn Write,
    policy: &Policy,
    batch: &Batch,
    run: &BatchRun,
    progress: &dyn Fn(u64),
) -> io::Result<()> {
    out.write_all(RESULTS_HEADER.as_bytes())?;
    out.write_all(b"\n")?;
    let categories: Vec<String> = policy
        .categories()
        .iter()
        .map(|category| csv_field(&category.code))
        .collect();
    let pools: Vec<String> = policy.pool_names().iter().map(|pool| csv_field(pool)).collect();
    let versions: Vec<[u8; 10]> = policy
        .versions()
        .iter()
        .map(|version| {
            let mut text = [0u8; 10];
            version.effective_from.write_iso(&mut text);
            text
        })
        .collect();
    let invoices = batch.invoices();
    let mut window_start = 0;
    while window_start < invoices.len() {
        let window_end = (window_start + ROWS_PER_WINDOW).min(invoices.len());
        let texts: Vec<Vec<u8>> = (window_start..window_end)
            .into_par_iter()
            .step_by(ROWS_PER_TASK)
            .map(|start| {
                let end = (start + ROWS_PER_TASK).min(window_end);
                let mut text = Vec::with_capacity((end - start) * 112);
                for (index, invoice) in invoices.iter().enumerate().take(end).skip(start) {
                    let decision = run.decision(index);
                    let counts = decision.outcome.counts();
                    let (base, eligible) = if counts {
                        (
                            invoice.base,
                            Fen::from_fen(invoice.base.fen() - decision.deductible_applied.fen()),
                        )
                    } else {
                        (Fen::ZERO, Fen::ZERO)
                    };
                    let person_id = invoice.person.to_bytes();
                    push_row(
                        &mut text,
                        &ResultRow {
                            invoice_no: invoice.invoice_no.as_bytes(),
                            person_id: &person_id,
                            year: invoice.service_date.year(),
                            category: decision
                                .category()
                                .map_or("", |category| &categories[category.index()]),
                            pool: decision.pool().map_or("", |pool| &pools[pool.index()]),
                            base,
                            deductible_applied: if counts {
                                decision.deductible_applied
                            } else {
                                Fen::ZERO
                            },
                            eligible,
                            amount: decision.amount,
                            outcome: decision.outcome,
                            policy_version: decision
                                .version()
                                .map_or(&[][..], |version| &versions[version.index()]),
                        },
                    );
                }
                text
            })
            .collect();
        for text in texts {
            out.write_all(&text)?;
        }
        progress((window_end - window_start) as u64);
        window_start = window_end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_written_with_exactly_two_decimals() {
        let mut out = Vec::new();
        for fen in [0, 5, 50, 1250, 123_456, 99_999_999_999_999, -5] {
            push_money(&mut out, Fen::from_fen(fen));
            out.push(b' ');
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "0.00 0.05 0.50 12.50 1234.56 999999999999.99 -0.05 "
        );
    }

    #[test]
    fn a_field_is_quoted_only_when_it_must_be() {
        assert_eq!(csv_field("DB"), "DB");
        assert_eq!(csv_field("A,B"), "\"A,B\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
    }

    #[test]
    fn a_row_has_the_columns_in_order() {
        let mut out = Vec::new();
        push_row(
            &mut out,
            &ResultRow {
                invoice_no: b"INV1",
                person_id: b"11010519491231002X",
                year: 2024,
                category: "DB",
                pool: "inpatient",
                base: Fen::from_fen(100_000),
                deductible_applied: Fen::from_fen(0),
                eligible: Fen::from_fen(100_000),
                amount: Fen::from_fen(90_000),
                outcome: Outcome::Assisted,
                policy_version: b"2024-01-01",
            },
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "INV1,11010519491231002X,2024,DB,inpatient,1000.00,0.00,1000.00,900.00,assisted,2024-01-01\n"
        );
    }
}
