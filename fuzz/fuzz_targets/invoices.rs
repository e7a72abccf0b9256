//! Arbitrary bytes to the invoices readers: as a file (CSV, or XLSX when it
//! starts as a ZIP archive does), and as the first sheet of a workbook;
//! strict and lenient, full and batch, with the example policy's visit
//! types and with none known. Any answer will do but a panic.

#![no_main]

use jiuzhu_formats::{read_batch_invoices, read_invoices, read_invoices_partitioned, write_rejected_csv};
use jiuzhu_fuzz::{visit_types, workbook_with_sheet};
use libfuzzer_sys::fuzz_target;

fn read(file: &str, bytes: &[u8]) {
    let _ = read_invoices(file, bytes, &[]);
    let strict = read_invoices(file, bytes, visit_types());
    let batch = read_batch_invoices(file, bytes, visit_types());
    assert_eq!(strict.is_ok(), batch.is_ok());
    if let Ok(read) = read_invoices_partitioned(file, bytes, visit_types()) {
        assert_eq!(strict.is_ok(), read.rejected.is_empty());
        let _ = write_rejected_csv(std::io::sink(), &read.header, &read.rejected);
    }
}

fuzz_target!(|data: &[u8]| {
    read("invoices.csv", data);
    read("invoices.xlsx", &workbook_with_sheet(data));
});
