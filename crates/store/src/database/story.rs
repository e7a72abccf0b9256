//! The whole story of one person (`jiuzhu audit show --person ID`): every
//! version of their spells, every bill and its decision with the
//! explanation, reversals, what clearings changed and the lines they
//! made, commitment letters signed, applications and each change of their
//! state, bank accounts (masked) and payments, in the order they were
//! recorded. Reading it is itself recorded:
//! each read appends a `person.read` entry to the audit log, naming who
//! read whose record (masked) and why, before anything is returned.

use jiuzhu_core::ResidentId;

use super::{Backend, Store, StoreError};
use crate::crypto::Purpose;

/// What kind of step of a person's story an event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoryKind {
    /// A spell version as a department reported it.
    Spell,
    /// A bill decided (in real time, from the feed).
    Decision,
    /// A bill the hospital cancelled (冲正).
    Reversal,
    /// A clearing changed a bill's decision.
    Recomputed,
    /// A clearing's line: a top-up to pay or a recovery to review.
    ClearingLine,
    /// The commitment letter signed.
    Signature,
    /// A change of state of an application.
    Application,
    /// A bank account recorded.
    BankAccount,
    /// A payment line: made, paid or failed.
    Payment,
}

impl StoryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StoryKind::Spell => "spell",
            StoryKind::Decision => "decision",
            StoryKind::Reversal => "reversal",
            StoryKind::Recomputed => "recomputed",
            StoryKind::ClearingLine => "clearing",
            StoryKind::Signature => "signature",
            StoryKind::Application => "application",
            StoryKind::BankAccount => "bank_account",
            StoryKind::Payment => "payment",
        }
    }
}

/// One step of a person's story.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoryEvent {
    /// When it was recorded (RFC 3339, UTC).
    pub at: String,
    pub kind: StoryKind,
    /// One line: what happened.
    pub summary: String,
    /// The explanation, one sentence a line, where there is one.
    pub details: Vec<String>,
}

/// A person's record as staff reads it: the ID masked, the events in the
/// order they were recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonStory {
    pub masked_id: String,
    pub events: Vec<StoryEvent>,
}

impl Store {
    /// The story of `person`, or `None` if the store holds nothing of
    /// them. The read is written to the audit log first, as read by
    /// `actor` for `purpose`, whether or not the person is found.
    pub async fn person_story(
        &self,
        person: ResidentId,
        actor: &str,
        purpose: &str,
    ) -> Result<Option<PersonStory>, StoreError> {
        let key = self
            .keys
            .blind_index(Purpose::ResidentId, person.to_string().as_bytes())
            .to_vec();
        self.story_of_key(&key, &person.masked(), actor, purpose).await
    }

    /// [`Store::person_story`] of the person with the blind index `key`.
    pub(crate) async fn story_of_key(
        &self,
        key: &[u8],
        masked: &str,
        actor: &str,
        purpose: &str,
    ) -> Result<Option<PersonStory>, StoreError> {
        let mut story = match &self.backend {
            Backend::Sqlite(pool) => sqlite_story::read(pool, key, masked, actor, purpose).await?,
            Backend::Postgres(pool) => postgres_story::read(pool, key, masked, actor, purpose).await?,
        };
        if let Some(story) = &mut story {
            // Stable: events recorded at the same instant keep the order
            // they were read in (spells, bills, clearings).
            story.events.sort_by(|a, b| a.at.cmp(&b.at));
        }
        Ok(story)
    }
}

fn spell_summary(category: &str, from: &str, to: Option<&str>, source: &str, file: Option<&str>) -> String {
    let until = to.map_or_else(|| "open".to_owned(), str::to_owned);
    let file = file.map_or_else(String::new, |file| format!(", file {file}"));
    format!("spell {category} {from} to {until}, reported by {source}{file}")
}

