//! `jiuzhu clear --period P --out DIR`: periodic clearing (定期清算) of the
//! store, and its report.
//!
//! The clearing itself is [`Store::run_clearing`]; this writes what it found
//! into `DIR`, as CSV and as one XLSX workbook:
//!
//! - `differences.csv`: one row per person-year whose totals differ,
//!   `person_id,year,granted,recomputed,difference,invoices` (money as in
//!   `formats.md`, `difference` signed, `invoices` the numbers whose amounts
//!   changed, separated by spaces): a positive difference is a top-up to
//!   pay, a negative one a recovery to review;
//! - `duplicates.csv`: bills of one person at one hospital on one date with
//!   the same visit type and amounts under different numbers;
//! - `capped.csv`: the invoices whose amount a cap limited, with the amount
//!   before caps;
//! - `clearing.xlsx`: a summary sheet and the three tables.
//!
//! The directory is checked before the clearing runs, so that a clearing is
//! not stored without its report; the files are written under temporary
//! names and renamed into place.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use jiuzhu_core::{Date, Fen, InvoiceNo, Period};
use jiuzhu_formats::results::csv_field;
use jiuzhu_store::{ClearingError, ClearingReport, Store};
use rust_xlsxwriter::Workbook;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::SettingsArgs;
use crate::settings::ClearingSchedule;

#[derive(Debug, clap::Args)]
pub struct ClearArgs {
    /// The period: a month (2024-06), a quarter (2024-Q2) or a year (2024).
    /// Every invoice of the period's year is recomputed.
    #[arg(long, value_parser = parse_period)]
    period: Period,
    /// The directory the report is written into (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    #[command(flatten)]
    settings: SettingsArgs,
}

fn parse_period(text: &str) -> Result<Period, String> {
    Period::parse(text).map_err(|error| error.to_string())
}

pub const DIFFERENCES_HEADER: &str = "person_id,year,granted,recomputed,difference,invoices";
pub const DUPLICATES_HEADER: &str = "person_id,hospital,service_date,visit_type,total,invoices";
pub const CAPPED_HEADER: &str = "invoice_no,person_id,year,pool,raw,amount,over_cap";

