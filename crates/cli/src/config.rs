//! `jiuzhu init` and `jiuzhu config check`, and the flags every command that
//! reads the settings shares.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _};

use crate::settings::{
    file_name, DataKey, DatabaseUrl, Overrides, Settings, SettingsError, Source, DEFAULT_CONFIG_FILE,
};

/// Exit status of `config check` when the settings are not valid.
const INVALID: u8 = 2;

/// The flags that choose and override the settings.
#[derive(Debug, clap::Args)]
pub struct SettingsArgs {
    /// The configuration file [default: ./jiuzhu.toml when it exists].
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// The database, overriding the file and JIUZHU_DATABASE: sqlite://PATH or postgres://….
    #[arg(long, value_name = "URL")]
    pub database: Option<DatabaseUrl>,
    /// The address to listen on, overriding the file and JIUZHU_LISTEN.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
}

impl SettingsArgs {
    /// The settings from the file, this process's environment and the flags.
    pub fn load(&self) -> Result<Settings, SettingsError> {
        self.load_with(None)
    }

    /// [`SettingsArgs::load`], with the notification log a command's own
    /// flag names.
    pub fn load_with(&self, notification_log: Option<PathBuf>) -> Result<Settings, SettingsError> {
        let environment = std::env::vars_os().map(|(name, value)| {
            (
                name.to_string_lossy().into_owned(),
                value.to_string_lossy().into_owned(),
            )
        });
        let overrides = Overrides {
            database: self.database.clone(),
            listen: self.listen,
            notification_log,
            feed_max_body_bytes: None,
        };
        Ok(Settings::load(self.config.as_deref(), environment)?.with_overrides(overrides))
    }
}

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Where to write the configuration.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_CONFIG_FILE)]
    pub config: PathBuf,
    /// Replace an existing file (its data key is lost).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Load and validate the settings; show each with where it came from.
    Check(SettingsArgs),
}

pub fn run(command: &ConfigCommand) -> ExitCode {
    match command {
        ConfigCommand::Check(args) => check(args),
    }
}

/// Writes a new configuration with a fresh data key, readable by its owner
/// only. The file appears whole or not at all.
pub fn init(args: &InitArgs) -> anyhow::Result<()> {
    let path = &args.config;
    if !args.force && path.exists() {
        bail!(
            "{} already exists; it holds a data key that may already protect data. \
             Use --force to replace it",
            path.display()
        );
    }
    let key = DataKey::generate()
        .map_err(|error| anyhow::anyhow!("cannot get random bytes from the operating system: {error}"))?;
    let text = Settings::template(key);
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    // A temporary file is created readable and writable by its owner only.
    let mut file = tempfile::Builder::new()
        .prefix(".jiuzhu-init-")
        .tempfile_in(folder)
        .with_context(|| format!("cannot create a file in {}", folder.display()))?;
    owner_only(file.as_file())?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.as_file().sync_all())
        .with_context(|| format!("cannot write {}", file.path().display()))?;
    if args.force {
        file.persist(path)
            .map_err(|error| error.error)
            .with_context(|| format!("cannot write {}", path.display()))?;
    } else {
        file.persist_noclobber(path)
            .map_err(|error| error.error)
            .with_context(|| {
                format!(
                    "cannot write {} (use --force to replace an existing file)",
                    path.display()
                )
            })?;
    }
    println!("Wrote {} with a new data key.", path.display());
    println!(
        "Back up the data key (the data_key line of that file) somewhere safe, apart from the database: \
         without it the personal data cannot be read."
    );
    println!(
        "Check the settings with: jiuzhu config check --config {}",
        path.display()
    );
    Ok(())
}

#[cfg(unix)]
fn owner_only(file: &std::fs::File) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .context("cannot make the configuration readable by its owner only")
}

#[cfg(not(unix))]
fn owner_only(_: &std::fs::File) -> anyhow::Result<()> {
    Ok(())
}

fn check(args: &SettingsArgs) -> ExitCode {
    let settings = match args.load() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(INVALID);
        }
    };
    match settings.config_file() {
        Some(path) => println!("Configuration file: {}", path.display()),
        None => println!("Configuration file: none ({DEFAULT_CONFIG_FILE} not found here)"),
    }
    for setting in settings.effective() {
        let shown = match (&setting.source, setting.is_secret) {
            (Source::Default, true) => setting.value,
            (Source::Default, false) => format!("{} (default)", setting.value),
            (source, _) => format!("{} (from {source})", setting.value),
        };
        println!("  {:<26} {shown}", file_name(setting.name));
    }
    match settings.require_data_key() {
        Ok(_) => {
            println!("The settings are valid.");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(INVALID)
        }
    }
}
