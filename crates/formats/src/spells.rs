//! `spells.csv` (`formats.md`, "Spells"): who holds which category when, as
//! departments report it.

use std::path::Path;

use jiuzhu_core::{Date, Policy, ResidentId, Spell, SpellError};

use crate::csv_input::{text, CellKind, Column, CsvFormat, Layout, Mode, Record, RowProblems};
use crate::input::{self, ReadOptions};
use crate::partitioned::Partitioned;
use crate::problem::Problems;

const PERSON_ID: usize = 0;
const CATEGORY: usize = 1;
const VALID_FROM: usize = 2;
const VALID_TO: usize = 3;
const SOURCE: usize = 4;

const COLUMNS: &[Column] = &[
    Column {
        name: "person_id",
        required: true,
        kind: CellKind::Identifier,
    },
    Column {
        name: "category",
        required: true,
        kind: CellKind::Text,
    },
    Column {
        name: "valid_from",
        required: true,
        kind: CellKind::Date,
    },
    Column {
        name: "valid_to",
        required: false,
        kind: CellKind::Date,
    },
    Column {
        name: "source",
        required: false,
        kind: CellKind::Text,
    },
];

/// The most category codes a message lists.
const CODES_LISTED: usize = 20;

/// Reads and checks a spells file from disk: CSV (UTF-8 or GBK) or an XLSX
/// workbook (its first sheet), larger than [`crate::DEFAULT_MAX_INPUT_BYTES`]
/// refused. With a policy, every category must be one of its codes. Either
/// every spell, or every problem found.
pub fn read_spells_file(path: &Path, file: &str, policy: Option<&Policy>) -> Result<Vec<Spell>, Problems> {
    read_spells_file_with(path, file, policy, &ReadOptions::default())
}

/// [`read_spells_file`] with other options.
pub fn read_spells_file_with(
    path: &Path,
    file: &str,
    policy: Option<&Policy>,
    options: &ReadOptions,
) -> Result<Vec<Spell>, Problems> {
    let format = SpellsFormat { policy };
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

/// Reads and checks a spells file held in memory (CSV or XLSX); `file`
/// names it in problems.
pub fn read_spells(file: &str, bytes: &[u8], policy: Option<&Policy>) -> Result<Vec<Spell>, Problems> {
    input::read_bytes(file, bytes, &SpellsFormat { policy }, Mode::Strict).map(|outcome| outcome.rows)
}

/// Reads a spells file held in memory leniently: every good spell with its
/// line, and every bad record with its fields and all its problems. Only
/// problems with the whole file (unreadable, empty, not text, a required
/// column missing from the header) are an `Err`.
pub fn read_spells_partitioned(
    file: &str,
    bytes: &[u8],
    policy: Option<&Policy>,
) -> Result<Partitioned<Spell>, Problems> {
    input::read_bytes(file, bytes, &SpellsFormat { policy }, Mode::Lenient).map(Partitioned::from_outcome)
}

/// [`read_spells_partitioned`] over a file on disk.
pub fn read_spells_partitioned_file(
    path: &Path,
    file: &str,
    policy: Option<&Policy>,
    options: &ReadOptions,
) -> Result<Partitioned<Spell>, Problems> {
    let format = SpellsFormat { policy };
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

/// A spell with the line of the file it was read from, so that a problem
/// found later (two rows that overlap) can name its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpellRow {
    pub line: u64,
    pub spell: Spell,
}

/// Like [`read_spells`], each spell with its line.
pub fn read_spell_rows(file: &str, bytes: &[u8], policy: Option<&Policy>) -> Result<Vec<SpellRow>, Problems> {
    input::read_bytes(file, bytes, &Numbered(SpellsFormat { policy }), Mode::Strict)
        .map(|outcome| outcome.rows)
}

struct SpellsFormat<'p> {
    policy: Option<&'p Policy>,
}

/// A format whose rows carry their line.
struct Numbered<F>(F);

impl<F: CsvFormat<Row = Spell>> CsvFormat for Numbered<F> {
    type Row = SpellRow;
    const COLUMNS: &'static [Column] = F::COLUMNS;

