//! The review of recoveries (追回): a clearing's recovery line says a
//! person was granted more than the spec grants them now (a spell ended
//! earlier, a bill reversed after the bank paid it). A reviewer decides,
//! with a reason, to recover it from the person or to waive it; a line to
//! recover is then marked repaid when the person has paid it back. Each
//! step is a row of `recovery_reviews` (append-only) and an audit entry.

use jiuzhu_core::Fen;

use super::applications::{ApplicationError, Role};
use super::{Backend, Store};

/// Where a recovery line stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryStatus {
    /// Waiting for a reviewer.
    ToReview,
    /// To be recovered from the person.
    ToRecover,
    /// Waived by a reviewer.
    Waived,
    /// Repaid by the person.
    Repaid,
}

impl RecoveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RecoveryStatus::ToReview => "to_review",
            RecoveryStatus::ToRecover => "to_recover",
            RecoveryStatus::Waived => "waived",
            RecoveryStatus::Repaid => "repaid",
        }
    }
}

/// A reviewer's verdict on a recovery line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryVerdict {
    Recover,
    Waive,
}

/// A clearing's recovery line and where it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryLine {
    pub id: i64,
    pub person_masked: String,
    pub year: i64,
    pub amount: Fen,
    pub granted: Fen,
    pub recomputed: Fen,
    /// The invoices whose amounts changed, separated by spaces.
    pub invoices: String,
    pub period: String,
    pub created_at: String,
    pub status: RecoveryStatus,
    /// Each step after the clearing: verdict, reason, when, by whom.
    pub steps: Vec<(String, String, String, String)>,
}

impl Store {
    /// Every recovery line, oldest first (reviewers and auditors).
    pub async fn recoveries(&self, actor: &str) -> Result<Vec<RecoveryLine>, ApplicationError> {
        if self.require(actor, Role::Reviewer).await.is_err() {
            self.require(actor, Role::Auditor).await?;
        }
        Ok(match &self.backend {
            Backend::Sqlite(pool) => sqlite_recoveries::lines(pool, None).await?,
            Backend::Postgres(pool) => postgres_recoveries::lines(pool, None).await?,
        })
    }

    /// A reviewer's verdict on a recovery line waiting for review.
    pub async fn review_recovery(
        &self,
        line: i64,
        verdict: RecoveryVerdict,
        reason: &str,
        actor: &str,
    ) -> Result<RecoveryLine, ApplicationError> {
        self.require(actor, Role::Reviewer).await?;
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(ApplicationError::ReasonRequired);
        }
        let step = match verdict {
            RecoveryVerdict::Recover => "recover",
            RecoveryVerdict::Waive => "waive",
        };
        match &self.backend {
            Backend::Sqlite(pool) => sqlite_recoveries::step(pool, line, step, reason, actor).await,
            Backend::Postgres(pool) => postgres_recoveries::step(pool, line, step, reason, actor).await,
        }
    }

    /// Records that the person repaid a line to recover (`reference`: the
    /// bank's or the cashier's reference); approvers, who handle money.
    pub async fn record_repayment(
        &self,
        line: i64,
        reference: &str,
        actor: &str,
    ) -> Result<RecoveryLine, ApplicationError> {
        self.require(actor, Role::Approver).await?;
        let reference = reference.trim();
        if reference.is_empty() {
            return Err(ApplicationError::ReasonRequired);
        }
        match &self.backend {
            Backend::Sqlite(pool) => sqlite_recoveries::step(pool, line, "repaid", reference, actor).await,
            Backend::Postgres(pool) => {
                postgres_recoveries::step(pool, line, "repaid", reference, actor).await
            }
        }
    }
}

