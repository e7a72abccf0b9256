//! `jiuzhu import invoices`, the insurance feed (免申即享), as a bureau runs
//! it: the real binary on a real SQLite file or PostgreSQL database. A
//! generated scenario imported as a feed is decided exactly as `jiuzhu
//! simulate` decides it, alone or after real-time settlements; importing it
//! again changes nothing; a bad or conflicting file stores nothing. In CI
//! (`CI=true`) PostgreSQL must be reachable; elsewhere its test says plainly
//! that it skipped.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use jiuzhu_core::{Batch, Fen};
use sqlx::{Connection as _, Row as _};

mod common;

use common::{generated_invoices, jiuzhu, load_policy_and_spells, repository, serve, BINARY};

/// Runs `jiuzhu ARGS` in `dir`, whatever its exit status.
fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(BINARY)
        .current_dir(dir)
        .env_remove("JIUZHU_DATA_KEY")
        .env_remove("JIUZHU_DATABASE")
        .args(args)
        .output()
        .unwrap()
}

/// A bureau's folder with a generated scenario and simulate's results.
fn scenario(dir: &Path) {
    jiuzhu(dir, &["init"]);
    jiuzhu(
        dir,
        &[
            "gen",
            "--people",
            "150",
            "--invoices",
            "1200",
            "--seed",
            "11",
            "--dir",
            "data",
        ],
    );
    jiuzhu(
        dir,
        &[
            "simulate",
            "--policy",
            "data/policy.toml",
            "--spells",
            "data/spells.csv",
            "--invoices",
            "data/invoices.csv",
            "--out",
            "data/results.csv",
        ],
    );
}

/// simulate's results.csv rows: `invoice_no` → the other columns, for
/// every row but duplicates; and the invoice numbers of the duplicates,
/// sorted.
fn simulated(dir: &Path) -> (BTreeMap<String, Vec<String>>, Vec<String>) {
    let results = std::fs::read_to_string(dir.join("data/results.csv")).unwrap();
    let mut rows = BTreeMap::new();
    let mut duplicates = Vec::new();
    for line in results.lines().skip(1) {
        let fields: Vec<String> = line.split(',').map(str::to_owned).collect();
        if fields[9] == "duplicate" {
            duplicates.push(fields[0].clone());
            continue;
        }
        assert!(rows.insert(fields[0].clone(), fields).is_none());
    }
    duplicates.sort();
    (rows, duplicates)
}

/// The invoice numbers of the duplicates the report lists
/// (`FILE:LINE: INVOICE_NO repeats line N`), sorted.
fn listed_duplicates(report: &str) -> Vec<String> {
    let mut numbers: Vec<String> = report
        .lines()
        .filter(|line| line.contains(" repeats line "))
        .map(|line| {
            let before = line.split(" repeats line ").next().unwrap();
            before.rsplit(": ").next().unwrap().to_owned()
        })
        .collect();
    numbers.sort();
    numbers
}

/// Every stored decision as a results.csv row (but `person_id`, which
/// the store keeps encrypted: empty), with the bill's channel.
async fn stored(database: &str) -> BTreeMap<String, (Vec<String>, String)> {
    const DECISIONS: &str = "SELECT d.invoice_no, d.year, d.category, d.pool, d.base, d.deductible_applied, \
         d.eligible, d.amount, d.outcome, d.policy_version, i.channel FROM decisions d \
         JOIN invoices i ON i.invoice_no = d.invoice_no WHERE d.kind = 'decision'";
    macro_rules! read {
        ($connection:expr) => {{
            let mut connection = $connection;
            let rows = sqlx::query(DECISIONS).fetch_all(&mut connection).await.unwrap();
            rows.into_iter()
                .map(|row| {
                    let money = |column: &str| Fen::from_fen(row.get::<i64, _>(column)).to_string();
                    let text = |column: &str| row.get::<Option<String>, _>(column).unwrap_or_default();
                    let invoice_no: String = row.get("invoice_no");
                    let fields = vec![
                        invoice_no.clone(),
                        String::new(),
                        row.get::<i64, _>("year").to_string(),
                        text("category"),
                        text("pool"),
                        money("base"),
                        money("deductible_applied"),
                        money("eligible"),
                        money("amount"),
                        row.get("outcome"),
                        text("policy_version"),
                    ];
                    (invoice_no, (fields, row.get("channel")))
                })
                .collect()
        }};
    }
    if database.starts_with("sqlite://") {
        read!(sqlx::SqliteConnection::connect(database).await.unwrap())
    } else {
        read!(sqlx::PgConnection::connect(database).await.unwrap())
    }
}

