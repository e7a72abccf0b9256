//! `invoices.csv` (`formats.md`, "Invoices"): medical bills after basic
//! insurance settled them. Two readers over one set of checks: full
//! [`Invoice`]s for the importers, and compact [`BatchInvoice`]s for
//! `jiuzhu simulate` over tens of millions of rows.

use std::path::Path;

use jiuzhu_core::{
    BatchInvoice, BillAmounts, Date, Fen, Hospital, Invoice, InvoiceNo, ResidentId, Timestamp,
};

use crate::csv_input::{text, CellKind, Column, CsvFormat, Layout, Mode, Record, RowProblems};
use crate::input::{self, ReadOptions};
use crate::partitioned::Partitioned;
use crate::problem::{Problem, Problems};

const INVOICE_NO: usize = 0;
const PERSON_ID: usize = 1;
const HOSPITAL: usize = 2;
const VISIT_TYPE: usize = 3;
const SERVICE_DATE: usize = 4;
const SETTLED_AT: usize = 5;
const TOTAL: usize = 6;
const FUND_PAID: usize = 7;
const IN_SCOPE_SELF_PAY: usize = 8;
const OUT_OF_SCOPE_SELF_PAY: usize = 9;

const COLUMNS: &[Column] = &[
    Column {
        name: "invoice_no",
        required: true,
        kind: CellKind::Identifier,
    },
    Column {
        name: "person_id",
        required: true,
        kind: CellKind::Identifier,
    },
    Column {
        name: "hospital",
        required: true,
        kind: CellKind::Text,
    },
    Column {
        name: "visit_type",
        required: true,
        kind: CellKind::Text,
    },
    Column {
        name: "service_date",
        required: true,
        kind: CellKind::Date,
    },
    Column {
        name: "settled_at",
        required: true,
        kind: CellKind::Timestamp,
    },
    Column {
        name: "total",
        required: true,
        kind: CellKind::Money,
    },
    Column {
        name: "fund_paid",
        required: true,
        kind: CellKind::Money,
    },
    Column {
        name: "in_scope_self_pay",
        required: true,
        kind: CellKind::Money,
    },
    Column {
        name: "out_of_scope_self_pay",
        required: true,
        kind: CellKind::Money,
    },
];

/// Reads and checks an invoices file from disk: CSV (UTF-8 or GBK) or an
/// XLSX workbook (its first sheet), larger than
/// [`crate::DEFAULT_MAX_INPUT_BYTES`] refused. Every visit type must be one
/// of `known_visit_types`. Either every invoice, or every problem found.
pub fn read_invoices_file(
    path: &Path,
    file: &str,
    known_visit_types: &[String],
) -> Result<Vec<Invoice>, Problems> {
    read_invoices_file_with(path, file, known_visit_types, &ReadOptions::default())
}

/// [`read_invoices_file`] with other options.
pub fn read_invoices_file_with(
    path: &Path,
    file: &str,
    known_visit_types: &[String],
    options: &ReadOptions,
) -> Result<Vec<Invoice>, Problems> {
    let format = InvoicesFormat {
        checks: Checks::new(file, known_visit_types)?,
    };
    input::read_path(
        path,
        file,
        &format,
        Mode::Strict,
        Some(options.max_bytes),
        &|_| {},
    )
    .map(|outcome| outcome.rows)
}

/// An invoice with the line of the file its record starts on, for the
/// importers' reports (`FILE:LINE: …`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceRecord {
    /// 1-based; blank lines and line breaks inside quotes are counted.
    pub line: u64,
    pub invoice: Invoice,
}

