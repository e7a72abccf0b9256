//! What the server's tests share: the repository's fixtures, a fresh SQLite
//! store with the example policy (and the small fixture's spells and
//! bills), the real server on port 0, and a browser. Each test file uses
//! part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;

use jiuzhu_core::Policy;
use jiuzhu_formats::{parse_policy, read_invoice_records, read_spell_rows};
use jiuzhu_server::{Application, ApplicationSettings, ServerSettings};
use jiuzhu_store::{DataKeys, FeedOptions, Role, SpellFile, Store};

pub const POLICY: &str = "fixtures/example-policy.toml";
/// The small fixture's spells and bills.
pub const SPELLS: &str = "crates/cli/tests/data/small/spells.csv";
pub const INVOICES: &str = "crates/cli/tests/data/small/invoices.csv";
/// The password of the staff made by [`add_staff`].
pub const PASSWORD: &str = "correct horse battery";

/// A file of the repository, as text.
pub fn read(path: &str) -> String {
    let repository = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::read_to_string(repository.join(path)).unwrap()
}

/// A fresh SQLite store in `dir` with the example policy loaded.
pub async fn store_with_policy(dir: &Path) -> (Store, Policy) {
    let url = format!("sqlite://{}", dir.join("jiuzhu.db").display());
    let store = Store::open(&url, DataKeys::from_bytes([7; 32], [9; 32]), 4)
        .await
        .unwrap();
    let policy = parse_policy(POLICY, &read(POLICY)).unwrap();
    store.load_policy(&read(POLICY), &policy, "admin").await.unwrap();
    (store, policy)
}

/// Imports the small fixture's spells as sent by `source`.
pub async fn import_small_spells(store: &Store, policy: &Policy, source: &str) {
    let bytes = read(SPELLS);
    let rows = read_spell_rows(SPELLS, bytes.as_bytes(), Some(policy)).unwrap();
    let file = SpellFile::new(source, SPELLS, bytes.as_bytes(), &rows);
    store.import_spells(&file, "admin").await.unwrap();
}

/// Imports the small fixture's bills through the insurance feed.
pub async fn import_small_feed(store: &Store, policy: &Policy) {
    let known: Vec<String> = policy
        .visit_types()
        .iter()
        .map(|(name, _)| name.clone())
        .collect();
    let feed = read(INVOICES);
    let records = read_invoice_records("feed.csv", feed.as_bytes(), &known).unwrap();
    store
        .import_invoices("feed.csv", records, "admin", FeedOptions::default(), &|_| {})
        .await
        .unwrap();
}

/// Members of staff with their roles, each with [`PASSWORD`]; their API
/// tokens, in order.
pub async fn add_staff(store: &Store, staff: &[(&str, &[Role])]) -> Vec<(String, String)> {
    let mut tokens = Vec::new();
    for (name, roles) in staff {
        let token = store.add_staff(name, roles, "setup").await.unwrap();
        store.set_staff_password(name, PASSWORD, "setup").await.unwrap();
        tokens.push(((*name).to_owned(), token));
    }
    tokens
}

/// The settings the tests serve with unless they say otherwise.
pub fn settings() -> ServerSettings {
    ServerSettings {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        max_body_bytes: 64 * 1024,
        feed_max_body_bytes: 1024 * 1024,
        request_timeout_ms: 10_000,
        applications: ApplicationSettings::default(),
        demo: false,
        oidc: None,
    }
}

/// Serves `store` on a free port; its base URL (`http://127.0.0.1:PORT`).
pub async fn serve(store: Store, settings: ServerSettings) -> String {
    let application = Application::build(store, settings).await.unwrap();
    let address = format!("http://127.0.0.1:{}", application.port());
    tokio::spawn(application.run_until_stopped());
    address
}

/// A browser: keeps cookies, follows no redirect (the tests look at them).
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The value of `<input ... name="NAME" value="...">` in a page.
pub fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {page}"))
        + marker.len();
    page[start..start + page[start..].find('"').unwrap()].to_owned()
}
