//! The store's domain operations over SQLite or PostgreSQL, chosen by the
//! database URL. One set of SQL (with `$N` parameters, which both accept)
//! is expanded for each backend by [`backend!`]; where the backends differ
//! (how a write transaction begins and serialises), the macro says so.
//!
//! Every write runs in one transaction that also appends its audit entry,
//! so that a write and its audit entry are committed together or not at
//! all.
//!
//! Spells are history, not state: an import never updates a spell but to
//! set `superseded_by` on the version a newer one replaces, records itself
//! in `imports` (source, file name, digest, who, when, its report) and
//! marks persons whose past changed in `recompute_marks`. The matching rule
//! and the report are decided in memory by [`crate::spell_history`] from
//! the current spells read inside the import's transaction; the same file
//! from the same source is found by its digest before anything is written.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use std::time::{SystemTime, UNIX_EPOCH};

use jiuzhu_core::{Date, Fen, Invoice, InvoiceNo, Outcome, Policy, ResidentId};
use jiuzhu_formats::json::SettlementResponse;
use jiuzhu_formats::Problems;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::ConnectOptions as _;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

use crate::audit::{verify_chain, ChainBreak, ChainSummary};
use crate::crypto::{ApiKey, ApiKeyHash, CryptoError, DataKeys, Purpose};
use crate::spell_history::{self, PendingRecomputation, SpellFile, SpellImport, StoredSpell};

mod applications;
mod clearing;
pub(crate) mod console;
mod department_feeds;
mod disbursement;
mod feed;
pub use applications::{
    scan_base64, AcceptanceSettings, ApplicationBillView, ApplicationError, ApplicationEvent,
    ApplicationState, ApplicationSummary, ApplicationView, ApplyChannel, CheckResult, HeldBill, HeldBills,
    KnownBill, Letter, Prefill, Role, ScanContent, Signature, StaffUser, UnassistedBill, Verdict,
};
pub use clearing::{CappedInvoice, ClearingError, ClearingReport, DifferenceRow, SuspectedDuplicate};
pub use department_feeds::{
    check_department, DecisionKind, DecisionPage, SharedDecision, DECISIONS_PAGE_DEFAULT, DECISIONS_PAGE_MAX,
    INSURANCE_SETTLEMENT_DEPARTMENT,
};
pub use disbursement::{masked_account, AccountsLoaded, BatchMade, BatchSummary, DisburseError};
pub use feed::{
    FeedDuplicate, FeedError, FeedOptions, FeedReport, FEED_CHUNK_INVOICES, MAX_FEED_CHUNK_INVOICES,
};
mod citizens;
mod outbox;
mod readers;
mod recoveries;
mod staff;
mod web_sessions;
pub use citizens::{
    check_phone, CitizenBill, CitizenBillsPage, CitizenDetails, CitizenPayment, CodeRequest, Dashboard,
    LoginChannel, NewDetails, CODE_SECONDS,
};
pub use recoveries::{RecoveryLine, RecoveryStatus, RecoveryVerdict};
pub use staff::{StaffError, LONGEST_DISABLE_REASON};
pub use web_sessions::{NewSession, WebSession, SHORTEST_PASSWORD};
mod story;
pub use outbox::{DispatchOptions, DispatchReport, NotificationStats};
pub use story::{PersonStory, StoryEvent, StoryKind};

/// The migrations of each backend, in order, embedded in the binary. Each
/// number is applied once; the numbers need not be contiguous.
const SQLITE_MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_init.sql")),
    (2, include_str!("../migrations/sqlite/0002_spell_history.sql")),
    (3, include_str!("../migrations/sqlite/0003_department_keys.sql")),
    (4, include_str!("../migrations/sqlite/0004_outbox.sql")),
    (5, include_str!("../migrations/sqlite/0005_outbox_lean.sql")),
    (6, include_str!("../migrations/sqlite/0006_clearing.sql")),
    (7, include_str!("../migrations/sqlite/0007_disbursement.sql")),
    (8, include_str!("../migrations/sqlite/0008_applications.sql")),
    (9, include_str!("../migrations/sqlite/0009_outbox_facts.sql")),
    (
        10,
        include_str!("../migrations/sqlite/0010_decision_responses.sql"),
    ),
    (11, include_str!("../migrations/sqlite/0011_outbox_codes.sql")),
    (12, include_str!("../migrations/sqlite/0012_staff_disabled.sql")),
    (
        13,
        include_str!("../migrations/sqlite/0013_decisions_by_year.sql"),
    ),
    (
        14,
        include_str!("../migrations/sqlite/0014_clearing_invoices_by_year.sql"),
    ),
];
const POSTGRES_MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/postgres/0001_init.sql")),
    (2, include_str!("../migrations/postgres/0002_spell_history.sql")),
    (3, include_str!("../migrations/postgres/0003_department_keys.sql")),
    (4, include_str!("../migrations/postgres/0004_outbox.sql")),
    (5, include_str!("../migrations/postgres/0005_outbox_lean.sql")),
    (6, include_str!("../migrations/postgres/0006_clearing.sql")),
    (7, include_str!("../migrations/postgres/0007_disbursement.sql")),
    (8, include_str!("../migrations/postgres/0008_applications.sql")),
    (9, include_str!("../migrations/postgres/0009_outbox_facts.sql")),
    (
        10,
        include_str!("../migrations/postgres/0010_decision_responses.sql"),
    ),
    (11, include_str!("../migrations/postgres/0011_outbox_codes.sql")),
    (12, include_str!("../migrations/postgres/0012_staff_disabled.sql")),
    (
        13,
        include_str!("../migrations/postgres/0013_decisions_by_year.sql"),
    ),
    (
        14,
        include_str!("../migrations/postgres/0014_clearing_invoices_by_year.sql"),
    ),
];

