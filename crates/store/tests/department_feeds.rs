//! Department data sharing, on both backends as the contract suite runs:
//! every test against a fresh SQLite file and a fresh PostgreSQL database
//! (127.0.0.1:5432, or `JIUZHU_TEST_POSTGRES`). In CI (`CI=true`) an
//! unreachable PostgreSQL fails the tests; elsewhere they say plainly that
//! PostgreSQL was skipped.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use jiuzhu_core::{BillAmounts, Fen, Invoice, InvoiceNo};
use jiuzhu_formats::{parse_policy, read_invoices, read_spell_rows};
use jiuzhu_store::{DataKeys, DecisionKind, SharedDecision, SpellFile, SpellImport, Store, StoreError};
use sqlx::Connection as _;

const POLICY: &str = "fixtures/example-policy.toml";
const INVOICES: &str = "crates/cli/tests/data/small/invoices.csv";

/// The bills of the paging test that are reversed.
const REVERSED: [usize; 4] = [0, 15, 30, 45];

/// 民政 reports A and B; 残联 reports C; nobody reports D.
const PERSON_A: &str = "110105196001010017";
const PERSON_B: &str = "110105196001010025";
const PERSON_C: &str = "11010519600101005X";
const PERSON_D: &str = "110105196001010033";

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path)).unwrap()
}

/// A fresh database: a SQLite file, or a PostgreSQL database dropped at
/// the end.
enum Fresh {
    Sqlite {
        _dir: tempfile::TempDir,
        url: String,
    },
    Postgres {
        url: String,
        name: String,
        admin: String,
    },
}

impl Fresh {
    fn url(&self) -> &str {
        match self {
            Fresh::Sqlite { url, .. } | Fresh::Postgres { url, .. } => url,
        }
    }

    async fn drop_database(self) {
        if let Fresh::Postgres { name, admin, .. } = self {
            if let Ok(mut connection) = sqlx::PgConnection::connect(&admin).await {
                let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .execute(&mut connection)
                    .await;
            }
        }
    }
}

async fn fresh_databases(test: &str) -> Vec<Fresh> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("jiuzhu.db").display());
    let mut databases = vec![Fresh::Sqlite { _dir: dir, url }];
    let admin = std::env::var("JIUZHU_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".to_owned());
    match sqlx::PgConnection::connect(&admin).await {
        Ok(mut connection) => {
            let name = format!("jiuzhu_departments_{}_{}", test, std::process::id());
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
            let url = format!("{base}/{name}");
            databases.push(Fresh::Postgres { url, name, admin });
        }
        Err(error) => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("PostgreSQL at {admin} is required in CI and could not be reached: {error}");
            }
            eprintln!("SKIPPED on PostgreSQL ({test}): {admin} could not be reached: {error}");
        }
    }
    databases
}

/// A store with the example policy, A and B reported by 民政 (B's spell
/// corrected once, so that a superseded version exists), C by 残联.
async fn prepared(database: &Fresh) -> Store {
    let store = Store::open(database.url(), DataKeys::from_bytes([7; 32], [9; 32]), 8)
        .await
        .unwrap();
    let policy_text = read(POLICY);
    let policy = parse_policy(POLICY, &policy_text).unwrap();
    store.load_policy(&policy_text, &policy, "admin").await.unwrap();
    let files = [
        (
            "民政",
            format!("person_id,category,valid_from,valid_to\n{PERSON_A},DB,2023-01-01,\n{PERSON_B},ZCX,2024-01-01,\n"),
        ),
        (
            "民政",
            format!("person_id,category,valid_from,valid_to\n{PERSON_B},ZCX,2024-01-01,2024-12-31\n"),
        ),
        (
            "残联",
            format!("person_id,category,valid_from,valid_to\n{PERSON_C},DSR,2024-01-01,\n"),
        ),
    ];
    for (source, text) in files {
        let report = import(&store, source, &text).await.unwrap();
        assert!(report.import_id.is_some());
    }
    store
}

async fn import(store: &Store, source: &str, text: &str) -> Result<SpellImport, StoreError> {
    let policy = parse_policy(POLICY, &read(POLICY)).unwrap();
    let rows = read_spell_rows("spells.csv", text.as_bytes(), Some(&policy)).unwrap();
    let file = SpellFile::new(source, "spells.csv", text.as_bytes(), &rows);
    store.import_spells(&file, "admin").await
}

/// The fixture's bill `number`.
fn invoice(number: &str) -> Invoice {
    let policy = parse_policy(POLICY, &read(POLICY)).unwrap();
    let known: Vec<String> = policy
        .visit_types()
        .iter()
        .map(|(name, _)| name.clone())
        .collect();
    read_invoices(INVOICES, read(INVOICES).as_bytes(), &known)
        .unwrap()
        .into_iter()
        .find(|invoice| invoice.invoice_no.as_str() == number)
        .unwrap()
}

