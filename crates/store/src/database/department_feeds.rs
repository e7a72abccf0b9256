//! Department data sharing (数据共享): the departments that report spells
//! (民政, 残联, …) and the insurance settlement system (医保结算) push their
//! files through the API with keys of their own, and each department pulls
//! back the decisions about the persons it reported.
//!
//! # Keys
//!
//! A department key is kept only as its SHA-256 hash, as a hospital's is,
//! in `department_keys`; creating and revoking one are audited. A key is
//! looked up on every request (no cache): departments send few, large
//! requests, and a revoked key stops working at once.
//!
//! # Who may send what
//!
//! Any department key may push spells; their source is the key's
//! department. Only a key of [`INSURANCE_SETTLEMENT_DEPARTMENT`] may push
//! the insurance feed (bills): the bills are not a department's report
//! about its own people but what basic insurance settled, and one declared
//! name keeps that right off every other key without a second kind of key.
//!
//! # Sharing back, and why the cursor is stable
//!
//! [`Store::decisions_since`] returns the decisions and reversals (rows of
//! `decisions`) about the persons who have at least one spell, current or
//! superseded, whose source is the department, oldest first, after a
//! cursor that is the last row id returned. Paging by id sees every row
//! once, provided that a row never becomes visible after a row with a
//! larger id. That holds because every row of `decisions` is inserted in a
//! transaction that holds the store's one write lock from its start to its
//! end (`write_decided`, for real-time settlements in the writer task's
//! batches and for the feed's chunks, and `reverse_in`, both inside
//! transactions opened by `begin_write` or with the same statements):
//!
//! - on SQLite, `BEGIN IMMEDIATE` lets one write transaction run at a time,
//!   and an `INTEGER PRIMARY KEY` is chosen inside it as one more than the
//!   largest id (decisions are never deleted);
//! - on PostgreSQL, the id comes from the identity sequence, which is not
//!   transactional, but `nextval` is called only while holding the
//!   transaction-scoped advisory lock. PostgreSQL makes a commit visible
//!   before it releases the transaction's locks (`CommitTransaction` ends
//!   the transaction in the proc array, then releases locks), so the next
//!   writer draws its ids only after every id of the previous writer is
//!   visible, or rolled back and never visible. The sequence's cache is 1,
//!   so ids are drawn in the order of the calls.
//!
//! So the ids visible to a reader are always every committed id, and every
//! id committed later is larger than all of them: a client that resumes
//! after the last id it got misses nothing and sees nothing twice, however
//! many settlements are written between its pages. Besides, each page is
//! read inside a write transaction (it appends the page's audit entry), so
//! no write is in flight while the page is read.
//!
//! Each page that returns decisions is recorded in the audit log
//! (`feeds.decisions.read`: the department, how many decisions about how
//! many persons, the first and last id), in the transaction that read it.
//! The answer carries full resident IDs: the persons are the department's
//! own, whom it reported by ID. Payments do not exist yet; when
//! disbursement is built, what was paid will be shared the same way.

use std::collections::HashSet;

use jiuzhu_core::Fen;

use super::{Backend, Store, StoreError};
use crate::crypto::{ApiKey, ApiKeyHash, Purpose};

/// The department name of the insurance settlement system: the only
/// department whose keys may push the insurance feed (bills).
pub const INSURANCE_SETTLEMENT_DEPARTMENT: &str = "医保结算";
/// Decisions per page unless asked otherwise.
pub const DECISIONS_PAGE_DEFAULT: u32 = 500;
/// The most decisions one page holds.
pub const DECISIONS_PAGE_MAX: u32 = 5000;
/// The longest department name, in characters.
const LONGEST_DEPARTMENT: usize = 32;

/// Whether `name` can be a department's name: 1 to 32 characters, no
/// control characters, no spaces at either end. The error says what is
/// wrong, for a message such as `--department {error}`.
pub fn check_department(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty; expected a department's name such as 民政".to_owned());
    }
    if name.chars().count() > LONGEST_DEPARTMENT {
        return Err(format!("is longer than {LONGEST_DEPARTMENT} characters"));
    }
    if name.chars().any(char::is_control) {
        return Err("holds a control character".to_owned());
    }
    if name.trim() != name {
        return Err("starts or ends with a space".to_owned());
    }
    Ok(())
}

