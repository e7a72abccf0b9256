//! The money's path after a decision, the real binary on a real SQLite
//! file: `jiuzhu clear` (a generated district whose spells arrive in two
//! parts, the second late, after the bills were decided by the insurance
//! feed: the clearing of each year must find exactly what `jiuzhu simulate`
//! over all the spells grants beyond what it grants over the first part,
//! and nothing more when run again), the scheduled clearing of `jiuzhu
//! serve`, `jiuzhu audit show` and `jiuzhu disburse`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

mod common;

use common::jiuzhu;

/// Per person-year, the total of a results.csv, and per person-year the
/// amounts of its invoices in canonical order.
type Totals = BTreeMap<(String, String), i64>;
type Amounts = BTreeMap<(String, String), Vec<(String, i64)>>;

fn fen(text: &str) -> i64 {
    let (yuan, cents) = text.split_once('.').unwrap();
    let sign = if yuan.starts_with('-') { -1 } else { 1 };
    sign * (yuan.trim_start_matches('-').parse::<i64>().unwrap() * 100 + cents.parse::<i64>().unwrap())
}

fn yuan(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", fen.abs() / 100, fen.abs() % 100)
}

fn results(path: &Path) -> (Totals, Amounts) {
    let mut totals = Totals::new();
    let mut amounts = Amounts::new();
    for line in std::fs::read_to_string(path).unwrap().lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        if fields[9] == "duplicate" {
            continue;
        }
        let key = (fields[1].to_owned(), fields[2].to_owned());
        *totals.entry(key.clone()).or_default() += fen(fields[8]);
        amounts
            .entry(key)
            .or_default()
            .push((fields[0].to_owned(), fen(fields[8])));
    }
    (totals, amounts)
}

#[test]
fn a_clearing_of_each_year_pays_exactly_what_late_spells_add_and_nothing_the_second_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    jiuzhu(path, &["init"]);
    jiuzhu(
        path,
        &[
            "gen",
            "--people",
            "300",
            "--invoices",
            "3000",
            "--seed",
            "5",
            "--dir",
            "district",
        ],
    );
    let district = path.join("district");
    // The spells of one person in five come late, each person's in one file.
    let spells = std::fs::read_to_string(district.join("spells.csv")).unwrap();
    let mut lines = spells.lines();
    let header = lines.next().unwrap();
    let (mut early, mut late) = (format!("{header}\n"), format!("{header}\n"));
    for line in lines {
        let person = line.split(',').next().unwrap();
        let late_person = person.bytes().map(u64::from).sum::<u64>() % 5 == 0;
        let part = if late_person { &mut late } else { &mut early };
        part.push_str(line);
        part.push('\n');
    }
    std::fs::write(path.join("early.csv"), &early).unwrap();
    std::fs::write(path.join("late.csv"), &late).unwrap();
    assert!(late.lines().count() > 10, "{late}");

    let database = format!("sqlite://{}", path.join("jiuzhu.db").display());
    let db = ["--database", database.as_str()];
    let policy = district.join("policy.toml");
    jiuzhu(
        path,
        &[&["policy", "load", policy.to_str().unwrap()][..], &db].concat(),
    );
    jiuzhu(
        path,
        &[&["import", "spells", "early.csv", "--source", "民政"][..], &db].concat(),
    );
    jiuzhu(
        path,
        &[&["import", "invoices", "district/invoices.csv"][..], &db].concat(),
    );
    jiuzhu(
        path,
        &[&["import", "spells", "late.csv", "--source", "民政"][..], &db].concat(),
    );

    let simulate = |spells: &str, out: &str| {
        jiuzhu(
            path,
            &[
                "simulate",
                "--policy",
                policy.to_str().unwrap(),
                "--spells",
                spells,
                "--invoices",
                "district/invoices.csv",
                "--out",
                out,
            ],
        );
    };
    simulate("early.csv", "granted.csv");
    simulate("district/spells.csv", "owed.csv");
    let (granted, _) = results(&path.join("granted.csv"));
    let (owed, owed_amounts) = results(&path.join("owed.csv"));
    let (_, granted_amounts) = results(&path.join("granted.csv"));
    let years: BTreeSet<String> = owed.keys().map(|(_, year)| year.clone()).collect();
    assert!(years.len() >= 2, "{years:?}");

    let mut top_ups = 0;
    for year in &years {
        let out = format!("report-{year}");
        let printed = jiuzhu(
            path,
            &[&["clear", "--period", year, "--out", &out][..], &db].concat(),
        );
        let mut expected = String::from("person_id,year,granted,recomputed,difference,invoices\n");
        for ((person, row_year), total) in &owed {
            if row_year != year {
                continue;
            }
            let before = granted
                .get(&(person.clone(), row_year.clone()))
                .copied()
                .unwrap_or(0);
            if before == *total {
                continue;
            }
            let key = (person.clone(), row_year.clone());
            let changed: Vec<&str> = owed_amounts[&key]
                .iter()
                .zip(&granted_amounts[&key])
                .filter(|(now, then)| now.1 != then.1)
                .map(|(now, _)| now.0.as_str())
                .collect();
            expected.push_str(&format!(
                "{person},{year},{},{},{},{}\n",
                yuan(before),
                yuan(*total),
                yuan(total - before),
                changed.join(" ")
            ));
            top_ups += usize::from(total > &before);
        }
        let differences = std::fs::read_to_string(path.join(&out).join("differences.csv")).unwrap();
        assert_eq!(differences, expected, "{printed}");
        for file in ["duplicates.csv", "capped.csv", "clearing.xlsx"] {
            assert!(path.join(&out).join(file).is_file(), "{file}");
        }
        let workbook = std::fs::read(path.join(&out).join("clearing.xlsx")).unwrap();
        assert_eq!(&workbook[..2], b"PK");

        // Again: nothing differs.
        let again = format!("again-{year}");
        let printed = jiuzhu(
            path,
            &[&["clear", "--period", year, "--out", &again][..], &db].concat(),
        );
        assert!(printed.contains("Nothing differs"), "{printed}");
        let differences = std::fs::read_to_string(path.join(&again).join("differences.csv")).unwrap();
        assert_eq!(
            differences,
            "person_id,year,granted,recomputed,difference,invoices\n"
        );
    }
    assert!(top_ups > 0, "the late spells should owe something");
    let verified = jiuzhu(path, &[&["audit", "verify"][..], &db].concat());
    assert!(verified.contains("whole"), "{verified}");
}