/// The pages SQLite keeps in memory per connection, in KiB (SQLite's
/// default is 2,000 KiB): a settlement or an import chunk touches pages all
/// over the indexes keyed by invoice number and by person, and re-reading
/// them from the file costs more than the memory.
pub const SQLITE_CACHE_KIB: u32 = 64 * 1024;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("the database URL must start with sqlite:// or postgres:// (got {0})")]
    UnknownDatabase(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A read of SQLite through its own API (see [`readers`]).
    #[error("database: {0}")]
    SqliteRead(#[from] rusqlite::Error),
    #[error("personal data: {0}")]
    Crypto(#[from] CryptoError),
    #[error("the stored policy no longer loads: {0}")]
    StoredPolicy(String),
    #[error("stored data is damaged: {0}")]
    Damaged(String),
    #[error("the write was not committed: {0}")]
    NotCommitted(String),
    #[error("the store's writer has stopped")]
    WriterStopped,
    /// The input breaks a rule only the whole of it shows (two rows of a
    /// spells file that overlap): every problem, naming its place.
    #[error("the file is refused; nothing was stored:\n{0}")]
    Refused(Problems),
}

/// Why a settlement or reversal was refused; nothing was stored.
#[derive(Debug, Error)]
pub enum SettleError {
    #[error("invoice {0} was already settled with a different body")]
    Conflict(String),
    #[error("invoice {invoice_no} names hospital {named:?}, but the key is for {caller:?}")]
    OtherHospital {
        invoice_no: String,
        named: String,
        caller: String,
    },
    #[error("no policy is loaded: run `jiuzhu policy load FILE` first")]
    NoPolicy,
    #[error("visit type {0:?} is not a key of the policy's [pools]")]
    UnknownVisitType(String),
    #[error("no settlement of invoice {0} for this hospital")]
    NotFound(String),
    #[error("invoice {0} was already reversed")]
    AlreadyReversed(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for SettleError {
    fn from(error: sqlx::Error) -> SettleError {
        SettleError::Store(StoreError::Database(error))
    }
}

impl From<CryptoError> for SettleError {
    fn from(error: CryptoError) -> SettleError {
        SettleError::Store(StoreError::Crypto(error))
    }
}

/// What loading a policy did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyLoad {
    pub id: i64,
    /// False when the same file was loaded before: nothing changed.
    pub fresh: bool,
}

/// A settlement as answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Settled {
    pub response: SettlementResponse,
    /// True when the same invoice had been settled before with the same
    /// body: the first answer, and nothing changed.
    pub replayed: bool,
    /// True when the hospital has since reversed it.
    pub reversed: bool,
}

/// A stored policy's id and the policy, parsed.
type PolicyInForce = (i64, Arc<Policy>);

/// The store: one of the two backends, and the keys that protect personal
/// data (from configuration, never from the database).
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
    /// SQLite: the read-only connections the pages read through, one
    /// blocking-thread hop per page (see [`readers`]).
    sqlite_readers: Option<Arc<readers::SqliteReaders>>,
    keys: DataKeys,
    /// The policy in force, parsed once per stored version.
    policy: PolicyCache,
    /// The writer task that batches settlements and reversals.
    writer: mpsc::Sender<WriteJob>,
    /// SQLite: other writes the writer task runs on its own connection,
    /// between batches (see [`Store::on_sqlite_writer`]).
    exclusive: mpsc::Sender<ExclusiveJob>,
    write_counts: Arc<WriteCounts>,
    /// API keys found lately, by hash: the hospital and when it was read.
    known_keys: Arc<Mutex<KnownKeys>>,
    notification_counts: Arc<outbox::NotificationCounts>,
    /// Told when a one-time code was made: its notification is sent at once
    /// ([`Store::run_dispatcher`]).
    code_made: Arc<tokio::sync::Notify>,
    /// SQLite: set when the write-ahead log is long and waits for a writer
    /// to let it restart (see [`checkpoint_wal`]).
    wal_restart_due: Arc<AtomicBool>,
}

type KnownKeys = HashMap<[u8; 32], (String, Instant)>;

/// How long a known API key is taken as valid without a look-up: a revoked
/// key stops working within this time.
pub const KNOWN_KEY_SECONDS: u64 = 30;
/// Keys remembered at most (a hospital system uses one or a few).
const KNOWN_KEYS_KEPT: usize = 10_000;

#[derive(Debug, Clone)]
enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Store {
    /// Opens the database named by `url` (`sqlite://PATH`, created if
    /// missing, or `postgres://…`) and brings its schema up to date.
    pub async fn open(url: &str, keys: DataKeys, pool_size: u32) -> Result<Store, StoreError> {
        let mut sqlite_readers = None;
        let (backend, writer_connection) = if let Some(path) = url.strip_prefix("sqlite://") {
            let options = SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .foreign_keys(true)
                .busy_timeout(std::time::Duration::from_secs(30))
                .pragma("cache_size", format!("-{SQLITE_CACHE_KIB}"))
                // Checkpoints run in the background (`checkpoint_wal`), not
                // in the commit of whichever write crossed the threshold.
                .pragma("wal_autocheckpoint", "0");
            let pool = SqlitePoolOptions::new()
                .max_connections(pool_size.max(1))
                .connect_with(options.clone())
                .await?;
            sqlite::migrate(&pool).await?;
            sqlite_readers = Some(Arc::new(readers::SqliteReaders::new(path.into(), pool_size)));
            // The writer's own connection: its page cache stays warm, since
            // no other connection writes between its transactions.
            let writer = options
                .statement_cache_capacity(WRITER_STATEMENT_CACHE)
                .connect()
                .await?;
            (
                Backend::Sqlite(pool.clone()),
                WriterConnection::Sqlite(Box::new(writer), pool, Arc::default()),
            )
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(pool_size.max(1))
                .connect(url)
                .await?;
            postgres::migrate(&pool).await?;
            (Backend::Postgres(pool.clone()), WriterConnection::Postgres(pool))
        } else {
            let scheme = url.split("://").next().unwrap_or_default();
            return Err(StoreError::UnknownDatabase(format!("{scheme}://…")));
        };
        let policy = PolicyCache::default();
        let (writer, queue) = mpsc::channel(WRITE_QUEUE);
        let (exclusive, exclusive_queue) = mpsc::channel(EXCLUSIVE_QUEUE);
        let write_counts = Arc::new(WriteCounts::default());
        let wal_restart_due = Arc::new(AtomicBool::new(false));
        if let WriterConnection::Sqlite(_, pool, restart_due) = &writer_connection {
            tokio::spawn(checkpoint_wal(
                pool.clone(),
                writer.downgrade(),
                vec![restart_due.clone(), wal_restart_due.clone()],
            ));
        }
        tokio::spawn(run_writer(
            writer_connection,
            policy.clone(),
            write_counts.clone(),
            queue,
            exclusive_queue,
        ));
        Ok(Store {
            backend,
            sqlite_readers,
            keys,
            policy,
            writer,
            exclusive,
            write_counts,
            known_keys: Arc::default(),
            notification_counts: Arc::default(),
            code_made: Arc::default(),
            wal_restart_due,
        })
    }

    /// What a long write (an import, a clearing) does between two of its
    /// transactions: on SQLite, when the write-ahead log is long, the
    /// checkpoint that lets the next transaction restart it, as the writer
    /// task does between batches. Without it, a file imported in a
    /// thousand transactions grows the log by every one of them.
    pub(crate) async fn between_transactions(&self) {
        if let Backend::Sqlite(pool) = &self.backend {
            if self.wal_restart_due.swap(false, Ordering::Relaxed) {
                let passive: Result<(i64, i64, i64), sqlx::Error> =
                    sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
                        .fetch_one(pool)
                        .await;
                if let Err(error) = passive {
                    tracing::warn!(%error, "a checkpoint between transactions failed");
                }
            }
        }
    }

    /// Closes the store: on SQLite, the write-ahead log is copied back into
    /// the database file and emptied first, so that the next process to
    /// open it has nothing to recover. For commands that end after their
    /// work; a store that is dropped instead loses nothing committed.
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite(pool) => {
                let truncated: Result<(i64, i64, i64), sqlx::Error> =
                    sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
                        .fetch_one(pool)
                        .await;
                if let Err(error) = truncated {
                    tracing::warn!(%error, "the write-ahead log could not be emptied at close");
                }
                pool.close().await;
            }
            Backend::Postgres(pool) => pool.close().await,
        }
    }

    /// How many transactions the writer committed, and how many writes
    /// they held: concurrent settlements share one durable commit.
    pub fn write_stats(&self) -> WriteStats {
        WriteStats {
            transactions: self.write_counts.transactions.load(Ordering::Relaxed),
            writes: self.write_counts.writes.load(Ordering::Relaxed),
        }
    }

    /// Which backend this is: `sqlite` or `postgres`.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Validates and stores a policy; it is in force from now on. Loading
    /// the same file again changes nothing.
    pub async fn load_policy(
        &self,
        source: &str,
        policy: &Policy,
        actor: &str,
    ) -> Result<PolicyLoad, StoreError> {
        let digest = sha256(source.as_bytes());
        let name = policy.name().map(str::to_owned);
        match &self.backend {
            Backend::Sqlite(pool) => sqlite::load_policy(pool, &digest, name, source, actor).await,
            Backend::Postgres(pool) => postgres::load_policy(pool, &digest, name, source, actor).await,
        }
    }

    /// The policy in force (the last one loaded) and its id.
    pub async fn policy_in_force(&self) -> Result<Option<(i64, Arc<Policy>)>, StoreError> {
        let latest = match &self.backend {
            Backend::Sqlite(pool) => sqlite::latest_policy_id(pool).await?,
            Backend::Postgres(pool) => postgres::latest_policy_id(pool).await?,
        };
        let Some(id) = latest else {
            return Ok(None);
        };
        if let Some(cached) = self.policy.get(id) {
            return Ok(Some(cached));
        }
        let source = match &self.backend {
            Backend::Sqlite(pool) => sqlite::policy_source(pool, id).await?,
            Backend::Postgres(pool) => postgres::policy_source(pool, id).await?,
        };
        self.policy.parse(id, &source).map(Some)
    }

    /// Imports a department's file of spells as new versions of the stored
    /// spells, in one transaction with its record in `imports` and one
    /// audit entry (see [`crate::spell_history`] for the rule):
    ///
    /// - each distinct spell of the file is compared with the person's
    ///   current spells of the same category and source (a row's own
    ///   `source`, or the file's): identical dates, **unchanged**; else
    ///   every current one that overlaps it or has the same `valid_from` is
    ///   superseded by it, **changed** (and **ended** when it closes an open
    ///   spell or ends one earlier); else **added**;
    /// - a person who had no spell before is a new recipient;
    /// - a person with a stored spell starting on or before today (for a
    ///   change, the earlier of the old and new starts) is marked for
    ///   recomputation from that date;
    /// - two rows of the file for one person, category and source that
    ///   overlap refuse it whole ([`StoreError::Refused`], naming both
    ///   lines); identical rows are counted once;
    /// - the same file (same source and digest) imported again changes
    ///   nothing at all and reports the earlier import.
    pub async fn import_spells(&self, file: &SpellFile<'_>, actor: &str) -> Result<SpellImport, StoreError> {
        self.import_spells_with_progress(file, actor, &|_| {}).await
    }

    /// [`Store::import_spells`], calling `progress` with the number of rows
    /// of the file done since its last call: once when the file has been
    /// checked and its IDs encrypted (the rows stored later, as they are),
    /// then as the spells are written.
    pub async fn import_spells_with_progress(
        &self,
        file: &SpellFile<'_>,
        actor: &str,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<SpellImport, StoreError> {
        let (incoming, duplicates) = spell_history::distinct_spells(file).map_err(StoreError::Refused)?;
        let mut seen: rustc_hash::FxHashSet<ResidentId> = rustc_hash::FxHashSet::default();
        let distinct: Vec<ResidentId> = incoming
            .iter()
            .map(|spell| spell.person)
            .filter(|person| seen.insert(*person))
            .collect();
        let rows = self.person_rows(&distinct)?;
        let persons: PersonRows = distinct.into_iter().zip(rows).collect();
        let import = SpellImportJob {
            keys: &self.keys,
            file,
            incoming: &incoming,
            duplicates,
            persons: &persons,
            today: today_in_china()?,
            actor,
            progress,
        };
        match &self.backend {
            Backend::Sqlite(pool) => sqlite::import_spells(pool, &import).await,
            Backend::Postgres(pool) => postgres::import_spells(pool, &import).await,
        }
    }

    /// The persons marked for recomputation and not yet cleared, each once
    /// with the earliest date that may be affected; by date, then person.
    pub async fn pending_recomputations(&self) -> Result<Vec<PendingRecomputation>, StoreError> {
        match &self.backend {
            Backend::Sqlite(pool) => sqlite::pending_recomputations(pool).await,
            Backend::Postgres(pool) => postgres::pending_recomputations(pool).await,
        }
    }

    /// Every version of a person's spells, current and superseded, in the
    /// order they were stored, with the import that brought each.
    pub async fn spell_history(&self, person: ResidentId) -> Result<Vec<StoredSpell>, StoreError> {
        let key = self
            .keys
            .blind_index(Purpose::ResidentId, person.to_string().as_bytes());
        match &self.backend {
            Backend::Sqlite(pool) => sqlite::spell_history(pool, &key).await,
            Backend::Postgres(pool) => postgres::spell_history(pool, &key).await,
        }
    }

    /// Creates an API key for a hospital; the key is shown once and stored
    /// only as its hash.
    pub async fn create_api_key(&self, hospital: &str, actor: &str) -> Result<ApiKey, StoreError> {
        let mut keys = self.create_api_keys(&[hospital], actor).await?;
        keys.pop()
            .ok_or_else(|| StoreError::Damaged("no key was made for the hospital".to_owned()))
    }

    /// A new key for each of `hospitals`, in their order, stored in one
    /// transaction: every key is stored, or none (a hospital onboarded
    /// twice gets two keys, as with [`Self::create_api_key`]).
    pub async fn create_api_keys(&self, hospitals: &[&str], actor: &str) -> Result<Vec<ApiKey>, StoreError> {
        let mut keys = Vec::with_capacity(hospitals.len());
        let mut hashes = Vec::with_capacity(hospitals.len());
        for hospital in hospitals {
            let (key, hash) = ApiKey::generate()?;
            keys.push(key);
            hashes.push((*hospital, hash));
        }
        match &self.backend {
            Backend::Sqlite(pool) => sqlite::create_api_keys(pool, &hashes, actor).await?,
            Backend::Postgres(pool) => postgres::create_api_keys(pool, &hashes, actor).await?,
        }
        Ok(keys)
    }

    /// The hospital an API key belongs to, if the key is known and not
    /// revoked. A known key is remembered for [`KNOWN_KEY_SECONDS`]; an
    /// unknown one is looked up every time.
    pub async fn hospital_for_key(&self, key: &str) -> Result<Option<String>, StoreError> {
        let hash = ApiKeyHash::of(key);
        if let Ok(known) = self.known_keys.lock() {
            if let Some((hospital, since)) = known.get(hash.as_bytes()) {
                if since.elapsed().as_secs() < KNOWN_KEY_SECONDS {
                    return Ok(Some(hospital.clone()));
                }
            }
        }
        let hospital = match &self.backend {
            Backend::Sqlite(pool) => sqlite::hospital_for_key(pool, &hash).await?,
            Backend::Postgres(pool) => postgres::hospital_for_key(pool, &hash).await?,
        };
        if let (Some(hospital), Ok(mut known)) = (&hospital, self.known_keys.lock()) {
            if known.len() >= KNOWN_KEYS_KEPT {
                known.clear();
            }
            known.insert(*hash.as_bytes(), (hospital.clone(), Instant::now()));
        }
        Ok(hospital)
    }

    /// Real-time settlement of one invoice for `hospital`: in one
    /// transaction, the invoice is checked, the person's counters read, the
    /// engine run, and invoice, decision, counters and audit entry stored.
    /// The same invoice with the same body answers as the first time.
    pub async fn settle(
        &self,
        hospital: &str,
        invoice: &Invoice,
        actor: &str,
    ) -> Result<Settled, SettleError> {
        if invoice.hospital.as_str() != hospital {
            return Err(SettleError::OtherHospital {
                invoice_no: invoice.invoice_no.to_string(),
                named: invoice.hospital.to_string(),
                caller: hospital.to_owned(),
            });
        }
        let request = Box::new(SettleRequest {
            invoice: invoice.clone(),
            person: self.person_row(invoice.person)?,
            digest: jiuzhu_formats::json::canonical_request_digest(invoice),
            actor: actor.to_owned(),
            at: now_text(),
            channel: Channel::Realtime,
        });
        self.write(|reply| WriteJob::Settle { request, reply }).await
    }

    /// Runs `work` on the SQLite writer task's connection, between two of
    /// its batches, and answers what it returns: a write that would
    /// otherwise take SQLite's lock from another connection and make the
    /// writer wait in SQLite's busy handler (tens of milliseconds) runs in
    /// turn instead. Only for a SQLite store.
    pub(crate) async fn on_sqlite_writer<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut sqlx::SqliteConnection) -> BoxedWrite<'c, Result<T, StoreError>>
            + Send
            + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: ExclusiveJob = Box::new(move |connection| {
            Box::pin(async move {
                let _ = reply.send(work(connection).await);
            })
        });
        self.exclusive
            .send(job)
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        answer.await.map_err(|_| StoreError::WriterStopped)?
    }

    /// Hands one write to the writer task and waits for its answer, which
    /// comes once the write is durable (or refused).
    async fn write(&self, job: impl FnOnce(oneshot::Sender<Answer>) -> WriteJob) -> Answer {
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(job(reply))
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        answer.await.map_err(|_| StoreError::WriterStopped)?
    }

    /// The settlement of `invoice_no`, if `hospital` settled it.
    pub async fn settlement(
        &self,
        hospital: &str,
        invoice_no: &InvoiceNo,
    ) -> Result<Option<Settled>, StoreError> {
        match &self.backend {
            Backend::Sqlite(pool) => sqlite::settlement(pool, hospital, invoice_no.as_str()).await,
            Backend::Postgres(pool) => postgres::settlement(pool, hospital, invoice_no.as_str()).await,
        }
    }

    /// Reverses a settlement the hospital cancelled (冲正): the counters
    /// give back its amount and the deductible it used; the reversal is a
    /// new record, nothing is deleted.
    pub async fn reverse(
        &self,
        hospital: &str,
        invoice_no: &InvoiceNo,
        actor: &str,
    ) -> Result<Settled, SettleError> {
        let request = ReverseRequest {
            hospital: hospital.to_owned(),
            invoice_no: invoice_no.as_str().to_owned(),
            actor: actor.to_owned(),
            at: now_text(),
        };
        self.write(|reply| WriteJob::Reverse { request, reply }).await
    }

    /// Walks the audit chain from the first entry.
    pub async fn verify_audit(&self) -> Result<Result<ChainSummary, ChainBreak>, StoreError> {
        let rows = match &self.backend {
            Backend::Sqlite(pool) => sqlite::audit_rows(pool).await?,
            Backend::Postgres(pool) => postgres::audit_rows(pool).await?,
        };
        Ok(verify_chain(rows))
    }

    /// The stored counters of a person and year: `(pool, deductible_used,
    /// granted)` in pool order, for checks and reports.
    pub async fn counters(
        &self,
        person: ResidentId,
        year: i32,
    ) -> Result<Vec<(String, i64, i64)>, StoreError> {
        let key = self
            .keys
            .blind_index(Purpose::ResidentId, person.to_string().as_bytes());
        match &self.backend {
            Backend::Sqlite(pool) => sqlite::counter_rows(pool, &key, i64::from(year)).await,
            Backend::Postgres(pool) => postgres::counter_rows(pool, &key, i64::from(year)).await,
        }
    }

    /// Each person's blind index and masked ID, on every core for a large
    /// file; the encrypted ID is left empty, made only for the persons an
    /// import stores, as it writes them ([`Store::encrypted_id`]).
    fn person_rows(&self, persons: &[ResidentId]) -> Result<Vec<PersonRow>, CryptoError> {
        const PER_THREAD_AT_LEAST: usize = 4096;
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        let per_thread = persons.len().div_ceil(threads).max(PER_THREAD_AT_LEAST);
        if persons.len() <= per_thread {
            return persons
                .iter()
                .map(|person| self.person_key_row(*person))
                .collect();
        }
        std::thread::scope(|scope| {
            let parts: Vec<_> = persons
                .chunks(per_thread)
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .map(|person| self.person_key_row(*person))
                            .collect::<Result<Vec<_>, _>>()
                    })
                })
                .collect();
            let mut rows = Vec::with_capacity(persons.len());
            for part in parts {
                match part.join() {
                    Ok(part) => rows.extend(part?),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            Ok(rows)
        })
    }

    /// [`Store::person_row`] without the encrypted ID (empty).
    fn person_key_row(&self, person: ResidentId) -> Result<PersonRow, CryptoError> {
        Ok(PersonRow {
            key: self
                .keys
                .blind_index(Purpose::ResidentId, person.to_string().as_bytes())
                .to_vec(),
            encrypted: Vec::new(),
            masked: person.masked(),
        })
    }

    fn person_row(&self, person: ResidentId) -> Result<PersonRow, CryptoError> {
        let text = person.to_string();
        Ok(PersonRow {
            key: self
                .keys
                .blind_index(Purpose::ResidentId, text.as_bytes())
                .to_vec(),
            encrypted: self.keys.encrypt(Purpose::ResidentId, text.as_bytes())?,
            masked: person.masked(),
        })
    }
}

