//! The configuration: one typed [`Settings`] read from `jiuzhu.toml`, then
//! `JIUZHU_*` environment variables, then command-line flags, each layer
//! overriding the one before.
//!
//! Every setting is declared once, in the `settings!` list below, with its
//! documentation, its default and its check; the loader, the environment
//! names, `jiuzhu config check` and the file `jiuzhu init` writes all come
//! from that list. The file and the environment go through the same parser,
//! so a value is refused for the same reason wherever it comes from. The
//! environment is passed in: there is no global configuration.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The file read when no `--config` is given, in the current directory.
pub const DEFAULT_CONFIG_FILE: &str = "jiuzhu.toml";

/// What every environment variable that sets a setting starts with.
pub const ENVIRONMENT_PREFIX: &str = "JIUZHU_";

/// Declares every setting once: its documentation (written above it in the
/// file `jiuzhu init` writes), its type, its default and its check.
macro_rules! settings {
    ($(
        $(#[doc = $doc:literal])+
        $name:ident: $kind:ty = $default:expr, check $check:expr;
    )+) => {
        /// The effective configuration, validated.
        #[derive(Debug, Clone)]
        pub struct Settings {
            $( $(#[doc = $doc])+ pub $name: $kind, )+
            sources: Sources,
            config_file: Option<PathBuf>,
        }

        /// Where each setting's value came from.
        #[derive(Debug, Clone)]
        struct Sources {
            $( $name: Source, )+
        }

        impl Settings {
            /// The name of every setting, in the order they are declared.
            pub const NAMES: &'static [&'static str] = &[$( stringify!($name), )+];

            /// Every setting at its default; no data key.
            pub fn defaults() -> Settings {
                Settings {
                    $( $name: $default, )+
                    sources: Sources { $( $name: Source::Default, )+ },
                    config_file: None,
                }
            }

            /// Parses, checks and sets one setting by name; `None` when no
            /// setting has that name.
            fn set(&mut self, name: &str, raw: Raw<'_>, source: Source) -> Option<Result<(), String>> {
                match name {
                    $( stringify!($name) => Some(parse_raw::<$kind>(raw).and_then(|value| {
                        ($check)(&value)?;
                        self.$name = value;
                        self.sources.$name = source;
                        Ok(())
                    })), )+
                    _ => None,
                }
            }

            /// Every setting with its value (secrets masked) and where it came from.
            pub fn effective(&self) -> Vec<Effective> {
                vec![$( Effective {
                    name: stringify!($name),
                    value: SettingValue::shown(&self.$name),
                    is_secret: <$kind as SettingValue>::IS_SECRET,
                    source: self.sources.$name.clone(),
                }, )+]
            }

            /// The file `jiuzhu init` writes: every setting documented, the
            /// others commented out at their defaults, the secrets set.
            fn template_body(&self) -> String {
                let mut text = String::new();
                $(
                    // A table's settings as dotted keys (`oidc.issuer`): no
                    // table header, so a line added at the end stays a plain
                    // setting.
                    let key = file_name(stringify!($name));
                    text.push('\n');
                    for line in [$($doc),+] {
                        text.push_str(&format!("#{}\n", line.trim_end()));
                    }
                    let value = SettingValue::toml_text(&self.$name);
                    if <$kind as SettingValue>::IS_SECRET && SettingValue::is_set(&self.$name) {
                        text.push_str(&format!("{key} = {value}\n"));
                    } else {
                        text.push_str(&format!("# {key} = {value}\n"));
                    }
                )+
                text
            }
        }
    };
}

settings! {
    /// The database: sqlite://PATH (a file, created when missing) or
    /// postgres://USER:PASSWORD@HOST:PORT/NAME.
    database: DatabaseUrl = DatabaseUrl::default_sqlite(), check anything;
    /// The address and port the server listens on.
    listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 8080)), check anything;
    /// The key that encrypts personal data (ID numbers, bank accounts): "v1:"
    /// then 64 random bytes in base64. Losing it makes the personal data
    /// unreadable: keep a copy somewhere safe, apart from the database.
    data_key: Option<DataKey> = None, check anything;
    /// The largest request body accepted, in bytes (1 KiB to 1 GiB).
    max_body_bytes: u64 = 1024 * 1024, check within(1024, 1024 * 1024 * 1024);
    /// The largest file a department may push to /api/v1/feeds/..., in
    /// bytes (1 KiB to 1 GiB).
    feed_max_body_bytes: u64 = 64 * 1024 * 1024, check within(1024, 1024 * 1024 * 1024);
    /// How long a request may take before it is cut off, in milliseconds
    /// (100 to 600000).
    request_timeout_ms: u64 = 10_000, check within(100, 600_000);
    /// How many database connections are kept open at most (1 to 1000).
    database_pool_size: u32 = 8, check within(1, 1000);
    /// The most rows one imported file may hold (1 to 1000000000).
    max_import_rows: u64 = 50_000_000, check within(1, 1_000_000_000);
    /// The file notifications are written to, one JSON line each (a
    /// relative path is from the directory the command runs in).
    notification_log: PathBuf = PathBuf::from("notifications.log"), check not_empty;
    /// How often `jiuzhu serve` sends the notifications due, in milliseconds
    /// (100 to 86400000), or 0 for never (then `jiuzhu notify send` does).
    notify_interval_ms: u64 = 5_000, check off_or_within(100, 86_400_000);
    /// The most notifications `jiuzhu serve` sends per second while a
    /// backlog is sent (the notifications of a large feed), so that pages
    /// are served meanwhile as quickly as ever (0 to 1000000; 0: as fast
    /// as it goes).
    notify_max_per_second: u32 = 200, check within(0, 1_000_000);
    /// When `jiuzhu serve` runs the periodic clearing (定期清算) of the month
    /// just ended: "monthly DAY HH:MM" (DAY 1 to 28, China time), or "off".
    /// A run missed while no server was up is made up at the next start.
    clearing_schedule: ClearingSchedule = ClearingSchedule::Off, check anything;
    /// Where the scheduled clearings write their reports, one directory per
    /// run (a relative path is from the directory the server runs in).
    clearing_report_dir: PathBuf = PathBuf::from("clearing-reports"), check not_empty;
    /// How many days after its service date a bill may still be applied for
    /// (1 to 3650); a later application goes to a reviewer with the finding.
    application_filing_days: u32 = 365, check within(1, 3650);
    /// The largest scan of a bill accepted with an application, in bytes
    /// (1 KiB to 64 MiB): a JPEG, PNG or PDF.
    application_max_scan_bytes: u64 = 5 * 1024 * 1024, check within(1024, 64 * 1024 * 1024);
    /// The city's unified login (统一身份认证) for residents, by OpenID
    /// Connect, beside the login with a code sent to their phone. Set
    /// issuer, client_id, client_secret and redirect_url together to offer
    /// it; leave all four unset for the code login only. In the environment
    /// each is JIUZHU_OIDC_ and its name in capitals (JIUZHU_OIDC_ISSUER, ...).
    ///
    /// The issuer's URL, exactly as its ID tokens name it: https://... (http://
    /// only on this machine, for trials), no query.
    oidc_issuer: Option<WebUrl> = None, check issuer_url;
    /// The client id the issuer registered this server under.
    oidc_client_id: String = String::new(), check one_word;
    /// The client secret the issuer gave this server.
    oidc_client_secret: Option<Secret> = None, check anything;
    /// This server's callback as registered at the issuer:
    /// https://HOST/login/oidc/callback.
    oidc_redirect_url: Option<WebUrl> = None, check callback_url;
    /// The ID token's claim that holds the resident ID number.
    oidc_resident_id_claim: String = "resident_id".to_owned(), check required_word;
    /// The scopes asked for, separated by spaces; openid among them.
    oidc_scopes: Scopes = Scopes::openid(), check anything;
    /// The time limit of each call to the issuer, in milliseconds (100 to
    /// 60000).
    oidc_timeout_ms: u64 = 5_000, check within(100, 60_000);
}

