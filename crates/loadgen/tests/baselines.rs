//! The baselines of the benchmarks, run as the scripts run them.

use std::path::Path;
use std::process::{Command, Output};

fn loadgen(arguments: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jiuzhu-loadgen"))
        .args(arguments)
        .output()
        .expect("jiuzhu-loadgen runs")
}

fn url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

#[test]
fn the_durable_write_baseline_commits_each_write_and_reports_it() {
    let folder = tempfile::tempdir().unwrap();
    let database = folder.path().join("baseline.db");
    let output = loadgen(&["baseline", "--database", &url(&database), "--writes", "25"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result = stdout
        .lines()
        .find(|line| line.starts_with("RESULT "))
        .unwrap_or_else(|| panic!("no RESULT line in {stdout}"));
    assert!(result.starts_with("RESULT writes=25 "), "{result}");
    assert!(database.exists());

    // A file that exists is never written over.
    let again = loadgen(&["baseline", "--database", &url(&database), "--writes", "1"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"));
}

#[test]
fn the_bulk_baseline_wants_a_store_with_the_rows_of_an_import() {
    let folder = tempfile::tempdir().unwrap();
    let empty = folder.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    for kind in ["invoices", "spells"] {
        let copy = folder.path().join(format!("{kind}.db"));
        let output = loadgen(&[
            "bulk-baseline",
            "--kind",
            kind,
            "--from",
            &url(&empty),
            "--database",
            &url(&copy),
        ]);
        assert!(!output.status.success(), "{kind}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("import into it first"), "{kind}: {stderr}");
    }
}