    fn read_row(
        &self,
        layout: &Layout,
        record: &Record<'_>,
        problems: &mut RowProblems<'_>,
    ) -> Option<SpellRow> {
        let spell = self.0.read_row(layout, record, problems)?;
        Some(SpellRow {
            line: record.line(),
            spell,
        })
    }
}

impl CsvFormat for SpellsFormat<'_> {
    type Row = Spell;
    const COLUMNS: &'static [Column] = COLUMNS;

    fn read_row(
        &self,
        layout: &Layout,
        record: &Record<'_>,
        problems: &mut RowProblems<'_>,
    ) -> Option<Spell> {
        let field = |column: usize| record.get(layout.field(column));

        let person = ResidentId::parse_bytes(field(PERSON_ID))
            .map_err(|error| problems.add(PERSON_ID, || error.to_string()))
            .ok();

        let category = text(field(CATEGORY));
        if category.is_empty() {
            problems.add(CATEGORY, || "is empty; expected a category code".to_owned());
        } else if let Some(policy) = self.policy {
            if policy.category_by_code(&category).is_none() {
                problems.add(CATEGORY, || unknown_category(&category, policy));
            }
        }

        let valid_from = Date::parse(&text(field(VALID_FROM)))
            .map_err(|error| problems.add(VALID_FROM, || error.to_string()))
            .ok();
        let valid_to = field(VALID_TO);
        let valid_to = if valid_to.is_empty() {
            Some(None)
        } else {
            Date::parse(&text(valid_to))
                .map(Some)
                .map_err(|error| problems.add(VALID_TO, || error.to_string()))
                .ok()
        };
        let source = field(SOURCE);
        let source = (!source.is_empty()).then(|| text(source).into_owned());

        if !problems.is_empty() {
            return None;
        }
        let (Some(person), Some(valid_from), Some(valid_to)) = (person, valid_from, valid_to) else {
            return None;
        };
        match Spell::new(person, category, valid_from, valid_to, source) {
            Ok(spell) => Some(spell),
            Err(error) => {
                let column = match error {
                    SpellError::EndsBeforeStart { .. } => VALID_TO,
                    SpellError::EmptyCategory => CATEGORY,
                };
                problems.add(column, || error.to_string());
                None
            }
        }
    }
}