macro_rules! story_backend {
    ($module:ident, $backend:ident, $Pool:ty) => {
        mod $module {
            use sqlx::Row as _;

            use super::{spell_summary, PersonStory, StoryEvent, StoryKind};
            use crate::database::$backend::{audit, begin_write};
            use crate::database::{json_string, StoreError};

            pub(super) async fn read(
                pool: &$Pool,
                key: &[u8],
                masked: &str,
                actor: &str,
                purpose: &str,
            ) -> Result<Option<PersonStory>, StoreError> {
                // The read is recorded and committed before anything is shown.
                let mut tx = begin_write(pool).await?;
                let details = format!("{{\"purpose\":{}}}", json_string(purpose));
                audit(&mut tx, actor, "person.read", &format!("person {masked}"), details).await?;
                tx.commit().await?;

                let mut read = pool.begin().await?;
                let found = sqlx::query("SELECT resident_id_masked FROM persons WHERE person_key = $1")
                    .bind(key)
                    .fetch_optional(&mut *read)
                    .await?;
                let Some(found) = found else {
                    return Ok(None);
                };
                let mut events = Vec::new();

                let spells = sqlx::query(
                    "SELECT s.id, s.category, s.valid_from, s.valid_to, s.source, s.recorded_at, s.superseded_by, \
                     i.file_name FROM spells s LEFT JOIN imports i ON i.id = s.import_id \
                     WHERE s.person_key = $1 ORDER BY s.id",
                )
                .bind(key)
                .fetch_all(&mut *read)
                .await?;
                for row in spells {
                    let category: String = row.try_get("category")?;
                    let from: String = row.try_get("valid_from")?;
                    let to: Option<String> = row.try_get("valid_to")?;
                    let source: String = row.try_get("source")?;
                    let file: Option<String> = row.try_get("file_name")?;
                    let superseded: Option<i64> = row.try_get("superseded_by")?;
                    let id: i64 = row.try_get("id")?;
                    let mut summary = spell_summary(&category, &from, to.as_deref(), &source, file.as_deref());
                    summary = format!("{summary} (#{id}");
                    summary.push_str(&match superseded {
                        Some(newer) => format!(", superseded by #{newer})"),
                        None => ", current)".to_owned(),
                    });
                    events.push(StoryEvent {
                        at: row.try_get("recorded_at")?,
                        kind: StoryKind::Spell,
                        summary,
                        details: Vec::new(),
                    });
                }

                let decisions = sqlx::query(
                    "SELECT d.invoice_no, d.kind, d.outcome, d.amount, a.response, d.decided_at, d.decided_by, \
                     i.hospital, i.service_date, i.settled_at, i.channel \
                     FROM decisions d JOIN invoices i ON i.invoice_no = d.invoice_no \
                     LEFT JOIN decision_responses a ON a.decision_id = d.id \
                     WHERE d.person_key = $1 ORDER BY d.id",
                )
                .bind(key)
                .fetch_all(&mut *read)
                .await?;
                for row in decisions {
                    let invoice_no: String = row.try_get("invoice_no")?;
                    let kind: String = row.try_get("kind")?;
                    let outcome: String = row.try_get("outcome")?;
                    let amount: i64 = row.try_get("amount")?;
                    let amount = jiuzhu_core::Fen::from_fen(amount);
                    let decided_by: String = row.try_get("decided_by")?;
                    let at: String = row.try_get("decided_at")?;
                    if kind == "reversal" {
                        events.push(StoryEvent {
                            at,
                            kind: StoryKind::Reversal,
                            summary: format!("bill {invoice_no} reversed by {decided_by}: its decision of {amount} given back"),
                            details: Vec::new(),
                        });
                        continue;
                    }
                    let hospital: String = row.try_get("hospital")?;
                    let service_date: String = row.try_get("service_date")?;
                    let settled_at: String = row.try_get("settled_at")?;
                    let channel: String = row.try_get("channel")?;
                    let response: Option<String> = row.try_get("response")?;
                    let response = response
                        .ok_or_else(|| StoreError::Damaged(format!("bill {invoice_no} has no stored answer")))?;
                    let details = serde_json::from_str::<jiuzhu_formats::json::SettlementResponse>(&response)
                        .map(|response| response.explanation.text)
                        .map_err(|error| StoreError::Damaged(format!("the answer of bill {invoice_no}: {error}")))?;
                    events.push(StoryEvent {
                        at,
                        kind: StoryKind::Decision,
                        summary: format!(
                            "bill {invoice_no} at {hospital}, served {service_date}, settled {settled_at}, \
                             decided via {channel} by {decided_by}: {outcome}, {amount}"
                        ),
                        details,
                    });
                }

                let changes = sqlx::query(
                    "SELECT c.invoice_no, c.outcome, c.amount, c.previous_amount, k.id, k.period, k.finished_at \
                     FROM clearing_invoices c JOIN clearings k ON k.id = c.clearing_id \
                     WHERE c.person_key = $1 ORDER BY c.clearing_id, c.invoice_no",
                )
                .bind(key)
                .fetch_all(&mut *read)
                .await?;
                for row in changes {
                    let invoice_no: String = row.try_get("invoice_no")?;
                    let outcome: String = row.try_get("outcome")?;
                    let amount = jiuzhu_core::Fen::from_fen(row.try_get("amount")?);
                    let previous = jiuzhu_core::Fen::from_fen(row.try_get("previous_amount")?);
                    let id: i64 = row.try_get("id")?;
                    let period: String = row.try_get("period")?;
                    events.push(StoryEvent {
                        at: row.try_get("finished_at")?,
                        kind: StoryKind::Recomputed,
                        summary: format!(
                            "clearing {period} (#{id}) recomputed bill {invoice_no}: {previous} became {amount} ({outcome})"
                        ),
                        details: Vec::new(),
                    });
                }

                let lines = sqlx::query(
                    "SELECT l.id, l.year, l.kind, l.amount, l.granted, l.recomputed, l.invoices, l.created_at, \
                     k.period FROM clearing_lines l JOIN clearings k ON k.id = l.clearing_id \
                     WHERE l.person_key = $1 ORDER BY l.id",
                )
                .bind(key)
                .fetch_all(&mut *read)
                .await?;
                for row in lines {
                    let kind: String = row.try_get("kind")?;
                    let year: i64 = row.try_get("year")?;
                    let amount = jiuzhu_core::Fen::from_fen(row.try_get("amount")?);
                    let granted = jiuzhu_core::Fen::from_fen(row.try_get("granted")?);
                    let recomputed = jiuzhu_core::Fen::from_fen(row.try_get("recomputed")?);
                    let invoices: String = row.try_get("invoices")?;
                    let period: String = row.try_get("period")?;
                    let id: i64 = row.try_get("id")?;
                    let what = if kind == "top_up" { "top-up to pay" } else { "recovery to review" };
                    events.push(StoryEvent {
                        at: row.try_get("created_at")?,
                        kind: StoryKind::ClearingLine,
                        summary: format!(
                            "clearing {period}, line {id}: {what} of {amount} for {year} (granted {granted}, \
                             owed {recomputed}; bills {invoices})"
                        ),
                        details: Vec::new(),
                    });
                }
                for row in sqlx::query(
                    "SELECT s.signed_at, s.channel, s.recorded_by, l.version FROM commitment_signatures s \
                     JOIN commitment_letters l ON l.id = s.letter_id WHERE s.person_key = $1 ORDER BY s.id",
                )
                .bind(key)
                .fetch_all(&mut *read)
                .await?
                {
                    let version: String = row.try_get("version")?;
                    let channel: String = row.try_get("channel")?;
                    let by: String = row.try_get("recorded_by")?;
                    events.push(StoryEvent {
                        at: row.try_get("signed_at")?,
                        kind: StoryKind::Signature,
                        summary: format!("commitment letter {version} signed via {channel} (recorded by {by})"),
                        details: Vec::new(),
                    });
                }

                for row in sqlx::query(
                    "SELECT e.application_id, e.state, e.at, e.actor, e.reason, \
                     (SELECT string_agg(b.invoice_no || ' ' || b.status, ', ') FROM (SELECT invoice_no, status \
                     FROM application_bills WHERE application_id = e.application_id ORDER BY line) b) AS bills \
                     FROM application_events e JOIN applications a ON a.id = e.application_id \
                     WHERE a.person_key = $1 ORDER BY e.id",
                )
                .bind(key)
                .fetch_all(&mut *read)
                .await?
                {
                    let id: i64 = row.try_get("application_id")?;
                    let state: String = row.try_get("state")?;
                    let actor: String = row.try_get("actor")?;
                    let reason: Option<String> = row.try_get("reason")?;
                    let bills: Option<String> = row.try_get("bills")?;
                    let mut details = Vec::new();
                    if state == "submitted" {
                        details.push(format!("bills: {}", bills.unwrap_or_default()));
                    }
                    let reason = reason.map_or_else(String::new, |reason| format!(": {reason}"));
                    events.push(StoryEvent {
                        at: row.try_get("at")?,
                        kind: StoryKind::Application,
                        summary: format!("application {id} {state} by {actor}{reason}"),
                        details,
                    });
                }

                for row in sqlx::query(
                    "SELECT bank, account_masked, recorded_at, recorded_by FROM bank_accounts \
                     WHERE person_key = $1 ORDER BY id",
                )
                .bind(key)
                .fetch_all(&mut *read)
                .await?
                {
                    let bank: String = row.try_get("bank")?;
                    let account: String = row.try_get("account_masked")?;
                    let by: String = row.try_get("recorded_by")?;
                    events.push(StoryEvent {
                        at: row.try_get("recorded_at")?,
                        kind: StoryKind::BankAccount,
                        summary: format!("bank account {bank} {account} recorded by {by}"),
                        details: Vec::new(),
                    });
                }

                for row in sqlx::query(
                    "SELECT l.id, l.batch_id, l.amount, l.status, l.reason, l.answered_at, b.created_at, \
                     (SELECT string_agg(p.reference, ' ') FROM (SELECT q.kind || ':' || q.reference AS reference \
                     FROM payment_items t JOIN payables q ON q.id = t.payable_id WHERE t.line_id = l.id \
                     ORDER BY q.id) p) AS paying \
                     FROM payment_lines l JOIN payment_batches b ON b.id = l.batch_id \
                     WHERE l.person_key = $1 ORDER BY l.id",
                )
                .bind(key)
                .fetch_all(&mut *read)
                .await?
                {
                    let id: i64 = row.try_get("id")?;
                    let batch: i64 = row.try_get("batch_id")?;
                    let amount = jiuzhu_core::Fen::from_fen(row.try_get("amount")?);
                    let status: String = row.try_get("status")?;
                    let paying: Option<String> = row.try_get("paying")?;
                    events.push(StoryEvent {
                        at: row.try_get("created_at")?,
                        kind: StoryKind::Payment,
                        summary: format!("payment batch {batch}, line {id}: {amount} to pay"),
                        details: vec![format!("for {}", paying.unwrap_or_default())],
                    });
                    if status != "pending" {
                        let reason: Option<String> = row.try_get("reason")?;
                        let reason = reason.filter(|reason| !reason.is_empty()).map_or_else(String::new, |reason| format!(": {reason}"));
                        events.push(StoryEvent {
                            at: row.try_get::<Option<String>, _>("answered_at")?.unwrap_or_default(),
                            kind: StoryKind::Payment,
                            summary: format!("payment batch {batch}, line {id}: {amount} {status} by the bank{reason}"),
                            details: Vec::new(),
                        });
                    }
                }
                read.commit().await?;
                Ok(Some(PersonStory {
                    masked_id: found.try_get("resident_id_masked")?,
                    events,
                }))
            }
        }
    };
}

story_backend!(sqlite_story, sqlite, sqlx::SqlitePool);
story_backend!(postgres_story, postgres, sqlx::PgPool);
