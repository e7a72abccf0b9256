//! `jiuzhu import invoices FILE`: the insurance feed (免申即享). Bills that
//! basic insurance settled without real-time assistance are read, checked
//! whole, then decided in canonical order and stored as real-time ones are
//! ([`jiuzhu_store::Store::import_invoices`]).

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use jiuzhu_core::{Invoice, Outcome};
use jiuzhu_formats::{
    read_invoice_records_file, read_invoices_partitioned_file, InvoiceRecord, Partitioned, ReadOptions,
    RejectedRow,
};
use jiuzhu_store::{FeedError, FeedOptions, FeedReport};

use crate::admin::{open_store, runtime, BAD_INPUT};
use crate::config::SettingsArgs;
use crate::rejected;
use crate::simulate::{grouped, money};

/// Duplicates listed one by one at most; the rest are counted.
const DUPLICATES_LISTED: usize = 20;

pub fn import_invoices(
    file: &Path,
    chunk_invoices: usize,
    skip_bad: Option<&Path>,
    settings: &SettingsArgs,
    actor: &str,
) -> anyhow::Result<ExitCode> {
    let name = file.display().to_string();
    if let Some(report) = skip_bad {
        rejected::check_report_path(file, report)?;
    }
    runtime()?.block_on(async {
        let store = open_store(settings).await?;
        let Some((_, policy)) = store.policy_in_force().await? else {
            return Err(anyhow!(
                "no policy is stored yet: run `jiuzhu policy load FILE` first"
            ));
        };
        let known: Vec<String> = policy
            .visit_types()
            .iter()
            .map(|(name, _)| name.clone())
            .collect();
        let started = Instant::now();
        // The lenient reader reports no progress: no bar for it.
        let reading = if skip_bad.is_some() {
            ProgressBar::hidden()
        } else {
            reading_progress(file)
        };
        let read = match skip_bad {
            None => read_invoice_records_file(file, &name, &known, &|bytes| reading.inc(bytes))
                .map(|records| (records, None)),
            Some(_) => read_invoices_partitioned_file(file, &name, &known, &STREAMED).map(good_records),
        };
        reading.finish_and_clear();
        let (records, set_aside) = match read {
            Ok(read) => read,
            Err(problems) => {
                eprint!("{problems}");
                eprintln!("Nothing was imported: correct the file and import it again.");
                return Ok(ExitCode::from(BAD_INPUT));
            }
        };
        let mut rejected_rows = Vec::new();
        if let (Some(report), Some(SetAside { header, rows })) = (skip_bad, set_aside) {
            rejected::write_report(report, &header, &rows)?;
            if !rows.is_empty() && records.is_empty() {
                eprint!("{}", rejected::problems_of(&rows));
                eprintln!(
                    "Nothing was imported: no row passed its checks; the rejected rows and their \
                     reasons are in {}.",
                    report.display()
                );
                return Ok(ExitCode::from(BAD_INPUT));
            }
            rejected_rows = rows;
        }
        let read = started.elapsed();

        let rows = records.len() as u64;
        let importing = importing_progress(rows);
        // The first report of progress comes when the check is done.
        let checked = OnceLock::new();
        let result = store
            .import_invoices(&name, records, actor, FeedOptions { chunk_invoices }, &|done| {
                checked.get_or_init(|| started.elapsed());
                importing.inc(done);
            })
            .await;
        store.close().await;
        importing.finish_and_clear();
        let report = match result {
            Ok(report) => report,
            Err(FeedError::Refused(problems)) => {
                eprint!("{problems}");
                eprintln!(
                    "Nothing was imported: the file was refused whole. A bill already stored under \
                     the same number must be the same bill (only settled_at may differ)."
                );
                return Ok(ExitCode::from(BAD_INPUT));
            }
            Err(FeedError::NoPolicy) => {
                return Err(anyhow!(
                    "no policy is stored yet: run `jiuzhu policy load FILE` first"
                ))
            }
            Err(FeedError::Store(error)) => {
                return Err(anyhow!(error).context(
                    "the import stopped; the chunks already stored stay stored, and importing the \
                     same file again decides the rest",
                ))
            }
        };
        let timings = Timings {
            read,
            checked: checked.get().copied().unwrap_or(read),
            total: started.elapsed(),
        };
        let rejected_note = skip_bad.map(|path| Rejected {
            rows: rejected_rows.len() as u64,
            report: path,
        });
        print!(
            "{}",
            report_text(&name, &report, rejected_note.as_ref(), &timings)
        );
        let rows_rejected = skip_bad.filter(|_| !rejected_rows.is_empty());
        if let Some(path) = rows_rejected {
            rejected::print_problems(&rejected_rows, path);
            println!("{}", rejected::summary(rows, rejected_rows.len(), path));
        }
        if !report.refused.is_empty() {
            eprint!("{}", report.refused);
            eprintln!("These lines were not stored; every other bill was.");
            return Ok(ExitCode::from(BAD_INPUT));
        }
        if rows_rejected.is_some() {
            return Ok(ExitCode::from(rejected::ROWS_REJECTED));
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// The feed is streamed and kept as compact records: no size limit, as
/// without `--skip-bad`.
const STREAMED: ReadOptions = ReadOptions { max_bytes: u64::MAX };

/// The rows of a file read leniently that failed their checks, and its
/// header, for the report.
struct SetAside {
    header: Vec<String>,
    rows: Vec<RejectedRow>,
}

/// The good rows of a file read leniently, as the records the store
/// takes, and the rows set aside.
fn good_records(read: Partitioned<Invoice>) -> (Vec<InvoiceRecord>, Option<SetAside>) {
    let records = read
        .good
        .into_iter()
        .map(|good| InvoiceRecord {
            line: good.line,
            invoice: good.row,
        })
        .collect();
    let set_aside = SetAside {
        header: read.header,
        rows: read.rejected,
    };
    (records, Some(set_aside))
}

/// The rows `--skip-bad` set aside.
struct Rejected<'p> {
    rows: u64,
    report: &'p Path,
}

/// When each stage ended, from the start.
struct Timings {
    read: Duration,
    checked: Duration,
    total: Duration,
}

/// The report, in plain words.
/// With `--skip-bad`, the rows read count those set aside too, and a line
/// says how many there were and where they are.
fn report_text(
    file: &str,
    report: &FeedReport,
    rejected: Option<&Rejected<'_>>,
    timings: &Timings,
) -> String {
    let decided: Vec<String> = [
        Outcome::Assisted,
        Outcome::Capped,
        Outcome::NotEligible,
        Outcome::NoRule,
    ]
    .iter()
    .map(|outcome| {
        format!(
            "{} {}",
            outcome.as_str().replace('_', " "),
            grouped(report.count(*outcome))
        )
    })
    .collect();
    let mut lines = vec![(
        "rows read",
        grouped(report.rows + rejected.map_or(0, |rejected| rejected.rows)),
        String::new(),
    )];
    if let Some(rejected) = rejected {
        lines.push((
            "rejected",
            grouped(rejected.rows),
            format!(
                "rows that failed their checks: not stored; each with its reasons in {}",
                rejected.report.display()
            ),
        ));
    }
    lines.extend([
        ("decided now", grouped(report.decided()), decided.join(", ")),
        (
            "amount assisted",
            money(report.amount),
            "yuan, by the bills decided now".to_owned(),
        ),
        (
            "persons assisted",
            grouped(report.persons_assisted),
            String::new(),
        ),
        (
            "already decided",
            grouped(report.already_decided),
            "stored before, by real time or an earlier feed: not decided again".to_owned(),
        ),
        (
            "duplicates",
            grouped(report.duplicates.len() as u64),
            "lines repeating a bill of this file: not stored again".to_owned(),
        ),
    ]);
    let width = lines.iter().map(|(_, value, _)| value.len()).max().unwrap_or(0);
    let mut text = format!("Imported the insurance feed {file}.\n\n");
    for (label, value, note) in &lines {
        let line = format!("  {label:<17} {value:>width$}   {note}");
        text.push_str(line.trim_end());
        text.push('\n');
    }
    if !report.duplicates.is_empty() {
        text.push_str(
            "\nDuplicates (the bill of the first line was decided; the later line is not stored):\n",
        );
        for duplicate in report.duplicates.iter().take(DUPLICATES_LISTED) {
            let _ = writeln!(
                text,
                "  {file}:{}: {} repeats line {}",
                duplicate.line, duplicate.invoice_no, duplicate.first_line
            );
        }
        if report.duplicates.len() > DUPLICATES_LISTED {
            let _ = writeln!(
                text,
                "  … and {} more",
                grouped((report.duplicates.len() - DUPLICATES_LISTED) as u64)
            );
        }
    }
    let stored = timings.total.saturating_sub(timings.checked);
    let _ = writeln!(
        text,
        "\n{} rows in {:.1?}: reading {:.1?}, checking {:.1?}, deciding and storing {:.1?} \
         (in {} transaction{}); {} rows/s in all.",
        grouped(report.rows),
        timings.total,
        timings.read,
        timings.checked.saturating_sub(timings.read),
        stored,
        grouped(report.transactions),
        if report.transactions == 1 { "" } else { "s" },
        grouped(per_second(report.rows, timings.total)),
    );
    text
}

/// Events per second, in whole numbers.
fn per_second(count: u64, elapsed: Duration) -> u64 {
    let micros = elapsed.as_micros().max(1);
    u64::try_from(u128::from(count) * 1_000_000 / micros).unwrap_or(u64::MAX)
}

/// The bar of the reading stage, in bytes; hidden when standard error is
/// not a terminal.
fn reading_progress(file: &Path) -> ProgressBar {
    let length = std::fs::metadata(file)
        .map(|metadata| metadata.len())
        .unwrap_or(0);
    let bar = ProgressBar::with_draw_target(Some(length), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("reading {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// The bar of the checking, deciding and storing stages, in rows, with
/// the rate; hidden when standard error is not a terminal.
fn importing_progress(rows: u64) -> ProgressBar {
    rows_progress("checking, deciding, storing", rows)
}

/// A bar of `rows` rows with the rate, headed by `stage`; hidden when
/// standard error is not a terminal.
pub(crate) fn rows_progress(stage: &str, rows: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(rows), ProgressDrawTarget::stderr());
    let template = format!("{stage} {{wide_bar}} {{human_pos}}/{{human_len}} rows {{per_sec}} {{eta}}");
    bar.set_style(ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiuzhu_core::{Fen, InvoiceNo};
    use jiuzhu_store::FeedDuplicate;

    #[test]
    fn the_report_says_what_was_decided_in_plain_words() {
        let report = FeedReport {
            rows: 12_345,
            outcomes: [10_000, 20, 0, 2_000, 3],
            amount: Fen::from_fen(123_456_789),
            persons_assisted: 900,
            already_decided: 300,
            duplicates: vec![FeedDuplicate {
                invoice_no: InvoiceNo::parse("INV7").unwrap(),
                line: 9,
                first_line: 3,
            }],
            transactions: 13,
            ..FeedReport::default()
        };
        let timings = Timings {
            read: Duration::from_millis(100),
            checked: Duration::from_millis(300),
            total: Duration::from_millis(1300),
        };
        let text = report_text("feed.csv", &report, None, &timings);
        assert_eq!(
            text,
            "Imported the insurance feed feed.csv.\n\
             \n\
             \x20 rows read               12,345\n\
             \x20 decided now             12,023   assisted 10,000, capped 20, not eligible 2,000, no rule 3\n\
             \x20 amount assisted   1,234,567.89   yuan, by the bills decided now\n\
             \x20 persons assisted           900\n\
             \x20 already decided            300   stored before, by real time or an earlier feed: not decided again\n\
             \x20 duplicates                   1   lines repeating a bill of this file: not stored again\n\
             \n\
             Duplicates (the bill of the first line was decided; the later line is not stored):\n\
             \x20 feed.csv:9: INV7 repeats line 3\n\
             \n\
             12,345 rows in 1.3s: reading 100.0ms, checking 200.0ms, deciding and storing 1.0s (in 13 transactions); \
             9,496 rows/s in all.\n"
        );
    }
}
