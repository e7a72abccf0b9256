//! XLSX workbooks read in place of CSV files: the same rows, the same
//! checks, problems at the sheet's row numbers.

mod common;

use common::{messages, policy, text_sheet, visit_types, workbook, workbook_with_sheets, Cell};
use jiuzhu_core::ResidentId;
use jiuzhu_formats::{
    read_batch_invoices, read_invoices, read_invoices_file, read_spells, read_spells_file,
    read_spells_partitioned,
};

const ID: &str = "11010519491231002X";
const OTHER_ID: &str = "440524188001010014";

fn id(seed: u64) -> String {
    ResidentId::from_leading_digits(11_010_519_900_101_000 + seed)
        .unwrap()
        .to_string()
}

const SPELLS_HEADER: &str = "person_id,category,valid_from,valid_to,source";

#[test]
fn the_same_spells_read_alike_from_utf8_csv_gbk_csv_and_xlsx() {
    let (first, second, third) = (id(1), id(2), id(3));
    let csv = format!(
        "{SPELLS_HEADER}\n\
         {ID},TK,2024-01-01,2024-06-30,民政\n\
         {OTHER_ID},DB,2024-02-01,,\n\
         \n\
         {first},DB,2023-12-31,2024-12-31,残联\n\
         {second},TK,2024-03-05,,乡村振兴\n\
         {third},DB,2024-02-29,2024-02-29,\n"
    );
    let sheet = vec![
        common::text_row(SPELLS_HEADER),
        // Dates as date cells.
        vec![
            Cell::Text(ID),
            Cell::Text("TK"),
            Cell::Date(2024, 1, 1),
            Cell::Date(2024, 6, 30),
            Cell::Text("民政"),
        ],
        // An open end left empty, the source an empty text cell.
        vec![
            Cell::Text(OTHER_ID),
            Cell::Text("DB"),
            Cell::Date(2024, 2, 1),
            Cell::Empty,
            Cell::Text(""),
        ],
        vec![],
        // Dates as text.
        vec![
            Cell::Text(&first),
            Cell::Text("DB"),
            Cell::Text("2023-12-31"),
            Cell::Text("2024-12-31"),
            Cell::Text("残联"),
        ],
        // Mixed, and a formatted cell with no value.
        vec![
            Cell::Text(&second),
            Cell::Text("TK"),
            Cell::Text("2024-03-05"),
            Cell::Blank,
            Cell::Text("乡村振兴"),
        ],
        vec![
            Cell::Text(&third),
            Cell::Text("DB"),
            Cell::Date(2024, 2, 29),
            Cell::Text("2024-02-29"),
        ],
        // Trailing rows of nothing but blanks and spaces.
        vec![Cell::Blank, Cell::Blank],
        vec![Cell::Text("  "), Cell::Empty, Cell::Text("\t")],
    ];
    let xlsx = workbook(&sheet);
    let (gbk, _, unmappable) = encoding_rs::GBK.encode(&csv);
    assert!(!unmappable);
    assert!(std::str::from_utf8(&gbk).is_err());

    let policy = policy();
    let from_csv = read_spells("spells.csv", csv.as_bytes(), Some(&policy)).unwrap();
    let from_gbk = read_spells("spells.csv", &gbk, Some(&policy)).unwrap();
    let from_xlsx = read_spells("spells.xlsx", &xlsx, Some(&policy)).unwrap();
    assert_eq!(from_csv.len(), 5);
    assert_eq!(from_csv, from_gbk);
    assert_eq!(from_csv, from_xlsx);

    // The same lines, too.
    let lines = |bytes: &[u8]| -> Vec<u64> {
        read_spells_partitioned("s", bytes, Some(&policy))
            .unwrap()
            .good
            .iter()
            .map(|good| good.line)
            .collect()
    };
    assert_eq!(lines(csv.as_bytes()), vec![2, 3, 5, 6, 7]);
    assert_eq!(lines(&xlsx), lines(csv.as_bytes()));
}

