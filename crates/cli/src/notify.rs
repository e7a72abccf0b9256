//! Sending the notifications of the outbox (see `jiuzhu_store::notify`):
//! `jiuzhu notify send` sends what is due once; `jiuzhu serve` runs
//! [`Store::spawn_dispatcher`] in the background (one-time codes at once,
//! the rest every `notify_interval_ms`). Both write to the notification
//! log ([`LogFileSender`]), one JSON line per notification, never the same
//! id twice.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, Context as _};
use jiuzhu_store::{DispatchOptions, DispatchReport, LogFileSender, Sender, Store, StoreError};

use crate::admin::{open_store_with, runtime};
use crate::config::SettingsArgs;

/// Notifications claimed and sent per dispatch.
const BATCH: u32 = 100;

#[derive(Debug, clap::Subcommand)]
pub enum NotifyCommand {
    /// Send the notifications that are due (after `jiuzhu import`, or when
    /// `serve` does not send them) to the notification log, once, and say
    /// how many were sent, failed (kept, tried again later) and are left.
    Send {
        #[command(flatten)]
        settings: SettingsArgs,
        /// The notification log, overriding notification_log in the file
        /// and JIUZHU_NOTIFICATION_LOG.
        #[arg(long = "notification-log", visible_alias = "log", value_name = "FILE")]
        notification_log: Option<PathBuf>,
    },
}

pub fn run(command: &NotifyCommand) -> ExitCode {
    let NotifyCommand::Send {
        settings,
        notification_log,
    } = command;
    let result = (|| -> anyhow::Result<ExitCode> {
        let settings = settings
            .load_with(notification_log.clone())
            .map_err(|error| anyhow!("{error}"))?;
        let sender = open_log(&settings.notification_log)?;
        let report = runtime()?.block_on(async {
            let store = open_store_with(&settings).await?;
            send_due(&store, &sender)
                .await
                .context("cannot send the notifications")
        })?;
        println!(
            "Notifications: {} sent, {} failed, {} pending (log {}).",
            report.sent,
            report.failed,
            report.pending,
            settings.notification_log.display()
        );
        if report.failed > 0 {
            eprintln!(
                "{} could not be sent: they are kept and tried again later; the log above says why.",
                report.failed
            );
            return Ok(ExitCode::FAILURE);
        }
        Ok(ExitCode::SUCCESS)
    })();
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Opens the notification log (created if missing).
pub fn open_log(path: &Path) -> anyhow::Result<LogFileSender> {
    LogFileSender::open(path).with_context(|| format!("cannot open the notification log {}", path.display()))
}

/// Sends everything due, [`BATCH`] at a time (see
/// [`Store::dispatch_all`]).
pub async fn send_due(store: &Store, sender: &dyn Sender) -> Result<DispatchReport, StoreError> {
    store
        .dispatch_all(sender, DispatchOptions::with_limit(BATCH))
        .await
}