/// The number on the report's line that starts with `label`.
fn reported(report: &str, label: &str) -> u64 {
    let line = report
        .lines()
        .find(|line| line.trim_start().starts_with(label))
        .unwrap_or_else(|| panic!("no {label:?} in {report}"));
    line.trim_start()[label.len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .replace(',', "")
        .parse()
        .unwrap()
}

/// The report's amount assisted.
fn reported_amount(report: &str) -> Fen {
    let label = "amount assisted";
    let line = report
        .lines()
        .find(|line| line.trim_start().starts_with(label))
        .unwrap_or_else(|| panic!("no amount in {report}"));
    let yuan = line.trim_start()[label.len()..]
        .split_whitespace()
        .next()
        .unwrap();
    Fen::parse_yuan(&yuan.replace(',', "")).unwrap()
}

/// Imports the scenario's invoices into `database` (policy and spells
/// first) and checks every decision against simulate's; then imports them
/// again and checks that nothing changed.
async fn the_feed_agrees_with_simulate(dir: &Path, database: &str) {
    load_policy_and_spells(dir, database, "data/policy.toml", "data/spells.csv");
    let output = run(
        dir,
        &[
            "import",
            "invoices",
            "data/invoices.csv",
            "--chunk",
            "100",
            "--database",
            database,
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // No progress bar when standard error is not a terminal.
    assert_eq!(String::from_utf8_lossy(&output.stderr), "");
    let report = String::from_utf8(output.stdout).unwrap();

    let (expected, duplicates) = simulated(dir);
    assert!(expected.len() > 1000 && !duplicates.is_empty(), "{duplicates:?}");
    assert_eq!(reported(&report, "rows read"), 1200, "{report}");
    assert_eq!(
        reported(&report, "decided now"),
        expected.len() as u64,
        "{report}"
    );
    // simulate's duplicate rows are the lines the feed reports as duplicates.
    assert_eq!(
        reported(&report, "duplicates"),
        duplicates.len() as u64,
        "{report}"
    );
    assert_eq!(listed_duplicates(&report), duplicates, "{report}");
    assert_eq!(reported(&report, "already decided"), 0, "{report}");
    let granted: i64 = expected
        .values()
        .map(|row| Fen::parse_yuan(&row[8]).unwrap().fen())
        .sum();
    assert_eq!(reported_amount(&report), Fen::from_fen(granted), "{report}");
    let decisions = stored(database).await;
    assert_eq!(decisions.len(), expected.len());
    for (invoice_no, row) in &expected {
        let (found, channel) = &decisions[invoice_no];
        let mut row = row.clone();
        row[1] = String::new();
        assert_eq!(found, &row, "{invoice_no} in {database}");
        assert_eq!(channel, "feed");
    }

    // The same feed again: every bill already decided, nothing changes.
    let again = jiuzhu(
        dir,
        &["import", "invoices", "data/invoices.csv", "--database", database],
    );
    assert_eq!(reported(&again, "decided now"), 0, "{again}");
    assert_eq!(
        reported(&again, "already decided"),
        expected.len() as u64,
        "{again}"
    );
    assert_eq!(listed_duplicates(&again), duplicates, "{again}");
    assert_eq!(stored(database).await, decisions);
    let verified = jiuzhu(dir, &["audit", "verify", "--database", database]);
    assert!(verified.contains("The audit chain is whole"), "{verified}");
}

#[tokio::test]
async fn a_generated_feed_is_decided_as_simulate_decides_it_and_a_second_import_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    scenario(path);
    let database = format!("sqlite://{}", path.join("jiuzhu.db").display());
    the_feed_agrees_with_simulate(path, &database).await;
}

#[tokio::test]
async fn on_postgresql_a_generated_feed_is_decided_as_simulate_decides_it() {
    let admin = std::env::var("JIUZHU_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".to_owned());
    let mut connection = match sqlx::PgConnection::connect(&admin).await {
        Ok(connection) => connection,
        Err(error) => {
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "PostgreSQL is required in CI: {error}"
            );
            eprintln!("SKIPPED: PostgreSQL at {admin} could not be reached: {error}");
            return;
        }
    };
    let name = format!("jiuzhu_feed_{}", std::process::id());
    for sql in [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut connection)
            .await
            .unwrap();
    }
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(base, _)| base);
    let database = format!("{base}/{name}");
    let dir = tempfile::tempdir().unwrap();
    scenario(dir.path());
    the_feed_agrees_with_simulate(dir.path(), &database).await;
    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut connection)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_feed_after_real_time_settlements_counts_their_grants_and_agrees_with_simulate() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    scenario(path);
    let database = format!("sqlite://{}", path.join("jiuzhu.db").display());
    load_policy_and_spells(path, &database, "data/policy.toml", "data/spells.csv");
    let (expected, duplicates) = simulated(path);

    // The first half of the bills in canonical order are settled in real
    // time, at their hospitals' counters; the feed then reports them all.
    let (known, invoices) = generated_invoices(path);
    let records =
        jiuzhu_formats::read_batch_invoices_file(&path.join("data/invoices.csv"), "i", &known, &|_| {})
            .unwrap();
    let batch = Batch::new(records, known);
    let mut keys = BTreeMap::new();
    let server = serve(path, &database, None);
    let client = reqwest::Client::new();
    let mut settled = 0u64;
    for (index, record) in batch.invoices().iter().enumerate().take(600) {
        if batch.is_duplicate(index) {
            continue;
        }
        let invoice = &invoices[record.position as usize];
        let hospital = invoice.hospital.as_str();
        if !keys.contains_key(hospital) {
            let created = jiuzhu(
                path,
                &[
                    "apikey",
                    "create",
                    "--hospital",
                    hospital,
                    "--database",
                    &database,
                ],
            );
            keys.insert(hospital.to_owned(), created.lines().last().unwrap().to_owned());
        }
        let body: serde_json::Value =
            serde_json::from_str(&jiuzhu_formats::json::canonical_request(invoice)).unwrap();
        let answer = client
            .post(format!("{}/api/v1/settlements", server.base))
            .bearer_auth(&keys[hospital])
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 200);
        settled += 1;
    }
    drop(server);

    let report = jiuzhu(
        path,
        &["import", "invoices", "data/invoices.csv", "--database", &database],
    );
    assert_eq!(reported(&report, "already decided"), settled, "{report}");
    assert_eq!(
        reported(&report, "decided now"),
        expected.len() as u64 - settled,
        "{report}"
    );
    assert_eq!(listed_duplicates(&report), duplicates, "{report}");
    let decisions = stored(&database).await;
    assert_eq!(decisions.len(), expected.len());
    let mut channels: BTreeMap<&str, u64> = BTreeMap::new();
    for (invoice_no, row) in &expected {
        let (found, channel) = &decisions[invoice_no];
        let mut row = row.clone();
        row[1] = String::new();
        assert_eq!(found, &row, "{invoice_no}");
        *channels.entry(channel).or_default() += 1;
    }
    assert_eq!(channels["realtime"], settled);
    // Some person-years were capped, on either side of the split.
    assert!(expected.values().any(|row| row[9] == "capped"));
    let verified = jiuzhu(path, &["audit", "verify", "--database", &database]);
    assert!(verified.contains("The audit chain is whole"), "{verified}");
}