#[test]
fn a_bad_period_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(common::BINARY)
        .current_dir(dir.path())
        .args([
            "clear",
            "--period",
            "2024-13",
            "--out",
            "r",
            "--database",
            "sqlite://x.db",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("01 to 12"), "{stderr}");
    assert!(!dir.path().join("x.db").exists());
    assert!(!dir.path().join("r").exists());
}

/// The month before the current one in China (UTC+8), as `YYYY-MM`: what a
/// schedule on day 1 at 00:00 has come due for.
fn last_month_in_china() -> String {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 8 * 3600;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let days = (seconds / 86_400) as i64 + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    if month == 1 {
        format!("{:04}-12", year - 1)
    } else {
        format!("{year:04}-{:02}", month - 1)
    }
}

/// Starts `jiuzhu serve` with a clearing schedule that is always due, and
/// returns it once it has logged that the clearing is scheduled.
fn serve_scheduled(dir: &Path, database: &str) -> std::process::Child {
    use std::io::{BufRead as _, BufReader};
    let mut child = std::process::Command::new(common::BINARY)
        .current_dir(dir)
        .env_remove("JIUZHU_DATA_KEY")
        .env("JIUZHU_CLEARING_SCHEDULE", "monthly 1 00:00")
        .env("JIUZHU_CLEARING_REPORT_DIR", "reports")
        .args(["serve", "--listen", "127.0.0.1:0", "--database", database])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut log = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            log.read_line(&mut line).unwrap() > 0,
            "the server stopped before scheduling"
        );
        if line.contains("periodic clearing is scheduled") {
            break;
        }
    }
    // Keep reading, so that the server never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut log, &mut std::io::sink()));
    child
}

async fn clearings(database: &str, period: &str) -> i64 {
    use sqlx::Connection as _;
    let mut connection = sqlx::SqliteConnection::connect(database).await.unwrap();
    sqlx::query_scalar("SELECT COUNT(*) FROM clearings WHERE period = $1")
        .bind(period)
        .fetch_one(&mut connection)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_server_runs_the_scheduled_clearing_once_and_makes_up_a_missed_one_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    jiuzhu(path, &["init"]);
    let database = format!("sqlite://{}", path.join("jiuzhu.db").display());
    let policy = common::repository().join("fixtures/example-policy.toml");
    jiuzhu(
        path,
        &[
            "policy",
            "load",
            policy.to_str().unwrap(),
            "--database",
            &database,
        ],
    );
    let period = last_month_in_china();

    let mut server = serve_scheduled(path, &database);
    let report = path.join("reports").join(&period).join("differences.csv");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !report.is_file() || clearings(&database, &period).await == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no scheduled clearing of {period}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    server.kill().unwrap();
    server.wait().unwrap();

    // Started again, it finds the period cleared and does not clear it twice.
    let mut again = serve_scheduled(path, &database);
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    again.kill().unwrap();
    again.wait().unwrap();
    assert_eq!(clearings(&database, &period).await, 1);
    let verified = jiuzhu(path, &["audit", "verify", "--database", &database]);
    assert!(verified.contains("whole"), "{verified}");
}