const INVOICES_HEADER: &str = "invoice_no,person_id,hospital,visit_type,service_date,settled_at,total,fund_paid,in_scope_self_pay,out_of_scope_self_pay";

#[test]
fn the_same_invoices_read_alike_from_utf8_csv_gbk_csv_and_xlsx() {
    let other = id(7);
    let csv = format!(
        "{INVOICES_HEADER}\n\
         INV-001,{ID},市第一人民医院,inpatient,2024-03-05,2024-03-06T10:22:31+08:00,1000.00,600,300.5,99.50\n\
         INV-002,{other},3301020001,outpatient,2024-01-02,2024-01-02T09:00:00Z,12.3,0,12.3,0\n\
         INV-003,{ID},县中医院,chronic,2024-12-31,2025-01-01T00:00:00.5+08:00,1234567.89,1000000,234567.89,0.00\n"
    );
    let sheet = vec![
        common::text_row(INVOICES_HEADER),
        // Money as numbers, the service date a date cell.
        vec![
            Cell::Text("INV-001"),
            Cell::Text(ID),
            Cell::Text("市第一人民医院"),
            Cell::Text("inpatient"),
            Cell::Date(2024, 3, 5),
            Cell::Text("2024-03-06T10:22:31+08:00"),
            Cell::Number(1000.0),
            Cell::Number(600.0),
            Cell::Number(300.5),
            Cell::Number(99.5),
        ],
        // A hospital code typed as a number; 12.3 as a number is "12.3".
        vec![
            Cell::Text("INV-002"),
            Cell::Text(&other),
            Cell::Number(3_301_020_001.0),
            Cell::Text("outpatient"),
            Cell::Text("2024-01-02"),
            Cell::Text("2024-01-02T09:00:00Z"),
            Cell::Number(12.3),
            Cell::Number(0.0),
            Cell::Text("12.3"),
            Cell::Number(0.0),
        ],
        // Everything as text.
        text_sheet(
            "INV-003,11010519491231002X,县中医院,chronic,2024-12-31,2025-01-01T00:00:00.5+08:00,1234567.89,1000000,234567.89,0.00",
        )
        .remove(0),
    ];
    let xlsx = workbook(&sheet);
    let (gbk, _, _) = encoding_rs::GBK.encode(&csv);
    let known = visit_types();
    let from_csv = read_invoices("invoices.csv", csv.as_bytes(), &known).unwrap();
    let from_gbk = read_invoices("invoices.csv", &gbk, &known).unwrap();
    let from_xlsx = read_invoices("invoices.xlsx", &xlsx, &known).unwrap();
    assert_eq!(from_csv.len(), 3);
    assert_eq!(from_csv, from_gbk);
    assert_eq!(from_csv, from_xlsx);
    assert_eq!(from_xlsx[1].hospital.as_str(), "3301020001");
    assert_eq!(from_xlsx[1].amounts.total().fen(), 1230);

    let batch = |bytes: &[u8]| -> Vec<String> {
        read_batch_invoices("invoices", bytes, &known)
            .unwrap()
            .iter()
            .map(|invoice| format!("{invoice:?}"))
            .collect()
    };
    assert_eq!(batch(csv.as_bytes()), batch(&xlsx));
}

/// The problems of `csv` read as CSV, and of the same text in text cells.
fn both_ways(csv: &str) -> (Vec<String>, Vec<String>) {
    let policy = policy();
    let from_csv = read_spells("spells", csv.as_bytes(), Some(&policy)).unwrap_err();
    let from_xlsx = read_spells("spells", &workbook(&text_sheet(csv)), Some(&policy)).unwrap_err();
    (messages(&from_csv), messages(&from_xlsx))
}

