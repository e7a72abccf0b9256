//! `jiuzhu simulate`, run as a user runs it: the real binary on real files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BINARY: &str = env!("CARGO_BIN_EXE_jiuzhu");

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/small")
        .join(name);
    std::fs::read_to_string(path).unwrap()
}

/// A folder holding policy.toml, spells.csv and invoices.csv (the small
/// fixture, the example policy), ready to be broken by a test.
struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new() -> Case {
        let dir = tempfile::tempdir().unwrap();
        let policy = std::fs::read_to_string(repository_root().join("fixtures/example-policy.toml")).unwrap();
        std::fs::write(dir.path().join("policy.toml"), policy).unwrap();
        std::fs::write(dir.path().join("spells.csv"), fixture("spells.csv")).unwrap();
        std::fs::write(dir.path().join("invoices.csv"), fixture("invoices.csv")).unwrap();
        Case { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, contents: impl AsRef<[u8]>) {
        std::fs::write(self.path(name), contents).unwrap();
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap()
    }

    /// Replaces `from` by `to` in a file; the text must be there.
    fn edit(&self, name: &str, from: &str, to: &str) {
        let text = self.read(name);
        assert!(text.contains(from), "{name} has no {from:?}");
        self.write(name, text.replacen(from, to, 1));
    }

    fn simulate(&self, extra: &[&str]) -> Output {
        Command::new(BINARY)
            .current_dir(self.dir.path())
            .args([
                "simulate",
                "--policy",
                "policy.toml",
                "--spells",
                "spells.csv",
                "--invoices",
                "invoices.csv",
                "--out",
                "results.csv",
            ])
            .args(extra)
            .output()
            .unwrap()
    }

    /// Runs simulate expecting bad input: exit status 2, no results file;
    /// returns standard error.
    fn refused(&self) -> String {
        let output = self.simulate(&[]);
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
        assert!(!self.path("results.csv").exists(), "a results file was written");
        let leftovers: Vec<_> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
        stderr
    }
}

#[test]
fn the_small_fixture_gives_the_results_worked_out_by_hand() {
    let case = Case::new();
    let output = case.simulate(&[]);
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(case.read("results.csv"), fixture("expected.csv"));
    // Standard error is not a terminal here: no progress bar is drawn.
    assert_eq!(String::from_utf8_lossy(&output.stderr), "");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains("Simulated 9 invoices"), "{stdout}");
    // DB inpatient: one person, one invoice, base 2,500.00, amount 2,250.00, none capped.
    assert!(
        stdout
            .lines()
            .any(|line| line.split_whitespace().collect::<Vec<_>>()
                == ["DB", "inpatient", "1", "1", "2,500.00", "2,250.00", "0"]),
        "{stdout}"
    );
    assert!(
        stdout.contains("assisted 4, capped 1, duplicate 1, not_eligible 1, no_rule 2"),
        "{stdout}"
    );
}

#[cfg(unix)]
#[test]
fn the_results_file_gets_the_permissions_of_any_new_file() {
    use std::os::unix::fs::PermissionsExt;
    let case = Case::new();
    let output = case.simulate(&[]);
    assert!(output.status.success());
    case.write("plain.txt", "x");
    let mode = |name: &str| std::fs::metadata(case.path(name)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("results.csv"), mode("plain.txt"));
}