pub fn run(args: &ClearArgs, actor: &str) -> ExitCode {
    match clear(args, actor) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn clear(args: &ClearArgs, actor: &str) -> anyhow::Result<ExitCode> {
    let report = crate::admin::runtime()?.block_on(async {
        let store = crate::admin::open_store(&args.settings).await?;
        let started = std::time::Instant::now();
        let stage = |what: &str| {
            eprintln!(
                "clearing {}: {what}… ({:.1} s)",
                args.period,
                started.elapsed().as_secs_f64()
            )
        };
        let report = clear_into(&store, args.period, &args.out, actor, &stage).await;
        store.close().await;
        report
    })?;
    print!("{}", summary(&report, &args.out));
    Ok(ExitCode::SUCCESS)
}

/// Runs a clearing of `period` and writes its report into `out`, which is
/// checked first: a clearing is not stored without a place for its report.
pub async fn clear_into(
    store: &Store,
    period: Period,
    out: &Path,
    actor: &str,
    stage: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<ClearingReport> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    tempfile::NamedTempFile::new_in(out).with_context(|| format!("cannot write into {}", out.display()))?;
    // The report's files are made while the clearing's rows are stored,
    // and written once it is committed.
    let (report, prepared) = match store
        .run_clearing_with(period, actor, stage, prepare_report)
        .await
    {
        Ok(done) => done,
        Err(ClearingError::Store(error)) => {
            return Err(anyhow!(error).context("the clearing failed; nothing was stored"))
        }
        Err(error) => return Err(anyhow!("{error}")),
    };
    stage("writing the report");
    let written = match prepared {
        Some(prepared) => prepared,
        None => prepare_report(&report),
    }
    .and_then(|files| files.write(out));
    written.context("the clearing is stored, but its report could not be written")?;
    Ok(report)
}

/// The period the schedule has most recently come due for, at `minute`
/// minutes after midnight of `today` (China time): the month before the
/// last scheduled day passed.
pub fn due_period(schedule: ClearingSchedule, today: Date, minute: u32) -> Option<Period> {
    let ClearingSchedule::Monthly { day, minute: at } = schedule else {
        return None;
    };
    let this_month = Period::month_of(today);
    let passed = today.day() > day || (today.day() == day && minute >= at);
    Some(if passed {
        this_month.previous()
    } else {
        this_month.previous().previous()
    })
}

/// Today in China (UTC+8).
pub fn today_in_china() -> Option<Date> {
    now_in_china().map(|(date, _)| date)
}

/// Today's date and the minutes since midnight, in China (UTC+8).
fn now_in_china() -> Option<(Date, u32)> {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs() as i64
        + 8 * 3600;
    let date = Date::from_days_since_epoch(i32::try_from(seconds.div_euclid(86_400)).ok()?)?;
    Some((date, (seconds.rem_euclid(86_400) / 60) as u32))
}

/// How often the scheduler looks whether a clearing is due.
const SCHEDULE_CHECK: Duration = Duration::from_secs(60);

/// Runs the scheduled clearings in `jiuzhu serve`: at start and every
/// minute, the period the schedule last came due for is cleared if the store
/// holds no clearing of it yet (a run missed while no server was up is made
/// up). Of two servers on one database, one stores the clearing; the other
/// finds it stored, or is refused and finds it stored next time.
pub fn spawn_scheduler(
    store: Store,
    schedule: ClearingSchedule,
    report_dir: PathBuf,
    mut stop: watch::Receiver<bool>,
) -> Option<JoinHandle<()>> {
    if schedule == ClearingSchedule::Off {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(SCHEDULE_CHECK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stop.changed() => return,
            }
            let Some((today, minute)) = now_in_china() else {
                continue;
            };
            let Some(period) = due_period(schedule, today, minute) else {
                continue;
            };
            match store.clearings_of(period).await {
                Ok(0) => {}
                Ok(_) => continue,
                Err(error) => {
                    tracing::warn!(%error, %period, "cannot tell whether the clearing ran; trying again later");
                    continue;
                }
            }
            let out = report_dir.join(period.to_string());
            tracing::info!(%period, out = %out.display(), "the scheduled clearing starts");
            let stage = |what: &str| tracing::info!(%period, "clearing: {what}");
            match clear_into(&store, period, &out, "scheduler", &stage).await {
                Ok(report) => {
                    let (top_ups, top_up_total) = report.top_ups();
                    let (recoveries, recovery_total) = report.recoveries();
                    tracing::info!(
                        %period,
                        clearing = report.clearing_id,
                        invoices = report.invoices,
                        top_ups,
                        top_up_total = %top_up_total,
                        recoveries,
                        recovery_total = %recovery_total,
                        out = %out.display(),
                        "the scheduled clearing is stored"
                    );
                }
                Err(error) => {
                    tracing::warn!(%period, "the scheduled clearing did not run: {error:#}; trying again later")
                }
            }
        }
    }))
}

