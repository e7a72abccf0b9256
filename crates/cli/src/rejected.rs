//! `--skip-bad REPORT`, shared by `jiuzhu import spells` and `jiuzhu import
//! invoices`: the rows that pass their checks are imported, and the rows
//! that do not are written to REPORT with every reason (the CSV of
//! [`jiuzhu_formats::write_rejected_csv`]) and listed on standard error.
//! Problems with the whole file (unreadable, empty, not text, too large, a
//! required column missing) still refuse it whole.

use std::path::Path;

use anyhow::{bail, Context as _};
use jiuzhu_formats::{Problems, RejectedRow};

/// Exit status of an import with `--skip-bad` that stored the good rows
/// and set some rows aside: scripts can tell it from a clean import (0)
/// and from a refusal that stored nothing (2).
pub const ROWS_REJECTED: u8 = 4;

/// Refuses a report that would overwrite the file being imported.
pub fn check_report_path(input: &Path, report: &Path) -> anyhow::Result<()> {
    let same = match (std::fs::canonicalize(input), std::fs::canonicalize(report)) {
        (Ok(input), Ok(report)) => input == report,
        _ => input == report,
    };
    if same {
        bail!(
            "--skip-bad {} is the file being imported: name another file for the report of rejected rows",
            report.display()
        );
    }
    Ok(())
}

/// Writes the report of rejected rows to `report`, whole or not at all (a
/// temporary file in the same folder, renamed), readable by its owner only:
/// it holds the rows as they were sent, resident ID numbers included.
pub fn write_report(report: &Path, header: &[String], rejected: &[RejectedRow]) -> anyhow::Result<()> {
    let folder = match report.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let cannot = || format!("cannot write the report of rejected rows {}", report.display());
    let mut file = tempfile::NamedTempFile::new_in(folder).with_context(cannot)?;
    jiuzhu_formats::write_rejected_csv(std::io::BufWriter::new(file.as_file_mut()), header, rejected)
        .with_context(cannot)?;
    file.as_file().sync_all().with_context(cannot)?;
    file.persist(report)
        .map_err(|error| error.error)
        .with_context(cannot)?;
    Ok(())
}

/// Every problem of the rejected rows, in file order, as a refusal lists
/// them (the first [`jiuzhu_formats::MAX_PROBLEMS_REPORTED`], then a count).
pub fn problems_of(rejected: &[RejectedRow]) -> Problems {
    let mut problems = Problems::new();
    for row in rejected {
        for problem in &row.problems {
            problems.push(problem.clone());
        }
    }
    problems
}

/// What `--skip-bad` did, in plain words, for standard output.
pub fn summary(imported: u64, rejected: usize, report: &Path) -> String {
    format!(
        "{imported} {} passed {} checks and {} imported; {rejected} {} {} rejected and not imported: \
         {} in {} with {} reasons.",
        rows(imported),
        if imported == 1 { "its" } else { "their" },
        if imported == 1 { "was" } else { "were" },
        rows(rejected as u64),
        if rejected == 1 { "was" } else { "were" },
        if rejected == 1 { "it is" } else { "they are" },
        report.display(),
        if rejected == 1 { "its" } else { "their" },
    )
}

/// Lists the problems of the rejected rows on standard error, then where
/// they are.
pub fn print_problems(rejected: &[RejectedRow], report: &Path) {
    eprint!("{}", problems_of(rejected));
    eprintln!(
        "These rows were rejected and not imported: they are in {} with their reasons.",
        report.display()
    );
}

fn rows(count: u64) -> &'static str {
    if count == 1 {
        "row"
    } else {
        "rows"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiuzhu_formats::Problem;

    #[test]
    fn the_report_is_written_whole_and_kept_from_other_users() {
        let directory = tempfile::tempdir().unwrap();
        let report = directory.path().join("rejected.csv");
        let rejected = vec![RejectedRow {
            line: 3,
            fields: vec!["x".into()],
            problems: vec![Problem::at("s.csv", 3, "person_id", "is bad")],
        }];
        write_report(&report, &["person_id".to_owned()], &rejected).unwrap();
        assert_eq!(
            std::fs::read_to_string(&report).unwrap(),
            "\u{FEFF}line,column,message,person_id\r\n3,person_id,is bad,x\r\n"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&report).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{mode:o}");
        }
        assert_eq!(
            std::fs::read_dir(directory.path()).unwrap().count(),
            1,
            "a temporary file was left behind"
        );
    }

    #[test]
    fn the_report_may_not_be_the_file_imported() {
        let directory = tempfile::tempdir().unwrap();
        let input = directory.path().join("spells.csv");
        std::fs::write(&input, "x").unwrap();
        let again = directory.path().join(".").join("spells.csv");
        assert!(check_report_path(&input, &again).is_err());
        assert!(check_report_path(&input, &directory.path().join("rejected.csv")).is_ok());
    }

    #[test]
    fn the_summary_counts_rows_in_plain_words() {
        assert_eq!(
            summary(1, 2, Path::new("r.csv")),
            "1 row passed its checks and was imported; 2 rows were rejected and not imported: they are in \
             r.csv with their reasons."
        );
        assert_eq!(
            summary(3, 1, Path::new("r.csv")),
            "3 rows passed their checks and were imported; 1 row was rejected and not imported: it is in \
             r.csv with its reasons."
        );
    }
}