/// The tables of `jiuzhu.toml`: a setting named `TABLE_KEY` is written
/// `KEY` under `[TABLE]` in the file, or `TABLE.KEY`; its environment
/// variable is `JIUZHU_TABLE_KEY`.
const TABLES: &[&str] = &["oidc"];

/// The table a setting is written under and its key there.
fn table_of(name: &str) -> Option<(&'static str, &str)> {
    TABLES.iter().find_map(|table| {
        name.strip_prefix(table)
            .and_then(|rest| rest.strip_prefix('_'))
            .map(|key| (*table, key))
    })
}

/// A setting's name as the file writes it: `oidc.issuer` for one in a
/// table, else its own name.
pub fn file_name(name: &str) -> String {
    match table_of(name) {
        Some((table, key)) => format!("{table}.{key}"),
        None => name.to_owned(),
    }
}

/// When the periodic clearing runs by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClearingSchedule {
    Off,
    /// On `day` of each month at `minute` minutes after midnight, China time.
    Monthly {
        day: u32,
        minute: u32,
    },
}

impl fmt::Display for ClearingSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClearingSchedule::Off => f.write_str("off"),
            ClearingSchedule::Monthly { day, minute } => {
                write!(f, "monthly {day} {:02}:{:02}", minute / 60, minute % 60)
            }
        }
    }
}

impl SettingValue for ClearingSchedule {
    const KIND: TomlKind = TomlKind::String;
    fn parse_text(text: &str) -> Result<Self, String> {
        let bad = || format!("expected \"off\" or \"monthly DAY HH:MM\" (DAY 1 to 28), found `{text}`");
        let words: Vec<&str> = text.split_whitespace().collect();
        match words.as_slice() {
            ["off"] => Ok(ClearingSchedule::Off),
            ["monthly", day, time] => {
                let day: u32 = day.parse().map_err(|_| bad())?;
                let (hours, minutes) = time.split_once(':').ok_or_else(bad)?;
                if minutes.len() != 2 {
                    return Err(bad());
                }
                let (hours, minutes): (u32, u32) = match (hours.parse(), minutes.parse()) {
                    (Ok(hours), Ok(minutes)) => (hours, minutes),
                    _ => return Err(bad()),
                };
                if !(1..=28).contains(&day) || hours > 23 || minutes > 59 {
                    return Err(bad());
                }
                Ok(ClearingSchedule::Monthly {
                    day,
                    minute: hours * 60 + minutes,
                })
            }
            _ => Err(bad()),
        }
    }
    fn shown(&self) -> String {
        self.to_string()
    }
    fn toml_text(&self) -> String {
        quoted(&self.to_string())
    }
}

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    File { path: PathBuf, line: usize },
    Environment { variable: String },
    Flag { flag: &'static str },
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => write!(f, "default"),
            Source::File { path, line } => write!(f, "file {}:{line}", path.display()),
            Source::Environment { variable } => write!(f, "environment {variable}"),
            Source::Flag { flag } => write!(f, "flag {flag}"),
        }
    }
}

/// One setting as `jiuzhu config check` shows it.
#[derive(Debug, Clone)]
pub struct Effective {
    pub name: &'static str,
    /// The value as shown: a secret is `set` or `MISSING`, never its text.
    pub value: String,
    pub is_secret: bool,
    pub source: Source,
}

/// Values given on the command line, which override the file and the
/// environment.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--database`
    pub database: Option<DatabaseUrl>,
    /// `--listen`
    pub listen: Option<SocketAddr>,
    /// `--notification-log`
    pub notification_log: Option<PathBuf>,
    /// `--feed-max-body-bytes` (of `jiuzhu serve`)
    pub feed_max_body_bytes: Option<u64>,
}

/// Why the settings could not be loaded. Never holds a secret's text.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read the configuration file {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{}:{line}: {message}", path.display())]
    File {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("environment variable {variable}: {message}")]
    Environment { variable: String, message: String },
    #[error("the unified login [oidc]: {0}")]
    Oidc(String),
    #[error(
        "no data_key is set: the personal-data key is required. Run `jiuzhu init` to create a \
         configuration with a fresh key, or set {ENVIRONMENT_PREFIX}DATA_KEY"
    )]
    MissingDataKey,
}

