//! `jiuzhu init` and `jiuzhu config check`, run as a user runs them: the real
//! binary in a fresh folder, with no JIUZHU_* variable but those a test sets.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BINARY: &str = env!("CARGO_BIN_EXE_jiuzhu");

struct Folder {
    dir: tempfile::TempDir,
}

impl Folder {
    fn new() -> Folder {
        Folder {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, contents: &str) {
        std::fs::write(self.path(name), contents).unwrap();
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap()
    }

    /// Runs `jiuzhu ARGS` here, with the environment emptied of JIUZHU_*
    /// variables, then given `environment`.
    fn run(&self, args: &[&str], environment: &[(&str, &str)]) -> Output {
        let mut command = Command::new(BINARY);
        command.current_dir(self.dir.path()).args(args);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("JIUZHU_") {
                command.env_remove(name);
            }
        }
        command.envs(environment.iter().copied());
        command.output().unwrap()
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The data key written in a configuration file.
fn data_key_in(text: &str) -> String {
    let line = text.lines().find(|line| line.starts_with("data_key = ")).unwrap();
    line.trim_start_matches("data_key = ")
        .trim_matches('"')
        .to_owned()
}

fn assert_status(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(output),
        stderr(output)
    );
}

#[test]
fn init_writes_a_file_that_config_check_accepts() {
    let folder = Folder::new();
    let init = folder.run(&["init"], &[]);
    assert_status(&init, 0);
    assert!(stdout(&init).contains("jiuzhu.toml"), "{}", stdout(&init));
    assert!(
        stdout(&init).contains("Back up the data key"),
        "{}",
        stdout(&init)
    );
    let key = data_key_in(&folder.read("jiuzhu.toml"));
    assert!(key.starts_with("v1:"), "{key}");
    assert!(!stdout(&init).contains(&key[3..]), "init printed the key");
    assert!(!stderr(&init).contains(&key[3..]), "init printed the key");

    let check = folder.run(&["config", "check"], &[]);
    assert_status(&check, 0);
    let out = stdout(&check);
    assert!(
        out.contains("data_key") && out.contains("set (from file jiuzhu.toml:"),
        "{out}"
    );
    assert!(
        out.contains("database") && out.contains("sqlite://jiuzhu.db (default)"),
        "{out}"
    );
    assert!(out.contains("The settings are valid."), "{out}");
}

#[cfg(unix)]
#[test]
fn init_makes_the_file_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let folder = Folder::new();
    assert_status(&folder.run(&["init", "--config", "conf/jiuzhu.toml"], &[]), 1);
    std::fs::create_dir(folder.path("conf")).unwrap();
    assert_status(&folder.run(&["init", "--config", "conf/jiuzhu.toml"], &[]), 0);
    let mode = std::fs::metadata(folder.path("conf/jiuzhu.toml"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    let leftovers: Vec<_> = std::fs::read_dir(folder.path("conf")).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
}

#[test]
fn init_refuses_to_overwrite_a_file_without_force() {
    let folder = Folder::new();
    folder.write("jiuzhu.toml", "listen = \"127.0.0.1:1\"\n");
    let refused = folder.run(&["init"], &[]);
    assert_status(&refused, 1);
    assert!(stderr(&refused).contains("already exists") && stderr(&refused).contains("--force"));
    assert_eq!(folder.read("jiuzhu.toml"), "listen = \"127.0.0.1:1\"\n");

    assert_status(&folder.run(&["init", "--force"], &[]), 0);
    assert!(folder.read("jiuzhu.toml").contains("data_key = \"v1:"));
}

#[test]
fn two_inits_write_different_keys() {
    let folder = Folder::new();
    assert_status(&folder.run(&["init", "--config", "one.toml"], &[]), 0);
    assert_status(&folder.run(&["init", "--config", "two.toml"], &[]), 0);
    let one = data_key_in(&folder.read("one.toml"));
    let two = data_key_in(&folder.read("two.toml"));
    assert_ne!(one, two);
}

#[test]
fn config_check_never_prints_the_secret() {
    let folder = Folder::new();
    assert_status(&folder.run(&["init", "--config", "a.toml"], &[]), 0);
    assert_status(&folder.run(&["init", "--config", "b.toml"], &[]), 0);
    let from_file = data_key_in(&folder.read("a.toml"));
    let from_environment = data_key_in(&folder.read("b.toml"));
    let check = folder.run(
        &["config", "check", "--config", "a.toml"],
        &[
            ("JIUZHU_DATA_KEY", &from_environment),
            ("JIUZHU_DATABASE", "postgres://jiuzhu:hunter2@db/jiuzhu"),
        ],
    );
    assert_status(&check, 0);
    let all = format!("{}{}", stdout(&check), stderr(&check));
    assert!(!all.contains(&from_file[3..]), "{all}");
    assert!(!all.contains(&from_environment[3..]), "{all}");
    assert!(!all.contains("hunter2"), "{all}");
    assert!(all.contains("set (from environment JIUZHU_DATA_KEY)"), "{all}");
}

#[test]
fn config_check_shows_each_setting_with_its_source() {
    let folder = Folder::new();
    assert_status(&folder.run(&["init"], &[]), 0);
    let text = folder
        .read("jiuzhu.toml")
        .replace("# max_body_bytes = 1048576", "max_body_bytes = 4096");
    folder.write("jiuzhu.toml", &text);
    let check = folder.run(
        &["config", "check", "--listen", "127.0.0.1:9999"],
        &[
            ("JIUZHU_LISTEN", "127.0.0.1:7777"),
            ("JIUZHU_REQUEST_TIMEOUT_MS", "2000"),
        ],
    );
    assert_status(&check, 0);
    let out = stdout(&check);
    let line = |name: &str| {
        out.lines()
            .find(|line| line.trim_start().starts_with(name))
            .unwrap()
            .to_owned()
    };
    assert!(
        line("max_body_bytes").contains("4096 (from file jiuzhu.toml:"),
        "{out}"
    );
    assert!(
        line("request_timeout_ms").contains("2000 (from environment JIUZHU_REQUEST_TIMEOUT_MS)"),
        "{out}"
    );
    assert!(
        line("listen").contains("127.0.0.1:9999 (from flag --listen)"),
        "{out}"
    );
    assert!(line("database_pool_size").contains("8 (default)"), "{out}");
}

#[test]
fn config_check_without_a_data_key_shows_missing_and_exits_2() {
    let folder = Folder::new();
    let check = folder.run(&["config", "check"], &[]);
    assert_status(&check, 2);
    assert!(stdout(&check).contains("MISSING"), "{}", stdout(&check));
    assert!(stderr(&check).contains("jiuzhu init"), "{}", stderr(&check));
}

#[test]
fn config_check_refuses_an_unknown_key_naming_the_file_and_line() {
    let folder = Folder::new();
    folder.write("jiuzhu.toml", "listen = \"127.0.0.1:1\"\nmax_body_byte = 10\n");
    let check = folder.run(&["config", "check"], &[]);
    assert_status(&check, 2);
    assert!(
        stderr(&check).contains("jiuzhu.toml:2: `max_body_byte` is not a setting"),
        "{}",
        stderr(&check)
    );
}

#[test]
fn config_check_shows_the_unified_login_without_its_secret_and_refuses_half_of_it() {
    let folder = Folder::new();
    assert_status(&folder.run(&["init"], &[]), 0);
    let text = folder
        .read("jiuzhu.toml")
        .replace(
            "# oidc.issuer = \"\"",
            "oidc.issuer = \"https://login.example.gov.cn/oidc\"",
        )
        .replace("# oidc.client_id = \"\"", "oidc.client_id = \"jiuzhu\"");
    folder.write("jiuzhu.toml", &text);
    let check = folder.run(
        &["config", "check"],
        &[
            ("JIUZHU_OIDC_CLIENT_SECRET", "hunter2-oidc"),
            (
                "JIUZHU_OIDC_REDIRECT_URL",
                "https://jiuzhu.example.gov.cn/login/oidc/callback",
            ),
        ],
    );
    assert_status(&check, 0);
    let out = stdout(&check);
    assert!(!format!("{out}{}", stderr(&check)).contains("hunter2"), "{out}");
    let line = |name: &str| {
        out.lines()
            .find(|line| line.trim_start().starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in {out}"))
            .to_owned()
    };
    assert!(
        line("oidc.client_secret").ends_with(" set (from environment JIUZHU_OIDC_CLIENT_SECRET)"),
        "{out}"
    );
    assert!(
        line("oidc.issuer").contains(" https://login.example.gov.cn/oidc (from file jiuzhu.toml:"),
        "{out}"
    );
    assert!(
        line("oidc.resident_id_claim").ends_with(" resident_id (default)"),
        "{out}"
    );
    // Without the secret and the callback: refused, saying what is missing.
    let check = folder.run(&["config", "check"], &[]);
    assert_status(&check, 2);
    assert!(
        stderr(&check).contains("the unified login [oidc]: client_secret, redirect_url not set"),
        "{}",
        stderr(&check)
    );
}

#[test]
fn config_check_refuses_a_bad_value_from_the_environment_naming_the_variable() {
    let folder = Folder::new();
    let check = folder.run(&["config", "check"], &[("JIUZHU_MAX_IMPORT_ROWS", "0")]);
    assert_status(&check, 2);
    assert!(stderr(&check).contains("environment variable JIUZHU_MAX_IMPORT_ROWS: must be from 1"));
}

#[test]
fn config_check_refuses_a_missing_explicit_file_and_a_bad_database_flag() {
    let folder = Folder::new();
    let check = folder.run(&["config", "check", "--config", "nowhere.toml"], &[]);
    assert_status(&check, 2);
    assert!(stderr(&check).contains("nowhere.toml"), "{}", stderr(&check));
    let check = folder.run(&["config", "check", "--database", "mysql://x/y"], &[]);
    assert_status(&check, 2);
    assert!(stderr(&check).contains("sqlite://PATH"), "{}", stderr(&check));
    assert!(!Path::new(&folder.path("jiuzhu.toml")).exists());
}
