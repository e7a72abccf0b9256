//! Disbursement (拨付): what is owed to persons paid out in bank batches,
//! made by one person and approved by another (maker-checker), exported as
//! the bank's payment file and reconciled with the bank's return file.
//!
//! What is owed (`payables`) is gathered when a batch is made: each
//! decision of the insurance feed granting more than 0 and not reversed
//! (the person paid the whole bill at the counter), and each top-up of a
//! clearing. A decision reversed before the bank paid it is not paid (a
//! failed line's debt is not batched again); one reversed after counts as
//! granted in the next clearing, which recovers it. Real-time decisions are not paid to persons: the hospital
//! deducted them at its counter. A recovery is not paid: it is reviewed.
//!
//! Every step is taken by a member of staff; approving a batch and
//! exporting its payment file (with full account numbers) need the role
//! `approver`. The rules, each held by the database as well as the code:
//!
//! - a payable is in at most one live line (pending or paid): never in two
//!   unpaid batches, never paid twice (`payment_items_live`);
//! - the maker of a batch cannot approve it;
//! - only an approved batch is exported, and every total is checked before
//!   export (each line is the sum of its payables, the batch the sum of its
//!   lines) and after a return is imported (paid + failed + pending = the
//!   batch's total);
//! - a return file with a line of another batch, a line twice, a line
//!   already answered or an amount that differs is refused whole, every
//!   problem named: nothing of it is applied. A failed line's payables go
//!   into a later batch, with the bank's reason kept on the line.

use jiuzhu_core::{Fen, ResidentId};
use jiuzhu_formats::bank::{BankAccountRow, PaymentLine, ReturnRow};
use jiuzhu_formats::{Problem, Problems};
use thiserror::Error;

use super::{Backend, Store, StoreError};
use crate::crypto::Purpose;

/// A batch and where it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchSummary {
    pub id: i64,
    pub created_by: String,
    pub created_at: String,
    pub approved_by: Option<String>,
    pub exported: bool,
    pub returned: bool,
    pub lines: u64,
    pub total: Fen,
    /// Lines and amounts by status.
    pub paid: (u64, Fen),
    pub failed: (u64, Fen),
    pub pending: (u64, Fen),
}

/// What making a batch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchMade {
    /// The batch, or `None` when nothing was to be paid to anyone with an
    /// account.
    pub batch: Option<BatchSummary>,
    /// Persons owed something who have no bank account yet, and how much:
    /// they wait for a later batch.
    pub waiting_without_account: (u64, Fen),
}

/// What loading a file of bank accounts did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountsLoaded {
    /// New accounts stored (a person's newest one is used from now on).
    pub stored: u64,
    /// Rows that repeated the person's current account.
    pub unchanged: u64,
}

/// Why a disbursement step changed nothing.
#[derive(Debug, Error)]
pub enum DisburseError {
    #[error("there is no payment batch {0}")]
    NotFound(i64),
    #[error("{0} is not a member of staff")]
    NotStaff(String),
    #[error("{name} does not have the role approver, which approving or exporting a batch needs")]
    NotApprover { name: String },
    #[error("batch {batch} was made by {actor}: another person must approve it (maker-checker)")]
    SelfApproval { batch: i64, actor: String },
    #[error("batch {0} is approved already")]
    AlreadyApproved(i64),
    #[error("batch {0} is not approved yet: it cannot be exported")]
    NotApproved(i64),
    #[error("batch {0} has not been exported: there is nothing for the bank to answer")]
    NotExported(i64),
    #[error("the totals of batch {batch} do not add up: {what}")]
    TotalsDiffer { batch: i64, what: String },
    /// The file was refused whole; every problem is named.
    #[error("the file is refused; nothing was changed:\n{0}")]
    Refused(Problems),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for DisburseError {
    fn from(error: sqlx::Error) -> DisburseError {
        DisburseError::Store(StoreError::from(error))
    }
}

/// An account as it will be stored.
struct AccountRow {
    line: u64,
    key: Vec<u8>,
    holder_name: String,
    bank: String,
    encrypted: Vec<u8>,
    masked: String,
    /// The account's blind index, to tell an unchanged account.
    index: [u8; 32],
}

/// `6228********5678`: the first and last 4 digits (2 of a short number).
pub fn masked_account(account: &str) -> String {
    let keep = 4.min(account.len() / 4);
    format!(
        "{}{}{}",
        &account[..keep],
        "*".repeat(account.len() - 2 * keep),
        &account[account.len() - keep..]
    )
}

impl Store {
    /// Refuses unless `actor` is a member of staff, and an approver when
    /// `approver`.
    async fn disbursing(&self, actor: &str, approver: bool) -> Result<(), DisburseError> {
        let user = self
            .staff(actor)
            .await?
            .ok_or_else(|| DisburseError::NotStaff(actor.to_owned()))?;
        if approver && !user.has(super::Role::Approver) {
            return Err(DisburseError::NotApprover {
                name: actor.to_owned(),
            });
        }
        Ok(())
    }