#[test]
fn text_cells_are_checked_exactly_as_csv_fields() {
    let csv = format!(
        "{SPELLS_HEADER}\n\
         110105194912310021,DB,2024-01-01,,\n\
         {ID},XX,2024-01-01,,\n\
         {ID},DB,2024-03-02,2024-03-01,\n\
         \n\
         {ID},DB,2024-02-30,24-01-01,\n\
         {ID},,2024-01-01,,\n\
         {ID}, DB,2024-01-01 ,,\n\
         {ID},TK,2024-01-01,,民政\n"
    );
    let (from_csv, from_xlsx) = both_ways(&csv);
    assert_eq!(from_csv.len(), 8, "{from_csv:#?}");
    assert_eq!(from_csv, from_xlsx);

    // A header missing a column, too.
    let (from_csv, from_xlsx) = both_ways(&format!("person_id,Category ,valid_to\n{ID},DB,2024-01-01\n"));
    assert_eq!(from_csv, from_xlsx);
}

#[test]
fn a_resident_id_typed_as_a_number_is_refused_with_advice() {
    let sheet = vec![
        common::text_row(SPELLS_HEADER),
        vec![
            Cell::Number(440_524_188_001_010_014.0),
            Cell::Text("DB"),
            Cell::Text("2024-01-01"),
        ],
    ];
    let problems = read_spells("spells.xlsx", &workbook(&sheet), None).unwrap_err();
    assert_eq!(
        messages(&problems),
        vec![
            "spells.xlsx:2: person_id: is a number in the sheet (440524188001010000), and an ID typed as a number \
             loses digits in Excel (it keeps 15, and no leading zeros): format the column as text and type the \
             IDs again"
        ]
    );
}

#[test]
fn a_date_cell_with_a_time_of_day_is_refused_in_a_date_column() {
    let sheet = vec![
        common::text_row(SPELLS_HEADER),
        vec![
            Cell::Text(ID),
            Cell::Text("DB"),
            Cell::DateTime(2024, 3, 5, 12, 30, 0),
            Cell::Number(45_356.0),
        ],
    ];
    let problems = read_spells("spells.xlsx", &workbook(&sheet), None).unwrap_err();
    assert_eq!(
        messages(&problems),
        vec![
            "spells.xlsx:2: valid_from: is a date cell with a time of day (2024-03-05 12:30:00); expected a date \
             alone: format the cell as a date without time, or type it as YYYY-MM-DD",
            "spells.xlsx:2: valid_to: is a number in the sheet (45356), not a date: type the date as YYYY-MM-DD \
             or format the cell as a date",
        ]
    );
}

#[test]
fn numbers_become_amounts_through_their_shortest_text() {
    let row = |total: Cell<'static>, base: Cell<'static>| {
        vec![
            common::text_row(INVOICES_HEADER),
            vec![
                Cell::Text("INV-1"),
                Cell::Text(ID),
                Cell::Text("H1"),
                Cell::Text("outpatient"),
                Cell::Text("2024-03-05"),
                Cell::Text("2024-03-05T10:00:00+08:00"),
                total,
                Cell::Number(0.0),
                base,
                Cell::Number(0.0),
            ],
        ]
    };
    let known = visit_types();
    // 0.1 + 0.2 in a spreadsheet.
    let problems = read_invoices(
        "i.xlsx",
        &workbook(&row(Cell::Number(0.30000000000000004), Cell::Number(0.3))),
        &known,
    )
    .unwrap_err();
    assert_eq!(
        messages(&problems),
        vec!["i.xlsx:2: total: \"0.30000000000000004\" has more than two decimals; amounts are exact to the fen"]
    );
    let invoices = read_invoices(
        "i.xlsx",
        &workbook(&row(Cell::Number(0.3), Cell::Text("0.30"))),
        &known,
    )
    .unwrap();
    assert_eq!(invoices[0].amounts.total().fen(), 30);
    let problems = read_invoices(
        "i.xlsx",
        &workbook(&row(Cell::Number(-5.0), Cell::Number(1e12))),
        &known,
    )
    .unwrap_err();
    assert_eq!(
        messages(&problems),
        vec![
            "i.xlsx:2: total: \"-5\" is not an amount in yuan: use digits, an optional point and at most two \
             decimals, no sign (e.g. 1234.56)",
            "i.xlsx:2: in_scope_self_pay: \"1000000000000\" has more than 12 digits before the point",
        ]
    );
}