/// `text` as an SQL string literal (quotes doubled), the same in SQLite and
/// PostgreSQL: for a value that every row of a large insert shares, written
/// once in the statement rather than bound to each row.
pub(crate) fn sql_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The persons of an import by ID (a fast hash: IDs are checked numbers,
/// hashed a few times per row of a large file).
pub(crate) type PersonRows = rustc_hash::FxHashMap<ResidentId, PersonRow>;

/// The current spells of an import's persons, by person.
pub(crate) type CurrentSpells = rustc_hash::FxHashMap<ResidentId, Vec<spell_history::Current>>;

/// A person as stored: blind index, encrypted ID, masked ID.
#[derive(Debug, Clone)]
pub(crate) struct PersonRow {
    key: Vec<u8>,
    encrypted: Vec<u8>,
    masked: String,
}

/// An import of spells, checked and prepared before its transaction.
struct SpellImportJob<'j> {
    /// To encrypt the IDs of the persons stored.
    keys: &'j DataKeys,
    file: &'j SpellFile<'j>,
    incoming: &'j [spell_history::Incoming<'j>],
    duplicates: u64,
    persons: &'j PersonRows,
    today: Date,
    actor: &'j str,
    /// Rows done since the last call.
    progress: &'j (dyn Fn(u64) + Sync),
}

/// The way a bill came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Channel {
    /// At the hospital counter, through the settlement API.
    Realtime,
    /// In the insurance feed (免申即享), after the fact.
    Feed,
    /// In an application (救助申请), once accepted or approved.
    Application,
}

impl Channel {
    /// As stored in `invoices.channel`.
    fn as_str(self) -> &'static str {
        match self {
            Channel::Realtime => "realtime",
            Channel::Feed => "feed",
            Channel::Application => "application",
        }
    }
}

/// Everything a settlement needs, prepared before it joins a batch.
struct SettleRequest {
    invoice: Invoice,
    person: PersonRow,
    digest: [u8; 32],
    /// Who decided it, as stored in `decisions.decided_by`.
    actor: String,
    at: String,
    channel: Channel,
}

impl SettleRequest {
    /// Whether this request is the bill stored under its number: in real
    /// time, the same body (the canonical request's digest); in the feed,
    /// the same bill ([`BillContent`]), whichever channel stored it.
    fn same_as(&self, stored: &StoredBill) -> bool {
        match self.channel {
            Channel::Realtime => stored.digest.as_slice() == self.digest.as_slice(),
            Channel::Feed | Channel::Application => {
                stored.content == BillContent::of(&self.invoice, &self.person.key)
            }
        }
    }

    /// [`SettleRequest::same_as`] for an earlier request of the same run.
    fn same_as_request(&self, earlier: &SettleRequest) -> bool {
        match self.channel {
            Channel::Realtime => self.digest == earlier.digest,
            Channel::Feed | Channel::Application => {
                BillContent::of(&self.invoice, &self.person.key)
                    == BillContent::of(&earlier.invoice, &earlier.person.key)
            }
        }
    }
}

/// What makes two reports under one invoice number the same bill: every
/// field but `settled_at`. A bill the hospital settled in real time and the
/// insurance feed reports again (or two channels of the feed report) may
/// carry different settlement times; it is still one bill, decided once.
/// Any other field that differs makes it a conflict.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BillContent {
    person_key: Vec<u8>,
    hospital: String,
    visit_type: String,
    service_date: String,
    /// total, fund_paid, in_scope_self_pay, out_of_scope_self_pay, in fen.
    amounts: [i64; 4],
}

const AMOUNT_COLUMNS: [&str; 4] = ["total", "fund_paid", "in_scope_self_pay", "out_of_scope_self_pay"];

impl BillContent {
    fn of(invoice: &Invoice, person_key: &[u8]) -> BillContent {
        let amounts = &invoice.amounts;
        BillContent {
            person_key: person_key.to_vec(),
            hospital: invoice.hospital.as_str().to_owned(),
            visit_type: invoice.visit_type.clone(),
            service_date: invoice.service_date.to_string(),
            amounts: [
                amounts.total().fen(),
                amounts.fund_paid().fen(),
                amounts.in_scope_self_pay().fen(),
                amounts.out_of_scope_self_pay().fen(),
            ],
        }
    }

    /// What differs, in plain words: `total 120.00 here, 100.00 {there}`.
    /// Resident IDs are not shown, only that they differ.
    fn differences(&self, other: &BillContent, there: &str) -> String {
        let mut parts = Vec::new();
        if self.person_key != other.person_key {
            parts.push(format!("person_id differs from the one {there}"));
        }
        let mut text = |column: &str, here: &str, them: &str| {
            if here != them {
                parts.push(format!(
                    "{column} {} here, {} {there}",
                    json_string(here),
                    json_string(them)
                ));
            }
        };
        text("hospital", &self.hospital, &other.hospital);
        text("visit_type", &self.visit_type, &other.visit_type);
        text("service_date", &self.service_date, &other.service_date);
        for ((column, here), them) in AMOUNT_COLUMNS.iter().zip(self.amounts).zip(other.amounts) {
            if here != them {
                parts.push(format!(
                    "{column} {} here, {} {there}",
                    Fen::from_fen(here),
                    Fen::from_fen(them)
                ));
            }
        }
        parts.join("; ")
    }
}

/// An invoice as stored: the digest of its request and its bill.
#[derive(Debug)]
struct StoredBill {
    digest: Vec<u8>,
    content: BillContent,
}

/// Invoice numbers looked up in one statement.
const STORED_LOOKUP: usize = 2048;

/// What became of one request of a run.
enum RunAnswer {
    /// Decided now: its place among the rows the run writes.
    Decided(usize),
    /// An earlier request of the run was the same: its row.
    Repeated(usize),
    /// Stored before, the same: nothing changes.
    Stored,
    /// Stored before (or earlier in the run) with another body or bill.
    Conflict,
    NoPolicy,
    UnknownVisitType,
}

/// What became of one bill of a feed chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FeedAnswer {
    Decided { outcome: Outcome, amount: Fen },
    AlreadyDecided,
    Conflict,
    NoPolicy,
    UnknownVisitType,
}

/// Which chunk of which file, for the chunk's audit entry.
struct ChunkLabel<'a> {
    file: &'a str,
    /// 1-based.
    chunk: usize,
    chunks: usize,
    actor: &'a str,
}

/// The audit entry of one real-time decision.
fn decision_audit(row: &Decided<'_>) -> AuditRecord {
    let invoice = &row.request.invoice;
    AuditRecord {
        actor: row.request.actor.clone(),
        action: "settlement.decide",
        subject: format!("invoice {}", invoice.invoice_no),
        details: format!(
            "{{\"hospital\":{},\"person\":{},\"outcome\":{},\"amount\":\"{}\",\"policy_id\":{}}}",
            json_string(invoice.hospital.as_str()),
            json_string(&row.request.person.masked),
            json_string(row.decision.outcome.as_str()),
            row.decision.amount,
            row.policy_id
        ),
    }
}

/// The one audit entry of a feed chunk: how many bills it decided, by
/// outcome, the amount, its first and last invoice number (canonical
/// order), and `decisions_sha256`, the SHA-256 of its decision rows as
/// [`decision_rows_text`] writes them.
fn chunk_audit(rows: &[Decided<'_>], label: &ChunkLabel<'_>) -> AuditRecord {
    let mut counts = [0u64; 5];
    let mut amount = 0i64;
    for row in rows {
        if let Some(index) = Outcome::ALL
            .iter()
            .position(|outcome| *outcome == row.decision.outcome)
        {
            counts[index] += 1;
        }
        amount += row.decision.amount.fen();
    }
    let outcomes: Vec<String> = Outcome::ALL
        .iter()
        .zip(counts)
        .filter(|(outcome, _)| **outcome != Outcome::Duplicate)
        .map(|(outcome, count)| format!("{}:{count}", json_string(outcome.as_str())))
        .collect();
    let first = rows
        .first()
        .map_or("", |row| row.request.invoice.invoice_no.as_str());
    let last = rows
        .last()
        .map_or("", |row| row.request.invoice.invoice_no.as_str());
    let digest: String = sha256(decision_rows_text(rows).as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    AuditRecord {
        actor: label.actor.to_owned(),
        action: "feed.decide",
        subject: format!("invoices {first}..{last}"),
        details: format!(
            "{{\"file\":{},\"chunk\":{},\"chunks\":{},\"decided\":{},\"outcomes\":{{{}}},\"amount\":\"{}\",\
             \"first\":{},\"last\":{},\"policy_id\":{},\"decisions_sha256\":\"{digest}\"}}",
            json_string(label.file),
            label.chunk,
            label.chunks,
            rows.len(),
            outcomes.join(","),
            Fen::from_fen(amount),
            json_string(first),
            json_string(last),
            rows.first().map_or(0, |row| row.policy_id),
        ),
    }
}

/// The decision rows of a feed chunk as the text its audit entry hashes:
/// one line per row, in the order written, each a JSON array of
/// `invoice_no`, `person_key` (hex), `year`, `outcome`, `category`, `pool`,
/// `policy_version` (null when empty), `base`, `deductible_applied`,
/// `eligible`, `amount` (integer fen) and `policy_id`, ending in a line
/// feed. Anyone can recompute it from the `decisions` table.
pub fn decision_row_line(row: &DecisionRow) -> String {
    let optional = |text: &Option<String>| text.as_deref().map_or_else(|| "null".to_owned(), json_string);
    let key: String = row.person_key.iter().map(|byte| format!("{byte:02x}")).collect();
    format!(
        "[{},\"{key}\",{},{},{},{},{},{},{},{},{},{}]\n",
        json_string(&row.invoice_no),
        row.year,
        json_string(&row.outcome),
        optional(&row.category),
        optional(&row.pool),
        optional(&row.policy_version),
        row.base,
        row.deductible_applied,
        row.eligible,
        row.amount,
        row.policy_id
    )
}

/// One row of the `decisions` table, as [`decision_row_line`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionRow {
    pub invoice_no: String,
    pub person_key: Vec<u8>,
    pub year: i64,
    pub outcome: String,
    pub category: Option<String>,
    pub pool: Option<String>,
    pub policy_version: Option<String>,
    pub base: i64,
    pub deductible_applied: i64,
    pub eligible: i64,
    pub amount: i64,
    pub policy_id: i64,
}

fn decision_rows_text(rows: &[Decided<'_>]) -> String {
    let mut text = String::with_capacity(rows.len() * 160);
    for row in rows {
        let decision = &row.decision;
        text.push_str(&decision_row_line(&DecisionRow {
            invoice_no: row.request.invoice.invoice_no.to_string(),
            person_key: row.request.person.key.clone(),
            year: row.year,
            outcome: decision.outcome.as_str().to_owned(),
            category: row.category.clone(),
            pool: row.pool.clone(),
            policy_version: row.version.clone(),
            base: decision.base.fen(),
            deductible_applied: decision.deductible_applied.fen(),
            eligible: decision.eligible.fen(),
            amount: decision.amount.fen(),
            policy_id: row.policy_id,
        }));
    }
    text
}

/// A JSON string literal.
fn json_string(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}

/// A settlement decided in a batch, waiting to be written.
struct Decided<'a> {
    request: &'a SettleRequest,
    year: i64,
    policy_id: i64,
    category: Option<String>,
    pool: Option<String>,
    version: Option<String>,
    decision: jiuzhu_core::Decision,
    response: SettlementResponse,
    response_text: String,
    /// The counter it moved: pool, deductible used and granted after it.
    counted: Option<(String, i64, i64)>,
}

/// An audit entry before it is chained.
struct AuditRecord {
    actor: String,
    action: &'static str,
    subject: String,
    details: String,
}

/// A reversal, prepared before it joins a batch.
struct ReverseRequest {
    hospital: String,
    invoice_no: String,
    actor: String,
    at: String,
}

type Answer = Result<Settled, SettleError>;

/// One write for the writer task, with where its answer goes.
enum WriteJob {
    Settle {
        request: Box<SettleRequest>,
        reply: oneshot::Sender<Answer>,
    },
    Reverse {
        request: ReverseRequest,
        reply: oneshot::Sender<Answer>,
    },
}

impl WriteJob {
    fn answer(self, answer: Answer) {
        let reply = match self {
            WriteJob::Settle { reply, .. } | WriteJob::Reverse { reply, .. } => reply,
        };
        // The caller may have gone (a timed-out request): the write stands,
        // and the same request sent again is answered from the store.
        let _ = reply.send(answer);
    }
}

/// What the writer task has committed since the store was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Transactions committed (each one durable flush).
    pub transactions: u64,
    /// Settlements and reversals written in them (refusals and replays
    /// excluded).
    pub writes: u64,
}

