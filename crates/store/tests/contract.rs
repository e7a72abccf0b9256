//! One contract, both backends: every test runs against a fresh SQLite
//! file and a fresh PostgreSQL database (127.0.0.1:5432, or
//! `JIUZHU_TEST_POSTGRES`). In CI (`CI=true`) an unreachable PostgreSQL
//! fails the tests; elsewhere they say plainly that PostgreSQL was skipped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jiuzhu_core::{Batch, Fen, Invoice, InvoiceNo, Outcome, Policy, SpellBook};
use jiuzhu_formats::{parse_policy, read_batch_invoices, read_invoices, read_spells};
use jiuzhu_store::{DataKeys, SettleError, Store};
use sqlx::Connection as _;

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repository().join(path)).unwrap()
}

const POLICY: &str = "fixtures/example-policy.toml";
const SPELLS: &str = "crates/cli/tests/data/small/spells.csv";
const INVOICES: &str = "crates/cli/tests/data/small/invoices.csv";

/// A fresh database of each kind that can be had, with a way to reach it
/// behind the store's back (to tamper with it).
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

    async fn execute(&self, sql: &'static str) {
        match self {
            Fresh::Sqlite { url, .. } => {
                let mut connection = sqlx::SqliteConnection::connect(url).await.unwrap();
                sqlx::raw_sql(sql).execute(&mut connection).await.unwrap();
            }
            Fresh::Postgres { url, .. } => {
                let mut connection = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::raw_sql(sql).execute(&mut connection).await.unwrap();
            }
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
            let name = format!("jiuzhu_{}_{}", test, std::process::id());
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

fn keys() -> DataKeys {
    DataKeys::from_bytes([7; 32], [9; 32])
}

/// A store with the example policy, the small fixture's spells and an API
/// key for each hospital of the fixture.
async fn prepared(database: &Fresh) -> (Store, BTreeMap<String, String>) {
    let store = Store::open(database.url(), keys(), 8).await.unwrap();
    let policy = parse_policy(POLICY, &read(POLICY)).unwrap();
    assert!(
        store
            .load_policy(&read(POLICY), &policy, "admin")
            .await
            .unwrap()
            .fresh
    );
    let spells = read_spells(SPELLS, read(SPELLS).as_bytes(), Some(&policy)).unwrap();
    let imported = store.import_spells(&spells, "民政", "admin").await.unwrap();
    assert_eq!((imported.added, imported.new_persons), (5, 4));
    let mut keys = BTreeMap::new();
    for hospital in ["H001", "H002", "H003", "市第一人民医院"] {
        let key = store.create_api_key(hospital, "admin").await.unwrap();
        keys.insert(hospital.to_owned(), key.into_string());
    }
    (store, keys)
}

fn invoices() -> Vec<Invoice> {
    let policy = parse_policy(POLICY, &read(POLICY)).unwrap();
    let known: Vec<String> = policy
        .visit_types()
        .iter()
        .map(|(name, _)| name.clone())
        .collect();
    read_invoices(INVOICES, read(INVOICES).as_bytes(), &known).unwrap()
}

fn invoice(number: &str) -> Invoice {
    invoices()
        .into_iter()
        .find(|invoice| invoice.invoice_no.as_str() == number)
        .unwrap()
}

#[tokio::test]
async fn settling_bills_one_by_one_in_canonical_order_agrees_with_simulate() {
    for database in fresh_databases("agrees").await {
        let (store, _) = prepared(&database).await;
        let policy = parse_policy(POLICY, &read(POLICY)).unwrap();
        let known: Vec<String> = policy
            .visit_types()
            .iter()
            .map(|(name, _)| name.clone())
            .collect();
        let records = read_batch_invoices(INVOICES, read(INVOICES).as_bytes(), &known).unwrap();
        let spells = read_spells(SPELLS, read(SPELLS).as_bytes(), Some(&policy)).unwrap();
        let batch = Batch::new(records, known);
        let run = batch
            .run(&policy, &SpellBook::new(&policy, &spells).unwrap(), &|_| {})
            .unwrap();
        let all = invoices();
        for (index, record) in batch.invoices().iter().enumerate() {
            let expected = run.decision(index);
            let invoice = all
                .iter()
                .find(|invoice| {
                    invoice.invoice_no == record.invoice_no && invoice.settled_at == record.settled_at
                })
                .unwrap();
            let answer = store.settle(invoice.hospital.as_str(), invoice, "H").await;
            if expected.outcome == Outcome::Duplicate {
                // In real time a second bill under a taken number is refused.
                assert!(matches!(answer, Err(SettleError::Conflict(_))), "{answer:?}");
                continue;
            }
            let response = answer.unwrap().response;
            assert_eq!(
                response.outcome(),
                Some(expected.outcome),
                "{}",
                record.invoice_no
            );
            assert_eq!(
                response.amount,
                expected.amount.to_string(),
                "{}",
                record.invoice_no
            );
            assert_eq!(
                response.deductible_applied,
                expected.deductible_applied.to_string()
            );
            assert_eq!(
                response.category.as_deref(),
                expected
                    .category()
                    .map(|category| policy.category(category).code.as_str())
            );
        }
        assert!(store.verify_audit().await.unwrap().is_ok());
        database.drop_database().await;
    }
}

#[tokio::test]
async fn the_same_bill_twice_answers_the_same_and_changes_nothing() {
    for database in fresh_databases("replay").await {
        let (store, _) = prepared(&database).await;
        let bill = invoice("INV002");
        let first = store.settle("H001", &bill, "H001").await.unwrap();
        assert!(!first.replayed);
        let audit_before = store.verify_audit().await.unwrap().unwrap().entries;
        let second = store.settle("H001", &bill, "H001").await.unwrap();
        assert!(second.replayed);
        assert_eq!(second.response, first.response);
        assert_eq!(store.verify_audit().await.unwrap().unwrap().entries, audit_before);
        // A different body under the same number: refused, nothing stored.
        let mut changed = bill.clone();
        changed.visit_type = "emergency".into();
        assert!(matches!(
            store.settle("H001", &changed, "H001").await,
            Err(SettleError::Conflict(_))
        ));
        assert_eq!(store.verify_audit().await.unwrap().unwrap().entries, audit_before);
        database.drop_database().await;
    }
}

#[tokio::test]
async fn a_hospital_settles_and_reads_only_its_own_bills() {
    for database in fresh_databases("hospital").await {
        let (store, keys) = prepared(&database).await;
        assert_eq!(
            store.hospital_for_key(&keys["H002"]).await.unwrap().as_deref(),
            Some("H002")
        );
        assert_eq!(store.hospital_for_key("jz_not-a-key").await.unwrap(), None);
        let bill = invoice("INV002");
        assert!(matches!(
            store.settle("H002", &bill, "H002").await,
            Err(SettleError::OtherHospital { .. })
        ));
        store.settle("H001", &bill, "H001").await.unwrap();
        let number = InvoiceNo::parse("INV002").unwrap();
        assert!(store.settlement("H001", &number).await.unwrap().is_some());
        assert!(store.settlement("H002", &number).await.unwrap().is_none());
        database.drop_database().await;
    }
}

#[tokio::test]
async fn a_reversal_gives_back_the_amount_and_the_deductible_and_is_recorded() {
    for database in fresh_databases("reversal").await {
        let (store, _) = prepared(&database).await;
        // ZCX inpatient: 1,000 deductible, 70% of the rest.
        let bill = invoice("INV003");
        let settled = store.settle(bill.hospital.as_str(), &bill, "H").await.unwrap();
        assert_eq!(settled.response.amount, "350.00");
        let counters = store.counters(bill.person, 2024).await.unwrap();
        assert_eq!(counters, vec![("inpatient".to_owned(), 100_000, 35_000)]);
        let number = bill.invoice_no.clone();
        let reversed = store.reverse(bill.hospital.as_str(), &number, "H").await.unwrap();
        assert!(reversed.reversed);
        assert_eq!(
            store.counters(bill.person, 2024).await.unwrap(),
            vec![("inpatient".to_owned(), 0, 0)]
        );
        assert!(matches!(
            store.reverse(bill.hospital.as_str(), &number, "H").await,
            Err(SettleError::AlreadyReversed(_))
        ));
        let read_back = store
            .settlement(bill.hospital.as_str(), &number)
            .await
            .unwrap()
            .unwrap();
        assert!(read_back.reversed);
        assert!(store.verify_audit().await.unwrap().is_ok());
        database.drop_database().await;
    }
}

#[tokio::test]
async fn an_edited_audit_row_is_found_and_named() {
    for database in fresh_databases("audit").await {
        let (store, _) = prepared(&database).await;
        let bill = invoice("INV001");
        store.settle("H001", &bill, "H001").await.unwrap();
        let summary = store.verify_audit().await.unwrap().unwrap();
        assert!(summary.entries >= 6);
        database
            .execute("UPDATE audit_log SET details = '{}' WHERE sequence = 3")
            .await;
        let broken = store.verify_audit().await.unwrap().unwrap_err();
        assert_eq!(broken.sequence, 3, "{broken}");
        database.drop_database().await;
    }
}

#[tokio::test]
async fn loading_the_same_policy_again_changes_nothing() {
    for database in fresh_databases("policy").await {
        let (store, _) = prepared(&database).await;
        let policy: Policy = parse_policy(POLICY, &read(POLICY)).unwrap();
        let again = store.load_policy(&read(POLICY), &policy, "admin").await.unwrap();
        assert!(!again.fresh);
        let spells = read_spells(SPELLS, read(SPELLS).as_bytes(), Some(&policy)).unwrap();
        let imported = store.import_spells(&spells, "民政", "admin").await.unwrap();
        assert_eq!(
            (imported.added, imported.unchanged, imported.new_persons),
            (0, 5, 0)
        );
        database.drop_database().await;
    }
}

#[tokio::test]
async fn concurrent_settlements_never_pass_a_cap_and_one_bill_is_decided_once() {
    for database in fresh_databases("concurrent").await {
        let (store, _) = prepared(&database).await;
        let store = Arc::new(store);
        // The DB person (INV002's) has an outpatient cap of 3,000 in 2024;
        // 100 bills of 100 yuan at 70% would be 7,000 without it.
        let template = invoice("INV002");
        let mut tasks = Vec::new();
        for n in 0..100 {
            let store = store.clone();
            let mut bill = template.clone();
            bill.invoice_no = InvoiceNo::parse(&format!("C{n:03}")).unwrap();
            bill.amounts = jiuzhu_core::BillAmounts::new(
                Fen::from_fen(10_000),
                Fen::ZERO,
                Fen::from_fen(10_000),
                Fen::ZERO,
            )
            .unwrap();
            tasks.push(tokio::spawn(
                async move { store.settle("H001", &bill, "H001").await },
            ));
        }
        let before = store.write_stats();
        let mut granted = 0i64;
        for task in tasks {
            let settled = task.await.unwrap().unwrap();
            granted += Fen::parse_yuan(&settled.response.amount).unwrap().fen();
        }
        assert_eq!(granted, 300_000);
        // Group commit: the 100 settlements were written, in fewer
        // transactions than settlements.
        let after = store.write_stats();
        assert_eq!(after.writes - before.writes, 100, "{}", database.url());
        assert!(
            after.transactions - before.transactions < 100,
            "{}: {before:?} → {after:?}",
            database.url()
        );
        assert_eq!(
            store.counters(template.person, 2024).await.unwrap(),
            vec![("outpatient".to_owned(), 0, 300_000)]
        );
        // One bill sent 50 times at once: decided once.
        let bill = invoice("INV005");
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let store = store.clone();
            let bill = bill.clone();
            tasks.push(tokio::spawn(
                async move { store.settle("H002", &bill, "H002").await },
            ));
        }
        let mut fresh = 0;
        for task in tasks {
            fresh += usize::from(!task.await.unwrap().unwrap().replayed);
        }
        assert_eq!(fresh, 1);
        assert!(store.verify_audit().await.unwrap().is_ok());
        database.drop_database().await;
    }
}

#[tokio::test]
async fn no_full_resident_id_is_stored_in_the_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jiuzhu.db");
    let database = Fresh::Sqlite {
        url: format!("sqlite://{}", path.display()),
        _dir: tempfile::tempdir().unwrap(),
    };
    let (store, _) = prepared(&database).await;
    store.settle("H001", &invoice("INV001"), "H001").await.unwrap();
    drop(store);
    let mut bytes = Vec::new();
    for name in ["jiuzhu.db", "jiuzhu.db-wal"] {
        if let Ok(more) = std::fs::read(dir.path().join(name)) {
            bytes.extend(more);
        }
    }
    assert!(bytes.len() > 4096);
    for id in ["110105196001010017", "110105196001010025", "11010519600101005X"] {
        assert!(
            !bytes.windows(id.len()).any(|window| window == id.as_bytes()),
            "{id} is in the file"
        );
    }
    let masked = b"110105********0017";
    assert!(bytes.windows(masked.len()).any(|window| window == masked));
}