impl Settings {
    /// Loads the settings: the defaults, then the configuration file, then
    /// the `JIUZHU_*` variables in `environment`.
    ///
    /// The file is `config_path` when given (it must exist), otherwise
    /// `./jiuzhu.toml` when it exists. Unknown keys in the file and unknown
    /// `JIUZHU_*` variables are refused, so that a misspelt setting is not
    /// silently ignored.
    pub fn load(
        config_path: Option<&Path>,
        environment: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, SettingsError> {
        let mut settings = Settings::defaults();
        let path = config_path.unwrap_or(Path::new(DEFAULT_CONFIG_FILE));
        match std::fs::read_to_string(path) {
            Ok(text) => {
                settings.apply_file(path, &text)?;
                settings.config_file = Some(path.to_path_buf());
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound && config_path.is_none() => {}
            Err(source) => {
                return Err(SettingsError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
        settings.apply_environment(environment)?;
        settings.check_oidc()?;
        Ok(settings)
    }

    /// The unified login is off (none of its four settings set) or whole.
    fn check_oidc(&self) -> Result<(), SettingsError> {
        let given = [
            ("issuer", self.oidc_issuer.is_some()),
            ("client_id", !self.oidc_client_id.is_empty()),
            ("client_secret", self.oidc_client_secret.is_some()),
            ("redirect_url", self.oidc_redirect_url.is_some()),
        ];
        let missing: Vec<&str> = given
            .iter()
            .filter(|(_, set)| !set)
            .map(|(name, _)| *name)
            .collect();
        if missing.is_empty() || missing.len() == given.len() {
            return Ok(());
        }
        Err(SettingsError::Oidc(format!(
            "{} not set: set issuer, client_id, client_secret and redirect_url together, or none of them",
            missing.join(", ")
        )))
    }

    /// The unified login for the server, if it is configured.
    pub fn oidc(&self) -> Option<jiuzhu_server::OidcSettings> {
        match (
            &self.oidc_issuer,
            &self.oidc_client_secret,
            &self.oidc_redirect_url,
        ) {
            (Some(issuer), Some(secret), Some(redirect)) if !self.oidc_client_id.is_empty() => {
                Some(jiuzhu_server::OidcSettings {
                    issuer: issuer.as_str().to_owned(),
                    client_id: self.oidc_client_id.clone(),
                    client_secret: jiuzhu_server::ClientSecret::new(secret.expose().to_owned()),
                    redirect_url: redirect.as_str().to_owned(),
                    resident_id_claim: self.oidc_resident_id_claim.clone(),
                    scopes: self.oidc_scopes.0.clone(),
                    timeout_ms: self.oidc_timeout_ms,
                })
            }
            _ => None,
        }
    }

    /// The settings with the command-line flags applied over them (each
    /// flag's value checked by the flag's own parser).
    pub fn with_overrides(mut self, overrides: Overrides) -> Settings {
        if let Some(database) = overrides.database {
            self.database = database;
            self.sources.database = Source::Flag { flag: "--database" };
        }
        if let Some(listen) = overrides.listen {
            self.listen = listen;
            self.sources.listen = Source::Flag { flag: "--listen" };
        }
        if let Some(notification_log) = overrides.notification_log {
            self.notification_log = notification_log;
            self.sources.notification_log = Source::Flag {
                flag: "--notification-log",
            };
        }
        if let Some(bytes) = overrides.feed_max_body_bytes {
            self.feed_max_body_bytes = bytes;
            self.sources.feed_max_body_bytes = Source::Flag {
                flag: "--feed-max-body-bytes",
            };
        }
        self
    }

    /// The personal-data key, or a clear error saying how to create one.
    pub fn require_data_key(&self) -> Result<&DataKey, SettingsError> {
        self.data_key.as_ref().ok_or(SettingsError::MissingDataKey)
    }

    /// The configuration file that was read, if any.
    pub fn config_file(&self) -> Option<&Path> {
        self.config_file.as_deref()
    }

    /// Where a setting's value came from; `None` for an unknown name.
    #[allow(
        dead_code,
        reason = "asked by the tests, and by `serve` when it reports its settings"
    )]
    pub fn source(&self, name: &str) -> Option<Source> {
        self.effective()
            .into_iter()
            .find(|setting| setting.name == name)
            .map(|setting| setting.source)
    }

    /// The text of a new `jiuzhu.toml`: every setting documented at its
    /// default, and `data_key` set to `data_key`. This text holds the secret.
    pub fn template(data_key: DataKey) -> String {
        let mut settings = Settings::defaults();
        settings.data_key = Some(data_key);
        format!(
            "# Jiuzhu configuration, written by `jiuzhu init`.\n\
             #\n\
             # Every setting is listed with its default; remove the `#` before a\n\
             # setting to change it. Each can also be set by an environment variable\n\
             # named {ENVIRONMENT_PREFIX} and the setting in capitals ({ENVIRONMENT_PREFIX}DATABASE,\n\
             # {ENVIRONMENT_PREFIX}MAX_BODY_BYTES, ...), which overrides this file; the flags\n\
             # --database, --listen and --notification-log (and --feed-max-body-bytes\n\
             # of `jiuzhu serve`) override both. `jiuzhu config check` shows the\n\
             # settings in effect.\n\
             #\n\
             # This file holds the personal-data key: keep it readable by its owner\n\
             # only, and keep a copy of the key somewhere safe.\n{}",
            settings.template_body()
        )
    }

    fn apply_file(&mut self, path: &Path, text: &str) -> Result<(), SettingsError> {
        let file_error = |span: Option<std::ops::Range<usize>>, message: String| SettingsError::File {
            path: path.to_path_buf(),
            line: line_of(text, span),
            message,
        };
        let document = toml_edit::Document::parse(text)
            .map_err(|error| file_error(error.span(), error.message().to_owned()))?;
        for (name, item) in document.iter() {
            let key_span = document.key(name).and_then(toml_edit::Key::span);
            if let Some(table) = item.as_table_like().filter(|_| TABLES.contains(&name)) {
                for (key, inner) in table.iter() {
                    let inner_span = table.key(key).and_then(toml_edit::Key::span);
                    let Some(value) = inner.as_value() else {
                        return Err(file_error(
                            inner_span,
                            format!("`{name}.{key}` must be a plain setting (name = value), not a table"),
                        ));
                    };
                    self.set_from_file(path, text, &format!("{name}_{key}"), value, inner_span)?;
                }
                continue;
            }
            let Some(value) = item.as_value().filter(|_| !item.is_table_like()) else {
                let tables: Vec<String> = TABLES.iter().map(|table| format!("[{table}]")).collect();
                return Err(file_error(
                    key_span,
                    format!(
                        "`{name}` must be a plain setting (name = value), not a table; the tables are {}",
                        tables.join(", ")
                    ),
                ));
            };
            if let Some((table, key)) = table_of(name) {
                return Err(file_error(
                    key_span,
                    format!("`{name}` is written `{table}.{key}`, or `{key}` under [{table}]"),
                ));
            }
            self.set_from_file(path, text, name, value, key_span)?;
        }
        Ok(())
    }

    /// Sets the setting `name` from the file's `value`, naming the line.
    fn set_from_file(
        &mut self,
        path: &Path,
        text: &str,
        name: &str,
        value: &toml_edit::Value,
        key_span: Option<std::ops::Range<usize>>,
    ) -> Result<(), SettingsError> {
        let file_error = |span: Option<std::ops::Range<usize>>, message: String| SettingsError::File {
            path: path.to_path_buf(),
            line: line_of(text, span),
            message,
        };
        let shown = file_name(name);
        let line = line_of(text, value.span().or(key_span.clone()));
        let source = Source::File {
            path: path.to_path_buf(),
            line,
        };
        match self.set(name, Raw::Toml(value), source) {
            Some(Ok(())) => Ok(()),
            Some(Err(message)) => Err(file_error(value.span(), format!("{shown}: {message}"))),
            None => Err(file_error(key_span, unknown_setting(&format!("`{shown}`")))),
        }
    }

    fn apply_environment(
        &mut self,
        environment: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), SettingsError> {
        for (variable, value) in environment {
            let Some(suffix) = variable.strip_prefix(ENVIRONMENT_PREFIX) else {
                continue;
            };
            let name = Settings::NAMES
                .iter()
                .find(|name| name.to_ascii_uppercase() == suffix);
            let outcome = match name {
                Some(name) => {
                    let source = Source::Environment {
                        variable: variable.clone(),
                    };
                    self.set(name, Raw::Text(&value), source)
                }
                None => None,
            };
            match outcome {
                Some(Ok(())) => {}
                Some(Err(message)) => return Err(SettingsError::Environment { variable, message }),
                None => {
                    let message = unknown_setting("this variable");
                    return Err(SettingsError::Environment { variable, message });
                }
            }
        }
        Ok(())
    }
}

fn unknown_setting(what: &str) -> String {
    let names: Vec<String> = Settings::NAMES.iter().map(|name| file_name(name)).collect();
    format!("{what} is not a setting; the settings are {}", names.join(", "))
}

/// The 1-based line where `span` starts (line 1 without a span).
fn line_of(text: &str, span: Option<std::ops::Range<usize>>) -> usize {
    let start = span.map_or(0, |span| span.start);
    text.as_bytes()
        .iter()
        .take(start)
        .filter(|&&byte| byte == b'\n')
        .count()
        + 1
}

/// A setting's value as given: text from the environment, or a TOML value.
#[derive(Debug, Clone, Copy)]
enum Raw<'a> {
    Text(&'a str),
    Toml(&'a toml_edit::Value),
}

/// How a setting is written in `jiuzhu.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TomlKind {
    String,
    Integer,
}

/// A type a setting can have.
trait SettingValue: Sized {
    const KIND: TomlKind;
    const IS_SECRET: bool = false;
    /// Parses the text of an environment variable (and of the file's value).
    /// The error never repeats a secret's text.
    fn parse_text(text: &str) -> Result<Self, String>;
    /// The value as `jiuzhu config check` shows it: secrets masked.
    fn shown(&self) -> String;
    /// The value as written in `jiuzhu.toml`.
    fn toml_text(&self) -> String;
    /// Whether it holds a value (an optional setting may hold none).
    fn is_set(&self) -> bool {
        true
    }
}

fn parse_raw<T: SettingValue>(raw: Raw<'_>) -> Result<T, String> {
    match raw {
        Raw::Text(text) => T::parse_text(text),
        Raw::Toml(value) => match (T::KIND, value) {
            (TomlKind::String, toml_edit::Value::String(text)) => T::parse_text(text.value()),
            (TomlKind::Integer, toml_edit::Value::Integer(number)) => {
                T::parse_text(&number.value().to_string())
            }
            (TomlKind::String, other) => Err(format!(
                "expected a string in double quotes, found {}",
                other.type_name()
            )),
            (TomlKind::Integer, other) => Err(format!(
                "expected a whole number (no quotes), found {}",
                other.type_name()
            )),
        },
    }
}

/// A check that accepts every value.
fn anything<T>(_: &T) -> Result<(), String> {
    Ok(())
}

/// A check that accepts values from `min` to `max`, both included.
fn within<T: PartialOrd + fmt::Display>(min: T, max: T) -> impl Fn(&T) -> Result<(), String> {
    move |value| {
        if *value < min || *value > max {
            Err(format!("must be from {min} to {max}, found {value}"))
        } else {
            Ok(())
        }
    }
}

/// A check that accepts 0 (off), or values from `min` to `max`.
fn off_or_within(min: u64, max: u64) -> impl Fn(&u64) -> Result<(), String> {
    move |value| {
        if *value != 0 && (*value < min || *value > max) {
            Err(format!("must be 0 (off) or from {min} to {max}, found {value}"))
        } else {
            Ok(())
        }
    }
}

/// A check that refuses an empty path.
fn not_empty(path: &Path) -> Result<(), String> {
    if path.as_os_str().is_empty() {
        Err("must name a file".to_owned())
    } else {
        Ok(())
    }
}

fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for character in text.chars() {
        match character {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            character if character.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(character))),
            character => out.push(character),
        }
    }
    out.push('"');
    out
}