#[test]
fn settled_at_must_be_text_and_other_cells_that_stand_for_nothing_are_refused() {
    let sheet = vec![
        common::text_row(INVOICES_HEADER),
        vec![
            Cell::Text("INV-1"),
            Cell::Text(ID),
            Cell::Text("H1"),
            Cell::Bool(true),
            Cell::Text("2024-03-05"),
            Cell::DateTime(2024, 3, 5, 10, 0, 0),
            Cell::Date(2024, 3, 5),
            Cell::Number(0.0),
            Cell::Number(0.0),
            Cell::Number(0.0),
        ],
    ];
    let problems = read_invoices("i.xlsx", &workbook(&sheet), &visit_types()).unwrap_err();
    assert_eq!(
        messages(&problems),
        vec![
            "i.xlsx:2: visit_type: is a TRUE/FALSE cell (TRUE); expected text",
            "i.xlsx:2: settled_at: is a date cell (2024-03-05 10:00:00), which holds no offset from UTC: type \
             the time as text with its offset, such as 2024-03-05T10:22:31+08:00 (format the column as text)",
            "i.xlsx:2: total: is a date cell (2024-03-05); expected an amount in yuan",
        ]
    );
}

#[test]
fn problems_name_the_sheet_row() {
    let (good, bad) = (format!("DB,2024-01-01,{ID}"), format!("XX,2024-01-01,{ID}"));
    let mut sheet = vec![vec![], common::text_row("category,valid_from,person_id")];
    sheet.push(common::text_row(&good));
    sheet.push(vec![]);
    sheet.push(vec![]);
    sheet.push(common::text_row(&bad));
    let problems = read_spells("spells.xlsx", &workbook(&sheet), Some(&policy())).unwrap_err();
    assert_eq!(
        messages(&problems),
        vec!["spells.xlsx:6: category: \"XX\" is not a category of the policy; its categories are TK, DB"]
    );
}

#[test]
fn only_the_first_sheet_is_read_and_cells_beyond_the_header_are_ignored() {
    let csv = format!("person_id,category,valid_from\n{ID},DB,2024-01-01");
    let mut sheet = text_sheet(&csv);
    sheet[1].push(Cell::Text("a note without a header"));
    let bytes = workbook_with_sheets(&sheet, &[&["not", "a", "spells", "sheet"]]);
    let spells = read_spells("spells.xlsx", &bytes, None).unwrap();
    assert_eq!(spells.len(), 1);
}

#[test]
fn an_empty_sheet_or_a_zip_that_is_no_workbook_is_refused_as_a_whole() {
    let problems = read_spells("spells.xlsx", &workbook(&[]), None).unwrap_err();
    assert_eq!(
        messages(&problems),
        vec![
            "spells.xlsx:1: has no header row: its first sheet (\"Sheet1\") is empty; expected a header row \
             naming the columns person_id,category,valid_from,valid_to,source"
        ]
    );
    let problems = read_spells("spells.xlsx", b"PK\x03\x04\x14\x00\x06\x00", None).unwrap_err();
    assert_eq!(problems.total(), 1);
    assert!(
        problems.kept()[0]
            .to_string()
            .starts_with("spells.xlsx: is a ZIP archive but not a readable XLSX workbook ("),
        "{problems}"
    );
}

#[test]
fn a_workbook_is_read_from_disk_by_its_content_whatever_its_name() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("spells.csv");
    let csv = format!("person_id,category,valid_from\n{ID},DB,2024-01-01");
    let sheet = text_sheet(&csv);
    std::fs::write(&path, workbook(&sheet)).unwrap();
    assert_eq!(read_spells_file(&path, "spells.csv", None).unwrap().len(), 1);

    let path = directory.path().join("invoices.xlsx");
    let mut sheet = text_sheet(INVOICES_HEADER);
    sheet.push(common::text_row(
        "INV-1,11010519491231002X,H1,outpatient,2024-03-05,2024-03-05T10:00:00+08:00,1,1,0,0",
    ));
    std::fs::write(&path, workbook(&sheet)).unwrap();
    assert_eq!(
        read_invoices_file(&path, "invoices.xlsx", &visit_types())
            .unwrap()
            .len(),
        1
    );
}