/// [`read_invoices_file`], each invoice with its line, in file order.
/// `progress` is called now and then with the bytes consumed since its
/// last call.
pub fn read_invoice_records_file(
    path: &Path,
    file: &str,
    known_visit_types: &[String],
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<InvoiceRecord>, Problems> {
    let format = RecordsFormat {
        full: InvoicesFormat {
            checks: Checks::new(file, known_visit_types)?,
        },
    };
    input::read_path(path, file, &format, Mode::Strict, None, progress).map(|outcome| outcome.rows)
}

/// [`read_invoice_records_file`] over a file held in memory.
pub fn read_invoice_records(
    file: &str,
    bytes: &[u8],
    known_visit_types: &[String],
) -> Result<Vec<InvoiceRecord>, Problems> {
    let format = RecordsFormat {
        full: InvoicesFormat {
            checks: Checks::new(file, known_visit_types)?,
        },
    };
    input::read_bytes(file, bytes, &format, Mode::Strict).map(|outcome| outcome.rows)
}

/// Reads and checks an invoices file held in memory (CSV or XLSX).
pub fn read_invoices(
    file: &str,
    bytes: &[u8],
    known_visit_types: &[String],
) -> Result<Vec<Invoice>, Problems> {
    let format = InvoicesFormat {
        checks: Checks::new(file, known_visit_types)?,
    };
    input::read_bytes(file, bytes, &format, Mode::Strict).map(|outcome| outcome.rows)
}

/// Reads an invoices file held in memory leniently: every good invoice
/// with its line, and every bad record with its fields and all its
/// problems. Only problems with the whole file (unreadable, empty, not
/// text, a required column missing from the header) are an `Err`.
pub fn read_invoices_partitioned(
    file: &str,
    bytes: &[u8],
    known_visit_types: &[String],
) -> Result<Partitioned<Invoice>, Problems> {
    let format = InvoicesFormat {
        checks: Checks::new(file, known_visit_types)?,
    };
    input::read_bytes(file, bytes, &format, Mode::Lenient).map(Partitioned::from_outcome)
}

/// [`read_invoices_partitioned`] over a file on disk.
pub fn read_invoices_partitioned_file(
    path: &Path,
    file: &str,
    known_visit_types: &[String],
    options: &ReadOptions,
) -> Result<Partitioned<Invoice>, Problems> {
    let format = InvoicesFormat {
        checks: Checks::new(file, known_visit_types)?,
    };
    input::read_path(
        path,
        file,
        &format,
        Mode::Lenient,
        Some(options.max_bytes),
        &|_| {},
    )
    .map(Partitioned::from_outcome)
}

/// Reads and checks an invoices file from disk into compact records, with
/// the same checks as [`read_invoices_file`]: in chunks, in parallel, with
/// memory bounded by the records and a fixed read buffer. `position` is the
/// record's 0-based index in the file (header and blank lines not counted);
/// `visit_type` indexes `known_visit_types`. `progress` is called now and
/// then with the bytes consumed since its last call. An XLSX workbook is
/// read too; no size limit applies, as the file is streamed.
pub fn read_batch_invoices_file(
    path: &Path,
    file: &str,
    known_visit_types: &[String],
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<BatchInvoice>, Problems> {
    let format = BatchFormat {
        checks: Checks::new(file, known_visit_types)?,
    };
    input::read_path(path, file, &format, Mode::Strict, None, progress).map(|outcome| outcome.rows)
}

/// Checks an invoices file from disk when there is no valid policy: every
/// check but the visit type's (which needs the policy). Returns every
/// problem found; keeps nothing.
pub fn check_invoices_file_without_policy(
    path: &Path,
    file: &str,
    progress: &(dyn Fn(u64) + Sync),
) -> Problems {
    let format = BatchFormat {
        checks: Checks { visit_types: None },
    };
    match input::read_path(path, file, &format, Mode::Strict, None, progress) {
        Ok(_) => Problems::new(),
        Err(problems) => problems,
    }
}

/// [`read_batch_invoices_file`] over a file held in memory.
pub fn read_batch_invoices(
    file: &str,
    bytes: &[u8],
    known_visit_types: &[String],
) -> Result<Vec<BatchInvoice>, Problems> {
    let format = BatchFormat {
        checks: Checks::new(file, known_visit_types)?,
    };
    input::read_bytes(file, bytes, &format, Mode::Strict).map(|outcome| outcome.rows)
}

/// The checks of one invoice record, shared by both readers.
struct Checks<'v> {
    /// `None` when there is no valid policy to check visit types against:
    /// any non-empty visit type then passes (as index 0).
    visit_types: Option<&'v [String]>,
}

/// An invoice record whose every field passed its checks.
struct InvoiceParts<'r> {
    invoice_no: InvoiceNo,
    person: ResidentId,
    hospital: &'r str,
    visit_type: u16,
    service_date: Date,
    settled_at: Timestamp,
    amounts: BillAmounts,
}

