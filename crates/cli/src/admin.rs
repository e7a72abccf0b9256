//! Administration of a store: `jiuzhu policy load`, `jiuzhu import spells`,
//! `jiuzhu import invoices` (in [`crate::feed`]), `jiuzhu apikey create`,
//! `jiuzhu audit verify`. Each takes the settings
//! flags (`--database`, `--config`) like `serve`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, Context as _};
use jiuzhu_formats::{check_input_size, Problem, Problems, SpellRow, DEFAULT_MAX_INPUT_BYTES};
use jiuzhu_store::{SpellFile, SpellImport, Store, StoreError};

use crate::config::SettingsArgs;
use crate::rejected;

/// Exit status for input that breaks the formats, as `simulate` uses.
pub const BAD_INPUT: u8 = 2;
/// Exit status of `audit verify` when the chain is broken.
const CHAIN_BROKEN: u8 = 3;
/// Exit status of `audit show` when the store holds nothing of the person.
const NOT_FOUND: u8 = 5;

#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy file and store it: it is in force from now on.
    /// Loading the same file again changes nothing.
    Load {
        file: PathBuf,
        #[command(flatten)]
        settings: SettingsArgs,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum ImportCommand {
    /// Import a department's spells.csv: each spell is stored as new,
    /// as a new version of a stored one (changed or ended), or found
    /// unchanged; persons whose past changed are marked for recomputation.
    /// The same file from the same source imported again changes nothing.
    ///
    /// A file with a bad row is refused whole, every problem named
    /// (FILE:LINE: column: what is wrong), unless --skip-bad is given.
    /// Exit status: 0 imported; 2 refused, nothing imported; 4 imported
    /// with --skip-bad, some rows rejected (they are in the report).
    Spells {
        file: PathBuf,
        /// The department that sent the file (民政, 残联, …): the source of
        /// every row whose `source` column is empty.
        #[arg(long)]
        source: String,
        /// Import the rows that pass their checks and write those that do
        /// not, with their reasons, to REPORT (CSV). A problem with the
        /// whole file (unreadable, empty, not text, too large, a required
        /// column missing) or rows that overlap still refuse it whole.
        #[arg(long, value_name = "REPORT")]
        skip_bad: Option<PathBuf>,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Decide and store the bills of the insurance feed (免申即享): an
    /// invoices.csv of bills settled without real-time assistance. The file
    /// is checked whole first; a conflict or a bad row refuses it and
    /// nothing is stored.
    ///
    /// Exit status: 0 imported; 2 refused, nothing imported (or, rarely,
    /// bills refused while storing, listed); 4 imported with --skip-bad,
    /// some rows rejected (they are in the report).
    Invoices {
        file: PathBuf,
        /// Bills decided and written per transaction (at most 2048).
        #[arg(long, value_name = "N", default_value_t = jiuzhu_store::FEED_CHUNK_INVOICES as u64,
              value_parser = clap::value_parser!(u64).range(1..=jiuzhu_store::MAX_FEED_CHUNK_INVOICES as u64))]
        chunk: u64,
        /// Import the rows that pass their checks and write those that do
        /// not, with their reasons, to REPORT (CSV). A problem with the
        /// whole file (unreadable, empty, not text, a required column
        /// missing) or a conflict (one invoice number, two different
        /// bills) still refuse it whole.
        #[arg(long, value_name = "REPORT")]
        skip_bad: Option<PathBuf>,
        #[command(flatten)]
        settings: SettingsArgs,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum ApiKeyCommand {
    /// Create an API key for a hospital (the settlement API) or a department
    /// (the feeds API); it is printed once, alone on the last line, and
    /// stored only as its hash.
    Create {
        /// The hospital's code, as its bills name it.
        #[arg(
            long,
            required_unless_present_any = ["department", "hospitals"],
            conflicts_with_all = ["department", "hospitals"]
        )]
        hospital: Option<String>,
        /// A file of hospital codes, one per line (`-`: standard input):
        /// a key for each, all stored or none, printed as
        /// `HOSPITAL<TAB>KEY` lines, the file `jiuzhu-loadgen --keys` reads.
        #[arg(long, value_name = "FILE", conflicts_with = "department")]
        hospitals: Option<PathBuf>,
        /// The department (民政, 残联, …) that pushes its spells and pulls
        /// back the decisions about the persons it reported; 医保结算, the
        /// insurance settlement system, alone may push bills.
        #[arg(long)]
        department: Option<String>,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Revoke every key of a department (a key leaked or a system retired):
    /// from now on they open nothing. Create a new one after.
    Revoke {
        /// The department whose keys are revoked.
        #[arg(long)]
        department: String,
        #[command(flatten)]
        settings: SettingsArgs,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Walk the audit chain; name the first entry changed or removed.
    Verify {
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// The whole story of a person, in the order it was recorded: spells,
    /// bills, decisions with their explanations, reversals, clearings. The
    /// read is logged in the audit trail, with who read it and why.
    Show {
        /// The person's resident ID number.
        #[arg(long, value_name = "ID")]
        person: String,
        /// Why the record is read, for the audit trail.
        #[arg(long, default_value = "audit show")]
        purpose: String,
        #[command(flatten)]
        settings: SettingsArgs,
    },
}

/// Who did it, for the audit log: the operating-system user.
pub fn operator() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    format!("cli:{user}")
}

/// Opens the store the settings name, with their data key.
pub async fn open_store(settings: &SettingsArgs) -> anyhow::Result<Store> {
    let settings = settings.load().map_err(|error| anyhow!("{error}"))?;
    open_store_with(&settings).await
}

/// Opens the store of loaded settings.
pub async fn open_store_with(settings: &crate::settings::Settings) -> anyhow::Result<Store> {
    let key = settings.require_data_key().map_err(|error| anyhow!("{error}"))?;
    let keys = key.keys().map_err(|error| anyhow!("the data key: {error}"))?;
    let url = settings.database.expose().to_owned();
    Store::open(&url, keys, settings.database_pool_size)
        .await
        .with_context(|| format!("cannot open the database {}", settings.database))
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn finish(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

pub fn policy(command: &PolicyCommand) -> ExitCode {
    let PolicyCommand::Load { file, settings } = command;
    finish((|| {
        let name = file.display().to_string();
        let policy = match jiuzhu_formats::read_policy_file(file, &name) {
            Ok(policy) => policy,
            Err(problems) => {
                eprint!("{problems}");
                eprintln!("Nothing was stored.");
                return Ok(ExitCode::from(BAD_INPUT));
            }
        };
        let source = std::fs::read_to_string(file).with_context(|| format!("cannot read {name}"))?;
        let loaded = runtime()?.block_on(async {
            let store = open_store(settings).await?;
            store
                .load_policy(&source, &policy, &operator())
                .await
                .context("cannot store the policy")
        })?;
        if loaded.fresh {
            println!(
                "Policy {} stored as version {}; it is in force from now on.",
                name, loaded.id
            );
        } else {
            println!(
                "Policy {} was already stored as version {}; nothing changed.",
                name, loaded.id
            );
        }
        Ok(ExitCode::SUCCESS)
    })())
}

pub fn import(command: &ImportCommand) -> ExitCode {
    match command {
        ImportCommand::Spells {
            file,
            source,
            skip_bad,
            settings,
        } => import_spells(file, source, skip_bad.as_deref(), settings),
        ImportCommand::Invoices {
            file,
            chunk,
            skip_bad,
            settings,
        } => finish(crate::feed::import_invoices(
            file,
            usize::try_from(*chunk).unwrap_or(jiuzhu_store::FEED_CHUNK_INVOICES),
            skip_bad.as_deref(),
            settings,
            &operator(),
        )),
    }
}

fn import_spells(file: &Path, source: &str, skip_bad: Option<&Path>, settings: &SettingsArgs) -> ExitCode {
    finish((|| {
        let name = file.display().to_string();
        if let Some(report) = skip_bad {
            rejected::check_report_path(file, report)?;
        }
        runtime()?.block_on(async {
            let store = open_store(settings).await?;
            let Some((_, policy)) = store.policy_in_force().await? else {
                return Err(anyhow!(
                    "no policy is stored yet: run `jiuzhu policy load FILE` first"
                ));
            };
            let bytes = match read_limited(file, &name, DEFAULT_MAX_INPUT_BYTES) {
                Ok(bytes) => bytes,
                Err(problem) => return Ok(refused(&problem.into())),
            };
            let mut rejected_rows = Vec::new();
            let rows = match skip_bad {
                None => match jiuzhu_formats::read_spell_rows(&name, &bytes, Some(&policy)) {
                    Ok(rows) => rows,
                    Err(problems) => return Ok(refused(&problems)),
                },
                Some(report) => {
                    let read = match jiuzhu_formats::read_spells_partitioned(&name, &bytes, Some(&policy)) {
                        Ok(read) => read,
                        Err(problems) => return Ok(refused(&problems)),
                    };
                    rejected::write_report(report, &read.header, &read.rejected)?;
                    if read.good.is_empty() && !read.rejected.is_empty() {
                        eprint!("{}", rejected::problems_of(&read.rejected));
                        eprintln!(
                            "Nothing was imported: no row passed its checks; the rejected rows and \
                             their reasons are in {}.",
                            report.display()
                        );
                        return Ok(ExitCode::from(BAD_INPUT));
                    }
                    rejected_rows = read.rejected;
                    read.good
                        .into_iter()
                        .map(|good| SpellRow {
                            line: good.line,
                            spell: good.row,
                        })
                        .collect()
                }
            };
            let spell_file = if rejected_rows.is_empty() {
                SpellFile::new(source, &name, &bytes, &rows)
            } else {
                SpellFile::part(source, &name, &bytes, &rows)
            };
            let storing = crate::feed::rows_progress("encrypting, storing", rows.len() as u64);
            let result = store
                .import_spells_with_progress(&spell_file, &operator(), &|done| storing.inc(done))
                .await;
            store.close().await;
            storing.finish_and_clear();
            let report = match result {
                Ok(report) => report,
                Err(StoreError::Refused(problems)) => return Ok(refused(&problems)),
                Err(error) => return Err(error).context("cannot store the spells"),
            };
            println!("{}", import_report(&name, source, &report));
            match skip_bad {
                Some(path) if !rejected_rows.is_empty() => {
                    rejected::print_problems(&rejected_rows, path);
                    println!(
                        "{}",
                        rejected::summary(rows.len() as u64, rejected_rows.len(), path)
                    );
                    Ok(ExitCode::from(rejected::ROWS_REJECTED))
                }
                _ => Ok(ExitCode::SUCCESS),
            }
        })
    })())
}

/// Prints the problems of a refused file; nothing was imported.
fn refused(problems: &Problems) -> ExitCode {
    eprint!("{problems}");
    eprintln!("Nothing was imported.");
    ExitCode::from(BAD_INPUT)
}

/// Reads a whole file, refusing one larger than `max_bytes` before reading
/// it.
fn read_limited(file: &Path, name: &str, max_bytes: u64) -> Result<Vec<u8>, Problem> {
    let mut opened = std::fs::File::open(file)
        .map_err(|error| Problem::whole_file(name, format!("cannot be opened: {error}")))?;
    let unreadable = |error: std::io::Error| Problem::whole_file(name, format!("cannot be read: {error}"));
    let size = opened.metadata().map_err(unreadable)?.len();
    check_input_size(name, size, max_bytes)?;
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    // A file that grew since is read up to the limit and one byte more.
    std::io::Read::read_to_end(
        &mut std::io::Read::take(&mut opened, max_bytes.saturating_add(1)),
        &mut bytes,
    )
    .map_err(unreadable)?;
    check_input_size(name, bytes.len() as u64, max_bytes)?;
    Ok(bytes)
}

/// The report of an import in plain words.
fn import_report(name: &str, source: &str, report: &SpellImport) -> String {
    if let Some(earlier) = &report.already_imported {
        return format!(
            "{name} from {source}: already imported on {} by {}: nothing changed.",
            plain_time(&earlier.imported_at),
            earlier.imported_by
        );
    }
    let duplicates = if report.duplicates > 0 {
        format!(
            ", {} counted once",
            count(report.duplicates, "duplicate row", "duplicate rows")
        )
    } else {
        String::new()
    };
    format!(
        "{name} from {source}: {}; {} added, {} changed, {} unchanged{duplicates}; \
         {}, {} changed, {} ended; {} marked for recomputation.",
        count(report.rows, "row", "rows"),
        report.added,
        report.changed,
        report.unchanged,
        count(report.new_persons, "new recipient", "new recipients"),
        report.changed_persons,
        report.ended_persons,
        report.marked
    )
}

fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `2025-01-02T03:04:05.678Z` as `2025-01-02 03:04:05 UTC`.
fn plain_time(at: &str) -> String {
    match (at.get(..10), at.get(11..19)) {
        (Some(date), Some(time)) if at.ends_with('Z') => format!("{date} {time} UTC"),
        _ => at.to_owned(),
    }
}

pub fn apikey(command: &ApiKeyCommand) -> ExitCode {
    let (hospital, department, settings) = match command {
        ApiKeyCommand::Create {
            hospitals: Some(file),
            settings,
            ..
        } => return create_hospital_keys(file, settings),
        ApiKeyCommand::Create {
            hospital,
            department,
            settings,
            ..
        } => (hospital, department, settings),
        ApiKeyCommand::Revoke { department, settings } => {
            return revoke_department_keys(department, settings)
        }
    };
    finish((|| {
        let (whose, key) = match (hospital, department) {
            (Some(hospital), _) => {
                jiuzhu_core::Hospital::check(hospital).map_err(|error| anyhow!("--hospital {error}"))?;
                let key = runtime()?.block_on(async {
                    let store = open_store(settings).await?;
                    store
                        .create_api_key(hospital, &operator())
                        .await
                        .context("cannot store the key")
                })?;
                (format!("hospital {hospital}"), key)
            }
            (None, Some(department)) => {
                jiuzhu_store::check_department(department)
                    .map_err(|error| anyhow!("--department {error}"))?;
                let key = runtime()?.block_on(async {
                    let store = open_store(settings).await?;
                    store
                        .create_department_key(department, &operator())
                        .await
                        .context("cannot store the key")
                })?;
                (format!("department {department}"), key)
            }
            (None, None) => return Err(anyhow!("give --hospital CODE or --department NAME")),
        };
        println!("API key for {whose}; it is shown only now, keep it safe:");
        println!("{}", key.as_str());
        Ok(ExitCode::SUCCESS)
    })())
}

/// `jiuzhu apikey create --hospitals FILE`: every line checked before any
/// key is made; the keys stored in one transaction, then printed.
fn create_hospital_keys(file: &Path, settings: &SettingsArgs) -> ExitCode {
    let hospitals = match read_hospital_codes(file) {
        Ok(hospitals) => hospitals,
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::from(BAD_INPUT);
        }
    };
    finish((|| {
        let codes: Vec<&str> = hospitals.iter().map(String::as_str).collect();
        let keys = runtime()?.block_on(async {
            let store = open_store(settings).await?;
            store
                .create_api_keys(&codes, &operator())
                .await
                .context("cannot store the keys")
        })?;
        let mut out = String::new();
        for (hospital, key) in codes.iter().zip(&keys) {
            out.push_str(hospital);
            out.push('\t');
            out.push_str(key.as_str());
            out.push('\n');
        }
        print!("{out}");
        eprintln!(
            "{} API keys created, one per line as HOSPITAL<TAB>KEY; they are shown only now, keep them safe.",
            keys.len()
        );
        Ok(ExitCode::SUCCESS)
    })())
}

/// The hospital codes of a file, one per line (blank lines skipped): each a
/// valid code without spaces around it, none twice. The first fault is named
/// by the file's name and the line's number.
fn read_hospital_codes(file: &Path) -> anyhow::Result<Vec<String>> {
    let name = file.display().to_string();
    let bytes = if file == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(
            &mut std::io::Read::take(std::io::stdin(), DEFAULT_MAX_INPUT_BYTES.saturating_add(1)),
            &mut bytes,
        )
        .context("cannot read the standard input")?;
        check_input_size(&name, bytes.len() as u64, DEFAULT_MAX_INPUT_BYTES)
            .map_err(|problem| anyhow!("{problem}"))?;
        bytes
    } else {
        read_limited(file, &name, DEFAULT_MAX_INPUT_BYTES).map_err(|problem| anyhow!("{problem}"))?
    };
    let text = String::from_utf8(bytes).map_err(|_| anyhow!("{name}: is not UTF-8 text"))?;
    let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut codes = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        if line.trim() != line {
            return Err(anyhow!("{name}:{number}: the hospital code has spaces around it"));
        }
        jiuzhu_core::Hospital::check(line).map_err(|error| anyhow!("{name}:{number}: hospital {error}"))?;
        if let Some(first) = seen.insert(line, number) {
            return Err(anyhow!(
                "{name}:{number}: hospital {line} is already on line {first}"
            ));
        }
        codes.push(line.to_owned());
    }
    if codes.is_empty() {
        return Err(anyhow!("{name}: no hospital codes"));
    }
    Ok(codes)
}

/// `jiuzhu apikey revoke --department NAME`.
fn revoke_department_keys(department: &str, settings: &SettingsArgs) -> ExitCode {
    finish((|| {
        jiuzhu_store::check_department(department).map_err(|error| anyhow!("--department {error}"))?;
        let revoked = runtime()?.block_on(async {
            let store = open_store(settings).await?;
            store
                .revoke_department_keys(department, &operator())
                .await
                .context("cannot revoke the keys")
        })?;
        match revoked {
            0 => println!("Department {department} had no key in use: nothing changed."),
            n => println!(
                "{} of department {department} revoked: they open nothing from now on.",
                count(n, "key", "keys")
            ),
        }
        Ok(ExitCode::SUCCESS)
    })())
}

pub fn audit(command: &AuditCommand) -> ExitCode {
    let settings = match command {
        AuditCommand::Verify { settings } => settings,
        AuditCommand::Show {
            person,
            purpose,
            settings,
        } => return finish(show_person(person, purpose, settings)),
    };
    finish((|| {
        let verified = runtime()?.block_on(async {
            let store = open_store(settings).await?;
            store.verify_audit().await.context("cannot read the audit log")
        })?;
        match verified {
            Ok(summary) => {
                println!(
                    "The audit chain is whole: {} entries, last hash {}.",
                    summary.entries,
                    summary
                        .last_hash
                        .iter()
                        .map(|byte| format!("{byte:02x}"))
                        .collect::<String>()
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(broken) => {
                eprintln!("The audit chain is broken: {broken}");
                Ok(ExitCode::from(CHAIN_BROKEN))
            }
        }
    })())
}

/// `jiuzhu audit show --person ID`.
fn show_person(person: &str, purpose: &str, settings: &SettingsArgs) -> anyhow::Result<ExitCode> {
    let id = match jiuzhu_core::ResidentId::parse(person.trim()) {
        Ok(id) => id,
        Err(error) => {
            eprintln!("--person: {error}");
            return Ok(ExitCode::from(BAD_INPUT));
        }
    };
    let actor = operator();
    let story = runtime()?.block_on(async {
        let store = open_store(settings).await?;
        store
            .person_story(id, &actor, purpose)
            .await
            .context("cannot read the person's record")
    })?;
    let Some(story) = story else {
        println!(
            "The store holds nothing of {}. (This read is logged.)",
            id.masked()
        );
        return Ok(ExitCode::from(NOT_FOUND));
    };
    println!(
        "Person {}: {} events. This read by {actor} is logged in the audit trail.",
        story.masked_id,
        story.events.len()
    );
    for event in &story.events {
        println!("{}  {:<10} {}", event.at, event.kind.as_str(), event.summary);
        for line in &event.details {
            println!("{:26}{line}", "");
        }
    }
    Ok(ExitCode::SUCCESS)
}