fn invoices_text(invoices: &[InvoiceNo]) -> String {
    invoices
        .iter()
        .map(InvoiceNo::as_str)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The report's three tables, each as a header and rows of fields.
fn tables(report: &ClearingReport) -> [(&'static str, &'static str, Vec<Vec<String>>); 3] {
    let differences = report
        .differences
        .iter()
        .map(|row| {
            vec![
                row.person_id.to_string(),
                row.year.to_string(),
                row.granted.to_string(),
                row.recomputed.to_string(),
                row.difference().to_string(),
                invoices_text(&row.invoices),
            ]
        })
        .collect();
    let duplicates = report
        .duplicates
        .iter()
        .map(|row| {
            vec![
                row.person_id.to_string(),
                row.hospital.clone(),
                row.service_date.to_string(),
                row.visit_type.clone(),
                row.total.to_string(),
                invoices_text(&row.invoices),
            ]
        })
        .collect();
    let capped = report
        .capped
        .iter()
        .map(|row| {
            vec![
                row.invoice_no.to_string(),
                row.person_id.to_string(),
                row.year.to_string(),
                row.pool.clone(),
                row.raw.to_string(),
                row.amount.to_string(),
                Fen::from_fen(row.raw.fen() - row.amount.fen()).to_string(),
            ]
        })
        .collect();
    [
        ("differences", DIFFERENCES_HEADER, differences),
        ("duplicates", DUPLICATES_HEADER, duplicates),
        ("capped", CAPPED_HEADER, capped),
    ]
}

fn csv_text(header: &str, rows: &[Vec<String>]) -> String {
    let mut text = String::with_capacity(64 * (rows.len() + 1));
    text.push_str(header);
    text.push('\n');
    for row in rows {
        let fields: Vec<String> = row.iter().map(|field| csv_field(field)).collect();
        text.push_str(&fields.join(","));
        text.push('\n');
    }
    text
}

/// Writes `bytes` to `path` through a temporary file renamed into place.
fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let path = dir.join(name);
    let mut temporary = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write into {}", dir.display()))?;
    std::io::Write::write_all(&mut temporary, bytes)
        .with_context(|| format!("cannot write {}", path.display()))?;
    temporary
        .persist(&path)
        .map_err(|error| anyhow!("cannot write {}: {}", path.display(), error.error))?;
    Ok(())
}

/// The summary's rows: what, and how much.
fn summary_rows(report: &ClearingReport) -> Vec<(&'static str, String)> {
    let (top_ups, top_up_total) = report.top_ups();
    let (recoveries, recovery_total) = report.recoveries();
    vec![
        ("清算编号 clearing", report.clearing_id.to_string()),
        ("期间 period", report.period.to_string()),
        ("重算年度 year recomputed", report.period.year().to_string()),
        ("政策版本 policy (stored version)", report.policy_id.to_string()),
        ("重算发票 invoices recomputed", report.invoices.to_string()),
        ("救助对象 persons", report.persons.to_string()),
        ("补发 top-ups", top_ups.to_string()),
        ("补发金额 top-up total", top_up_total.to_string()),
        ("追回 recoveries", recoveries.to_string()),
        ("追回金额 recovery total", recovery_total.to_string()),
        (
            "结果变化的发票 invoices changed",
            report.invoices_changed.to_string(),
        ),
        (
            "疑似重复 suspected duplicates",
            report.duplicates.len().to_string(),
        ),
        ("超限 capped invoices", report.capped.len().to_string()),
        ("清除的重算标记 marks taken", report.marks_taken.to_string()),
        (
            "清算期间复核 persons rechecked",
            report.persons_rechecked.to_string(),
        ),
    ]
}

/// A report's files, made and not yet written: each name with its bytes.
struct ReportFiles(Vec<(String, Vec<u8>)>);

impl ReportFiles {
    /// Writes each file into `dir`, each through a temporary file renamed
    /// into place.
    fn write(&self, dir: &Path) -> anyhow::Result<()> {
        for (name, bytes) in &self.0 {
            write_file(dir, name, bytes)?;
        }
        Ok(())
    }
}

