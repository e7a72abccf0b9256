//! The administration commands, run as an administrator runs them: the real
//! binary on a real SQLite file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sqlx::Connection as _;

const BINARY: &str = env!("CARGO_BIN_EXE_jiuzhu");

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Bureau {
    dir: tempfile::TempDir,
}

impl Bureau {
    /// A folder with a fresh jiuzhu.toml (and its data key) pointing at a
    /// SQLite file in the same folder.
    fn new() -> Bureau {
        let bureau = Bureau {
            dir: tempfile::tempdir().unwrap(),
        };
        let output = bureau.run(&["init"]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        bureau
    }

    fn database(&self) -> String {
        format!("sqlite://{}", self.dir.path().join("jiuzhu.db").display())
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(BINARY)
            .current_dir(self.dir.path())
            .env_remove("JIUZHU_DATA_KEY")
            .env_remove("JIUZHU_DATABASE")
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs a command against the bureau's database; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let database = self.database();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--database", &database]);
        let output = self.run(&all);
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }
}

fn fixture(path: &str) -> String {
    repository().join(path).display().to_string()
}

#[test]
fn a_bureau_loads_a_policy_imports_spells_and_creates_a_key() {
    let bureau = Bureau::new();
    let policy = fixture("fixtures/example-policy.toml");
    let first = bureau.ok(&["policy", "load", &policy]);
    assert!(first.contains("stored as version 1"), "{first}");
    let again = bureau.ok(&["policy", "load", &policy]);
    assert!(again.contains("nothing changed"), "{again}");
    let spells = fixture("crates/cli/tests/data/small/spells.csv");
    let imported = bureau.ok(&["import", "spells", &spells, "--source", "民政"]);
    assert_eq!(
        imported,
        format!(
            "{spells} from 民政: 5 rows; 5 added, 0 changed, 0 unchanged; \
             4 new recipients, 0 changed, 0 ended; 0 marked for recomputation.\n"
        )
    );
    let imported = bureau.ok(&["import", "spells", &spells, "--source", "民政"]);
    assert!(
        imported.starts_with(&format!("{spells} from 民政: already imported on 20")),
        "{imported}"
    );
    assert!(
        imported.contains(" UTC by cli:") && imported.ends_with(": nothing changed.\n"),
        "{imported}"
    );
    let created = bureau.ok(&["apikey", "create", "--hospital", "H001"]);
    let key = created.lines().last().unwrap();
    assert!(key.starts_with("jz_") && key.len() > 40, "{created}");
    let other = bureau.ok(&["apikey", "create", "--hospital", "H001"]);
    assert_ne!(other.lines().last().unwrap(), key);
    let verified = bureau.ok(&["audit", "verify"]);
    assert!(
        verified.contains("The audit chain is whole: 4 entries"),
        "{verified}"
    );
}

/// A bureau with the example policy and the small fixture's spells.
fn bureau_with_spells() -> Bureau {
    let bureau = Bureau::new();
    bureau.ok(&["policy", "load", &fixture("fixtures/example-policy.toml")]);
    let spells = fixture("crates/cli/tests/data/small/spells.csv");
    bureau.ok(&["import", "spells", &spells, "--source", "民政"]);
    bureau
}

#[test]
fn a_changed_file_is_reported_in_plain_words() {
    let bureau = bureau_with_spells();
    std::fs::write(
        bureau.dir.path().join("changed.csv"),
        "person_id,category,valid_from,valid_to\n\
         110105196001010017,DB,2023-01-01,2024-03-31\n\
         110105196001010033,DB,2024-05-01,\n\
         110105196001010033,DB,2024-05-01,\n\
         110105196001010041,TK,2024-01-01,\n",
    )
    .unwrap();
    let imported = bureau.ok(&["import", "spells", "changed.csv", "--source", "民政"]);
    assert_eq!(
        imported,
        "changed.csv from 民政: 4 rows; 1 added, 1 changed, 1 unchanged, 1 duplicate row counted once; \
         1 new recipient, 1 changed, 1 ended; 0 marked for recomputation.\n"
    );
    let again = bureau.ok(&["import", "spells", "changed.csv", "--source", "民政"]);
    assert!(again.ends_with(": nothing changed.\n"), "{again}");
}

#[test]
fn overlapping_rows_are_refused_naming_both_lines_and_nothing_is_stored() {
    let bureau = bureau_with_spells();
    let before = bureau.ok(&["audit", "verify"]);
    std::fs::write(
        bureau.dir.path().join("bad.csv"),
        "person_id,category,valid_from,valid_to\n\
         110105196001010033,DB,2024-01-01,2024-06-30\n\
         110105196001010033,DB,2024-06-30,\n",
    )
    .unwrap();
    let database = bureau.database();
    let output = bureau.run(&[
        "import",
        "spells",
        "bad.csv",
        "--source",
        "民政",
        "--database",
        &database,
    ]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("bad.csv:3: valid_from: "), "{stderr}");
    assert!(stderr.contains("on line 2"), "{stderr}");
    assert!(stderr.ends_with("Nothing was imported.\n"), "{stderr}");
    assert!(output.stdout.is_empty());
    assert_eq!(bureau.ok(&["audit", "verify"]), before);
    let missing = bureau.run(&[
        "import",
        "spells",
        "nope.csv",
        "--source",
        "民政",
        "--database",
        &database,
    ]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).starts_with("nope.csv: cannot be opened: "));
}

