//! What the staff console reads and writes beyond the other operations:
//! the stored policy versions, the what-if of a proposed policy on a
//! year's stored bills, the clearings that ran and their lines, the staff
//! users, and the hospitals' and departments' API keys (listed without
//! their secrets, revoked one by one).
//!
//! # The what-if
//!
//! [`Store::what_if`] reads a year through the clearing's own reader
//! (every bill whose decision is of that year and not reversed, and the
//! current spells of their persons), runs the engine over it once
//! under the policy in force and once under the proposed one, in canonical
//! order with counters from zero (as `jiuzhu simulate --compare` does), and
//! stores nothing. Spells whose category a policy does not define grant
//! nothing under it, as in a clearing.

use std::collections::{BTreeMap, HashMap};

use jiuzhu_core::{Batch, BatchRun, Fen, Policy, ResidentId, SpellBook};
use thiserror::Error;

use super::clearing::YearBills;
use super::{Backend, Store, StoreError};

/// A stored policy version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyVersion {
    pub id: i64,
    /// The name the file gives itself, if any.
    pub name: Option<String>,
    /// SHA-256 of the file, hex.
    pub digest: String,
    pub loaded_at: String,
    pub loaded_by: String,
    /// The last one loaded: the one in force.
    pub in_force: bool,
}

/// One category's figures in a what-if.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhatIfCategory {
    pub code: String,
    pub invoices_now: u64,
    pub amount_now: Fen,
    pub invoices_then: u64,
    pub amount_then: Fen,
}

impl WhatIfCategory {
    /// `then − now`.
    pub fn difference(&self) -> Fen {
        Fen::from_fen(self.amount_then.fen() - self.amount_now.fen())
    }
}

/// What a proposed policy would have granted on a year's stored bills,
/// against the policy in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhatIf {
    pub year: i32,
    /// The stored policy in force it compares with.
    pub policy_id: i64,
    /// Bills of the year, not reversed.
    pub invoices: u64,
    /// Persons with such a bill.
    pub persons: u64,
    /// Assisted under the policy in force.
    pub total_now: Fen,
    /// Assisted under the proposed policy.
    pub total_then: Fen,
    /// Persons whose assistance in the year differs between the two.
    pub persons_changed: u64,
    /// Per category code: the policy in force's order, then the proposed
    /// one's new codes.
    pub categories: Vec<WhatIfCategory>,
    /// Current spells whose category the proposed policy does not define.
    pub spells_left_out: u64,
}

impl WhatIf {
    /// `then − now`: positive costs more.
    pub fn difference(&self) -> Fen {
        Fen::from_fen(self.total_then.fen() - self.total_now.fen())
    }
}

/// Why a what-if has no answer.
#[derive(Debug, Error)]
pub enum WhatIfError {
    #[error("no policy is in force to compare with: load one first")]
    NoPolicy,
    #[error(
        "the proposed policy does not map these visit types of the year's bills to a pool: {}",
        .0.join(", ")
    )]
    UnknownVisitTypes(Vec<String>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A clearing that ran, with the tally of its lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClearingRun {
    pub id: i64,
    /// `2024-06`, `2024-Q2` or `2024`.
    pub period: String,
    pub year: i64,
    pub policy_id: i64,
    pub started_at: String,
    pub finished_at: String,
    pub run_by: String,
    pub top_ups: u64,
    pub top_up_total: Fen,
    pub recoveries: u64,
    /// Positive: what is to be recovered.
    pub recovery_total: Fen,
}

/// A line of a clearing, the person masked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClearingLineView {
    pub person_masked: String,
    pub year: i64,
    pub granted: Fen,
    pub recomputed: Fen,
    /// The invoices whose amounts changed, separated by spaces.
    pub invoices: String,
}

impl ClearingLineView {
    /// `recomputed − granted`: positive to pay (补发), negative to recover
    /// (追回).
    pub fn difference(&self) -> Fen {
        Fen::from_fen(self.recomputed.fen() - self.granted.fen())
    }
}

/// A line of a payment batch, the person and the account masked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchLineView {
    pub id: i64,
    pub person_masked: String,
    pub holder_name: String,
    pub account_masked: String,
    pub amount: Fen,
    /// `pending`, `paid` or `failed`.
    pub status: String,
    /// The bank's reason for a failed line.
    pub reason: Option<String>,
}