#[derive(Debug, Default)]
struct WriteCounts {
    transactions: AtomicU64,
    writes: AtomicU64,
}

/// A write run on the SQLite writer's connection between batches.
type ExclusiveJob = Box<dyn for<'c> FnOnce(&'c mut sqlx::SqliteConnection) -> BoxedWrite<'c, ()> + Send>;
/// The future of such a write, borrowing the connection.
pub(crate) type BoxedWrite<'c, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'c>>;
/// Other writes waiting for the writer beyond this make callers wait.
const EXCLUSIVE_QUEUE: usize = 64;

/// The most jobs one transaction takes.
const MAX_BATCH: usize = 256;
/// Jobs waiting beyond this make callers wait to queue.
const WRITE_QUEUE: usize = 4096;

/// Group commit: the writer task takes every write waiting when the last
/// commit ends, runs each in its own savepoint of one transaction, commits
/// once (one durable flush for all of them), and only then answers. Under
/// load the batches grow by themselves; alone, a write is a batch of one.
async fn run_writer(
    mut connection: WriterConnection,
    cache: PolicyCache,
    counts: Arc<WriteCounts>,
    mut queue: mpsc::Receiver<WriteJob>,
    mut exclusive: mpsc::Receiver<ExclusiveJob>,
) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    loop {
        // Settlements first; another write runs when none is waiting.
        let received = tokio::select! {
            biased;
            received = queue.recv_many(&mut jobs, MAX_BATCH) => received,
            Some(job) = exclusive.recv() => {
                if let WriterConnection::Sqlite(writer, _, _) = &mut connection {
                    job(writer).await;
                    connection.between_batches().await;
                }
                continue;
            }
        };
        if received == 0 {
            return;
        }
        match write_batch(&mut connection, &cache, &counts, &jobs).await {
            Ok(answers) => {
                for (job, answer) in jobs.drain(..).zip(answers) {
                    job.answer(answer);
                }
                connection.between_batches().await;
            }
            // When a batch fails, each of its jobs is tried alone, so that
            // one write the database refuses fails only itself.
            Err(failure) if jobs.len() > 1 => {
                tracing_failure(&failure);
                for job in jobs.drain(..) {
                    let answer =
                        match write_batch(&mut connection, &cache, &counts, std::slice::from_ref(&job)).await
                        {
                            Ok(mut answers) => answers.pop().unwrap_or_else(|| Err(failure_of("no answer"))),
                            Err(error) => Err(failure_of(&error.to_string())),
                        };
                    job.answer(answer);
                }
            }
            Err(failure) => {
                for job in jobs.drain(..) {
                    job.answer(Err(failure_of(&failure.to_string())));
                }
            }
        }
    }
}

/// The connection the writer task writes with. On SQLite it is its own,
/// kept for the store's life (reopened from the pool's settings if it
/// fails); on PostgreSQL each batch takes one from the pool.
enum WriterConnection {
    /// The connection, the pool whose settings reopen it, and whether the
    /// write-ahead log waits for the writer to restart it.
    Sqlite(Box<sqlx::SqliteConnection>, SqlitePool, Arc<AtomicBool>),
    Postgres(PgPool),
}

impl WriterConnection {
    /// What the writer does after it has answered a batch: on SQLite, the
    /// checkpoint that lets the write-ahead log restart, when it is due.
    async fn between_batches(&mut self) {
        if let WriterConnection::Sqlite(writer, _, restart_due) = self {
            if restart_due.swap(false, Ordering::Relaxed) {
                checkpoint_by_writer(writer).await;
            }
        }
    }
}

/// Prepared statements the SQLite writer keeps: its multi-row statements
/// differ by their number of rows.
const WRITER_STATEMENT_CACHE: usize = 1024;

/// How often the SQLite write-ahead log is copied back into the database
/// file, and the size past which the writer is asked to let it restart.
const CHECKPOINT_EVERY_MS: u64 = 100;
const WAL_RESTART_FRAMES: i64 = 8_192;

/// Copies the SQLite write-ahead log back into the database file while the
/// writer goes on: a passive checkpoint never blocks it, where SQLite's own
/// automatic one would make the commit that crosses its threshold copy
/// thousands of pages and flush the file before it answers.
///
/// The log starts again from its beginning only when a write begins with
/// every frame copied back, which cannot happen by itself while writes keep
/// coming faster than a checkpoint ends. So once the log is long, this asks
/// the writer (`restart_due`) to run, between two batches, a passive
/// checkpoint of its own: it has only the last few frames to copy, and the
/// write after it restarts the log. Nothing here ever waits on the writer's
/// lock (a blocking checkpoint would make the writer sleep in SQLite's busy
/// handler). Ends with the store.
async fn checkpoint_wal(
    pool: SqlitePool,
    store: mpsc::WeakSender<WriteJob>,
    restart_due: Vec<Arc<AtomicBool>>,
) {
    let mut ticks = tokio::time::interval(std::time::Duration::from_millis(CHECKPOINT_EVERY_MS));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if store.upgrade().is_none() {
            return;
        }
        let passive: Result<(i64, i64, i64), sqlx::Error> = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&pool)
            .await;
        match passive {
            Ok((_, frames, _)) if frames >= WAL_RESTART_FRAMES => {
                for due in &restart_due {
                    due.store(true, Ordering::Relaxed);
                }
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "a checkpoint failed"),
        }
    }
}

/// The writer's part of restarting the log (see [`checkpoint_wal`]).
async fn checkpoint_by_writer(writer: &mut sqlx::SqliteConnection) {
    let passive: Result<(i64, i64, i64), sqlx::Error> = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(&mut *writer)
        .await;
    if let Err(error) = passive {
        tracing::warn!(%error, "the writer's checkpoint failed");
    }
}

fn failure_of(reason: &str) -> SettleError {
    SettleError::Store(StoreError::NotCommitted(reason.to_owned()))
}

/// A failed batch is not yet anyone's answer: it is logged, and its jobs
/// are retried one by one.
fn tracing_failure(failure: &StoreError) {
    tracing::error!(%failure, "a batch of writes failed; its writes are retried one at a time");
}

/// Writes `jobs` in one transaction: one answer per job, or `Err` when
/// nothing was committed.
async fn write_batch(
    connection: &mut WriterConnection,
    cache: &PolicyCache,
    counts: &WriteCounts,
    jobs: &[WriteJob],
) -> Result<Vec<Answer>, StoreError> {
    let mut answers = Vec::with_capacity(jobs.len());
    match connection {
        WriterConnection::Sqlite(writer, pool, _) => {
            let written = sqlite::write_batch(writer, cache, jobs, &mut answers).await;
            if let Err(error) = &written {
                // A connection that failed may be broken: the next batch
                // gets a fresh one with the same settings.
                if let Err(ping) = sqlx::Connection::ping(&mut **writer).await {
                    tracing::warn!(%error, %ping, "the writer's connection is reopened");
                    **writer = pool
                        .connect_options()
                        .as_ref()
                        .clone()
                        .statement_cache_capacity(WRITER_STATEMENT_CACHE)
                        .connect()
                        .await?;
                }
            }
            written?
        }
        WriterConnection::Postgres(pool) => {
            let mut writer = pool.acquire().await?;
            postgres::write_batch(&mut writer, cache, jobs, &mut answers).await?
        }
    }
    debug_assert_eq!(answers.len(), jobs.len(), "one answer per job");
    let writes = answers
        .iter()
        .filter(|answer| matches!(answer, Ok(settled) if !settled.replayed))
        .count() as u64;
    counts.transactions.fetch_add(1, Ordering::Relaxed);
    counts.writes.fetch_add(writes, Ordering::Relaxed);
    Ok(answers)
}

/// The policy in force, parsed once per stored version and shared by the
/// readers and the writer.
#[derive(Debug, Clone, Default)]
struct PolicyCache(Arc<Mutex<Option<PolicyInForce>>>);

impl PolicyCache {
    fn get(&self, id: i64) -> Option<PolicyInForce> {
        let cache = self.0.lock().ok()?;
        cache.as_ref().filter(|(cached, _)| *cached == id).cloned()
    }

    fn parse(&self, id: i64, source: &str) -> Result<PolicyInForce, StoreError> {
        let policy = jiuzhu_formats::parse_policy("stored policy", source)
            .map_err(|problems| StoreError::StoredPolicy(problems.to_string()))?;
        let parsed = (id, Arc::new(policy));
        if let Ok(mut cache) = self.0.lock() {
            *cache = Some(parsed.clone());
        }
        Ok(parsed)
    }
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).to_vec()
}

/// Now, as RFC 3339 UTC text with milliseconds.
fn now_text() -> String {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since.as_secs() as i64;
    let date = Date::from_days_since_epoch((seconds / 86_400) as i32)
        .map(|date| date.to_string())
        .unwrap_or_else(|| "1970-01-01".to_owned());
    let second_of_day = seconds % 86_400;
    format!(
        "{date}T{:02}:{:02}:{:02}.{:03}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60,
        since.subsec_millis()
    )
}

/// Persons looked up in one statement.
const KEYS_PER_STATEMENT: usize = 1000;
/// Rows inserted in one statement (at most 7 parameters each: well within
/// both backends' limits).
const ROWS_PER_STATEMENT: usize = 1000;

/// What an import of spells did, as JSON: kept with the import and in its
/// audit entry.
fn report_json(report: &SpellImport) -> serde_json::Value {
    serde_json::json!({
        "rows": report.rows,
        "added": report.added,
        "changed": report.changed,
        "unchanged": report.unchanged,
        "duplicates": report.duplicates,
        "new_persons": report.new_persons,
        "changed_persons": report.changed_persons,
        "ended_persons": report.ended_persons,
        "marked": report.marked,
    })
}

/// Today in China (UTC+8), where the bureaus work: the day before which a
/// changed spell may have changed decisions already taken.
fn today_in_china() -> Result<Date, StoreError> {
    const CHINA_OFFSET_SECONDS: u64 = 8 * 3600;
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let days = (since.as_secs() + CHINA_OFFSET_SECONDS) / 86_400;
    i32::try_from(days)
        .ok()
        .and_then(Date::from_days_since_epoch)
        .ok_or_else(|| StoreError::NotCommitted("the system clock reads a day after 9999-12-31".to_owned()))
}

fn hash_array(bytes: Vec<u8>, what: &str) -> Result<[u8; 32], StoreError> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Damaged(format!("{what} is not 32 bytes")))
}