#[tokio::test]
async fn audit_show_tells_a_persons_story_and_logs_the_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let database = common::small_store_with_feed(path);
    let shown = jiuzhu(
        path,
        &[
            "audit",
            "show",
            "--person",
            "110105196001010017",
            "--purpose",
            "appeal 42",
            "--database",
            &database,
        ],
    );
    assert!(shown.starts_with("Person 110105********0017: "), "{shown}");
    assert!(!shown.contains("110105196001010017"), "{shown}");
    for expected in [
        "spell DB 2023-01-01 to open, reported by 民政",
        "bill INV001 at H001",
        "bill INV002",
        "capped",
    ] {
        assert!(shown.contains(expected), "{expected}: {shown}");
    }
    let run = |person: &str| {
        std::process::Command::new(common::BINARY)
            .current_dir(path)
            .args(["audit", "show", "--person", person, "--database", &database])
            .output()
            .unwrap()
    };
    assert_eq!(run("110105196001010018").status.code(), Some(2));
    assert_eq!(run("11010519491231002X").status.code(), Some(5));
    // The read and the read of nobody are logged; the refused ID never got that far.
    use sqlx::Connection as _;
    let mut connection = sqlx::SqliteConnection::connect(&database).await.unwrap();
    let (reads, purpose): (i64, Option<String>) = sqlx::query_as(
        "SELECT COUNT(*), MAX(details) FILTER (WHERE subject LIKE '%0017') FROM audit_log WHERE action = 'person.read'",
    )
    .fetch_one(&mut connection)
    .await
    .unwrap();
    assert_eq!(reads, 2);
    assert_eq!(purpose.as_deref(), Some("{\"purpose\":\"appeal 42\"}"));
    let verified = jiuzhu(path, &["audit", "verify", "--database", &database]);
    assert!(verified.contains("whole"), "{verified}");
}

#[test]
fn a_batch_goes_from_maker_to_checker_to_the_bank_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let database = common::small_store_with_feed(path);
    let db = ["--database", database.as_str()];
    for (name, roles) in [
        ("maker", "reviewer,approver"),
        ("checker", "approver"),
        ("clerk", "reviewer"),
    ] {
        jiuzhu(
            path,
            &[&["staff", "add", name, "--roles", roles][..], &db].concat(),
        );
    }
    let as_user =
        |user: &str, args: &[&str]| common::jiuzhu_status(path, &[args, &["--as", user], &db].concat());
    std::fs::write(
        path.join("accounts.csv"),
        "person_id,name,bank,account\n110105196001010017,张三,农业银行,6228 4800 1234 5678\n",
    )
    .unwrap();
    let (_, loaded, _) = as_user("clerk", &["disburse", "accounts", "accounts.csv"]);
    assert!(loaded.contains("1 accounts stored"), "{loaded}");

    let (code, made_text, _) = as_user("maker", &["disburse", "create"]);
    assert_eq!(code, 0, "{made_text}");
    assert!(
        made_text.contains("Made batch 1: 1 lines, 5,250.00"),
        "{made_text}"
    );
    assert!(made_text.contains("3 persons are owed"), "{made_text}");

    let (code, _, error) = as_user("maker", &["disburse", "approve", "1"]);
    assert_eq!(code, 3);
    assert!(error.contains("maker-checker"), "{error}");
    let (code, _, error) = as_user("clerk", &["disburse", "approve", "1"]);
    assert_eq!(code, 3);
    assert!(error.contains("clerk does not have the role approver"), "{error}");
    let (code, _, error) = as_user("nobody", &["disburse", "create"]);
    assert_eq!(code, 3);
    assert!(error.contains("nobody is not a member of staff"), "{error}");
    let (code, _, _) = as_user("checker", &["disburse", "export", "1", "--out", "pay.csv"]);
    assert_eq!(code, 3);
    assert!(!path.join("pay.csv").exists());
    let (code, _, _) = as_user("checker", &["disburse", "approve", "1"]);
    assert_eq!(code, 0);
    let (code, _, error) = as_user("checker", &["disburse", "export", "1", "--out", "pay.csv"]);
    assert_eq!(code, 0, "{error}");
    let file = std::fs::read_to_string(path.join("pay.csv")).unwrap();
    assert_eq!(
        file,
        "batch_id,line_id,person_id,name,account,amount,reference\n\
         1,1,110105196001010017,张三,6228480012345678,5250.00,医疗救助 JZ1-1\n"
    );

    std::fs::write(path.join("bad.csv"), "line_id,status,reason\n2,paid,\n").unwrap();
    let (code, _, error) = as_user("clerk", &["disburse", "return", "1", "bad.csv"]);
    assert_eq!(code, 2);
    assert!(
        error.contains("bad.csv:2: line_id: line 2 is not a line of batch 1"),
        "{error}"
    );
    std::fs::write(path.join("return.csv"), "line_id,status,reason\n1,paid,\n").unwrap();
    let (_, returned, _) = as_user("clerk", &["disburse", "return", "1", "return.csv"]);
    assert!(returned.contains("returned; paid 1 (5,250.00)"), "{returned}");
    let listed = jiuzhu(path, &[&["disburse", "list"][..], &db].concat());
    assert!(
        listed.contains("approved by") || listed.contains("returned"),
        "{listed}"
    );
    let (_, none, _) = as_user("maker", &["disburse", "create"]);
    assert!(none.contains("no batch was made"), "{none}");
    let verified = jiuzhu(path, &[&["audit", "verify"][..], &db].concat());
    assert!(verified.contains("whole"), "{verified}");
}
