//! Jiuzhu's interchange formats (`shared/spec/formats.md`): every file that
//! enters goes through one validating reader here, and every problem names
//! its file, line and column.

pub mod application;
pub mod bank;
mod csv_input;
pub mod feed_json;
mod input;
pub mod invoices;
pub mod json;
pub mod partitioned;
pub mod policy_toml;
pub mod problem;
pub mod spells;
mod xlsx_input;

pub use feed_json::{read_invoice_records_json, read_spell_rows_json, JsonRows};
pub use input::{check_input_size, ReadOptions, DEFAULT_MAX_INPUT_BYTES};
pub use invoices::{
    check_invoices_file_without_policy, read_batch_invoices, read_batch_invoices_file, read_invoice_records,
    read_invoice_records_file, read_invoices, read_invoices_file, read_invoices_file_with,
    read_invoices_partitioned, read_invoices_partitioned_file, InvoiceRecord,
};
pub use partitioned::{write_rejected_csv, GoodRow, Partitioned, RejectedRow, MAX_REJECTED_BYTES};
pub use policy_toml::{parse_policy, read_policy_file};
pub use problem::{Problem, Problems, MAX_PROBLEMS_REPORTED};
pub use spells::{
    read_spell_rows, read_spells, read_spells_file, read_spells_file_with, read_spells_partitioned,
    read_spells_partitioned_file, SpellRow,
};
pub use xlsx_input::MAX_WORKBOOK_UNPACKED_BYTES;
pub mod results;
pub use results::{write_results, RESULTS_HEADER};
