//! SQLite's write-ahead log is copied back into the database file by the
//! store's background checkpoint, not by the commit of a settlement: the
//! store turns SQLite's automatic checkpoint off, so without the background
//! one the database file would never receive what was written.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use jiuzhu_formats::{parse_policy, read_invoices, read_spell_rows};
use jiuzhu_store::{DataKeys, SpellFile, Store};
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

/// The decisions found in the database file alone, read from a copy of it
/// without its write-ahead log; `None` while the copy cannot be read (a
/// checkpoint was writing it).
async fn decisions_in_file_alone(database: &Path, scratch: &Path) -> Option<i64> {
    let copy = scratch.join("copy.db");
    let _ = std::fs::remove_file(scratch.join("copy.db-wal"));
    let _ = std::fs::remove_file(scratch.join("copy.db-shm"));
    std::fs::copy(database, &copy).ok()?;
    let url = format!("sqlite://{}", copy.display());
    let mut connection = sqlx::SqliteConnection::connect(&url).await.ok()?;
    let count = sqlx::query_scalar("SELECT count(*) FROM decisions")
        .fetch_one(&mut connection)
        .await
        .ok();
    connection.close().await.ok()?;
    count
}

#[tokio::test]
async fn what_was_settled_reaches_the_database_file_without_any_commit_copying_it() {
    let directory = tempfile::tempdir().unwrap();
    let database = directory.path().join("jiuzhu.db");
    let scratch = tempfile::tempdir().unwrap();
    let store = Store::open(
        &format!("sqlite://{}", database.display()),
        DataKeys::from_bytes([7; 32], [9; 32]),
        4,
    )
    .await
    .unwrap();
    let policy = parse_policy(POLICY, &read(POLICY)).unwrap();
    store.load_policy(&read(POLICY), &policy, "admin").await.unwrap();
    let spells = read(SPELLS);
    let rows = read_spell_rows(SPELLS, spells.as_bytes(), Some(&policy)).unwrap();
    store
        .import_spells(&SpellFile::new("民政", SPELLS, spells.as_bytes(), &rows), "admin")
        .await
        .unwrap();
    let known: Vec<String> = policy
        .visit_types()
        .iter()
        .map(|(name, _)| name.clone())
        .collect();
    let mut settled = std::collections::HashSet::new();
    for invoice in read_invoices(INVOICES, read(INVOICES).as_bytes(), &known).unwrap() {
        if store
            .settle(invoice.hospital.as_str(), &invoice, "H")
            .await
            .is_ok()
        {
            settled.insert(invoice.invoice_no.to_string());
        }
    }
    assert!(settled.len() >= 5, "the fixture settles bills");

    // SQLite's own checkpoint would wait for 1,000 pages of log; these few
    // settlements are far below that, so only the store's background
    // checkpoint can bring them into the file, within a few of its rounds.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = None;
    while Instant::now() < deadline {
        seen = decisions_in_file_alone(&database, scratch.path()).await;
        if seen == Some(settled.len() as i64) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        seen,
        Some(settled.len() as i64),
        "the database file alone holds every decision once the background checkpoint ran"
    );
    drop(store);
}
