//! Bank files of disbursement (拨付): the persons' accounts as staff load
//! them, the payment file sent to the bank, and the bank's return file.
//!
//! - Accounts (`person_id,name,bank,account`): the account holder's name,
//!   the bank, and the account number (8 to 32 digits; spaces and dashes
//!   between digit groups are dropped).
//! - Payment file (`batch_id,line_id,person_id,name,account,amount,reference`):
//!   written by [`payment_file_text`], money as in `formats.md`.
//! - Return file (`line_id,status,reason`, and optionally `amount`): one row
//!   per line the bank answers; `status` is `paid` or `failed`, a failed
//!   line needs its `reason`; an `amount`, when given, must be the line's.
//!
//! Comma-separated, a header row first; the accounts file in UTF-8 (a
//! byte-order mark is dropped) or GBK, or as an XLSX workbook, the return
//! file in UTF-8. Every problem names the file, line and column; a file with any
//! problem is refused whole.

use jiuzhu_core::{Fen, ResidentId};

use crate::csv_input::{text, CellKind, Column, CsvFormat, Layout, Mode, Record, RowProblems};
use crate::input;
use crate::problem::{Problem, Problems};
use crate::results::csv_field;

/// A person's bank account as staff load it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BankAccountRow {
    pub line: u64,
    pub person: ResidentId,
    pub holder_name: String,
    pub bank: String,
    /// Digits only.
    pub account: String,
}

/// The bank's answer for one line of a payment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnRow {
    pub line: u64,
    pub line_id: i64,
    pub paid: bool,
    pub reason: Option<String>,
    pub amount: Option<Fen>,
}

/// One line of the payment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentLine {
    pub batch_id: i64,
    pub line_id: i64,
    pub person: ResidentId,
    pub holder_name: String,
    pub account: String,
    pub amount: Fen,
    pub reference: String,
}

pub const PAYMENT_FILE_HEADER: &str = "batch_id,line_id,person_id,name,account,amount,reference";
pub const ACCOUNTS_HEADER: &str = "person_id,name,bank,account";
pub const RETURN_HEADER: &str = "line_id,status,reason";

/// The payment file's text: the header, then one row per line.
pub fn payment_file_text(lines: &[PaymentLine]) -> String {
    let mut text = String::with_capacity(96 * (lines.len() + 1));
    text.push_str(PAYMENT_FILE_HEADER);
    text.push('\n');
    for line in lines {
        text.push_str(&format!(
            "{},{},{},{},{},{},{}\n",
            line.batch_id,
            line.line_id,
            line.person,
            csv_field(&line.holder_name),
            line.account,
            line.amount,
            csv_field(&line.reference)
        ));
    }
    text
}

/// The rows of a file with a header: each row's fields by the header's
/// names, with its line number. Problems of the file as a whole refuse it.
struct Table {
    columns: Vec<String>,
    rows: Vec<(u64, Vec<String>)>,
}

impl Table {
    fn read(name: &str, bytes: &[u8], required: &[&str], optional: &[&str]) -> Result<Table, Problems> {
        let refuse = |message: String| -> Problems { Problem::whole_file(name, message).into() };
        if bytes.is_empty() {
            return Err(refuse("is empty: a header row is expected".into()));
        }
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let text = std::str::from_utf8(bytes)
            .map_err(|error| refuse(format!("is not UTF-8 text (byte {} is not)", error.valid_up_to())))?;
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(text.as_bytes());
        let mut records = reader.records();
        let header = match records.next() {
            Some(Ok(header)) => header,
            Some(Err(error)) => return Err(refuse(format!("cannot be read as CSV: {error}"))),
            None => return Err(refuse("is empty: a header row is expected".into())),
        };
        let columns: Vec<String> = header.iter().map(|column| column.trim().to_owned()).collect();
        let mut problems = Problems::new();
        for column in required {
            if !columns.iter().any(|name| name == column) {
                problems.push(Problem::at(
                    name,
                    1,
                    column,
                    format!("the column {column} is missing"),
                ));
            }
        }
        for column in &columns {
            if !required.contains(&column.as_str()) && !optional.contains(&column.as_str()) {
                problems.push(Problem::at(
                    name,
                    1,
                    column,
                    format!("{column:?} is not a column of this file"),
                ));
            }
        }
        let mut rows = Vec::new();
        for record in records {
            match record {
                Ok(record) => {
                    let line = record.position().map_or(0, |position| position.line());
                    if record.iter().all(|field| field.trim().is_empty()) {
                        continue;
                    }
                    if record.len() != columns.len() {
                        problems.push(Problem::at_line(
                            name,
                            line,
                            format!("has {} fields; the header has {}", record.len(), columns.len()),
                        ));
                        continue;
                    }
                    rows.push((line, record.iter().map(|field| field.trim().to_owned()).collect()));
                }
                Err(error) => {
                    let line = error.position().map_or(0, |position| position.line());
                    problems.push(Problem::at_line(
                        name,
                        line,
                        format!("cannot be read as CSV: {error}"),
                    ));
                }
            }
        }
        problems.into_result()?;
        Ok(Table { columns, rows })
    }

