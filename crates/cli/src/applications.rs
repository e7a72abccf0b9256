//! `jiuzhu staff`, `jiuzhu letter` and `jiuzhu review`: the bureau's staff
//! and their roles, the commitment letter (告知承诺书), and the review of
//! applications (救助审核) from the command line ([`Store`] holds the
//! rules: roles, a reviewer other than the one who entered it, a reason).
//!
//! A review command acts as the member of staff `--as NAME` (by default the
//! operating-system user's name), who must hold the role `reviewer`: the
//! command line trusts whoever holds the database and its key, as an
//! administrator; the HTTP API authenticates each member of staff by token.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use jiuzhu_store::{ApplicationError, ApplicationView, RecoveryVerdict, Role, StaffError, Store, Verdict};

use crate::admin::{open_store, operator, runtime, BAD_INPUT};
use crate::config::SettingsArgs;

/// Exit status when a rule refuses the step (role, self-review, state).
const REFUSED: u8 = 3;
/// Exit status when the application does not exist.
const NOT_FOUND: u8 = 5;

#[derive(Debug, clap::Subcommand)]
pub enum StaffCommand {
    /// Add a member of staff, or change their roles; prints a new API
    /// token for them, once.
    Add {
        name: String,
        /// Comma-separated: reviewer, approver, auditor, admin.
        #[arg(long, value_delimiter = ',', required = true)]
        roles: Vec<String>,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Set a member of staff's password for the web pages, read from the
    /// first line of standard input (at least 10 characters); their open
    /// sessions end.
    Password {
        name: String,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Set a member of staff's roles (the last enabled admin keeps
    /// `admin`; an admin cannot remove their own).
    Roles {
        name: String,
        /// Comma-separated: reviewer, approver, auditor, admin.
        #[arg(long, value_delimiter = ',', required = true)]
        roles: Vec<String>,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Disable a member of staff: their web sessions end, their API tokens
    /// are revoked (enabled again, they need a new one: `staff add`) and
    /// their password opens nothing until enabled again. The last enabled
    /// admin cannot be disabled, nor can one disable oneself.
    Disable {
        name: String,
        /// Why, as the audit log keeps it.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Enable a disabled member of staff again.
    Enable {
        name: String,
        #[command(flatten)]
        settings: SettingsArgs,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum LetterCommand {
    /// Publish a new version of the commitment letter from a UTF-8 text
    /// file; persons sign it again before their next application.
    Publish {
        file: PathBuf,
        /// The version's name, such as 2025-01.
        #[arg(long)]
        version: String,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Print the current letter, its version and its SHA-256.
    Show {
        #[command(flatten)]
        settings: SettingsArgs,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum ReviewCommand {
    /// The applications waiting for review, oldest first.
    List {
        #[command(flatten)]
        reviewer: Acting,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// One application: its bills, every check and its history (a logged
    /// read of the person's record).
    Show {
        id: i64,
        /// Why the record is read, as the audit log keeps it.
        #[arg(long, default_value = "review")]
        purpose: String,
        #[command(flatten)]
        reviewer: Acting,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Approve an application: its pending bills are decided at once.
    Approve {
        id: i64,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        reviewer: Acting,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Reject an application.
    Reject {
        id: i64,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        reviewer: Acting,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// The clearings' recovery lines (追回) and where each stands.
    Recoveries {
        #[command(flatten)]
        reviewer: Acting,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Decide a recovery line: --recover it from the person or --waive it.
    Recovery {
        line: i64,
        #[arg(long, conflicts_with = "waive", required_unless_present = "waive")]
        recover: bool,
        #[arg(long)]
        waive: bool,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        reviewer: Acting,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Record that the person repaid a line to recover (approvers).
    Repaid {
        line: i64,
        /// The bank's or the cashier's reference of the repayment.
        #[arg(long)]
        reference: String,
        #[command(flatten)]
        reviewer: Acting,
        #[command(flatten)]
        settings: SettingsArgs,
    },
}

fn print_recovery(line: &jiuzhu_store::RecoveryLine) {
    println!(
        "{}\t{}\t{}\t{}\t{}\tgranted {}, owed {}\tclearing {}\t{}",
        line.id,
        line.person_masked,
        line.year,
        crate::simulate::money(line.amount),
        line.status.as_str(),
        crate::simulate::money(line.granted),
        crate::simulate::money(line.recomputed),
        line.period,
        line.invoices
    );
    for (step, reason, at, actor) in &line.steps {
        println!("\t{at} {step} by {actor}: {reason}");
    }
}

/// Who acts: a member of staff.
#[derive(Debug, clap::Args)]
pub struct Acting {
    /// The member of staff acting [default: the operating-system user].
    #[arg(long = "as", value_name = "NAME")]
    name: Option<String>,
}

impl Acting {
    pub fn name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            std::env::var("USER")
                .or_else(|_| std::env::var("LOGNAME"))
                .unwrap_or_else(|_| "unknown".into())
        })
    }
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

/// What a step answered, printed, or its refusal.
fn shown<T>(answer: Result<T, ApplicationError>, print: fn(&T)) -> anyhow::Result<ExitCode> {
    match answer {
        Ok(value) => {
            print(&value);
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => refused(error),
    }
}

/// A refusal by the rules: its message and the exit status.
fn refused(error: ApplicationError) -> anyhow::Result<ExitCode> {
    match error {
        ApplicationError::Store(error) => Err(error.into()),
        ApplicationError::NotFound(_) => {
            eprintln!("{error}");
            Ok(ExitCode::from(NOT_FOUND))
        }
        ApplicationError::Invalid(_) | ApplicationError::ReasonRequired => {
            eprintln!("{error}");
            Ok(ExitCode::from(BAD_INPUT))
        }
        other => {
            eprintln!("refused: {other}; nothing was changed");
            Ok(ExitCode::from(REFUSED))
        }
    }
}

fn with_store<F>(settings: &SettingsArgs, work: F) -> ExitCode
where
    F: AsyncFnOnce(&Store) -> anyhow::Result<ExitCode>,
{
    finish(runtime().and_then(|runtime| {
        runtime.block_on(async {
            let store = open_store(settings).await?;
            let code = work(&store).await;
            store.close().await;
            code
        })
    }))
}

/// Roles as typed, or the problem that names the bad one.
fn parsed_roles(roles: &[String]) -> Result<Vec<Role>, String> {
    roles
        .iter()
        .map(|role| {
            Role::parse(role.trim()).ok_or_else(|| {
                format!("--roles: {role:?} is not a role; the roles are reviewer, approver, auditor, admin")
            })
        })
        .collect()
}

/// A refusal of a change of staff: its message and the exit status.
fn staff_refused(error: StaffError) -> anyhow::Result<ExitCode> {
    match error {
        StaffError::Store(error) => Err(error.into()),
        StaffError::NotFound(_) => {
            eprintln!("{error}");
            Ok(ExitCode::from(NOT_FOUND))
        }
        StaffError::NoRole | StaffError::ReasonRequired | StaffError::ReasonTooLong => {
            eprintln!("{error}");
            Ok(ExitCode::from(BAD_INPUT))
        }
        other => {
            eprintln!("refused: {other}; nothing was changed");
            Ok(ExitCode::from(REFUSED))
        }
    }
}

pub fn staff(command: &StaffCommand) -> ExitCode {
    let (name, roles, settings) = match command {
        StaffCommand::Add {
            name,
            roles,
            settings,
        } => (name, roles, settings),
        StaffCommand::Roles {
            name,
            roles,
            settings,
        } => {
            let parsed = match parsed_roles(roles) {
                Ok(parsed) => parsed,
                Err(problem) => {
                    eprintln!("{problem}");
                    return ExitCode::from(BAD_INPUT);
                }
            };
            return with_store(settings, async |store| {
                match store.set_staff_roles(name, &parsed, &operator()).await {
                    Ok(true) => {
                        println!("{name}: roles set to {}", roles.join(", "));
                        Ok(ExitCode::SUCCESS)
                    }
                    Ok(false) => {
                        println!("{name}: the roles were these already; nothing changed");
                        Ok(ExitCode::SUCCESS)
                    }
                    Err(error) => staff_refused(error),
                }
            });
        }
        StaffCommand::Disable {
            name,
            reason,
            settings,
        } => {
            return with_store(settings, async |store| {
                match store.disable_staff(name, reason, &operator()).await {
                    Ok(()) => {
                        println!(
                            "{name} is disabled: their sessions have ended and their API tokens are revoked"
                        );
                        Ok(ExitCode::SUCCESS)
                    }
                    Err(error) => staff_refused(error),
                }
            });
        }
        StaffCommand::Enable { name, settings } => {
            return with_store(settings, async |store| {
                match store.enable_staff(name, &operator()).await {
                    Ok(()) => {
                        println!("{name} is enabled again");
                        Ok(ExitCode::SUCCESS)
                    }
                    Err(error) => staff_refused(error),
                }
            });
        }
        StaffCommand::Password { name, settings } => {
            let mut line = String::new();
            if let Err(error) = std::io::stdin().read_line(&mut line) {
                eprintln!("cannot read the password from standard input: {error}");
                return ExitCode::from(BAD_INPUT);
            }
            let password = line.trim_end_matches(['\r', '\n']).to_owned();
            return with_store(settings, async |store| {
                match store.set_staff_password(name, &password, &operator()).await {
                    Ok(()) => {
                        println!("the password of {name} is set; their open sessions have ended");
                        Ok(ExitCode::SUCCESS)
                    }
                    Err(error) => refused(error),
                }
            });
        }
    };
    let parsed = match parsed_roles(roles) {
        Ok(parsed) => parsed,
        Err(problem) => {
            eprintln!("{problem}");
            return ExitCode::from(BAD_INPUT);
        }
    };
    with_store(settings, async |store| {
        match store.add_staff(name, &parsed, &operator()).await {
            Ok(token) => {
                println!("{name}: {}", roles.join(", "));
                println!("API token (shown once; keep it secret): {token}");
                Ok(ExitCode::SUCCESS)
            }
            Err(error) => refused(error),
        }
    })
}

pub fn letter(command: &LetterCommand) -> ExitCode {
    match command {
        LetterCommand::Publish {
            file,
            version,
            settings,
        } => {
            let text = match std::fs::read(file)
                .with_context(|| format!("cannot read {}", file.display()))
                .and_then(|bytes| {
                    String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8 text", file.display()))
                }) {
                Ok(text) => text,
                Err(error) => {
                    eprintln!("{error:#}");
                    return ExitCode::from(BAD_INPUT);
                }
            };
            with_store(settings, async |store| {
                match store.publish_letter(version, &text, &operator()).await {
                    Ok(letter) => {
                        println!(
                            "commitment letter {} published; SHA-256 {}",
                            letter.version, letter.sha256
                        );
                        Ok(ExitCode::SUCCESS)
                    }
                    Err(error) => refused(error),
                }
            })
        }
        LetterCommand::Show { settings } => {
            with_store(settings, async |store| match store.current_letter().await? {
                Some(letter) => {
                    println!(
                        "version {} (published {}), SHA-256 {}",
                        letter.version, letter.published_at, letter.sha256
                    );
                    println!();
                    println!("{}", letter.body);
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    eprintln!(
                        "no commitment letter is published yet (jiuzhu letter publish FILE --version V)"
                    );
                    Ok(ExitCode::from(NOT_FOUND))
                }
            })
        }
    }
}

fn print_view(view: &ApplicationView) {
    let summary = &view.summary;
    println!(
        "application {} of {}: {} — entered by {} ({}) at {}",
        summary.id,
        summary.person_masked,
        summary.state.as_str(),
        summary.entered_by,
        summary.channel,
        summary.submitted_at
    );
    println!("bills:");
    for bill in &view.bills {
        let decision = bill
            .decision
            .as_ref()
            .map_or_else(String::new, |(outcome, amount)| {
                format!(" → {outcome} {}", crate::simulate::money(*amount))
            });
        let scan = bill
            .scan
            .as_ref()
            .map_or_else(String::new, |(media_type, bytes, _)| {
                format!(", scan {media_type} {bytes} bytes")
            });
        println!(
            "  {}. {} {} {} {}: total {}, fund {}, in scope {}, out of scope {}{scan} [{}]{decision}",
            bill.line,
            bill.invoice_no,
            bill.hospital,
            bill.visit_type,
            bill.service_date,
            crate::simulate::money(bill.amounts[0]),
            crate::simulate::money(bill.amounts[1]),
            crate::simulate::money(bill.amounts[2]),
            crate::simulate::money(bill.amounts[3]),
            bill.status
        );
    }
    let findings: Vec<_> = view.findings().collect();
    if findings.is_empty() {
        println!("findings: none ({} checks passed)", view.checks.len());
    } else {
        println!("findings ({} of {} checks):", findings.len(), view.checks.len());
        for check in findings {
            println!("  bill {}: {} — {}", check.line, check.name, check.detail);
        }
    }
    println!("history:");
    for event in &view.events {
        let reason = event
            .reason
            .as_ref()
            .map_or_else(String::new, |reason| format!(": {reason}"));
        println!("  {} {} by {}{reason}", event.at, event.state, event.actor);
    }
}

pub fn review(command: &ReviewCommand) -> ExitCode {
    match command {
        ReviewCommand::List { reviewer, settings } => {
            let name = reviewer.name();
            with_store(settings, async |store| match store.review_queue(&name).await {
                Ok(queue) => {
                    if queue.is_empty() {
                        println!("no application is waiting for review");
                    }
                    for item in queue {
                        println!(
                            "{}\t{}\t{} bills\t{} findings\tin scope {}\tentered by {} at {}",
                            item.id,
                            item.person_masked,
                            item.bills,
                            item.findings,
                            crate::simulate::money(item.in_scope_self_pay),
                            item.entered_by,
                            item.submitted_at
                        );
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(error) => refused(error),
            })
        }
        ReviewCommand::Show {
            id,
            purpose,
            reviewer,
            settings,
        } => {
            let name = reviewer.name();
            with_store(settings, async |store| {
                if let Err(error) = store.require(&name, Role::Reviewer).await {
                    if store.require(&name, Role::Auditor).await.is_err() {
                        return refused(error);
                    }
                }
                shown(
                    store.open_application(*id, &name, purpose).await,
                    |(view, story)| {
                        print_view(view);
                        println!("the person's story:");
                        for event in &story.events {
                            println!("  {} [{}] {}", event.at, event.kind.as_str(), event.summary);
                        }
                    },
                )
            })
        }
        ReviewCommand::Recoveries { reviewer, settings } => {
            let name = reviewer.name();
            with_store(settings, async |store| match store.recoveries(&name).await {
                Ok(lines) => {
                    if lines.is_empty() {
                        println!("no clearing has found anything to recover");
                    }
                    lines.iter().for_each(print_recovery);
                    Ok(ExitCode::SUCCESS)
                }
                Err(error) => refused(error),
            })
        }
        ReviewCommand::Recovery {
            line,
            recover,
            reason,
            reviewer,
            settings,
            ..
        } => {
            let verdict = if *recover {
                RecoveryVerdict::Recover
            } else {
                RecoveryVerdict::Waive
            };
            let name = reviewer.name();
            with_store(settings, async |store| {
                shown(
                    store.review_recovery(*line, verdict, reason, &name).await,
                    print_recovery,
                )
            })
        }
        ReviewCommand::Repaid {
            line,
            reference,
            reviewer,
            settings,
        } => {
            let name = reviewer.name();
            with_store(settings, async |store| {
                shown(
                    store.record_repayment(*line, reference, &name).await,
                    print_recovery,
                )
            })
        }
        ReviewCommand::Approve {
            id,
            reason,
            reviewer,
            settings,
        }
        | ReviewCommand::Reject {
            id,
            reason,
            reviewer,
            settings,
        } => {
            let verdict = match command {
                ReviewCommand::Approve { .. } => Verdict::Approve,
                _ => Verdict::Reject,
            };
            let name = reviewer.name();
            with_store(settings, async |store| {
                shown(
                    store.review_application(*id, verdict, reason, &name).await,
                    print_view,
                )
            })
        }
    }
}
