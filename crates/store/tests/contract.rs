//! One contract, both backends: every test runs against a fresh SQLite
//! file and a fresh PostgreSQL database (127.0.0.1:5432, or
//! `JIUZHU_TEST_POSTGRES`). In CI (`CI=true`) an unreachable PostgreSQL
//! fails the tests; elsewhere they say plainly that PostgreSQL was skipped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jiuzhu_core::{Batch, Fen, Invoice, InvoiceNo, Outcome, Policy, SpellBook};
use jiuzhu_formats::{
    parse_policy, read_batch_invoices, read_invoice_records, read_invoices, read_spell_rows, read_spells,
    InvoiceRecord,
};
use jiuzhu_store::{
    decision_row_line, notification_message, ClearingError, ClearingReport, DataKeys, DecisionRow,
    DisburseError, DispatchOptions, DispatchReport, FeedError, FeedOptions, FeedReport, LogFileSender,
    Notification, NotificationKind, Sender, SettleError, SpellFile, SpellImport, Store, StoreError,
};
use sha2::Digest as _;
use sqlx::Connection as _;

#[path = "contract/applications.rs"]
mod applications;
#[path = "contract/citizens.rs"]
mod citizens;
#[path = "contract/codes.rs"]
mod codes;
#[path = "contract/console.rs"]
mod console;

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

    async fn execute(&self, sql: &str) {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self {
            Fresh::Sqlite { url, .. } => {
                let options = url
                    .parse::<sqlx::sqlite::SqliteConnectOptions>()
                    .unwrap()
                    .create_if_missing(true);
                let mut connection = sqlx::SqliteConnection::connect_with(&options).await.unwrap();
                sqlx::raw_sql(sql).execute(&mut connection).await.unwrap();
            }
            Fresh::Postgres { url, .. } => {
                let mut connection = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::raw_sql(sql).execute(&mut connection).await.unwrap();
            }
        }
    }

    /// One number that `sql` selects.
    async fn number(&self, sql: &'static str) -> i64 {
        match self {
            Fresh::Sqlite { url, .. } => {
                let mut connection = sqlx::SqliteConnection::connect(url).await.unwrap();
                sqlx::query_scalar(sql).fetch_one(&mut connection).await.unwrap()
            }
            Fresh::Postgres { url, .. } => {
                let mut connection = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::query_scalar(sql).fetch_one(&mut connection).await.unwrap()
            }
        }
    }

    /// Every row of every table as text, table by table in name order,
    /// rows by primary key (on PostgreSQL, with where each sequence
    /// stands): equal dumps mean equal databases.
    async fn dump(&self) -> String {
        let mut dump = String::new();
        match self {
            Fresh::Sqlite { url, .. } => {
                let mut connection = sqlx::SqliteConnection::connect(url).await.unwrap();
                let tables: Vec<String> = sqlx::query_scalar(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
                )
                .fetch_all(&mut connection)
                .await
                .unwrap();
                for table in tables {
                    let columns: Vec<(String, i64)> =
                        sqlx::query_as("SELECT name, pk FROM pragma_table_info($1) ORDER BY cid")
                            .bind(&table)
                            .fetch_all(&mut connection)
                            .await
                            .unwrap();
                    let mut key: Vec<&(String, i64)> = columns.iter().filter(|(_, pk)| *pk > 0).collect();
                    key.sort_by_key(|(_, pk)| *pk);
                    let order = if key.is_empty() {
                        "rowid".to_owned()
                    } else {
                        key.iter()
                            .map(|(name, _)| format!("\"{name}\""))
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    let fields = columns
                        .iter()
                        .map(|(name, _)| format!("quote(\"{name}\")"))
                        .collect::<Vec<_>>()
                        .join(" || ',' || ");
                    let sql = format!("SELECT {fields} FROM \"{table}\" ORDER BY {order}");
                    let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                        .fetch_all(&mut connection)
                        .await
                        .unwrap();
                    dump.push_str(&format!("{table}\n"));
                    for row in rows {
                        dump.push_str(&format!("  {row}\n"));
                    }
                }
            }
            Fresh::Postgres { url, .. } => {
                let mut connection = sqlx::PgConnection::connect(url).await.unwrap();
                let tables: Vec<String> = sqlx::query_scalar(
                    "SELECT table_name::text FROM information_schema.tables \
                     WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY table_name",
                )
                .fetch_all(&mut connection)
                .await
                .unwrap();
                for table in tables {
                    let key: Vec<String> = sqlx::query_scalar(
                        "SELECT a.attname::text FROM pg_index i \
                         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
                         WHERE i.indrelid = $1::text::regclass AND i.indisprimary \
                         ORDER BY array_position(i.indkey::int2[], a.attnum)",
                    )
                    .bind(&table)
                    .fetch_all(&mut connection)
                    .await
                    .unwrap();
                    assert!(!key.is_empty(), "table {table} has no primary key");
                    let order = key
                        .iter()
                        .map(|name| format!("t.\"{name}\""))
                        .collect::<Vec<_>>()
                        .join(", ");
                    let sql = format!("SELECT row_to_json(t)::text FROM \"{table}\" t ORDER BY {order}");
                    let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                        .fetch_all(&mut connection)
                        .await
                        .unwrap();
                    dump.push_str(&format!("{table}\n"));
                    for row in rows {
                        dump.push_str(&format!("  {row}\n"));
                    }
                }
                let sequences: Vec<(String, Option<i64>)> =
                    sqlx::query_as("SELECT sequencename::text, last_value FROM pg_sequences ORDER BY 1")
                        .fetch_all(&mut connection)
                        .await
                        .unwrap();
                dump.push_str(&format!("sequences {sequences:?}\n"));
            }
        }
        dump
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

/// A store with the example policy and nothing else.
async fn with_policy(database: &Fresh) -> Store {
    let store = Store::open(database.url(), keys(), 8).await.unwrap();
    let policy = parse_policy(POLICY, &read(POLICY)).unwrap();
    assert!(
        store
            .load_policy(&read(POLICY), &policy, "admin")
            .await
            .unwrap()
            .fresh
    );
    store
}

/// Imports `text` as the spells file `name` sent by `source`.
async fn import(store: &Store, name: &str, source: &str, text: &str) -> Result<SpellImport, StoreError> {
    let policy = parse_policy(POLICY, &read(POLICY)).unwrap();
    let rows = read_spell_rows(name, text.as_bytes(), Some(&policy)).unwrap();
    let file = SpellFile::new(source, name, text.as_bytes(), &rows);
    store.import_spells(&file, "admin").await
}

/// A store with the example policy, the small fixture's spells and an API
/// key for each hospital of the fixture.
async fn prepared(database: &Fresh) -> (Store, BTreeMap<String, String>) {
    let store = with_policy(database).await;
    let imported = import(&store, SPELLS, "民政", &read(SPELLS)).await.unwrap();
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
        let imported = import(&store, SPELLS, "民政", &read(SPELLS)).await.unwrap();
        assert!(imported.already_imported.is_some());
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

const ENDED_EARLIER: &str =
    "person_id,category,valid_from,valid_to\n110105196001010017,DB,2023-01-01,2024-03-31\n";

#[tokio::test]
async fn importing_the_same_file_again_changes_no_row_of_any_table() {
    for database in fresh_databases("reimport").await {
        let (store, _) = prepared(&database).await;
        let before = database.dump().await;
        assert!(before.contains("imports\n  "), "{before}");
        for name in [SPELLS, "renamed.csv"] {
            let again = import(&store, name, "民政", &read(SPELLS)).await.unwrap();
            let earlier = again.already_imported.clone().unwrap();
            assert_eq!(
                (earlier.file_name.as_str(), earlier.imported_by.as_str()),
                (SPELLS, "admin")
            );
            assert_eq!(earlier.imported_at.len(), "2025-01-01T00:00:00.000Z".len());
            assert_eq!(
                again,
                SpellImport {
                    rows: 5,
                    already_imported: Some(earlier),
                    ..SpellImport::default()
                }
            );
            assert_eq!(database.dump().await, before, "{}", database.url());
        }
        // The same bytes from another department are another import: its
        // rows name their source, so nothing is new.
        let other = import(&store, SPELLS, "残联", &read(SPELLS)).await.unwrap();
        assert_eq!(
            (other.unchanged, other.added, other.already_imported),
            (5, 0, None)
        );
        assert_ne!(database.dump().await, before);
        assert!(store.verify_audit().await.unwrap().is_ok());
        database.drop_database().await;
    }
}

#[tokio::test]
async fn an_end_date_set_later_supersedes_the_open_spell_and_history_keeps_both() {
    for database in fresh_databases("ended").await {
        let (store, _) = prepared(&database).await;
        let person = invoice("INV002").person;
        // A bill of theirs is stored: the change may alter its decision.
        store.settle("H001", &invoice("INV001"), "H001").await.unwrap();
        let first_import = store.spell_history(person).await.unwrap()[0].import_id.unwrap();
        let report = import(&store, "ended.csv", "民政", ENDED_EARLIER).await.unwrap();
        assert_eq!((report.changed, report.added, report.unchanged), (1, 0, 0));
        assert_eq!(
            (
                report.new_persons,
                report.changed_persons,
                report.ended_persons,
                report.marked
            ),
            (0, 1, 1, 1)
        );
        let history = store.spell_history(person).await.unwrap();
        assert_eq!(history.len(), 2, "{history:?}");
        let (old, new) = (&history[0], &history[1]);
        assert_eq!(old.superseded_by, Some(new.id));
        assert_eq!(old.valid_to, None);
        assert_eq!(
            (old.import_id, old.file_name.as_deref(), old.source.as_str()),
            (Some(first_import), Some(SPELLS), "民政")
        );
        assert_eq!(new.superseded_by, None);
        assert_eq!(
            new.valid_to.map(|date| date.to_string()).as_deref(),
            Some("2024-03-31")
        );
        assert_eq!(
            (new.import_id, new.file_name.as_deref(), new.source.as_str()),
            (report.import_id, Some("ended.csv"), "民政")
        );
        // The import and its audit entry say what happened.
        let audit = store.verify_audit().await.unwrap().unwrap();
        assert_eq!(
            database
                .number("SELECT COUNT(*) FROM audit_log WHERE action = 'spells.import'")
                .await,
            2
        );
        assert!(audit.entries >= 3);
        database.drop_database().await;
    }
}

#[tokio::test]
async fn settlement_after_a_change_uses_only_the_current_spells() {
    for database in fresh_databases("current").await {
        let (store, _) = prepared(&database).await;
        import(&store, "ended.csv", "民政", ENDED_EARLIER).await.unwrap();
        // Served on 2024-04-01, after the spell now ends.
        let after = store.settle("H001", &invoice("INV002"), "H001").await.unwrap();
        assert_eq!(after.response.outcome(), Some(Outcome::NotEligible));
        assert_eq!(after.response.amount, "0.00");
        // Served on 2024-03-01, while it still held.
        let before = store.settle("H001", &invoice("INV001"), "H001").await.unwrap();
        assert_eq!(before.response.outcome(), Some(Outcome::Assisted));
        assert_eq!(before.response.category.as_deref(), Some("DB"));
        database.drop_database().await;
    }
}

#[tokio::test]
async fn a_corrected_start_supersedes_the_old_version_and_marks_from_the_earlier_start() {
    for database in fresh_databases("corrected").await {
        let (store, _) = prepared(&database).await;
        // Both persons have a bill stored.
        for number in ["INV003", "INV006"] {
            let bill = invoice(number);
            let hospital = bill.hospital.as_str().to_owned();
            store.settle(&hospital, &bill, &hospital).await.unwrap();
        }
        let marks_before = database.number("SELECT COUNT(*) FROM recompute_marks").await;
        let text = "person_id,category,valid_from,valid_to\n\
                    110105196001010041,TK,2024-03-01,\n\
                    110105196001010025,ZCX,2024-01-01,2025-06-30\n";
        let report = import(&store, "corrected.csv", "民政", text).await.unwrap();
        assert_eq!((report.changed, report.added, report.unchanged), (2, 0, 0));
        // A later start and a later end: changed, but nothing ended.
        assert_eq!(
            (report.changed_persons, report.ended_persons, report.marked),
            (2, 0, 2)
        );
        let person = jiuzhu_core::ResidentId::parse("110105196001010041").unwrap();
        let history = store.spell_history(person).await.unwrap();
        assert_eq!(history.len(), 2);
        assert_eq!(history[0].superseded_by, Some(history[1].id));
        assert_eq!(history[1].valid_from.to_string(), "2024-03-01");
        assert_eq!(
            database.number("SELECT COUNT(*) FROM recompute_marks").await,
            marks_before + 2
        );
        assert_eq!(
            database
                .number(
                    "SELECT COUNT(*) FROM recompute_marks m JOIN imports i ON i.id = m.import_id \
                     WHERE i.file_name = 'corrected.csv' AND m.since = '2024-01-01'"
                )
                .await,
            2
        );
        // Back to the first version: a change again, against the current one.
        let text = "person_id,category,valid_from,valid_to\n110105196001010041,TK,2024-01-01,\n";
        let report = import(&store, "back.csv", "民政", text).await.unwrap();
        assert_eq!((report.changed, report.unchanged), (1, 0));
        let history = store.spell_history(person).await.unwrap();
        assert_eq!(history.len(), 3);
        assert_eq!(history[1].superseded_by, Some(history[2].id));
        assert_eq!(history[2].superseded_by, None);
        database.drop_database().await;
    }
}

#[tokio::test]
async fn a_person_without_any_spell_before_is_a_new_recipient() {
    for database in fresh_databases("newperson").await {
        let (store, _) = prepared(&database).await;
        // INV005's person holds no spell: the bill makes them a person of
        // the store, not a recipient.
        let bill = invoice("INV005");
        let settled = store.settle("H002", &bill, "H002").await.unwrap();
        assert_eq!(settled.response.outcome(), Some(Outcome::NotEligible));
        let text = "person_id,category,valid_from,valid_to\n\
                    110105196001010033,DB,2999-01-01,\n\
                    110105196001010017,ZC,2999-01-01,\n";
        let report = import(&store, "new.csv", "残联", text).await.unwrap();
        assert_eq!((report.added, report.new_persons), (2, 1));
        assert_eq!((report.changed_persons, report.ended_persons), (0, 0));
        // Spells that start in the future change no decision taken.
        assert_eq!(report.marked, 0);
        let history = store.spell_history(bill.person).await.unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].source, "残联");
        database.drop_database().await;
    }
}

#[tokio::test]
async fn a_retroactive_spell_marks_its_person_for_recomputation_from_its_start() {
    for database in fresh_databases("marks").await {
        let store = with_policy(&database).await;
        // The marks of 2024 are taken; the fixture's 2023 start is another year's.
        let pending = store.pending_recomputations().await.unwrap();
        assert!(
            pending.iter().all(|mark| mark.since.year() == 2023),
            "{pending:?}"
        );
        // INV005's person has a bill, decided before any spell of theirs
        // was known; the others none.
        let bill = invoice("INV005");
        let settled = store.settle("H002", &bill, "H002").await.unwrap();
        assert_eq!(settled.response.outcome(), Some(Outcome::NotEligible));
        let text = "person_id,category,valid_from,valid_to\n\
                    110105196001010033,DB,2024-03-01,\n\
                    110105196001010041,TK,2999-01-01,\n\
                    110105196001010025,ZCX,2024-01-01,\n";
        let report = import(&store, "a.csv", "民政", text).await.unwrap();
        // A past start with a bill stored: marked. A past start without a
        // bill (…0025) has no decision to recompute; a future start none.
        assert_eq!((report.added, report.new_persons, report.marked), (3, 3, 1));
        let pending = store.pending_recomputations().await.unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].masked_id, "110105********0033");
        assert_eq!(pending[0].since.to_string(), "2024-03-01");
        // One mark per person and import, from the earliest date: a new
        // category from 2024-01-15 and an unchanged spell.
        let text = "person_id,category,valid_from,valid_to\n\
                    110105196001010033,DB,2024-03-01,\n\
                    110105196001010033,TK,2024-01-15,2024-02-29\n\
                    110105196001010033,ZC,2024-02-01,\n\
                    110105196001010041,TK,2998-01-01,\n";
        let report = import(&store, "b.csv", "民政", text).await.unwrap();
        assert_eq!(
            (report.added, report.changed, report.unchanged, report.marked),
            (2, 1, 1, 1)
        );
        assert_eq!(
            database
                .number("SELECT COUNT(*) FROM recompute_marks WHERE since = '2024-01-15'")
                .await,
            1
        );
        assert_eq!(database.number("SELECT COUNT(*) FROM recompute_marks").await, 2);
        let pending = store.pending_recomputations().await.unwrap();
        assert_eq!(pending.len(), 1, "{pending:?}");
        assert_eq!(pending[0].since.to_string(), "2024-01-15");
        database.drop_database().await;
    }
}