const HEADER_ROW: &str = r#"<row r="1"><c r="A1" t="inlineStr"><is><t>person_id</t></is></c><c r="B1" t="inlineStr"><is><t>category</t></is></c><c r="C1" t="inlineStr"><is><t>valid_from</t></is></c></row>"#;

#[test]
fn a_sheet_written_by_hand_is_read() {
    let rows = format!(
        r#"{HEADER_ROW}<row r="3"><c r="A3" t="inlineStr"><is><t>{ID}</t></is></c><c r="B3" t="str"><f>"D"&amp;"B"</f><v>DB</v></c><c r="C3" t="inlineStr"><is><t>2024-01-01</t></is></c></row>"#
    );
    let bytes = common::workbook_from_sheet_xml(&common::sheet_xml("A1:C3", &rows));
    let read = read_spells_partitioned("s.xlsx", &bytes, None).unwrap();
    assert_eq!(read.good.len(), 1);
    assert_eq!(read.good[0].line, 3);
}

/// Found by fuzzing: calamine 0.38 overflows computing the position of a
/// cell reference with too many letters, or the size of a dimension that
/// ends before it starts (a panic where overflow checks are on).
#[test]
fn a_cell_reference_or_dimension_no_sheet_has_is_refused_not_a_panic() {
    let long_column = format!(
        r#"{HEADER_ROW}<row r="2"><c r="A{}1" t="inlineStr"><is><t>x</t></is></c></row>"#,
        "t".repeat(40)
    );
    let problems = read_spells(
        "s.xlsx",
        &common::workbook_from_sheet_xml(&common::sheet_xml("A1:E5", &long_column)),
        None,
    )
    .unwrap_err();
    assert_eq!(problems.total(), 1);
    assert!(problems.kept()[0].line.is_none(), "{problems}");
    let backwards = common::sheet_xml("C3:A1", HEADER_ROW);
    assert!(read_spells("s.xlsx", &common::workbook_from_sheet_xml(&backwards), None).is_err());
}

