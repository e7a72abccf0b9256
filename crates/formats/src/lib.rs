//! Jiuzhu's interchange formats (`shared/spec/formats.md`): every file that
//! enters goes through one validating reader here, and every problem names
//! its file, line and column.

mod csv_input;
pub mod invoices;
pub mod json;
pub mod policy_toml;
pub mod problem;
pub mod spells;

pub use invoices::{
    check_invoices_file_without_policy, read_batch_invoices, read_batch_invoices_file, read_invoice_records,
    read_invoice_records_file, read_invoices, read_invoices_file, InvoiceRecord,
};
pub use policy_toml::{parse_policy, read_policy_file};
pub use problem::{Problem, Problems, MAX_PROBLEMS_REPORTED};
pub use spells::{read_spells, read_spells_file};
pub mod results;
pub use results::{write_results, RESULTS_HEADER};