#[tokio::test]
async fn overlapping_rows_of_one_file_refuse_it_whole_naming_both_lines() {
    for database in fresh_databases("overlap").await {
        let (store, _) = prepared(&database).await;
        let before = database.dump().await;
        let text = "person_id,category,valid_from,valid_to\n\
                    110105196001010033,DB,2024-01-01,2024-06-30\n\
                    110105196001010041,TK,2024-01-01,\n\
                    \n\
                    110105196001010033,DB,2024-06-01,\n";
        let Err(StoreError::Refused(problems)) = import(&store, "bad.csv", "民政", text).await else {
            panic!("an overlapping file was taken");
        };
        let message = problems.to_string();
        assert_eq!(problems.total(), 1, "{message}");
        assert!(message.starts_with("bad.csv:5: valid_from: "), "{message}");
        assert!(message.contains("on line 2"), "{message}");
        assert!(!message.contains("110105196001010033"), "{message}");
        assert_eq!(database.dump().await, before, "{}", database.url());
        // Identical rows are one spell, not a problem.
        let text = "person_id,category,valid_from,valid_to\n\
                    110105196001010033,DB,2024-01-01,2024-06-30\n\
                    110105196001010033,DB,2024-01-01,2024-06-30\n";
        let report = import(&store, "twice.csv", "民政", text).await.unwrap();
        assert_eq!((report.rows, report.added, report.duplicates), (2, 1, 1));
        database.drop_database().await;
    }
}

#[tokio::test]
async fn a_database_from_before_spell_history_is_brought_up_to_date_and_keeps_its_spells() {
    for database in fresh_databases("upgrade").await {
        let (init, key) = match &database {
            Fresh::Sqlite { .. } => (include_str!("../migrations/sqlite/0001_init.sql"), "X'00'"),
            Fresh::Postgres { .. } => (
                include_str!("../migrations/postgres/0001_init.sql"),
                "'\\x00'::bytea",
            ),
        };
        database.execute(init).await;
        let rows = format!(
            "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied_at TEXT NOT NULL); \
             INSERT INTO schema_migrations VALUES (1, '2024-01-01T00:00:00Z'); \
             INSERT INTO persons VALUES ({key}, {key}, '110105********0000', '2024-01-01T00:00:00Z'); \
             INSERT INTO spells (person_key, category, valid_from, source, recorded_at) \
             VALUES ({key}, 'DB', '2024-01-01', '民政', '2024-01-01T00:00:00Z')"
        );
        database.execute(&rows).await;
        let store = with_policy(&database).await;
        // Every migration is applied: as many as there are files.
        let migrations = std::fs::read_dir(repository().join("crates/store/migrations/sqlite"))
            .unwrap()
            .count();
        assert_eq!(
            database.number("SELECT COUNT(*) FROM schema_migrations").await,
            migrations as i64
        );
        let report = import(&store, SPELLS, "民政", &read(SPELLS)).await.unwrap();
        assert_eq!((report.added, report.new_persons), (5, 4));
        assert_eq!(
            database
                .number("SELECT COUNT(*) FROM spells WHERE import_id IS NULL AND superseded_by IS NULL")
                .await,
            1
        );
        database.drop_database().await;
    }
}

#[tokio::test]
async fn a_notice_stored_by_its_words_before_the_facts_is_sent_with_its_words() {
    for database in fresh_databases("outbox_upgrade").await {
        let (dir, key) = match &database {
            Fresh::Sqlite { .. } => ("sqlite", "X'00'"),
            Fresh::Postgres { .. } => ("postgres", "'\\x00'::bytea"),
        };
        // A store as it was at migration 8, with a notice stored by its
        // words and not sent yet.
        let mut files: Vec<_> = std::fs::read_dir(repository().join("crates/store/migrations").join(dir))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        files.sort();
        database
            .execute("CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied_at TEXT NOT NULL)")
            .await;
        for file in &files {
            let name = file.file_name().unwrap().to_str().unwrap().to_owned();
            let version: i64 = name[..4].parse().unwrap();
            if version > 8 {
                continue;
            }
            database.execute(&std::fs::read_to_string(file).unwrap()).await;
            database
                .execute(&format!(
                    "INSERT INTO schema_migrations VALUES ({version}, '2024-01-01T00:00:00Z')"
                ))
                .await;
        }
        let words = "您已自2024-01-01起纳入医疗救助对象（旧的文字）。";
        database
            .execute(&format!(
                "INSERT INTO persons VALUES ({key}, {key}, '110105********0000', '2024-01-01T00:00:00Z'); \
                 INSERT INTO imports (kind, source, file_name, digest, rows, imported_at, imported_by, report) \
                 VALUES ('spells', '民政', 'old.csv', {key}, 1, '2024-01-01T00:00:00Z', 'admin', '{{}}'); \
                 INSERT INTO outbox (kind, person_key, person_masked, text, import_id, created_at, next_attempt_unix_ms) \
                 VALUES ('new_recipient', {key}, '110105********0000', '{words}', 1, '2024-01-01T00:00:00Z', 0)"
            ))
            .await;

        // Opened now: migration 9 keeps the row; new notices are stored by
        // their facts, and each is sent with its message.
        let store = with_policy(&database).await;
        let report = import(&store, SPELLS, "民政", &read(SPELLS)).await.unwrap();
        assert_eq!(report.new_persons, 4);
        assert_eq!(
            database
                .number("SELECT COUNT(*) FROM outbox WHERE text IS NOT NULL")
                .await,
            1
        );
        assert_eq!(
            database
                .number("SELECT COUNT(*) FROM outbox WHERE facts IS NOT NULL")
                .await,
            4
        );
        let sender = Recorder::default();
        let sent = store.dispatch_notifications(&sender, 100).await.unwrap();
        assert_eq!((sent.sent, sent.failed, sent.pending), (5, 0, 0));
        let taken = sender.taken.lock().unwrap().clone();
        assert_eq!(taken[0].text, words);
        for notice in &taken[1..] {
            assert_eq!(notice.kind, NotificationKind::NewRecipient);
            assert!(notice.text.starts_with("您已自20"), "{}", notice.text);
            assert!(notice.text.contains("无需申请"), "{}", notice.text);
        }
        database.drop_database().await;
    }
}

#[tokio::test]
async fn answers_stored_in_their_decisions_before_their_own_table_are_replayed_the_same() {
    for database in fresh_databases("answers_upgrade").await {
        let (store, _) = prepared(&database).await;
        let first = store.settle("H001", &invoice("INV002"), "H001").await.unwrap();
        let bill = invoice("INV003");
        let hospital = bill.hospital.as_str();
        let other = store.settle(hospital, &bill, hospital).await.unwrap();
        store.reverse(hospital, &bill.invoice_no, hospital).await.unwrap();
        store.close().await;
        // The store as it was before migration 10: each answer in its
        // decision's row, a reversal's a copy of its decision's.
        database
            .execute("ALTER TABLE decisions ADD COLUMN response TEXT NOT NULL DEFAULT ''")
            .await;
        database
            .execute(
                "UPDATE decisions SET response = (SELECT r.response FROM decision_responses r \
                 JOIN decisions d ON d.id = r.decision_id \
                 WHERE d.invoice_no = decisions.invoice_no AND d.kind = 'decision'); \
                 DROP TABLE decision_responses; \
                 DELETE FROM schema_migrations WHERE version = 10",
            )
            .await;
        assert_eq!(
            database
                .number("SELECT COUNT(*) FROM decisions WHERE response LIKE '{%'")
                .await,
            3
        );

        // Opened again: migration 10 moves the decisions' answers (not the
        // reversal's copy) and each is given back as it was first given.
        let store = Store::open(database.url(), keys(), 8).await.unwrap();
        assert_eq!(
            database.number("SELECT COUNT(*) FROM decision_responses").await,
            2
        );
        let replayed = store.settle("H001", &invoice("INV002"), "H001").await.unwrap();
        assert!(replayed.replayed);
        assert_eq!(replayed.response, first.response);
        let reversed = store
            .settlement(hospital, &bill.invoice_no)
            .await
            .unwrap()
            .unwrap();
        assert!(reversed.reversed);
        assert_eq!(reversed.response, other.response);
        // New answers go to the new table.
        store.settle("H001", &invoice("INV001"), "H001").await.unwrap();
        assert_eq!(
            database.number("SELECT COUNT(*) FROM decision_responses").await,
            3
        );
        assert!(store.verify_audit().await.unwrap().is_ok());
        database.drop_database().await;
    }
}

#[tokio::test]
async fn the_dashboard_sums_each_month_and_each_category_of_the_year_leaving_reversals_out() {
    for database in fresh_databases("dashboard").await {
        let (store, _) = prepared(&database).await;
        let settle = |numbers: &'static [&'static str]| {
            let store = store.clone();
            async move {
                for number in numbers {
                    let bill = invoice(number);
                    let hospital = bill.hospital.as_str().to_owned();
                    store.settle(&hospital, &bill, &hospital).await.unwrap();
                }
            }
        };
        let reverse = |hospital: &'static str, number: &'static str| {
            let store = store.clone();
            async move {
                store
                    .reverse(hospital, &InvoiceNo::parse(number).unwrap(), hospital)
                    .await
                    .unwrap();
            }
        };
        // Bills settled and reversed before the figures are first read and
        // after: the figures read on from the first must be those read
        // anew, each with the reversed bills nowhere.
        settle(&["INV001", "INV002", "INV004"]).await;
        let first = store.dashboard("2024-06-01", 2024).await.unwrap();
        reverse("H001", "INV002").await;
        settle(&["INV003", "INV005", "INV006", "INV007", "INV008"]).await;
        reverse("市第一人民医院", "INV003").await;
        let read_on = store
            .dashboard_after("2024-06-01", 2024, Some(&first))
            .await
            .unwrap();
        let figures = store.dashboard("2024-06-01", 2024).await.unwrap();
        assert_eq!(read_on, figures);
        assert_ne!(read_on.per_category, first.per_category);

        let months: BTreeMap<String, String> = invoices()
            .iter()
            .map(|bill| {
                (
                    bill.invoice_no.to_string(),
                    bill.service_date.to_string()[..7].to_owned(),
                )
            })
            .collect();
        let mut per_month: BTreeMap<String, i64> = BTreeMap::new();
        let mut per_category: BTreeMap<String, i64> = BTreeMap::new();
        let mut reversed_amounts = 0;
        for decision in stored_decisions(&database).await {
            let row = decision.row;
            if row.year != 2024 {
                continue;
            }
            if ["INV002", "INV003"].contains(&row.invoice_no.as_str()) {
                reversed_amounts += row.amount;
                continue;
            }
            *per_month.entry(months[&row.invoice_no].clone()).or_default() += row.amount;
            if let Some(category) = row.category {
                *per_category.entry(category).or_default() += row.amount;
            }
        }
        assert!(per_category.values().sum::<i64>() > 0);
        assert!(reversed_amounts > 0, "the reversed bills were assisted");
        let fen = |map: BTreeMap<String, i64>| -> Vec<(String, Fen)> {
            map.into_iter()
                .map(|(key, amount)| (key, Fen::from_fen(amount)))
                .collect()
        };
        assert_eq!(figures.per_month, fen(per_month));
        assert_eq!(figures.per_category, fen(per_category));
        // Recipients on 2024-06-01 by category: the fixture's current spells.
        assert_eq!(
            figures.recipients,
            vec![
                ("DB".to_owned(), 2),
                ("DSR".to_owned(), 1),
                ("TK".to_owned(), 1),
                ("ZCX".to_owned(), 1)
            ]
        );
        // Another year's figures are not read on from these.
        let next_year = store
            .dashboard_after("2025-06-01", 2025, Some(&figures))
            .await
            .unwrap();
        assert_eq!(next_year, store.dashboard("2025-06-01", 2025).await.unwrap());
        assert!(next_year.per_month.is_empty());
        database.drop_database().await;
    }
}

