//! The departments' data-sharing API (`/api/v1/feeds/…`): departments push
//! their files and pull back the decisions about the persons they reported.
//! Every route authenticates a department key (`jiuzhu apikey create
//! --department NAME`); a hospital's key opens none of them, and a
//! department's key opens none of the hospitals' routes.
//!
//! - `POST /api/v1/feeds/spells`: a department's spells, as the body of a
//!   `spells.csv` (UTF-8 or GBK), an XLSX workbook, or JSON
//!   ([`jiuzhu_formats::feed_json`]). Their source is the key's department:
//!   a row's `source` must be that department or empty. Imported by
//!   [`jiuzhu_store::Store::import_spells`], as `jiuzhu import spells` does:
//!   the same body from the same department again is "already imported"
//!   and changes nothing.
//! - `POST /api/v1/feeds/invoices`: the insurance feed (免申即享), only with
//!   a key of [`INSURANCE_SETTLEMENT_DEPARTMENT`]: an `invoices.csv`, an XLSX
//!   workbook or JSON, imported by [`jiuzhu_store::Store::import_invoices`]
//!   as `jiuzhu import invoices` does.
//! - `GET /api/v1/feeds/decisions?since=CURSOR&limit=N`: the decisions and
//!   reversals about the persons the department reported, oldest first, a
//!   page at a time ([`jiuzhu_store::Store::decisions_since`]), with full
//!   resident IDs. There are no payments yet: disbursement comes later.
//!
//! A body with any bad row is refused whole with 422, every problem listed
//! with its line (for JSON, the row's position in `rows`) and column, and
//! nothing is stored. Reading a body runs off the async threads, and an
//! import, once begun, runs to its end in a task of its own even when the
//! request is cut off (by its time limit or the client): sending the same
//! body again then answers from what was stored.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::Json;
use jiuzhu_core::{Outcome, Policy};
use jiuzhu_formats::json::FieldError;
use jiuzhu_formats::{InvoiceRecord, Partitioned, Problem, Problems, SpellRow};
use jiuzhu_store::{
    DecisionPage, FeedError, FeedOptions, FeedReport, SharedDecision, SpellFile, SpellImport,
    DECISIONS_PAGE_DEFAULT, DECISIONS_PAGE_MAX, INSURANCE_SETTLEMENT_DEPARTMENT,
};
use serde::{Deserialize, Serialize};

use crate::api::{bearer_key, body_error};
use crate::error::{problem_fields, ApiError};
use crate::AppState;

/// The longest file name a push may be recorded under, in characters.
const LONGEST_FILE_NAME: usize = 255;

/// The department whose key came with the request.
#[derive(Debug, Clone)]
pub(crate) struct Department {
    name: String,
}

impl Department {
    /// Who acts, for the audit log.
    fn actor(&self) -> String {
        format!("department:{}", self.name)
    }
}

impl FromRequestParts<AppState> for Department {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Department, ApiError> {
        let key = bearer_key(parts)?;
        let name = state
            .store
            .department_for_key(key)
            .await?
            .ok_or(ApiError::Unauthorized)?;
        Ok(Department { name })
    }
}

/// A department key that may send the insurance feed: refused with 403
/// before the body is read.
#[derive(Debug, Clone)]
pub(crate) struct InsuranceSystem(Department);

impl FromRequestParts<AppState> for InsuranceSystem {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<InsuranceSystem, ApiError> {
        let department = Department::from_request_parts(parts, state).await?;
        if department.name != INSURANCE_SETTLEMENT_DEPARTMENT {
            return Err(ApiError::Forbidden(format!(
                "only a key of {INSURANCE_SETTLEMENT_DEPARTMENT} (the insurance settlement system) may send \
                 bills; this key is {}'s",
                department.name
            )));
        }
        Ok(InsuranceSystem(department))
    }
}

/// How a pushed body is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    /// `application/json`: [`jiuzhu_formats::feed_json`].
    Json,
    /// `text/csv` (UTF-8 or GBK).
    Csv,
    /// An XLSX workbook (its first sheet). The readers tell a workbook from
    /// CSV by its first bytes, so either type reads either.
    Xlsx,
}

