//! The notification outbox: what is enqueued, in which transaction, and how
//! the dispatcher hands it to a [`Sender`] without losing or repeating a
//! notification.
//!
//! # Enqueued with what it announces
//!
//! - **assisted**: every decision granting more than 0 (`assisted`, or
//!   `capped` with something left), written by real-time settlement or by
//!   the insurance feed (免申即享), is one row, inserted by the same
//!   transaction as the decision, with one multi-row statement per batch
//!   or chunk. Unique by invoice number.
//! - **new_recipient**: every new recipient (救助新增) of a spells import,
//!   in the import's transaction, with the category and start of their
//!   earliest spell in the file (the policy in force names the category).
//!   Unique by person: a person becomes a recipient once.
//!
//! A refused write stores no notification, since nothing of it is
//! committed. A replayed settlement or a file imported again decides
//! nothing new and so enqueues nothing. A reversal (冲正) sends no
//! notification: the hospital reverses at its counter with the person
//! there, and a notice already sent stays true of the decision it
//! announced; one not yet sent is still sent, for the record.
//!
//! # Dispatching
//!
//! [`Store::dispatch_notifications`] claims due rows (not sent, whose
//! `next_attempt_unix_ms` has passed) in id order, hands each to the sender
//! and then marks the ones sent. The claim writes the dispatch's token in
//! `claimed_by` and moves `next_attempt_unix_ms` to the end of a lease
//! ([`DispatchOptions::lease_ms`]), so that another dispatcher does not take
//! them meanwhile: on PostgreSQL the rows are chosen with `FOR UPDATE SKIP
//! LOCKED`, so that two `jiuzhu serve` on one database claim different
//! rows at once; on SQLite the claim is one `BEGIN IMMEDIATE` transaction,
//! one at a time. A failure increments `attempts`, keeps the error and
//! makes the row due again after an exponential backoff
//! ([`DispatchOptions::retry_base_ms`] doubled each time, at most
//! [`DispatchOptions::retry_cap_ms`]). A dispatcher that stops between
//! sending and marking leaves its claim; once the lease has passed the rows
//! are due again and sent again with the same ids, which the sender refuses
//! as repeats ([`crate::notify::LogFileSender`] does).
//!
//! # One-time codes
//!
//! - **login_code**, **details_code**: every one-time code made (a
//!   resident's login, a change of their details) is one row, inserted by
//!   the transaction that stores the code's hash and only if the ID and
//!   phone matched and the rate limit allowed it. Unique by code. Its
//!   message and the phone it goes to are kept sealed (`sealed`, AES-256-GCM
//!   under the store's data key, [`crate::Purpose::Message`]), opened only
//!   to hand them to the sender, and blanked when the row is marked sent:
//!   the code is a secret and the sealed copy is needed only for a retry.
//!   A code's row not sent when its code expires is given up
//!   (`expired_at`, its sealed message blanked) by the next claim: a late
//!   code is of no use and is never sent.
//!
//! Making a code wakes [`Store::spawn_dispatcher`]'s code task, which
//! claims only codes ([`DispatchOptions::codes_only`]), so that a resident
//! waiting at the login page does not wait for the periodic round nor
//! behind a backlog of other notifications.
//!
//! Sending is not written to the audit log: the outbox row itself records
//! when it was sent, after how many attempts, and the last error.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use jiuzhu_core::{Date, ResidentId};

use super::{Backend, Decided, Store, StoreError};
use crate::notify::{facts, Notification, NotificationKind, Sender};
use crate::spell_history::Incoming;

/// How one dispatch runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DispatchOptions {
    /// The most notifications handed to the sender in this dispatch.
    pub limit: u32,
    /// How long a claim keeps other dispatchers off the rows it took, in
    /// milliseconds: longer than sending `limit` notifications can take.
    pub lease_ms: u64,
    /// The wait after a first failure, in milliseconds; doubled after each
    /// further one.
    pub retry_base_ms: u64,
    /// The longest wait between two attempts, in milliseconds.
    pub retry_cap_ms: u64,
    /// Claim only one-time codes' notifications.
    pub codes_only: bool,
}