/// A decision row as stored, with how the bill came in and who decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StoredDecision {
    row: DecisionRow,
    channel: String,
    decided_by: String,
}

const DECISIONS: &str = "SELECT d.invoice_no, d.person_key, d.year, d.outcome, d.category, d.pool, \
     d.policy_version, d.base, d.deductible_applied, d.eligible, d.amount, d.policy_id, i.channel, \
     d.decided_by FROM decisions d JOIN invoices i ON i.invoice_no = d.invoice_no \
     WHERE d.kind = 'decision' ORDER BY d.id";

/// Every decision row, in the order written.
async fn stored_decisions(database: &Fresh) -> Vec<StoredDecision> {
    macro_rules! read {
        ($connection:expr) => {{
            let mut connection = $connection;
            sqlx::query(DECISIONS)
                .fetch_all(&mut connection)
                .await
                .unwrap()
                .into_iter()
                .map(|row| {
                    use sqlx::Row as _;
                    StoredDecision {
                        row: DecisionRow {
                            invoice_no: row.get("invoice_no"),
                            person_key: row.get("person_key"),
                            year: row.get("year"),
                            outcome: row.get("outcome"),
                            category: row.get("category"),
                            pool: row.get("pool"),
                            policy_version: row.get("policy_version"),
                            base: row.get("base"),
                            deductible_applied: row.get("deductible_applied"),
                            eligible: row.get("eligible"),
                            amount: row.get("amount"),
                            policy_id: row.get("policy_id"),
                        },
                        channel: row.get("channel"),
                        decided_by: row.get("decided_by"),
                    }
                })
                .collect()
        }};
    }
    match database {
        Fresh::Sqlite { url, .. } => read!(sqlx::SqliteConnection::connect(url).await.unwrap()),
        Fresh::Postgres { url, .. } => read!(sqlx::PgConnection::connect(url).await.unwrap()),
    }
}

/// The details of the feed chunks' audit entries, as JSON, in order.
async fn chunk_entries(database: &Fresh) -> Vec<serde_json::Value> {
    macro_rules! read {
        ($connection:expr) => {{
            let mut connection = $connection;
            sqlx::query("SELECT details FROM audit_log WHERE action = 'feed.decide' ORDER BY sequence")
                .fetch_all(&mut connection)
                .await
                .unwrap()
                .into_iter()
                .map(|row| {
                    use sqlx::Row as _;
                    let details: String = row.get("details");
                    serde_json::from_str(&details).unwrap()
                })
                .collect()
        }};
    }
    match database {
        Fresh::Sqlite { url, .. } => read!(sqlx::SqliteConnection::connect(url).await.unwrap()),
        Fresh::Postgres { url, .. } => read!(sqlx::PgConnection::connect(url).await.unwrap()),
    }
}

fn feed_records(text: &str) -> Vec<InvoiceRecord> {
    let policy = parse_policy(POLICY, &read(POLICY)).unwrap();
    let known: Vec<String> = policy
        .visit_types()
        .iter()
        .map(|(name, _)| name.clone())
        .collect();
    read_invoice_records("feed.csv", text.as_bytes(), &known).unwrap()
}

const FEED_HEADER: &str = "invoice_no,person_id,hospital,visit_type,service_date,settled_at,total,fund_paid,\
                           in_scope_self_pay,out_of_scope_self_pay\n";

async fn import_feed(store: &Store, text: &str, chunk_invoices: usize) -> Result<FeedReport, FeedError> {
    store
        .import_invoices(
            "feed.csv",
            feed_records(text),
            "admin",
            FeedOptions { chunk_invoices },
            &|_| {},
        )
        .await
}

#[tokio::test]
async fn the_feed_decides_every_bill_as_simulate_does_and_stores_it_as_real_time_does() {
    for database in fresh_databases("feed").await {
        let (store, _) = prepared(&database).await;
        let done = std::sync::atomic::AtomicU64::new(0);
        let report = store
            .import_invoices(
                "feed.csv",
                feed_records(&read(INVOICES)),
                "admin",
                FeedOptions { chunk_invoices: 3 },
                &|rows| {
                    done.fetch_add(rows, std::sync::atomic::Ordering::Relaxed);
                },
            )
            .await
            .unwrap();
        assert_eq!(done.into_inner(), 9);
        assert_eq!(report.rows, 9);
        assert_eq!(report.decided(), 8);
        assert_eq!(
            [
                Outcome::Assisted,
                Outcome::Capped,
                Outcome::NotEligible,
                Outcome::NoRule
            ]
            .map(|outcome| report.count(outcome)),
            [4, 1, 1, 2]
        );
        // 2,250 + 3,000 + 350 + 0.06 + 70.
        assert_eq!(report.amount, Fen::parse_yuan("5670.06").unwrap());
        assert_eq!(report.persons_assisted, 4);
        assert_eq!(report.already_decided, 0);
        assert_eq!(report.transactions, 3);
        assert!(report.refused.is_empty());
        // The second INV001 (line 8, a day later by a second channel).
        let duplicates: Vec<(&str, u64, u64)> = report
            .duplicates
            .iter()
            .map(|duplicate| {
                (
                    duplicate.invoice_no.as_str(),
                    duplicate.line,
                    duplicate.first_line,
                )
            })
            .collect();
        assert_eq!(duplicates, vec![("INV001", 8, 2)]);

        // Every decision as simulate's, in canonical order.
        let expected: Vec<Vec<String>> = read("crates/cli/tests/data/small/expected.csv")
            .lines()
            .skip(1)
            .map(|line| line.split(',').map(str::to_owned).collect())
            .filter(|row: &Vec<String>| row[9] != "duplicate")
            .collect();
        let stored = stored_decisions(&database).await;
        assert_eq!(stored.len(), expected.len());
        for (decision, row) in stored.iter().zip(&expected) {
            let money = |fen: i64| Fen::from_fen(fen).to_string();
            let text = |value: &Option<String>| value.clone().unwrap_or_default();
            let found = &decision.row;
            assert_eq!(
                vec![
                    found.invoice_no.clone(),
                    found.year.to_string(),
                    text(&found.category),
                    text(&found.pool),
                    money(found.base),
                    money(found.deductible_applied),
                    money(found.eligible),
                    money(found.amount),
                    found.outcome.clone(),
                    text(&found.policy_version),
                ],
                [0, 2, 3, 4, 5, 6, 7, 8, 9, 10].map(|column| row[column].clone()),
                "{}",
                database.url()
            );
            assert_eq!(decision.channel, "feed");
            assert_eq!(decision.decided_by, "feed:admin");
        }

        // One audit entry per chunk, whose digest is that of its rows.
        let entries = chunk_entries(&database).await;
        assert_eq!(entries.len(), 3);
        let mut rows = stored.iter();
        for (number, entry) in entries.iter().enumerate() {
            assert_eq!(entry["chunk"], number + 1);
            assert_eq!(entry["chunks"], 3);
            assert_eq!(entry["file"], "feed.csv");
            let count = entry["decided"].as_u64().unwrap() as usize;
            let text: String = rows
                .by_ref()
                .take(count)
                .map(|decision| decision_row_line(&decision.row))
                .collect();
            let digest: String = sha2::Sha256::digest(text.as_bytes())
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect();
            assert_eq!(entry["decisions_sha256"], digest.as_str(), "{entry}");
        }
        assert_eq!(entries[0]["first"], "INV007");
        assert!(store.verify_audit().await.unwrap().is_ok());

        // Counters as the decisions left them; a feed bill reads back as a
        // real-time one, for its hospital only, and replays in real time.
        let bill = invoice("INV003");
        assert_eq!(
            store.counters(bill.person, 2024).await.unwrap(),
            vec![("inpatient".to_owned(), 100_000, 35_000)]
        );
        let read_back = store
            .settlement(bill.hospital.as_str(), &bill.invoice_no)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(read_back.response.amount, "350.00");
        assert!(store
            .settlement("H001", &bill.invoice_no)
            .await
            .unwrap()
            .is_none());
        let again = store.settle(bill.hospital.as_str(), &bill, "H").await.unwrap();
        assert!(again.replayed);
        assert_eq!(again.response, read_back.response);
        database.drop_database().await;
    }
}

#[tokio::test]
async fn importing_the_same_feed_twice_changes_nothing_the_second_time() {
    for database in fresh_databases("feed_twice").await {
        let (store, _) = prepared(&database).await;
        let first = import_feed(&store, &read(INVOICES), 1024).await.unwrap();
        assert_eq!(first.decided(), 8);
        let audit = store.verify_audit().await.unwrap().unwrap().entries;
        let decisions = stored_decisions(&database).await;
        let second = import_feed(&store, &read(INVOICES), 1024).await.unwrap();
        assert_eq!(second.decided(), 0);
        assert_eq!(second.already_decided, 8);
        assert_eq!(second.duplicates.len(), 1);
        assert_eq!(second.transactions, 0);
        assert_eq!(second.amount, Fen::ZERO);
        assert_eq!(store.verify_audit().await.unwrap().unwrap().entries, audit);
        assert_eq!(stored_decisions(&database).await, decisions);
        database.drop_database().await;
    }
}

#[tokio::test]
async fn a_feed_after_real_time_settlements_counts_what_real_time_granted() {
    for database in fresh_databases("feed_after").await {
        let (store, _) = prepared(&database).await;
        // In real time: the DB person's outpatient bill of 5,000 at 70%,
        // capped at the pool's 3,000, and INV001 (inpatient, 2,250).
        store.settle("H001", &invoice("INV002"), "H001").await.unwrap();
        store.settle("H001", &invoice("INV001"), "H001").await.unwrap();
        // The feed: INV001 again, reported later by insurance (the same
        // bill, another settlement time), and two new outpatient bills of
        // the same person-year, which the cap leaves nothing.
        let feed = format!(
            "{FEED_HEADER}\
             INV001,110105196001010017,H001,inpatient,2024-03-01,2024-03-07T10:00:00+08:00,10000,7000,2500,500\n\
             F001,110105196001010017,H009,outpatient,2024-06-01,2024-06-02T10:00:00+08:00,100,0,100,0\n\
             F002,110105196001010017,H009,outpatient,2024-06-03,2024-06-03T10:00:00+08:00,200,0,200,0\n"
        );
        let report = import_feed(&store, &feed, 1024).await.unwrap();
        assert_eq!(report.already_decided, 1);
        assert_eq!(report.count(Outcome::Capped), 2);
        assert_eq!(report.amount, Fen::ZERO);
        assert_eq!(report.persons_assisted, 1);
        let person = invoice("INV002").person;
        assert_eq!(
            store.counters(person, 2024).await.unwrap(),
            vec![
                ("inpatient".to_owned(), 0, 225_000),
                ("outpatient".to_owned(), 0, 300_000)
            ]
        );
        // A real-time bill after the feed counts the feed's grants too.
        let decisions = stored_decisions(&database).await;
        let channels: Vec<(&str, &str)> = decisions
            .iter()
            .map(|decision| (decision.row.invoice_no.as_str(), decision.channel.as_str()))
            .collect();
        assert_eq!(
            channels,
            vec![
                ("INV002", "realtime"),
                ("INV001", "realtime"),
                ("F001", "feed"),
                ("F002", "feed")
            ]
        );
        assert!(store.verify_audit().await.unwrap().is_ok());
        database.drop_database().await;
    }
}

#[tokio::test]
async fn a_conflict_refuses_the_whole_feed_names_every_line_and_stores_nothing() {
    for database in fresh_databases("feed_conflict").await {
        let (store, _) = prepared(&database).await;
        store.settle("H001", &invoice("INV002"), "H001").await.unwrap();
        let audit = store.verify_audit().await.unwrap().unwrap().entries;
        let feed = format!(
            "{FEED_HEADER}\
             F001,110105196001010017,H009,outpatient,2024-06-01,2024-06-02T10:00:00+08:00,100,0,100,0\n\
             INV002,110105196001010017,H001,outpatient,2024-04-01,2024-04-01T09:00:00+08:00,5000.00,0,4000,1000\n\
             F002,110105196001010025,H009,outpatient,2024-06-03,2024-06-03T10:00:00+08:00,200,0,200,0\n\
             F002,110105196001010017,H008,outpatient,2024-06-03,2024-06-04T10:00:00+08:00,200,0,200,0\n"
        );
        let Err(FeedError::Refused(problems)) = import_feed(&store, &feed, 1024).await else {
            panic!("the feed was not refused");
        };
        assert_eq!(
            problems.to_string(),
            "feed.csv:3: invoice_no: INV002 was already settled with different amounts or details: \
             in_scope_self_pay 4000.00 here, 5000.00 stored; out_of_scope_self_pay 1000.00 here, 0.00 stored\n\
             feed.csv:5: invoice_no: F002 is also on line 4 with a different bill: person_id differs from the \
             one there; hospital \"H008\" here, \"H009\" there\n"
        );
        assert_eq!(store.verify_audit().await.unwrap().unwrap().entries, audit);
        assert_eq!(stored_decisions(&database).await.len(), 1);
        database.drop_database().await;
    }
}