const XLSX_TYPE: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

impl BodyKind {
    fn of(headers: &HeaderMap) -> Result<BodyKind, ApiError> {
        let given = headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .map(|essence| essence.trim().to_ascii_lowercase());
        match given.as_deref() {
            Some("application/json") => Ok(BodyKind::Json),
            Some("text/csv" | "application/csv") => Ok(BodyKind::Csv),
            Some(XLSX_TYPE | "application/octet-stream") => Ok(BodyKind::Xlsx),
            other => Err(ApiError::UnsupportedMediaType(format!(
                "{} given; send application/json, text/csv or {XLSX_TYPE}",
                other.map_or_else(|| "none".to_owned(), |given| format!("{given:?}"))
            ))),
        }
    }

    /// The name a push is recorded under when it names none.
    fn default_name(self, stem: &str) -> String {
        let extension = match self {
            BodyKind::Json => "json",
            BodyKind::Csv => "csv",
            BodyKind::Xlsx => "xlsx",
        };
        format!("{stem}.{extension}")
    }
}

/// `?file_name=`: what a CSV or XLSX push is recorded under (a JSON body
/// may name itself instead).
#[derive(Debug, Deserialize)]
pub(crate) struct FileQuery {
    file_name: Option<String>,
}

fn query_file_name(query: Result<Query<FileQuery>, QueryRejection>) -> Result<Option<String>, ApiError> {
    let Query(query) = query.map_err(|rejection| ApiError::BadParameter {
        field: "file_name",
        message: rejection.body_text(),
    })?;
    Ok(query.file_name)
}

/// 1 to 255 characters, no control characters.
fn check_file_name(name: &str) -> Result<(), ApiError> {
    let length = name.chars().count();
    let problem = if length == 0 {
        "is empty"
    } else if length > LONGEST_FILE_NAME {
        "is longer than 255 characters"
    } else if name.chars().any(char::is_control) {
        "holds a control character"
    } else {
        return Ok(());
    };
    Err(ApiError::BadParameter {
        field: "file_name",
        message: problem.to_owned(),
    })
}

/// The rows read well and the problems of the others, before the route's
/// own checks.
struct Read<T> {
    file_name: String,
    rows: Vec<T>,
    problems: Problems,
}

fn problems_of<T>(partitioned: &Partitioned<T>) -> Problems {
    let mut problems = Problems::new();
    for rejected in &partitioned.rejected {
        for problem in &rejected.problems {
            problems.push(problem.clone());
        }
    }
    problems
}

/// Reads a body of spells leniently: good rows and every problem.
fn read_spells(
    kind: BodyKind,
    named: Option<String>,
    body: &[u8],
    policy: &Policy,
) -> Result<Read<SpellRow>, ApiError> {
    if kind == BodyKind::Json {
        let read =
            jiuzhu_formats::read_spell_rows_json("body", body, Some(policy)).map_err(ApiError::Invalid)?;
        return Ok(Read {
            file_name: read
                .file_name
                .or(named)
                .unwrap_or_else(|| kind.default_name("spells")),
            rows: read.rows,
            problems: read.problems,
        });
    }
    let file_name = named.unwrap_or_else(|| kind.default_name("spells"));
    let partitioned =
        jiuzhu_formats::read_spells_partitioned(&file_name, body, Some(policy)).map_err(ApiError::Refused)?;
    let problems = problems_of(&partitioned);
    let rows = partitioned
        .good
        .into_iter()
        .map(|good| SpellRow {
            line: good.line,
            spell: good.row,
        })
        .collect();
    Ok(Read {
        file_name,
        rows,
        problems,
    })
}