#[test]
fn the_example_policy_loads_and_simulates_on_generated_data() {
    let case = Case::new();
    let generated = Command::new(BINARY)
        .args([
            "gen",
            "--people",
            "300",
            "--invoices",
            "3000",
            "--seed",
            "7",
            "--dir",
        ])
        .arg(case.path("generated"))
        .output()
        .unwrap();
    assert!(
        generated.status.success(),
        "{}",
        String::from_utf8_lossy(&generated.stderr)
    );
    let output = Command::new(BINARY)
        .current_dir(case.path("generated"))
        .args(["simulate", "--policy"])
        .arg(repository_root().join("fixtures/example-policy.toml"))
        .args([
            "--spells",
            "spells.csv",
            "--invoices",
            "invoices.csv",
            "--out",
            "results.csv",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let results = std::fs::read_to_string(case.path("generated/results.csv")).unwrap();
    assert_eq!(results.lines().count(), 3001);
    for outcome in ["assisted", "duplicate", "not_eligible"] {
        assert!(
            results.contains(&format!(",{outcome},")),
            "no {outcome} in generated results"
        );
    }
}

#[test]
fn a_bad_resident_id_is_refused_with_its_line_and_column() {
    let case = Case::new();
    case.edit(
        "invoices.csv",
        "INV002,110105196001010017",
        "INV002,110105196001010018",
    );
    let stderr = case.refused();
    assert!(stderr.contains("invoices.csv:3: person_id: "), "{stderr}");
}

#[test]
fn every_problem_of_every_file_is_listed() {
    let case = Case::new();
    case.edit(
        "invoices.csv",
        "2024-04-01,2024-04-01T09",
        "2024-02-30,2024-04-01T09",
    );
    case.edit("invoices.csv", "200,100,80,20", "200,100,80,21");
    case.edit("spells.csv", "110105196001010041,TK", "110105196001010041,XX");
    case.edit(
        "spells.csv",
        "ZCX,2024-01-01,2024-12-31",
        "ZCX,2024-01-01,2023-12-31",
    );
    let stderr = case.refused();
    for expected in [
        "invoices.csv:3: service_date: ",
        "invoices.csv:5: ",
        "spells.csv:4: category: ",
        "spells.csv:3: valid_to: ",
    ] {
        assert!(stderr.contains(expected), "missing {expected:?} in {stderr}");
    }
}

#[test]
fn a_missing_column_is_named() {
    let case = Case::new();
    let text = case
        .read("invoices.csv")
        .replacen("fund_paid,", "paid_by_fund,", 1);
    case.write("invoices.csv", text);
    let stderr = case.refused();
    assert!(
        stderr.contains("invoices.csv:1") && stderr.contains("fund_paid"),
        "{stderr}"
    );
}

#[test]
fn a_record_with_too_few_fields_is_refused() {
    let case = Case::new();
    case.edit("invoices.csv", ",0.06,0,0.05,0.01,\n", ",0.06,0,0.05\n");
    let stderr = case.refused();
    assert!(stderr.contains("invoices.csv:9: "), "{stderr}");
}

#[test]
fn a_visit_type_the_policy_does_not_know_is_refused() {
    let case = Case::new();
    case.edit("invoices.csv", "H002,outpatient", "H002,dental");
    let stderr = case.refused();
    assert!(stderr.contains("invoices.csv:7: visit_type: "), "{stderr}");
}

#[test]
fn an_invalid_policy_is_refused_with_the_line_of_the_key() {
    let case = Case::new();
    let policy = case.read("policy.toml");
    let line = policy
        .lines()
        .position(|line| line.contains("ratio = \"0.9\""))
        .unwrap()
        + 1;
    case.write(
        "policy.toml",
        policy.replacen("ratio = \"0.9\"", "ratio = \"1.5\"", 1),
    );
    let stderr = case.refused();
    assert!(
        stderr.contains(&format!("policy.toml:{line}: ratio: ")),
        "{stderr}"
    );
}

#[test]
fn with_an_invalid_policy_the_other_files_are_still_checked_but_not_against_it() {
    let case = Case::new();
    let policy = case.read("policy.toml");
    case.write(
        "policy.toml",
        policy.replacen("ratio = \"0.9\"", "ratio = \"1.5\"", 1),
    );
    case.edit(
        "invoices.csv",
        "INV002,110105196001010017",
        "INV002,110105196001010018",
    );
    let stderr = case.refused();
    assert!(stderr.contains("policy.toml:"), "{stderr}");
    assert!(stderr.contains("invoices.csv:3: person_id: "), "{stderr}");
    // Neither visit types nor categories are judged against a policy that did not load.
    assert!(!stderr.contains("visit_type"), "{stderr}");
    assert!(!stderr.contains("category"), "{stderr}");
}

#[test]
fn an_empty_file_is_refused() {
    let case = Case::new();
    case.write("invoices.csv", "");
    let stderr = case.refused();
    assert!(stderr.contains("invoices.csv"), "{stderr}");
}

#[test]
fn binary_garbage_is_refused() {
    let case = Case::new();
    let garbage: Vec<u8> = (0..4096u32)
        .map(|n| (n.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    case.write("spells.csv", garbage);
    let stderr = case.refused();
    assert!(stderr.contains("spells.csv"), "{stderr}");
}

#[test]
fn a_missing_input_file_is_refused_by_name() {
    let case = Case::new();
    std::fs::remove_file(case.path("spells.csv")).unwrap();
    let stderr = case.refused();
    assert!(stderr.contains("spells.csv"), "{stderr}");
}

#[test]
fn many_problems_are_capped_with_a_count_of_the_rest() {
    let case = Case::new();
    let mut text = String::from(
        "invoice_no,person_id,hospital,visit_type,service_date,settled_at,total,fund_paid,in_scope_self_pay,out_of_scope_self_pay\n",
    );
    for n in 0..250 {
        text.push_str(&format!(
            "BAD{n},not-an-id,H1,inpatient,2024-01-01,2024-01-01T00:00:00Z,1,0,1,0\n"
        ));
    }
    case.write("invoices.csv", text);
    let stderr = case.refused();
    let listed = stderr
        .lines()
        .filter(|line| line.starts_with("invoices.csv:"))
        .count();
    assert_eq!(listed, 100, "{stderr}");
    assert!(stderr.contains("… and 150 more problems"), "{stderr}");
}

#[test]
fn an_existing_results_file_is_left_alone_when_the_input_is_refused() {
    let case = Case::new();
    case.write("results.csv", "earlier results\n");
    case.edit(
        "invoices.csv",
        "INV002,110105196001010017",
        "INV002,110105196001010018",
    );
    let output = case.simulate(&[]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(case.read("results.csv"), "earlier results\n");
}

#[test]
fn a_gbk_encoded_file_reads_like_its_utf8_original() {
    let case = Case::new();
    let spells = case.read("spells.csv");
    let (gbk, _, unmappable) = encoding_rs::GBK.encode(&spells);
    assert!(!unmappable);
    assert!(
        std::str::from_utf8(&gbk).is_err(),
        "the fixture must have Chinese text"
    );
    case.write("spells.csv", gbk.as_ref());
    let output = case.simulate(&[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(case.read("results.csv"), fixture("expected.csv"));
}

#[test]
fn a_utf8_bom_is_accepted() {
    let case = Case::new();
    let invoices = format!("\u{feff}{}", case.read("invoices.csv"));
    case.write("invoices.csv", invoices);
    let output = case.simulate(&[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(case.read("results.csv"), fixture("expected.csv"));
}

#[test]
fn a_missing_output_folder_is_refused_before_any_work() {
    let case = Case::new();
    let output = Command::new(BINARY)
        .current_dir(case.dir.path())
        .args([
            "simulate",
            "--policy",
            "policy.toml",
            "--spells",
            "spells.csv",
            "--invoices",
            "invoices.csv",
        ])
        .args(["--out", "nowhere/results.csv"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("nowhere"));
}

#[test]
fn compare_prints_what_a_second_policy_would_cost_per_category() {
    let case = Case::new();
    // DB inpatient from 90% to 100% in 2024: INV001 (base 2,500) gains 250.00.
    let policy = case.read("policy.toml");
    let db_2024 = policy.find("category = \"DB\"").unwrap();
    let ratio_at = db_2024 + policy[db_2024..].find("ratio = \"0.9\"").unwrap();
    let mut proposed = policy.clone();
    proposed.replace_range(ratio_at..ratio_at + "ratio = \"0.9\"".len(), "ratio = \"1\"");
    case.write("proposed.toml", proposed);
    let output = case.simulate(&["--compare", "proposed.toml"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let db = stdout
        .lines()
        .skip_while(|line| !line.starts_with("What-if"))
        .find(|line| line.starts_with("DB "))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert_eq!(
        db.split_whitespace().collect::<Vec<_>>(),
        ["DB", "3", "5,320.00", "3", "5,570.00", "250.00"]
    );
    // The results file is the first policy's.
    assert_eq!(case.read("results.csv"), fixture("expected.csv"));
}

#[test]
fn explain_shows_each_step_of_a_decision() {
    let case = Case::new();
    let output = case.simulate(&["--explain", "INV003", "--explain", "INV001", "--explain", "NOPE"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    for expected in [
        "Bill INV003 of 110105********0025, record 3 of the invoices, served 2024-05-01, settled 2024-05-02T08:00:00Z:",
        "  Category ZCX 因病支出型贫困家庭成员 under policy version 2024-01-01, pool inpatient.",
        "  Base (in-scope self-pay) 1500.00; of the year's deductible of 1000.00, 1000.00 is taken from this bill; eligible 500.00.",
        "  500.00 × 70% = 350.00; before caps 350.00.",
        "  Annual cap 130000.00 over all pools: 130000.00 left before this bill.",
        "  Paid 350.00.",
        "Bill INV001 of 110105********0017, record 6 of the invoices, served 2024-03-01, settled 2024-03-06T10:00:00+08:00:",
        "  Duplicate: an earlier bill in canonical order has the same number, so this one pays nothing.",
        "Bill NOPE: no bill with this number is in the invoices.",
    ] {
        assert!(stdout.lines().any(|line| line == expected), "missing {expected:?} in\n{stdout}");
    }
}

#[test]
fn golden_cases_worked_out_by_hand_agree_to_the_fen() {
    let cases = repository_root().join("tests/reference/cases");
    let mut checked = 0;
    for entry in std::fs::read_dir(&cases).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.join("expected.csv").exists() {
            continue;
        }
        let out = tempfile::tempdir().unwrap();
        let output = Command::new(BINARY)
            .arg("simulate")
            .arg("--policy")
            .arg(dir.join("policy.toml"))
            .arg("--spells")
            .arg(dir.join("spells.csv"))
            .arg("--invoices")
            .arg(dir.join("invoices.csv"))
            .arg("--out")
            .arg(out.path().join("results.csv"))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}: {}",
            dir.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        let expected = std::fs::read_to_string(dir.join("expected.csv")).unwrap();
        let actual = std::fs::read_to_string(out.path().join("results.csv")).unwrap();
        assert_eq!(actual, expected, "case {}", dir.display());
        checked += 1;
    }
    assert!(
        checked >= 8,
        "only {checked} golden cases found in {}",
        cases.display()
    );
}