/// Whether a shared row is a decision or the reversal of one (冲正).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionKind {
    Decision,
    Reversal,
}

impl DecisionKind {
    /// As stored in `decisions.kind` and shared: `decision` or `reversal`.
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionKind::Decision => "decision",
            DecisionKind::Reversal => "reversal",
        }
    }
}

/// A decision (or reversal) as shared with the department that reported
/// the person: the values of its `results.csv` row (`formats.md`), money as
/// yuan with two decimals, with the person's full resident ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedDecision {
    /// The row's id: the cursor after it.
    pub id: i64,
    pub kind: DecisionKind,
    pub invoice_no: String,
    /// The full resident ID, canonical (upper-case `X`).
    pub person_id: String,
    pub hospital: String,
    pub service_date: String,
    pub year: i64,
    /// `None` where `results.csv` leaves it empty.
    pub category: Option<String>,
    pub pool: Option<String>,
    pub base: String,
    pub deductible_applied: String,
    pub eligible: String,
    pub amount: String,
    pub outcome: String,
    pub policy_version: Option<String>,
    /// When it was decided (for a reversal, when it was reversed): RFC
    /// 3339, UTC.
    pub decided_at: String,
}

/// One page of decisions for a department.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionPage {
    pub decisions: Vec<SharedDecision>,
    /// Where the next page starts: the last id returned, or the cursor
    /// asked for when the page is empty.
    pub next_cursor: i64,
    /// Whether more decisions were already there after this page.
    pub has_more: bool,
}

/// A row of a page as read, before its ID is decrypted.
struct PageRow {
    id: i64,
    kind: String,
    invoice_no: String,
    person_key: Vec<u8>,
    encrypted_id: Vec<u8>,
    hospital: String,
    service_date: String,
    year: i64,
    outcome: String,
    category: Option<String>,
    pool: Option<String>,
    policy_version: Option<String>,
    /// base, deductible_applied, eligible, amount, in fen.
    amounts: [i64; 4],
    decided_at: String,
}

impl Store {
    /// Creates an API key for a department; the key is shown once and
    /// stored only as its hash. The caller checks the name
    /// ([`check_department`]).
    pub async fn create_department_key(&self, department: &str, actor: &str) -> Result<ApiKey, StoreError> {
        let (key, hash) = ApiKey::generate()?;
        match &self.backend {
            Backend::Sqlite(pool) => sqlite_departments::create_key(pool, department, &hash, actor).await?,
            Backend::Postgres(pool) => {
                postgres_departments::create_key(pool, department, &hash, actor).await?
            }
        }
        Ok(key)
    }

    /// The department a key belongs to, if the key is known and not
    /// revoked. Looked up every time: a revoked key stops at once.
    pub async fn department_for_key(&self, key: &str) -> Result<Option<String>, StoreError> {
        let hash = ApiKeyHash::of(key);
        match &self.backend {
            Backend::Sqlite(pool) => sqlite_departments::department_for_key(pool, &hash).await,
            Backend::Postgres(pool) => postgres_departments::department_for_key(pool, &hash).await,
        }
    }

    /// Revokes every key of a department that is not revoked yet (a key
    /// leaked: revoke them all, then create a new one); how many were.
    pub async fn revoke_department_keys(&self, department: &str, actor: &str) -> Result<u64, StoreError> {
        match &self.backend {
            Backend::Sqlite(pool) => sqlite_departments::revoke_keys(pool, department, actor).await,
            Backend::Postgres(pool) => postgres_departments::revoke_keys(pool, department, actor).await,
        }
    }