#[tokio::test]
async fn a_visit_type_the_policy_in_force_does_not_map_refuses_the_feed() {
    for database in fresh_databases("feed_visit").await {
        let (store, _) = prepared(&database).await;
        let feed = format!(
            "{FEED_HEADER}\
             F001,110105196001010017,H009,outpatient,2024-06-01,2024-06-02T10:00:00+08:00,100,0,100,0\n\
             F002,110105196001010017,H009,dental,2024-06-01,2024-06-02T10:00:00+08:00,100,0,100,0\n"
        );
        let known = ["outpatient".to_owned(), "dental".to_owned()];
        let records = read_invoice_records("feed.csv", feed.as_bytes(), &known).unwrap();
        let refused = store
            .import_invoices("feed.csv", records, "admin", FeedOptions::default(), &|_| {})
            .await;
        let Err(FeedError::Refused(problems)) = refused else {
            panic!("the feed was not refused: {refused:?}");
        };
        assert_eq!(
            problems.to_string(),
            "feed.csv:3: visit_type: \"dental\" is not a key of the [pools] of the policy in force \
             (stored version 1)\n"
        );
        assert!(stored_decisions(&database).await.is_empty());
        database.drop_database().await;
    }
}

/// A row of the outbox, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OutboxRow {
    id: i64,
    kind: String,
    person_masked: String,
    text: String,
    invoice_no: Option<String>,
    import_id: Option<i64>,
    attempts: i64,
    last_error: Option<String>,
    sent_at: Option<String>,
}

/// Rows of the outbox in the order of their masked IDs.
fn by_person(mut rows: Vec<OutboxRow>) -> Vec<OutboxRow> {
    rows.sort_by(|a, b| a.person_masked.cmp(&b.person_masked));
    rows
}

/// Every row of the outbox, by id.
async fn outbox_rows(database: &Fresh) -> Vec<OutboxRow> {
    macro_rules! read {
        ($connection:expr) => {{
            let mut connection = $connection;
            sqlx::query(
                "SELECT id, kind, person_masked, text, facts, invoice_no, import_id, attempts, last_error, \
                 sent_at FROM outbox ORDER BY id",
            )
            .fetch_all(&mut connection)
            .await
            .unwrap()
            .into_iter()
            .map(|row| {
                use sqlx::Row as _;
                // The words, or the message the facts make.
                let kind: String = row.get("kind");
                let text: Option<String> = row.get("text");
                let text = text.unwrap_or_else(|| {
                    let facts: String = row.get("facts");
                    notification_message(NotificationKind::parse(&kind).unwrap(), &facts).unwrap()
                });
                OutboxRow {
                    id: row.get("id"),
                    kind,
                    person_masked: row.get("person_masked"),
                    text,
                    invoice_no: row.get("invoice_no"),
                    import_id: row.get("import_id"),
                    attempts: row.get("attempts"),
                    last_error: row.get("last_error"),
                    sent_at: row.get("sent_at"),
                }
            })
            .collect()
        }};
    }
    match database {
        Fresh::Sqlite { url, .. } => read!(sqlx::SqliteConnection::connect(url).await.unwrap()),
        Fresh::Postgres { url, .. } => read!(sqlx::PgConnection::connect(url).await.unwrap()),
    }
}

/// The invoice numbers of the outbox's notifications of assistance, by id.
async fn assisted_invoices(database: &Fresh) -> Vec<String> {
    outbox_rows(database)
        .await
        .into_iter()
        .filter(|row| row.kind == "assisted")
        .filter_map(|row| row.invoice_no)
        .collect()
}

/// A sender that refuses its first `failures` notifications, then records
/// the id of each one it takes (after `pause_ms`, as a slow gateway would).
#[derive(Debug, Default)]
struct Recorder {
    failures: std::sync::atomic::AtomicU64,
    pause_ms: u64,
    taken: std::sync::Mutex<Vec<Notification>>,
}

impl Recorder {
    fn failing(failures: u64) -> Recorder {
        Recorder {
            failures: failures.into(),
            ..Recorder::default()
        }
    }

    fn ids(&self) -> Vec<i64> {
        self.taken.lock().unwrap().iter().map(|taken| taken.id).collect()
    }
}

impl Sender for Recorder {
    fn send(&self, notification: &Notification) -> Result<(), String> {
        use std::sync::atomic::Ordering::SeqCst;
        if self
            .failures
            .fetch_update(SeqCst, SeqCst, |left| left.checked_sub(1))
            .is_ok()
        {
            return Err("短信网关无响应 (gateway timeout)".to_owned());
        }
        std::thread::sleep(std::time::Duration::from_millis(self.pause_ms));
        self.taken.lock().unwrap().push(notification.clone());
        Ok(())
    }
}

/// Spells of `count` new recipients, from the ID whose leading digits
/// are `first`, as a spells file.
fn new_recipients(first: u64, count: u64) -> String {
    let mut text = String::from("source,person_id,category,valid_from,valid_to\n");
    for digits in first..first + count {
        let person = jiuzhu_core::ResidentId::from_leading_digits(digits).unwrap();
        text.push_str(&format!("民政,{person},DB,2024-01-01,\n"));
    }
    text
}

#[tokio::test]
async fn a_server_sends_a_backlog_at_the_pace_set_and_a_stop_ends_it_between_two_batches() {
    use std::time::{Duration, Instant};
    for database in fresh_databases("outbox_paced").await {
        let store = with_policy(&database).await;
        let file = new_recipients(11010519500101000, 40);
        assert_eq!(
            import(&store, "new.csv", "民政", &file)
                .await
                .unwrap()
                .new_persons,
            40
        );
        // 20 a second: batches of 20, a second apart.
        let phone = Arc::new(Recorder::default());
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let spawned = Instant::now();
        let dispatcher = store.spawn_dispatcher(phone.clone(), Some(Duration::from_millis(50)), 20, stopped);
        loop {
            let sent = phone.taken.lock().unwrap().len() as u64;
            let seconds = spawned.elapsed().as_secs();
            assert!(
                sent <= 20 * (1 + seconds),
                "{sent} sent within {seconds} s: faster than 20 a second"
            );
            if sent == 40 {
                break;
            }
            assert!(seconds < 60, "the backlog was never all sent");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(spawned.elapsed() >= Duration::from_secs(1));
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(10), dispatcher)
            .await
            .unwrap()
            .unwrap();

        // One a second, stopped after the first: it ends at once, not
        // when the backlog is all sent.
        let file = new_recipients(11010519500102000, 40);
        assert_eq!(
            import(&store, "more.csv", "民政", &file)
                .await
                .unwrap()
                .new_persons,
            40
        );
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let dispatcher = store.spawn_dispatcher(phone.clone(), Some(Duration::from_millis(50)), 1, stopped);
        while phone.taken.lock().unwrap().len() < 41 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), dispatcher)
            .await
            .expect("a stop waited for the backlog")
            .unwrap();
        assert!(phone.taken.lock().unwrap().len() <= 42);
        database.drop_database().await;
    }
}

#[tokio::test]
async fn a_spells_import_enqueues_one_notice_per_new_recipient_and_an_import_again_none() {
    for database in fresh_databases("outbox_spells").await {
        let store = with_policy(&database).await;
        let report = import(&store, SPELLS, "民政", &read(SPELLS)).await.unwrap();
        assert_eq!(report.new_persons, 4);
        // Written in the order of the persons' keys, not of the file.
        let rows = by_person(outbox_rows(&database).await);
        let found: Vec<(&str, &str, Option<i64>, Option<&str>)> = rows
            .iter()
            .map(|row| {
                (
                    row.kind.as_str(),
                    row.person_masked.as_str(),
                    row.import_id,
                    row.invoice_no.as_deref(),
                )
            })
            .collect();
        let import_id = report.import_id;
        assert_eq!(
            found,
            vec![
                ("new_recipient", "110105********0017", import_id, None),
                ("new_recipient", "110105********0025", import_id, None),
                ("new_recipient", "110105********0041", import_id, None),
                ("new_recipient", "110105********005X", import_id, None),
            ],
            "{}",
            database.url()
        );
        // The category by its name in the policy, from the earliest spell
        // of the file (DSR from 2024-01-01, before DB from 2024-02-01).
        let texts: Vec<&str> = rows.iter().map(|row| row.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                ("低保对象", "2023-01-01"),
                ("因病支出型贫困家庭成员", "2024-01-01"),
                ("特困人员", "2024-01-01"),
                ("低收入家庭成员", "2024-01-01"),
            ]
            .map(|(category, from)| jiuzhu_store::notify::new_recipient_text(category, from))
        );
        assert!(rows
            .iter()
            .all(|row| row.attempts == 0 && row.sent_at.is_none() && row.last_error.is_none()));

        // The same file again, and the same spells from another source:
        // nobody is new.
        import(&store, SPELLS, "民政", &read(SPELLS)).await.unwrap();
        import(&store, SPELLS, "残联", &read(SPELLS)).await.unwrap();
        assert_eq!(by_person(outbox_rows(&database).await), rows);
        // A refused file enqueues nothing; a new person of a later file is.
        let overlapping = "person_id,category,valid_from,valid_to\n\
                           110105196001010033,DB,2024-01-01,2024-06-30\n\
                           110105196001010033,DB,2024-06-01,\n";
        assert!(import(&store, "bad.csv", "民政", overlapping).await.is_err());
        assert_eq!(by_person(outbox_rows(&database).await), rows);
        let later = "person_id,category,valid_from,valid_to\n110105196001010033,ZC,2024-07-01,\n";
        let report = import(&store, "later.csv", "残联", later).await.unwrap();
        let rows = outbox_rows(&database).await;
        assert_eq!(rows.len(), 5);
        assert_eq!(rows[4].person_masked, "110105********0033");
        assert_eq!(rows[4].import_id, report.import_id);
        assert!(rows[4].text.contains("重残无业人员"), "{}", rows[4].text);
        database.drop_database().await;
    }
}

#[tokio::test]
async fn the_feed_enqueues_one_notice_per_bill_granted_something_and_the_same_feed_again_none() {
    for database in fresh_databases("outbox_feed").await {
        let (store, _) = prepared(&database).await;
        let recipients = outbox_rows(&database).await.len();
        assert_eq!(recipients, 4);
        // A refused feed enqueues nothing.
        let conflicting = format!(
            "{FEED_HEADER}\
             F001,110105196001010017,H009,outpatient,2024-06-01,2024-06-02T10:00:00+08:00,100,0,100,0\n\
             F001,110105196001010025,H009,outpatient,2024-06-01,2024-06-02T10:00:00+08:00,100,0,100,0\n"
        );
        assert!(import_feed(&store, &conflicting, 1024).await.is_err());
        assert_eq!(outbox_rows(&database).await.len(), recipients);

        import_feed(&store, &read(INVOICES), 2).await.unwrap();
        let rows = outbox_rows(&database).await;
        let assisted: Vec<&OutboxRow> = rows.iter().filter(|row| row.kind == "assisted").collect();
        // In canonical order; not INV004, INV007 (no rule) nor INV005 (not
        // eligible), and INV001 once.
        let expected = [
            ("INV008", "H003", "2024-03-01", "70.00", "110105********005X"),
            ("INV001", "H001", "2024-03-01", "2250.00", "110105********0017"),
            ("INV002", "H001", "2024-04-01", "3000.00", "110105********0017"),
            (
                "INV003",
                "市第一人民医院",
                "2024-05-01",
                "350.00",
                "110105********0025",
            ),
            ("INV006", "H003", "2024-06-01", "0.06", "110105********0041"),
        ];
        assert_eq!(
            assisted.len(),
            expected.len(),
            "{}: {assisted:#?}",
            database.url()
        );
        for (row, (invoice_no, hospital, date, amount, person)) in assisted.iter().zip(expected) {
            assert_eq!(row.invoice_no.as_deref(), Some(invoice_no));
            assert_eq!(row.person_masked, person);
            assert_eq!(row.import_id, None);
            assert_eq!(
                row.text,
                jiuzhu_store::notify::assisted_text(hospital, invoice_no, date, amount)
            );
            assert!(row.text.contains(&format!("{amount} 元")), "{}", row.text);
        }
        import_feed(&store, &read(INVOICES), 1024).await.unwrap();
        assert_eq!(outbox_rows(&database).await, rows);
        database.drop_database().await;
    }
}