macro_rules! whole_number_setting {
    ($($number:ty),+) => {$(
        impl SettingValue for $number {
            const KIND: TomlKind = TomlKind::Integer;
            fn parse_text(text: &str) -> Result<Self, String> {
                text.trim().replace('_', "").parse().map_err(|_| format!("expected a whole number, found `{text}`"))
            }
            fn shown(&self) -> String {
                self.to_string()
            }
            fn toml_text(&self) -> String {
                self.to_string()
            }
        }
    )+};
}

whole_number_setting!(u32, u64);

impl SettingValue for SocketAddr {
    const KIND: TomlKind = TomlKind::String;
    fn parse_text(text: &str) -> Result<Self, String> {
        text.trim().parse().map_err(|_| {
            format!("expected an address and port such as 127.0.0.1:8080 or [::1]:8080, found `{text}`")
        })
    }
    fn shown(&self) -> String {
        self.to_string()
    }
    fn toml_text(&self) -> String {
        quoted(&self.to_string())
    }
}

impl SettingValue for PathBuf {
    const KIND: TomlKind = TomlKind::String;
    fn parse_text(text: &str) -> Result<Self, String> {
        Ok(PathBuf::from(text))
    }
    fn shown(&self) -> String {
        self.display().to_string()
    }
    fn toml_text(&self) -> String {
        quoted(&self.display().to_string())
    }
}

impl SettingValue for String {
    const KIND: TomlKind = TomlKind::String;
    fn parse_text(text: &str) -> Result<Self, String> {
        Ok(text.trim().to_owned())
    }
    fn shown(&self) -> String {
        if self.is_empty() {
            "not set".to_owned()
        } else {
            self.clone()
        }
    }
    fn toml_text(&self) -> String {
        quoted(self)
    }
    fn is_set(&self) -> bool {
        !self.is_empty()
    }
}

/// A check that accepts an empty text or one word: no spaces, no control
/// characters.
fn one_word(text: &str) -> Result<(), String> {
    if text
        .chars()
        .any(|character| character.is_whitespace() || character.is_control())
    {
        Err("must be one word: no spaces".to_owned())
    } else {
        Ok(())
    }
}

/// A check that accepts one word, not empty.
fn required_word(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("must not be empty".to_owned());
    }
    one_word(text)
}

/// An http(s) URL: `https://HOST[:PORT][/PATH][?QUERY]`, or `http://` on
/// this machine only (127.0.0.1, [::1], localhost), for trials. No
/// fragment, no spaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebUrl {
    url: String,
    /// Where the path starts (the end of the host and port).
    path_at: usize,
}

impl WebUrl {
    pub fn parse(text: &str) -> Result<WebUrl, String> {
        let text = text.trim();
        let (rest, plain) = if let Some(rest) = text.strip_prefix("https://") {
            (rest, false)
        } else if let Some(rest) = text.strip_prefix("http://") {
            (rest, true)
        } else {
            return Err(format!("expected an https:// URL, found `{text}`"));
        };
        if text
            .chars()
            .any(|character| character.is_whitespace() || character.is_control())
        {
            return Err("a URL has no spaces".to_owned());
        }
        if text.contains('#') {
            return Err("a URL here has no #fragment".to_owned());
        }
        let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
        if authority.is_empty() || authority.contains('@') {
            return Err(format!(
                "expected a host after the scheme, as in https://login.example.gov.cn, found `{text}`"
            ));
        }
        let host = match authority.strip_prefix('[') {
            Some(bracketed) => bracketed
                .split(']')
                .next()
                .map(|inner| format!("[{inner}]"))
                .unwrap_or_default(),
            None => authority.split(':').next().unwrap_or_default().to_owned(),
        };
        if plain && !["127.0.0.1", "localhost", "[::1]"].contains(&host.as_str()) {
            return Err(format!(
                "http:// is only for this machine (127.0.0.1, [::1], localhost); use https:// for {host}"
            ));
        }
        let scheme = if plain { "http://" } else { "https://" };
        Ok(WebUrl {
            url: text.to_owned(),
            path_at: scheme.len() + authority.len(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.url
    }

    /// The path, without the query.
    fn path(&self) -> &str {
        let rest = &self.url[self.path_at..];
        &rest[..rest.find('?').unwrap_or(rest.len())]
    }

    fn has_query(&self) -> bool {
        self.url[self.path_at..].contains('?')
    }
}

impl SettingValue for Option<WebUrl> {
    const KIND: TomlKind = TomlKind::String;
    fn parse_text(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(None);
        }
        WebUrl::parse(text).map(Some)
    }
    fn shown(&self) -> String {
        self.as_ref()
            .map_or_else(|| "not set".to_owned(), |url| url.url.clone())
    }
    fn toml_text(&self) -> String {
        quoted(self.as_ref().map_or("", |url| url.as_str()))
    }
    fn is_set(&self) -> bool {
        self.is_some()
    }
}

/// An issuer's URL has no query (OpenID Connect Discovery §3).
fn issuer_url(url: &Option<WebUrl>) -> Result<(), String> {
    match url {
        Some(url) if url.has_query() => Err("an issuer's URL has no ?query".to_owned()),
        _ => Ok(()),
    }
}

/// The callback is this server's `/login/oidc/callback` (behind any path
/// prefix of a proxy), without a query.
fn callback_url(url: &Option<WebUrl>) -> Result<(), String> {
    match url {
        Some(url) if url.has_query() || !url.path().ends_with("/login/oidc/callback") => Err(format!(
            "must be this server's /login/oidc/callback, as in https://jiuzhu.example.gov.cn/login/oidc/callback, found `{}`",
            url.as_str()
        )),
        _ => Ok(()),
    }
}

/// The scopes of the unified login: `openid` and any others, each once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scopes(Vec<String>);

impl Scopes {
    fn openid() -> Scopes {
        Scopes(vec!["openid".to_owned()])
    }
}

impl SettingValue for Scopes {
    const KIND: TomlKind = TomlKind::String;
    fn parse_text(text: &str) -> Result<Self, String> {
        let mut scopes: Vec<String> = Vec::new();
        for scope in text.split_whitespace() {
            if !scope
                .bytes()
                .all(|byte| byte.is_ascii_graphic() && byte != b'"' && byte != b'\\')
            {
                return Err(format!(
                    "a scope is printable ASCII without quotes, found `{scope}`"
                ));
            }
            if !scopes.iter().any(|known| known == scope) {
                scopes.push(scope.to_owned());
            }
        }
        if !scopes.iter().any(|scope| scope == "openid") {
            return Err(format!("the scopes must include openid, found `{}`", text.trim()));
        }
        Ok(Scopes(scopes))
    }
    fn shown(&self) -> String {
        self.0.join(" ")
    }
    fn toml_text(&self) -> String {
        quoted(&self.0.join(" "))
    }
}

/// Which database a [`DatabaseUrl`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseKind {
    Sqlite,
    Postgres,
}

/// A database URL: `sqlite://PATH`, or `postgres://…` / `postgresql://…`.
/// Its Debug and Display hide the password it may hold.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    url: String,
    kind: DatabaseKind,
}

impl DatabaseUrl {
    fn default_sqlite() -> DatabaseUrl {
        DatabaseUrl {
            url: "sqlite://jiuzhu.db".to_owned(),
            kind: DatabaseKind::Sqlite,
        }
    }