    /// The decisions and reversals about the persons `department` reported
    /// (a spell of theirs, current or superseded, has it as source), with
    /// an id above `since`, oldest first, at most `limit` (clamped to 1 ..=
    /// [`DECISIONS_PAGE_MAX`]). A page that holds any is audited as read by
    /// `actor`. See the module's documentation for why paging by the
    /// returned cursor misses nothing and repeats nothing.
    pub async fn decisions_since(
        &self,
        department: &str,
        since: i64,
        limit: u32,
        actor: &str,
    ) -> Result<DecisionPage, StoreError> {
        let limit = limit.clamp(1, DECISIONS_PAGE_MAX);
        let (rows, has_more) = match &self.backend {
            Backend::Sqlite(pool) => sqlite_departments::page(pool, department, since, limit, actor).await?,
            Backend::Postgres(pool) => {
                postgres_departments::page(pool, department, since, limit, actor).await?
            }
        };
        let next_cursor = rows.last().map_or(since, |row| row.id);
        let decisions = rows
            .into_iter()
            .map(|row| self.shared(row))
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(DecisionPage {
            decisions,
            next_cursor,
            has_more,
        })
    }

    fn shared(&self, row: PageRow) -> Result<SharedDecision, StoreError> {
        let plain = self.keys.decrypt(Purpose::ResidentId, &row.encrypted_id)?;
        let person_id = String::from_utf8(plain).map_err(|_| {
            StoreError::Damaged(format!("the resident ID of decision {} is not text", row.id))
        })?;
        let kind = match row.kind.as_str() {
            "decision" => DecisionKind::Decision,
            "reversal" => DecisionKind::Reversal,
            other => {
                return Err(StoreError::Damaged(format!(
                    "decision {} has kind {other:?}",
                    row.id
                )))
            }
        };
        let [base, deductible_applied, eligible, amount] =
            row.amounts.map(|fen| Fen::from_fen(fen).to_string());
        Ok(SharedDecision {
            id: row.id,
            kind,
            invoice_no: row.invoice_no,
            person_id,
            hospital: row.hospital,
            service_date: row.service_date,
            year: row.year,
            category: row.category,
            pool: row.pool,
            base,
            deductible_applied,
            eligible,
            amount,
            outcome: row.outcome,
            policy_version: row.policy_version,
            decided_at: row.decided_at,
        })
    }
}

/// The audit entry of a page read: who, how many decisions about how many
/// persons, and the first and last id.
fn page_details(department: &str, rows: &[PageRow]) -> String {
    let persons: HashSet<&[u8]> = rows.iter().map(|row| row.person_key.as_slice()).collect();
    format!(
        "{{\"department\":{},\"decisions\":{},\"persons\":{},\"first_id\":{},\"last_id\":{}}}",
        super::json_string(department),
        rows.len(),
        persons.len(),
        rows.first().map_or(0, |row| row.id),
        rows.last().map_or(0, |row| row.id),
    )
}