#[test]
fn a_bad_policy_file_is_refused_with_its_line_and_nothing_is_stored() {
    let bureau = Bureau::new();
    let text = std::fs::read_to_string(repository().join("fixtures/example-policy.toml")).unwrap();
    std::fs::write(
        bureau.dir.path().join("bad.toml"),
        text.replacen("ratio = \"0.9\"", "ratio = \"9\"", 1),
    )
    .unwrap();
    let database = bureau.database();
    let output = bureau.run(&["policy", "load", "bad.toml", "--database", &database]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("bad.toml:"));
    let verified = bureau.ok(&["audit", "verify"]);
    assert!(verified.contains("0 entries"), "{verified}");
}

#[test]
fn importing_spells_before_any_policy_is_refused() {
    let bureau = Bureau::new();
    let database = bureau.database();
    let spells = fixture("crates/cli/tests/data/small/spells.csv");
    let output = bureau.run(&[
        "import",
        "spells",
        &spells,
        "--source",
        "民政",
        "--database",
        &database,
    ]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("jiuzhu policy load"));
}

#[test]
fn without_a_data_key_the_store_is_not_opened() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("jiuzhu.db").display());
    let output = Command::new(BINARY)
        .current_dir(dir.path())
        .env_remove("JIUZHU_DATA_KEY")
        .args(["audit", "verify", "--database", &database])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("jiuzhu init") || stderr.contains("JIUZHU_DATA_KEY"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("jiuzhu.db").exists(),
        "a database was created without a key"
    );
}

#[tokio::test]
async fn audit_verify_fails_and_names_an_edited_entry() {
    let bureau = Bureau::new();
    bureau.ok(&["policy", "load", &fixture("fixtures/example-policy.toml")]);
    bureau.ok(&["apikey", "create", "--hospital", "H001"]);
    bureau.ok(&["apikey", "create", "--hospital", "H002"]);
    let mut connection = sqlx::SqliteConnection::connect(&bureau.database()).await.unwrap();
    sqlx::raw_sql("UPDATE audit_log SET actor = 'someone else' WHERE sequence = 2")
        .execute(&mut connection)
        .await
        .unwrap();
    drop(connection);
    let database = bureau.database();
    let output = bureau.run(&["audit", "verify", "--database", &database]);
    assert_eq!(output.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("audit entry 2"), "{stderr}");
}

/// `apikey create --hospitals FILE`: a key per code, printed as the load
/// generator's `HOSPITAL<TAB>KEY` lines and stored as their hashes; a file
/// with a fault is refused by its line and stores no key at all.
#[tokio::test]
async fn apikey_create_makes_a_key_per_hospital_of_a_file_or_none() {
    use sqlx::Row as _;
    let bureau = Bureau::new();
    bureau.ok(&["policy", "load", &fixture("fixtures/example-policy.toml")]);
    let codes = bureau.dir.path().join("codes.txt");
    std::fs::write(&codes, "H001\n\nH002\r\n北京协和医院\n").unwrap();
    let created = bureau.ok(&["apikey", "create", "--hospitals", codes.to_str().unwrap()]);
    let lines: Vec<(&str, &str)> = created
        .lines()
        .map(|line| line.split_once('\t').unwrap())
        .collect();
    let hospitals: Vec<&str> = lines.iter().map(|(hospital, _)| *hospital).collect();
    assert_eq!(hospitals, ["H001", "H002", "北京协和医院"], "{created}");
    let mut connection = sqlx::SqliteConnection::connect(&bureau.database()).await.unwrap();
    for (hospital, key) in &lines {
        assert!(key.starts_with("jz_") && key.len() > 40, "{created}");
        let hash = jiuzhu_store::ApiKeyHash::of(key);
        let row = sqlx::query("SELECT hospital FROM api_keys WHERE key_hash = ?")
            .bind(hash.as_bytes().to_vec())
            .fetch_one(&mut connection)
            .await
            .unwrap();
        assert_eq!(row.get::<String, _>("hospital"), *hospital);
    }
    let before = keys_and_entries(&mut connection).await;
    assert_eq!(before.0, 3);

    let database = bureau.database();
    for (text, fault) in [
        (
            "H003\nH004\nH003\n",
            "codes.txt:3: hospital H003 is already on line 1",
        ),
        (
            "H003\n H004\n",
            "codes.txt:2: the hospital code has spaces around it",
        ),
        ("H003\nH0\u{7}4\n", "codes.txt:2: hospital"),
        ("\n\n", "codes.txt: no hospital codes"),
    ] {
        std::fs::write(&codes, text).unwrap();
        let output = bureau.run(&[
            "apikey",
            "create",
            "--hospitals",
            "codes.txt",
            "--database",
            &database,
        ]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{text:?}: {stderr}");
        assert!(stderr.contains(fault), "{text:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{text:?}");
        assert_eq!(
            keys_and_entries(&mut connection).await,
            before,
            "{text:?} stored something"
        );
    }
    let verified = bureau.ok(&["audit", "verify"]);
    assert!(verified.contains("The audit chain is whole"), "{verified}");
}

/// The number of API keys and of audit entries.
async fn keys_and_entries(connection: &mut sqlx::SqliteConnection) -> (i64, i64) {
    use sqlx::Row as _;
    let row =
        sqlx::query("SELECT (SELECT COUNT(*) FROM api_keys) AS n, (SELECT COUNT(*) FROM audit_log) AS a")
            .fetch_one(connection)
            .await
            .unwrap();
    (row.get::<i64, _>("n"), row.get::<i64, _>("a"))
}