/// A member of staff as the console lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffListing {
    pub name: String,
    pub roles: Vec<super::Role>,
    pub created_at: String,
    pub created_by: String,
    /// Since when they are disabled, by whom and why; none while enabled.
    pub disabled_at: Option<String>,
    pub disabled_by: Option<String>,
    pub disabled_reason: Option<String>,
    pub has_password: bool,
}

/// Whose an API key is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOwner {
    /// A hospital, for the settlement API.
    Hospital,
    /// A department, for its feeds.
    Department,
}

impl KeyOwner {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyOwner::Hospital => "hospital",
            KeyOwner::Department => "department",
        }
    }

    pub fn parse(text: &str) -> Option<KeyOwner> {
        match text {
            "hospital" => Some(KeyOwner::Hospital),
            "department" => Some(KeyOwner::Department),
            _ => None,
        }
    }
}

/// An API key as listed: never its secret, only which it is, whose, who
/// made it and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyListing {
    pub owner: KeyOwner,
    pub id: i64,
    /// The hospital's code or the department's name.
    pub whose: String,
    pub created_at: String,
    /// As the audit log names who made it.
    pub created_by: String,
    pub revoked_at: Option<String>,
}

/// Per category code: invoices and amount.
fn by_category(policy: &Policy, run: &BatchRun) -> BTreeMap<String, (u64, i64)> {
    let mut totals: BTreeMap<String, (u64, i64)> = BTreeMap::new();
    for ((category, _), row) in &run.summary.rows {
        let entry = totals.entry(policy.category(*category).code.clone()).or_default();
        entry.0 += row.invoices;
        entry.1 += row.amount_total.fen();
    }
    totals
}