    fn index(&self, column: &str) -> Option<usize> {
        self.columns.iter().position(|name| name == column)
    }
}

/// The accounts file's columns, in [`BankAccountsFormat`]'s order.
const ACCOUNT_COLUMNS: &[Column] = &[
    Column {
        name: "person_id",
        required: true,
        kind: CellKind::Identifier,
    },
    Column {
        name: "name",
        required: true,
        kind: CellKind::Text,
    },
    Column {
        name: "bank",
        required: true,
        kind: CellKind::Text,
    },
    Column {
        name: "account",
        required: true,
        kind: CellKind::Identifier,
    },
];
const PERSON_ID: usize = 0;
const HOLDER_NAME: usize = 1;
const BANK: usize = 2;
const ACCOUNT: usize = 3;
/// The longest holder's name and bank name, in characters.
const LONGEST_NAME: usize = 64;

/// The accounts file as the row readers read it: CSV in UTF-8 or GBK, or
/// the first sheet of an XLSX workbook.
struct BankAccountsFormat;

impl CsvFormat for BankAccountsFormat {
    type Row = BankAccountRow;
    const COLUMNS: &'static [Column] = ACCOUNT_COLUMNS;

    fn read_row(
        &self,
        layout: &Layout,
        record: &Record<'_>,
        problems: &mut RowProblems<'_>,
    ) -> Option<BankAccountRow> {
        let field = |column: usize| text(record.get(layout.field(column))).trim().to_owned();
        let typed = field(PERSON_ID);
        let person = ResidentId::parse(&typed)
            .map_err(|error| problems.add(PERSON_ID, || format!("{typed:?} {error}")))
            .ok();
        let mut named = |column: usize| -> Option<String> {
            let value = field(column);
            if value.is_empty() {
                problems.add(column, || "is empty".to_owned());
                None
            } else if value.chars().count() > LONGEST_NAME {
                problems.add(column, || format!("is longer than {LONGEST_NAME} characters"));
                None
            } else {
                Some(value)
            }
        };
        let holder_name = named(HOLDER_NAME);
        let bank = named(BANK);
        let typed = field(ACCOUNT);
        let account: String = typed.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
        let account_ok =
            account.len() >= 8 && account.len() <= 32 && account.bytes().all(|byte| byte.is_ascii_digit());
        if !account_ok {
            problems.add(ACCOUNT, || {
                format!("{typed:?} is not an account number: 8 to 32 digits")
            });
        }
        match (person, holder_name, bank, account_ok) {
            (Some(person), Some(holder_name), Some(bank), true) => Some(BankAccountRow {
                line: record.line(),
                person,
                holder_name,
                bank,
                account,
            }),
            _ => None,
        }
    }
}

/// Reads a file of bank accounts: CSV (UTF-8 with or without a BOM, or
/// GBK/GB18030) or an XLSX workbook's first sheet; a file with any bad row
/// is refused whole, every problem named.
pub fn read_bank_accounts(name: &str, bytes: &[u8]) -> Result<Vec<BankAccountRow>, Problems> {
    let rows = input::read_bytes(name, bytes, &BankAccountsFormat, Mode::Strict)?.rows;
    if rows.is_empty() {
        return Err(Problem::whole_file(name, "holds no account").into());
    }
    Ok(rows)
}