/// The report's files: a CSV file per table, and all in `clearing.xlsx`.
fn prepare_report(report: &ClearingReport) -> anyhow::Result<ReportFiles> {
    let tables = tables(report);
    let mut files: Vec<(String, Vec<u8>)> = tables
        .iter()
        .map(|(name, header, rows)| (format!("{name}.csv"), csv_text(header, rows).into_bytes()))
        .collect();
    let mut workbook = Workbook::new();
    // The fastest deflate: the workbook is made while the clearing's rows
    // are stored, on the core the store's writer shares; its text of
    // repeated cells still shrinks several times.
    workbook.set_zip_compression_level(1);
    let xlsx = |error: rust_xlsxwriter::XlsxError| anyhow!("cannot build clearing.xlsx: {error}");
    {
        let sheet = workbook.add_worksheet();
        sheet.set_name("概要 summary").map_err(xlsx)?;
        for (row, (what, value)) in summary_rows(report).into_iter().enumerate() {
            sheet.write_string(row as u32, 0, what).map_err(xlsx)?;
            sheet.write_string(row as u32, 1, value).map_err(xlsx)?;
        }
        sheet.set_column_width(0, 36).map_err(xlsx)?;
    }
    for ((_, header, rows), title) in
        tables
            .iter()
            .zip(["差额 differences", "疑似重复 duplicates", "超限 capped"])
    {
        let sheet = workbook.add_worksheet();
        sheet.set_name(title).map_err(xlsx)?;
        for (column, name) in header.split(',').enumerate() {
            sheet.write_string(0, column as u16, name).map_err(xlsx)?;
        }
        // Money stays text, exactly as in the CSV: no float touches it.
        for (row, fields) in rows.iter().enumerate() {
            for (column, field) in fields.iter().enumerate() {
                sheet
                    .write_string(row as u32 + 1, column as u16, field)
                    .map_err(xlsx)?;
            }
        }
    }
    files.push((
        "clearing.xlsx".to_owned(),
        workbook.save_to_buffer().map_err(xlsx)?,
    ));
    Ok(ReportFiles(files))
}

fn summary(report: &ClearingReport, out: &Path) -> String {
    let (top_ups, top_up_total) = report.top_ups();
    let (recoveries, recovery_total) = report.recoveries();
    let mut text = format!(
        "Clearing {} (stored as clearing {}): {} invoices of {} persons recomputed under policy version {}.\n",
        report.period,
        report.clearing_id,
        crate::simulate::grouped(report.invoices),
        crate::simulate::grouped(report.persons),
        report.policy_id
    );
    let person_years = |count: u64| match count {
        1 => "1 person-year".to_owned(),
        _ => format!("{} person-years", crate::simulate::grouped(count)),
    };
    text.push_str(&format!(
        "  top-ups to pay:        {}, {}\n  recoveries to review:  {}, {}\n",
        person_years(top_ups),
        crate::simulate::money(top_up_total),
        person_years(recoveries),
        crate::simulate::money(recovery_total)
    ));
    text.push_str(&format!(
        "  invoices changed: {}; counters updated: {}; marks taken: {}; suspected duplicates: {}; capped: {}\n",
        report.invoices_changed,
        report.counters_updated,
        report.marks_taken,
        report.duplicates.len(),
        report.capped.len()
    ));
    if report.persons_rechecked > 0 {
        text.push_str(&format!(
            "  {} persons changed while it ran and were recomputed again before storing.\n",
            report.persons_rechecked
        ));
    }
    if report.spells_left_out > 0 {
        text.push_str(&format!(
            "  {} spells were left out: the policy in force does not define their category.\n",
            report.spells_left_out
        ));
    }
    if report.differences.is_empty() {
        text.push_str("  Nothing differs: nothing new to pay or recover.\n");
    }
    text.push_str(&format!(
        "Report: {} (differences.csv, duplicates.csv, capped.csv, clearing.xlsx)\n",
        out.display()
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_due_period_is_the_month_before_the_last_scheduled_day_passed() {
        let schedule = ClearingSchedule::Monthly { day: 3, minute: 120 };
        let date = |text| Date::parse(text).unwrap();
        let due = |today, minute| due_period(schedule, date(today), minute).unwrap().to_string();
        assert_eq!(due("2024-07-03", 120), "2024-06");
        assert_eq!(due("2024-07-03", 119), "2024-05");
        assert_eq!(due("2024-07-02", 1439), "2024-05");
        assert_eq!(due("2024-07-31", 0), "2024-06");
        assert_eq!(due("2024-01-05", 0), "2023-12");
        assert_eq!(due("2024-01-01", 0), "2023-11");
        assert_eq!(due_period(ClearingSchedule::Off, date("2024-07-03"), 0), None);
    }

    #[test]
    fn csv_fields_with_commas_are_quoted_and_rows_end_in_lf() {
        let text = csv_text("a,b", &[vec!["1".into(), "x,y".into()]]);
        assert_eq!(text, "a,b\n1,\"x,y\"\n");
    }
}