/// The what-if over `data`: `current` (stored as `policy_id`) against
/// `proposed`.
fn compare(
    year: i32,
    policy_id: i64,
    current: &Policy,
    proposed: &Policy,
    data: YearBills,
) -> Result<WhatIf, WhatIfError> {
    let persons = data.persons;
    let batch = Batch::new(data.invoices, data.visit_types);
    let (book_now, _) = SpellBook::new_lenient(current, &data.spells);
    let (book_then, left_out) = SpellBook::new_lenient(proposed, &data.spells);
    let unknown = |unknown: Vec<jiuzhu_core::UnknownVisitType>| {
        WhatIfError::UnknownVisitTypes(unknown.into_iter().map(|visit| visit.0).collect())
    };
    let now = batch.run(current, &book_now, &|_| {}).map_err(|unknown| {
        StoreError::Damaged(format!(
            "the policy in force does not map the stored visit types {:?} to a pool",
            unknown.into_iter().map(|visit| visit.0).collect::<Vec<_>>()
        ))
    })?;
    let then = batch.run(proposed, &book_then, &|_| {}).map_err(unknown)?;

    let mut per_person: HashMap<ResidentId, i64> = HashMap::new();
    for (index, invoice) in batch.invoices().iter().enumerate() {
        let change = then.decision(index).amount.fen() - now.decision(index).amount.fen();
        *per_person.entry(invoice.person).or_default() += change;
    }
    let persons_changed = per_person.values().filter(|change| **change != 0).count() as u64;

    let mut codes: Vec<String> = current
        .categories()
        .iter()
        .map(|category| category.code.clone())
        .collect();
    for category in proposed.categories() {
        if !codes.contains(&category.code) {
            codes.push(category.code.clone());
        }
    }
    let before = by_category(current, &now);
    let after = by_category(proposed, &then);
    let categories = codes
        .into_iter()
        .map(|code| {
            let (invoices_now, amount_now) = before.get(&code).copied().unwrap_or_default();
            let (invoices_then, amount_then) = after.get(&code).copied().unwrap_or_default();
            WhatIfCategory {
                code,
                invoices_now,
                amount_now: Fen::from_fen(amount_now),
                invoices_then,
                amount_then: Fen::from_fen(amount_then),
            }
        })
        .collect();
    Ok(WhatIf {
        year,
        policy_id,
        invoices: batch.len() as u64,
        persons,
        total_now: now.summary.amount_total,
        total_then: then.summary.amount_total,
        persons_changed,
        categories,
        spells_left_out: left_out as u64,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

impl Store {
    /// Every stored policy version, the newest first.
    pub async fn policy_versions(&self) -> Result<Vec<PolicyVersion>, StoreError> {
        match &self.backend {
            Backend::Sqlite(pool) => sqlite_console::policy_versions(pool).await,
            Backend::Postgres(pool) => postgres_console::policy_versions(pool).await,
        }
    }

    /// What `proposed` would have granted on `year`'s stored bills against
    /// the policy in force (see the module's documentation). Stores
    /// nothing.
    pub async fn what_if(&self, year: i32, proposed: &Policy) -> Result<WhatIf, WhatIfError> {
        let Some((policy_id, current)) = self.policy_in_force().await? else {
            return Err(WhatIfError::NoPolicy);
        };
        let data = self.year_bills(year).await?;
        compare(year, policy_id, &current, proposed, data)
    }

    /// The clearings that ran, the newest first.
    pub async fn clearing_runs(&self) -> Result<Vec<ClearingRun>, StoreError> {
        match &self.backend {
            Backend::Sqlite(pool) => sqlite_console::clearing_runs(pool, None).await,
            Backend::Postgres(pool) => postgres_console::clearing_runs(pool, None).await,
        }
    }

    /// One clearing and its lines in the order it stored them, if it ran.
    pub async fn clearing_run(
        &self,
        id: i64,
    ) -> Result<Option<(ClearingRun, Vec<ClearingLineView>)>, StoreError> {
        let runs = match &self.backend {
            Backend::Sqlite(pool) => sqlite_console::clearing_runs(pool, Some(id)).await?,
            Backend::Postgres(pool) => postgres_console::clearing_runs(pool, Some(id)).await?,
        };
        let Some(run) = runs.into_iter().next() else {
            return Ok(None);
        };
        let lines = match &self.backend {
            Backend::Sqlite(pool) => sqlite_console::clearing_lines(pool, id).await?,
            Backend::Postgres(pool) => postgres_console::clearing_lines(pool, id).await?,
        };
        Ok(Some((run, lines)))
    }

    /// The lines of payment batch `batch` in the order made, persons and
    /// accounts masked; `None` when there is no such batch.
    pub async fn batch_lines(&self, batch: i64) -> Result<Option<Vec<BatchLineView>>, StoreError> {
        match &self.backend {
            Backend::Sqlite(pool) => sqlite_console::batch_lines(pool, batch).await,
            Backend::Postgres(pool) => postgres_console::batch_lines(pool, batch).await,
        }
    }

    /// Every member of staff, disabled ones too, by name.
    pub async fn staff_users(&self) -> Result<Vec<StaffListing>, StoreError> {
        match &self.backend {
            Backend::Sqlite(pool) => sqlite_console::staff_users(pool).await,
            Backend::Postgres(pool) => postgres_console::staff_users(pool).await,
        }
    }

    /// Every API key of hospitals, then of departments, each in the order
    /// made; who made each is read from the audit log (one `apikey.create`
    /// entry per key, written with it).
    pub async fn api_keys(&self) -> Result<Vec<KeyListing>, StoreError> {
        match &self.backend {
            Backend::Sqlite(pool) => sqlite_console::api_keys(pool).await,
            Backend::Postgres(pool) => postgres_console::api_keys(pool).await,
        }
    }

    /// Revokes one API key, if it exists and is not revoked yet; whether it
    /// was. A hospital's key stops at once on this server (its cache of
    /// known keys is emptied).
    pub async fn revoke_key(&self, owner: KeyOwner, id: i64, actor: &str) -> Result<bool, StoreError> {
        let revoked = match &self.backend {
            Backend::Sqlite(pool) => sqlite_console::revoke_key(pool, owner, id, actor).await?,
            Backend::Postgres(pool) => postgres_console::revoke_key(pool, owner, id, actor).await?,
        };
        if revoked && owner == KeyOwner::Hospital {
            if let Ok(mut known) = self.known_keys.lock() {
                known.clear();
            }
        }
        Ok(revoked)
    }
}

macro_rules! console_backend {
    ($module:ident, $backend:ident, $Pool:ty, $snapshot:expr) => {
        mod $module {
            use std::collections::HashMap;

            use jiuzhu_core::Fen;
            use sqlx::Row as _;

            use super::{
                hex, BatchLineView, ClearingLineView, ClearingRun, KeyListing, KeyOwner, PolicyVersion, StaffListing,
            };
            use crate::database::$backend::{audit, begin_write};
            use crate::database::{json_string, now_text, Role, StoreError};

            type Pool = $Pool;

            pub(super) async fn policy_versions(pool: &Pool) -> Result<Vec<PolicyVersion>, StoreError> {
                let rows = sqlx::query(
                    "SELECT id, name, digest, loaded_at, loaded_by FROM policies ORDER BY id DESC",
                )
                .fetch_all(pool)
                .await?;
                let mut versions = Vec::with_capacity(rows.len());
                for (index, row) in rows.iter().enumerate() {
                    versions.push(PolicyVersion {
                        id: row.try_get("id")?,
                        name: row.try_get("name")?,
                        digest: hex(&row.try_get::<Vec<u8>, _>("digest")?),
                        loaded_at: row.try_get("loaded_at")?,
                        loaded_by: row.try_get("loaded_by")?,
                        in_force: index == 0,
                    });
                }
                Ok(versions)
            }

            pub(super) async fn clearing_runs(pool: &Pool, only: Option<i64>) -> Result<Vec<ClearingRun>, StoreError> {
                let tally = |kind: &str, what: &str| {
                    format!(
                        "(SELECT CAST(COALESCE({what}, 0) AS BIGINT) FROM clearing_lines l \
                         WHERE l.clearing_id = c.id AND l.kind = '{kind}')"
                    )
                };
                let sql = format!(
                    "SELECT c.id, c.period, c.year, c.policy_id, c.started_at, c.finished_at, c.run_by, \
                     {} AS top_ups, {} AS top_up_total, {} AS recoveries, {} AS recovery_total \
                     FROM clearings c WHERE ($1 = 0 OR c.id = $1) ORDER BY c.id DESC",
                    tally("top_up", "COUNT(*)"),
                    tally("top_up", "SUM(l.amount)"),
                    tally("recovery", "COUNT(*)"),
                    tally("recovery", "SUM(l.amount)"),
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(only.unwrap_or(0))
                    .fetch_all(pool)
                    .await?;
                let mut runs = Vec::with_capacity(rows.len());
                for row in rows {
                    runs.push(ClearingRun {
                        id: row.try_get("id")?,
                        period: row.try_get("period")?,
                        year: row.try_get("year")?,
                        policy_id: row.try_get("policy_id")?,
                        started_at: row.try_get("started_at")?,
                        finished_at: row.try_get("finished_at")?,
                        run_by: row.try_get("run_by")?,
                        top_ups: row.try_get::<i64, _>("top_ups")? as u64,
                        top_up_total: Fen::from_fen(row.try_get("top_up_total")?),
                        recoveries: row.try_get::<i64, _>("recoveries")? as u64,
                        recovery_total: Fen::from_fen(row.try_get("recovery_total")?),
                    });
                }
                Ok(runs)
            }

            pub(super) async fn clearing_lines(pool: &Pool, id: i64) -> Result<Vec<ClearingLineView>, StoreError> {
                let rows = sqlx::query(
                    "SELECT p.resident_id_masked, l.year, l.granted, l.recomputed, l.invoices \
                     FROM clearing_lines l JOIN persons p ON p.person_key = l.person_key \
                     WHERE l.clearing_id = $1 ORDER BY l.id",
                )
                .bind(id)
                .fetch_all(pool)
                .await?;
                let mut lines = Vec::with_capacity(rows.len());
                for row in rows {
                    lines.push(ClearingLineView {
                        person_masked: row.try_get(0)?,
                        year: row.try_get(1)?,
                        granted: Fen::from_fen(row.try_get(2)?),
                        recomputed: Fen::from_fen(row.try_get(3)?),
                        invoices: row.try_get(4)?,
                    });
                }
                Ok(lines)
            }

            pub(super) async fn staff_users(pool: &Pool) -> Result<Vec<StaffListing>, StoreError> {
                let rows = sqlx::query(
                    "SELECT name, roles, created_at, created_by, disabled_at, disabled_by, disabled_reason, \
                     CASE WHEN password_hash IS NULL THEN 0 ELSE 1 END AS has_password \
                     FROM staff_users ORDER BY name",
                )
                .fetch_all(pool)
                .await?;
                let mut users = Vec::with_capacity(rows.len());
                for row in rows {
                    let roles: String = row.try_get("roles")?;
                    users.push(StaffListing {
                        name: row.try_get("name")?,
                        roles: roles.split(' ').filter_map(Role::parse).collect(),
                        created_at: row.try_get("created_at")?,
                        created_by: row.try_get("created_by")?,
                        disabled_at: row.try_get("disabled_at")?,
                        disabled_by: row.try_get("disabled_by")?,
                        disabled_reason: row.try_get("disabled_reason")?,
                        has_password: row.try_get::<i32, _>("has_password")? == 1,
                    });
                }
                Ok(users)
            }

            pub(super) async fn api_keys(pool: &Pool) -> Result<Vec<KeyListing>, StoreError> {
                let mut tx = pool.begin().await?;
                if let Some(statement) = $snapshot {
                    sqlx::raw_sql(statement).execute(&mut *tx).await?;
                }
                // Who made each key: the audit entries of its owner, in order.
                let mut makers: HashMap<String, Vec<String>> = HashMap::new();
                for row in sqlx::query(
                    "SELECT actor, subject FROM audit_log WHERE action = 'apikey.create' ORDER BY sequence",
                )
                .fetch_all(&mut *tx)
                .await?
                {
                    makers.entry(row.try_get(1)?).or_default().push(row.try_get(0)?);
                }
                for list in makers.values_mut() {
                    list.reverse();
                }
                let mut keys = Vec::new();
                for (owner, table, column) in [
                    (KeyOwner::Hospital, "api_keys", "hospital"),
                    (KeyOwner::Department, "department_keys", "department"),
                ] {
                    let sql = format!("SELECT id, {column}, created_at, revoked_at FROM {table} ORDER BY id");
                    for row in sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&mut *tx).await? {
                        let whose: String = row.try_get(1)?;
                        let created_by = makers
                            .get_mut(&format!("{} {whose}", owner.as_str()))
                            .and_then(Vec::pop)
                            .unwrap_or_default();
                        keys.push(KeyListing {
                            owner,
                            id: row.try_get(0)?,
                            whose,
                            created_at: row.try_get(2)?,
                            created_by,
                            revoked_at: row.try_get(3)?,
                        });
                    }
                }
                tx.commit().await?;
                Ok(keys)
            }

            pub(super) async fn batch_lines(
                pool: &Pool,
                batch: i64,
            ) -> Result<Option<Vec<BatchLineView>>, StoreError> {
                let mut tx = pool.begin().await?;
                if let Some(statement) = $snapshot {
                    sqlx::raw_sql(statement).execute(&mut *tx).await?;
                }
                let found = sqlx::query("SELECT id FROM payment_batches WHERE id = $1")
                    .bind(batch)
                    .fetch_optional(&mut *tx)
                    .await?;
                if found.is_none() {
                    return Ok(None);
                }
                let rows = sqlx::query(
                    "SELECT l.id, p.resident_id_masked, a.holder_name, a.account_masked, l.amount, l.status, l.reason \
                     FROM payment_lines l JOIN persons p ON p.person_key = l.person_key \
                     JOIN bank_accounts a ON a.id = l.bank_account_id \
                     WHERE l.batch_id = $1 ORDER BY l.id",
                )
                .bind(batch)
                .fetch_all(&mut *tx)
                .await?;
                let mut lines = Vec::with_capacity(rows.len());
                for row in rows {
                    lines.push(BatchLineView {
                        id: row.try_get(0)?,
                        person_masked: row.try_get(1)?,
                        holder_name: row.try_get(2)?,
                        account_masked: row.try_get(3)?,
                        amount: Fen::from_fen(row.try_get(4)?),
                        status: row.try_get(5)?,
                        reason: row.try_get(6)?,
                    });
                }
                tx.commit().await?;
                Ok(Some(lines))
            }

            pub(super) async fn revoke_key(
                pool: &Pool,
                owner: KeyOwner,
                id: i64,
                actor: &str,
            ) -> Result<bool, StoreError> {
                let (table, column) = match owner {
                    KeyOwner::Hospital => ("api_keys", "hospital"),
                    KeyOwner::Department => ("department_keys", "department"),
                };
                let mut tx = begin_write(pool).await?;
                let sql = format!(
                    "UPDATE {table} SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL RETURNING {column}"
                );
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(now_text())
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some(row) = row else {
                    return Ok(false);
                };
                let whose: String = row.try_get(0)?;
                let details = format!(
                    "{{\"{column}\":{},\"key_id\":{id},\"keys\":1}}",
                    json_string(&whose)
                );
                audit(&mut tx, actor, "apikey.revoke", &format!("{} {whose}", owner.as_str()), details).await?;
                tx.commit().await?;
                Ok(true)
            }
        }
    };
}

console_backend!(sqlite_console, sqlite, sqlx::SqlitePool, None::<&str>);
console_backend!(
    postgres_console,
    postgres,
    sqlx::PgPool,
    Some("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
);