impl DispatchOptions {
    /// The defaults, taking at most `limit` notifications.
    pub fn with_limit(limit: u32) -> DispatchOptions {
        DispatchOptions {
            limit,
            ..DispatchOptions::default()
        }
    }

    /// The wait before the next attempt of a notification that has failed
    /// `failures` times (1 after the first failure).
    pub fn retry_after_ms(&self, failures: u64) -> u64 {
        let doublings = failures.saturating_sub(1).min(63) as u32;
        self.retry_base_ms
            .saturating_mul(1u64 << doublings)
            .min(self.retry_cap_ms)
    }
}

impl Default for DispatchOptions {
    /// 100 notifications, a lease of 5 minutes, retries after 10 s, 20 s,
    /// 40 s, … and at most every hour.
    fn default() -> DispatchOptions {
        DispatchOptions {
            limit: 100,
            lease_ms: 5 * 60 * 1000,
            retry_base_ms: 10 * 1000,
            retry_cap_ms: 60 * 60 * 1000,
            codes_only: false,
        }
    }
}

/// What one dispatch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DispatchReport {
    /// Handed to the sender and marked sent.
    pub sent: u64,
    /// Refused by the sender: still pending, tried again later.
    pub failed: u64,
    /// Not sent yet after this dispatch (failed ones, ones not due yet,
    /// ones beyond the limit, ones another dispatcher holds).
    pub pending: u64,
}

impl DispatchReport {
    /// Notifications this dispatch took: 0 when nothing was due.
    pub fn taken(&self) -> u64 {
        self.sent + self.failed
    }
}

/// Notifications sent and failed by this store's dispatches since it was
/// opened (for `/metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NotificationStats {
    pub sent: u64,
    pub failed: u64,
}

#[derive(Debug, Default)]
pub(super) struct NotificationCounts {
    sent: AtomicU64,
    failed: AtomicU64,
}

/// The longest error kept with a notification, in characters.
const ERROR_CHARS: usize = 1000;

impl Store {
    /// Sends what is due with the default options, at most `limit`
    /// notifications (see [`Store::dispatch_notifications_with`]).
    pub async fn dispatch_notifications(
        &self,
        sender: &dyn Sender,
        limit: u32,
    ) -> Result<DispatchReport, StoreError> {
        self.dispatch_notifications_with(sender, DispatchOptions::with_limit(limit))
            .await
    }

    /// Claims the due notifications (at most `options.limit`, in id
    /// order), hands each to `sender`, marks those it took as sent and
    /// keeps the others pending with their error, to be tried again after
    /// a backoff. An `Err` is a database error: what was claimed and not
    /// marked is due again once the lease has passed.
    pub async fn dispatch_notifications_with(
        &self,
        sender: &dyn Sender,
        options: DispatchOptions,
    ) -> Result<DispatchReport, StoreError> {
        let mut report = self.dispatch_once(sender, options).await?;
        report.pending = self.pending_notifications().await?;
        Ok(report)
    }

    /// How many notifications are neither sent nor given up. Read apart
    /// from any write: with millions waiting (after a large feed) it takes
    /// a while, and must not hold up the writer.
    async fn pending_notifications(&self) -> Result<u64, StoreError> {
        use sqlx::Row as _;
        const SQL: &str =
            "SELECT COUNT(*) AS pending FROM outbox WHERE sent_at IS NULL AND expired_at IS NULL";
        let pending: i64 = match &self.backend {
            Backend::Sqlite(pool) => sqlx::query(SQL).fetch_one(pool).await?.try_get("pending")?,
            Backend::Postgres(pool) => sqlx::query(SQL).fetch_one(pool).await?.try_get("pending")?,
        };
        Ok(u64::try_from(pending).unwrap_or(0))
    }