/// A bill like `template` under another number, of 100 yuan in scope.
fn bill_like(template: &Invoice, number: &str) -> Invoice {
    let mut bill = template.clone();
    bill.invoice_no = InvoiceNo::parse(number).unwrap();
    bill.amounts =
        BillAmounts::new(Fen::from_fen(10_000), Fen::ZERO, Fen::from_fen(10_000), Fen::ZERO).unwrap();
    bill
}

/// Every decision `department` can pull, page by page of `limit`.
async fn pull_all(store: &Store, department: &str, limit: u32) -> Vec<SharedDecision> {
    let mut all = Vec::new();
    let mut since = 0;
    loop {
        let page = store
            .decisions_since(department, since, limit, "test")
            .await
            .unwrap();
        assert!(page.decisions.len() <= limit as usize);
        since = page.next_cursor;
        all.extend(page.decisions);
        if !page.has_more {
            return all;
        }
    }
}

#[tokio::test]
async fn a_department_key_opens_its_department_until_revoked_and_no_hospital_route() {
    for database in fresh_databases("keys").await {
        let store = prepared(&database).await;
        let entries = store.verify_audit().await.unwrap().unwrap().entries;
        let civil = store.create_department_key("民政", "admin").await.unwrap();
        let disability = store.create_department_key("残联", "admin").await.unwrap();
        let hospital = store.create_api_key("H001", "admin").await.unwrap();
        assert_eq!(store.verify_audit().await.unwrap().unwrap().entries, entries + 3);
        assert_eq!(
            store.department_for_key(civil.as_str()).await.unwrap().as_deref(),
            Some("民政")
        );
        assert_eq!(
            store
                .department_for_key(disability.as_str())
                .await
                .unwrap()
                .as_deref(),
            Some("残联")
        );
        assert_eq!(store.department_for_key("jz_not-a-key").await.unwrap(), None);
        // Each kind of key opens only its own kind of route.
        assert_eq!(store.department_for_key(hospital.as_str()).await.unwrap(), None);
        assert_eq!(store.hospital_for_key(civil.as_str()).await.unwrap(), None);

        assert_eq!(store.revoke_department_keys("民政", "admin").await.unwrap(), 1);
        assert_eq!(store.department_for_key(civil.as_str()).await.unwrap(), None);
        assert_eq!(
            store
                .department_for_key(disability.as_str())
                .await
                .unwrap()
                .as_deref(),
            Some("残联")
        );
        assert_eq!(store.revoke_department_keys("民政", "admin").await.unwrap(), 0);
        let renewed = store.create_department_key("民政", "admin").await.unwrap();
        assert_eq!(
            store
                .department_for_key(renewed.as_str())
                .await
                .unwrap()
                .as_deref(),
            Some("民政")
        );
        // Created, created, created, revoked, created: each audited.
        assert_eq!(store.verify_audit().await.unwrap().unwrap().entries, entries + 5);
        database.drop_database().await;
    }
}