macro_rules! recoveries_backend {
    ($module:ident, $backend:ident, $Pool:ty, $Db:ty) => {
        mod $module {
            use jiuzhu_core::Fen;
            use sqlx::Row as _;

            use super::{RecoveryLine, RecoveryStatus};
            use crate::database::applications::ApplicationError;
            use crate::database::$backend::{audit, begin_write};
            use crate::database::{json_string, now_text, StoreError};

            type Pool = $Pool;

            async fn read(
                executor: &mut <$Db as sqlx::Database>::Connection,
                line: Option<i64>,
            ) -> Result<Vec<RecoveryLine>, StoreError> {
                let rows = match line {
                    Some(line) => {
                        sqlx::query(
                            "SELECT l.id, p.resident_id_masked, l.year, l.amount, l.granted, l.recomputed, l.invoices, \
                             k.period, l.created_at FROM clearing_lines l JOIN clearings k ON k.id = l.clearing_id \
                             JOIN persons p ON p.person_key = l.person_key WHERE l.kind = 'recovery' AND l.id = $1",
                        )
                        .bind(line)
                        .fetch_all(&mut *executor)
                        .await?
                    }
                    None => {
                        sqlx::query(
                            "SELECT l.id, p.resident_id_masked, l.year, l.amount, l.granted, l.recomputed, l.invoices, \
                             k.period, l.created_at FROM clearing_lines l JOIN clearings k ON k.id = l.clearing_id \
                             JOIN persons p ON p.person_key = l.person_key WHERE l.kind = 'recovery' ORDER BY l.id",
                        )
                        .fetch_all(&mut *executor)
                        .await?
                    }
                };
                let mut lines = Vec::with_capacity(rows.len());
                for row in rows {
                    let id: i64 = row.try_get(0)?;
                    let mut steps = Vec::new();
                    let mut status = RecoveryStatus::ToReview;
                    for step in sqlx::query(
                        "SELECT verdict, reason, at, actor FROM recovery_reviews WHERE line_id = $1 ORDER BY id",
                    )
                    .bind(id)
                    .fetch_all(&mut *executor)
                    .await?
                    {
                        let verdict: String = step.try_get(0)?;
                        status = match verdict.as_str() {
                            "recover" => RecoveryStatus::ToRecover,
                            "waive" => RecoveryStatus::Waived,
                            _ => RecoveryStatus::Repaid,
                        };
                        steps.push((verdict, step.try_get(1)?, step.try_get(2)?, step.try_get(3)?));
                    }
                    lines.push(RecoveryLine {
                        id,
                        person_masked: row.try_get(1)?,
                        year: row.try_get(2)?,
                        amount: Fen::from_fen(row.try_get(3)?),
                        granted: Fen::from_fen(row.try_get(4)?),
                        recomputed: Fen::from_fen(row.try_get(5)?),
                        invoices: row.try_get(6)?,
                        period: row.try_get(7)?,
                        created_at: row.try_get(8)?,
                        status,
                        steps,
                    });
                }
                Ok(lines)
            }

            pub(super) async fn lines(pool: &Pool, line: Option<i64>) -> Result<Vec<RecoveryLine>, StoreError> {
                let mut connection = pool.acquire().await?;
                read(&mut connection, line).await
            }

            pub(super) async fn step(
                pool: &Pool,
                line: i64,
                step: &str,
                reason: &str,
                actor: &str,
            ) -> Result<RecoveryLine, ApplicationError> {
                let mut tx = begin_write(pool).await?;
                let current = read(&mut *tx, Some(line)).await?;
                let Some(current) = current.into_iter().next() else {
                    return Err(ApplicationError::Invalid(format!("there is no recovery line {line}")));
                };
                let allowed = match step {
                    "repaid" => current.status == RecoveryStatus::ToRecover,
                    _ => current.status == RecoveryStatus::ToReview,
                };
                if !allowed {
                    return Err(ApplicationError::Refused(format!(
                        "recovery line {line} is {}: it cannot be marked {step}",
                        current.status.as_str()
                    )));
                }
                sqlx::query(
                    "INSERT INTO recovery_reviews (line_id, verdict, reason, at, actor) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(line)
                .bind(step)
                .bind(reason)
                .bind(now_text())
                .bind(actor)
                .execute(&mut *tx)
                .await?;
                let details = format!(
                    "{{\"person\":{},\"amount\":\"{}\",\"step\":\"{step}\",\"reason\":{}}}",
                    json_string(&current.person_masked),
                    current.amount,
                    json_string(reason)
                );
                audit(&mut tx, actor, "recovery.review", &format!("recovery line {line}"), details).await?;
                let updated = read(&mut *tx, Some(line)).await?;
                tx.commit().await?;
                updated
                    .into_iter()
                    .next()
                    .ok_or_else(|| ApplicationError::Invalid(format!("there is no recovery line {line}")))
            }
        }
    };
}

recoveries_backend!(sqlite_recoveries, sqlite, sqlx::SqlitePool, sqlx::Sqlite);
recoveries_backend!(postgres_recoveries, postgres, sqlx::PgPool, sqlx::Postgres);
