//! What the tests that run the real binary share: running a command, and a
//! `jiuzhu serve` that stops when dropped.

#![allow(dead_code, reason = "each test file uses a part")]

pub mod browser;

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub const BINARY: &str = env!("CARGO_BIN_EXE_jiuzhu");

/// The repository's root, for its fixtures.
pub fn repository() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `jiuzhu ARGS` in `dir` (without the caller's JIUZHU_* settings);
/// it must succeed. Returns standard output.
pub fn jiuzhu(dir: &Path, args: &[&str]) -> String {
    let output = Command::new(BINARY)
        .current_dir(dir)
        .env_remove("JIUZHU_DATA_KEY")
        .env_remove("JIUZHU_DATABASE")
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// A running `jiuzhu serve`, killed when dropped.
pub struct Server {
    pub child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `jiuzhu serve` on `database` and a free port; its standard error
/// goes to `log` (or nowhere).
pub fn serve(dir: &Path, database: &str, log: Option<std::fs::File>) -> Server {
    let mut child = Command::new(BINARY)
        .current_dir(dir)
        .env_remove("JIUZHU_DATA_KEY")
        .args(["serve", "--listen", "127.0.0.1:0", "--database", database])
        .stdout(Stdio::piped())
        .stderr(log.map_or_else(Stdio::null, Stdio::from))
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .split_whitespace()
        .find(|word| word.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    Server { child, base }
}

/// Kills the server at once (SIGKILL), as a crash would.
pub fn kill(server: &mut Server) {
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}

/// Stores a policy and a department's spells in `database`, as a bureau
/// does before it serves.
pub fn load_policy_and_spells(dir: &Path, database: &str, policy: &str, spells: &str) {
    jiuzhu(dir, &["policy", "load", policy, "--database", database]);
    jiuzhu(
        dir,
        &[
            "import",
            "spells",
            spells,
            "--source",
            "民政",
            "--database",
            database,
        ],
    );
}

/// The visit types of `data/policy.toml` and the invoices of
/// `data/invoices.csv`, as `jiuzhu gen` wrote them under `dir`.
pub fn generated_invoices(dir: &Path) -> (Vec<String>, Vec<jiuzhu_core::Invoice>) {
    let policy = jiuzhu_formats::read_policy_file(&dir.join("data/policy.toml"), "policy.toml").unwrap();
    let known: Vec<String> = policy
        .visit_types()
        .iter()
        .map(|(name, _)| name.clone())
        .collect();
    let invoices =
        jiuzhu_formats::read_invoices_file(&dir.join("data/invoices.csv"), "invoices.csv", &known).unwrap();
    (known, invoices)
}

/// A SQLite store in `path` with the example policy, the small fixture's
/// spells and its bills imported as the insurance feed; its URL.
pub fn small_store_with_feed(path: &Path) -> String {
    jiuzhu(path, &["init"]);
    let database = format!("sqlite://{}", path.join("jiuzhu.db").display());
    let data = repository().join("crates/cli/tests/data/small");
    let policy = repository().join("fixtures/example-policy.toml");
    load_policy_and_spells(
        path,
        &database,
        policy.to_str().unwrap(),
        data.join("spells.csv").to_str().unwrap(),
    );
    let invoices = data.join("invoices.csv");
    jiuzhu(
        path,
        &[
            "import",
            "invoices",
            invoices.to_str().unwrap(),
            "--database",
            &database,
        ],
    );
    database
}

/// Runs `jiuzhu ARGS` in `dir` (without the caller's JIUZHU_* settings),
/// whether it succeeds or not: its exit status, standard output and
/// standard error.
pub fn jiuzhu_status(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(BINARY)
        .current_dir(dir)
        .env_remove("JIUZHU_DATA_KEY")
        .env_remove("JIUZHU_DATABASE")
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A running `jiuzhu serve --demo` of a small district on `database` (a
/// SQLite file that must not exist yet), and what it printed after its
/// address: the line with the staff's password, one line per member of
/// staff, then the resident's login.
pub fn serve_demo(dir: &Path, database: &str) -> (Server, Vec<String>) {
    serve_demo_with(dir, database, &[])
}

/// [`serve_demo`] with more `JIUZHU_*` settings in its environment.
pub fn serve_demo_with(dir: &Path, database: &str, environment: &[(&str, &str)]) -> (Server, Vec<String>) {
    spawn_demo(
        dir,
        database,
        environment,
        &["--demo-people", "400", "--demo-invoices", "2000"],
    )
}

/// `jiuzhu serve --demo --demo-district DISTRICT` on `database`, a store
/// filled already from the district generated into DISTRICT; as
/// [`serve_demo`].
pub fn serve_demo_over(dir: &Path, database: &str, district: &str) -> (Server, Vec<String>) {
    spawn_demo(dir, database, &[], &["--demo-district", district])
}

fn spawn_demo(
    dir: &Path,
    database: &str,
    environment: &[(&str, &str)],
    more: &[&str],
) -> (Server, Vec<String>) {
    let mut child = Command::new(BINARY)
        .current_dir(dir)
        .env_remove("JIUZHU_DATA_KEY")
        .env_remove("JIUZHU_DATABASE")
        .envs(environment.iter().copied())
        .args([
            "serve",
            "--demo",
            "--listen",
            "127.0.0.1:0",
            "--database",
            database,
        ])
        .args(more)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let base = first
        .split_whitespace()
        .find(|word| word.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .to_owned();
    assert!(first.contains(database), "{first}");
    let printed: Vec<String> = (0..6).map(|_| lines.next().unwrap().unwrap()).collect();
    (Server { child, base }, printed)
}

/// The staff's password a demo printed.
pub fn demo_password(printed: &[String]) -> String {
    printed[0]
        .rsplit("password ")
        .next()
        .unwrap()
        .trim_end_matches(':')
        .to_owned()
}

/// The resident's ID and phone a demo printed.
pub fn demo_resident(printed: &[String]) -> (String, String) {
    let words: Vec<&str> = printed[5].split_whitespace().collect();
    let after = |word: &str| {
        words[words.iter().position(|found| *found == word).unwrap() + 1]
            .trim_end_matches(';')
            .to_owned()
    };
    (after("ID"), after("phone"))
}
