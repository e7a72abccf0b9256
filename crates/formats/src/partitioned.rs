//! Lenient reading: every good row of a file kept with its line, every bad
//! one set aside with what it held and every reason, for `--skip-bad` and
//! for error reports people can download, fix and send again.

use std::io::{self, Write};

use crate::csv_input::Outcome;
use crate::problem::Problem;
use crate::results::csv_field;

/// The most memory the rejected records of one lenient read may take, as
/// estimated from their fields and problems: a file with more is refused
/// as a whole, since keeping them all would take memory without bound
/// (rows of many empty fields take far more than their bytes in the file).
/// Some hundreds of thousands of typical records fit.
pub const MAX_REJECTED_BYTES: u64 = 256 << 20;

/// A row that passed every check, with the line (sheet row) it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoodRow<T> {
    pub line: u64,
    pub row: T,
}

/// A record that was refused: the line (sheet row) it starts on, its fields
/// as text in the order of the header (as many as the record had; a sheet
/// row's end at its last cell), and every problem found in it, in the order
/// of its columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedRow {
    pub line: u64,
    pub fields: Vec<String>,
    pub problems: Vec<Problem>,
}

/// A file read leniently: its header's names, the good rows and the
/// rejected records, each in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partitioned<T> {
    pub header: Vec<String>,
    pub good: Vec<GoodRow<T>>,
    pub rejected: Vec<RejectedRow>,
}

impl<T> Partitioned<T> {
    pub(crate) fn from_outcome(outcome: Outcome<T>) -> Partitioned<T> {
        Partitioned {
            header: outcome.header,
            good: outcome
                .rows
                .into_iter()
                .zip(outcome.lines)
                .map(|(row, line)| GoodRow { line, row })
                .collect(),
            rejected: outcome.rejected,
        }
    }

    /// The good rows alone.
    pub fn into_rows(self) -> Vec<T> {
        self.good.into_iter().map(|good| good.row).collect()
    }
}

/// The header of a rejected-rows report before the original columns.
pub const REJECTED_REPORT_COLUMNS: [&str; 3] = ["line", "column", "message"];

/// Writes a report of rejected records as CSV: the columns `line`,
/// `column` and `message`, then the original `header`'s columns; one row
/// per problem, each repeating its record's fields. UTF-8 with a BOM (so
/// that Excel shows Chinese text right), lines ending in CRLF.
///
/// A field that starts with `=`, `+`, `-` or `@` (which a spreadsheet would
/// take for a formula) is written after a `'`, so that opening the report
/// never runs what a file held.
pub fn write_rejected_csv(
    mut writer: impl Write,
    header: &[String],
    rejected: &[RejectedRow],
) -> io::Result<()> {
    let mut out = Vec::with_capacity(4096);
    out.extend_from_slice(b"\xEF\xBB\xBF");
    let names = REJECTED_REPORT_COLUMNS
        .iter()
        .copied()
        .chain(header.iter().map(String::as_str));
    push_record(&mut out, names);
    for row in rejected {
        let line = row.line.to_string();
        for problem in &row.problems {
            let leading = [
                line.as_str(),
                problem.column.as_deref().unwrap_or(""),
                problem.message.as_str(),
            ];
            push_record(
                &mut out,
                leading.into_iter().chain(row.fields.iter().map(String::as_str)),
            );
            if out.len() >= 1 << 16 {
                writer.write_all(&out)?;
                out.clear();
            }
        }
    }
    writer.write_all(&out)?;
    writer.flush()
}

fn push_record<'a>(out: &mut Vec<u8>, fields: impl Iterator<Item = &'a str>) {
    for (index, field) in fields.enumerate() {
        if index > 0 {
            out.push(b',');
        }
        if field.starts_with(['=', '+', '-', '@']) {
            out.extend_from_slice(csv_field(&format!("'{field}")).as_bytes());
        } else {
            out.extend_from_slice(csv_field(field).as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_has_one_row_per_problem_with_the_original_fields() {
        let header = vec!["person_id".to_owned(), "category".to_owned()];
        let rejected = vec![RejectedRow {
            line: 7,
            fields: vec!["x".into(), "低保,二类".into()],
            problems: vec![
                Problem::at("s.csv", 7, "person_id", "is bad"),
                Problem::at("s.csv", 7, "category", "says \"no\""),
            ],
        }];
        let mut out = Vec::new();
        write_rejected_csv(&mut out, &header, &rejected).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "\u{FEFF}line,column,message,person_id,category\r\n\
             7,person_id,is bad,x,\"低保,二类\"\r\n\
             7,category,\"says \"\"no\"\"\",x,\"低保,二类\"\r\n"
        );
    }

    #[test]
    fn a_field_that_looks_like_a_formula_is_written_as_text() {
        let rejected = vec![RejectedRow {
            line: 2,
            fields: vec!["=HYPERLINK(\"http://x\")".into(), "-600".into(), "@a".into()],
            problems: vec![Problem::at_line("s.csv", 2, "has 3 fields")],
        }];
        let mut out = Vec::new();
        write_rejected_csv(&mut out, &["a".to_owned()], &rejected).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.ends_with("2,,has 3 fields,\"'=HYPERLINK(\"\"http://x\"\")\",'-600,'@a\r\n"),
            "{text}"
        );
    }
}