    /// The whole URL, password included: only for connecting.
    pub fn expose(&self) -> &str {
        &self.url
    }

    #[allow(dead_code, reason = "read by `serve` to choose the store")]
    pub fn kind(&self) -> DatabaseKind {
        self.kind
    }

    /// The URL with any password replaced by `***`.
    pub fn redacted(&self) -> String {
        let Some((scheme, rest)) = self.url.split_once("://") else {
            return self.url.clone();
        };
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(authority_end);
        let authority = match authority.rsplit_once('@') {
            Some((user_info, host)) => match user_info.split_once(':') {
                Some((user, _password)) => format!("{user}:***@{host}"),
                None => authority.to_owned(),
            },
            None => authority.to_owned(),
        };
        let path = match path.split_once('?') {
            Some((path, query)) => {
                let query: Vec<String> = query
                    .split('&')
                    .map(|pair| match pair.split_once('=') {
                        Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                        _ => pair.to_owned(),
                    })
                    .collect();
                format!("{path}?{}", query.join("&"))
            }
            None => path.to_owned(),
        };
        format!("{scheme}://{authority}{path}")
    }
}

impl FromStr for DatabaseUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let accepted = [
            ("sqlite://", DatabaseKind::Sqlite),
            ("postgres://", DatabaseKind::Postgres),
            ("postgresql://", DatabaseKind::Postgres),
        ];
        for (scheme, kind) in accepted {
            if let Some(rest) = text.strip_prefix(scheme) {
                if rest.is_empty() {
                    return Err(match kind {
                        DatabaseKind::Sqlite => {
                            "sqlite:// needs a file path, as in sqlite://jiuzhu.db".to_owned()
                        }
                        DatabaseKind::Postgres => {
                            format!(
                                "{scheme} needs a host and database, as in {scheme}jiuzhu@localhost/jiuzhu"
                            )
                        }
                    });
                }
                return Ok(DatabaseUrl {
                    url: text.to_owned(),
                    kind,
                });
            }
        }
        let scheme = text.split_once("://").map_or("none", |(scheme, _)| scheme);
        Err(format!(
            "the database must be sqlite://PATH or postgres://USER@HOST/NAME (also postgresql://); \
             this one's scheme is {scheme}"
        ))
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({:?})", self.redacted())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl SettingValue for DatabaseUrl {
    const KIND: TomlKind = TomlKind::String;
    fn parse_text(text: &str) -> Result<Self, String> {
        text.parse()
    }
    fn shown(&self) -> String {
        self.redacted()
    }
    fn toml_text(&self) -> String {
        quoted(&self.url)
    }
}

/// A secret text. Its Debug and Display print `***`; only
/// [`Secret::expose`] gives the text.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: String) -> Secret {
        Secret(text)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The personal-data key as configured: the text form of
/// [`jiuzhu_store::DataKeys`] (`v1:` then 64 bytes in base64), checked by
/// the store's own parser and kept as a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataKey(Secret);

impl DataKey {
    /// The version prefix of the key's text.
    pub const PREFIX: &'static str = "v1:";
    /// How many random bytes a key holds.
    pub const BYTES: usize = 64;

    /// A new key from the operating system's random source.
    pub fn generate() -> Result<DataKey, jiuzhu_store::CryptoError> {
        Ok(DataKey(Secret::new(
            jiuzhu_store::DataKeys::generate()?.encoded(),
        )))
    }

    /// Checks a key's text. The error never repeats the text.
    pub fn parse(text: &str) -> Result<DataKey, String> {
        let text = text.trim();
        jiuzhu_store::DataKeys::from_encoded(text).map_err(|error| match error {
            jiuzhu_store::KeyTextError::WrongPrefix | jiuzhu_store::KeyTextError::Empty => format!(
                "the key must start with {} (then {} bytes in base64); `jiuzhu init` writes one",
                DataKey::PREFIX,
                DataKey::BYTES
            ),
            other => other.to_string(),
        })?;
        Ok(DataKey(Secret::new(text.to_owned())))
    }

    /// The key's text, for `jiuzhu init` to write.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    /// The keys themselves, for the store.
    pub fn keys(&self) -> Result<jiuzhu_store::DataKeys, jiuzhu_store::KeyTextError> {
        jiuzhu_store::DataKeys::from_encoded(self.0.expose())
    }
}

impl SettingValue for Option<Secret> {
    const KIND: TomlKind = TomlKind::String;
    const IS_SECRET: bool = true;
    fn parse_text(text: &str) -> Result<Self, String> {
        let text = text.trim();
        Ok((!text.is_empty()).then(|| Secret::new(text.to_owned())))
    }
    fn shown(&self) -> String {
        match self {
            Some(_) => "set".to_owned(),
            None => "not set".to_owned(),
        }
    }
    fn toml_text(&self) -> String {
        quoted(self.as_ref().map_or("", Secret::expose))
    }
    fn is_set(&self) -> bool {
        self.is_some()
    }
}

impl SettingValue for Option<DataKey> {
    const KIND: TomlKind = TomlKind::String;
    const IS_SECRET: bool = true;
    fn parse_text(text: &str) -> Result<Self, String> {
        DataKey::parse(text).map(Some)
    }
    fn shown(&self) -> String {
        match self {
            Some(_) => "set".to_owned(),
            None => "MISSING".to_owned(),
        }
    }
    fn toml_text(&self) -> String {
        match self {
            Some(key) => quoted(key.expose()),
            None => quoted(""),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn environment(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    /// Writes `text` as a configuration file in a fresh folder.
    fn config_file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jiuzhu.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    fn load(text: &str, pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let (_dir, path) = config_file(text);
        Settings::load(Some(&path), environment(pairs))
    }

    fn a_key() -> DataKey {
        DataKey::generate().unwrap()
    }

    #[test]
    fn with_nothing_set_every_setting_has_its_default() {
        let settings = Settings::defaults();
        assert_eq!(settings.database.expose(), "sqlite://jiuzhu.db");
        assert_eq!(settings.database.kind(), DatabaseKind::Sqlite);
        assert_eq!(settings.listen, "127.0.0.1:8080".parse().unwrap());
        assert!(settings.data_key.is_none());
        assert_eq!(settings.max_body_bytes, 1024 * 1024);
        assert_eq!(settings.feed_max_body_bytes, 64 * 1024 * 1024);
        assert_eq!(settings.request_timeout_ms, 10_000);
        assert_eq!(settings.database_pool_size, 8);
        assert_eq!(settings.max_import_rows, 50_000_000);
        assert_eq!(settings.notification_log, PathBuf::from("notifications.log"));
        assert_eq!(settings.notify_interval_ms, 5_000);
        assert_eq!(settings.notify_max_per_second, 200);
        for setting in settings.effective() {
            assert_eq!(setting.source, Source::Default, "{}", setting.name);
        }
    }

    #[test]
    fn an_empty_file_and_environment_give_the_defaults() {
        let settings = load("", &[]).unwrap();
        assert_eq!(settings.max_body_bytes, 1024 * 1024);
        assert_eq!(settings.source("database"), Some(Source::Default));
    }

    #[test]
    fn every_default_passes_its_own_check() {
        let defaults = Settings::defaults();
        let template = Settings::template(a_key());
        let uncommented: Vec<&str> = template
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest)
                    if Settings::NAMES
                        .iter()
                        .any(|name| rest.starts_with(&format!("{} = ", file_name(name)))) =>
                {
                    rest
                }
                _ => line,
            })
            .collect();
        let text = uncommented.join("\n");
        let settings = load(&text, &[]).unwrap();
        assert!(matches!(
            settings.source("database_pool_size"),
            Some(Source::File { .. })
        ));
        for (default, loaded) in defaults.effective().iter().zip(settings.effective()) {
            if !default.is_secret {
                assert_eq!(default.value, loaded.value, "{}", default.name);
            }
        }
    }