/// Expands the operations for one backend. `$begin` is the statement that
/// starts a write transaction; `$serialise`, if any, runs first inside it
/// (on PostgreSQL, the advisory lock that gives one writer at a time).
macro_rules! backend {
    ($module:ident, $Pool:ty, $Db:ty, $begin:expr, $serialise:expr) => {
        mod $module {
            use std::collections::{BTreeMap, HashMap, HashSet};

            use jiuzhu_core::{Counters, Date, Fen, Invoice, Policy, ResidentId, Spell};
            use jiuzhu_formats::json::SettlementResponse;
            use sqlx::{QueryBuilder, Row as _};

            use super::{
                chunk_audit, decision_audit, hash_array, json_string, now_text, report_json, AuditRecord, BillContent,
                ChunkLabel, Decided, FeedAnswer, PersonRow, PolicyCache, PolicyInForce, PolicyLoad, ReverseRequest,
                RunAnswer, SettleError, SettleRequest, Settled, SpellImportJob, StoreError, StoredBill, WriteJob,
                KEYS_PER_STATEMENT, ROWS_PER_STATEMENT, STORED_LOOKUP,
            };
            use crate::audit::{AuditEntry, GENESIS};
            use crate::crypto::ApiKeyHash;
            use crate::spell_history::{
                self, AlreadyImported, Current, Incoming, PendingRecomputation, SpellImport, StoredSpell,
            };

            type Pool = $Pool;

            /// What serialises writers inside a write transaction, if its
            /// beginning does not.
            const SERIALISE: Option<&str> = $serialise;

            async fn serialise(tx: &mut sqlx::Transaction<'_, $Db>) -> Result<(), StoreError> {
                if let Some(statement) = SERIALISE {
                    sqlx::raw_sql(statement).execute(&mut **tx).await?;
                }
                Ok(())
            }

            pub(super) async fn migrate(pool: &Pool, migrations: &[(i64, &'static str)]) -> Result<(), StoreError> {
                sqlx::raw_sql(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at TEXT NOT NULL)",
                )
                .execute(pool)
                .await?;
                for (version, sql) in migrations {
                    let mut tx = pool.begin_with($begin).await?;
                    serialise(&mut tx).await?;
                    let applied = sqlx::query("SELECT version FROM schema_migrations WHERE version = $1")
                        .bind(version)
                        .fetch_optional(&mut *tx)
                        .await?;
                    if applied.is_none() {
                        sqlx::raw_sql(*sql).execute(&mut *tx).await?;
                        sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
                            .bind(version)
                            .bind(now_text())
                            .execute(&mut *tx)
                            .await?;
                    }
                    tx.commit().await?;
                }
                Ok(())
            }

            /// Begins a write transaction: one writer at a time, across
            /// every process sharing the database.
            pub(super) async fn begin_write(pool: &Pool) -> Result<sqlx::Transaction<'static, $Db>, StoreError> {
                let mut tx = pool.begin_with($begin).await?;
                serialise(&mut tx).await?;
                Ok(tx)
            }

            /// Appends one audit entry in the transaction.
            pub(super) async fn audit(
                tx: &mut sqlx::Transaction<'_, $Db>,
                actor: &str,
                action: &str,
                subject: &str,
                details: String,
            ) -> Result<(), StoreError> {
                let last = sqlx::query("SELECT sequence, hash FROM audit_log ORDER BY sequence DESC LIMIT 1")
                    .fetch_optional(&mut **tx)
                    .await?;
                let (sequence, previous) = match last {
                    Some(row) => {
                        let sequence: i64 = row.try_get("sequence")?;
                        (sequence + 1, hash_array(row.try_get("hash")?, "an audit hash")?)
                    }
                    None => (1, GENESIS),
                };
                let entry = AuditEntry {
                    sequence: sequence as u64,
                    at: now_text(),
                    actor: actor.to_owned(),
                    action: action.to_owned(),
                    subject: subject.to_owned(),
                    details,
                };
                let hash = entry.hash(&previous);
                sqlx::query(
                    "INSERT INTO audit_log (sequence, at, actor, action, subject, details, hash) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(sequence)
                .bind(&entry.at)
                .bind(&entry.actor)
                .bind(&entry.action)
                .bind(&entry.subject)
                .bind(&entry.details)
                .bind(hash.to_vec())
                .execute(&mut **tx)
                .await?;
                Ok(())
            }

            pub(super) async fn load_policy(
                pool: &Pool,
                digest: &[u8],
                name: Option<String>,
                source: &str,
                actor: &str,
            ) -> Result<PolicyLoad, StoreError> {
                let mut tx = pool.begin_with($begin).await?;
                serialise(&mut tx).await?;
                let existing = sqlx::query("SELECT id FROM policies WHERE digest = $1")
                    .bind(digest)
                    .fetch_optional(&mut *tx)
                    .await?;
                if let Some(row) = existing {
                    return Ok(PolicyLoad { id: row.try_get("id")?, fresh: false });
                }
                let row = sqlx::query(
                    "INSERT INTO policies (digest, name, source, loaded_at, loaded_by) \
                     VALUES ($1, $2, $3, $4, $5) RETURNING id",
                )
                .bind(digest)
                .bind(&name)
                .bind(source)
                .bind(now_text())
                .bind(actor)
                .fetch_one(&mut *tx)
                .await?;
                let id: i64 = row.try_get("id")?;
                let details = format!("{{\"policy_id\":{id},\"name\":{}}}", json_string(name.as_deref().unwrap_or("")));
                audit(&mut tx, actor, "policy.load", &format!("policy {id}"), details).await?;
                tx.commit().await?;
                Ok(PolicyLoad { id, fresh: true })
            }

            pub(super) async fn latest_policy_id(pool: &Pool) -> Result<Option<i64>, StoreError> {
                let row = sqlx::query("SELECT id FROM policies ORDER BY id DESC LIMIT 1").fetch_optional(pool).await?;
                Ok(match row {
                    Some(row) => Some(row.try_get("id")?),
                    None => None,
                })
            }

            pub(super) async fn policy_source(pool: &Pool, id: i64) -> Result<String, StoreError> {
                let row = sqlx::query("SELECT source FROM policies WHERE id = $1").bind(id).fetch_one(pool).await?;
                Ok(row.try_get("source")?)
            }

            pub(super) async fn import_spells(
                pool: &Pool,
                job: &SpellImportJob<'_>,
            ) -> Result<SpellImport, StoreError> {
                let file = job.file;
                let rows = file.rows.len() as u64;
                let mut tx = pool.begin_with($begin).await?;
                serialise(&mut tx).await?;
                let earlier = sqlx::query(
                    "SELECT id, file_name, imported_at, imported_by FROM imports \
                     WHERE kind = 'spells' AND source = $1 AND digest = $2",
                )
                .bind(file.source)
                .bind(file.digest.to_vec())
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(row) = earlier {
                    // Nothing is written: the transaction ends unused.
                    let already = AlreadyImported {
                        import_id: row.try_get("id")?,
                        file_name: row.try_get("file_name")?,
                        imported_at: row.try_get("imported_at")?,
                        imported_by: row.try_get("imported_by")?,
                    };
                    let already_imported = Some(already);
                    let report = SpellImport { rows, already_imported, ..SpellImport::default() };
                    return Ok(report);
                }

                // The current spells of the file's persons.
                let by_key: HashMap<&[u8], ResidentId> =
                    job.persons.iter().map(|(person, row)| (row.key.as_slice(), *person)).collect();
                let mut keys: Vec<&[u8]> = by_key.keys().copied().collect();
                keys.sort_unstable();
                let mut current: super::CurrentSpells = super::CurrentSpells::default();
                // Looked up by key, a thousand at a time; or, when the
                // store holds not many more spells than the file has
                // persons (a department's first file, say), read whole in
                // one pass, cheaper than a probe per person.
                let stored_spells: i64 = sqlx::query("SELECT COUNT(*) AS n FROM spells")
                    .fetch_one(&mut *tx)
                    .await?
                    .try_get("n")?;
                let scan = usize::try_from(stored_spells).unwrap_or(usize::MAX) <= keys.len().saturating_mul(2);
                let chunks: Vec<&[&[u8]]> = if scan { vec![&[]] } else { keys.chunks(KEYS_PER_STATEMENT).collect() };
                for chunk in chunks {
                    let mut query = QueryBuilder::<$Db>::new(
                        "SELECT id, person_key, category, source, valid_from, valid_to FROM spells \
                         WHERE superseded_by IS NULL",
                    );
                    if !scan {
                        query.push(" AND person_key IN (");
                        let mut list = query.separated(", ");
                        for key in chunk {
                            list.push_bind(key.to_vec());
                        }
                        query.push(")");
                    }
                    query.push(" ORDER BY id");
                    let full = chunk.len() == KEYS_PER_STATEMENT;
                    for row in query.build().persistent(full).fetch_all(&mut *tx).await? {
                        let key: Vec<u8> = row.try_get("person_key")?;
                        let Some(person) = by_key.get(key.as_slice()) else {
                            continue;
                        };
                        let spell = spell_of(&row, *person)?;
                        current.entry(*person).or_default().push(Current {
                            id: row.try_get("id")?,
                            category: spell.category().to_owned(),
                            source: row.try_get("source")?,
                            valid_from: spell.valid_from(),
                            valid_to: spell.valid_to(),
                        });
                    }
                }

                let mut plan = spell_history::plan(job.incoming, &current, job.today);
                // A mark is kept only for a person with a bill stored: one
                // without has no decision the change could alter (a bill
                // that comes later is decided with the spells as they are
                // then).
                if !plan.marks.is_empty() {
                    let any_bill = sqlx::query("SELECT 1 AS one FROM invoices LIMIT 1")
                        .fetch_optional(&mut *tx)
                        .await?
                        .is_some();
                    let mut billed: HashSet<Vec<u8>> = HashSet::new();
                    if any_bill {
                        let mut marked: Vec<&[u8]> =
                            plan.marks.iter().map(|(person, _)| job.persons[person].key.as_slice()).collect();
                        marked.sort_unstable();
                        for chunk in marked.chunks(KEYS_PER_STATEMENT) {
                            let mut query = QueryBuilder::<$Db>::new(
                                "SELECT DISTINCT person_key FROM invoices WHERE person_key IN (",
                            );
                            let mut list = query.separated(", ");
                            for key in chunk {
                                list.push_bind(key.to_vec());
                            }
                            query.push(")");
                            let full = chunk.len() == KEYS_PER_STATEMENT;
                            for row in query.build().persistent(full).fetch_all(&mut *tx).await? {
                                billed.insert(row.try_get("person_key")?);
                            }
                        }
                    }
                    plan.marks.retain(|(person, _)| billed.contains(&job.persons[person].key));
                    plan.report.marked = plan.marks.len() as u64;
                }
                // Written in the order of the persons' keys, each person's
                // spells in file order: every index keyed by person is
                // then written in order, a page after the other, however
                // large the file.
                plan.stored.sort_by_cached_key(|(spell, _)| job.persons[&spell.person].key.as_slice());
                plan.marks.sort_by_cached_key(|(person, _)| job.persons[person].key.as_slice());
                // The rows not written (unchanged, duplicates) are done.
                (job.progress)(rows.saturating_sub(plan.stored.len() as u64));
                let at = now_text();
                let mut report = plan.report;
                report.rows = rows;
                report.duplicates = job.duplicates;
                let counts = report_json(&report);
                let row = sqlx::query(
                    "INSERT INTO imports \
                     (kind, source, file_name, digest, rows, imported_at, imported_by, report) \
                     VALUES ('spells', $1, $2, $3, $4, $5, $6, $7) RETURNING id",
                )
                .bind(file.source)
                .bind(file.file_name)
                .bind(file.digest.to_vec())
                .bind(rows as i64)
                .bind(&at)
                .bind(job.actor)
                .bind(counts.to_string())
                .fetch_one(&mut *tx)
                .await?;
                let import_id: i64 = row.try_get("id")?;
                report.import_id = Some(import_id);

                // Persons with a spell to store, if not stored yet.
                let mut stored_persons: Vec<(ResidentId, &PersonRow)> = Vec::new();
                let mut seen: rustc_hash::FxHashSet<ResidentId> = rustc_hash::FxHashSet::default();
                for (spell, _) in &plan.stored {
                    if seen.insert(spell.person) {
                        stored_persons.push((spell.person, &job.persons[&spell.person]));
                    }
                }
                // Their IDs are encrypted as the statements are built,
                // while the database writes the statement before.
                let mut failure: Option<crate::crypto::CryptoError> = None;
                let statements = stored_persons.chunks(ROWS_PER_STATEMENT).map_while(|chunk| {
                    let encrypted: Result<Vec<Vec<u8>>, _> = chunk
                        .iter()
                        .map(|(person, _)| job.keys.encrypt(crate::crypto::Purpose::ResidentId, person.to_string().as_bytes()))
                        .collect();
                    let encrypted = match encrypted {
                        Ok(encrypted) => encrypted,
                        Err(error) => {
                            failure = Some(error);
                            return None;
                        }
                    };
                    let mut query = QueryBuilder::<$Db>::new(
                        "INSERT INTO persons (person_key, resident_id_encrypted, resident_id_masked, created_at) ",
                    );
                    let at = super::sql_literal(&at);
                    query.push_values(chunk.iter().zip(encrypted), |mut values, ((_, row), encrypted)| {
                        values
                            .push_bind(row.key.clone())
                            .push_bind(encrypted)
                            .push_bind(row.masked.clone())
                            .push(&at);
                    });
                    query.push(" ON CONFLICT (person_key) DO NOTHING");
                    Some((query, chunk.len() == ROWS_PER_STATEMENT))
                });
                execute_pipelined(&mut tx, statements).await?;
                if let Some(error) = failure {
                    return Err(error.into());
                }

                // The spells: runs of added spells together, each change
                // alone (its new id goes to what it supersedes).
                let mut start = 0;
                while start < plan.stored.len() {
                    let end = plan.stored[start..]
                        .iter()
                        .position(|(_, supersedes)| !supersedes.is_empty())
                        .map_or(plan.stored.len(), |offset| start + offset);
                    let run: Vec<&Incoming<'_>> = plan.stored[start..end].iter().map(|(spell, _)| *spell).collect();
                    let statements = run.chunks(ROWS_PER_STATEMENT).map(|chunk| {
                        // Counted as it goes to the database.
                        (job.progress)(chunk.len() as u64);
                        (spells_statement(chunk, job, import_id, &at), chunk.len() == ROWS_PER_STATEMENT)
                    });
                    execute_pipelined(&mut tx, statements).await?;
                    let Some((spell, supersedes)) = plan.stored.get(end) else {
                        break;
                    };
                    start = end + 1;
                    let row = sqlx::query(
                        "INSERT INTO spells \
                         (person_key, category, valid_from, valid_to, source, recorded_at, import_id) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                    )
                    .bind(&job.persons[&spell.person].key)
                    .bind(spell.category)
                    .bind(spell.valid_from.to_string())
                    .bind(spell.valid_to.map(|date| date.to_string()))
                    .bind(spell.source)
                    .bind(&at)
                    .bind(import_id)
                    .fetch_one(&mut *tx)
                    .await?;
                    (job.progress)(1);
                    let id: i64 = row.try_get("id")?;
                    for old in supersedes {
                        let updated = sqlx::query(
                            "UPDATE spells SET superseded_by = $1 WHERE id = $2 AND superseded_by IS NULL",
                        )
                        .bind(id)
                        .bind(old)
                        .execute(&mut *tx)
                        .await?;
                        if updated.rows_affected() != 1 {
                            return Err(StoreError::Damaged(format!("spell {old} was superseded twice")));
                        }
                    }
                }
                super::outbox::$module::enqueue_new_recipients(&mut tx, &plan.stored, &current, job.persons, import_id)
                    .await?;

                let statements = plan.marks.chunks(ROWS_PER_STATEMENT).map(|chunk| {
                    let mut query = QueryBuilder::<$Db>::new(
                        "INSERT INTO recompute_marks (person_key, since, import_id, marked_at) ",
                    );
                    query.push_values(chunk, |mut values, (person, since)| {
                        values
                            .push_bind(job.persons[person].key.clone())
                            .push_bind(since.to_string())
                            .push_bind(import_id)
                            .push_bind(at.clone());
                    });
                    (query, chunk.len() == ROWS_PER_STATEMENT)
                });
                execute_pipelined(&mut tx, statements).await?;

                let mut details = counts;
                details["import_id"] = import_id.into();
                details["source"] = file.source.into();
                details["file"] = file.file_name.into();
                let digest: String = file.digest.iter().map(|byte| format!("{byte:02x}")).collect();
                details["digest"] = digest.into();
                let subject = format!("import {import_id}");
                audit(&mut tx, job.actor, "spells.import", &subject, details.to_string()).await?;
                tx.commit().await?;
                Ok(report)
            }

            /// The statement that inserts added spells (superseding nothing).
            fn spells_statement(
                spells: &[&Incoming<'_>],
                job: &SpellImportJob<'_>,
                import_id: i64,
                at: &str,
            ) -> QueryBuilder<$Db> {
                let persons = job.persons;
                // What all rows share is written in the statement once,
                // not bound to each row: a chunk's text stays the same.
                let at = super::sql_literal(at);
                let mut query = QueryBuilder::<$Db>::new(
                    "INSERT INTO spells \
                     (person_key, category, valid_from, valid_to, source, recorded_at, import_id) ",
                );
                query.push_values(spells, |mut values, spell| {
                    values
                        .push_bind(persons[&spell.person].key.clone())
                        .push_bind(spell.category.to_owned())
                        .push_bind(spell.valid_from.to_string())
                        .push_bind(spell.valid_to.map(|date| date.to_string()))
                        .push_bind(spell.source.to_owned())
                        .push(&at)
                        .push(import_id);
                });
                query
            }

            /// Runs statements one after the other, building each one while
            /// the database runs the one before: the building is this
            /// thread's work (the values bound), the running the database's,
            /// and a large write takes the longer of the two rather than
            /// their sum. Each statement comes with whether to keep it
            /// prepared (a full one, whose text repeats).
            pub(in crate::database) async fn execute_pipelined(
                tx: &mut sqlx::Transaction<'_, $Db>,
                mut statements: impl Iterator<Item = (QueryBuilder<$Db>, bool)>,
            ) -> Result<(), StoreError> {
                let mut next = statements.next();
                while let Some((mut query, persistent)) = next.take() {
                    // The statement is handed to the database first.
                    let (done, following) = tokio::join!(
                        biased;
                        query.build().persistent(persistent).execute(&mut **tx),
                        async { statements.next() },
                    );
                    done?;
                    next = following;
                }
                Ok(())
            }

            pub(super) async fn pending_recomputations(
                pool: &Pool,
            ) -> Result<Vec<PendingRecomputation>, StoreError> {
                let rows = sqlx::query(
                    "SELECT m.person_key, p.resident_id_masked, MIN(m.since) AS since \
                     FROM recompute_marks m JOIN persons p ON p.person_key = m.person_key \
                     WHERE m.cleared_at IS NULL GROUP BY m.person_key, p.resident_id_masked \
                     ORDER BY since, m.person_key",
                )
                .fetch_all(pool)
                .await?;
                rows.into_iter()
                    .map(|row| {
                        let since: String = row.try_get("since")?;
                        let bad = || StoreError::Damaged(format!("a recomputation mark's date {since:?}"));
                        Ok(PendingRecomputation {
                            person_key: row.try_get("person_key")?,
                            masked_id: row.try_get("resident_id_masked")?,
                            since: Date::parse(&since).map_err(|_| bad())?,
                        })
                    })
                    .collect()
            }

            pub(super) async fn spell_history(
                pool: &Pool,
                key: &[u8],
            ) -> Result<Vec<StoredSpell>, StoreError> {
                let rows = sqlx::query(
                    "SELECT s.id, s.category, s.valid_from, s.valid_to, s.source, s.recorded_at, \
                     s.superseded_by, s.import_id, i.file_name \
                     FROM spells s LEFT JOIN imports i ON i.id = s.import_id \
                     WHERE s.person_key = $1 ORDER BY s.id",
                )
                .bind(key)
                .fetch_all(pool)
                .await?;
                let damaged = |what: &str| StoreError::Damaged(format!("a stored spell has a bad {what}"));
                rows.into_iter()
                    .map(|row| {
                        let valid_from: String = row.try_get("valid_from")?;
                        let valid_to: Option<String> = row.try_get("valid_to")?;
                        Ok(StoredSpell {
                            id: row.try_get("id")?,
                            category: row.try_get("category")?,
                            valid_from: Date::parse(&valid_from).map_err(|_| damaged("valid_from"))?,
                            valid_to: match valid_to {
                                Some(text) => Some(Date::parse(&text).map_err(|_| damaged("valid_to"))?),
                                None => None,
                            },
                            source: row.try_get("source")?,
                            recorded_at: row.try_get("recorded_at")?,
                            superseded_by: row.try_get("superseded_by")?,
                            import_id: row.try_get("import_id")?,
                            file_name: row.try_get("file_name")?,
                        })
                    })
                    .collect()
            }

            /// Stores the keys of hospitals, each with its audit entry, in
            /// one transaction: all of them or none.
            pub(super) async fn create_api_keys(
                pool: &Pool,
                keys: &[(&str, ApiKeyHash)],
                actor: &str,
            ) -> Result<(), StoreError> {
                let mut tx = pool.begin_with($begin).await?;
                serialise(&mut tx).await?;
                for (hospital, hash) in keys {
                    sqlx::query("INSERT INTO api_keys (hospital, key_hash, created_at) VALUES ($1, $2, $3)")
                        .bind(hospital)
                        .bind(hash.as_bytes().to_vec())
                        .bind(now_text())
                        .execute(&mut *tx)
                        .await?;
                    let details = format!("{{\"hospital\":{}}}", json_string(hospital));
                    audit(&mut tx, actor, "apikey.create", &format!("hospital {hospital}"), details).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            pub(super) async fn hospital_for_key(pool: &Pool, hash: &ApiKeyHash) -> Result<Option<String>, StoreError> {
                let row = sqlx::query("SELECT hospital FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL")
                    .bind(hash.as_bytes().to_vec())
                    .fetch_optional(pool)
                    .await?;
                Ok(match row {
                    Some(row) => Some(row.try_get("hospital")?),
                    None => None,
                })
            }

            pub(super) async fn counter_rows(
                pool: &Pool,
                key: &[u8],
                year: i64,
            ) -> Result<Vec<(String, i64, i64)>, StoreError> {
                let rows = sqlx::query(
                    "SELECT pool, deductible_used, granted FROM counters WHERE person_key = $1 AND year = $2 ORDER BY pool",
                )
                .bind(key)
                .bind(year)
                .fetch_all(pool)
                .await?;
                rows.into_iter()
                    .map(|row| Ok((row.try_get("pool")?, row.try_get("deductible_used")?, row.try_get("granted")?)))
                    .collect()
            }

            /// The stored answer for an invoice, with whether it was reversed.
            async fn stored_answer(
                tx: &mut sqlx::Transaction<'_, $Db>,
                invoice_no: &str,
            ) -> Result<(SettlementResponse, bool), StoreError> {
                let rows = sqlx::query(
                    "SELECT d.kind, r.response FROM decisions d \
                     LEFT JOIN decision_responses r ON r.decision_id = d.id WHERE d.invoice_no = $1",
                )
                    .bind(invoice_no)
                    .fetch_all(&mut **tx)
                    .await?;
                let mut response = None;
                let mut reversed = false;
                for row in rows {
                    let kind: String = row.try_get("kind")?;
                    if kind == "reversal" {
                        reversed = true;
                    } else {
                        let text: String = row.try_get("response")?;
                        response = Some(
                            serde_json::from_str(&text)
                                .map_err(|error| StoreError::Damaged(format!("a stored answer: {error}")))?,
                        );
                    }
                }
                let response =
                    response.ok_or_else(|| StoreError::Damaged(format!("invoice {invoice_no} has no decision")))?;
                Ok((response, reversed))
            }

            /// Writes a batch in one transaction and one commit. Runs of
            /// settlements are read, decided in memory in arrival order and
            /// written with a few multi-row statements; a reversal is
            /// written where it stands, between runs. A refusal writes
            /// nothing. An `Err` means nothing was committed.
            pub(super) async fn write_batch(
                connection: &mut <$Db as sqlx::Database>::Connection,
                cache: &PolicyCache,
                jobs: &[WriteJob],
                answers: &mut Vec<Result<Settled, SettleError>>,
            ) -> Result<(), StoreError> {
                let mut tx = sqlx::Connection::begin_with(connection, $begin).await?;
                serialise(&mut tx).await?;
                let policy = policy_in(&mut tx, cache).await?;
                let mut run: Vec<&SettleRequest> = Vec::new();
                for job in jobs {
                    match job {
                        WriteJob::Settle { request, .. } => run.push(request),
                        WriteJob::Reverse { request, .. } => {
                            settle_run(&mut tx, policy.as_ref(), &run, answers).await?;
                            run.clear();
                            answers.push(reverse_in(&mut tx, request).await);
                        }
                    }
                }
                settle_run(&mut tx, policy.as_ref(), &run, answers).await?;
                tx.commit().await?;
                Ok(())
            }

            /// Settles a run of invoices in `tx`, in order, as if one after
            /// the other: what an earlier one granted counts for a later
            /// one of the same person and year.
            async fn settle_run(
                tx: &mut sqlx::Transaction<'_, $Db>,
                policy: Option<&PolicyInForce>,
                run: &[&SettleRequest],
                answers: &mut Vec<Result<Settled, SettleError>>,
            ) -> Result<(), StoreError> {
                if run.is_empty() {
                    return Ok(());
                }
                let (rows, outcomes) = decide_run(tx, policy, run).await?;
                for (request, outcome) in run.iter().zip(outcomes) {
                    let invoice = &request.invoice;
                    answers.push(match outcome {
                        RunAnswer::Decided(index) => {
                            Ok(Settled { response: rows[index].response.clone(), replayed: false, reversed: false })
                        }
                        RunAnswer::Repeated(index) => {
                            Ok(Settled { response: rows[index].response.clone(), replayed: true, reversed: false })
                        }
                        RunAnswer::Stored => {
                            let (response, reversed) = stored_answer(tx, invoice.invoice_no.as_str()).await?;
                            Ok(Settled { response, replayed: true, reversed })
                        }
                        RunAnswer::Conflict => Err(SettleError::Conflict(invoice.invoice_no.to_string())),
                        RunAnswer::NoPolicy => Err(SettleError::NoPolicy),
                        RunAnswer::UnknownVisitType => Err(SettleError::UnknownVisitType(invoice.visit_type.clone())),
                    });
                }
                let entries: Vec<AuditRecord> = rows.iter().map(decision_audit).collect();
                write_decided(tx, &rows, &entries).await
            }

            /// Decides a chunk of the insurance feed in one transaction of
            /// its own: the same reading, deciding and writing as a run of
            /// real-time settlements, but one audit entry for the chunk.
            pub(super) async fn import_chunk(
                pool: &Pool,
                cache: &PolicyCache,
                requests: &[SettleRequest],
                label: &ChunkLabel<'_>,
            ) -> Result<Vec<FeedAnswer>, StoreError> {
                let mut tx = pool.begin_with($begin).await?;
                serialise(&mut tx).await?;
                let answers = decide_in(&mut tx, cache, requests, &|rows| chunk_audit(rows, label)).await?;
                tx.commit().await?;
                Ok(answers)
            }

            /// Decides bills in a write transaction begun by the caller,
            /// through the same reading, deciding and writing as real time,
            /// with one audit entry for all of them.
            pub(in crate::database) async fn decide_in(
                tx: &mut sqlx::Transaction<'_, $Db>,
                cache: &PolicyCache,
                requests: &[SettleRequest],
                entry: &(dyn Fn(&[Decided<'_>]) -> AuditRecord + Sync),
            ) -> Result<Vec<FeedAnswer>, StoreError> {
                let policy = policy_in(tx, cache).await?;
                let run: Vec<&SettleRequest> = requests.iter().collect();
                let (rows, outcomes) = decide_run(tx, policy.as_ref(), &run).await?;
                let answers = outcomes
                    .into_iter()
                    .map(|outcome| match outcome {
                        RunAnswer::Decided(index) => {
                            let decision = &rows[index].decision;
                            FeedAnswer::Decided { outcome: decision.outcome, amount: decision.amount }
                        }
                        RunAnswer::Stored | RunAnswer::Repeated(_) => FeedAnswer::AlreadyDecided,
                        RunAnswer::Conflict => FeedAnswer::Conflict,
                        RunAnswer::NoPolicy => FeedAnswer::NoPolicy,
                        RunAnswer::UnknownVisitType => FeedAnswer::UnknownVisitType,
                    })
                    .collect();
                if !rows.is_empty() {
                    let entry = entry(&rows);
                    write_decided(tx, &rows, std::slice::from_ref(&entry)).await?;
                }
                Ok(answers)
            }

            /// What the store holds under some invoice numbers, read outside
            /// any write (the feed's check before it writes anything).
            pub(super) async fn stored_bills_of(
                pool: &Pool,
                numbers: &[&str],
            ) -> Result<HashMap<String, StoredBill>, StoreError> {
                let mut connection = pool.acquire().await?;
                let mut stored = HashMap::new();
                for part in numbers.chunks(STORED_LOOKUP) {
                    stored.extend(stored_bills(&mut connection, part.iter().copied()).await?);
                }
                Ok(stored)
            }

            /// What the store holds under these invoice numbers.
            async fn stored_bills<'n>(
                connection: &mut <$Db as sqlx::Database>::Connection,
                numbers: impl Iterator<Item = &'n str>,
            ) -> Result<HashMap<String, StoredBill>, StoreError> {
                let mut query = QueryBuilder::<$Db>::new(
                    "SELECT invoice_no, request_digest, person_key, hospital, visit_type, service_date, total, \
                     fund_paid, in_scope_self_pay, out_of_scope_self_pay FROM invoices WHERE invoice_no IN (",
                );
                let mut list = query.separated(", ");
                let mut any = false;
                for number in numbers {
                    list.push_bind(number.to_owned());
                    any = true;
                }
                query.push(")");
                let mut stored = HashMap::new();
                if !any {
                    return Ok(stored);
                }
                for row in query.build().fetch_all(&mut *connection).await? {
                    let content = BillContent {
                        person_key: row.try_get("person_key")?,
                        hospital: row.try_get("hospital")?,
                        visit_type: row.try_get("visit_type")?,
                        service_date: row.try_get("service_date")?,
                        amounts: [
                            row.try_get("total")?,
                            row.try_get("fund_paid")?,
                            row.try_get("in_scope_self_pay")?,
                            row.try_get("out_of_scope_self_pay")?,
                        ],
                    };
                    stored.insert(row.try_get("invoice_no")?, StoredBill { digest: row.try_get("request_digest")?, content });
                }
                Ok(stored)
            }

            /// Reads what a run needs (stored bills, spells, counters) and
            /// decides each request in order, in memory. Returns the rows
            /// to write and what became of each request. Whether a request
            /// is the same as one stored before is the channel's rule
            /// ([`SettleRequest::same_as`]).
            async fn decide_run<'r>(
                tx: &mut sqlx::Transaction<'_, $Db>,
                policy: Option<&PolicyInForce>,
                run: &[&'r SettleRequest],
            ) -> Result<(Vec<Decided<'r>>, Vec<RunAnswer>), StoreError> {
                let mut rows: Vec<Decided<'r>> = Vec::new();
                let mut outcomes = Vec::with_capacity(run.len());
                if run.is_empty() {
                    return Ok((rows, outcomes));
                }
                // What the store already holds for these invoices and persons.
                let stored = stored_bills(&mut **tx, run.iter().map(|request| request.invoice.invoice_no.as_str())).await?;
                let mut persons: HashMap<&[u8], ResidentId> = HashMap::new();
                for request in run {
                    persons.insert(&request.person.key, request.invoice.person);
                }
                let mut spells: HashMap<Vec<u8>, Vec<Spell>> = HashMap::new();
                let mut query = QueryBuilder::<$Db>::new(
                    "SELECT person_key, category, valid_from, valid_to, source FROM spells \
                     WHERE superseded_by IS NULL AND person_key IN (",
                );
                let mut list = query.separated(", ");
                for key in persons.keys() {
                    list.push_bind(key.to_vec());
                }
                query.push(") ORDER BY id");
                for row in query.build().fetch_all(&mut **tx).await? {
                    let key: Vec<u8> = row.try_get("person_key")?;
                    let Some(person) = persons.get(key.as_slice()) else {
                        continue;
                    };
                    let spell = spell_of(&row, *person)?;
                    spells.entry(key).or_default().push(spell);
                }
                let mut stored_counters: HashMap<(Vec<u8>, i64), Vec<(String, i64, i64)>> = HashMap::new();
                let mut query = QueryBuilder::<$Db>::new(
                    "SELECT person_key, year, pool, deductible_used, granted FROM counters WHERE person_key IN (",
                );
                let mut list = query.separated(", ");
                for key in persons.keys() {
                    list.push_bind(key.to_vec());
                }
                query.push(")");
                for row in query.build().fetch_all(&mut **tx).await? {
                    let key: Vec<u8> = row.try_get("person_key")?;
                    let year: i64 = row.try_get("year")?;
                    stored_counters.entry((key, year)).or_default().push((
                        row.try_get("pool")?,
                        row.try_get("deductible_used")?,
                        row.try_get("granted")?,
                    ));
                }

                // Decide each in order, in memory.
                let mut counters: HashMap<(Vec<u8>, i64), Counters> = HashMap::new();
                let mut decided: HashMap<&str, usize> = HashMap::new();
                for request in run {
                    let invoice: &Invoice = &request.invoice;
                    let invoice_no = invoice.invoice_no.as_str();
                    if let Some(index) = decided.get(invoice_no) {
                        outcomes.push(if request.same_as_request(rows[*index].request) {
                            RunAnswer::Repeated(*index)
                        } else {
                            RunAnswer::Conflict
                        });
                        continue;
                    }
                    if let Some(bill) = stored.get(invoice_no) {
                        outcomes.push(if request.same_as(bill) { RunAnswer::Stored } else { RunAnswer::Conflict });
                        continue;
                    }
                    let Some((policy_id, policy)) = policy else {
                        outcomes.push(RunAnswer::NoPolicy);
                        continue;
                    };
                    let policy: &Policy = policy;
                    let year = i64::from(invoice.service_date.year());
                    let key = (request.person.key.clone(), year);
                    let person_counters = counters.entry(key.clone()).or_insert_with(|| {
                        counters_of(policy, stored_counters.get(&key).map(Vec::as_slice).unwrap_or_default())
                    });
                    let person_spells = spells.get(&request.person.key).map(Vec::as_slice).unwrap_or_default();
                    let Some(decision) = jiuzhu_core::decide_invoice(policy, person_spells, invoice, person_counters)
                    else {
                        outcomes.push(RunAnswer::UnknownVisitType);
                        continue;
                    };
                    let response = SettlementResponse::new(invoice, &decision, policy);
                    let response_text = serde_json::to_string(&response)
                        .map_err(|error| StoreError::Damaged(format!("an answer would not serialise: {error}")))?;
                    let counted = match (decision.outcome.counts(), decision.pool) {
                        (true, Some(pool)) => Some((
                            policy.pool_name(pool).to_owned(),
                            person_counters.deductible_used(pool).fen(),
                            person_counters.granted(pool).fen(),
                        )),
                        _ => None,
                    };
                    decided.insert(invoice_no, rows.len());
                    outcomes.push(RunAnswer::Decided(rows.len()));
                    rows.push(Decided {
                        request,
                        year,
                        policy_id: *policy_id,
                        category: decision.category.map(|category| policy.category(category).code.clone()),
                        pool: decision.pool.map(|pool| policy.pool_name(pool).to_owned()),
                        version: decision.version.map(|version| policy.version(version).effective_from.to_string()),
                        decision,
                        response,
                        response_text,
                        counted,
                    });
                }
                Ok((rows, outcomes))
            }

            /// Writes what a run decided: persons, invoices, decisions,
            /// counters, notifications of assistance and audit entries, each
            /// table in one statement.
            async fn write_decided(
                tx: &mut sqlx::Transaction<'_, $Db>,
                rows: &[Decided<'_>],
                audit_entries: &[AuditRecord],
            ) -> Result<(), StoreError> {
                if rows.is_empty() {
                    return Ok(());
                }
                let now = now_text();
                // Each counter once, with its last value.
                let mut last: BTreeMap<(&[u8], i64, &str), (i64, i64)> = BTreeMap::new();
                for row in rows {
                    if let Some((pool, used, granted)) = &row.counted {
                        last.insert((&row.request.person.key, row.year, pool), (*used, *granted));
                    }
                }
                // One statement per table, each built while the database
                // runs the one before.
                let statements = (0..5).filter_map(|table| {
                    let query = match table {
                        0 => {
                            let mut query = QueryBuilder::<$Db>::new(
                                "INSERT INTO persons (person_key, resident_id_encrypted, resident_id_masked, created_at) ",
                            );
                            query.push_values(rows, |mut values, row| {
                                let person = &row.request.person;
                                values
                                    .push_bind(person.key.clone())
                                    .push_bind(person.encrypted.clone())
                                    .push_bind(person.masked.clone())
                                    .push_bind(now.clone());
                            });
                            query.push(" ON CONFLICT (person_key) DO NOTHING");
                            query
                        }
                        1 => {
                            let mut query = QueryBuilder::<$Db>::new(
                                "INSERT INTO invoices (invoice_no, person_key, hospital, visit_type, service_date, settled_at, \
                                 settled_unix_seconds, settled_attoseconds, settled_finer_digits, total, fund_paid, \
                                 in_scope_self_pay, out_of_scope_self_pay, request_digest, channel, received_at) ",
                            );
                            query.push_values(rows, |mut values, row| {
                                let request = row.request;
                                let invoice = &request.invoice;
                                let amounts = &invoice.amounts;
                                let settled_at = &invoice.settled_at;
                                values
                                    .push_bind(invoice.invoice_no.as_str().to_owned())
                                    .push_bind(request.person.key.clone())
                                    .push_bind(invoice.hospital.as_str().to_owned())
                                    .push_bind(invoice.visit_type.clone())
                                    .push_bind(invoice.service_date.to_string())
                                    .push_bind(settled_at.to_string())
                                    .push_bind(settled_at.unix_seconds())
                                    .push_bind(settled_at.attoseconds() as i64)
                                    .push_bind(settled_at.finer_digits().map(str::to_owned))
                                    .push_bind(amounts.total().fen())
                                    .push_bind(amounts.fund_paid().fen())
                                    .push_bind(amounts.in_scope_self_pay().fen())
                                    .push_bind(amounts.out_of_scope_self_pay().fen())
                                    .push_bind(request.digest.to_vec())
                                    .push_bind(request.channel.as_str())
                                    .push_bind(request.at.clone());
                            });
                            query
                        }
                        2 => {
                            let mut query = QueryBuilder::<$Db>::new(
                                "INSERT INTO decisions (invoice_no, person_key, kind, policy_id, year, outcome, category, pool, \
                                 policy_version, base, deductible_applied, eligible, amount, decided_at, decided_by) ",
                            );
                            query.push_values(rows, |mut values, row| {
                                let decision = &row.decision;
                                values
                                    .push_bind(row.request.invoice.invoice_no.as_str().to_owned())
                                    .push_bind(row.request.person.key.clone())
                                    .push("'decision'")
                                    .push_bind(row.policy_id)
                                    .push_bind(row.year)
                                    .push_bind(decision.outcome.as_str())
                                    .push_bind(row.category.clone())
                                    .push_bind(row.pool.clone())
                                    .push_bind(row.version.clone())
                                    .push_bind(decision.base.fen())
                                    .push_bind(decision.deductible_applied.fen())
                                    .push_bind(decision.eligible.fen())
                                    .push_bind(decision.amount.fen())
                                    .push_bind(row.request.at.clone())
                                    .push_bind(row.request.actor.clone());
                            });
                            query
                        }
                        3 => {
                            // Each answer joins its decision by invoice
                            // number: ids are not known before the insert.
                            let mut query = QueryBuilder::<$Db>::new("WITH answers (invoice_no, response) AS (");
                            query.push_values(rows, |mut values, row| {
                                values
                                    .push_bind(row.request.invoice.invoice_no.as_str().to_owned())
                                    .push_bind(row.response_text.clone());
                            });
                            query.push(
                                ") INSERT INTO decision_responses (decision_id, response) \
                                 SELECT d.id, a.response FROM answers a \
                                 JOIN decisions d ON d.invoice_no = a.invoice_no AND d.kind = 'decision'",
                            );
                            query
                        }
                        _ if last.is_empty() => return None,
                        _ => {
                            let mut query = QueryBuilder::<$Db>::new(
                                "INSERT INTO counters (person_key, year, pool, deductible_used, granted) ",
                            );
                            query.push_values(&last, |mut values, ((key, year, pool), (used, granted))| {
                                values
                                    .push_bind(key.to_vec())
                                    .push_bind(*year)
                                    .push_bind((*pool).to_owned())
                                    .push_bind(*used)
                                    .push_bind(*granted);
                            });
                            query.push(
                                " ON CONFLICT (person_key, year, pool) DO UPDATE SET \
                                 deductible_used = excluded.deductible_used, granted = excluded.granted",
                            );
                            query
                        }
                    };
                    Some((query, true))
                });
                execute_pipelined(tx, statements).await?;

                super::outbox::$module::enqueue_assisted(tx, rows).await?;
                audit_many(tx, audit_entries).await
            }

            /// Appends audit entries in order, chained from the last one
            /// stored, in one statement.
            async fn audit_many(tx: &mut sqlx::Transaction<'_, $Db>, records: &[AuditRecord]) -> Result<(), StoreError> {
                let last = sqlx::query("SELECT sequence, hash FROM audit_log ORDER BY sequence DESC LIMIT 1")
                    .fetch_optional(&mut **tx)
                    .await?;
                let (mut sequence, mut previous) = match last {
                    Some(row) => {
                        let sequence: i64 = row.try_get("sequence")?;
                        (sequence, hash_array(row.try_get("hash")?, "an audit hash")?)
                    }
                    None => (0, GENESIS),
                };
                let at = now_text();
                let mut chained = Vec::with_capacity(records.len());
                for record in records {
                    sequence += 1;
                    let entry = AuditEntry {
                        sequence: sequence as u64,
                        at: at.clone(),
                        actor: record.actor.clone(),
                        action: record.action.to_owned(),
                        subject: record.subject.clone(),
                        details: record.details.clone(),
                    };
                    previous = entry.hash(&previous);
                    chained.push((entry, previous));
                }
                let mut query = QueryBuilder::<$Db>::new(
                    "INSERT INTO audit_log (sequence, at, actor, action, subject, details, hash) ",
                );
                query.push_values(&chained, |mut values, (entry, hash)| {
                    values
                        .push_bind(entry.sequence as i64)
                        .push_bind(entry.at.clone())
                        .push_bind(entry.actor.clone())
                        .push_bind(entry.action.clone())
                        .push_bind(entry.subject.clone())
                        .push_bind(entry.details.clone())
                        .push_bind(hash.to_vec());
                });
                query.build().execute(&mut **tx).await?;
                Ok(())
            }

            /// The counters of a person-year as stored, in the policy's pools.
            fn counters_of(policy: &Policy, stored: &[(String, i64, i64)]) -> Counters {
                let mut deductible_used = vec![Fen::ZERO; policy.pool_names().len()];
                let mut granted = vec![Fen::ZERO; policy.pool_names().len()];
                let mut granted_total = 0i64;
                for (pool_name, used, amount) in stored {
                    granted_total += amount;
                    if let Some(index) = policy.pool_names().iter().position(|name| name == pool_name) {
                        deductible_used[index] = Fen::from_fen(*used);
                        granted[index] = Fen::from_fen(*amount);
                    }
                }
                Counters::from_parts(deductible_used, granted, Fen::from_fen(granted_total))
            }

            /// A stored spell row as a spell of `person`.
            pub(in crate::database) fn spell_of(row: &<$Db as sqlx::Database>::Row, person: ResidentId) -> Result<Spell, StoreError> {
                let damaged = |what: &str| StoreError::Damaged(format!("a stored spell has a bad {what}"));
                let valid_from: String = row.try_get("valid_from")?;
                let valid_to: Option<String> = row.try_get("valid_to")?;
                let valid_from = Date::parse(&valid_from).map_err(|_| damaged("valid_from"))?;
                let valid_to = match valid_to {
                    Some(text) => Some(Date::parse(&text).map_err(|_| damaged("valid_to"))?),
                    None => None,
                };
                let category: String = row.try_get("category")?;
                let source: String = row.try_get("source")?;
                Spell::new(person, category, valid_from, valid_to, Some(source)).map_err(|_| damaged("period"))
            }

            /// The policy in force as the transaction sees it.
            pub(in crate::database) async fn policy_in(
                tx: &mut sqlx::Transaction<'_, $Db>,
                cache: &PolicyCache,
            ) -> Result<Option<PolicyInForce>, StoreError> {
                let row = sqlx::query("SELECT id FROM policies ORDER BY id DESC LIMIT 1")
                    .fetch_optional(&mut **tx)
                    .await?;
                let Some(row) = row else {
                    return Ok(None);
                };
                let id: i64 = row.try_get("id")?;
                if let Some(cached) = cache.get(id) {
                    return Ok(Some(cached));
                }
                let row = sqlx::query("SELECT source FROM policies WHERE id = $1").bind(id).fetch_one(&mut **tx).await?;
                let source: String = row.try_get("source")?;
                cache.parse(id, &source).map(Some)
            }

            pub(super) async fn settlement(
                pool: &Pool,
                hospital: &str,
                invoice_no: &str,
            ) -> Result<Option<Settled>, StoreError> {
                let mut tx = pool.begin().await?;
                let row = sqlx::query("SELECT hospital FROM invoices WHERE invoice_no = $1")
                    .bind(invoice_no)
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some(row) = row else {
                    return Ok(None);
                };
                let owner: String = row.try_get("hospital")?;
                if owner != hospital {
                    return Ok(None);
                }
                let (response, reversed) = stored_answer(&mut tx, invoice_no).await?;
                tx.commit().await?;
                Ok(Some(Settled { response, replayed: true, reversed }))
            }

            /// Reverses one settlement inside the batch's transaction `tx`.
            async fn reverse_in(
                tx: &mut sqlx::Transaction<'_, $Db>,
                request: &ReverseRequest,
            ) -> Result<Settled, SettleError> {
                let ReverseRequest { hospital, invoice_no, actor, at } = request;
                let (hospital, invoice_no, actor, at) = (hospital.as_str(), invoice_no.as_str(), actor.as_str(), at.as_str());
                let row = sqlx::query(
                    "SELECT i.hospital, d.person_key, d.policy_id, d.year, d.outcome, d.category, d.pool, \
                     d.policy_version, d.base, d.deductible_applied, d.eligible, d.amount, r.response \
                     FROM invoices i JOIN decisions d ON d.invoice_no = i.invoice_no AND d.kind = 'decision' \
                     JOIN decision_responses r ON r.decision_id = d.id \
                     WHERE i.invoice_no = $1",
                )
                .bind(invoice_no)
                .fetch_optional(&mut **tx)
                .await?;
                let Some(row) = row else {
                    return Err(SettleError::NotFound(invoice_no.to_owned()));
                };
                let owner: String = row.try_get("hospital")?;
                if owner != hospital {
                    return Err(SettleError::NotFound(invoice_no.to_owned()));
                }
                let already = sqlx::query("SELECT id FROM decisions WHERE invoice_no = $1 AND kind = 'reversal'")
                    .bind(invoice_no)
                    .fetch_optional(&mut **tx)
                    .await?;
                if already.is_some() {
                    return Err(SettleError::AlreadyReversed(invoice_no.to_owned()));
                }
                let person_key: Vec<u8> = row.try_get("person_key")?;
                let year: i64 = row.try_get("year")?;
                let mut outcome: String = row.try_get("outcome")?;
                let mut pool_name: Option<String> = row.try_get("pool")?;
                let mut deductible_applied: i64 = row.try_get("deductible_applied")?;
                let mut amount: i64 = row.try_get("amount")?;
                let response_text: String = row.try_get("response")?;
                // A clearing that changed the decision set the counters
                // from its values: those are what the reversal gives back.
                let cleared = sqlx::query(
                    "SELECT outcome, pool, deductible_applied, amount FROM clearing_invoices \
                     WHERE year = $1 AND invoice_no = $2 ORDER BY clearing_id DESC LIMIT 1",
                )
                .bind(year)
                .bind(invoice_no)
                .fetch_optional(&mut **tx)
                .await?;
                if let Some(cleared) = cleared {
                    outcome = cleared.try_get("outcome")?;
                    pool_name = cleared.try_get("pool")?;
                    deductible_applied = cleared.try_get("deductible_applied")?;
                    amount = cleared.try_get("amount")?;
                }
                if matches!(outcome.as_str(), "assisted" | "capped") {
                    if let Some(pool_name) = &pool_name {
                        sqlx::query(
                            "UPDATE counters SET deductible_used = deductible_used - $1, granted = granted - $2 \
                             WHERE person_key = $3 AND year = $4 AND pool = $5",
                        )
                        .bind(deductible_applied)
                        .bind(amount)
                        .bind(&person_key)
                        .bind(year)
                        .bind(pool_name)
                        .execute(&mut **tx)
                        .await?;
                    }
                }
                sqlx::query(
                    "INSERT INTO decisions (invoice_no, person_key, kind, policy_id, year, outcome, category, pool, \
                     policy_version, base, deductible_applied, eligible, amount, decided_at, decided_by) \
                     SELECT invoice_no, person_key, 'reversal', policy_id, year, outcome, category, pool, \
                     policy_version, base, deductible_applied, eligible, amount, $2, $3 \
                     FROM decisions WHERE invoice_no = $1 AND kind = 'decision'",
                )
                .bind(invoice_no)
                .bind(at)
                .bind(actor)
                .execute(&mut **tx)
                .await?;
                let details = format!(
                    "{{\"hospital\":{},\"amount_returned\":\"{}\",\"deductible_returned\":\"{}\"}}",
                    json_string(hospital),
                    Fen::from_fen(amount),
                    Fen::from_fen(deductible_applied)
                );
                audit(tx, actor, "settlement.reverse", &format!("invoice {invoice_no}"), details).await?;
                let response = serde_json::from_str(&response_text)
                    .map_err(|error| StoreError::Damaged(format!("a stored answer: {error}")))?;
                Ok(Settled { response, replayed: false, reversed: true })
            }

            pub(super) async fn audit_rows(pool: &Pool) -> Result<Vec<(AuditEntry, [u8; 32])>, StoreError> {
                let rows = sqlx::query(
                    "SELECT sequence, at, actor, action, subject, details, hash FROM audit_log ORDER BY sequence",
                )
                .fetch_all(pool)
                .await?;
                rows.into_iter()
                    .map(|row| {
                        let sequence: i64 = row.try_get("sequence")?;
                        let entry = AuditEntry {
                            sequence: sequence as u64,
                            at: row.try_get("at")?,
                            actor: row.try_get("actor")?,
                            action: row.try_get("action")?,
                            subject: row.try_get("subject")?,
                            details: row.try_get("details")?,
                        };
                        Ok((entry, hash_array(row.try_get("hash")?, "an audit hash")?))
                    })
                    .collect()
            }
        }
    };
}

backend!(
    sqlite_backend,
    sqlx::SqlitePool,
    sqlx::Sqlite,
    "BEGIN IMMEDIATE",
    None
);
// The advisory lock's number is "jiuzhu" in ASCII.
backend!(
    postgres_backend,
    sqlx::PgPool,
    sqlx::Postgres,
    "BEGIN",
    Some("SELECT pg_advisory_xact_lock(117001175066741)")
);

/// SQLite: one writer at a time by `BEGIN IMMEDIATE`.
mod sqlite {
    pub(super) use super::sqlite_backend::*;

    pub(super) async fn migrate(pool: &sqlx::SqlitePool) -> Result<(), super::StoreError> {
        super::sqlite_backend::migrate(pool, super::SQLITE_MIGRATIONS).await
    }
}

/// PostgreSQL: one writer at a time by a transaction-scoped advisory lock,
/// across every `jiuzhu serve` sharing the database.
mod postgres {
    pub(super) use super::postgres_backend::*;

    pub(super) async fn migrate(pool: &sqlx::PgPool) -> Result<(), super::StoreError> {
        super::postgres_backend::migrate(pool, super::POSTGRES_MIGRATIONS).await
    }
}

#[cfg(test)]
mod tests {
    use super::sql_literal;

    #[test]
    fn a_literal_doubles_its_quotes_and_nothing_else() {
        assert_eq!(
            sql_literal("2026-01-01T00:00:00.000Z"),
            "'2026-01-01T00:00:00.000Z'"
        );
        assert_eq!(sql_literal("it's"), "'it''s'");
        assert_eq!(
            sql_literal("''); DROP TABLE spells; --"),
            "'''''); DROP TABLE spells; --'"
        );
        assert_eq!(sql_literal(""), "''");
    }
}