const HEADER: &str = "invoice_no,person_id,hospital,visit_type,service_date,settled_at,total,fund_paid,\
                      in_scope_self_pay,out_of_scope_self_pay\n";

/// A bureau with the example policy and the small fixture's spells.
fn small_bureau(dir: &Path) -> String {
    jiuzhu(dir, &["init"]);
    let database = format!("sqlite://{}", dir.join("jiuzhu.db").display());
    let repository = repository();
    load_policy_and_spells(
        dir,
        &database,
        &repository
            .join("fixtures/example-policy.toml")
            .display()
            .to_string(),
        &repository
            .join("crates/cli/tests/data/small/spells.csv")
            .display()
            .to_string(),
    );
    database
}

#[tokio::test]
async fn a_file_with_bad_rows_is_refused_whole_every_problem_named_and_nothing_stored() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let database = small_bureau(path);
    std::fs::write(
        path.join("feed.csv"),
        format!(
            "{HEADER}\
             F001,110105196001010017,H009,outpatient,2024-06-01,2024-06-02T10:00:00+08:00,100,0,100,0\n\
             F002,110105196001010017,H009,dental,2024-06-01,2024-06-02T10:00:00+08:00,100,0,100,0\n\
             F003,110105196001010017,H009,outpatient,2024-06-01,2024-06-02T10:00:00+08:00,100,0,99,0\n"
        ),
    )
    .unwrap();
    let output = run(path, &["import", "invoices", "feed.csv", "--database", &database]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "");
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "feed.csv:3: visit_type: \"dental\" is not a known visit type; the known ones are outpatient, \
         emergency, chronic, inpatient\n\
         feed.csv:4: total: fund_paid 0.00 + in_scope_self_pay 99.00 + out_of_scope_self_pay 0.00 = 99.00, \
         but total is 100.00\n\
         Nothing was imported: correct the file and import it again.\n"
    );
    assert!(stored(&database).await.is_empty());
}