impl<'v> Checks<'v> {
    fn new(file: &str, visit_types: &'v [String]) -> Result<Checks<'v>, Problem> {
        if visit_types.len() > usize::from(u16::MAX) {
            return Err(Problem::whole_file(
                file,
                format!(
                    "cannot be checked against {} visit types: at most {} are supported",
                    visit_types.len(),
                    u16::MAX
                ),
            ));
        }
        Ok(Checks {
            visit_types: Some(visit_types),
        })
    }

    fn read<'r>(
        &self,
        layout: &Layout,
        record: &Record<'r>,
        problems: &mut RowProblems<'_>,
    ) -> Option<InvoiceParts<'r>> {
        let field = |column: usize| record.get(layout.field(column));

        let invoice_no = InvoiceNo::parse_bytes(field(INVOICE_NO))
            .map_err(|error| problems.add(INVOICE_NO, || error.to_string()))
            .ok();
        let person = ResidentId::parse_bytes(field(PERSON_ID))
            .map_err(|error| problems.add(PERSON_ID, || error.to_string()))
            .ok();
        let hospital = match std::str::from_utf8(field(HOSPITAL)) {
            Ok(hospital) => Hospital::check(hospital)
                .map(|()| hospital)
                .map_err(|error| problems.add(HOSPITAL, || error.to_string()))
                .ok(),
            Err(_) => {
                problems.add(HOSPITAL, || "is not valid text".to_owned());
                None
            }
        };
        let visit_type = self.visit_type(field(VISIT_TYPE), problems);
        let service_date = Date::parse(&text(field(SERVICE_DATE)))
            .map_err(|error| problems.add(SERVICE_DATE, || error.to_string()))
            .ok();
        let settled_at = field(SETTLED_AT);
        let settled_at = Timestamp::parse_bytes(settled_at)
            .map_err(|kind| problems.add(SETTLED_AT, || kind.with_text(&text(settled_at)).to_string()))
            .ok();
        let total = money(field(TOTAL), TOTAL, problems);
        let fund_paid = money(field(FUND_PAID), FUND_PAID, problems);
        let in_scope = money(field(IN_SCOPE_SELF_PAY), IN_SCOPE_SELF_PAY, problems);
        let out_of_scope = money(field(OUT_OF_SCOPE_SELF_PAY), OUT_OF_SCOPE_SELF_PAY, problems);

        let amounts = match (total, fund_paid, in_scope, out_of_scope) {
            (Some(total), Some(fund_paid), Some(in_scope), Some(out_of_scope)) => {
                BillAmounts::new(total, fund_paid, in_scope, out_of_scope)
                    .map_err(|error| problems.add(TOTAL, || error.to_string()))
                    .ok()
            }
            _ => None,
        };
        Some(InvoiceParts {
            invoice_no: invoice_no?,
            person: person?,
            hospital: hospital?,
            visit_type: visit_type?,
            service_date: service_date?,
            settled_at: settled_at?,
            amounts: amounts?,
        })
    }

    fn visit_type(&self, field: &[u8], problems: &mut RowProblems<'_>) -> Option<u16> {
        let Some(visit_types) = self.visit_types else {
            if field.is_empty() {
                problems.add(VISIT_TYPE, || "is empty; expected a visit type".to_owned());
                return None;
            }
            return Some(0);
        };
        if let Some(index) = visit_types.iter().position(|known| known.as_bytes() == field) {
            return u16::try_from(index).ok();
        }
        problems.add(VISIT_TYPE, || unknown_visit_type(&text(field), visit_types));
        None
    }
}

/// What is wrong with a visit type that is not one of `visit_types`.
pub(crate) fn unknown_visit_type(field: &str, visit_types: &[String]) -> String {
    let known = if visit_types.is_empty() {
        "none is known".to_owned()
    } else {
        format!("the known ones are {}", visit_types.join(", "))
    };
    if field.is_empty() {
        format!("is empty; expected a visit type ({known})")
    } else {
        format!("{field:?} is not a known visit type; {known}")
    }
}