#[tokio::test]
async fn a_department_pulls_the_decisions_about_its_own_people_only_with_full_ids() {
    for database in fresh_databases("own").await {
        let store = prepared(&database).await;
        let inv002 = invoice("INV002"); // A, H001, outpatient
        let inv003 = invoice("INV003"); // B, 市第一人民医院, inpatient: 350.00
        let inv005 = invoice("INV005"); // D: not eligible
        let inv008 = invoice("INV008"); // C, H003
        for bill in [&inv002, &inv003, &inv005, &inv008] {
            store.settle(bill.hospital.as_str(), bill, "H").await.unwrap();
        }
        store.reverse("H001", &inv002.invoice_no, "H").await.unwrap();

        let entries = store.verify_audit().await.unwrap().unwrap().entries;
        let page = store
            .decisions_since("民政", 0, 500, "department:民政")
            .await
            .unwrap();
        assert!(!page.has_more);
        let seen: Vec<(&str, DecisionKind, &str)> = page
            .decisions
            .iter()
            .map(|decision| {
                (
                    decision.invoice_no.as_str(),
                    decision.kind,
                    decision.person_id.as_str(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("INV002", DecisionKind::Decision, PERSON_A),
                ("INV003", DecisionKind::Decision, PERSON_B),
                ("INV002", DecisionKind::Reversal, PERSON_A),
            ]
        );
        assert_eq!(page.next_cursor, page.decisions[2].id);
        assert!(page.decisions.windows(2).all(|pair| pair[0].id < pair[1].id));
        let b = &page.decisions[1];
        assert_eq!(
            (
                b.hospital.as_str(),
                b.service_date.as_str(),
                b.year,
                b.category.as_deref(),
                b.pool.as_deref(),
                b.policy_version.as_deref(),
            ),
            (
                "市第一人民医院",
                "2024-05-01",
                2024,
                Some("ZCX"),
                Some("inpatient"),
                Some("2024-01-01")
            )
        );
        assert_eq!(
            [
                b.base.as_str(),
                b.deductible_applied.as_str(),
                b.eligible.as_str(),
                b.amount.as_str()
            ],
            ["1500.00", "1000.00", "500.00", "350.00"]
        );
        assert_eq!(b.outcome, "assisted");
        assert!(b.decided_at.ends_with('Z'), "{}", b.decided_at);
        // The reversal carries what it gave back.
        assert_eq!(page.decisions[2].amount, page.decisions[0].amount);
        // One audit entry for the page that disclosed personal data.
        assert_eq!(store.verify_audit().await.unwrap().unwrap().entries, entries + 1);

        let disability = store
            .decisions_since("残联", 0, 500, "department:残联")
            .await
            .unwrap();
        let seen: Vec<(&str, &str)> = disability
            .decisions
            .iter()
            .map(|decision| (decision.invoice_no.as_str(), decision.person_id.as_str()))
            .collect();
        assert_eq!(seen, [("INV008", PERSON_C)]);
        assert!(disability
            .decisions
            .iter()
            .all(|decision| decision.person_id != PERSON_D));

        // Nothing new, or a department that reported nobody: an empty
        // page that keeps the cursor, and no audit entry.
        let entries = store.verify_audit().await.unwrap().unwrap().entries;
        let again = store
            .decisions_since("民政", page.next_cursor, 500, "department:民政")
            .await
            .unwrap();
        assert_eq!(
            (again.decisions.len(), again.next_cursor, again.has_more),
            (0, page.next_cursor, false)
        );
        let nobody = store
            .decisions_since("乡村振兴", 0, 500, "department:乡村振兴")
            .await
            .unwrap();
        assert_eq!(
            (nobody.decisions.len(), nobody.next_cursor, nobody.has_more),
            (0, 0, false)
        );
        assert_eq!(store.verify_audit().await.unwrap().unwrap().entries, entries);
        database.drop_database().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_with_a_small_limit_sees_every_decision_once_while_settlements_go_on() {
    for database in fresh_databases("paging").await {
        let store = Arc::new(prepared(&database).await);
        let templates = [invoice("INV002"), invoice("INV003"), invoice("INV008")];
        // 60 bills of A, B and C in turn, settled four at a time, and four of
        // A's reversed, while 民政 pages through its decisions.
        let writer = {
            let store = store.clone();
            tokio::spawn(async move {
                for round in 0..15 {
                    let mut settling = Vec::new();
                    for slot in 0..4 {
                        let n = round * 4 + slot;
                        let bill = bill_like(&templates[n % 3], &format!("P{n:03}"));
                        let store = store.clone();
                        settling.push(tokio::spawn(async move {
                            store.settle(bill.hospital.as_str(), &bill, "H").await.unwrap();
                            bill
                        }));
                    }
                    for task in settling {
                        let bill = task.await.unwrap();
                        let n: usize = bill.invoice_no.as_str()[1..].parse().unwrap();
                        if REVERSED.contains(&n) {
                            store
                                .reverse(bill.hospital.as_str(), &bill.invoice_no, "H")
                                .await
                                .unwrap();
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(3)).await;
                }
            })
        };
        let mut pulled: Vec<SharedDecision> = Vec::new();
        let mut since = 0;
        let mut pages_while_writing = 0;
        loop {
            let writing = !writer.is_finished();
            let page = store
                .decisions_since("民政", since, 3, "department:民政")
                .await
                .unwrap();
            assert!(page.decisions.len() <= 3);
            if let Some(first) = page.decisions.first() {
                assert!(first.id > since, "a decision before the cursor came again");
            }
            since = page.next_cursor;
            pulled.extend(page.decisions);
            if writing {
                pages_while_writing += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            } else if !page.has_more {
                break;
            }
        }
        writer.await.unwrap();
        assert!(pages_while_writing > 1, "the paging did not overlap the writing");

        // Nothing repeated: ids strictly increase across every page.
        assert!(pulled.windows(2).all(|pair| pair[0].id < pair[1].id));
        // Nothing missed: exactly 民政's people's decisions and reversals.
        let got: BTreeSet<(String, &str)> = pulled
            .iter()
            .map(|decision| (decision.invoice_no.clone(), decision.kind.as_str()))
            .collect();
        let mut expected = BTreeSet::new();
        for n in 0..60usize {
            if n % 3 == 2 {
                continue; // C's, 残联's person
            }
            expected.insert((format!("P{n:03}"), "decision"));
            if REVERSED.contains(&n) {
                expected.insert((format!("P{n:03}"), "reversal"));
            }
        }
        assert_eq!(got, expected);
        assert_eq!(pulled.len(), expected.len());
        let people: HashMap<&str, usize> = pulled.iter().fold(HashMap::new(), |mut counts, decision| {
            *counts.entry(decision.person_id.as_str()).or_default() += 1;
            counts
        });
        assert_eq!(
            people.keys().copied().collect::<BTreeSet<_>>(),
            BTreeSet::from([PERSON_A, PERSON_B])
        );
        // The same walk after the fact, with another page size, agrees.
        let again: Vec<i64> = pull_all(&store, "民政", 7)
            .await
            .iter()
            .map(|decision| decision.id)
            .collect();
        assert_eq!(
            again,
            pulled.iter().map(|decision| decision.id).collect::<Vec<_>>()
        );
        assert!(store.verify_audit().await.unwrap().is_ok());
        database.drop_database().await;
    }
}
