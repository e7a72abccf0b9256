//! Lenient reading: every good row kept with its line, every bad one set
//! aside with its fields and every reason; and the report of the bad ones.

mod common;

use common::{messages, policy, text_sheet, visit_types, workbook, Cell};
use jiuzhu_core::{Date, ResidentId, Spell};
use jiuzhu_formats::{
    read_invoices, read_invoices_partitioned, read_invoices_partitioned_file, read_spells,
    read_spells_partitioned, read_spells_partitioned_file, write_rejected_csv, GoodRow, Problem, ReadOptions,
    RejectedRow,
};

const ID: &str = "11010519491231002X";
const OTHER_ID: &str = "440524188001010014";

fn spell(person: &str, category: &str, from: &str, to: Option<&str>, source: Option<&str>) -> Spell {
    Spell::new(
        ResidentId::parse(person).unwrap(),
        category,
        Date::parse(from).unwrap(),
        to.map(|to| Date::parse(to).unwrap()),
        source.map(str::to_owned),
    )
    .unwrap()
}

fn strings(fields: &[&str]) -> Vec<String> {
    fields.iter().map(|field| field.to_string()).collect()
}

/// A spells file with good rows between bad ones of every kind.
fn mixed_spells() -> String {
    format!(
        "person_id,category,valid_from,valid_to,source\n\
         {ID},TK,2024-01-01,2024-06-30,民政\n\
         110105194912310021,DB,2024-01-01,,\n\
         {OTHER_ID},XX,2024-01-01,,残联\n\
         \n\
         {ID},DB,2024-03-02,2024-03-01,\n\
         {OTHER_ID},DB,2024-02-30,,\n\
         {OTHER_ID},DB,2024-02-01,,\n\
         ,,2024-01-01,x,\n\
         {ID},DB,2024-01-01\n\
         {OTHER_ID},TK,2024-07-01,2024-12-31,\"乡村振兴,二组\"\n"
    )
}

#[test]
fn a_file_with_bad_rows_of_every_kind_yields_the_good_rows_and_every_reason() {
    let policy = policy();
    let read = read_spells_partitioned("spells.csv", mixed_spells().as_bytes(), Some(&policy)).unwrap();
    assert_eq!(
        read.header,
        strings(&["person_id", "category", "valid_from", "valid_to", "source"])
    );
    assert_eq!(
        read.good,
        vec![
            GoodRow {
                line: 2,
                row: spell(ID, "TK", "2024-01-01", Some("2024-06-30"), Some("民政")),
            },
            GoodRow {
                line: 8,
                row: spell(OTHER_ID, "DB", "2024-02-01", None, None),
            },
            GoodRow {
                line: 11,
                row: spell(
                    OTHER_ID,
                    "TK",
                    "2024-07-01",
                    Some("2024-12-31"),
                    Some("乡村振兴,二组")
                ),
            },
        ]
    );
    let at = |line, column, message: &str| Problem::at("spells.csv", line, column, message);
    assert_eq!(
        read.rejected,
        vec![
            RejectedRow {
                line: 3,
                fields: strings(&["110105194912310021", "DB", "2024-01-01", "", ""]),
                problems: vec![at(
                    3,
                    "person_id",
                    "check character is '1' but should be 'X' (GB 11643)"
                )],
            },
            RejectedRow {
                line: 4,
                fields: strings(&[OTHER_ID, "XX", "2024-01-01", "", "残联"]),
                problems: vec![at(
                    4,
                    "category",
                    "\"XX\" is not a category of the policy; its categories are TK, DB"
                )],
            },
            RejectedRow {
                line: 6,
                fields: strings(&[ID, "DB", "2024-03-02", "2024-03-01", ""]),
                problems: vec![at(
                    6,
                    "valid_to",
                    "ends on 2024-03-01, before it starts on 2024-03-02"
                )],
            },
            RejectedRow {
                line: 7,
                fields: strings(&[OTHER_ID, "DB", "2024-02-30", "", ""]),
                problems: vec![at(7, "valid_from", "\"2024-02-30\" is not a day of the calendar")],
            },
            RejectedRow {
                line: 9,
                fields: strings(&["", "", "2024-01-01", "x", ""]),
                problems: vec![
                    at(
                        9,
                        "person_id",
                        "is empty; expected an 18-character resident ID number"
                    ),
                    at(9, "category", "is empty; expected a category code"),
                    at(9, "valid_to", "\"x\" is not a date as YYYY-MM-DD"),
                ],
            },
            RejectedRow {
                line: 10,
                fields: strings(&[ID, "DB", "2024-01-01"]),
                problems: vec![Problem::at_line(
                    "spells.csv",
                    10,
                    "has 3 fields but the header has 5 columns (a comma too many or too few?)"
                )],
            },
        ]
    );

    // The strict reader finds the same problems.
    let strict = read_spells("spells.csv", mixed_spells().as_bytes(), Some(&policy)).unwrap_err();
    let lenient: Vec<Problem> = read
        .rejected
        .iter()
        .flat_map(|rejected| rejected.problems.clone())
        .collect();
    assert_eq!(strict.kept(), lenient.as_slice());
}