/// Reads a body of bills leniently: good records and every problem.
fn read_invoices(
    kind: BodyKind,
    named: Option<String>,
    body: &[u8],
    known_visit_types: &[String],
) -> Result<Read<InvoiceRecord>, ApiError> {
    if kind == BodyKind::Json {
        let read = jiuzhu_formats::read_invoice_records_json("body", body, known_visit_types)
            .map_err(ApiError::Invalid)?;
        return Ok(Read {
            file_name: read
                .file_name
                .or(named)
                .unwrap_or_else(|| kind.default_name("invoices")),
            rows: read.rows,
            problems: read.problems,
        });
    }
    let file_name = named.unwrap_or_else(|| kind.default_name("invoices"));
    let partitioned = jiuzhu_formats::read_invoices_partitioned(&file_name, body, known_visit_types)
        .map_err(ApiError::Refused)?;
    let problems = problems_of(&partitioned);
    let rows = partitioned
        .good
        .into_iter()
        .map(|good| InvoiceRecord {
            line: good.line,
            invoice: good.row,
        })
        .collect();
    Ok(Read {
        file_name,
        rows,
        problems,
    })
}

/// A task of the runtime that failed (a panic): logged as internal.
fn joined(error: tokio::task::JoinError) -> ApiError {
    ApiError::Internal(format!("a task of the request failed: {error}"))
}

/// A department's spells, read, checked and ready to import.
struct SpellsToImport {
    file_name: String,
    digest: [u8; 32],
    rows: Vec<SpellRow>,
}

/// Reads and checks a body of spells from `source`: every problem of the
/// rows, and a `source` column naming another department, refuse it.
fn spells_to_import(
    kind: BodyKind,
    named: Option<String>,
    body: &[u8],
    policy: &Policy,
    source: &str,
) -> Result<SpellsToImport, ApiError> {
    let read = read_spells(kind, named, body, policy)?;
    check_file_name(&read.file_name)?;
    let mut problems = read.problems;
    for row in &read.rows {
        if let Some(named) = row.spell.source() {
            if named != source {
                problems.push(Problem::at(
                    &read.file_name,
                    row.line,
                    "source",
                    format!(
                        "is {named:?}, but the key is {source:?}'s: a department sends its own spells; \
                         leave source empty or write {source:?}"
                    ),
                ));
            }
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::Refused(problems.sorted_by_line()));
    }
    let digest = SpellFile::new(source, &read.file_name, body, &[]).digest;
    Ok(SpellsToImport {
        file_name: read.file_name,
        digest,
        rows: read.rows,
    })
}

