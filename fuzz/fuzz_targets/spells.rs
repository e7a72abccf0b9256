//! Arbitrary bytes to the spells readers: as a file (CSV, or XLSX when it
//! starts as a ZIP archive does), and as the first sheet of a workbook;
//! strict and lenient, with and without the example policy. Any answer
//! will do but a panic.

#![no_main]

use jiuzhu_formats::{read_spells, read_spells_partitioned, write_rejected_csv};
use jiuzhu_fuzz::{policy, workbook_with_sheet};
use libfuzzer_sys::fuzz_target;

fn read(file: &str, bytes: &[u8]) {
    let _ = read_spells(file, bytes, None);
    let strict = read_spells(file, bytes, Some(policy()));
    if let Ok(read) = read_spells_partitioned(file, bytes, Some(policy())) {
        assert_eq!(strict.is_ok(), read.rejected.is_empty());
        let _ = write_rejected_csv(std::io::sink(), &read.header, &read.rejected);
    }
}

fuzz_target!(|data: &[u8]| {
    read("spells.csv", data);
    read("spells.xlsx", &workbook_with_sheet(data));
});