#[test]
fn a_workbook_is_read_leniently_alike() {
    let policy = policy();
    let csv = mixed_spells().replace("\"乡村振兴,二组\"", "乡村振兴");
    let from_csv = read_spells_partitioned("spells", csv.as_bytes(), Some(&policy)).unwrap();
    let from_xlsx = read_spells_partitioned("spells", &workbook(&text_sheet(&csv)), Some(&policy)).unwrap();
    assert_eq!(from_xlsx.header, from_csv.header);
    // A sheet has no record with too few fields: the row of three cells
    // on line 10 is a spell with neither end nor source.
    let mut good = from_csv.good.clone();
    good.insert(
        2,
        GoodRow {
            line: 10,
            row: spell(ID, "DB", "2024-01-01", None, None),
        },
    );
    assert_eq!(from_xlsx.good, good);
    // The same rejected rows, each ending at its last cell.
    let mut rejected = from_csv.rejected[..5].to_vec();
    for row in &mut rejected {
        while row.fields.last().is_some_and(String::is_empty) {
            row.fields.pop();
        }
    }
    assert_eq!(from_xlsx.rejected, rejected);
    assert_eq!(
        from_xlsx.rejected[0].fields,
        strings(&["110105194912310021", "DB", "2024-01-01"])
    );
}

#[test]
fn a_cell_that_stands_for_no_value_is_rejected_with_what_it_showed() {
    let sheet = vec![
        common::text_row("person_id,category,valid_from"),
        vec![
            Cell::Number(440_524_188_001_010_014.0),
            Cell::Bool(false),
            Cell::DateTime(2024, 3, 5, 8, 0, 0),
        ],
        vec![Cell::Text(ID), Cell::Text("DB"), Cell::Date(2024, 3, 5)],
    ];
    let read = read_spells_partitioned("s.xlsx", &workbook(&sheet), None).unwrap();
    assert_eq!(read.good.len(), 1);
    assert_eq!(read.good[0].line, 3);
    assert_eq!(read.rejected.len(), 1);
    let rejected = &read.rejected[0];
    assert_eq!(
        rejected.fields,
        strings(&["440524188001010000", "FALSE", "2024-03-05 08:00:00"])
    );
    let columns: Vec<&str> = rejected
        .problems
        .iter()
        .map(|problem| problem.column.as_deref().unwrap())
        .collect();
    assert_eq!(columns, vec!["person_id", "category", "valid_from"]);
}

#[test]
fn every_reason_is_kept_however_many_there_are() {
    let mut input = String::from("person_id,category,valid_from\n");
    for _ in 0..250 {
        input.push_str("x,,2024-01-01\n");
    }
    input.push_str(&format!("{ID},DB,2024-01-01\n"));
    let read = read_spells_partitioned("s.csv", input.as_bytes(), None).unwrap();
    assert_eq!(read.rejected.len(), 250);
    let reasons: usize = read.rejected.iter().map(|rejected| rejected.problems.len()).sum();
    assert_eq!(reasons, 500);
    assert_eq!(read.good.len(), 1);
    assert_eq!(read.good[0].line, 252);
}

#[test]
fn problems_with_the_whole_file_are_still_an_error() {
    let missing = format!("person_id,valid_from\n{ID},2024-01-01\n");
    let problems = read_spells_partitioned("s.csv", missing.as_bytes(), None).unwrap_err();
    assert_eq!(
        messages(&problems),
        vec!["s.csv:1: category: is missing from the header; the required columns are person_id,category,valid_from"]
    );
    assert!(read_spells_partitioned("s.csv", b"", None).is_err());
    assert!(read_spells_partitioned("s.csv", b"person_id\0,x\n", None).is_err());
    let mut bytes = format!("person_id,category,valid_from\n{ID},DB,2024-01-01\n").into_bytes();
    bytes.extend_from_slice(b"\xFF\xFF\n");
    assert!(read_spells_partitioned("s.csv", &bytes, None)
        .unwrap_err()
        .to_string()
        .contains("neither UTF-8 nor GBK"));
}

