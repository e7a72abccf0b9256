//! `jiuzhu disburse`: bank accounts, payment batches (maker-checker), the
//! bank payment file and the bank's return file ([`Store::create_batch`]
//! and the rest hold the rules). Who runs a command is the member of staff
//! `--as NAME` (by default the operating-system user's name): the maker of
//! a batch cannot approve it, and only an approver approves or exports.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use jiuzhu_core::Fen;
use jiuzhu_formats::bank::{payment_file_text, read_bank_accounts, read_bank_return};
use jiuzhu_formats::{check_input_size, Problem, DEFAULT_MAX_INPUT_BYTES};
use jiuzhu_store::{BatchSummary, DisburseError, Store};

use crate::admin::{open_store, runtime, BAD_INPUT};
use crate::applications::Acting;
use crate::config::SettingsArgs;

/// Exit status when a rule refuses the step (maker-checker, state, totals).
const REFUSED: u8 = 3;

#[derive(Debug, clap::Subcommand)]
pub enum DisburseCommand {
    /// Load bank accounts (CSV person_id,name,bank,account): a person's
    /// newest account is used from the next batch. A row for a person the
    /// store does not know refuses the file whole.
    Accounts {
        file: PathBuf,
        #[command(flatten)]
        acting: Acting,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Make a batch of everything owed and not yet in a batch: the insurance
    /// feed's decisions and the clearings' top-ups, one line per person with
    /// a bank account.
    Create {
        #[command(flatten)]
        acting: Acting,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Approve a batch: someone other than its maker.
    Approve {
        batch: i64,
        #[command(flatten)]
        acting: Acting,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Write an approved batch's bank payment file (CSV
    /// batch_id,line_id,person_id,name,account,amount,reference), its
    /// totals checked first.
    Export {
        batch: i64,
        /// The payment file to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[command(flatten)]
        acting: Acting,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Import the bank's return file (CSV line_id,status,reason[,amount]):
    /// paid lines are marked paid, failed ones go back to be paid in a later
    /// batch. A file with any bad line is refused whole.
    Return {
        batch: i64,
        file: PathBuf,
        #[command(flatten)]
        acting: Acting,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// The batches, newest first.
    List {
        #[command(flatten)]
        settings: SettingsArgs,
    },
}

pub fn run(command: &DisburseCommand) -> ExitCode {
    match disburse(command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn read_file(file: &Path) -> Result<(String, Vec<u8>), Problem> {
    let name = file.display().to_string();
    let size = std::fs::metadata(file)
        .map_err(|error| Problem::whole_file(&name, format!("cannot be opened: {error}")))?
        .len();
    check_input_size(&name, size, DEFAULT_MAX_INPUT_BYTES)?;
    let bytes = std::fs::read(file)
        .map_err(|error| Problem::whole_file(&name, format!("cannot be read: {error}")))?;
    Ok((name, bytes))
}

fn money(fen: Fen) -> String {
    crate::simulate::money(fen)
}

fn describe(batch: &BatchSummary) -> String {
    let state = if batch.returned {
        "returned".to_owned()
    } else if batch.exported {
        "exported, awaiting the bank's return".to_owned()
    } else if let Some(approver) = &batch.approved_by {
        format!("approved by {approver}")
    } else {
        "awaiting approval".to_owned()
    };
    format!(
        "batch {}: {} lines, {} — made by {} at {}; {state}; paid {} ({}), failed {} ({}), pending {} ({})",
        batch.id,
        batch.lines,
        money(batch.total),
        batch.created_by,
        batch.created_at,
        batch.paid.0,
        money(batch.paid.1),
        batch.failed.0,
        money(batch.failed.1),
        batch.pending.0,
        money(batch.pending.1)
    )
}

/// A refusal by the rules: its message and the exit status.
fn refused(error: DisburseError) -> anyhow::Result<ExitCode> {
    match error {
        DisburseError::Refused(problems) => {
            eprint!("{problems}");
            eprintln!("Nothing was changed.");
            Ok(ExitCode::from(BAD_INPUT))
        }
        DisburseError::Store(error) => Err(error.into()),
        other => {
            eprintln!("refused: {other}");
            Ok(ExitCode::from(REFUSED))
        }
    }
}

fn disburse(command: &DisburseCommand) -> anyhow::Result<ExitCode> {
    let (settings, acting) = match command {
        DisburseCommand::Accounts { settings, acting, .. }
        | DisburseCommand::Create { settings, acting }
        | DisburseCommand::Approve { settings, acting, .. }
        | DisburseCommand::Export { settings, acting, .. }
        | DisburseCommand::Return { settings, acting, .. } => (settings, Some(acting)),
        DisburseCommand::List { settings } => (settings, None),
    };
    let actor = acting.map(Acting::name).unwrap_or_default();
    runtime()?.block_on(async {
        let store = open_store(settings).await?;
        let code = step(&store, command, &actor).await;
        store.close().await;
        code
    })
}

async fn step(store: &Store, command: &DisburseCommand, actor: &str) -> anyhow::Result<ExitCode> {
    match command {
        DisburseCommand::Accounts { file, .. } => {
            let (name, bytes) = match read_file(file) {
                Ok(read) => read,
                Err(problem) => return refused(DisburseError::Refused(problem.into())),
            };
            let rows = match read_bank_accounts(&name, &bytes) {
                Ok(rows) => rows,
                Err(problems) => return refused(DisburseError::Refused(problems)),
            };
            match store.load_bank_accounts(&name, &rows, actor).await {
                Ok(loaded) => {
                    println!(
                        "{name}: {} accounts stored, {} unchanged; they are used from the next batch.",
                        loaded.stored, loaded.unchanged
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(error) => refused(error),
            }
        }
        DisburseCommand::Create { .. } => match store.create_batch(actor).await {
            Ok(made) => {
                match &made.batch {
                    Some(batch) => println!("Made {}", describe(batch)),
                    None => println!("Nothing to pay to anyone with a bank account: no batch was made."),
                }
                let (persons, amount) = made.waiting_without_account;
                if persons > 0 {
                    println!(
                        "{persons} persons are owed {} but have no bank account yet: they wait for a later batch.",
                        money(amount)
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(error) => refused(error),
        },
        DisburseCommand::Approve { batch, .. } => match store.approve_batch(*batch, actor).await {
            Ok(summary) => {
                println!("Approved {}", describe(&summary));
                Ok(ExitCode::SUCCESS)
            }
            Err(error) => refused(error),
        },
        DisburseCommand::Export { batch, out, .. } => {
            if out.exists() {
                eprintln!(
                    "{} exists already: a payment file is never overwritten",
                    out.display()
                );
                return Ok(ExitCode::from(REFUSED));
            }
            let lines = match store.export_batch(*batch, actor).await {
                Ok(lines) => lines,
                Err(error) => return refused(error),
            };
            let text = payment_file_text(&lines);
            std::fs::write(out, text).with_context(|| format!("cannot write {}", out.display()))?;
            let total: i64 = lines.iter().map(|line| line.amount.fen()).sum();
            println!(
                "Batch {batch}: {} lines, {} written to {} (full account numbers: hand it to the bank only).",
                lines.len(),
                money(Fen::from_fen(total)),
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        DisburseCommand::Return { batch, file, .. } => {
            let (name, bytes) = match read_file(file) {
                Ok(read) => read,
                Err(problem) => return refused(DisburseError::Refused(problem.into())),
            };
            let rows = match read_bank_return(&name, &bytes) {
                Ok(rows) => rows,
                Err(problems) => return refused(DisburseError::Refused(problems)),
            };
            match store.import_bank_return(*batch, &name, &rows, actor).await {
                Ok(summary) => {
                    println!("Return {name} applied: {}", describe(&summary));
                    Ok(ExitCode::SUCCESS)
                }
                Err(error) => refused(error),
            }
        }
        DisburseCommand::List { .. } => {
            let batches = match store.batches().await {
                Ok(batches) => batches,
                Err(error) => return refused(error),
            };
            if batches.is_empty() {
                println!("No batch yet.");
            }
            for batch in &batches {
                println!("{}", describe(batch));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