    /// One dispatch (see [`Store::dispatch_notifications_with`]), without
    /// counting what is left.
    async fn dispatch_once(
        &self,
        sender: &dyn Sender,
        options: DispatchOptions,
    ) -> Result<DispatchReport, StoreError> {
        let token = claim_token()?;
        let now = unix_ms();
        let at = super::now_text();
        let lease_end = now.saturating_add(i64::try_from(options.lease_ms).unwrap_or(i64::MAX));
        // On SQLite the claim and the marks are written by the writer task,
        // between two batches of settlements, on its own connection: they
        // never make a settlement wait on SQLite's lock.
        let claimed = match &self.backend {
            Backend::Sqlite(_) => {
                let token = token.clone();
                self.on_sqlite_writer(move |connection| {
                    Box::pin(sqlite_backend::claim(
                        connection, token, lease_end, now, at, options,
                    ))
                })
                .await?
            }
            Backend::Postgres(pool) => {
                let mut connection = pool.acquire().await?;
                postgres_backend::claim(&mut connection, token.clone(), lease_end, now, at, options).await?
            }
        };
        // A code's message is opened only to be handed to the sender.
        let mut claimed = claimed;
        let mut unopened: Vec<(i64, i64, String)> = Vec::new();
        claimed.retain_mut(|(notification, attempts, sealed)| {
            let Some(sealed) = sealed.take() else {
                return true;
            };
            match self.open_code(&sealed) {
                Some(code) => {
                    notification.text = code.text;
                    notification.phone = Some(code.phone);
                    true
                }
                None => {
                    unopened.push((
                        notification.id,
                        *attempts,
                        "its sealed message cannot be opened with this data key".to_owned(),
                    ));
                    false
                }
            }
        });
        let claimed: Vec<(Notification, i64)> = claimed
            .into_iter()
            .map(|(notification, attempts, _)| (notification, attempts))
            .collect();

        let mut report = DispatchReport::default();
        let mut sent: Vec<i64> = Vec::with_capacity(claimed.len());
        let mut failures: Vec<(i64, i64, String)> = unopened;
        for (notification, attempts) in &claimed {
            match send(sender, notification) {
                Ok(()) => sent.push(notification.id),
                Err(error) => failures.push((notification.id, *attempts, error)),
            }
        }
        // Nothing counts as sent before the sender has made it durable: if
        // it cannot, the whole round is tried again.
        if !sent.is_empty() {
            if let Err(error) = flush(sender) {
                let attempts: HashMap<i64, i64> =
                    claimed.iter().map(|(n, attempts)| (n.id, *attempts)).collect();
                failures.extend(
                    sent.drain(..)
                        .map(|id| (id, attempts.get(&id).copied().unwrap_or(0), error.clone())),
                );
            }
        }
        let mut failed = Vec::with_capacity(failures.len());
        for (id, attempts, error) in &failures {
            let failures = u64::try_from(*attempts).unwrap_or(0) + 1;
            let wait = options.retry_after_ms(failures);
            let next = unix_ms().saturating_add(i64::try_from(wait).unwrap_or(i64::MAX));
            tracing::warn!(
                notification = id,
                failures,
                retry_in_ms = wait,
                %error,
                "a notification could not be sent; it will be tried again"
            );
            failed.push((*id, shortened(error), next));
        }
        report.failed = failed.len() as u64;
        report.sent = sent.len() as u64;
        let at = super::now_text();
        match &self.backend {
            Backend::Sqlite(_) => {
                self.on_sqlite_writer(move |connection| {
                    Box::pin(sqlite_backend::mark(connection, token, failed, sent, at))
                })
                .await?
            }
            Backend::Postgres(pool) => {
                let mut connection = pool.acquire().await?;
                postgres_backend::mark(&mut connection, token, failed, sent, at).await?
            }
        };
        let counts = &self.notification_counts;
        counts.sent.fetch_add(report.sent, Ordering::Relaxed);
        counts.failed.fetch_add(report.failed, Ordering::Relaxed);
        Ok(report)
    }

    /// Sends everything due, `options.limit` at a time, until a dispatch
    /// finds fewer due than it could take. A notification that fails waits
    /// for its backoff, so it is not tried twice in one call.
    pub async fn dispatch_all(
        &self,
        sender: &dyn Sender,
        options: DispatchOptions,
    ) -> Result<DispatchReport, StoreError> {
        let mut total = DispatchReport::default();
        loop {
            let report = self.dispatch_once(sender, options).await?;
            total.sent += report.sent;
            total.failed += report.failed;
            if report.taken() < u64::from(options.limit) {
                total.pending = self.pending_notifications().await?;
                return Ok(total);
            }
        }
    }