fn money(field: &[u8], column: usize, problems: &mut RowProblems<'_>) -> Option<Fen> {
    Fen::parse_yuan_bytes(field)
        .map_err(|kind| problems.add(column, || kind.with_text(&text(field)).to_string()))
        .ok()
}

struct InvoicesFormat<'v> {
    checks: Checks<'v>,
}

impl CsvFormat for InvoicesFormat<'_> {
    type Row = Invoice;
    const COLUMNS: &'static [Column] = COLUMNS;

    fn read_row(
        &self,
        layout: &Layout,
        record: &Record<'_>,
        problems: &mut RowProblems<'_>,
    ) -> Option<Invoice> {
        let parts = self.checks.read(layout, record, problems)?;
        let hospital = Hospital::parse(parts.hospital)
            .map_err(|error| problems.add(HOSPITAL, || error.to_string()))
            .ok()?;
        Some(Invoice {
            invoice_no: parts.invoice_no,
            person: parts.person,
            hospital,
            visit_type: self
                .checks
                .visit_types?
                .get(usize::from(parts.visit_type))?
                .clone(),
            service_date: parts.service_date,
            settled_at: parts.settled_at,
            amounts: parts.amounts,
        })
    }
}

struct RecordsFormat<'v> {
    full: InvoicesFormat<'v>,
}

impl CsvFormat for RecordsFormat<'_> {
    type Row = InvoiceRecord;
    const COLUMNS: &'static [Column] = COLUMNS;

    fn read_row(
        &self,
        layout: &Layout,
        record: &Record<'_>,
        problems: &mut RowProblems<'_>,
    ) -> Option<InvoiceRecord> {
        let invoice = self.full.read_row(layout, record, problems)?;
        Some(InvoiceRecord { line: 0, invoice })
    }

    fn at_line(row: &mut InvoiceRecord, line: u64) {
        row.line = line;
    }
}

struct BatchFormat<'v> {
    checks: Checks<'v>,
}