#[tokio::test]
async fn real_time_settlement_enqueues_and_a_replay_a_refusal_or_a_reversal_does_not() {
    for database in fresh_databases("outbox_realtime").await {
        let (store, _) = prepared(&database).await;
        let bill = invoice("INV003");
        store.settle(bill.hospital.as_str(), &bill, "H").await.unwrap();
        assert_eq!(assisted_invoices(&database).await, vec!["INV003"]);
        let rows = outbox_rows(&database).await;
        let replayed = store.settle(bill.hospital.as_str(), &bill, "H").await.unwrap();
        assert!(replayed.replayed);
        let mut changed = bill.clone();
        changed.visit_type = "outpatient".into();
        assert!(store.settle(bill.hospital.as_str(), &changed, "H").await.is_err());
        // Nothing granted, nothing to announce.
        for number in ["INV005", "INV007", "INV004"] {
            let bill = invoice(number);
            let settled = store.settle(bill.hospital.as_str(), &bill, "H").await.unwrap();
            assert_eq!(settled.response.amount, "0.00");
        }
        store
            .reverse(bill.hospital.as_str(), &bill.invoice_no, "H")
            .await
            .unwrap();
        assert_eq!(outbox_rows(&database).await, rows, "{}", database.url());

        // Concurrent settlements of one batch: one notice each.
        let store = Arc::new(store);
        let template = invoice("INV002");
        let mut tasks = Vec::new();
        for n in 0..20 {
            let store = store.clone();
            let mut bill = template.clone();
            bill.invoice_no = InvoiceNo::parse(&format!("C{n:03}")).unwrap();
            tasks.push(tokio::spawn(
                async move { store.settle("H001", &bill, "H001").await },
            ));
        }
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let mut invoices = assisted_invoices(&database).await;
        invoices.sort();
        // 5,000 at 70% exceeds the 3,000 outpatient cap: the first bill
        // decided is capped at 3,000, the others get nothing.
        assert_eq!(invoices.len(), 2, "{invoices:?}");
        assert_eq!(invoices[1], "INV003");
        database.drop_database().await;
    }
}

#[tokio::test]
async fn a_notice_the_database_refuses_refuses_its_settlement_too() {
    for database in fresh_databases("outbox_atomic").await {
        let (store, _) = prepared(&database).await;
        match &database {
            Fresh::Sqlite { .. } => {
                database
                    .execute(
                        "CREATE TRIGGER refuse_notice BEFORE INSERT ON outbox \
                         WHEN NEW.invoice_no = 'POISON' BEGIN SELECT RAISE(ABORT, 'refused'); END",
                    )
                    .await
            }
            Fresh::Postgres { .. } => {
                database
                    .execute(
                        "CREATE FUNCTION refuse_notice() RETURNS trigger LANGUAGE plpgsql AS $$ \
                         BEGIN IF NEW.invoice_no = 'POISON' THEN RAISE EXCEPTION 'refused'; END IF; \
                         RETURN NEW; END $$; \
                         CREATE TRIGGER refuse_notice BEFORE INSERT ON outbox \
                         FOR EACH ROW EXECUTE FUNCTION refuse_notice()",
                    )
                    .await
            }
        }
        let mut bill = invoice("INV003");
        bill.invoice_no = InvoiceNo::parse("POISON").unwrap();
        let refused = store.settle(bill.hospital.as_str(), &bill, "H").await;
        assert!(refused.is_err(), "{refused:?}");
        assert!(store
            .settlement(bill.hospital.as_str(), &bill.invoice_no)
            .await
            .unwrap()
            .is_none());
        assert!(stored_decisions(&database).await.is_empty());
        assert_eq!(
            store.counters(bill.person, 2024).await.unwrap(),
            Vec::<(String, i64, i64)>::new()
        );
        // In the feed, its chunk is not stored either; every bill stored
        // that was granted something has its notice.
        let feed = format!(
            "{FEED_HEADER}\
             POISON,110105196001010025,H009,inpatient,2024-05-01,2024-05-02T10:00:00+08:00,3000,1000,1500,500\n\
             F002,110105196001010041,H009,inpatient,2024-06-03,2024-06-03T10:00:00+08:00,200,0,200,0\n"
        );
        assert!(import_feed(&store, &feed, 1).await.is_err());
        let granted: Vec<String> = stored_decisions(&database)
            .await
            .into_iter()
            .filter(|decision| decision.row.amount > 0)
            .map(|decision| decision.row.invoice_no)
            .collect();
        assert!(!granted.contains(&"POISON".to_owned()));
        assert_eq!(assisted_invoices(&database).await, granted);
        database.drop_database().await;
    }
}

#[tokio::test]
async fn a_failing_sender_loses_nothing_and_each_notice_is_taken_once() {
    for database in fresh_databases("outbox_retry").await {
        let (store, _) = prepared(&database).await;
        import_feed(&store, &read(INVOICES), 1024).await.unwrap();
        let all: Vec<i64> = outbox_rows(&database).await.iter().map(|row| row.id).collect();
        assert_eq!(all.len(), 9);

        let sender = Recorder::failing(3);
        let report = store.dispatch_notifications(&sender, 100).await.unwrap();
        assert_eq!(
            report,
            DispatchReport {
                sent: 6,
                failed: 3,
                pending: 3
            }
        );
        assert_eq!(sender.ids(), all[3..].to_vec());
        let rows = outbox_rows(&database).await;
        for row in &rows[..3] {
            assert_eq!(row.attempts, 1);
            assert_eq!(row.sent_at, None);
            assert_eq!(
                row.last_error.as_deref(),
                Some("短信网关无响应 (gateway timeout)")
            );
        }
        for row in &rows[3..] {
            assert_eq!(row.attempts, 1);
            assert!(row.sent_at.is_some());
        }
        // Not due again before the backoff (10 s after a first failure).
        let soon = database
            .number("SELECT MIN(next_attempt_unix_ms) FROM outbox WHERE sent_at IS NULL")
            .await;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        assert!((now + 5_000..=now + 10_000).contains(&soon), "{soon} {now}");
        let report = store.dispatch_notifications(&sender, 100).await.unwrap();
        assert_eq!((report.taken(), report.pending), (0, 3));

        // Time passes: one more failure, then they go.
        database
            .execute("UPDATE outbox SET next_attempt_unix_ms = 0 WHERE sent_at IS NULL")
            .await;
        sender.failures.store(1, std::sync::atomic::Ordering::SeqCst);
        let report = store.dispatch_notifications(&sender, 100).await.unwrap();
        assert_eq!((report.sent, report.failed, report.pending), (2, 1, 1));
        let failed = &outbox_rows(&database).await[0];
        assert_eq!((failed.attempts, failed.sent_at.as_deref()), (2, None));
        let soon = database
            .number("SELECT MIN(next_attempt_unix_ms) FROM outbox WHERE sent_at IS NULL")
            .await;
        assert!(soon > now + 15_000, "the second wait doubles: {soon} {now}");
        database
            .execute("UPDATE outbox SET next_attempt_unix_ms = 0 WHERE sent_at IS NULL")
            .await;
        let report = store.dispatch_notifications(&sender, 100).await.unwrap();
        assert_eq!((report.sent, report.failed, report.pending), (1, 0, 0));
        let report = store.dispatch_notifications(&sender, 100).await.unwrap();
        assert_eq!(report, DispatchReport::default());

        let mut taken = sender.ids();
        taken.sort();
        assert_eq!(taken, all, "each notice exactly once");
        let sent = sender.taken.lock().unwrap().clone();
        let by_id: BTreeMap<i64, &Notification> = sent.iter().map(|taken| (taken.id, taken)).collect();
        for row in outbox_rows(&database).await {
            let notification = by_id[&row.id];
            assert_eq!(notification.text, row.text);
            assert_eq!(notification.person, row.person_masked);
            assert_eq!(notification.kind.as_str(), row.kind);
            assert!(row.sent_at.is_some());
        }
        let stats = store.notification_stats();
        assert_eq!((stats.sent, stats.failed), (9, 4));
        database.drop_database().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_dispatchers_at_once_send_each_notice_once() {
    for database in fresh_databases("outbox_two").await {
        let (store, _) = prepared(&database).await;
        import_feed(&store, &read(INVOICES), 1024).await.unwrap();
        let all: Vec<i64> = outbox_rows(&database).await.iter().map(|row| row.id).collect();
        // Two servers on one database: two stores, two pools.
        let other = Store::open(database.url(), keys(), 4).await.unwrap();
        let sender = Arc::new(Recorder {
            pause_ms: 20,
            ..Recorder::default()
        });
        let mut tasks = Vec::new();
        for store in [store.clone(), other.clone()] {
            let sender = sender.clone();
            tasks.push(tokio::spawn(async move {
                let mut sent = 0;
                loop {
                    let report = store.dispatch_notifications(&*sender, 2).await.unwrap();
                    if report.taken() == 0 && report.pending == 0 {
                        return sent;
                    }
                    sent += report.sent;
                    tokio::task::yield_now().await;
                }
            }));
        }
        let mut per_dispatcher = Vec::new();
        for task in tasks {
            per_dispatcher.push(task.await.unwrap());
        }
        assert_eq!(per_dispatcher.iter().sum::<u64>(), 9, "{per_dispatcher:?}");
        let mut taken = sender.ids();
        taken.sort();
        assert_eq!(taken, all, "{}", database.url());
        database.drop_database().await;
    }
}

/// Writes through a log file sender, then stops the dispatcher (a panic,
/// as a crash would) after the `after`-th notification, before any is
/// marked sent.
#[derive(Debug)]
struct CrashAfter {
    log: LogFileSender,
    after: usize,
    written: std::sync::atomic::AtomicUsize,
}

impl Sender for CrashAfter {
    fn send(&self, notification: &Notification) -> Result<(), String> {
        self.log.send(notification)?;
        let written = self.written.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        if written == self.after {
            panic!("the dispatcher stopped after sending {written}");
        }
        Ok(())
    }
}

/// The ids in a notification log, in order.
fn logged_ids(path: &Path) -> Vec<i64> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<Notification>(line).unwrap().id)
        .collect()
}

#[tokio::test]
async fn a_dispatcher_stopped_between_sending_and_marking_writes_no_notice_twice() {
    for database in fresh_databases("outbox_crash").await {
        let (store, _) = prepared(&database).await;
        import_feed(&store, &read(INVOICES), 1024).await.unwrap();
        let all: Vec<i64> = outbox_rows(&database).await.iter().map(|row| row.id).collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notifications.log");
        let crashing = Arc::new(CrashAfter {
            log: LogFileSender::open(&path).unwrap(),
            after: 4,
            written: 0.into(),
        });
        let options = DispatchOptions {
            limit: 100,
            lease_ms: 0,
            ..DispatchOptions::default()
        };
        let stopped = {
            let store = store.clone();
            tokio::spawn(async move { store.dispatch_notifications_with(&*crashing, options).await })
        }
        .await;
        assert!(stopped.unwrap_err().is_panic());
        assert_eq!(logged_ids(&path), all[..4].to_vec());
        // Nothing was marked sent; the lease has passed: all are due again.
        assert!(outbox_rows(&database)
            .await
            .iter()
            .all(|row| row.sent_at.is_none()));

        // A restart: the log is read again; what it holds is not written
        // again, the rest is.
        let log = LogFileSender::open(&path).unwrap();
        let report = store.dispatch_notifications(&log, 100).await.unwrap();
        assert_eq!((report.sent, report.failed, report.pending), (9, 0, 0));
        assert_eq!(logged_ids(&path), all);
        // Marks lost some other way (a restored backup): still once.
        database
            .execute("UPDATE outbox SET sent_at = NULL, next_attempt_unix_ms = 0")
            .await;
        let log = LogFileSender::open(&path).unwrap();
        let report = store.dispatch_notifications(&log, 100).await.unwrap();
        assert_eq!(report.sent, 9);
        assert_eq!(logged_ids(&path), all);
        database.drop_database().await;
    }
}

// Periodic clearing (定期清算).

/// A spell reported late: person 033, whose bill INV005 was not eligible
/// when settled, holds DB since the start of 2024.
const LATE_SPELL: &str = "person_id,category,valid_from,valid_to\n110105196001010033,DB,2024-01-01,\n";

/// Settles every bill of the small fixture in canonical order; the second
/// bill under a number is refused in real time.
async fn settle_all(store: &Store) {
    let mut all = invoices();
    all.sort_by(|a, b| {
        a.settled_at
            .cmp(&b.settled_at)
            .then(a.invoice_no.cmp(&b.invoice_no))
    });
    for invoice in all {
        match store.settle(invoice.hospital.as_str(), &invoice, "H").await {
            Ok(_) | Err(SettleError::Conflict(_)) => {}
            Err(error) => panic!("{}: {error}", invoice.invoice_no),
        }
    }
}

/// What `jiuzhu simulate` grants each person in `year` over the example
/// policy, the spells files given and the small fixture's invoices.
fn simulated_totals(spell_files: &[&str], year: i32) -> BTreeMap<String, i64> {
    let policy = parse_policy(POLICY, &read(POLICY)).unwrap();
    let known: Vec<String> = policy
        .visit_types()
        .iter()
        .map(|(name, _)| name.clone())
        .collect();
    let mut spells = Vec::new();
    for text in spell_files {
        spells.extend(read_spells("spells.csv", text.as_bytes(), Some(&policy)).unwrap());
    }
    let batch = Batch::new(
        read_batch_invoices(INVOICES, read(INVOICES).as_bytes(), &known).unwrap(),
        known,
    );
    let run = batch
        .run(&policy, &SpellBook::new(&policy, &spells).unwrap(), &|_| {})
        .unwrap();
    let mut totals = BTreeMap::new();
    for (index, invoice) in batch.invoices().iter().enumerate() {
        if invoice.service_date.year() == year {
            *totals.entry(invoice.person.to_string()).or_insert(0) += run.decision(index).amount.fen();
        }
    }
    totals
}