    /// Runs the dispatchers of a server until `stop` says so (the batch
    /// under way when it does is finished first): one sends the one-time
    /// codes as soon as one is made (and retries the failed ones every
    /// [`CODE_RETRY_INTERVAL`]); the other, when `interval` is given, sends
    /// everything due every `interval`, the first time one interval after
    /// it starts (a server starting takes its load first). A backlog (the
    /// notifications of a large feed) is sent at most `max_per_second`
    /// (0: as fast as it goes), a batch at a time: each batch a write, and
    /// the pages served meanwhile come first.
    pub fn spawn_dispatcher(
        &self,
        sender: Arc<dyn Sender>,
        interval: Option<Duration>,
        max_per_second: u32,
        stop: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        let codes = {
            let store = self.clone();
            let sender = sender.clone();
            let mut stop = stop.clone();
            tokio::spawn(async move {
                let options = DispatchOptions {
                    codes_only: true,
                    ..DispatchOptions::default()
                };
                let mut retries = tokio::time::interval(CODE_RETRY_INTERVAL);
                retries.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        () = store.code_made.notified() => {}
                        _ = retries.tick() => {}
                        _ = stop.changed() => return,
                    }
                    store.dispatch_round(&*sender, options, "codes").await;
                }
            })
        };
        let store = self.clone();
        let mut stop = stop;
        tokio::spawn(async move {
            if let Some(interval) = interval {
                store
                    .send_paced(&*sender, interval, max_per_second, &mut stop)
                    .await;
            }
            let _ = codes.await;
        })
    }

    /// The background sending of [`Store::spawn_dispatcher`]: a batch every
    /// `interval` while none is due, one batch after the other at the pace
    /// of `max_per_second` while a backlog is sent; until `stop`.
    async fn send_paced(
        &self,
        sender: &dyn Sender,
        interval: Duration,
        max_per_second: u32,
        stop: &mut watch::Receiver<bool>,
    ) {
        let mut options = DispatchOptions::default();
        // A batch takes at most a second's worth.
        let batch_time = match max_per_second {
            0 => Duration::ZERO,
            rate => {
                options.limit = options.limit.min(rate);
                Duration::from_nanos(u64::from(options.limit) * 1_000_000_000 / u64::from(rate))
            }
        };
        let mut next = tokio::time::Instant::now() + interval;
        // What the round (from the first batch to the one that finds fewer
        // due than it could take) has sent, and when it was last told.
        let mut round = DispatchReport::default();
        let mut told = tokio::time::Instant::now();
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(next) => {}
                _ = stop.changed() => return,
            }
            let started = tokio::time::Instant::now();
            match self.dispatch_once(sender, options).await {
                Ok(report) => {
                    round.sent += report.sent;
                    round.failed += report.failed;
                    if report.taken() < u64::from(options.limit) {
                        if round.taken() > 0 {
                            match self.pending_notifications().await {
                                Ok(pending) => tracing::info!(
                                    sent = round.sent,
                                    failed = round.failed,
                                    pending,
                                    what = "notifications",
                                    "notifications dispatched"
                                ),
                                Err(error) => tracing::warn!(
                                    sent = round.sent,
                                    failed = round.failed,
                                    %error,
                                    what = "notifications",
                                    "notifications dispatched; how many are left could not be read"
                                ),
                            }
                        }
                        round = DispatchReport::default();
                        told = started;
                        next = started + interval;
                    } else {
                        if started.duration_since(told) >= BACKLOG_TOLD_EVERY {
                            tracing::info!(
                                sent = round.sent,
                                failed = round.failed,
                                max_per_second,
                                "notifications of a backlog dispatched so far"
                            );
                            told = started;
                        }
                        next = started + batch_time;
                    }
                }
                Err(error) => {
                    tracing::warn!(
                        %error,
                        what = "notifications",
                        "notifications could not be dispatched; the next round tries again"
                    );
                    round = DispatchReport::default();
                    next = started + interval;
                }
            }
            // As fast as it goes still lets the other tasks run between
            // two batches.
            tokio::task::yield_now().await;
        }
    }

    async fn dispatch_round(&self, sender: &dyn Sender, options: DispatchOptions, what: &'static str) {
        match self.dispatch_all(sender, options).await {
            Ok(report) if report.taken() > 0 => tracing::info!(
                sent = report.sent,
                failed = report.failed,
                pending = report.pending,
                what,
                "notifications dispatched"
            ),
            Ok(_) => {}
            Err(error) => tracing::warn!(
                %error,
                what,
                "notifications could not be dispatched; the next round tries again"
            ),
        }
    }

    /// Wakes the code task of [`Store::spawn_dispatcher`]: a code was made.
    pub(crate) fn wake_code_sender(&self) {
        self.code_made.notify_one();
    }

    /// A code's message, opened; `None` if it cannot be.
    fn open_code(&self, sealed: &[u8]) -> Option<SealedCode> {
        let plain = self.keys.decrypt(crate::Purpose::Message, sealed).ok()?;
        serde_json::from_slice(&plain).ok()
    }

    /// What this store's dispatches have sent and failed since it opened.
    pub fn notification_stats(&self) -> NotificationStats {
        NotificationStats {
            sent: self.notification_counts.sent.load(Ordering::Relaxed),
            failed: self.notification_counts.failed.load(Ordering::Relaxed),
        }
    }
}