impl CsvFormat for BatchFormat<'_> {
    type Row = BatchInvoice;
    const COLUMNS: &'static [Column] = COLUMNS;
    /// `position` is a `u32`.
    const MAX_RECORDS: u64 = u32::MAX as u64 + 1;

    fn read_row(
        &self,
        layout: &Layout,
        record: &Record<'_>,
        problems: &mut RowProblems<'_>,
    ) -> Option<BatchInvoice> {
        let parts = self.checks.read(layout, record, problems)?;
        Some(BatchInvoice {
            settled_at: parts.settled_at,
            invoice_no: parts.invoice_no,
            person: parts.person,
            base: parts.amounts.in_scope_self_pay(),
            out_of_scope_self_pay: parts.amounts.out_of_scope_self_pay(),
            service_date: parts.service_date,
            position: 0,
            visit_type: parts.visit_type,
        })
    }

    fn place(row: &mut BatchInvoice, position: u64) {
        // Files with more records are refused (MAX_RECORDS).
        row.position = u32::try_from(position).unwrap_or(u32::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write as _;
    use std::io::Write as _;
    use std::time::Instant;

    const ID: &str = "11010519491231002X";
    const HEADER: &str = "invoice_no,person_id,hospital,visit_type,service_date,settled_at,total,fund_paid,in_scope_self_pay,out_of_scope_self_pay";

    fn visit_types() -> Vec<String> {
        vec!["outpatient".into(), "chronic".into(), "inpatient".into()]
    }

    fn problems_of(input: &str) -> Vec<String> {
        let problems = read_invoices("invoices.csv", input.as_bytes(), &visit_types()).unwrap_err();
        let batch = read_batch_invoices("invoices.csv", input.as_bytes(), &visit_types()).unwrap_err();
        assert_eq!(problems, batch);
        problems.kept().iter().map(ToString::to_string).collect()
    }

    fn one_row(row: &str) -> String {
        format!("{HEADER}\n{row}\n")
    }

    const GOOD: &str = "INV-001,11010519491231002X,市第一人民医院,inpatient,2024-03-05,2024-03-06T10:22:31+08:00,1000.00,600,300.5,99.50";

    #[test]
    fn a_valid_file_reads_into_invoices() {
        let invoices = read_invoices("invoices.csv", one_row(GOOD).as_bytes(), &visit_types()).unwrap();
        assert_eq!(invoices.len(), 1);
        let invoice = &invoices[0];
        assert_eq!(invoice.invoice_no.as_str(), "INV-001");
        assert_eq!(invoice.person, ResidentId::parse(ID).unwrap());
        assert_eq!(invoice.hospital.as_str(), "市第一人民医院");
        assert_eq!(invoice.visit_type, "inpatient");
        assert_eq!(invoice.service_date, Date::parse("2024-03-05").unwrap());
        assert_eq!(
            invoice.settled_at,
            Timestamp::parse("2024-03-06T02:22:31Z").unwrap()
        );
        assert_eq!(invoice.amounts.total(), Fen::from_fen(100_000));
        assert_eq!(invoice.amounts.in_scope_self_pay(), Fen::from_fen(30_050));
        assert_eq!(invoice.amounts.out_of_scope_self_pay(), Fen::from_fen(9_950));

        let batch = read_batch_invoices("invoices.csv", one_row(GOOD).as_bytes(), &visit_types()).unwrap();
        assert_eq!(batch[0].visit_type, 2);
        assert_eq!(batch[0].base, Fen::from_fen(30_050));
        assert_eq!(batch[0].position, 0);
    }

    #[test]
    fn records_carry_the_line_they_start_on() {
        let input = format!(
            "{HEADER},note\n\n{GOOD},\"two\nlines\"\n{},\n",
            GOOD.replace("INV-001", "INV-002")
        );
        let records = read_invoice_records("invoices.csv", input.as_bytes(), &visit_types()).unwrap();
        let lines: Vec<(u64, &str)> = records
            .iter()
            .map(|record| (record.line, record.invoice.invoice_no.as_str()))
            .collect();
        assert_eq!(lines, vec![(3, "INV-001"), (5, "INV-002")]);
        let full = read_invoices("invoices.csv", input.as_bytes(), &visit_types()).unwrap();
        assert_eq!(
            full,
            records
                .into_iter()
                .map(|record| record.invoice)
                .collect::<Vec<_>>()
        );
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("invoices.csv");
        std::fs::write(&path, &input).unwrap();
        let from_file = read_invoice_records_file(&path, "invoices.csv", &visit_types(), &|_| {}).unwrap();
        assert_eq!(
            from_file.iter().map(|record| record.line).collect::<Vec<_>>(),
            vec![3, 5]
        );
    }

    #[test]
    fn a_bad_timestamp_is_refused() {
        let row = GOOD.replace("2024-03-06T10:22:31+08:00", "2024-03-06 10:22:31");
        assert_eq!(
            problems_of(&one_row(&row)),
            vec!["invoices.csv:2: settled_at: \"2024-03-06 10:22:31\" is not an RFC 3339 timestamp with an offset, such as 2024-03-05T10:22:31+08:00"]
        );
        let row = GOOD.replace("10:22:31", "10:22:60");
        assert!(problems_of(&one_row(&row))[0].contains("time of day out of range"));
    }

    #[test]
    fn a_bad_service_date_is_refused() {
        let row = GOOD.replace("2024-03-05", "2024-3-5");
        assert_eq!(
            problems_of(&one_row(&row)),
            vec!["invoices.csv:2: service_date: \"2024-3-5\" is not a date as YYYY-MM-DD"]
        );
    }

    #[test]
    fn bad_money_is_refused() {
        let row = GOOD.replace("1000.00,600,300.5,99.50", "1000.001,-600,\"1,000\",");
        assert_eq!(
            problems_of(&one_row(&row)),
            vec![
                "invoices.csv:2: total: \"1000.001\" has more than two decimals; amounts are exact to the fen",
                "invoices.csv:2: fund_paid: \"-600\" is not an amount in yuan: use digits, an optional point and at most two decimals, no sign (e.g. 1234.56)",
                "invoices.csv:2: in_scope_self_pay: \"1,000\" is not an amount in yuan: use digits, an optional point and at most two decimals, no sign (e.g. 1234.56)",
                "invoices.csv:2: out_of_scope_self_pay: is empty; expected an amount in yuan such as 12.50",
            ]
        );
    }

    #[test]
    fn amounts_that_do_not_add_up_are_refused() {
        let row = GOOD.replace("99.50", "99.49");
        assert_eq!(
            problems_of(&one_row(&row)),
            vec!["invoices.csv:2: total: fund_paid 600.00 + in_scope_self_pay 300.50 + out_of_scope_self_pay 99.49 = 999.99, but total is 1000.00"]
        );
    }

    #[test]
    fn an_unknown_visit_type_is_refused_with_the_known_ones() {
        let row = GOOD.replace("inpatient", "dental");
        assert_eq!(
            problems_of(&one_row(&row)),
            vec!["invoices.csv:2: visit_type: \"dental\" is not a known visit type; the known ones are outpatient, chronic, inpatient"]
        );
    }

    #[test]
    fn an_invoice_number_with_bad_characters_or_too_long_is_refused() {
        let row = GOOD.replace("INV-001", "INV/001");
        assert_eq!(
            problems_of(&one_row(&row)),
            vec!["invoices.csv:2: invoice_no: may hold only A-Z, a-z, 0-9, '-' and '_'"]
        );
        let row = GOOD.replace("INV-001", &"A".repeat(65));
        assert_eq!(
            problems_of(&one_row(&row)),
            vec!["invoices.csv:2: invoice_no: has 65 characters; at most 64 are allowed"]
        );
    }

    #[test]
    fn a_hospital_over_32_characters_is_refused() {
        let row = GOOD.replace("市第一人民医院", &"医".repeat(33));
        assert_eq!(
            problems_of(&one_row(&row)),
            vec!["invoices.csv:2: hospital: has 33 characters; at most 32 are allowed"]
        );
        let row = GOOD.replace("市第一人民医院", &"医".repeat(32));
        assert!(read_invoices("i.csv", one_row(&row).as_bytes(), &visit_types()).is_ok());
    }

    #[test]
    fn a_bad_resident_id_is_refused() {
        let row = GOOD.replace(ID, "110105194912310021");
        assert_eq!(
            problems_of(&one_row(&row)),
            vec!["invoices.csv:2: person_id: check character is '1' but should be 'X' (GB 11643)"]
        );
    }

    #[test]
    fn every_empty_required_field_is_reported() {
        let problems = problems_of(&one_row(",,,,,,,,,"));
        assert_eq!(problems.len(), 10);
        assert!(
            problems.iter().all(|problem| problem.contains(": is empty")),
            "{problems:#?}"
        );
    }

    #[test]
    fn a_missing_column_is_named_and_nothing_is_read() {
        let input = HEADER.replace(",hospital", "") + "\n" + &GOOD.replace(",市第一人民医院", "") + "\n";
        assert_eq!(
            problems_of(&input),
            vec!["invoices.csv:1: hospital: is missing from the header; the required columns are invoice_no,person_id,hospital,visit_type,service_date,settled_at,total,fund_paid,in_scope_self_pay,out_of_scope_self_pay"]
        );
    }

    #[test]
    fn a_gbk_invoices_file_is_read() {
        let input = one_row(&GOOD.replace("市第一人民医院", "\"县中医院,东院\""));
        let (bytes, _, _) = encoding_rs::GBK.encode(&input);
        let invoices = read_invoices("invoices.csv", &bytes, &visit_types()).unwrap();
        assert_eq!(invoices[0].hospital.as_str(), "县中医院,东院");
    }

    /// A deterministic stream of pseudo-random numbers (SplitMix64).
    struct Random(u64);

    impl Random {
        fn next(&mut self, below: u64) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut mixed = self.0;
            mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (mixed ^ (mixed >> 31)) % below
        }
    }

    const HOSPITALS: &[&str] = &[
        "市第一人民医院",
        "H3301020001",
        "县中医院",
        "Peking Union",
        "省妇幼保健院",
        "H4401000023",
    ];
    const AWKWARD_HOSPITALS: &[&str] = &["\"中心医院,北院\"", "\"Saint \"\"Luke\"\"\""];
    const NOTES: &[&str] = &["", "复诊", "\"两行\n备注, 带逗号\"", "\"\"\"quoted\"\"\r\nnote\""];

    /// Writes `rows` invoices of the kind `jiuzhu gen` makes, about 130
    /// bytes each; with `awkward`, also quoted fields, a `note` column that
    /// is not read (with line breaks in quotes), CRLF and blank lines.
    fn synthetic_invoices(out: &mut impl std::io::Write, rows: u64, awkward: bool) -> std::io::Result<()> {
        let mut random = Random(42);
        let mut line = String::with_capacity(256);
        writeln!(out, "{HEADER}{}", if awkward { ",note" } else { "" })?;
        for index in 0..rows {
            line.clear();
            let person =
                ResidentId::from_leading_digits(10_000_000_000_000_000 + random.next(90_000_000_000_000_000))
                    .unwrap();
            let hospital = if awkward && random.next(10) == 0 {
                AWKWARD_HOSPITALS[random.next(AWKWARD_HOSPITALS.len() as u64) as usize]
            } else {
                HOSPITALS[random.next(HOSPITALS.len() as u64) as usize]
            };
            let visit_type = ["outpatient", "chronic", "inpatient"][random.next(3) as usize];
            let (month, day) = (1 + random.next(12), 1 + random.next(28));
            let in_scope = random.next(500_000);
            let out_of_scope = random.next(100_000);
            let fund_paid = random.next(2_000_000);
            let total = in_scope + out_of_scope + fund_paid;
            let yuan = |fen: u64| format!("{}.{:02}", fen / 100, fen % 100);
            let _ = write!(
                line,
                "INV2024{index:010},{person},{hospital},{visit_type},2024-{month:02}-{day:02},\
                 2024-{month:02}-{day:02}T{:02}:{:02}:{:02}+08:00,{},{},{},{}",
                random.next(24),
                random.next(60),
                random.next(60),
                yuan(total),
                yuan(fund_paid),
                yuan(in_scope),
                yuan(out_of_scope),
            );
            if awkward {
                line.push(',');
                line.push_str(NOTES[random.next(NOTES.len() as u64) as usize]);
            }
            out.write_all(line.as_bytes())?;
            if awkward && index % 1000 == 7 {
                out.write_all(b"\r\n\n")?;
            } else {
                out.write_all(b"\n")?;
            }
        }
        Ok(())
    }

    fn assert_agree(full: &[Invoice], batch: &[BatchInvoice], visit_types: &[String]) {
        assert_eq!(full.len(), batch.len());
        for (position, (invoice, compact)) in full.iter().zip(batch).enumerate() {
            assert_eq!(compact.position as usize, position);
            assert_eq!(compact.invoice_no, invoice.invoice_no);
            assert_eq!(compact.person, invoice.person);
            assert_eq!(visit_types[usize::from(compact.visit_type)], invoice.visit_type);
            assert_eq!(compact.service_date, invoice.service_date);
            assert_eq!(compact.settled_at, invoice.settled_at);
            assert_eq!(compact.base, invoice.amounts.in_scope_self_pay());
            assert_eq!(
                compact.out_of_scope_self_pay,
                invoice.amounts.out_of_scope_self_pay()
            );
        }
    }

    #[test]
    fn the_batch_reader_agrees_with_the_full_reader_record_for_record() {
        let rows = 200_000;
        let mut bytes = Vec::new();
        synthetic_invoices(&mut bytes, rows, true).unwrap();
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("invoices.csv");
        std::fs::write(&path, &bytes).unwrap();
        let visit_types = visit_types();

        let full = read_invoices("invoices.csv", &bytes, &visit_types).unwrap();
        assert_eq!(full.len() as u64, rows);
        assert!(full
            .iter()
            .any(|invoice| invoice.hospital.as_str() == "Saint \"Luke\""));
        let progressed = std::sync::atomic::AtomicU64::new(0);
        let progress = |bytes: u64| {
            progressed.fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
        };
        let batch = read_batch_invoices_file(&path, "invoices.csv", &visit_types, &progress).unwrap();
        assert_agree(&full, &batch, &visit_types);
        assert_eq!(progressed.into_inner(), bytes.len() as u64);

        // In many small chunks, as a large file is read.
        let format = BatchFormat {
            checks: Checks::new("invoices.csv", &visit_types).unwrap(),
        };
        let mut source = std::fs::File::open(&path).unwrap();
        let chunked = crate::csv_input::read_stream(
            "invoices.csv",
            &mut source,
            None,
            &format,
            1 << 20,
            64 << 10,
            &|_| {},
        )
        .unwrap();
        assert_agree(&full, &chunked, &visit_types);

        // Read as GBK, the same records.
        let text = String::from_utf8(bytes).unwrap();
        let (gbk, _, unmappable) = encoding_rs::GBK.encode(&text);
        assert!(!unmappable);
        let from_gbk = read_batch_invoices("invoices.csv", &gbk, &visit_types).unwrap();
        assert_agree(&full, &from_gbk, &visit_types);
    }

    #[test]
    fn a_problem_deep_in_a_large_file_names_its_line() {
        let mut bytes = Vec::new();
        synthetic_invoices(&mut bytes, 30_000, false).unwrap();
        // Line 20001 holds record 19999 (0-based), after the header.
        let start = bytes
            .iter()
            .enumerate()
            .filter(|(_, &byte)| byte == b'\n')
            .nth(19_999)
            .unwrap()
            .0
            + 1;
        bytes[start..start + 3].copy_from_slice(b"IN/");
        let visit_types = visit_types();
        let format = BatchFormat {
            checks: Checks::new("i.csv", &visit_types).unwrap(),
        };
        let mut cursor = std::io::Cursor::new(&bytes);
        let problems =
            crate::csv_input::read_stream("i.csv", &mut cursor, None, &format, 256 << 10, 16 << 10, &|_| {})
                .unwrap_err();
        assert_eq!(
            problems.to_string(),
            "i.csv:20001: invoice_no: may hold only A-Z, a-z, 0-9, '-' and '_'\n"
        );
    }

    /// The CPU time of this process so far (user and system), in ms, on
    /// Linux; 0 elsewhere. The wall time of a run depends on what else the
    /// machine does; this much less.
    fn cpu_millis() -> u64 {
        let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
            return 0;
        };
        let Some((_, after_name)) = stat.rsplit_once(')') else {
            return 0;
        };
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        // utime and stime, fields 14 and 15 of stat(5), in ticks of 10 ms.
        let ticks: u64 = fields.get(11..13).map_or(0, |times| {
            times.iter().filter_map(|t| t.parse::<u64>().ok()).sum()
        });
        ticks * 10
    }

    /// By hand: `JIUZHU_BENCH_ROWS=10000000 cargo test -p jiuzhu-formats
    /// --release -- --ignored --nocapture reading_batch_invoices_speed`.
    /// `JIUZHU_BENCH_FILE=PATH` keeps the generated file between runs, or
    /// reads an existing one (such as the invoices of `jiuzhu gen`).
    #[test]
    #[ignore]
    fn reading_batch_invoices_speed() {
        let rows: u64 = std::env::var("JIUZHU_BENCH_ROWS")
            .ok()
            .and_then(|rows| rows.parse().ok())
            .unwrap_or(2_000_000);
        let directory = tempfile::tempdir().unwrap();
        let path = match std::env::var("JIUZHU_BENCH_FILE") {
            Ok(path) => std::path::PathBuf::from(path),
            Err(_) => directory.path().join("invoices.csv"),
        };
        if !path.exists() {
            let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&path).unwrap());
            synthetic_invoices(&mut out, rows, false).unwrap();
            out.flush().unwrap();
        }
        let bytes = std::fs::metadata(&path).unwrap().len();
        // `jiuzhu gen` also writes emergency visits.
        let mut visit_types = visit_types();
        visit_types.push("emergency".into());
        for run in 1..=3 {
            let cpu_before = cpu_millis();
            let started = Instant::now();
            let invoices = read_batch_invoices_file(&path, "invoices.csv", &visit_types, &|_| {}).unwrap();
            let micros = started.elapsed().as_micros().max(1) as u64;
            println!(
                "run {run}: {} records, {} MB in {} ms: {} MB/s on {} threads",
                invoices.len(),
                bytes / 1_000_000,
                micros / 1000,
                bytes / micros,
                rayon::current_num_threads()
            );
            let cpu = cpu_millis().saturating_sub(cpu_before).max(1);
            println!(
                "  CPU time {cpu} ms: {} MB/s per busy core; {} bytes per record held",
                bytes / 1000 / cpu,
                std::mem::size_of::<BatchInvoice>()
            );
        }
    }
}
