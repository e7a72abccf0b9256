//! `jiuzhu simulate`: the engine over whole files, for analysts, with an
//! optional what-if against a second policy.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use jiuzhu_core::{Batch, BatchRun, Fen, Outcome, Policy, SpellBook};
use jiuzhu_formats::{
    check_invoices_file_without_policy, read_batch_invoices_file, read_policy_file, read_spells_file,
    write_results, Problem, Problems,
};

#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// The policy (policy.toml).
    #[arg(long, value_name = "FILE")]
    pub policy: PathBuf,
    /// Category spells (spells.csv).
    #[arg(long, value_name = "FILE")]
    pub spells: PathBuf,
    /// Invoices (invoices.csv).
    #[arg(long, value_name = "FILE")]
    pub invoices: PathBuf,
    /// Where to write results.csv; written whole or not at all.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// A second policy to run over the same data: prints what it would cost
    /// per category, next to the first.
    #[arg(long, value_name = "FILE")]
    pub compare: Option<PathBuf>,
    /// Explain, step by step, the decision on the bill with this number
    /// (may be given several times).
    #[arg(long, value_name = "INVOICE_NO")]
    pub explain: Vec<String>,
}

/// How a run ended, for the exit status.
#[derive(Debug)]
pub enum Failure {
    /// The input broke the formats: exit status 2, every problem listed.
    BadInput(Problems),
    /// Anything else (e.g. the results file could not be written): status 1.
    Other(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Failure {
        Failure::Other(error)
    }
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

pub fn run(args: &SimulateArgs) -> Result<(), Failure> {
    let started = Instant::now();
    let mut problems = Problems::new();

    let policy = read_policy_file(&args.policy, &display(&args.policy))
        .map_err(|found| problems.extend(found))
        .ok();
    let compare = args.compare.as_ref().and_then(|path| {
        read_policy_file(path, &display(path))
            .map_err(|found| problems.extend(found))
            .ok()
    });
    let known_visit_types: Vec<String> = match &policy {
        Some(policy) => policy
            .visit_types()
            .iter()
            .map(|(name, _)| name.clone())
            .collect(),
        None => Vec::new(),
    };
    let out_directory = match args.out.parent() {
        Some(parent) if parent.as_os_str().is_empty() => Path::new("."),
        Some(parent) => parent,
        None => Path::new("."),
    };
    if !out_directory.is_dir() {
        problems.push(Problem::whole_file(
            &display(&args.out),
            format!(
                "cannot write results: the folder {} does not exist",
                out_directory.display()
            ),
        ));
    }

    if let Some(warning) = memory_warning(&args.invoices) {
        eprintln!("{warning}");
    }
    let progress = reading_progress(&args.invoices);
    let (spells, invoices) = rayon::join(
        || read_spells_file(&args.spells, &display(&args.spells), policy.as_ref()),
        || match &policy {
            Some(_) => read_batch_invoices_file(
                &args.invoices,
                &display(&args.invoices),
                &known_visit_types,
                &|bytes| progress.inc(bytes),
            ),
            // Without a valid policy, visit types cannot be checked: check
            // the rest, so that one run reports every other problem.
            None => Err(check_invoices_file_without_policy(
                &args.invoices,
                &display(&args.invoices),
                &|bytes| progress.inc(bytes),
            )),
        },
    );
    progress.finish_and_clear();
    let spells = spells.map_err(|found| problems.extend(found)).ok();
    let invoices = invoices.map_err(|found| problems.extend(found)).ok();
    let (Some(policy), Some(spells), Some(invoices), true) = (policy, spells, invoices, problems.is_empty())
    else {
        return Err(Failure::BadInput(problems));
    };
    let read_seconds = started.elapsed();

    let sorting = Instant::now();
    let spinner = stage_spinner("sorting invoices into canonical order");
    let batch = Batch::new(invoices, known_visit_types);
    spinner.finish_and_clear();
    let sort_seconds = sorting.elapsed();
    let book = match SpellBook::new(&policy, &spells) {
        Ok(book) => book,
        Err(unknown) => {
            for category in unknown {
                problems.push(Problem::whole_file(
                    &display(&args.spells),
                    format!("category {:?} is not a category of the policy", category.code),
                ));
            }
            return Err(Failure::BadInput(problems));
        }
    };
    let compare_book = compare
        .as_ref()
        .map(|compare| SpellBook::new_lenient(compare, &spells));
    if let (Some(compare), Some(path)) = (&compare, &args.compare) {
        for visit_type in batch.visit_types() {
            if compare.pool_of_visit_type(visit_type).is_none() {
                problems.push(Problem::whole_file(
                    &display(path),
                    format!("the invoices have visit type {visit_type:?}, which this policy does not map to a pool"),
                ));
            }
        }
    }
    if !problems.is_empty() {
        return Err(Failure::BadInput(problems));
    }

    let deciding = Instant::now();
    let progress = counting_progress("deciding", batch.len() as u64, "invoices");
    let result = batch
        .run(&policy, &book, &|done| progress.inc(done))
        .map_err(|_| anyhow::anyhow!("a visit type of the invoices has no pool in the policy"))?;
    progress.finish_and_clear();

    let decide_seconds = deciding.elapsed();
    let writing = Instant::now();
    write_results_file(&args.out, &policy, &batch, &result)?;
    let write_seconds = writing.elapsed();
    let mut report = summary_table(&policy, &result, &display(&args.out), batch.len());
    let _ = writeln!(
        report,
        "{} invoices in {:.1?}: reading {:.1?}, sorting {:.1?}, deciding {:.1?}, writing {:.1?}.",
        grouped(batch.len() as u64),
        started.elapsed(),
        read_seconds,
        sort_seconds,
        decide_seconds,
        write_seconds
    );

    for invoice_no in &args.explain {
        report.push('\n');
        report.push_str(&explanation(&policy, &book, &batch, invoice_no));
    }

    if let (Some(compare), Some((compare_book, left_out)), Some(path)) =
        (&compare, &compare_book, &args.compare)
    {
        let compared = batch
            .run(compare, compare_book, &|_| {})
            .map_err(|_| anyhow::anyhow!("a visit type of the invoices has no pool in {}", path.display()))?;
        report.push('\n');
        report.push_str(&compare_table(
            &policy,
            &result,
            compare,
            &compared,
            &display(&args.policy),
            &display(path),
        ));
        if *left_out > 0 {
            let _ = writeln!(
                report,
                "{left_out} spells name categories that {} does not define: under it, they grant nothing.",
                path.display()
            );
        }
    }
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(report.as_bytes())
        .context("cannot write to standard output")?;
    Ok(())
}

/// Every decision on bills numbered `invoice_no`, step by step.
fn explanation(policy: &Policy, book: &SpellBook, batch: &Batch, invoice_no: &str) -> String {
    let mut text = String::new();
    let mut found = false;
    for (index, invoice) in batch.invoices().iter().enumerate() {
        if invoice.invoice_no.as_bytes() != invoice_no.as_bytes() {
            continue;
        }
        found = true;
        let _ = writeln!(
            text,
            "Bill {invoice_no} of {}, record {} of the invoices, served {}, settled {}:",
            invoice.person.masked(),
            grouped(u64::from(invoice.position) + 1),
            invoice.service_date,
            invoice.settled_at
        );
        for line in batch
            .explain(policy, book, index)
            .map(|decision| decision.explanation(policy))
            .unwrap_or_default()
        {
            let _ = writeln!(text, "  {line}");
        }
    }
    if !found {
        let _ = writeln!(
            text,
            "Bill {invoice_no}: no bill with this number is in the invoices."
        );
    }
    text
}

/// Writes results.csv whole or not at all: into a temporary file beside the
/// target, flushed and synced, then renamed over it.
fn write_results_file(out: &Path, policy: &Policy, batch: &Batch, result: &BatchRun) -> anyhow::Result<()> {
    let directory = match out.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".results-").suffix(".tmp");
    // The file is the user's output, not a secret: the permissions of any
    // new file (as the umask allows), not a temporary file's 0600.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let temporary = builder
        .tempfile_in(directory)
        .with_context(|| format!("cannot create a file in {}", directory.display()))?;
    {
        let mut writer = BufWriter::with_capacity(1 << 20, temporary.as_file());
        let progress = counting_progress("writing", batch.len() as u64, "rows");
        write_results(&mut writer, policy, batch, result, &|rows| progress.inc(rows))
            .and_then(|()| writer.flush())
            .with_context(|| format!("cannot write {}", out.display()))?;
    }
    temporary
        .as_file()
        .sync_all()
        .with_context(|| format!("cannot write {}", out.display()))?;
    temporary
        .persist(out)
        .with_context(|| format!("cannot write {}", out.display()))?;
    Ok(())
}

/// Memory a run holds per byte of invoices.csv, measured: about 145 bytes
/// per invoice for rows of about 130 bytes (`bench/simulate.sh`, 100M rows:
/// 14.5 GB peak for a 13 GB file).
const MEMORY_PER_INPUT_BYTE_PERCENT: u64 = 115;

/// A warning when the invoices will likely need more memory than the
/// machine has available (Linux's MemAvailable), before hours are lost to
/// swapping or the run is killed.
fn memory_warning(invoices: &Path) -> Option<String> {
    let bytes = std::fs::metadata(invoices).ok()?.len();
    let needed = bytes / 100 * MEMORY_PER_INPUT_BYTE_PERCENT;
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let available_kib: u64 = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemAvailable:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let available = available_kib.saturating_mul(1024);
    let gib = |bytes: u64| format!("{}.{} GiB", bytes >> 30, ((bytes & ((1 << 30) - 1)) * 10) >> 30);
    (needed > available).then(|| {
        format!(
            "warning: {} is {}: deciding it needs about {} of memory, and {} is available. \
             If the run fails, split the invoices by service year or by region and run each part.",
            invoices.display(),
            gib(bytes),
            gib(needed),
            gib(available)
        )
    })
}

fn reading_progress(invoices: &Path) -> ProgressBar {
    let length = std::fs::metadata(invoices)
        .map(|metadata| metadata.len())
        .unwrap_or(0);
    let bar = ProgressBar::with_draw_target(Some(length), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "reading invoices {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

fn counting_progress(stage: &str, total: u64, unit: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{stage} {{wide_bar}} {{human_pos}}/{{human_len}} {unit} {{eta}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

fn stage_spinner(message: &'static str) -> ProgressBar {
    let spinner = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    spinner.set_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    spinner.set_message(message);
    spinner.enable_steady_tick(std::time::Duration::from_millis(200));
    spinner
}

/// Digits grouped by thousands: `1,234,567`.
pub(crate) fn grouped(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// Yuan with thousands separators: `1,234,567.89`.
pub(crate) fn money(fen: Fen) -> String {
    let sign = if fen.is_negative() { "-" } else { "" };
    let magnitude = fen.fen().unsigned_abs();
    format!("{sign}{}.{:02}", grouped(magnitude / 100), magnitude % 100)
}

/// A table with a header, right-aligned but for the first `left` columns.
fn table(header: &[&str], rows: &[Vec<String>], left: usize) -> String {
    let mut widths: Vec<usize> = header.iter().map(|title| title.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (index, (cell, width)) in cells.zip(&widths).enumerate() {
            if index > 0 {
                text.push_str("  ");
            }
            let pad = width.saturating_sub(cell.chars().count());
            if index < left {
                text.push_str(cell);
                text.push_str(&" ".repeat(pad));
            } else {
                text.push_str(&" ".repeat(pad));
                text.push_str(cell);
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

fn summary_table(policy: &Policy, result: &BatchRun, out: &str, invoices: usize) -> String {
    let summary = &result.summary;
    let mut rows = Vec::new();
    let (mut people, mut count, mut base, mut amount, mut capped) = (0u64, 0u64, 0i64, 0i64, 0u64);
    for ((category, pool), row) in &summary.rows {
        rows.push(vec![
            policy.category(*category).code.clone(),
            policy.pool_name(*pool).to_owned(),
            grouped(row.people),
            grouped(row.invoices),
            money(row.base_total),
            money(row.amount_total),
            grouped(row.capped),
        ]);
        people += row.people;
        count += row.invoices;
        base += row.base_total.fen();
        amount += row.amount_total.fen();
        capped += row.capped;
    }
    let _ = people;
    rows.push(vec![
        "total".into(),
        String::new(),
        grouped(summary.people_assisted),
        grouped(count),
        money(Fen::from_fen(base)),
        money(Fen::from_fen(amount)),
        grouped(capped),
    ]);
    let mut report = format!(
        "Simulated {} invoices under {}; results in {out}.\n\n",
        grouped(invoices as u64),
        policy.name().unwrap_or("the policy")
    );
    report.push_str(&table(
        &[
            "category",
            "pool",
            "people",
            "invoices",
            "base total",
            "amount total",
            "capped",
        ],
        &rows,
        2,
    ));
    let outcomes: Vec<String> = Outcome::ALL
        .iter()
        .map(|outcome| format!("{} {}", outcome.as_str(), grouped(summary.count(*outcome))))
        .collect();
    let _ = writeln!(report, "\nOutcomes: {}.", outcomes.join(", "));
    let names: Vec<String> = policy
        .categories()
        .iter()
        .filter_map(|category| {
            category
                .name
                .as_ref()
                .map(|name| format!("{} {name}", category.code))
        })
        .collect();
    if !names.is_empty() {
        let _ = writeln!(report, "Categories: {}.", names.join(", "));
    }
    report
}

fn compare_table(
    policy: &Policy,
    result: &BatchRun,
    compare: &Policy,
    compared: &BatchRun,
    policy_name: &str,
    compare_name: &str,
) -> String {
    // Per category code, in the first policy's order, then the second's new ones.
    let mut codes: Vec<String> = policy
        .categories()
        .iter()
        .map(|category| category.code.clone())
        .collect();
    for category in compare.categories() {
        if !codes.contains(&category.code) {
            codes.push(category.code.clone());
        }
    }
    let by_code = |policy: &Policy, run: &BatchRun| -> BTreeMap<String, (Fen, u64)> {
        let mut totals: BTreeMap<String, (Fen, u64)> = BTreeMap::new();
        for ((category, _), row) in &run.summary.rows {
            let entry = totals.entry(policy.category(*category).code.clone()).or_default();
            entry.0 = Fen::from_fen(entry.0.fen() + row.amount_total.fen());
            entry.1 += row.invoices;
        }
        totals
    };
    let current = by_code(policy, result);
    let proposed = by_code(compare, compared);
    let mut rows = Vec::new();
    for code in &codes {
        let (before, before_invoices) = current.get(code).copied().unwrap_or_default();
        let (after, after_invoices) = proposed.get(code).copied().unwrap_or_default();
        rows.push(vec![
            code.clone(),
            grouped(before_invoices),
            money(before),
            grouped(after_invoices),
            money(after),
            money(Fen::from_fen(after.fen() - before.fen())),
        ]);
    }
    let before = result.summary.amount_total;
    let after = compared.summary.amount_total;
    rows.push(vec![
        "total".into(),
        grouped(result.summary.rows.values().map(|row| row.invoices).sum()),
        money(before),
        grouped(compared.summary.rows.values().map(|row| row.invoices).sum()),
        money(after),
        money(Fen::from_fen(after.fen() - before.fen())),
    ]);
    let mut report = format!("What-if: {policy_name} (current) against {compare_name} (proposed).\n\n");
    report.push_str(&table(
        &[
            "category",
            "invoices now",
            "amount now",
            "invoices then",
            "amount then",
            "difference",
        ],
        &rows,
        1,
    ));
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(1_234_567), "1,234,567");
        assert_eq!(money(Fen::from_fen(123_456_789)), "1,234,567.89");
        assert_eq!(money(Fen::from_fen(-5)), "-0.05");
    }

    #[test]
    fn tables_align_numbers_right_and_names_left() {
        let text = table(
            &["name", "n"],
            &[vec!["a".into(), "1,000".into()], vec!["long".into(), "2".into()]],
            1,
        );
        assert_eq!(text, "name      n\na     1,000\nlong      2\n");
    }
}