/// How often [`Store::spawn_dispatcher`] says how far a backlog has gone.
const BACKLOG_TOLD_EVERY: Duration = Duration::from_secs(60);

/// How often the code task of [`Store::spawn_dispatcher`] looks for codes
/// to retry (a failed one waits its backoff as any notification does).
pub const CODE_RETRY_INTERVAL: Duration = Duration::from_secs(5);

/// A one-time code's message and the phone it goes to, as its outbox row
/// keeps them sealed.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SealedCode {
    pub(crate) phone: String,
    pub(crate) text: String,
}

/// A notification to write to the outbox.
#[derive(Debug)]
struct Enqueued {
    kind: NotificationKind,
    person_key: Vec<u8>,
    person_masked: String,
    /// What its message is made of ([`crate::notify::facts`]).
    facts: String,
    invoice_no: Option<String>,
    import_id: Option<i64>,
}

/// One notification per decision of `rows` that grants more than 0.
fn assisted(rows: &[Decided<'_>]) -> Vec<Enqueued> {
    rows.iter()
        .filter(|row| row.decision.amount.fen() > 0)
        .map(|row| {
            let request = row.request;
            let invoice = &request.invoice;
            Enqueued {
                kind: NotificationKind::Assisted,
                person_key: request.person.key.clone(),
                person_masked: request.person.masked.clone(),
                facts: facts(&[
                    invoice.hospital.as_str(),
                    invoice.invoice_no.as_str(),
                    &invoice.service_date.to_string(),
                    &row.decision.amount.to_string(),
                ]),
                invoice_no: Some(invoice.invoice_no.as_str().to_owned()),
                import_id: None,
            }
        })
        .collect()
}

/// One notification per new recipient of an import: a person with no
/// current spell before it who gets one. It names the earliest spell of
/// theirs that the import stores (the first in the file among equals), its
/// category by the name `names` gives its code, if any.
fn new_recipients(
    stored: &[(&Incoming<'_>, Vec<i64>)],
    current: &crate::database::CurrentSpells,
    persons: &crate::database::PersonRows,
    import_id: i64,
    names: &HashMap<String, String>,
) -> Vec<Enqueued> {
    let mut order: Vec<ResidentId> = Vec::new();
    let mut first: rustc_hash::FxHashMap<ResidentId, (&str, Date)> = rustc_hash::FxHashMap::default();
    for (spell, _) in stored {
        if current
            .get(&spell.person)
            .is_some_and(|spells| !spells.is_empty())
        {
            continue;
        }
        match first.entry(spell.person) {
            std::collections::hash_map::Entry::Vacant(vacant) => {
                vacant.insert((spell.category, spell.valid_from));
                order.push(spell.person);
            }
            std::collections::hash_map::Entry::Occupied(mut occupied) => {
                if spell.valid_from < occupied.get().1 {
                    occupied.insert((spell.category, spell.valid_from));
                }
            }
        }
    }
    order
        .into_iter()
        .filter_map(|person| {
            let (category, valid_from) = first[&person];
            let row = persons.get(&person)?;
            let category = names.get(category).map_or(category, String::as_str);
            Some(Enqueued {
                kind: NotificationKind::NewRecipient,
                person_key: row.key.clone(),
                person_masked: row.masked.clone(),
                facts: facts(&[category, &valid_from.to_string()]),
                invoice_no: None,
                import_id: Some(import_id),
            })
        })
        .collect()
}

/// The names of the categories of a policy's source, by code (those that
/// have one).
fn category_names(source: &str) -> HashMap<String, String> {
    match jiuzhu_formats::parse_policy("stored policy", source) {
        Ok(policy) => policy
            .categories()
            .iter()
            .filter_map(|category| Some((category.code.clone(), category.name.clone()?)))
            .collect(),
        Err(_) => HashMap::new(),
    }
}

/// Milliseconds since the Unix epoch, now.
fn unix_ms() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// A token naming one dispatch in the rows it claims.
fn claim_token() -> Result<String, StoreError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|error| StoreError::NotCommitted(format!("no random claim token: {error}")))?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

/// Asks the sender to make the round durable (it may block, as `send`).
fn flush(sender: &dyn Sender) -> Result<(), String> {
    let multi_threaded = tokio::runtime::Handle::try_current()
        .is_ok_and(|handle| handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi_threaded {
        tokio::task::block_in_place(|| sender.flush())
    } else {
        sender.flush()
    }
}

/// Hands one notification to the sender. A sender may block (a file
/// flushed to disk, a gateway called): on a multi-threaded runtime the
/// other tasks move off this thread meanwhile.
fn send(sender: &dyn Sender, notification: &Notification) -> Result<(), String> {
    let multi_threaded = tokio::runtime::Handle::try_current()
        .is_ok_and(|handle| handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi_threaded {
        tokio::task::block_in_place(|| sender.send(notification))
    } else {
        sender.send(notification)
    }
}

/// `text` cut to [`ERROR_CHARS`] characters.
fn shortened(text: &str) -> String {
    match text.char_indices().nth(ERROR_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// Expands the outbox's SQL for one backend. `$begin` starts the claim's
/// transaction; `$lock` ends the query that chooses the rows to claim.
macro_rules! outbox_backend {
    ($module:ident, $Pool:ty, $Db:ty, $begin:expr, $lock:literal) => {
        pub(super) mod $module {
            use std::collections::HashMap;

            use sqlx::{QueryBuilder, Row as _};

            use super::{assisted, category_names, new_recipients, unix_ms, Enqueued};
            use crate::database::{now_text, Decided, StoreError, ROWS_PER_STATEMENT};
            use crate::notify::{Notification, NotificationKind};
            use crate::spell_history::Incoming;

            /// Enqueues a notification for each decision of `rows` that
            /// grants more than 0, in one statement.
            pub(in crate::database) async fn enqueue_assisted(
                tx: &mut sqlx::Transaction<'_, $Db>,
                rows: &[Decided<'_>],
            ) -> Result<(), StoreError> {
                insert(tx, assisted(rows)).await
            }

            /// Enqueues a notification for each new recipient of an
            /// import (see [`super::new_recipients`]).
            pub(in crate::database) async fn enqueue_new_recipients(
                tx: &mut sqlx::Transaction<'_, $Db>,
                stored: &[(&Incoming<'_>, Vec<i64>)],
                current: &crate::database::CurrentSpells,
                persons: &crate::database::PersonRows,
                import_id: i64,
            ) -> Result<(), StoreError> {
                let any_new = stored
                    .iter()
                    .any(|(spell, _)| current.get(&spell.person).is_none_or(Vec::is_empty));
                if !any_new {
                    return Ok(());
                }
                let policy = sqlx::query("SELECT source FROM policies ORDER BY id DESC LIMIT 1")
                    .fetch_optional(&mut **tx)
                    .await?;
                let names = match policy {
                    Some(row) => category_names(&row.try_get::<String, _>("source")?),
                    None => HashMap::new(),
                };
                insert(
                    tx,
                    new_recipients(stored, current, persons, import_id, &names),
                )
                .await
            }

            async fn insert(
                tx: &mut sqlx::Transaction<'_, $Db>,
                rows: Vec<Enqueued>,
            ) -> Result<(), StoreError> {
                if rows.is_empty() {
                    return Ok(());
                }
                // Shared by every row: written in the statement once.
                let created_at = crate::database::sql_literal(&now_text());
                let due = unix_ms();
                // Each row's values move into its statement: nothing copied.
                let mut rows = rows.into_iter().peekable();
                let statements = std::iter::from_fn(|| {
                    rows.peek()?;
                    let chunk: Vec<Enqueued> = rows.by_ref().take(ROWS_PER_STATEMENT).collect();
                    let full = chunk.len() == ROWS_PER_STATEMENT;
                    let mut query = QueryBuilder::<$Db>::new(
                        "INSERT INTO outbox (kind, person_key, person_masked, facts, invoice_no, import_id, \
                         created_at, next_attempt_unix_ms) ",
                    );
                    query.push_values(chunk, |mut values, row| {
                        values
                            .push(crate::database::sql_literal(row.kind.as_str()))
                            .push_bind(row.person_key)
                            .push_bind(row.person_masked)
                            .push_bind(row.facts)
                            .push_bind(row.invoice_no)
                            .push_bind(row.import_id)
                            .push(&created_at)
                            .push(due);
                    });
                    // A cause already announced is not announced again.
                    query.push(" ON CONFLICT DO NOTHING");
                    Some((query, full))
                });
                crate::database::$module::execute_pipelined(tx, statements).await?;
                Ok(())
            }

            /// Claims the due notifications (at most `limit`, in id order)
            /// for the dispatch `token` until `lease_end`, in one
            /// transaction on `connection`.
            /// A code's notification comes with its sealed message.
            pub(in crate::database) async fn claim(
                connection: &mut <$Db as sqlx::Database>::Connection,
                token: String,
                lease_end: i64,
                now: i64,
                at: String,
                options: super::DispatchOptions,
            ) -> Result<Vec<(Notification, i64, Option<Vec<u8>>)>, StoreError> {
                let mut tx = sqlx::Connection::begin_with(&mut *connection, $begin).await?;
                // A code expired before it was sent is given up, its
                // message blanked (one claimed and being sent is left to
                // its dispatcher).
                sqlx::query(
                    "UPDATE outbox SET expired_at = $1, sealed = NULL WHERE code_id IS NOT NULL \
                     AND sent_at IS NULL AND expired_at IS NULL AND expires_unix_ms <= $2 \
                     AND next_attempt_unix_ms <= $2",
                )
                .bind(at)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                let sql = if options.codes_only {
                    concat!(
                        "UPDATE outbox SET claimed_by = $1, next_attempt_unix_ms = $2 WHERE id IN \
                         (SELECT id FROM outbox WHERE code_id IS NOT NULL AND sent_at IS NULL \
                         AND expired_at IS NULL AND next_attempt_unix_ms <= $3 ORDER BY id LIMIT $4 ",
                        $lock,
                        ") RETURNING id, kind, person_masked, text, facts, sealed, created_at, attempts"
                    )
                } else {
                    concat!(
                        "UPDATE outbox SET claimed_by = $1, next_attempt_unix_ms = $2 WHERE id IN \
                         (SELECT id FROM outbox WHERE sent_at IS NULL AND expired_at IS NULL \
                         AND next_attempt_unix_ms <= $3 ORDER BY id LIMIT $4 ",
                        $lock,
                        ") RETURNING id, kind, person_masked, text, facts, sealed, created_at, attempts"
                    )
                };
                let claimed = sqlx::query(sql)
                    .bind(&token)
                    .bind(lease_end)
                    .bind(now)
                    .bind(i64::from(options.limit))
                    .fetch_all(&mut *tx)
                    .await?;
                tx.commit().await?;
                let mut notifications = Vec::with_capacity(claimed.len());
                for row in claimed {
                    let kind: String = row.try_get("kind")?;
                    let kind = NotificationKind::parse(&kind)
                        .ok_or_else(|| StoreError::Damaged(format!("a notification of kind {kind:?}")))?;
                    let attempts: i64 = row.try_get("attempts")?;
                    let id: i64 = row.try_get("id")?;
                    let sealed: Option<Vec<u8>> = row.try_get("sealed")?;
                    // Written before 0009 by its words, since by its facts;
                    // a code's, sealed (opened by the dispatch).
                    let text = match row.try_get::<Option<String>, _>("text")? {
                        Some(text) => text,
                        None if sealed.is_some() => String::new(),
                        None => {
                            let facts: Option<String> = row.try_get("facts")?;
                            facts
                                .as_deref()
                                .and_then(|facts| crate::notify::message(kind, facts))
                                .ok_or_else(|| {
                                    StoreError::Damaged(format!("notification {id} has facts {facts:?}"))
                                })?
                        }
                    };
                    let notification = Notification {
                        id,
                        kind,
                        person: row.try_get("person_masked")?,
                        text,
                        created_at: row.try_get("created_at")?,
                        phone: None,
                    };
                    notifications.push((notification, attempts, sealed));
                }
                notifications.sort_by_key(|(notification, _, _)| notification.id);
                Ok(notifications)
            }

            /// Records a dispatch's round in one transaction on
            /// `connection`: each failure (`id`, its error, when it is due
            /// again) and the notifications sent, marked so even if the
            /// lease has passed meanwhile.
            pub(in crate::database) async fn mark(
                connection: &mut <$Db as sqlx::Database>::Connection,
                token: String,
                failures: Vec<(i64, String, i64)>,
                sent: Vec<i64>,
                at: String,
            ) -> Result<(), StoreError> {
                let mut tx = sqlx::Connection::begin_with(&mut *connection, $begin).await?;
                for (id, error, next) in &failures {
                    sqlx::query(
                        "UPDATE outbox SET attempts = attempts + 1, last_error = $1, \
                         next_attempt_unix_ms = $2, claimed_by = NULL \
                         WHERE id = $3 AND claimed_by = $4 AND sent_at IS NULL",
                    )
                    .bind(error)
                    .bind(*next)
                    .bind(*id)
                    .bind(&token)
                    .execute(&mut *tx)
                    .await?;
                }
                if !sent.is_empty() {
                    // A code's sealed message is blanked once it is sent.
                    let mut query = QueryBuilder::<$Db>::new("UPDATE outbox SET sent_at = ");
                    query.push_bind(at);
                    query.push(
                        ", sealed = NULL, attempts = attempts + 1, claimed_by = NULL \
                         WHERE sent_at IS NULL AND id IN (",
                    );
                    let mut list = query.separated(", ");
                    for id in &sent {
                        list.push_bind(*id);
                    }
                    query.push(")");
                    query.build().persistent(false).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(())
            }
        }
    };
}

outbox_backend!(
    sqlite_backend,
    sqlx::SqlitePool,
    sqlx::Sqlite,
    "BEGIN IMMEDIATE",
    ""
);
outbox_backend!(
    postgres_backend,
    sqlx::PgPool,
    sqlx::Postgres,
    "BEGIN",
    "FOR UPDATE SKIP LOCKED"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_between_attempts_doubles_up_to_its_cap() {
        let options = DispatchOptions::default();
        let waits: Vec<u64> = (1..=11)
            .map(|failures| options.retry_after_ms(failures))
            .collect();
        assert_eq!(
            waits,
            [10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600].map(|seconds| seconds * 1000)
        );
        assert_eq!(options.retry_after_ms(u64::MAX), 3_600_000);
        let immediate = DispatchOptions {
            retry_base_ms: 0,
            ..options
        };
        assert_eq!(immediate.retry_after_ms(5), 0);
    }

    #[test]
    fn a_long_error_is_cut_and_a_short_one_kept() {
        assert_eq!(shortened("网关超时"), "网关超时");
        let long = "错".repeat(ERROR_CHARS + 5);
        let cut = shortened(&long);
        assert_eq!(cut.chars().count(), ERROR_CHARS + 1);
        assert!(cut.ends_with('…'));
    }
}
