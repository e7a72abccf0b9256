//! Writes the XLSX seeds of the corpus, the same bytes every time:
//! `cargo run --example make_seeds` in `fuzz/`.

use rust_xlsxwriter::{DocProperties, ExcelDateTime, Format, Workbook, XlsxError};

/// A workbook of one sheet: text cells, and date cells where a row's text
/// is `@YYYY-MM-DD`, numbers where it is `#NUMBER`.
fn workbook(rows: &[&str]) -> Result<Vec<u8>, XlsxError> {
    let mut workbook = Workbook::new();
    let created = ExcelDateTime::from_ymd(2024, 1, 1)?;
    workbook.set_properties(&DocProperties::new().set_creation_datetime(&created));
    let date = Format::new().set_num_format("yyyy-mm-dd");
    let sheet = workbook.add_worksheet();
    for (row, line) in rows.iter().enumerate() {
        for (column, text) in line.split(',').enumerate() {
            let (row, column) = (row as u32, column as u16);
            if let Some(day) = text.strip_prefix('@') {
                let parts: Vec<u16> = day.split('-').map(|part| part.parse().unwrap_or(1)).collect();
                let day = ExcelDateTime::from_ymd(parts[0], parts[1] as u8, parts[2] as u8)?;
                sheet.write_datetime_with_format(row, column, &day, &date)?;
            } else if let Some(number) = text.strip_prefix('#') {
                sheet.write_number(row, column, number.parse::<f64>().unwrap_or(0.0))?;
            } else if !text.is_empty() {
                sheet.write_string(row, column, text)?;
            }
        }
    }
    workbook.save_to_buffer()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let spells = workbook(&[
        "person_id,category,valid_from,valid_to,source",
        "11010519491231002X,TK,@2024-01-01,@2024-06-30,民政",
        "440524188001010014,DB,2024-02-01,,",
        "#440524188001010014,XX,@2024-03-05,2024-03-01,残联",
    ])?;
    std::fs::write("corpus/spells/tiny.xlsx", spells)?;
    let invoices = workbook(&[
        "invoice_no,person_id,hospital,visit_type,service_date,settled_at,total,fund_paid,in_scope_self_pay,out_of_scope_self_pay",
        "INV-001,11010519491231002X,市第一人民医院,inpatient,@2024-03-05,2024-03-06T10:22:31+08:00,#1000,#600,#300.5,#99.5",
        "INV-002,440524188001010014,#3301020001,outpatient,2024-03-05,2024-03-05T09:00:00Z,12.3,0,12.3,0",
    ])?;
    std::fs::write("corpus/invoices/tiny.xlsx", invoices)?;
    Ok(())
}