    #[test]
    fn the_file_overrides_the_defaults_and_names_its_line() {
        let (_dir, path) = config_file(
            "# comment\ndatabase = \"postgres://jiuzhu@db/jiuzhu\"\nmax_body_bytes = 2_048\n\
             database_pool_size = 20\n",
        );
        let settings = Settings::load(Some(&path), environment(&[])).unwrap();
        assert_eq!(settings.database.kind(), DatabaseKind::Postgres);
        assert_eq!(settings.max_body_bytes, 2048);
        assert_eq!(settings.database_pool_size, 20);
        assert_eq!(settings.request_timeout_ms, 10_000);
        assert_eq!(
            settings.source("database"),
            Some(Source::File {
                path: path.clone(),
                line: 2
            })
        );
        assert_eq!(
            settings.source("max_body_bytes"),
            Some(Source::File {
                path: path.clone(),
                line: 3
            })
        );
        assert_eq!(settings.source("listen"), Some(Source::Default));
        assert_eq!(settings.config_file(), Some(path.as_path()));
    }

    #[test]
    fn the_environment_overrides_the_file() {
        let settings = load(
            "listen = \"0.0.0.0:80\"\nrequest_timeout_ms = 5000\n",
            &[
                ("JIUZHU_LISTEN", "127.0.0.1:9000"),
                ("PATH", "/bin"),
                ("JIUZHU_MAX_IMPORT_ROWS", "10"),
                ("JIUZHU_FEED_MAX_BODY_BYTES", "2_000_000"),
            ],
        )
        .unwrap();
        assert_eq!(settings.listen, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(settings.feed_max_body_bytes, 2_000_000);
        assert_eq!(settings.request_timeout_ms, 5000);
        assert_eq!(settings.max_import_rows, 10);
        assert_eq!(
            settings.source("listen"),
            Some(Source::Environment {
                variable: "JIUZHU_LISTEN".to_owned()
            })
        );
    }

    #[test]
    fn flags_override_the_environment_and_the_file() {
        let settings = load(
            "database = \"sqlite://from-file.db\"\nlisten = \"0.0.0.0:80\"\n",
            &[
                ("JIUZHU_DATABASE", "sqlite://from-env.db"),
                ("JIUZHU_LISTEN", "127.0.0.1:9000"),
            ],
        )
        .unwrap()
        .with_overrides(Overrides {
            database: Some("postgresql://flag@host/jiuzhu".parse().unwrap()),
            listen: Some("[::1]:7000".parse().unwrap()),
            notification_log: None,
            feed_max_body_bytes: Some(4096),
        });
        assert_eq!(settings.database.expose(), "postgresql://flag@host/jiuzhu");
        assert_eq!(settings.feed_max_body_bytes, 4096);
        assert_eq!(
            settings.source("feed_max_body_bytes"),
            Some(Source::Flag {
                flag: "--feed-max-body-bytes"
            })
        );
        assert_eq!(settings.listen, "[::1]:7000".parse().unwrap());
        assert_eq!(
            settings.source("database"),
            Some(Source::Flag { flag: "--database" })
        );
        assert_eq!(settings.source("listen"), Some(Source::Flag { flag: "--listen" }));
    }

    #[test]
    fn absent_flags_leave_the_settings_as_they_are() {
        let settings = load("", &[("JIUZHU_LISTEN", "127.0.0.1:9000")])
            .unwrap()
            .with_overrides(Overrides::default());
        assert_eq!(settings.listen, "127.0.0.1:9000".parse().unwrap());
    }

    #[test]
    fn an_unknown_key_in_the_file_is_refused_with_its_line() {
        let error = load("listen = \"127.0.0.1:1\"\n\ndatabse = \"sqlite://x.db\"\n", &[]).unwrap_err();
        let SettingsError::File { line, message, path } = &error else {
            panic!("{error}")
        };
        assert_eq!(*line, 3);
        assert!(message.contains("`databse` is not a setting"), "{message}");
        assert!(message.contains("database"), "{message}");
        assert!(
            error.to_string().starts_with(&format!("{}:3: ", path.display())),
            "{error}"
        );
    }

    #[test]
    fn a_table_in_the_file_is_refused() {
        let error = load("[server]\nlisten = \"127.0.0.1:1\"\n", &[]).unwrap_err();
        assert!(matches!(error, SettingsError::File { line: 1, .. }), "{error}");
    }

    #[test]
    fn broken_toml_is_refused_with_its_line() {
        let error = load("listen = \"127.0.0.1:1\"\nmax_body_bytes = = 3\n", &[]).unwrap_err();
        assert!(matches!(error, SettingsError::File { line: 2, .. }), "{error}");
    }

    #[test]
    fn an_unknown_jiuzhu_variable_is_refused_by_name() {
        let error = load("", &[("JIUZHU_DATABSE", "sqlite://x.db")]).unwrap_err();
        let SettingsError::Environment { variable, message } = &error else {
            panic!("{error}")
        };
        assert_eq!(variable, "JIUZHU_DATABSE");
        assert!(message.contains("not a setting"), "{message}");
        let lower_case = load("", &[("JIUZHU_database", "sqlite://x.db")]).unwrap_err();
        assert!(
            matches!(lower_case, SettingsError::Environment { .. }),
            "{lower_case}"
        );
    }

    #[test]
    fn a_database_url_with_another_scheme_is_refused() {
        let error = load("database = \"mysql://root@localhost/jiuzhu\"\n", &[]).unwrap_err();
        let SettingsError::File { line, message, .. } = &error else {
            panic!("{error}")
        };
        assert_eq!(*line, 1);
        assert!(message.contains("sqlite://PATH or postgres://"), "{message}");
        assert!(message.contains("mysql"), "{message}");
        for bad in ["jiuzhu.db", "sqlite://", "postgres://", "sqlite:jiuzhu.db", ""] {
            assert!(bad.parse::<DatabaseUrl>().is_err(), "{bad}");
        }
        let error = load("", &[("JIUZHU_DATABASE", "http://x")]).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("environment variable JIUZHU_DATABASE: "),
            "{error}"
        );
    }

    #[test]
    fn the_accepted_database_urls_name_their_kind() {
        let cases = [
            ("sqlite://jiuzhu.db", DatabaseKind::Sqlite),
            ("sqlite:///var/lib/jiuzhu/jiuzhu.db", DatabaseKind::Sqlite),
            ("postgres://jiuzhu@localhost/jiuzhu", DatabaseKind::Postgres),
            (
                "postgresql://jiuzhu:pw@localhost:5432/jiuzhu",
                DatabaseKind::Postgres,
            ),
        ];
        for (url, kind) in cases {
            assert_eq!(url.parse::<DatabaseUrl>().unwrap().kind(), kind, "{url}");
        }
    }

    #[test]
    fn a_limit_out_of_its_range_is_refused() {
        let error = load("max_body_bytes = 10\n", &[]).unwrap_err();
        let SettingsError::File { line, message, .. } = &error else {
            panic!("{error}")
        };
        assert_eq!(*line, 1);
        assert!(
            message.contains("max_body_bytes: must be from 1024 to 1073741824, found 10"),
            "{message}"
        );
        let error = load("", &[("JIUZHU_DATABASE_POOL_SIZE", "0")]).unwrap_err();
        assert!(
            error.to_string().contains("must be from 1 to 1000, found 0"),
            "{error}"
        );
        let error = load("request_timeout_ms = -5\n", &[]).unwrap_err();
        assert!(error.to_string().contains("expected a whole number"), "{error}");
        let error = load("max_import_rows = \"10\"\n", &[]).unwrap_err();
        assert!(error.to_string().contains("no quotes"), "{error}");
        let error = load("", &[("JIUZHU_REQUEST_TIMEOUT_MS", "ten")]).unwrap_err();
        assert!(
            error.to_string().contains("expected a whole number, found `ten`"),
            "{error}"
        );
    }