    /// Stores bank accounts (a new row per change; a person's newest is
    /// used from the next batch). A row for a person the store does not
    /// know refuses the file whole.
    pub async fn load_bank_accounts(
        &self,
        file: &str,
        rows: &[BankAccountRow],
        actor: &str,
    ) -> Result<AccountsLoaded, DisburseError> {
        self.disbursing(actor, false).await?;
        let mut accounts = Vec::with_capacity(rows.len());
        for row in rows {
            let account = row.account.as_bytes();
            accounts.push(AccountRow {
                line: row.line,
                key: self
                    .keys
                    .blind_index(Purpose::ResidentId, row.person.to_string().as_bytes())
                    .to_vec(),
                holder_name: row.holder_name.clone(),
                bank: row.bank.clone(),
                encrypted: self
                    .keys
                    .encrypt(Purpose::BankAccount, account)
                    .map_err(StoreError::from)?,
                masked: masked_account(&row.account),
                index: self.keys.blind_index(Purpose::BankAccount, account),
            });
        }
        let keys = &self.keys;
        let current = |encrypted: &[u8]| -> Result<[u8; 32], StoreError> {
            let plain = keys.decrypt(Purpose::BankAccount, encrypted)?;
            Ok(keys.blind_index(Purpose::BankAccount, &plain))
        };
        match &self.backend {
            Backend::Sqlite(pool) => {
                sqlite_disburse::load_accounts(pool, file, &accounts, &current, actor).await
            }
            Backend::Postgres(pool) => {
                postgres_disburse::load_accounts(pool, file, &accounts, &current, actor).await
            }
        }
    }

    /// Makes a batch of everything owed and not yet in a live line, one
    /// line per person with a bank account.
    pub async fn create_batch(&self, actor: &str) -> Result<BatchMade, DisburseError> {
        self.disbursing(actor, false).await?;
        match &self.backend {
            Backend::Sqlite(pool) => sqlite_disburse::create_batch(pool, actor).await,
            Backend::Postgres(pool) => postgres_disburse::create_batch(pool, actor).await,
        }
    }

    /// Approves a batch; its maker cannot.
    pub async fn approve_batch(&self, batch: i64, actor: &str) -> Result<BatchSummary, DisburseError> {
        self.disbursing(actor, true).await?;
        match &self.backend {
            Backend::Sqlite(pool) => sqlite_disburse::approve(pool, batch, actor).await,
            Backend::Postgres(pool) => postgres_disburse::approve(pool, batch, actor).await,
        }
    }