/// Reads the bank's return file.
pub fn read_bank_return(name: &str, bytes: &[u8]) -> Result<Vec<ReturnRow>, Problems> {
    let table = Table::read(name, bytes, &["line_id", "status", "reason"], &["amount"])?;
    let column = |column| table.index(column).unwrap_or(0);
    let (line_at, status_at, reason_at) = (column("line_id"), column("status"), column("reason"));
    let amount_at = table.index("amount");
    let mut problems = Problems::new();
    let mut rows = Vec::with_capacity(table.rows.len());
    for (line, fields) in &table.rows {
        let line = *line;
        let line_id = match fields[line_at].parse::<i64>() {
            Ok(id) if id > 0 => Some(id),
            _ => {
                problems.push(Problem::at(
                    name,
                    line,
                    "line_id",
                    format!("{:?} is not a line number", fields[line_at]),
                ));
                None
            }
        };
        let reason = Some(fields[reason_at].clone()).filter(|reason| !reason.is_empty());
        let paid = match fields[status_at].as_str() {
            "paid" => Some(true),
            "failed" if reason.is_none() => {
                problems.push(Problem::at(
                    name,
                    line,
                    "reason",
                    "a failed line needs the bank's reason",
                ));
                None
            }
            "failed" => Some(false),
            other => {
                problems.push(Problem::at(
                    name,
                    line,
                    "status",
                    format!("{other:?} is not paid or failed"),
                ));
                None
            }
        };
        let amount = match amount_at
            .map(|at| fields[at].as_str())
            .filter(|text| !text.is_empty())
        {
            None => Some(None),
            Some(text) => match Fen::parse_yuan(text) {
                Ok(amount) => Some(Some(amount)),
                Err(error) => {
                    problems.push(Problem::at(name, line, "amount", error.to_string()));
                    None
                }
            },
        };
        if let (Some(line_id), Some(paid), Some(amount)) = (line_id, paid, amount) {
            rows.push(ReturnRow {
                line,
                line_id,
                paid,
                reason,
                amount,
            });
        }
    }
    problems.into_result()?;
    if rows.is_empty() {
        return Err(Problem::whole_file(name, "answers no line").into());
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_are_read_with_spaces_and_dashes_dropped_from_the_number() {
        let text = "person_id,name,bank,account\n110105196001010017,张三,农业银行,6228 4800-1234 5678\n";
        let rows = read_bank_accounts("a.csv", text.as_bytes()).unwrap();
        assert_eq!(rows[0].account, "6228480012345678");
        assert_eq!((rows[0].line, rows[0].holder_name.as_str()), (2, "张三"));
    }

    #[test]
    fn every_bad_account_field_is_named_with_its_line() {
        let text = "person_id,name,bank,account\n110105196001010018,张三,农业银行,123\n110105196001010017,,农业银行,62284800123456\n";
        let problems = read_bank_accounts("a.csv", text.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(problems.contains("a.csv:2: person_id"), "{problems}");
        assert!(problems.contains("a.csv:2: account"), "{problems}");
        assert!(problems.contains("a.csv:3: name: is empty"), "{problems}");
    }

    #[test]
    fn accounts_are_read_from_gbk_text_as_from_utf8() {
        let text = "person_id,name,bank,account\n110105196001010017,张三,农业银行,6228480012345678\n";
        let (gbk, _, unmappable) = encoding_rs::GBK.encode(text);
        assert!(!unmappable && std::str::from_utf8(&gbk).is_err());
        let rows = read_bank_accounts("a.csv", &gbk).unwrap();
        assert_eq!(
            (
                rows[0].holder_name.as_str(),
                rows[0].bank.as_str(),
                rows[0].account.as_str()
            ),
            ("张三", "农业银行", "6228480012345678")
        );
        let bad = encoding_rs::GBK
            .encode("person_id,name,bank,account\n110105196001010017,张三,农业银行,12\n")
            .0;
        let problems = read_bank_accounts("a.csv", &bad).unwrap_err().to_string();
        assert!(problems.contains("a.csv:2: account"), "{problems}");
    }

    #[test]
    fn a_return_file_needs_known_statuses_and_reasons_for_failures() {
        let good = "line_id,status,reason,amount\n1,paid,,12.50\n2,failed,账户已销户,\n";
        let rows = read_bank_return("r.csv", good.as_bytes()).unwrap();
        assert_eq!(rows[0].amount, Some(Fen::from_fen(1250)));
        assert!(rows[0].paid && !rows[1].paid);
        assert_eq!(rows[1].reason.as_deref(), Some("账户已销户"));
        let bad = "line_id,status,reason\nx,paid,\n2,failed,\n3,lost,\n";
        let problems = read_bank_return("r.csv", bad.as_bytes()).unwrap_err().to_string();
        for expected in ["r.csv:2: line_id", "r.csv:3: reason", "r.csv:4: status"] {
            assert!(problems.contains(expected), "{expected}: {problems}");
        }
        let missing = read_bank_return("r.csv", b"line_id,status\n1,paid\n")
            .unwrap_err()
            .to_string();
        assert!(missing.contains("the column reason is missing"), "{missing}");
        assert!(read_bank_return("r.csv", b"").is_err());
        assert!(read_bank_return("r.csv", b"\xff\xfe").is_err());
    }

    #[test]
    fn the_payment_file_quotes_only_what_needs_it() {
        let line = PaymentLine {
            batch_id: 3,
            line_id: 7,
            person: ResidentId::parse("110105196001010017").unwrap(),
            holder_name: "张,三".into(),
            account: "6228480012345678".into(),
            amount: Fen::from_fen(123_456),
            reference: "医疗救助 JZ3-7".into(),
        };
        assert_eq!(
            payment_file_text(&[line]),
            "batch_id,line_id,person_id,name,account,amount,reference\n\
             3,7,110105196001010017,\"张,三\",6228480012345678,1234.56,医疗救助 JZ3-7\n"
        );
    }
}