/// The operations of one backend, over the statements `database.rs`
/// shares (`begin_write`, `audit`).
macro_rules! department_backend {
    ($module:ident, $backend:ident, $Pool:ty) => {
        mod $module {
            use sqlx::Row as _;

            use super::{page_details, PageRow};
            use crate::crypto::ApiKeyHash;
            use crate::database::$backend::{audit, begin_write};
            use crate::database::{json_string, now_text, StoreError};

            pub(super) async fn create_key(
                pool: &$Pool,
                department: &str,
                hash: &ApiKeyHash,
                actor: &str,
            ) -> Result<(), StoreError> {
                let mut tx = begin_write(pool).await?;
                sqlx::query("INSERT INTO department_keys (department, key_hash, created_at) VALUES ($1, $2, $3)")
                    .bind(department)
                    .bind(hash.as_bytes().to_vec())
                    .bind(now_text())
                    .execute(&mut *tx)
                    .await?;
                let details = format!("{{\"department\":{}}}", json_string(department));
                audit(&mut tx, actor, "apikey.create", &format!("department {department}"), details).await?;
                tx.commit().await?;
                Ok(())
            }

            pub(super) async fn department_for_key(
                pool: &$Pool,
                hash: &ApiKeyHash,
            ) -> Result<Option<String>, StoreError> {
                let row = sqlx::query("SELECT department FROM department_keys WHERE key_hash = $1 AND revoked_at IS NULL")
                    .bind(hash.as_bytes().to_vec())
                    .fetch_optional(pool)
                    .await?;
                Ok(match row {
                    Some(row) => Some(row.try_get("department")?),
                    None => None,
                })
            }

            pub(super) async fn revoke_keys(pool: &$Pool, department: &str, actor: &str) -> Result<u64, StoreError> {
                let mut tx = begin_write(pool).await?;
                let revoked = sqlx::query(
                    "UPDATE department_keys SET revoked_at = $1 WHERE department = $2 AND revoked_at IS NULL",
                )
                .bind(now_text())
                .bind(department)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if revoked > 0 {
                    let details = format!("{{\"department\":{},\"keys\":{revoked}}}", json_string(department));
                    audit(&mut tx, actor, "apikey.revoke", &format!("department {department}"), details).await?;
                }
                tx.commit().await?;
                Ok(revoked)
            }

            /// One page and whether more follow, read and audited in one
            /// write transaction.
            pub(super) async fn page(
                pool: &$Pool,
                department: &str,
                since: i64,
                limit: u32,
                actor: &str,
            ) -> Result<(Vec<PageRow>, bool), StoreError> {
                let mut tx = begin_write(pool).await?;
                let rows = sqlx::query(
                    "SELECT d.id, d.kind, d.invoice_no, d.person_key, p.resident_id_encrypted, i.hospital, \
                     i.service_date, d.year, d.outcome, d.category, d.pool, d.policy_version, d.base, \
                     d.deductible_applied, d.eligible, d.amount, d.decided_at \
                     FROM decisions d \
                     JOIN invoices i ON i.invoice_no = d.invoice_no \
                     JOIN persons p ON p.person_key = d.person_key \
                     WHERE d.id > $1 \
                     AND EXISTS (SELECT 1 FROM spells s WHERE s.person_key = d.person_key AND s.source = $2) \
                     ORDER BY d.id LIMIT $3",
                )
                .bind(since)
                .bind(department)
                .bind(i64::from(limit) + 1)
                .fetch_all(&mut *tx)
                .await?;
                let has_more = rows.len() > limit as usize;
                let rows = rows
                    .into_iter()
                    .take(limit as usize)
                    .map(|row| {
                        Ok(PageRow {
                            id: row.try_get("id")?,
                            kind: row.try_get("kind")?,
                            invoice_no: row.try_get("invoice_no")?,
                            person_key: row.try_get("person_key")?,
                            encrypted_id: row.try_get("resident_id_encrypted")?,
                            hospital: row.try_get("hospital")?,
                            service_date: row.try_get("service_date")?,
                            year: row.try_get("year")?,
                            outcome: row.try_get("outcome")?,
                            category: row.try_get("category")?,
                            pool: row.try_get("pool")?,
                            policy_version: row.try_get("policy_version")?,
                            amounts: [
                                row.try_get("base")?,
                                row.try_get("deductible_applied")?,
                                row.try_get("eligible")?,
                                row.try_get("amount")?,
                            ],
                            decided_at: row.try_get("decided_at")?,
                        })
                    })
                    .collect::<Result<Vec<PageRow>, sqlx::Error>>()?;
                if !rows.is_empty() {
                    let subject = format!("department {department}");
                    audit(&mut tx, actor, "feeds.decisions.read", &subject, page_details(department, &rows)).await?;
                }
                tx.commit().await?;
                Ok((rows, has_more))
            }
        }
    };
}

department_backend!(sqlite_departments, sqlite, sqlx::SqlitePool);
department_backend!(postgres_departments, postgres, sqlx::PgPool);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_department_name_is_short_plain_text() {
        for good in [
            "民政",
            "残联",
            INSURANCE_SETTLEMENT_DEPARTMENT,
            "乡村振兴",
            "Civil Affairs",
        ] {
            assert_eq!(check_department(good), Ok(()), "{good}");
        }
        for bad in ["", " 民政", "民政 ", "民\n政", &"民".repeat(33)] {
            assert!(check_department(bad).is_err(), "{bad:?}");
        }
    }
}