    /// The payment file's lines of an approved batch, account numbers in
    /// full, after its totals are checked; the export is recorded.
    pub async fn export_batch(&self, batch: i64, actor: &str) -> Result<Vec<PaymentLine>, DisburseError> {
        self.disbursing(actor, true).await?;
        let rows = match &self.backend {
            Backend::Sqlite(pool) => sqlite_disburse::export(pool, batch, actor).await?,
            Backend::Postgres(pool) => postgres_disburse::export(pool, batch, actor).await?,
        };
        let mut lines = Vec::with_capacity(rows.len());
        for row in rows {
            let id = String::from_utf8(
                self.keys
                    .decrypt(Purpose::ResidentId, &row.encrypted_id)
                    .map_err(StoreError::from)?,
            )
            .ok()
            .and_then(|text| ResidentId::parse(&text).ok())
            .ok_or_else(|| {
                StoreError::Damaged(format!("the person of line {} does not decrypt", row.line_id))
            })?;
            let account = String::from_utf8(
                self.keys
                    .decrypt(Purpose::BankAccount, &row.encrypted_account)
                    .map_err(StoreError::from)?,
            )
            .map_err(|_| StoreError::Damaged(format!("the account of line {} is not text", row.line_id)))?;
            lines.push(PaymentLine {
                batch_id: batch,
                line_id: row.line_id,
                person: id,
                holder_name: row.holder_name,
                account,
                amount: Fen::from_fen(row.amount),
                reference: format!("医疗救助 JZ{batch}-{}", row.line_id),
            });
        }
        Ok(lines)
    }

    /// Applies the bank's return file to an exported batch (see the
    /// module's documentation).
    pub async fn import_bank_return(
        &self,
        batch: i64,
        file: &str,
        rows: &[ReturnRow],
        actor: &str,
    ) -> Result<BatchSummary, DisburseError> {
        self.disbursing(actor, false).await?;
        match &self.backend {
            Backend::Sqlite(pool) => sqlite_disburse::import_return(pool, batch, file, rows, actor).await,
            Backend::Postgres(pool) => postgres_disburse::import_return(pool, batch, file, rows, actor).await,
        }
    }