/// What the store's counters grant each of `persons` in `year`.
async fn stored_totals(
    store: &Store,
    persons: impl Iterator<Item = &String>,
    year: i32,
) -> BTreeMap<String, i64> {
    let mut totals = BTreeMap::new();
    for person in persons {
        let id = jiuzhu_core::ResidentId::parse(person).unwrap();
        let granted = store
            .counters(id, year)
            .await
            .unwrap()
            .iter()
            .map(|(_, _, granted)| granted)
            .sum();
        totals.insert(person.clone(), granted);
    }
    totals
}

fn period(text: &str) -> jiuzhu_core::Period {
    jiuzhu_core::Period::parse(text).unwrap()
}

fn difference_rows(report: &ClearingReport) -> Vec<(String, i32, String, String, String, String)> {
    report
        .differences
        .iter()
        .map(|row| {
            let invoices: Vec<&str> = row.invoices.iter().map(InvoiceNo::as_str).collect();
            (
                row.person_id.to_string(),
                row.year,
                row.granted.to_string(),
                row.recomputed.to_string(),
                row.difference().to_string(),
                invoices.join(" "),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_clearing_pays_what_a_late_spell_owes_once_agrees_with_simulate_and_recovers_a_reversed_bill() {
    for database in fresh_databases("clearing").await {
        let (store, _) = prepared(&database).await;
        settle_all(&store).await;
        let late = import(&store, "late.csv", "民政", LATE_SPELL).await.unwrap();
        assert_eq!(late.marked, 1);

        // The report is prepared while the clearing is stored: what the
        // preparer saw is the report given back, its id the stored run's.
        let (first, prepared) = store
            .run_clearing_with(period("2024-06"), "admin", &|_| {}, |report| report.clone())
            .await
            .unwrap();
        assert_eq!(prepared.as_ref(), Some(&first));
        assert!(first.clearing_id > 0);
        // DB outpatient: no deductible, 70% of the 50.00 base.
        assert_eq!(
            difference_rows(&first),
            vec![(
                "110105196001010033".into(),
                2024,
                "0.00".into(),
                "35.00".into(),
                "35.00".into(),
                "INV005".into()
            )]
        );
        assert_eq!(first.top_ups(), (1, Fen::from_fen(3_500)));
        assert_eq!(first.recoveries(), (0, Fen::ZERO));
        assert_eq!((first.invoices, first.persons, first.invoices_changed), (7, 5, 1));
        assert!(first.marks_taken >= 1);
        // INV002 is capped at the outpatient pool's 3,000.00.
        assert_eq!(first.capped.len(), 1);
        assert_eq!(first.capped[0].invoice_no.as_str(), "INV002");
        assert_eq!(
            (first.capped[0].raw, first.capped[0].amount),
            (Fen::from_fen(350_000), Fen::from_fen(300_000))
        );
        // The marks of 2024 are taken; the fixture's 2023 start is another year's.
        let pending = store.pending_recomputations().await.unwrap();
        assert!(
            pending.iter().all(|mark| mark.since.year() == 2023),
            "{pending:?}"
        );
        // The counters now hold what simulate grants over every input.
        let expected = simulated_totals(&[&read(SPELLS), LATE_SPELL], 2024);
        assert_eq!(stored_totals(&store, expected.keys(), 2024).await, expected);

        // Over unchanged data, nothing new. A preparer that fails gives
        // nothing back; the clearing is stored all the same.
        let (again, prepared) = store
            .run_clearing_with(period("2024-06"), "admin", &|_| {}, |report| -> u64 {
                panic!("the preparer of clearing {} fails", report.clearing_id)
            })
            .await
            .unwrap();
        assert_eq!(prepared, None);
        assert!(again.differences.is_empty(), "{:?}", again.differences);
        assert_eq!(
            (again.invoices_changed, again.counters_updated, again.marks_taken),
            (0, 0, 0)
        );
        assert_eq!(again.clearing_id, first.clearing_id + 1);

        // The hospital cancels INV005: the reversal gives back what the
        // clearing granted, and the next clearing recovers the top-up.
        let reversed = store
            .reverse("H002", &InvoiceNo::parse("INV005").unwrap(), "H002")
            .await
            .unwrap();
        assert!(reversed.reversed);
        let person = jiuzhu_core::ResidentId::parse("110105196001010033").unwrap();
        assert_eq!(
            store.counters(person, 2024).await.unwrap(),
            vec![("outpatient".to_owned(), 0, 0)]
        );
        let recovery = store
            .run_clearing(period("2024-Q3"), "admin", &|_| {})
            .await
            .unwrap();
        assert_eq!(
            difference_rows(&recovery),
            vec![(
                "110105196001010033".into(),
                2024,
                "35.00".into(),
                "0.00".into(),
                "-35.00".into(),
                "INV005".into()
            )]
        );
        assert_eq!(recovery.recoveries(), (1, Fen::from_fen(3_500)));
        let last = store
            .run_clearing(period("2024"), "admin", &|_| {})
            .await
            .unwrap();
        assert!(last.differences.is_empty(), "{:?}", last.differences);
        assert_eq!(database.number("SELECT COUNT(*) FROM clearing_lines").await, 2);
        assert_eq!(database.number("SELECT COUNT(*) FROM clearings").await, 4);
        assert!(store.verify_audit().await.unwrap().is_ok());
        database.drop_database().await;
    }
}

#[tokio::test]
async fn a_spell_ended_earlier_makes_a_recovery_and_the_counters_follow_the_recomputation() {
    for database in fresh_databases("clearing_recovery").await {
        let (store, _) = prepared(&database).await;
        settle_all(&store).await;
        import(&store, "ended.csv", "民政", ENDED_EARLIER).await.unwrap();
        let report = store
            .run_clearing(period("2024-04"), "admin", &|_| {})
            .await
            .unwrap();
        // INV002, served 2024-04-01 after the spell now ends, was granted 3,000.00.
        assert_eq!(
            difference_rows(&report),
            vec![(
                "110105196001010017".into(),
                2024,
                "5250.00".into(),
                "2250.00".into(),
                "-3000.00".into(),
                "INV002".into()
            )]
        );
        let person = jiuzhu_core::ResidentId::parse("110105196001010017").unwrap();
        assert_eq!(
            store.counters(person, 2024).await.unwrap(),
            vec![
                ("inpatient".to_owned(), 0, 225_000),
                ("outpatient".to_owned(), 0, 0)
            ]
        );
        // The spells as they stand: the open DB spell superseded by the ended one.
        let current: String = read(SPELLS)
            .lines()
            .filter(|line| !line.contains("110105196001010017"))
            .map(|line| format!("{line}\n"))
            .collect();
        let expected = simulated_totals(&[&current, ENDED_EARLIER], 2024);
        assert_eq!(stored_totals(&store, expected.keys(), 2024).await, expected);

        // The recovery is reviewed: by a reviewer, with a reason, once; a
        // line to recover is repaid, recorded by an approver.
        use jiuzhu_store::{RecoveryStatus, RecoveryVerdict, Role};
        store.add_staff("rev", &[Role::Reviewer], "admin").await.unwrap();
        store
            .add_staff("cashier", &[Role::Approver], "admin")
            .await
            .unwrap();
        let lines = store.recoveries("rev").await.unwrap();
        assert_eq!(lines.len(), 1);
        let line = &lines[0];
        assert_eq!(
            (
                line.status,
                line.amount,
                line.person_masked.as_str(),
                line.invoices.as_str()
            ),
            (
                RecoveryStatus::ToReview,
                Fen::from_fen(300_000),
                "110105********0017",
                "INV002"
            )
        );
        let before = database.dump().await;
        for (actor, reason) in [("cashier", "收回"), ("nobody", "收回"), ("rev", " ")] {
            let refused = store
                .review_recovery(line.id, RecoveryVerdict::Recover, reason, actor)
                .await;
            assert!(refused.is_err(), "{actor}: {refused:?}");
        }
        assert!(store
            .record_repayment(line.id, "银行流水 001", "cashier")
            .await
            .is_err());
        assert_eq!(database.dump().await, before);
        let reviewed = store
            .review_recovery(
                line.id,
                RecoveryVerdict::Recover,
                "身份终止后的门诊费用，应予追回",
                "rev",
            )
            .await
            .unwrap();
        assert_eq!(reviewed.status, RecoveryStatus::ToRecover);
        assert!(store
            .review_recovery(line.id, RecoveryVerdict::Waive, "again", "rev")
            .await
            .is_err());
        assert!(store
            .record_repayment(line.id, "银行流水 001", "rev")
            .await
            .is_err());
        let repaid = store
            .record_repayment(line.id, "银行流水 001", "cashier")
            .await
            .unwrap();
        assert_eq!(repaid.status, RecoveryStatus::Repaid);
        assert_eq!(repaid.steps.len(), 2);
        assert_eq!(repaid.steps[1].1, "银行流水 001");
        assert!(store
            .record_repayment(line.id, "银行流水 002", "cashier")
            .await
            .is_err());
        // Another year is another clearing: 2023 has nothing to change.
        let other = store
            .run_clearing(period("2023"), "admin", &|_| {})
            .await
            .unwrap();
        assert!(other.differences.is_empty());
        assert_eq!(other.invoices, 1);
        database.drop_database().await;
    }
}

#[tokio::test]
async fn a_clearing_without_a_policy_stores_nothing() {
    for database in fresh_databases("clearing_no_policy").await {
        let store = Store::open(database.url(), keys(), 2).await.unwrap();
        let before = database.dump().await;
        let refused = store.run_clearing(period("2024"), "admin", &|_| {}).await;
        assert!(matches!(refused, Err(ClearingError::NoPolicy)), "{refused:?}");
        // Nor is a report prepared for it.
        let prepared = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = prepared.clone();
        let refused = store
            .run_clearing_with(period("2024"), "admin", &|_| {}, move |_| {
                seen.store(true, std::sync::atomic::Ordering::SeqCst)
            })
            .await;
        assert!(matches!(refused, Err(ClearingError::NoPolicy)), "{refused:?}");
        assert!(!prepared.load(std::sync::atomic::Ordering::SeqCst));
        assert_eq!(database.dump().await, before);
        database.drop_database().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bill_settled_while_the_clearing_recomputes_is_recomputed_again_before_storing() {
    for database in fresh_databases("clearing_race").await {
        let (store, _) = prepared(&database).await;
        settle_all(&store).await;
        import(&store, "late.csv", "民政", LATE_SPELL).await.unwrap();
        // A new bill of person 033 is settled after the clearing read the
        // year and before it stores what it found.
        let mut late_bill = invoice("INV005");
        late_bill.invoice_no = InvoiceNo::parse("INV009").unwrap();
        late_bill.settled_at = jiuzhu_core::Timestamp::parse("2024-06-01T10:00:00+08:00").unwrap();
        late_bill.amounts =
            jiuzhu_core::BillAmounts::new(Fen::from_fen(10_000), Fen::ZERO, Fen::from_fen(10_000), Fen::ZERO)
                .unwrap();
        let handle = tokio::runtime::Handle::current();
        let settled = std::sync::Mutex::new(None);
        let stage = |what: &str| {
            if what.starts_with("recomputing") {
                let answer =
                    tokio::task::block_in_place(|| handle.block_on(store.settle("H002", &late_bill, "H002")));
                *settled.lock().unwrap() = Some(answer.unwrap().response.amount);
            }
        };
        let report = store.run_clearing(period("2024"), "admin", &stage).await.unwrap();
        assert_eq!(settled.lock().unwrap().as_deref(), Some("70.00"));
        assert_eq!(report.persons_rechecked, 1);
        // The person recomputed again is counted once, with the new bill.
        assert_eq!((report.invoices, report.persons), (8, 5));
        // Granted: INV005 nothing, INV009 70.00; owed: 35.00 and 70.00.
        assert_eq!(
            difference_rows(&report),
            vec![(
                "110105196001010033".into(),
                2024,
                "70.00".into(),
                "105.00".into(),
                "35.00".into(),
                "INV005".into()
            )]
        );
        let person = jiuzhu_core::ResidentId::parse("110105196001010033").unwrap();
        assert_eq!(
            store.counters(person, 2024).await.unwrap(),
            vec![("outpatient".to_owned(), 0, 10_500)]
        );
        let again = store
            .run_clearing(period("2024"), "admin", &|_| {})
            .await
            .unwrap();
        assert!(again.differences.is_empty(), "{:?}", again.differences);
        database.drop_database().await;
    }
}

#[tokio::test]
async fn a_persons_story_tells_every_step_in_order_and_each_read_is_logged() {
    for database in fresh_databases("story").await {
        let (store, _) = prepared(&database).await;
        settle_all(&store).await;
        import(&store, "late.csv", "民政", LATE_SPELL).await.unwrap();
        store
            .run_clearing(period("2024"), "admin", &|_| {})
            .await
            .unwrap();
        let person = jiuzhu_core::ResidentId::parse("110105196001010033").unwrap();
        let entries_before = database.number("SELECT COUNT(*) FROM audit_log").await;
        let story = store
            .person_story(person, "auditor:wang", "complaint 17")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(story.masked_id, person.masked());
        let kinds: Vec<&str> = story.events.iter().map(|event| event.kind.as_str()).collect();
        assert_eq!(
            kinds,
            ["decision", "spell", "recomputed", "clearing"],
            "{story:#?}"
        );
        assert!(
            story.events[0].summary.contains("INV005") && story.events[0].summary.contains("not_eligible")
        );
        assert!(!story.events[0].details.is_empty());
        assert!(story.events[1]
            .summary
            .contains("spell DB 2024-01-01 to open, reported by 民政, file late.csv"));
        assert!(
            story.events[2].summary.contains("0.00 became 35.00 (assisted)"),
            "{}",
            story.events[2].summary
        );
        assert!(
            story.events[3]
                .summary
                .contains("top-up to pay of 35.00 for 2024"),
            "{}",
            story.events[3].summary
        );
        let sorted = story.events.windows(2).all(|pair| pair[0].at <= pair[1].at);
        assert!(sorted);

        // The read is in the audit trail, masked; so is a read of nobody.
        let nobody = jiuzhu_core::ResidentId::parse("11010519491231002X").unwrap();
        assert!(store
            .person_story(nobody, "auditor:wang", "search")
            .await
            .unwrap()
            .is_none());
        assert_eq!(
            database.number("SELECT COUNT(*) FROM audit_log").await,
            entries_before + 2
        );
        assert_eq!(
            database
                .number(
                    "SELECT COUNT(*) FROM audit_log WHERE action = 'person.read' AND actor = 'auditor:wang'"
                )
                .await,
            2
        );
        assert_eq!(
            database
                .number("SELECT COUNT(*) FROM audit_log WHERE subject LIKE '%110105196001010033%'")
                .await,
            0
        );
        assert!(store.verify_audit().await.unwrap().is_ok());
        database.drop_database().await;
    }
}

// Disbursement (拨付).

const ACCOUNTS: &str = "person_id,name,bank,account\n\
    110105196001010017,张三,农业银行,6228480012345678\n\
    110105196001010025,李四,工商银行,6222020200112233\n\
    110105196001010033,王五,建设银行,6217000010002000\n";

/// The staff of disbursement: a maker and a clerk, and a checker who
/// approves.
async fn disbursement_staff(store: &Store) {
    use jiuzhu_store::Role;
    for (name, roles) in [
        ("maker", &[Role::Reviewer, Role::Approver][..]),
        ("clerk", &[Role::Reviewer][..]),
        ("checker", &[Role::Approver][..]),
    ] {
        store.add_staff(name, roles, "admin").await.unwrap();
    }
}

fn bank_return(text: &str) -> Vec<jiuzhu_formats::bank::ReturnRow> {
    jiuzhu_formats::bank::read_bank_return("return.csv", text.as_bytes()).unwrap()
}

#[tokio::test]
async fn a_batch_pays_each_debt_once_is_approved_by_another_and_a_failed_line_waits_for_the_next_batch() {
    for database in fresh_databases("disburse").await {
        let (store, _) = prepared(&database).await;
        disbursement_staff(&store).await;
        import_feed(&store, &read(INVOICES), 1024).await.unwrap();
        import(&store, "late.csv", "民政", LATE_SPELL).await.unwrap();
        store
            .run_clearing(period("2024"), "admin", &|_| {})
            .await
            .unwrap();

        // An account for a person the store does not know refuses the file.
        let stranger = "person_id,name,bank,account\n11010519491231002X,某人,农业银行,6228480012345678\n";
        let rows = jiuzhu_formats::bank::read_bank_accounts("stranger.csv", stranger.as_bytes()).unwrap();
        let before = database.dump().await;
        let refused = store.load_bank_accounts("stranger.csv", &rows, "clerk").await;
        assert!(matches!(refused, Err(DisburseError::Refused(_))), "{refused:?}");
        assert_eq!(database.dump().await, before);
        let rows = jiuzhu_formats::bank::read_bank_accounts("accounts.csv", ACCOUNTS.as_bytes()).unwrap();
        let loaded = store
            .load_bank_accounts("accounts.csv", &rows, "clerk")
            .await
            .unwrap();
        assert_eq!((loaded.stored, loaded.unchanged), (3, 0));
        let again = store
            .load_bank_accounts("accounts.csv", &rows, "clerk")
            .await
            .unwrap();
        assert_eq!((again.stored, again.unchanged), (0, 3));

        // The feed's decisions (INV001 2,250.00 and INV002 3,000.00 of 017,
        // INV003 350.00 of 025) and the clearing's top-up of 033 (35.00);
        // 041 and 05X have no account yet.
        let made = store.create_batch("maker").await.unwrap();
        let batch = made.batch.unwrap();
        assert_eq!((batch.lines, batch.total), (3, Fen::from_fen(563_500)));
        assert_eq!(made.waiting_without_account, (2, Fen::from_fen(7_006)));
        assert!(matches!(
            store.export_batch(batch.id, "maker").await,
            Err(DisburseError::NotApproved(_))
        ));
        assert!(matches!(
            store.approve_batch(batch.id, "maker").await,
            Err(DisburseError::SelfApproval { .. })
        ));
        // Only a member of staff disburses, and only an approver approves
        // or exports.
        assert!(matches!(
            store.approve_batch(batch.id, "clerk").await,
            Err(DisburseError::NotApprover { .. })
        ));
        assert!(matches!(
            store.export_batch(batch.id, "clerk").await,
            Err(DisburseError::NotApprover { .. })
        ));
        assert!(matches!(
            store.create_batch("stranger").await,
            Err(DisburseError::NotStaff(_))
        ));
        let approved = store.approve_batch(batch.id, "checker").await.unwrap();
        assert_eq!(approved.approved_by.as_deref(), Some("checker"));
        assert!(matches!(
            store.approve_batch(batch.id, "checker").await,
            Err(DisburseError::AlreadyApproved(_))
        ));
        // Nothing is in two unpaid batches.
        let second = store.create_batch("maker").await.unwrap();
        assert!(second.batch.is_none(), "{second:?}");

        let lines = store.export_batch(batch.id, "checker").await.unwrap();
        let text = jiuzhu_formats::bank::payment_file_text(&lines);
        assert!(
            text.contains(",110105196001010017,张三,6228480012345678,5250.00,"),
            "{text}"
        );
        assert!(
            text.contains(",110105196001010025,李四,6222020200112233,350.00,"),
            "{text}"
        );
        assert!(
            text.contains(",110105196001010033,王五,6217000010002000,35.00,"),
            "{text}"
        );
        let line_of = |person: &str| {
            lines
                .iter()
                .find(|line| line.person.to_string() == person)
                .unwrap()
                .line_id
        };
        let (zhang, li, wang) = (
            line_of("110105196001010017"),
            line_of("110105196001010025"),
            line_of("110105196001010033"),
        );

        // A return with an unknown line, a line twice and an amount that
        // differs is refused whole, every problem named.
        let before = database.dump().await;
        let bad = format!("line_id,status,reason,amount\n{zhang},paid,,5250.00\n999,paid,,1.00\n{zhang},paid,,5250.00\n{li},paid,,350.01\n");
        match store
            .import_bank_return(batch.id, "return.csv", &bank_return(&bad), "clerk")
            .await
        {
            Err(DisburseError::Refused(problems)) => {
                let problems = problems.to_string();
                for expected in [
                    "return.csv:3: line_id",
                    "return.csv:4: line_id",
                    "return.csv:5: amount",
                ] {
                    assert!(problems.contains(expected), "{expected}: {problems}");
                }
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(database.dump().await, before);

        let good = format!("line_id,status,reason\n{zhang},paid,\n{li},failed,账户冻结\n{wang},paid,\n");
        let returned = store
            .import_bank_return(batch.id, "return.csv", &bank_return(&good), "clerk")
            .await
            .unwrap();
        assert!(returned.returned);
        assert_eq!(returned.paid, (2, Fen::from_fen(528_500)));
        assert_eq!(returned.failed, (1, Fen::from_fen(35_000)));
        // The batch's lines as the staff page lists them: the bank's answer
        // on each, the reason of the failed one, accounts masked.
        let lines = store.batch_lines(batch.id).await.unwrap().unwrap();
        let mut statuses: Vec<(i64, &str, Option<&str>)> = lines
            .iter()
            .map(|line| (line.id, line.status.as_str(), line.reason.as_deref()))
            .collect();
        statuses.sort_unstable();
        let mut expected = vec![
            (zhang, "paid", None),
            (li, "failed", Some("账户冻结")),
            (wang, "paid", None),
        ];
        expected.sort_unstable();
        assert_eq!(statuses, expected);
        assert_eq!(
            lines.iter().map(|line| line.amount.fen()).sum::<i64>(),
            528_500 + 35_000
        );
        for line in &lines {
            assert!(line.account_masked.contains('*'), "{line:?}");
            assert!(line.person_masked.contains("********"), "{line:?}");
        }
        assert_eq!(store.batch_lines(batch.id + 1000).await.unwrap(), None);
        // The same answers again: already answered, refused.
        assert!(matches!(
            store
                .import_bank_return(batch.id, "return.csv", &bank_return(&good), "clerk")
                .await,
            Err(DisburseError::Refused(_))
        ));

        // The failed line's debt goes into the next batch; the paid ones never again.
        let next = store.create_batch("maker").await.unwrap().batch.unwrap();
        assert_eq!((next.lines, next.total), (1, Fen::from_fen(35_000)));
        assert_eq!(store.batches().await.unwrap().len(), 2);
        assert!(store.verify_audit().await.unwrap().is_ok());
        database.drop_database().await;
    }
}

// A model of the money's path: random interleavings of real-time
// settlements, reversals, late spells, feed imports, clearings and bank
// batches, checked after every step.

/// A small deterministic generator (xorshift64*), so that a failing
/// sequence is found again from its seed.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

struct Model {
    persons: Vec<jiuzhu_core::ResidentId>,
    /// Every bill stored, and whether it was reversed.
    bills: Vec<(Invoice, bool)>,
    next_bill: u64,
    files: u64,
}

impl Model {
    fn bill(&mut self, dice: &mut Dice, step: u64) -> Invoice {
        let person = self.persons[dice.below(self.persons.len() as u64) as usize];
        self.next_bill += 1;
        let day = 1 + dice.below(360) as i32;
        let service_date = jiuzhu_core::Date::parse("2024-01-01")
            .unwrap()
            .add_days(day - 1)
            .unwrap();
        // Settled in the order the steps run, within 2024.
        let settled_at = jiuzhu_core::Timestamp::parse(&format!(
            "2024-12-31T{:02}:{:02}:{:02}+08:00",
            step / 3600 % 24,
            step / 60 % 60,
            step % 60
        ))
        .unwrap();
        let base = dice.below(400_000) as i64;
        let out_of_scope = dice.below(50_000) as i64;
        let fund = dice.below(100_000) as i64;
        Invoice {
            invoice_no: InvoiceNo::parse(&format!("M{:05}", self.next_bill)).unwrap(),
            person,
            hospital: jiuzhu_core::Hospital::parse("H001").unwrap(),
            visit_type: if dice.below(2) == 0 {
                "outpatient"
            } else {
                "inpatient"
            }
            .to_owned(),
            service_date,
            settled_at,
            amounts: jiuzhu_core::BillAmounts::new(
                Fen::from_fen(base + out_of_scope + fund),
                Fen::from_fen(fund),
                Fen::from_fen(base),
                Fen::from_fen(out_of_scope),
            )
            .unwrap(),
        }
    }
}

/// What the engine grants each person in 2024 over the bills not reversed
/// and the spells as they stand now.
async fn owed_now(store: &Store, model: &Model) -> BTreeMap<String, i64> {
    let policy = parse_policy(POLICY, &read(POLICY)).unwrap();
    let mut spells = Vec::new();
    for person in &model.persons {
        for stored in store.spell_history(*person).await.unwrap() {
            if stored.superseded_by.is_none() {
                spells.push(
                    jiuzhu_core::Spell::new(
                        *person,
                        stored.category,
                        stored.valid_from,
                        stored.valid_to,
                        Some(stored.source),
                    )
                    .unwrap(),
                );
            }
        }
    }
    let known: Vec<String> = policy
        .visit_types()
        .iter()
        .map(|(name, _)| name.clone())
        .collect();
    let invoices: Vec<jiuzhu_core::BatchInvoice> = model
        .bills
        .iter()
        .filter(|(_, reversed)| !reversed)
        .enumerate()
        .map(|(position, (invoice, _))| jiuzhu_core::BatchInvoice {
            settled_at: invoice.settled_at.clone(),
            invoice_no: invoice.invoice_no.clone(),
            person: invoice.person,
            base: invoice.amounts.in_scope_self_pay(),
            out_of_scope_self_pay: invoice.amounts.out_of_scope_self_pay(),
            service_date: invoice.service_date,
            position: position as u32,
            visit_type: known.iter().position(|name| *name == invoice.visit_type).unwrap() as u16,
        })
        .collect();
    let batch = Batch::new(invoices, known);
    let run = batch
        .run(&policy, &SpellBook::new(&policy, &spells).unwrap(), &|_| {})
        .unwrap();
    let mut owed: BTreeMap<String, i64> = model
        .persons
        .iter()
        .map(|person| (person.to_string(), 0))
        .collect();
    for (index, invoice) in batch.invoices().iter().enumerate() {
        *owed.get_mut(&invoice.person.to_string()).unwrap() += run.decision(index).amount.fen();
    }
    owed
}

/// Per person, a sum that `sql` selects as (masked ID, fen) rows.
async fn per_person(database: &Fresh, sql: &str) -> BTreeMap<String, i64> {
    let rows: Vec<(String, i64)> = match database {
        Fresh::Sqlite { url, .. } => {
            let mut connection = sqlx::SqliteConnection::connect(url).await.unwrap();
            sqlx::query_as(sqlx::AssertSqlSafe(sql.to_owned()))
                .fetch_all(&mut connection)
                .await
                .unwrap()
        }
        Fresh::Postgres { url, .. } => {
            let mut connection = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query_as(sqlx::AssertSqlSafe(sql.to_owned()))
                .fetch_all(&mut connection)
                .await
                .unwrap()
        }
    };
    rows.into_iter().collect()
}

/// Granted so far: decisions not reversed (or reversed after the bank paid
/// them) plus the clearings' lines.
const GRANTED: &str = "SELECT p.resident_id_masked, CAST(SUM(g.amount) AS BIGINT) FROM persons p JOIN ( \
    SELECT person_key, amount FROM decisions d WHERE kind = 'decision' AND (NOT EXISTS \
    (SELECT 1 FROM decisions r WHERE r.invoice_no = d.invoice_no AND r.kind = 'reversal') \
    OR EXISTS (SELECT 1 FROM payables b JOIN payment_items t ON t.payable_id = b.id \
    JOIN payment_lines l ON l.id = t.line_id WHERE b.kind = 'decision' AND b.reference = d.invoice_no \
    AND l.status = 'paid')) \
    UNION ALL SELECT person_key, CASE WHEN kind = 'top_up' THEN amount ELSE -amount END FROM clearing_lines \
    ) g ON g.person_key = p.person_key GROUP BY p.resident_id_masked";

/// Paid out: real-time decisions not reversed (deducted at the counter),
/// debts the bank paid, minus recoveries to review.
const PAID: &str = "SELECT p.resident_id_masked, CAST(SUM(g.amount) AS BIGINT) FROM persons p JOIN ( \
    SELECT d.person_key, d.amount FROM decisions d JOIN invoices i ON i.invoice_no = d.invoice_no \
    WHERE d.kind = 'decision' AND i.channel = 'realtime' AND NOT EXISTS \
    (SELECT 1 FROM decisions r WHERE r.invoice_no = d.invoice_no AND r.kind = 'reversal') \
    UNION ALL SELECT b.person_key, b.amount FROM payables b WHERE EXISTS (SELECT 1 FROM payment_items t \
    JOIN payment_lines l ON l.id = t.line_id WHERE t.payable_id = b.id AND l.status = 'paid') \
    UNION ALL SELECT person_key, -amount FROM clearing_lines WHERE kind = 'recovery' \
    ) g ON g.person_key = p.person_key GROUP BY p.resident_id_masked";

fn masked(owed: &BTreeMap<String, i64>) -> BTreeMap<String, i64> {
    owed.iter()
        .filter(|(_, amount)| **amount != 0)
        .map(|(person, amount)| (jiuzhu_core::ResidentId::parse(person).unwrap().masked(), *amount))
        .collect()
}

fn nonzero(map: BTreeMap<String, i64>) -> BTreeMap<String, i64> {
    map.into_iter().filter(|(_, amount)| *amount != 0).collect()
}

/// Exports, and answers every line of, each batch waiting; `fail` says
/// which lines the bank fails.
async fn pay_batches(store: &Store, fail: &mut dyn FnMut() -> bool) {
    let made = store.create_batch("maker").await.unwrap();
    let Some(batch) = made.batch else {
        return;
    };
    store.approve_batch(batch.id, "checker").await.unwrap();
    let lines = store.export_batch(batch.id, "checker").await.unwrap();
    let mut text = String::from("line_id,status,reason\n");
    for line in &lines {
        if fail() {
            text.push_str(&format!("{},failed,账户冻结\n", line.line_id));
        } else {
            text.push_str(&format!("{},paid,\n", line.line_id));
        }
    }
    let returned = store
        .import_bank_return(batch.id, "return.csv", &bank_return(&text), "clerk")
        .await
        .unwrap();
    assert_eq!(
        Fen::from_fen(returned.paid.1.fen() + returned.failed.1.fen()),
        batch.total
    );
}

#[tokio::test]
async fn random_interleavings_of_the_money_path_keep_every_rule_and_end_paying_what_simulate_grants() {
    for seed in [7u64, 1_234_567] {
        for database in fresh_databases(&format!("model_{seed}")).await {
            model_run(&database, seed).await;
            database.drop_database().await;
        }
    }
}

async fn model_run(database: &Fresh, seed: u64) {
    let store = with_policy(database).await;
    disbursement_staff(&store).await;
    let mut dice = Dice(seed);
    let mut model = Model {
        persons: (0..5)
            .map(|n| jiuzhu_core::ResidentId::from_leading_digits(11010519800101000 + n * 7).unwrap())
            .collect(),
        bills: Vec::new(),
        next_bill: seed % 1000 * 1000,
        files: 0,
    };
    // Each person starts as a recipient late in the year; spells only
    // ever start earlier, so that what is owed only grows.
    let mut starts: Vec<i32> = model
        .persons
        .iter()
        .map(|_| 200 + dice.below(150) as i32)
        .collect();
    let mut spells = String::from("person_id,category,valid_from,valid_to\n");
    for (person, start) in model.persons.iter().zip(&starts) {
        let from = jiuzhu_core::Date::parse("2024-01-01")
            .unwrap()
            .add_days(*start)
            .unwrap();
        spells.push_str(&format!("{person},DB,{from},\n"));
    }
    import(&store, "first.csv", "民政", &spells).await.unwrap();
    let mut accounts = String::from("person_id,name,bank,account\n");
    for (n, person) in model.persons.iter().enumerate() {
        accounts.push_str(&format!("{person},某{n},农业银行,62284800{n:08}\n"));
    }
    let rows = jiuzhu_formats::bank::read_bank_accounts("accounts.csv", accounts.as_bytes()).unwrap();
    store
        .load_bank_accounts("accounts.csv", &rows, "clerk")
        .await
        .unwrap();
    // Every person signed the commitment letter; a reviewer reviews.
    let letter = store.publish_letter("2024", "承诺书", "admin").await.unwrap();
    for person in &model.persons {
        store
            .sign_letter(
                *person,
                &letter.sha256,
                jiuzhu_store::ApplyChannel::Web,
                "citizen",
            )
            .await
            .unwrap();
    }
    store
        .add_staff("reviewer", &[jiuzhu_store::Role::Reviewer], "admin")
        .await
        .unwrap();

    for step in 1..=60u64 {
        match dice.below(12) {
            0..=2 => {
                let bill = model.bill(&mut dice, step);
                store.settle("H001", &bill, "H001").await.unwrap();
                model.bills.push((bill, false));
            }
            3 => {
                let live: Vec<usize> = (0..model.bills.len())
                    .filter(|&index| !model.bills[index].1)
                    .collect();
                if let Some(&index) = live.get(dice.below(live.len().max(1) as u64) as usize) {
                    // A real-time bill, or a feed bill paid by the bank or not.
                    let number = model.bills[index].0.invoice_no.clone();
                    if store.reverse("H001", &number, "H001").await.is_ok() {
                        model.bills[index].1 = true;
                    }
                }
            }
            4 | 5 => {
                let mut bill = model.bill(&mut dice, step);
                // Feed bills are numbered apart.
                bill.invoice_no = InvoiceNo::parse(&format!("N{}", bill.invoice_no.as_str())).unwrap();
                let record = InvoiceRecord {
                    line: 2,
                    invoice: bill.clone(),
                };
                model.files += 1;
                store
                    .import_invoices(
                        &format!("feed-{}.csv", model.files),
                        vec![record],
                        "admin",
                        FeedOptions::default(),
                        &|_| {},
                    )
                    .await
                    .unwrap();
                model.bills.push((bill, false));
            }
            6 => {
                let index = dice.below(model.persons.len() as u64) as usize;
                starts[index] = (starts[index] - 30 - dice.below(90) as i32).max(0);
                let from = jiuzhu_core::Date::parse("2024-01-01")
                    .unwrap()
                    .add_days(starts[index])
                    .unwrap();
                model.files += 1;
                let text = format!(
                    "person_id,category,valid_from,valid_to\n{},DB,{from},\n",
                    model.persons[index]
                );
                import(&store, &format!("late-{}.csv", model.files), "民政", &text)
                    .await
                    .unwrap();
            }
            7 | 8 => {
                store
                    .run_clearing(period("2024"), "admin", &|_| {})
                    .await
                    .unwrap();
                // Right after a clearing, what was granted is what is owed.
                let owed = owed_now(&store, &model).await;
                assert_eq!(
                    nonzero(per_person(database, GRANTED).await),
                    masked(&owed),
                    "seed {seed} step {step}"
                );
            }
            10 | 11 => {
                // An application for a bill of a hospital not connected:
                // decided at once when clean; otherwise (the person not
                // yet eligible on the service date) approved or rejected.
                let mut bill = model.bill(&mut dice, step);
                bill.invoice_no = InvoiceNo::parse(&format!("A{}", bill.invoice_no.as_str())).unwrap();
                bill.hospital = jiuzhu_core::Hospital::parse("外市医院").unwrap();
                let request = jiuzhu_formats::application::ApplicationRequest {
                    person: bill.person,
                    bills: vec![jiuzhu_formats::application::ApplicationBill {
                        invoice_no: bill.invoice_no.clone(),
                        hospital: bill.hospital.clone(),
                        visit_type: bill.visit_type.clone(),
                        service_date: bill.service_date,
                        settled_at: bill.settled_at.clone(),
                        amounts: [
                            bill.amounts.total(),
                            bill.amounts.fund_paid(),
                            bill.amounts.in_scope_self_pay(),
                            bill.amounts.out_of_scope_self_pay(),
                        ],
                        scan: None,
                    }],
                };
                let settings = jiuzhu_store::AcceptanceSettings {
                    filing_deadline_days: 365,
                    today: Some(jiuzhu_core::Date::parse("2024-12-31").unwrap()),
                };
                let view = store
                    .submit_application(&request, jiuzhu_store::ApplyChannel::Web, "citizen", settings)
                    .await
                    .unwrap();
                let state = match view.summary.state {
                    jiuzhu_store::ApplicationState::NeedsReview => {
                        let verdict = if dice.below(2) == 0 {
                            jiuzhu_store::Verdict::Approve
                        } else {
                            jiuzhu_store::Verdict::Reject
                        };
                        store
                            .review_application(view.summary.id, verdict, "审核", "reviewer")
                            .await
                            .unwrap()
                            .summary
                            .state
                    }
                    other => other,
                };
                if state == jiuzhu_store::ApplicationState::Decided {
                    model.bills.push((bill, false));
                } else {
                    assert_eq!(
                        state,
                        jiuzhu_store::ApplicationState::Rejected,
                        "seed {seed} step {step}"
                    );
                }
            }
            _ => pay_batches(&store, &mut || dice.below(4) == 0).await,
        }
        // After every step: the chain verifies; no debt is paid twice.
        assert!(
            store.verify_audit().await.unwrap().is_ok(),
            "seed {seed} step {step}"
        );
        let twice = database
            .number(
                "SELECT COUNT(*) FROM (SELECT t.payable_id FROM payment_items t JOIN payment_lines l ON l.id = t.line_id \
                 WHERE l.status = 'paid' GROUP BY t.payable_id HAVING COUNT(*) > 1) twice",
            )
            .await;
        assert_eq!(twice, 0, "seed {seed} step {step}");
    }
    // A final clearing, then batches until everything is paid.
    store
        .run_clearing(period("2024"), "admin", &|_| {})
        .await
        .unwrap();
    for _ in 0..5 {
        pay_batches(&store, &mut || false).await;
    }
    let owed = owed_now(&store, &model).await;
    assert_eq!(
        nonzero(per_person(database, GRANTED).await),
        masked(&owed),
        "seed {seed}"
    );
    assert_eq!(
        nonzero(per_person(database, PAID).await),
        masked(&owed),
        "seed {seed}"
    );
    assert!(
        owed.values().any(|amount| *amount > 0),
        "seed {seed}: the model should owe something"
    );
}

#[tokio::test]
async fn a_feed_bill_reversed_after_the_bank_paid_it_is_recovered_and_one_reversed_before_is_never_paid() {
    for database in fresh_databases("reversed_paid").await {
        let (store, _) = prepared(&database).await;
        disbursement_staff(&store).await;
        import_feed(&store, &read(INVOICES), 1024).await.unwrap();
        let rows = jiuzhu_formats::bank::read_bank_accounts("accounts.csv", ACCOUNTS.as_bytes()).unwrap();
        store
            .load_bank_accounts("accounts.csv", &rows, "clerk")
            .await
            .unwrap();
        let batch = store.create_batch("maker").await.unwrap().batch.unwrap();
        store.approve_batch(batch.id, "checker").await.unwrap();
        let lines = store.export_batch(batch.id, "checker").await.unwrap();
        let line_of = |person: &str| {
            lines
                .iter()
                .find(|line| line.person.to_string() == person)
                .unwrap()
                .line_id
        };
        let answer = format!(
            "line_id,status,reason\n{},paid,\n{},failed,账户冻结\n",
            line_of("110105196001010017"),
            line_of("110105196001010025")
        );
        store
            .import_bank_return(batch.id, "return.csv", &bank_return(&answer), "clerk")
            .await
            .unwrap();

        // INV001 (2,250.00, paid) and INV003 (350.00, its line failed) are cancelled.
        store
            .reverse("H001", &InvoiceNo::parse("INV001").unwrap(), "H001")
            .await
            .unwrap();
        store
            .reverse("市第一人民医院", &InvoiceNo::parse("INV003").unwrap(), "H")
            .await
            .unwrap();
        // The failed line's debt is cancelled with its bill: never paid.
        let next = store.create_batch("maker").await.unwrap();
        assert!(next.batch.is_none(), "{next:?}");
        // What the bank paid for INV001 is recovered.
        let report = store
            .run_clearing(period("2024"), "admin", &|_| {})
            .await
            .unwrap();
        assert_eq!(
            difference_rows(&report),
            vec![(
                "110105196001010017".into(),
                2024,
                "5250.00".into(),
                "3000.00".into(),
                "-2250.00".into(),
                "INV001".into()
            )]
        );
        let again = store
            .run_clearing(period("2024"), "admin", &|_| {})
            .await
            .unwrap();
        assert!(again.differences.is_empty(), "{:?}", again.differences);
        database.drop_database().await;
    }
}