const INVOICES_HEADER: &str = "invoice_no,person_id,hospital,visit_type,service_date,settled_at,total,fund_paid,in_scope_self_pay,out_of_scope_self_pay";

#[test]
fn invoices_are_read_leniently_from_memory_and_disk() {
    let input = format!(
        "{INVOICES_HEADER}\n\
         INV-1,{ID},H1,inpatient,2024-03-05,2024-03-06T10:22:31+08:00,1000.00,600,300.5,99.50\n\
         INV-2,{ID},H1,dental,2024-03-05,2024-03-06T10:22:31+08:00,1000.00,600,300.5,99.49\n\
         INV-3,{ID},H1,outpatient,2024-03-05,2024-03-06T10:22:31+08:00,10,0,10,0\n"
    );
    let known = visit_types();
    let read = read_invoices_partitioned("i.csv", input.as_bytes(), &known).unwrap();
    assert_eq!(
        read.good.iter().map(|good| good.line).collect::<Vec<_>>(),
        vec![2, 4]
    );
    let strict_of_good_rows = read_invoices(
        "i.csv",
        input
            .replace(&input.lines().nth(2).unwrap().to_string(), "")
            .as_bytes(),
        &known,
    )
    .unwrap();
    assert_eq!(read.clone().into_rows(), strict_of_good_rows);
    assert_eq!(read.rejected.len(), 1);
    assert_eq!(read.rejected[0].line, 3);
    assert_eq!(
        read.rejected[0]
            .problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        vec![
            "i.csv:3: visit_type: \"dental\" is not a known visit type; the known ones are outpatient, chronic, \
             inpatient",
            "i.csv:3: total: fund_paid 600.00 + in_scope_self_pay 300.50 + out_of_scope_self_pay 99.49 = \
             999.99, but total is 1000.00",
        ]
    );

    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("invoices.csv");
    std::fs::write(&path, &input).unwrap();
    let from_disk = read_invoices_partitioned_file(&path, "i.csv", &known, &ReadOptions::default()).unwrap();
    assert_eq!(from_disk, read);
}

#[test]
fn the_report_of_rejected_rows_opens_in_excel_with_every_reason() {
    let policy = policy();
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("spells.csv");
    std::fs::write(&path, mixed_spells()).unwrap();
    let read =
        read_spells_partitioned_file(&path, "spells.csv", Some(&policy), &ReadOptions::default()).unwrap();
    let mut report = Vec::new();
    write_rejected_csv(&mut report, &read.header, &read.rejected).unwrap();
    let report = String::from_utf8(report).unwrap();
    let expected = format!(
        "\u{FEFF}line,column,message,person_id,category,valid_from,valid_to,source\r\n\
         3,person_id,check character is '1' but should be 'X' (GB 11643),110105194912310021,DB,2024-01-01,,\r\n\
         4,category,\"\"\"XX\"\" is not a category of the policy; its categories are TK, DB\",{OTHER_ID},XX,2024-01-01,,残联\r\n\
         6,valid_to,\"ends on 2024-03-01, before it starts on 2024-03-02\",{ID},DB,2024-03-02,2024-03-01,\r\n\
         7,valid_from,\"\"\"2024-02-30\"\" is not a day of the calendar\",{OTHER_ID},DB,2024-02-30,,\r\n\
         9,person_id,is empty; expected an 18-character resident ID number,,,2024-01-01,x,\r\n\
         9,category,is empty; expected a category code,,,2024-01-01,x,\r\n\
         9,valid_to,\"\"\"x\"\" is not a date as YYYY-MM-DD\",,,2024-01-01,x,\r\n\
         10,,has 3 fields but the header has 5 columns (a comma too many or too few?),{ID},DB,2024-01-01\r\n"
    );
    assert_eq!(report, expected);

    // Read back as CSV, the report holds one record per reason.
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(report.trim_start_matches('\u{FEFF}').as_bytes());
    assert_eq!(reader.records().count(), 8);
}