    #[test]
    fn a_missing_explicit_file_is_an_error_but_a_missing_default_file_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nowhere.toml");
        let error = Settings::load(Some(&missing), environment(&[])).unwrap_err();
        assert!(matches!(error, SettingsError::Read { .. }), "{error}");
        assert!(error.to_string().contains("nowhere.toml"), "{error}");
    }

    #[test]
    fn a_generated_data_key_opens_as_the_store_keys() {
        let key = DataKey::generate().unwrap();
        let keys = key.keys().unwrap();
        assert_eq!(keys.encoded(), key.expose());
    }

    #[test]
    fn a_data_key_must_be_v1_and_64_bytes_of_base64() {
        use base64::Engine as _;
        let key = a_key();
        assert!(key.expose().starts_with("v1:"));
        assert_eq!(DataKey::parse(key.expose()).unwrap(), key);
        let short = format!(
            "v1:{}",
            base64::engine::general_purpose::STANDARD.encode([7_u8; 32])
        );
        for bad in [short.as_str(), "v1:not base64!", "secret", "", &key.expose()[3..]] {
            let error = DataKey::parse(bad).unwrap_err();
            if !bad.is_empty() {
                assert!(!error.contains(bad), "the error repeats the key: {error}");
            }
        }
        let settings = load("", &[("JIUZHU_DATA_KEY", key.expose())]).unwrap();
        assert_eq!(settings.require_data_key().unwrap(), &key);
    }

    #[test]
    fn a_missing_data_key_is_a_clear_error_when_required() {
        let settings = load("", &[]).unwrap();
        let error = settings.require_data_key().unwrap_err();
        assert!(error.to_string().contains("jiuzhu init"), "{error}");
        assert!(error.to_string().contains("JIUZHU_DATA_KEY"), "{error}");
        let shown = settings
            .effective()
            .into_iter()
            .find(|setting| setting.name == "data_key")
            .unwrap();
        assert_eq!(shown.value, "MISSING");
    }

    #[test]
    fn the_secret_never_appears_in_debug_output() {
        let key = a_key();
        let settings = load(
            &format!(
                "data_key = \"{}\"\ndatabase = \"postgres://jiuzhu:hunter2@db/jiuzhu\"\n",
                key.expose()
            ),
            &[],
        )
        .unwrap();
        let debug = format!(
            "{settings:?} {settings:#?} {:?} {}",
            settings.data_key, settings.database
        );
        assert!(!debug.contains(&key.expose()[3..]), "{debug}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("***"), "{debug}");
        let shown: Vec<String> = settings
            .effective()
            .into_iter()
            .map(|setting| setting.value)
            .collect();
        assert!(!shown.join(" ").contains(&key.expose()[3..]));
        assert_eq!(format!("{}", Secret::new("x".to_owned())), "***");
    }

    #[test]
    fn a_bad_data_key_error_does_not_repeat_the_key() {
        let bad = "v1:c2VjcmV0LXNlY3JldA==";
        let error = load(&format!("data_key = \"{bad}\"\n"), &[])
            .unwrap_err()
            .to_string();
        assert!(!error.contains("c2VjcmV0"), "{error}");
        let error = load("", &[("JIUZHU_DATA_KEY", bad)]).unwrap_err().to_string();
        assert!(!error.contains("c2VjcmV0"), "{error}");
    }

    #[test]
    fn database_passwords_are_hidden_when_shown() {
        let url: DatabaseUrl = "postgres://jiuzhu:hunter2@db:5432/jiuzhu?sslmode=require&password=hunter3"
            .parse()
            .unwrap();
        assert_eq!(
            url.redacted(),
            "postgres://jiuzhu:***@db:5432/jiuzhu?sslmode=require&password=***"
        );
        assert_eq!(url.to_string(), url.redacted());
        let plain: DatabaseUrl = "sqlite:///var/lib/jiuzhu.db".parse().unwrap();
        assert_eq!(plain.redacted(), "sqlite:///var/lib/jiuzhu.db");
    }

    #[test]
    fn the_template_documents_every_setting_and_loads_with_its_key() {
        let key = a_key();
        let text = Settings::template(key.clone());
        for name in Settings::NAMES {
            assert!(
                text.contains(&format!("{} = ", file_name(name))),
                "{name} missing from\n{text}"
            );
        }
        // The unified login's settings are dotted keys, all commented out:
        // a line added at the end is still a plain setting.
        assert!(text.contains("\n# oidc.issuer = \"\"\n"), "{text}");
        assert!(text.contains("\n# oidc.client_secret = \"\"\n"), "{text}");
        assert!(!text.contains("\n["), "{text}");
        let appended = load(&format!("{text}listen = \"127.0.0.1:1\"\n"), &[]).unwrap();
        assert_eq!(appended.listen, "127.0.0.1:1".parse().unwrap());
        let settings = load(&text, &[]).unwrap();
        assert_eq!(settings.data_key, Some(key));
        assert!(matches!(settings.source("data_key"), Some(Source::File { .. })));
        assert_eq!(settings.source("database"), Some(Source::Default));
    }

    #[test]
    fn the_notification_settings_come_from_the_file_the_environment_and_the_flag() {
        let settings = load(
            "notification_log = \"/var/log/jiuzhu/notifications.log\"\nnotify_interval_ms = 0\n",
            &[],
        )
        .unwrap();
        assert_eq!(
            settings.notification_log,
            PathBuf::from("/var/log/jiuzhu/notifications.log")
        );
        assert_eq!(settings.notify_interval_ms, 0);
        let settings = load("", &[("JIUZHU_NOTIFY_INTERVAL_MS", "60000")])
            .unwrap()
            .with_overrides(Overrides {
                notification_log: Some(PathBuf::from("sent.log")),
                ..Overrides::default()
            });
        assert_eq!(settings.notify_interval_ms, 60_000);
        assert_eq!(settings.notification_log, PathBuf::from("sent.log"));
        assert_eq!(
            settings.source("notification_log"),
            Some(Source::Flag {
                flag: "--notification-log"
            })
        );
        let settings = load(
            "notify_max_per_second = 0\n",
            &[("JIUZHU_NOTIFY_MAX_PER_SECOND", "50")],
        )
        .unwrap();
        assert_eq!(settings.notify_max_per_second, 50);
        let error = load("notify_max_per_second = 2000000\n", &[]).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("must be from 0 to 1000000, found 2000000"),
            "{error}"
        );
        let error = load("notify_interval_ms = 10\n", &[]).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("must be 0 (off) or from 100 to 86400000, found 10"),
            "{error}"
        );
        let error = load("", &[("JIUZHU_NOTIFICATION_LOG", "")]).unwrap_err();
        assert!(error.to_string().contains("must name a file"), "{error}");
    }

    #[test]
    fn the_clearing_schedule_is_off_or_monthly_on_a_day_and_time() {
        assert_eq!(ClearingSchedule::parse_text("off"), Ok(ClearingSchedule::Off));
        assert_eq!(
            ClearingSchedule::parse_text("monthly 3 02:30"),
            Ok(ClearingSchedule::Monthly { day: 3, minute: 150 })
        );
        assert_eq!(
            ClearingSchedule::Monthly { day: 3, minute: 150 }.to_string(),
            "monthly 3 02:30"
        );
        for bad in [
            "monthly 29 02:00",
            "monthly 1 24:00",
            "monthly 1 2:5",
            "weekly 1 02:00",
            "",
            "monthly 0 00:00",
        ] {
            let error = ClearingSchedule::parse_text(bad).unwrap_err();
            assert!(error.contains("monthly DAY HH:MM"), "{bad}: {error}");
        }
        let settings = load("clearing_schedule = \"monthly 1 01:00\"\n", &[]).unwrap();
        assert_eq!(
            settings.clearing_schedule,
            ClearingSchedule::Monthly { day: 1, minute: 60 }
        );
        assert_eq!(settings.clearing_report_dir, PathBuf::from("clearing-reports"));
    }

    const OIDC: &str = "[oidc]\nissuer = \"https://login.example.gov.cn/oidc\"\nclient_id = \"jiuzhu\"\n\
                        client_secret = \"hunter2-secret\"\n\
                        redirect_url = \"https://jiuzhu.example.gov.cn/login/oidc/callback\"\n";

    #[test]
    fn the_unified_login_is_off_unless_configured() {
        assert!(Settings::defaults().oidc().is_none());
        let settings = load("", &[]).unwrap();
        assert!(settings.oidc().is_none());
        assert_eq!(settings.oidc_resident_id_claim, "resident_id");
        assert_eq!(settings.oidc_scopes, Scopes::openid());
        assert_eq!(settings.oidc_timeout_ms, 5_000);
    }

    #[test]
    fn the_unified_login_comes_from_its_table_with_its_lines() {
        let settings = load(
            &format!("listen = \"127.0.0.1:1\"\n{OIDC}scopes = \"openid profile openid\"\n"),
            &[],
        )
        .unwrap();
        let oidc = settings.oidc().unwrap();
        assert_eq!(oidc.issuer, "https://login.example.gov.cn/oidc");
        assert_eq!(oidc.client_id, "jiuzhu");
        assert_eq!(oidc.client_secret.expose(), "hunter2-secret");
        assert_eq!(
            oidc.redirect_url,
            "https://jiuzhu.example.gov.cn/login/oidc/callback"
        );
        assert_eq!(oidc.resident_id_claim, "resident_id");
        assert_eq!(oidc.scopes, ["openid", "profile"]);
        assert_eq!(oidc.timeout_ms, 5_000);
        assert!(matches!(
            settings.source("oidc_issuer"),
            Some(Source::File { line: 3, .. })
        ));
        assert!(matches!(
            settings.source("oidc_redirect_url"),
            Some(Source::File { line: 6, .. })
        ));
        // Dotted keys are the same table.
        let dotted = load(
            "oidc.issuer = \"https://login.example.gov.cn\"\noidc.client_id = \"j\"\noidc.client_secret = \"s\"\n\
             oidc.redirect_url = \"https://j.example/login/oidc/callback\"\n",
            &[],
        )
        .unwrap();
        assert_eq!(dotted.oidc().unwrap().issuer, "https://login.example.gov.cn");
    }

    #[test]
    fn the_environment_alone_can_configure_the_unified_login_and_overrides_the_file() {
        let settings = load(
            OIDC,
            &[
                ("JIUZHU_OIDC_CLIENT_SECRET", "from-the-environment"),
                ("JIUZHU_OIDC_RESIDENT_ID_CLAIM", "id_card_no"),
                ("JIUZHU_OIDC_TIMEOUT_MS", "2000"),
            ],
        )
        .unwrap();
        let oidc = settings.oidc().unwrap();
        assert_eq!(oidc.client_secret.expose(), "from-the-environment");
        assert_eq!(oidc.resident_id_claim, "id_card_no");
        assert_eq!(oidc.timeout_ms, 2000);
        assert_eq!(
            settings.source("oidc_client_secret"),
            Some(Source::Environment {
                variable: "JIUZHU_OIDC_CLIENT_SECRET".to_owned()
            })
        );
        let settings = load(
            "",
            &[
                ("JIUZHU_OIDC_ISSUER", "http://127.0.0.1:9000"),
                ("JIUZHU_OIDC_CLIENT_ID", "jiuzhu"),
                ("JIUZHU_OIDC_CLIENT_SECRET", "s"),
                (
                    "JIUZHU_OIDC_REDIRECT_URL",
                    "http://localhost:8080/login/oidc/callback",
                ),
            ],
        )
        .unwrap();
        assert_eq!(settings.oidc().unwrap().issuer, "http://127.0.0.1:9000");
    }

    #[test]
    fn a_partial_unified_login_is_refused_naming_what_is_missing_and_never_the_secret() {
        let error = load(
            "[oidc]\nissuer = \"https://login.example.gov.cn\"\nclient_secret = \"hunter2-secret\"\n",
            &[],
        )
        .unwrap_err();
        let text = error.to_string();
        assert!(matches!(error, SettingsError::Oidc(_)), "{text}");
        assert!(text.contains("client_id, redirect_url not set"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        let error = load("", &[("JIUZHU_OIDC_CLIENT_ID", "jiuzhu")]).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("issuer, client_secret, redirect_url not set"),
            "{error}"
        );
    }

    #[test]
    fn unified_login_urls_must_be_https_except_on_this_machine() {
        for (text, expected) in [
            (
                "issuer = \"http://login.example.gov.cn\"",
                "http:// is only for this machine",
            ),
            (
                "issuer = \"ftp://login.example.gov.cn\"",
                "expected an https:// URL",
            ),
            ("issuer = \"https://\"", "expected a host"),
            ("issuer = \"https://login.example.gov.cn?x=1\"", "no ?query"),
            ("issuer = \"https://login.example.gov.cn/a b\"", "no spaces"),
            (
                "redirect_url = \"https://jiuzhu.example/me\"",
                "/login/oidc/callback",
            ),
            (
                "redirect_url = \"https://jiuzhu.example/login/oidc/callback?x\"",
                "/login/oidc/callback",
            ),
            ("scopes = \"profile email\"", "must include openid"),
            ("client_id = \"two words\"", "one word"),
            ("resident_id_claim = \"\"", "must not be empty"),
            ("timeout_ms = 10", "must be from 100 to 60000"),
        ] {
            let error = load(&format!("[oidc]\n{text}\n"), &[]).unwrap_err();
            let SettingsError::File { line, message, .. } = &error else {
                panic!("{text}: {error}")
            };
            assert_eq!(*line, 2, "{text}: {error}");
            assert!(message.contains(expected), "{text}: {message}");
            assert!(message.starts_with("oidc."), "{text}: {message}");
        }
        let prefixed = WebUrl::parse("https://gov.example/jiuzhu/login/oidc/callback").unwrap();
        assert!(callback_url(&Some(prefixed)).is_ok());
        for loopback in ["http://127.0.0.1:8080/x", "http://[::1]:8080", "http://localhost"] {
            assert!(WebUrl::parse(loopback).is_ok(), "{loopback}");
        }
        assert!(WebUrl::parse("http://127.0.0.1.example.com").is_err());
        let error = load("", &[("JIUZHU_OIDC_ISSUER", "http://login.example.gov.cn")]).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("environment variable JIUZHU_OIDC_ISSUER: "),
            "{error}"
        );
    }

    #[test]
    fn a_unified_login_setting_outside_its_table_or_unknown_in_it_is_refused_with_its_line() {
        let error = load(
            "listen = \"127.0.0.1:1\"\noidc_issuer = \"https://login.example\"\n",
            &[],
        )
        .unwrap_err();
        let SettingsError::File { line, message, .. } = &error else {
            panic!("{error}")
        };
        assert_eq!(*line, 2);
        assert!(
            message.contains("is written `oidc.issuer`, or `issuer` under [oidc]"),
            "{message}"
        );
        let error = load("[oidc]\nissuer = \"https://login.example\"\nisuer = \"x\"\n", &[]).unwrap_err();
        let SettingsError::File { line, message, .. } = &error else {
            panic!("{error}")
        };
        assert_eq!(*line, 3);
        assert!(message.contains("`oidc.isuer` is not a setting"), "{message}");
        assert!(message.contains("oidc.issuer"), "{message}");
    }

    #[test]
    fn the_client_secret_is_never_shown() {
        let settings = load(OIDC, &[]).unwrap();
        let debug = format!("{settings:?} {:?}", settings.oidc());
        assert!(!debug.contains("hunter2"), "{debug}");
        let shown: Vec<String> = settings
            .effective()
            .into_iter()
            .map(|setting| format!("{} {}", setting.name, setting.value))
            .collect();
        let shown = shown.join("\n");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("oidc_client_secret set"), "{shown}");
        assert_eq!(file_name("oidc_client_secret"), "oidc.client_secret");
        assert_eq!(file_name("listen"), "listen");
    }

    #[test]
    fn two_generated_keys_differ() {
        assert_ne!(a_key(), a_key());
    }
}