    /// Every batch, newest first.
    pub async fn batches(&self) -> Result<Vec<BatchSummary>, DisburseError> {
        match &self.backend {
            Backend::Sqlite(pool) => sqlite_disburse::batches(pool).await,
            Backend::Postgres(pool) => postgres_disburse::batches(pool).await,
        }
    }
}

/// A line of an export as read, before its person and account are
/// decrypted.
struct ExportRow {
    line_id: i64,
    amount: i64,
    holder_name: String,
    encrypted_id: Vec<u8>,
    encrypted_account: Vec<u8>,
}

macro_rules! disburse_backend {
    ($module:ident, $backend:ident, $Pool:ty, $Db:ty) => {
        mod $module {
            use std::collections::{BTreeMap, HashMap, HashSet};

            use jiuzhu_core::Fen;
            use jiuzhu_formats::bank::ReturnRow;
            use sqlx::{QueryBuilder, Row as _};

            use super::{
                AccountRow, AccountsLoaded, BatchMade, BatchSummary, DisburseError, ExportRow, Problem, Problems,
            };
            use crate::database::$backend::{audit, begin_write};
            use crate::database::{json_string, now_text, StoreError, ROWS_PER_STATEMENT};

            type Tx<'t> = sqlx::Transaction<'t, $Db>;

            pub(super) async fn load_accounts(
                pool: &$Pool,
                file: &str,
                accounts: &[AccountRow],
                current: &(dyn Fn(&[u8]) -> Result<[u8; 32], StoreError> + Sync),
                actor: &str,
            ) -> Result<AccountsLoaded, DisburseError> {
                let mut tx = begin_write(pool).await?;
                let mut problems = Problems::new();
                let mut loaded = AccountsLoaded { stored: 0, unchanged: 0 };
                let now = now_text();
                for account in accounts {
                    let known = sqlx::query("SELECT 1 FROM persons WHERE person_key = $1")
                        .bind(&account.key)
                        .fetch_optional(&mut *tx)
                        .await?;
                    if known.is_none() {
                        problems.push(Problem::at(
                            file,
                            account.line,
                            "person_id",
                            "is not a person the store knows (no spell and no bill)",
                        ));
                        continue;
                    }
                    let latest = sqlx::query(
                        "SELECT holder_name, bank, account_encrypted FROM bank_accounts WHERE person_key = $1 \
                         ORDER BY id DESC LIMIT 1",
                    )
                    .bind(&account.key)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if let Some(latest) = latest {
                        let holder: String = latest.try_get(0)?;
                        let bank: String = latest.try_get(1)?;
                        let encrypted: Vec<u8> = latest.try_get(2)?;
                        if holder == account.holder_name && bank == account.bank && current(&encrypted)? == account.index {
                            loaded.unchanged += 1;
                            continue;
                        }
                    }
                    sqlx::query(
                        "INSERT INTO bank_accounts (person_key, holder_name, bank, account_encrypted, account_masked, \
                         recorded_at, recorded_by) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .bind(&account.key)
                    .bind(&account.holder_name)
                    .bind(&account.bank)
                    .bind(&account.encrypted)
                    .bind(&account.masked)
                    .bind(&now)
                    .bind(actor)
                    .execute(&mut *tx)
                    .await?;
                    loaded.stored += 1;
                }
                if !problems.is_empty() {
                    return Err(DisburseError::Refused(problems));
                }
                let details = format!(
                    "{{\"file\":{},\"stored\":{},\"unchanged\":{}}}",
                    json_string(file),
                    loaded.stored,
                    loaded.unchanged
                );
                audit(&mut tx, actor, "bank_accounts.load", &format!("file {file}"), details).await?;
                tx.commit().await?;
                Ok(loaded)
            }

            pub(super) async fn create_batch(pool: &$Pool, actor: &str) -> Result<BatchMade, DisburseError> {
                let mut tx = begin_write(pool).await?;
                let now = now_text();
                // What is owed, gathered once per cause.
                sqlx::query(
                    "INSERT INTO payables (person_key, kind, reference, amount, created_at) \
                     SELECT d.person_key, 'decision', d.invoice_no, d.amount, $1 \
                     FROM decisions d JOIN invoices i ON i.invoice_no = d.invoice_no \
                     WHERE d.kind = 'decision' AND i.channel IN ('feed', 'application') AND d.amount > 0 \
                     AND NOT EXISTS (SELECT 1 FROM decisions r WHERE r.invoice_no = d.invoice_no AND r.kind = 'reversal') \
                     ON CONFLICT (kind, reference) DO NOTHING",
                )
                .bind(&now)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO payables (person_key, kind, reference, amount, created_at) \
                     SELECT person_key, 'top_up', CAST(id AS TEXT), amount, $1 FROM clearing_lines \
                     WHERE kind = 'top_up' ON CONFLICT (kind, reference) DO NOTHING",
                )
                .bind(&now)
                .execute(&mut *tx)
                .await?;
                let unpaid = sqlx::query(
                    "SELECT p.id, p.person_key, p.amount FROM payables p WHERE NOT EXISTS \
                     (SELECT 1 FROM payment_items t WHERE t.payable_id = p.id AND t.live = 1) \
                     AND NOT (p.kind = 'decision' AND EXISTS (SELECT 1 FROM decisions r \
                     WHERE r.invoice_no = p.reference AND r.kind = 'reversal')) \
                     ORDER BY p.person_key, p.id",
                )
                .fetch_all(&mut *tx)
                .await?;
                let mut accounts: HashMap<Vec<u8>, i64> = HashMap::new();
                for row in sqlx::query("SELECT person_key, MAX(id) FROM bank_accounts GROUP BY person_key")
                    .fetch_all(&mut *tx)
                    .await?
                {
                    accounts.insert(row.try_get(0)?, row.try_get(1)?);
                }
                // Per person: the account, the payables, the sum.
                let mut lines: BTreeMap<Vec<u8>, (i64, Vec<i64>, i64)> = BTreeMap::new();
                let mut waiting: HashSet<Vec<u8>> = HashSet::new();
                let mut waiting_amount = 0i64;
                for row in unpaid {
                    let id: i64 = row.try_get(0)?;
                    let key: Vec<u8> = row.try_get(1)?;
                    let amount: i64 = row.try_get(2)?;
                    match accounts.get(&key) {
                        Some(&account) => {
                            let line = lines.entry(key).or_insert((account, Vec::new(), 0));
                            line.1.push(id);
                            line.2 += amount;
                        }
                        None => {
                            waiting_amount += amount;
                            waiting.insert(key);
                        }
                    }
                }
                let waiting_without_account = (waiting.len() as u64, Fen::from_fen(waiting_amount));
                if lines.is_empty() {
                    tx.commit().await?;
                    return Ok(BatchMade { batch: None, waiting_without_account });
                }
                let total: i64 = lines.values().map(|line| line.2).sum();
                let batch: i64 = sqlx::query(
                    "INSERT INTO payment_batches (created_at, created_by, lines, total) VALUES ($1, $2, $3, $4) \
                     RETURNING id",
                )
                .bind(&now)
                .bind(actor)
                .bind(lines.len() as i64)
                .bind(total)
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
                let mut items: Vec<(i64, i64)> = Vec::new();
                for (key, (account, payables, amount)) in &lines {
                    let line: i64 = sqlx::query(
                        "INSERT INTO payment_lines (batch_id, person_key, bank_account_id, amount, status) \
                         VALUES ($1, $2, $3, $4, 'pending') RETURNING id",
                    )
                    .bind(batch)
                    .bind(key)
                    .bind(account)
                    .bind(amount)
                    .fetch_one(&mut *tx)
                    .await?
                    .try_get(0)?;
                    items.extend(payables.iter().map(|payable| (line, *payable)));
                }
                for part in items.chunks(ROWS_PER_STATEMENT) {
                    let mut query = QueryBuilder::<$Db>::new("INSERT INTO payment_items (line_id, payable_id, live) ");
                    query.push_values(part, |mut values, (line, payable)| {
                        values.push_bind(*line).push_bind(*payable).push("1");
                    });
                    query.build().execute(&mut *tx).await?;
                }
                let details = format!(
                    "{{\"lines\":{},\"total\":\"{}\",\"payables\":{}}}",
                    lines.len(),
                    Fen::from_fen(total),
                    items.len()
                );
                audit(&mut tx, actor, "batch.create", &format!("batch {batch}"), details).await?;
                let summary = summary_in(&mut tx, batch).await?;
                tx.commit().await?;
                Ok(BatchMade { batch: Some(summary), waiting_without_account })
            }

            async fn summary_in(tx: &mut Tx<'_>, batch: i64) -> Result<BatchSummary, DisburseError> {
                let row = sqlx::query(
                    "SELECT created_by, created_at, approved_by, exported_at, returned_at, lines, total \
                     FROM payment_batches WHERE id = $1",
                )
                .bind(batch)
                .fetch_optional(&mut **tx)
                .await?
                .ok_or(DisburseError::NotFound(batch))?;
                let mut summary = BatchSummary {
                    id: batch,
                    created_by: row.try_get(0)?,
                    created_at: row.try_get(1)?,
                    approved_by: row.try_get(2)?,
                    exported: row.try_get::<Option<String>, _>(3)?.is_some(),
                    returned: row.try_get::<Option<String>, _>(4)?.is_some(),
                    lines: row.try_get::<i64, _>(5)? as u64,
                    total: Fen::from_fen(row.try_get(6)?),
                    paid: (0, Fen::ZERO),
                    failed: (0, Fen::ZERO),
                    pending: (0, Fen::ZERO),
                };
                for row in sqlx::query("SELECT status, amount FROM payment_lines WHERE batch_id = $1")
                    .bind(batch)
                    .fetch_all(&mut **tx)
                    .await?
                {
                    let status: String = row.try_get(0)?;
                    let amount: i64 = row.try_get(1)?;
                    let slot = match status.as_str() {
                        "paid" => &mut summary.paid,
                        "failed" => &mut summary.failed,
                        _ => &mut summary.pending,
                    };
                    slot.0 += 1;
                    slot.1 = Fen::from_fen(slot.1.fen() + amount);
                }
                Ok(summary)
            }

            /// Each line is the sum of its payables and the batch the sum
            /// of its lines.
            async fn check_totals(tx: &mut Tx<'_>, batch: i64) -> Result<(), DisburseError> {
                let summary = summary_in(tx, batch).await?;
                let lines = summary.paid.0 + summary.failed.0 + summary.pending.0;
                let sum = summary.paid.1.fen() + summary.failed.1.fen() + summary.pending.1.fen();
                if lines != summary.lines || sum != summary.total.fen() {
                    return Err(DisburseError::TotalsDiffer {
                        batch,
                        what: format!(
                            "{lines} lines of {} against {} lines of {} recorded",
                            Fen::from_fen(sum),
                            summary.lines,
                            summary.total
                        ),
                    });
                }
                let uneven = sqlx::query(
                    "SELECT l.id, l.amount, SUM(p.amount) FROM payment_lines l \
                     JOIN payment_items t ON t.line_id = l.id JOIN payables p ON p.id = t.payable_id \
                     WHERE l.batch_id = $1 GROUP BY l.id, l.amount HAVING SUM(p.amount) <> l.amount",
                )
                .bind(batch)
                .fetch_optional(&mut **tx)
                .await?;
                if let Some(row) = uneven {
                    let line: i64 = row.try_get(0)?;
                    return Err(DisburseError::TotalsDiffer {
                        batch,
                        what: format!("line {line} is not the sum of its payables"),
                    });
                }
                Ok(())
            }

            pub(super) async fn approve(pool: &$Pool, batch: i64, actor: &str) -> Result<BatchSummary, DisburseError> {
                let mut tx = begin_write(pool).await?;
                let summary = summary_in(&mut tx, batch).await?;
                if summary.approved_by.is_some() {
                    return Err(DisburseError::AlreadyApproved(batch));
                }
                if summary.created_by == actor {
                    return Err(DisburseError::SelfApproval { batch, actor: actor.to_owned() });
                }
                check_totals(&mut tx, batch).await?;
                sqlx::query("UPDATE payment_batches SET approved_by = $1, approved_at = $2 WHERE id = $3")
                    .bind(actor)
                    .bind(now_text())
                    .bind(batch)
                    .execute(&mut *tx)
                    .await?;
                let details = format!("{{\"lines\":{},\"total\":\"{}\"}}", summary.lines, summary.total);
                audit(&mut tx, actor, "batch.approve", &format!("batch {batch}"), details).await?;
                let summary = summary_in(&mut tx, batch).await?;
                tx.commit().await?;
                Ok(summary)
            }

            pub(super) async fn export(pool: &$Pool, batch: i64, actor: &str) -> Result<Vec<ExportRow>, DisburseError> {
                let mut tx = begin_write(pool).await?;
                let summary = summary_in(&mut tx, batch).await?;
                if summary.approved_by.is_none() {
                    return Err(DisburseError::NotApproved(batch));
                }
                check_totals(&mut tx, batch).await?;
                let rows = sqlx::query(
                    "SELECT l.id, l.amount, a.holder_name, p.resident_id_encrypted, a.account_encrypted \
                     FROM payment_lines l JOIN bank_accounts a ON a.id = l.bank_account_id \
                     JOIN persons p ON p.person_key = l.person_key \
                     WHERE l.batch_id = $1 AND l.status = 'pending' ORDER BY l.id",
                )
                .bind(batch)
                .fetch_all(&mut *tx)
                .await?;
                let mut lines = Vec::with_capacity(rows.len());
                for row in rows {
                    lines.push(ExportRow {
                        line_id: row.try_get(0)?,
                        amount: row.try_get(1)?,
                        holder_name: row.try_get(2)?,
                        encrypted_id: row.try_get(3)?,
                        encrypted_account: row.try_get(4)?,
                    });
                }
                sqlx::query("UPDATE payment_batches SET exported_at = $1 WHERE id = $2")
                    .bind(now_text())
                    .bind(batch)
                    .execute(&mut *tx)
                    .await?;
                let amount: i64 = lines.iter().map(|line| line.amount).sum();
                let details = format!("{{\"lines\":{},\"amount\":\"{}\"}}", lines.len(), Fen::from_fen(amount));
                audit(&mut tx, actor, "batch.export", &format!("batch {batch}"), details).await?;
                tx.commit().await?;
                Ok(lines)
            }

            pub(super) async fn import_return(
                pool: &$Pool,
                batch: i64,
                file: &str,
                rows: &[ReturnRow],
                actor: &str,
            ) -> Result<BatchSummary, DisburseError> {
                let mut tx = begin_write(pool).await?;
                let summary = summary_in(&mut tx, batch).await?;
                if !summary.exported {
                    return Err(DisburseError::NotExported(batch));
                }
                let mut lines: HashMap<i64, (i64, String)> = HashMap::new();
                for row in sqlx::query("SELECT id, amount, status FROM payment_lines WHERE batch_id = $1")
                    .bind(batch)
                    .fetch_all(&mut *tx)
                    .await?
                {
                    lines.insert(row.try_get(0)?, (row.try_get(1)?, row.try_get(2)?));
                }
                let mut problems = Problems::new();
                let mut seen: HashMap<i64, u64> = HashMap::new();
                for row in rows {
                    if let Some(first) = seen.insert(row.line_id, row.line) {
                        problems.push(Problem::at(
                            file,
                            row.line,
                            "line_id",
                            format!("line {} is answered twice (also on line {first})", row.line_id),
                        ));
                        continue;
                    }
                    let Some((amount, status)) = lines.get(&row.line_id) else {
                        problems.push(Problem::at(
                            file,
                            row.line,
                            "line_id",
                            format!("line {} is not a line of batch {batch}", row.line_id),
                        ));
                        continue;
                    };
                    if status != "pending" {
                        problems.push(Problem::at(
                            file,
                            row.line,
                            "line_id",
                            format!("line {} was answered already ({status})", row.line_id),
                        ));
                    }
                    if let Some(answered) = row.amount {
                        if answered.fen() != *amount {
                            problems.push(Problem::at(
                                file,
                                row.line,
                                "amount",
                                format!("{answered} differs from the line's {}", Fen::from_fen(*amount)),
                            ));
                        }
                    }
                }
                if !problems.is_empty() {
                    return Err(DisburseError::Refused(problems.sorted_by_line()));
                }
                let now = now_text();
                for row in rows {
                    let status = if row.paid { "paid" } else { "failed" };
                    sqlx::query("UPDATE payment_lines SET status = $1, reason = $2, answered_at = $3 WHERE id = $4")
                        .bind(status)
                        .bind(&row.reason)
                        .bind(&now)
                        .bind(row.line_id)
                        .execute(&mut *tx)
                        .await?;
                    if !row.paid {
                        sqlx::query("UPDATE payment_items SET live = 0 WHERE line_id = $1")
                            .bind(row.line_id)
                            .execute(&mut *tx)
                            .await?;
                    } else {
                        applications_paid(&mut tx, batch, row.line_id, actor, &now).await?;
                    }
                }
                let answered = sqlx::query("SELECT COUNT(*) FROM payment_lines WHERE batch_id = $1 AND status = 'pending'")
                    .bind(batch)
                    .fetch_one(&mut *tx)
                    .await?;
                if answered.try_get::<i64, _>(0)? == 0 {
                    sqlx::query("UPDATE payment_batches SET returned_at = $1 WHERE id = $2")
                        .bind(&now)
                        .bind(batch)
                        .execute(&mut *tx)
                        .await?;
                }
                check_totals(&mut tx, batch).await?;
                let summary = summary_in(&mut tx, batch).await?;
                let details = format!(
                    "{{\"file\":{},\"paid\":{},\"paid_amount\":\"{}\",\"failed\":{},\"failed_amount\":\"{}\",\"pending\":{}}}",
                    json_string(file),
                    summary.paid.0,
                    summary.paid.1,
                    summary.failed.0,
                    summary.failed.1,
                    summary.pending.0
                );
                audit(&mut tx, actor, "batch.return", &format!("batch {batch}"), details).await?;
                tx.commit().await?;
                Ok(summary)
            }

            /// Records, for each application whose bills a paid line
            /// carried, that the bank paid them; an application is `paid`
            /// once every bill of it that granted something is.
            async fn applications_paid(
                tx: &mut Tx<'_>,
                batch: i64,
                line: i64,
                actor: &str,
                now: &str,
            ) -> Result<(), DisburseError> {
                let applications: Vec<i64> = sqlx::query(
                    "SELECT DISTINCT b.application_id FROM payment_items t \
                     JOIN payables p ON p.id = t.payable_id AND p.kind = 'decision' \
                     JOIN application_bills b ON b.invoice_no = p.reference AND b.status = 'decided' \
                     WHERE t.line_id = $1 ORDER BY 1",
                )
                .bind(line)
                .fetch_all(&mut **tx)
                .await?
                .iter()
                .map(|row| row.try_get(0))
                .collect::<Result<_, _>>()?;
                for application in applications {
                    sqlx::query(
                        "INSERT INTO application_events (application_id, state, at, actor, reason) \
                         VALUES ($1, 'paid', $2, $3, $4)",
                    )
                    .bind(application)
                    .bind(now)
                    .bind(actor)
                    .bind(format!("paid by the bank in batch {batch}, line {line}"))
                    .execute(&mut **tx)
                    .await?;
                    let unpaid: i64 = sqlx::query(
                        "SELECT COUNT(*) FROM application_bills b JOIN decisions d ON d.invoice_no = b.invoice_no \
                         AND d.kind = 'decision' WHERE b.application_id = $1 AND b.status = 'decided' AND d.amount > 0 \
                         AND NOT EXISTS (SELECT 1 FROM payables p JOIN payment_items t ON t.payable_id = p.id \
                         AND t.live = 1 JOIN payment_lines l ON l.id = t.line_id AND l.status = 'paid' \
                         WHERE p.kind = 'decision' AND p.reference = b.invoice_no)",
                    )
                    .bind(application)
                    .fetch_one(&mut **tx)
                    .await?
                    .try_get(0)?;
                    if unpaid == 0 {
                        sqlx::query("UPDATE applications SET state = 'paid' WHERE id = $1 AND state = 'decided'")
                            .bind(application)
                            .execute(&mut **tx)
                            .await?;
                    }
                }
                Ok(())
            }

            pub(super) async fn batches(pool: &$Pool) -> Result<Vec<BatchSummary>, DisburseError> {
                let mut tx = pool.begin().await?;
                let ids: Vec<i64> = sqlx::query("SELECT id FROM payment_batches ORDER BY id DESC")
                    .fetch_all(&mut *tx)
                    .await?
                    .into_iter()
                    .map(|row| row.try_get(0))
                    .collect::<Result<_, _>>()?;
                let mut all = Vec::with_capacity(ids.len());
                for id in ids {
                    all.push(summary_in(&mut tx, id).await?);
                }
                tx.commit().await?;
                Ok(all)
            }
        }
    };
}

disburse_backend!(sqlite_disburse, sqlite, sqlx::SqlitePool, sqlx::Sqlite);
disburse_backend!(postgres_disburse, postgres, sqlx::PgPool, sqlx::Postgres);

#[cfg(test)]
mod tests {
    use super::masked_account;

    #[test]
    fn an_account_shows_its_first_and_last_four_digits() {
        assert_eq!(masked_account("6228480012345678"), "6228********5678");
        assert_eq!(masked_account("12345678"), "12****78");
    }
}
