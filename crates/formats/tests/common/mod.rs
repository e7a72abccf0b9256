//! Helpers shared by the integration tests: a policy, and workbooks written
//! cell by cell.

#![allow(dead_code)]

use jiuzhu_core::Policy;
use rust_xlsxwriter::{ExcelDateTime, Format, Workbook};

pub const POLICY: &str = r#"
name = "Test policy"

[[category]]
code = "TK"
rank = 1

[[category]]
code = "DB"
rank = 2

[pools]
outpatient = "outpatient"
chronic = "outpatient"
inpatient = "inpatient"
"#;

pub fn policy() -> Policy {
    jiuzhu_formats::parse_policy("policy.toml", POLICY).unwrap()
}

pub fn visit_types() -> Vec<String> {
    vec!["outpatient".into(), "chronic".into(), "inpatient".into()]
}

/// One cell of a test sheet.
#[derive(Debug, Clone, Copy)]
pub enum Cell<'a> {
    Text(&'a str),
    Number(f64),
    /// A date cell, formatted `yyyy-mm-dd`.
    Date(u16, u8, u8),
    /// A date cell with a time of day.
    DateTime(u16, u8, u8, u16, u8, u8),
    Bool(bool),
    /// A cell with a format and no value.
    Blank,
    /// Nothing written.
    Empty,
}

/// A workbook whose first sheet holds `rows` (row 1 first); `Empty` cells
/// and empty rows are not written. Later sheets hold `others`.
pub fn workbook_with_sheets(rows: &[Vec<Cell<'_>>], others: &[&[&str]]) -> Vec<u8> {
    let mut workbook = Workbook::new();
    let date_format = Format::new().set_num_format("yyyy-mm-dd");
    let date_time_format = Format::new().set_num_format("yyyy-mm-dd hh:mm:ss");
    let sheet = workbook.add_worksheet();
    for (row, cells) in rows.iter().enumerate() {
        for (column, cell) in cells.iter().enumerate() {
            let (row, column) = (row as u32, column as u16);
            match *cell {
                Cell::Text(text) => {
                    sheet.write_string(row, column, text).unwrap();
                }
                Cell::Number(number) => {
                    sheet.write_number(row, column, number).unwrap();
                }
                Cell::Date(year, month, day) => {
                    let date = ExcelDateTime::from_ymd(year, month, day).unwrap();
                    sheet
                        .write_datetime_with_format(row, column, &date, &date_format)
                        .unwrap();
                }
                Cell::DateTime(year, month, day, hour, minute, second) => {
                    let date = ExcelDateTime::from_ymd(year, month, day)
                        .unwrap()
                        .and_hms(hour, minute, second)
                        .unwrap();
                    sheet
                        .write_datetime_with_format(row, column, &date, &date_time_format)
                        .unwrap();
                }
                Cell::Bool(value) => {
                    sheet.write_boolean(row, column, value).unwrap();
                }
                Cell::Blank => {
                    sheet.write_blank(row, column, &date_format).unwrap();
                }
                Cell::Empty => {}
            }
        }
    }
    for other in others {
        let sheet = workbook.add_worksheet();
        for (row, text) in other.iter().enumerate() {
            sheet.write_string(row as u32, 0, *text).unwrap();
        }
    }
    workbook.save_to_buffer().unwrap()
}

pub fn workbook(rows: &[Vec<Cell<'_>>]) -> Vec<u8> {
    workbook_with_sheets(rows, &[])
}

/// A CSV line's fields as text cells.
pub fn text_row(line: &str) -> Vec<Cell<'_>> {
    if line.is_empty() {
        return Vec::new();
    }
    line.split(',').map(Cell::Text).collect()
}

/// CSV text (without quoting) as a sheet of text cells.
pub fn text_sheet(csv: &str) -> Vec<Vec<Cell<'_>>> {
    csv.lines().map(text_row).collect()
}

pub fn messages(problems: &jiuzhu_formats::Problems) -> Vec<String> {
    problems.kept().iter().map(ToString::to_string).collect()
}

/// A workbook whose first sheet is `sheet`, raw XML (so that a test may
/// write what no spreadsheet program would); its parts stored.
pub fn workbook_from_sheet_xml(sheet: &str) -> Vec<u8> {
    use std::io::Write;
    const RELS: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>"#;
    const WORKBOOK: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>"#;
    const WORKBOOK_RELS: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>"#;
    let mut out = std::io::Cursor::new(Vec::new());
    let mut writer = zip::ZipWriter::new(&mut out);
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, text) in [
        ("_rels/.rels", RELS),
        ("xl/workbook.xml", WORKBOOK),
        ("xl/_rels/workbook.xml.rels", WORKBOOK_RELS),
        ("xl/worksheets/sheet1.xml", sheet),
    ] {
        writer.start_file(name, options).unwrap();
        writer.write_all(text.as_bytes()).unwrap();
    }
    writer.finish().unwrap();
    out.into_inner()
}

/// A sheet's XML with `rows` (already XML) in its sheet data.
pub fn sheet_xml(dimension: &str, rows: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><dimension ref="{dimension}"/><sheetData>{rows}</sheetData></worksheet>"#
    )
}