pub(crate) fn unknown_category(code: &str, policy: &Policy) -> String {
    let codes: Vec<&str> = policy
        .categories()
        .iter()
        .map(|category| category.code.as_str())
        .collect();
    if codes.is_empty() {
        return format!("{code:?} is not a category of the policy, which defines none");
    }
    let mut listed = codes[..codes.len().min(CODES_LISTED)].join(", ");
    if codes.len() > CODES_LISTED {
        listed.push_str(&format!(" and {} more", codes.len() - CODES_LISTED));
    }
    format!("{code:?} is not a category of the policy; its categories are {listed}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problem::MAX_PROBLEMS_REPORTED;
    use jiuzhu_core::{CategoryDraft, PolicyDraft};

    const ID: &str = "11010519491231002X";
    const OTHER_ID: &str = "440524188001010014";

    fn policy() -> Policy {
        let category = |code: &str, rank| CategoryDraft {
            code: code.into(),
            name: None,
            rank,
        };
        Policy::from_draft(PolicyDraft {
            name: None,
            categories: vec![category("TK", 1), category("DB", 2)],
            pools: vec![("outpatient".into(), "outpatient".into())],
            versions: vec![],
        })
        .unwrap()
    }

    fn date(text: &str) -> Date {
        Date::parse(text).unwrap()
    }

    fn problems_of(input: &str) -> Vec<String> {
        let policy = policy();
        let problems = read_spells("spells.csv", input.as_bytes(), Some(&policy)).unwrap_err();
        problems.kept().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_valid_file_reads_into_spells() {
        let input = format!(
            "person_id,category,valid_from,valid_to,source\n\
             {ID},TK,2024-01-01,2024-06-30,民政\n\
             {OTHER_ID},DB,2024-02-01,,\n"
        );
        let policy = policy();
        let spells = read_spells("spells.csv", input.as_bytes(), Some(&policy)).unwrap();
        let person = ResidentId::parse(ID).unwrap();
        assert_eq!(
            spells,
            vec![
                Spell::new(
                    person,
                    "TK",
                    date("2024-01-01"),
                    Some(date("2024-06-30")),
                    Some("民政".into())
                )
                .unwrap(),
                Spell::new(
                    ResidentId::parse(OTHER_ID).unwrap(),
                    "DB",
                    date("2024-02-01"),
                    None,
                    None
                )
                .unwrap(),
            ]
        );
    }

    #[test]
    fn columns_may_come_in_any_order_and_unknown_ones_are_ignored() {
        let input = format!("note,valid_from,category,person_id,extra\nhello,2024-01-01,DB,{ID},\"x,y\"\n");
        let spells = read_spells("spells.csv", input.as_bytes(), None).unwrap();
        assert_eq!(spells.len(), 1);
        assert_eq!(spells[0].category(), "DB");
        assert_eq!(spells[0].valid_to(), None);
        assert_eq!(spells[0].source(), None);
    }

    #[test]
    fn without_a_policy_any_category_code_is_taken() {
        let input = format!("person_id,category,valid_from\n{ID},XYZ,2024-01-01\n");
        assert_eq!(
            read_spells("spells.csv", input.as_bytes(), None).unwrap()[0].category(),
            "XYZ"
        );
    }

    #[test]
    fn a_missing_required_column_is_named() {
        let input = format!("person_id,Category ,valid_to\n{ID},DB,2024-01-01\n");
        let problems = problems_of(&input);
        assert_eq!(problems.len(), 2);
        assert!(
            problems[0]
                .starts_with("spells.csv:1: category: is missing from the header (there is \"Category \""),
            "{problems:?}"
        );
        assert!(
            problems[1].starts_with("spells.csv:1: valid_from: is missing from the header;"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_column_named_twice_is_refused() {
        let input = format!("person_id,category,valid_from,category\n{ID},DB,2024-01-01,DB\n");
        assert_eq!(
            problems_of(&input),
            vec!["spells.csv:1: category: is named twice in the header (columns 2 and 4); each column may appear only once"]
        );
    }

    #[test]
    fn a_record_with_too_many_or_too_few_fields_is_refused() {
        let input =
            format!("person_id,category,valid_from\n{ID},DB\n{ID},DB,2024-01-01,x\n{ID},DB,2024-01-01\n");
        assert_eq!(
            problems_of(&input),
            vec![
                "spells.csv:2: has 2 fields but the header has 3 columns (a comma too many or too few?)",
                "spells.csv:3: has 4 fields but the header has 3 columns (a comma too many or too few?)",
            ]
        );
    }

    #[test]
    fn a_resident_id_with_a_wrong_check_character_is_refused() {
        let input = "person_id,category,valid_from\n110105194912310021,DB,2024-01-01\n";
        assert_eq!(
            problems_of(input),
            vec!["spells.csv:2: person_id: check character is '1' but should be 'X' (GB 11643)"]
        );
    }

    #[test]
    fn a_category_the_policy_does_not_define_is_refused() {
        let input = format!("person_id,category,valid_from\n{ID},XX,2024-01-01\n");
        assert_eq!(
            problems_of(&input),
            vec!["spells.csv:2: category: \"XX\" is not a category of the policy; its categories are TK, DB"]
        );
    }

    #[test]
    fn a_spell_that_ends_before_it_starts_is_refused() {
        let input = format!("person_id,category,valid_from,valid_to\n{ID},DB,2024-03-02,2024-03-01\n");
        assert_eq!(
            problems_of(&input),
            vec!["spells.csv:2: valid_to: ends on 2024-03-01, before it starts on 2024-03-02"]
        );
    }

    #[test]
    fn bad_dates_and_empty_required_fields_are_refused() {
        let input = "person_id,category,valid_from,valid_to\n,,2024-02-30,24-01-01\n";
        assert_eq!(
            problems_of(input),
            vec![
                "spells.csv:2: person_id: is empty; expected an 18-character resident ID number",
                "spells.csv:2: category: is empty; expected a category code",
                "spells.csv:2: valid_from: \"2024-02-30\" is not a day of the calendar",
                "spells.csv:2: valid_to: \"24-01-01\" is not a date as YYYY-MM-DD",
            ]
        );
    }

    #[test]
    fn problems_of_one_record_follow_the_order_of_its_columns() {
        let input = "valid_from,category,person_id\nbad,XX,bad\n";
        let columns: Vec<Option<String>> = read_spells("s.csv", input.as_bytes(), Some(&policy()))
            .unwrap_err()
            .kept()
            .iter()
            .map(|problem| problem.column.clone())
            .collect();
        assert_eq!(
            columns,
            vec![
                Some("valid_from".into()),
                Some("category".into()),
                Some("person_id".into())
            ]
        );
    }

    #[test]
    fn a_quoted_field_with_commas_and_line_breaks_keeps_later_line_numbers_right() {
        let input = format!(
            "person_id,category,valid_from,source\n\
             {ID},DB,2024-01-01,\"民政局,\n第二行\r\n第\"\"三\"\"行\"\n\
             {ID},XX,2024-01-01,\n"
        );
        let problems = read_spells("spells.csv", input.as_bytes(), Some(&policy())).unwrap_err();
        assert_eq!(problems.kept().len(), 1);
        assert_eq!(problems.kept()[0].line, Some(5));
        let fixed = input.replace("XX", "TK");
        let spells = read_spells("spells.csv", fixed.as_bytes(), Some(&policy())).unwrap();
        assert_eq!(spells[0].source(), Some("民政局,\n第二行\r\n第\"三\"行"));
    }

    #[test]
    fn blank_lines_a_bom_and_crlf_line_ends_are_accepted() {
        let input = format!("\u{FEFF}person_id,category,valid_from\r\n\r\n{ID},DB,2024-01-01\r\n  \r\n\n{OTHER_ID},TK,2024-01-02");
        let spells = read_spells("spells.csv", input.as_bytes(), Some(&policy())).unwrap();
        assert_eq!(spells.len(), 2);
        assert_eq!(spells[1].valid_from(), date("2024-01-02"));
        let bad =
            format!("\u{FEFF}person_id,category,valid_from\r\n\r\n{ID},DB,2024-01-01\r\n\r\n{ID},DB,x\r\n");
        assert_eq!(
            problems_of(&bad),
            vec!["spells.csv:5: valid_from: \"x\" is not a date as YYYY-MM-DD"]
        );
    }

    #[test]
    fn a_gbk_file_is_read_as_gbk() {
        let input = format!("person_id,category,valid_from,source\n{ID},DB,2024-01-01,\"民政局,残联\"\n");
        let (bytes, _, unmappable) = encoding_rs::GBK.encode(&input);
        assert!(!unmappable);
        assert!(std::str::from_utf8(&bytes).is_err());
        let spells = read_spells("spells.csv", &bytes, Some(&policy())).unwrap();
        assert_eq!(spells[0].source(), Some("民政局,残联"));
    }

    #[test]
    fn problems_in_a_gbk_file_name_the_right_line() {
        let input = format!(
            "person_id,category,valid_from,source\n{ID},DB,2024-01-01,民政\n\n{ID},XX,2024-01-01,残联\n"
        );
        let (bytes, _, _) = encoding_rs::GBK.encode(&input);
        assert_eq!(
            read_spells("spells.csv", &bytes, Some(&policy()))
                .unwrap_err()
                .to_string(),
            "spells.csv:4: category: \"XX\" is not a category of the policy; its categories are TK, DB\n"
        );
    }

    #[test]
    fn a_file_that_is_neither_utf8_nor_gbk_is_refused_with_the_line_of_the_bad_byte() {
        let mut bytes = format!("person_id,category,valid_from\n{ID},DB,2024-01-01\n{ID},DB,").into_bytes();
        bytes.extend_from_slice(b"\xFF\xFF\n");
        let problems = read_spells("spells.csv", &bytes, None).unwrap_err();
        assert_eq!(problems.total(), 1);
        assert_eq!(
            problems.to_string(),
            "spells.csv:3: is neither UTF-8 nor GBK text: line 3 holds bytes that are valid in neither; \
             save the file as CSV in UTF-8\n"
        );
    }

    #[test]
    fn binary_garbage_is_refused_as_not_text() {
        let bytes: Vec<u8> = (0..4000u32).map(|index| (index * 7919 % 251) as u8).collect();
        let problems = read_spells("spells.csv", &bytes, None).unwrap_err();
        assert_eq!(problems.total(), 1);
        assert!(
            problems.kept()[0]
                .message
                .starts_with("holds binary data (a NUL byte on line 1)"),
            "{problems}"
        );
        let rows = format!("{ID},DB,2024-01-01\n").repeat(599);
        let mut late_nul = format!("person_id,category,valid_from\n{rows}").into_bytes();
        late_nul.extend_from_slice(b"x\0y\n");
        let problems = read_spells("spells.csv", &late_nul, None).unwrap_err();
        assert!(
            problems.kept()[0]
                .message
                .starts_with("holds binary data (a NUL byte on line 601)"),
            "{problems}"
        );
        let zip = b"PK\x03\x04\x14\x00\x06\x00";
        assert!(read_spells("spells.xlsx", zip, None)
            .unwrap_err()
            .to_string()
            .contains("ZIP archive"));
    }

    #[test]
    fn an_empty_file_is_refused() {
        assert_eq!(
            read_spells("spells.csv", b"", None).unwrap_err().to_string(),
            "spells.csv:1: is empty: expected a header row naming the columns \
             person_id,category,valid_from,valid_to,source\n"
        );
    }

    #[test]
    fn many_problems_are_capped_at_the_limit_and_counted() {
        let mut input = String::from("person_id,category,valid_from\n");
        for _ in 0..250 {
            input.push_str("x,,2024-01-01\n");
        }
        let problems = read_spells("spells.csv", input.as_bytes(), None).unwrap_err();
        assert_eq!(problems.total(), 500);
        assert_eq!(problems.kept().len(), MAX_PROBLEMS_REPORTED);
        assert!(problems.to_string().ends_with("… and 400 more problems\n"));
    }

    #[test]
    fn problems_come_in_file_order() {
        let mut input = String::from("person_id,category,valid_from\n");
        for index in 0..3000 {
            if index % 97 == 0 {
                input.push_str("x,DB,2024-01-01\n");
            } else {
                input.push_str(&format!("{ID},DB,2024-01-01\n"));
            }
        }
        let mut cursor = std::io::Cursor::new(input.as_bytes());
        let format = SpellsFormat { policy: None };
        let problems = crate::csv_input::read_stream("s.csv", &mut cursor, None, &format, 4096, 512, &|_| {})
            .unwrap_err();
        let lines: Vec<u64> = problems
            .kept()
            .iter()
            .filter_map(|problem| problem.line)
            .collect();
        let expected: Vec<u64> = (0..3000u64)
            .filter(|index| index % 97 == 0)
            .map(|index| index + 2)
            .collect();
        assert_eq!(lines, expected);
    }

    #[test]
    fn each_spell_row_carries_the_line_it_starts_on() {
        let input = format!(
            "person_id,category,valid_from,source\n\n{ID},DB,2024-01-01,\"民政,\n局\"\n{OTHER_ID},TK,2024-01-02,\n"
        );
        let rows = read_spell_rows("spells.csv", input.as_bytes(), Some(&policy())).unwrap();
        let lines: Vec<u64> = rows.iter().map(|row| row.line).collect();
        assert_eq!(lines, vec![3, 5]);
        assert_eq!(rows[1].spell.category(), "TK");
        let plain =
            format!("person_id,category,valid_from\n{ID},DB,2024-01-01\n\n{OTHER_ID},TK,2024-01-02\n");
        let rows = read_spell_rows("spells.csv", plain.as_bytes(), None).unwrap();
        assert_eq!(rows.iter().map(|row| row.line).collect::<Vec<_>>(), vec![2, 4]);
    }

    #[test]
    fn a_spells_file_is_read_from_disk() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("spells.csv");
        std::fs::write(
            &path,
            format!("person_id,category,valid_from\n{ID},DB,2024-01-01\n"),
        )
        .unwrap();
        assert_eq!(
            read_spells_file(&path, "spells.csv", Some(&policy()))
                .unwrap()
                .len(),
            1
        );
        let missing = read_spells_file(&directory.path().join("nope.csv"), "nope.csv", None).unwrap_err();
        assert!(
            missing.to_string().starts_with("nope.csv: cannot be opened: "),
            "{missing}"
        );
    }
}