/// `POST /api/v1/feeds/spells`: imports a department's spells.
pub(crate) async fn push_spells(
    State(state): State<AppState>,
    department: Department,
    query: Result<Query<FileQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<SpellsReport>, ApiError> {
    let kind = BodyKind::of(&headers)?;
    let named = query_file_name(query)?;
    let body = body.map_err(|rejection| body_error(rejection, state.feed_max_body_bytes))?;
    let Some((_, policy)) = state.store.policy_in_force().await? else {
        return Err(ApiError::NoPolicy);
    };
    let source = department.name.clone();
    let checked = {
        let source = source.clone();
        tokio::task::spawn_blocking(move || spells_to_import(kind, named, &body, &policy, &source))
            .await
            .map_err(joined)??
    };
    let store = state.store.clone();
    let actor = department.actor();
    let import = tokio::spawn(async move {
        let file = SpellFile {
            source: &source,
            file_name: &checked.file_name,
            digest: checked.digest,
            rows: &checked.rows,
        };
        let report = store.import_spells(&file, &actor).await;
        (report, checked.file_name, source)
    });
    let (report, file_name, source) = import.await.map_err(joined)?;
    let report = report.map_err(|error| match error {
        jiuzhu_store::StoreError::Refused(problems) => ApiError::Refused(problems),
        other => ApiError::from(other),
    })?;
    tracing::info!(
        department = %department.name,
        file = %file_name,
        rows = report.rows,
        added = report.added,
        changed = report.changed,
        already_imported = report.already_imported.is_some(),
        "spells pushed"
    );
    let answer = SpellsReport::new(file_name, source, report);
    state
        .metrics
        .feed_rows("spells", answer.rows, answer.added + answer.changed);
    Ok(Json(answer))
}

/// Imports a spells file a member of staff uploaded through the web page,
/// from `source`, as a push from that department is imported: every bad
/// row refuses the file whole ([`ApiError::Refused`], every problem named).
pub(crate) async fn import_uploaded_spells(
    state: &AppState,
    file_name: &str,
    body: Vec<u8>,
    source: &str,
    actor: &str,
) -> Result<SpellImport, ApiError> {
    if source.is_empty() {
        return Err(ApiError::BadParameter {
            field: "source",
            message: "is empty: name the department that reported the spells".into(),
        });
    }
    let Some((_, policy)) = state.store.policy_in_force().await? else {
        return Err(ApiError::NoPolicy);
    };
    let kind = if file_name.to_ascii_lowercase().ends_with(".xlsx") {
        BodyKind::Xlsx
    } else {
        BodyKind::Csv
    };
    let named = Some(file_name.to_owned());
    let checked = {
        let source = source.to_owned();
        tokio::task::spawn_blocking(move || spells_to_import(kind, named, &body, &policy, &source))
            .await
            .map_err(joined)??
    };
    let file = SpellFile {
        source,
        file_name: &checked.file_name,
        digest: checked.digest,
        rows: &checked.rows,
    };
    let actor = format!("staff:{actor}");
    let report = state
        .store
        .import_spells(&file, &actor)
        .await
        .map_err(|error| match error {
            jiuzhu_store::StoreError::Refused(problems) => ApiError::Refused(problems),
            other => ApiError::from(other),
        })?;
    tracing::info!(file = %checked.file_name, source, rows = report.rows, added = report.added, "spells uploaded");
    Ok(report)
}

/// What importing pushed spells did: [`SpellImport`] as JSON.
#[derive(Debug, Serialize)]
pub(crate) struct SpellsReport {
    file_name: String,
    source: String,
    rows: u64,
    added: u64,
    changed: u64,
    unchanged: u64,
    duplicates: u64,
    new_persons: u64,
    changed_persons: u64,
    ended_persons: u64,
    marked: u64,
    /// True when the same body from the same department was imported
    /// before: nothing changed, and the counts are zero.
    already_imported: bool,
    /// This import's record, or the earlier one's when already imported.
    import_id: Option<i64>,
    /// When already imported: that import.
    earlier: Option<EarlierImport>,
}

#[derive(Debug, Serialize)]
struct EarlierImport {
    file_name: String,
    imported_at: String,
    imported_by: String,
}

impl SpellsReport {
    fn new(file_name: String, source: String, report: SpellImport) -> SpellsReport {
        let earlier = report.already_imported.as_ref().map(|earlier| EarlierImport {
            file_name: earlier.file_name.clone(),
            imported_at: earlier.imported_at.clone(),
            imported_by: earlier.imported_by.clone(),
        });
        SpellsReport {
            file_name,
            source,
            rows: report.rows,
            added: report.added,
            changed: report.changed,
            unchanged: report.unchanged,
            duplicates: report.duplicates,
            new_persons: report.new_persons,
            changed_persons: report.changed_persons,
            ended_persons: report.ended_persons,
            marked: report.marked,
            already_imported: report.already_imported.is_some(),
            import_id: report
                .already_imported
                .as_ref()
                .map(|earlier| earlier.import_id)
                .or(report.import_id),
            earlier,
        }
    }
}

/// Reads and checks a body of bills: every problem refuses it.
fn invoices_to_import(
    kind: BodyKind,
    named: Option<String>,
    body: &[u8],
    known_visit_types: &[String],
) -> Result<(String, Vec<InvoiceRecord>), ApiError> {
    let read = read_invoices(kind, named, body, known_visit_types)?;
    check_file_name(&read.file_name)?;
    if !read.problems.is_empty() {
        return Err(ApiError::Refused(read.problems.sorted_by_line()));
    }
    Ok((read.file_name, read.rows))
}

/// `POST /api/v1/feeds/invoices`: imports the insurance feed.
pub(crate) async fn push_invoices(
    State(state): State<AppState>,
    InsuranceSystem(department): InsuranceSystem,
    query: Result<Query<FileQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<InvoicesReport>, ApiError> {
    let kind = BodyKind::of(&headers)?;
    let named = query_file_name(query)?;
    let body = body.map_err(|rejection| body_error(rejection, state.feed_max_body_bytes))?;
    let Some((_, policy)) = state.store.policy_in_force().await? else {
        return Err(ApiError::NoPolicy);
    };
    let known: Vec<String> = policy
        .visit_types()
        .iter()
        .map(|(name, _)| name.clone())
        .collect();
    let (file_name, records) =
        tokio::task::spawn_blocking(move || invoices_to_import(kind, named, &body, &known))
            .await
            .map_err(joined)??;
    let store = state.store.clone();
    let actor = department.actor();
    let import = tokio::spawn(async move {
        let report = store
            .import_invoices(&file_name, records, &actor, FeedOptions::default(), &|_| {})
            .await;
        (report, file_name)
    });
    let (report, file_name) = import.await.map_err(joined)?;
    let report = report.map_err(|error| match error {
        FeedError::Refused(problems) => ApiError::Refused(problems),
        FeedError::NoPolicy => ApiError::NoPolicy,
        FeedError::Store(error) => ApiError::from(error),
    })?;
    tracing::info!(
        department = %department.name,
        file = %file_name,
        rows = report.rows,
        decided = report.decided(),
        already_decided = report.already_decided,
        "invoices pushed"
    );
    let answer = InvoicesReport::new(file_name, &report);
    state.metrics.feed_rows("invoices", answer.rows, answer.decided);
    Ok(Json(answer))
}

/// What importing a pushed insurance feed did: [`FeedReport`] as JSON.
#[derive(Debug, Serialize)]
pub(crate) struct InvoicesReport {
    file_name: String,
    rows: u64,
    /// Bills decided and stored now.
    decided: u64,
    /// Of them, per outcome.
    outcomes: Outcomes,
    /// What they were granted, yuan.
    amount: String,
    persons_assisted: u64,
    /// Bills stored before (in real time or by an earlier feed), the same:
    /// not decided again.
    already_decided: u64,
    /// Lines repeating a bill of the same body: not stored again.
    duplicates: Vec<Duplicate>,
    /// Bills not stored because another channel stored a different bill
    /// under the number while this one was imported (or a new policy no
    /// longer maps the visit type); every other bill was.
    refused: Vec<FieldError>,
    transactions: u64,
}

#[derive(Debug, Serialize)]
struct Outcomes {
    assisted: u64,
    capped: u64,
    not_eligible: u64,
    no_rule: u64,
}

#[derive(Debug, Serialize)]
struct Duplicate {
    invoice_no: String,
    line: u64,
    first_line: u64,
}

impl InvoicesReport {
    fn new(file_name: String, report: &FeedReport) -> InvoicesReport {
        InvoicesReport {
            file_name,
            rows: report.rows,
            decided: report.decided(),
            outcomes: Outcomes {
                assisted: report.count(Outcome::Assisted),
                capped: report.count(Outcome::Capped),
                not_eligible: report.count(Outcome::NotEligible),
                no_rule: report.count(Outcome::NoRule),
            },
            amount: report.amount.to_string(),
            persons_assisted: report.persons_assisted,
            already_decided: report.already_decided,
            duplicates: report
                .duplicates
                .iter()
                .map(|duplicate| Duplicate {
                    invoice_no: duplicate.invoice_no.to_string(),
                    line: duplicate.line,
                    first_line: duplicate.first_line,
                })
                .collect(),
            refused: problem_fields(&report.refused),
            transactions: report.transactions,
        }
    }
}

/// `?since=CURSOR&limit=N`, both optional.
#[derive(Debug, Deserialize)]
pub(crate) struct DecisionsQuery {
    since: Option<String>,
    limit: Option<String>,
}

/// `GET /api/v1/feeds/decisions`: a page of the decisions about the
/// persons the department reported.
pub(crate) async fn decisions(
    State(state): State<AppState>,
    department: Department,
    query: Result<Query<DecisionsQuery>, QueryRejection>,
) -> Result<Json<DecisionsAnswer>, ApiError> {
    let Query(query) = query.map_err(|rejection| ApiError::BadParameter {
        field: "query",
        message: rejection.body_text(),
    })?;
    let since = match query.since.as_deref() {
        None | Some("") => 0,
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|since| *since >= 0 && text.bytes().all(|byte| byte.is_ascii_digit()))
            .ok_or_else(|| ApiError::BadParameter {
                field: "since",
                message: "is not a cursor this API returned (a next_cursor)".to_owned(),
            })?,
    };
    let limit = match query.limit.as_deref() {
        None | Some("") => DECISIONS_PAGE_DEFAULT,
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|limit| (1..=DECISIONS_PAGE_MAX).contains(limit))
            .ok_or_else(|| ApiError::BadParameter {
                field: "limit",
                message: format!("must be a whole number from 1 to {DECISIONS_PAGE_MAX}"),
            })?,
    };
    let page = state
        .store
        .decisions_since(&department.name, since, limit, &department.actor())
        .await?;
    tracing::info!(
        department = %department.name,
        since,
        decisions = page.decisions.len(),
        next_cursor = page.next_cursor,
        "decisions shared"
    );
    let answer = DecisionsAnswer::from(page);
    state
        .metrics
        .feed_rows("decisions", 0, answer.decisions.len() as u64);
    Ok(Json(answer))
}