#[test]
fn cells_out_of_order_or_beyond_the_last_column_are_refused() {
    let out_of_order = format!(
        r#"{HEADER_ROW}<row r="3"><c r="A3" t="inlineStr"><is><t>x</t></is></c></row><row r="2"><c r="A2" t="inlineStr"><is><t>y</t></is></c></row>"#
    );
    let problems = read_spells(
        "s.xlsx",
        &common::workbook_from_sheet_xml(&common::sheet_xml("A1:C3", &out_of_order)),
        None,
    )
    .unwrap_err();
    assert_eq!(
        messages(&problems),
        vec!["s.xlsx:2: its first sheet (\"Sheet1\") lists its rows out of order: save it again in Excel"]
    );
    let far = format!(r#"{HEADER_ROW}<row r="2"><c r="XFE2"><v>1</v></c></row>"#);
    let problems = read_spells(
        "s.xlsx",
        &common::workbook_from_sheet_xml(&common::sheet_xml("A1:C3", &far)),
        None,
    )
    .unwrap_err();
    assert_eq!(
        messages(&problems),
        vec!["s.xlsx:2: has a cell beyond the last column of a sheet (XFD): column 16385"]
    );
}

#[test]
fn a_row_under_a_wide_header_costs_what_its_cells_do() {
    // Known columns first, a note in the last column of the sheet; then
    // rows with one bad cell at the start.
    let header = format!(
        r#"{}<c r="XFD1" t="inlineStr"><is><t>note</t></is></c></row>"#,
        HEADER_ROW.trim_end_matches("</row>")
    );
    let mut rows = header;
    for row in 2..2002 {
        rows.push_str(&format!(
            r#"<row r="{row}"><c r="A{row}" t="inlineStr"><is><t>x</t></is></c></row>"#
        ));
    }
    rows.push_str(r#"<row r="2002"><c r="XFD2002" t="inlineStr"><is><t>a note</t></is></c></row>"#);
    let bytes = common::workbook_from_sheet_xml(&common::sheet_xml("A1:XFD2002", &rows));
    let started = std::time::Instant::now();
    let read = read_spells_partitioned("s.xlsx", &bytes, None).unwrap();
    assert_eq!(read.header.len(), 16_384);
    assert_eq!(read.rejected.len(), 2001);
    assert_eq!(read.rejected[0].fields, vec!["x".to_owned()]);
    assert_eq!(read.rejected[0].problems.len(), 3);
    // The row with only a note holds every field up to it.
    assert_eq!(read.rejected[2000].fields.len(), 16_384);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

/// Cell texts, good and bad, with no comma, quote or line break (so that
/// the same text is a CSV field as it is).
const SPELL_TEXTS: &[&[&str]] = &[
    &[
        ID,
        OTHER_ID,
        "11010519491231002x",
        "110105194912310021",
        "1101051949",
        "",
        " ",
    ],
    &["TK", "DB", "XX", "", "tk", " DB"],
    &[
        "2024-01-01",
        "2024-02-29",
        "2023-02-29",
        "2024-13-01",
        "24-01-01",
        "",
        "2024-01-01 ",
    ],
    &["2024-06-30", "2023-12-31", "", "x", "9999-12-31"],
    &["民政", "", "残联 ", "\t"],
];

const INVOICE_TEXTS: &[&[&str]] = &[
    &["INV-1", "inv_2", "INV/3", ""],
    &[ID, OTHER_ID, "110105194912310021", ""],
    &[
        "H1",
        "市第一人民医院",
        "",
        "医医医医医医医医医医医医医医医医医医医医医医医医医医医医医医医医医",
    ],
    &["inpatient", "outpatient", "dental", ""],
    &["2024-03-05", "2024-02-30", ""],
    &[
        "2024-03-06T10:22:31+08:00",
        "2024-03-06 10:22:31",
        "2024-03-06T10:22:31Z",
        "",
    ],
    &["100", "100.00", "100.001", "-1", "1e2", ""],
    &["60", "60.5", ""],
    &["40", "39.5", "0", ""],
    &["0", "0.00", "", "0.5"],
];

/// Rows of texts chosen from `texts`, column by column; a row of nothing
/// but blanks is left out (a sheet skips it, CSV reads it as a record).
fn rows_of(
    texts: &'static [&'static [&'static str]],
) -> impl proptest::strategy::Strategy<Value = Vec<Vec<&'static str>>> {
    use proptest::prelude::*;
    let row = texts
        .iter()
        .map(|column| proptest::sample::select(column.to_vec()))
        .collect::<Vec<_>>()
        .prop_filter("not blank", |row: &Vec<&str>| {
            row.iter().any(|text| !text.trim_matches([' ', '\t']).is_empty())
        });
    proptest::collection::vec(row, 0..6)
}

fn as_csv(header: &str, rows: &[Vec<&str>]) -> String {
    let mut csv = format!("{header}\n");
    for row in rows {
        csv.push_str(&row.join(","));
        csv.push('\n');
    }
    csv
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    #[test]
    fn the_same_text_is_valid_in_a_sheet_exactly_when_it_is_valid_in_csv(
        spells in rows_of(SPELL_TEXTS),
        invoices in rows_of(INVOICE_TEXTS),
    ) {
        let policy = policy();
        let csv = as_csv(SPELLS_HEADER, &spells);
        let xlsx = workbook(&text_sheet(&csv));
        proptest::prop_assert_eq!(
            read_spells("spells", csv.as_bytes(), Some(&policy)),
            read_spells("spells", &xlsx, Some(&policy))
        );
        let csv = as_csv(INVOICES_HEADER, &invoices);
        let xlsx = workbook(&text_sheet(&csv));
        proptest::prop_assert_eq!(
            read_invoices("invoices", csv.as_bytes(), &visit_types()),
            read_invoices("invoices", &xlsx, &visit_types())
        );
    }
}
