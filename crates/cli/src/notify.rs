//! Sending the notifications of the outbox (see `jiuzhu_store::notify`):
//! `jiuzhu notify send` sends what is due once; `jiuzhu serve` runs
//! [`spawn_dispatcher`] in the background. Both write to the notification
//! log ([`LogFileSender`]), one JSON line per notification, never the same
//! id twice.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use jiuzhu_store::{DispatchReport, LogFileSender, Sender, Store, StoreError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

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

/// Sends everything due, [`BATCH`] at a time, until a dispatch finds fewer
/// due than it could take. A notification that fails waits for its backoff,
/// so it is not tried twice in one call.
pub async fn send_due(store: &Store, sender: &dyn Sender) -> Result<DispatchReport, StoreError> {
    let mut total = DispatchReport::default();
    loop {
        let report = store.dispatch_notifications(sender, BATCH).await?;
        total.sent += report.sent;
        total.failed += report.failed;
        total.pending = report.pending;
        if report.taken() < u64::from(BATCH) {
            return Ok(total);
        }
    }
}

/// Sends what is due every `interval`, the first time one interval after
/// it starts (a server starting takes its load first), until `stop` says
/// so; the round under way when it does is finished first.
pub fn spawn_dispatcher(
    store: Store,
    sender: LogFileSender,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stop.changed() => return,
            }
            match send_due(&store, &sender).await {
                Ok(report) if report.taken() > 0 => tracing::info!(
                    sent = report.sent,
                    failed = report.failed,
                    pending = report.pending,
                    "notifications dispatched"
                ),
                Ok(_) => {}
                Err(error) => tracing::warn!(
                    %error,
                    "notifications could not be dispatched; the next round tries again"
                ),
            }
        }
    })
}