/// A page of decisions as answered.
#[derive(Debug, Serialize)]
pub(crate) struct DecisionsAnswer {
    decisions: Vec<DecisionItem>,
    /// Opaque to clients: send it as `since` for the next page.
    next_cursor: String,
    has_more: bool,
}

/// One decision or reversal: the `results.csv` row (`formats.md`) with the
/// full resident ID, and what it was and when.
#[derive(Debug, Serialize)]
struct DecisionItem {
    kind: &'static str,
    invoice_no: String,
    person_id: String,
    year: i64,
    category: Option<String>,
    pool: Option<String>,
    base: String,
    deductible_applied: String,
    eligible: String,
    amount: String,
    outcome: String,
    policy_version: Option<String>,
    hospital: String,
    service_date: String,
    decided_at: String,
}

impl From<SharedDecision> for DecisionItem {
    fn from(decision: SharedDecision) -> DecisionItem {
        DecisionItem {
            kind: decision.kind.as_str(),
            invoice_no: decision.invoice_no,
            person_id: decision.person_id,
            year: decision.year,
            category: decision.category,
            pool: decision.pool,
            base: decision.base,
            deductible_applied: decision.deductible_applied,
            eligible: decision.eligible,
            amount: decision.amount,
            outcome: decision.outcome,
            policy_version: decision.policy_version,
            hospital: decision.hospital,
            service_date: decision.service_date,
            decided_at: decision.decided_at,
        }
    }
}