#[tokio::test]
async fn a_conflicting_file_is_refused_whole_every_conflict_named_with_its_line_and_nothing_stored() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let database = small_bureau(path);
    let fixture = repository().join("crates/cli/tests/data/small/invoices.csv");
    jiuzhu(
        path,
        &[
            "import",
            "invoices",
            &fixture.display().to_string(),
            "--database",
            &database,
        ],
    );
    let before = stored(&database).await;
    std::fs::write(
        path.join("feed.csv"),
        format!(
            "{HEADER}\
             INV003,110105196001010025,市第一人民医院,inpatient,2024-05-01,2024-05-02T08:00:00Z,3000,1000,1400,600\n\
             F001,110105196001010017,H009,outpatient,2024-06-01,2024-06-02T10:00:00+08:00,100,0,100,0\n\
             F001,110105196001010017,H009,outpatient,2024-06-01,2024-06-03T10:00:00+08:00,120,0,120,0\n"
        ),
    )
    .unwrap();
    let output = run(path, &["import", "invoices", "feed.csv", "--database", &database]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with(
            "feed.csv:2: invoice_no: INV003 was already settled with different amounts or details: \
             in_scope_self_pay 1400.00 here, 1500.00 stored; out_of_scope_self_pay 600.00 here, 500.00 stored\n\
             feed.csv:4: invoice_no: F001 is also on line 3 with a different bill: total 120.00 here, \
             100.00 there; in_scope_self_pay 120.00 here, 100.00 there\n\
             Nothing was imported"
        ),
        "{stderr}"
    );
    assert_eq!(stored(&database).await, before);
}