#[tokio::test]
async fn a_write_the_database_refuses_fails_alone_and_its_batch_still_lands() {
    for database in fresh_databases("refused").await {
        let (store, _) = prepared(&database).await;
        // The database itself refuses one invoice number, as a constraint
        // the store did not foresee would.
        match &database {
            Fresh::Sqlite { .. } => {
                database
                    .execute(
                        "CREATE TRIGGER refuse_poison BEFORE INSERT ON invoices \
                         WHEN NEW.invoice_no = 'POISON' BEGIN SELECT RAISE(ABORT, 'refused'); END",
                    )
                    .await
            }
            Fresh::Postgres { .. } => {
                database
                    .execute(
                        "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ \
                         BEGIN IF NEW.invoice_no = 'POISON' THEN RAISE EXCEPTION 'refused'; END IF; \
                         RETURN NEW; END $$; \
                         CREATE TRIGGER refuse_poison BEFORE INSERT ON invoices \
                         FOR EACH ROW EXECUTE FUNCTION refuse_poison()",
                    )
                    .await
            }
        }
        let store = Arc::new(store);
        let template = invoice("INV002");
        let mut tasks = Vec::new();
        for n in 0..60 {
            let store = store.clone();
            let mut bill = template.clone();
            let number = if n == 30 {
                "POISON".to_owned()
            } else {
                format!("P{n:03}")
            };
            bill.invoice_no = InvoiceNo::parse(&number).unwrap();
            bill.amounts = jiuzhu_core::BillAmounts::new(
                Fen::from_fen(10_000),
                Fen::ZERO,
                Fen::from_fen(10_000),
                Fen::ZERO,
            )
            .unwrap();
            tasks.push(tokio::spawn(async move {
                (number, store.settle("H001", &bill, "H001").await)
            }));
        }
        let mut granted = 0i64;
        for task in tasks {
            let (number, answer) = task.await.unwrap();
            match answer {
                Ok(settled) => {
                    assert_ne!(number, "POISON");
                    granted += Fen::parse_yuan(&settled.response.amount).unwrap().fen();
                }
                Err(error) => assert_eq!(number, "POISON", "{}: {error}", database.url()),
            }
        }
        // 59 bills of 100 yuan at 70% would be 4,130 yuan: capped at 3,000.
        assert_eq!(granted, 300_000, "{}", database.url());
        assert_eq!(
            store.counters(template.person, 2024).await.unwrap(),
            vec![("outpatient".to_owned(), 0, 300_000)]
        );
        assert!(store.verify_audit().await.unwrap().is_ok());
        database.drop_database().await;
    }
}