impl From<DecisionPage> for DecisionsAnswer {
    fn from(page: DecisionPage) -> DecisionsAnswer {
        DecisionsAnswer {
            decisions: page.decisions.into_iter().map(DecisionItem::from).collect(),
            next_cursor: page.next_cursor.to_string(),
            has_more: page.has_more,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn the_content_type_chooses_the_reader() {
        let kind = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(value).unwrap());
            BodyKind::of(&headers)
        };
        assert_eq!(kind("application/json").unwrap(), BodyKind::Json);
        assert_eq!(kind("Text/CSV; charset=GBK").unwrap(), BodyKind::Csv);
        assert_eq!(kind(XLSX_TYPE).unwrap(), BodyKind::Xlsx);
        assert_eq!(kind("application/octet-stream").unwrap(), BodyKind::Xlsx);
        assert!(matches!(
            kind("text/html"),
            Err(ApiError::UnsupportedMediaType(_))
        ));
        assert!(matches!(
            BodyKind::of(&HeaderMap::new()),
            Err(ApiError::UnsupportedMediaType(_))
        ));
    }

    #[test]
    fn a_file_name_is_plain_text_of_at_most_255_characters() {
        assert!(check_file_name("民政 2024-06.csv").is_ok());
        for bad in ["", "a\nb", &"x".repeat(256)] {
            assert!(check_file_name(bad).is_err(), "{bad:?}");
        }
    }
}
