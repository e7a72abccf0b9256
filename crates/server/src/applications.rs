//! The applications API (救助申请): the commitment letter, signing it, the
//! prefill, submission with smart acceptance (智能受理), the review queue and
//! the reviewer's verdict (救助审核).
//!
//! Staff authenticate with their own token (`jiuzhu staff add`), never a
//! hospital's or a department's key. Resident IDs travel in request bodies,
//! never in paths, so that no log line holds one; answers show them
//! masked. Opening an application is a logged read of the person's record.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use jiuzhu_core::ResidentId;
use jiuzhu_formats::application::{parse_application_request, ApplicationLimits};
use jiuzhu_store::{
    AcceptanceSettings, ApplicationError, ApplicationSummary, ApplicationView, ApplyChannel, Role, StaffUser,
    Verdict,
};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{bearer_key, body_error};
use crate::error::ApiError;
use crate::AppState;

/// How applications are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApplicationSettings {
    /// A bill may be applied for until this many days after its service
    /// date (smart acceptance's `within_deadline`).
    pub filing_deadline_days: u32,
    /// Bills per application and bytes per scan.
    pub limits: ApplicationLimits,
    /// The largest submission, in bytes (scans travel in base64).
    pub max_body_bytes: usize,
}

impl Default for ApplicationSettings {
    fn default() -> ApplicationSettings {
        ApplicationSettings {
            filing_deadline_days: 365,
            limits: ApplicationLimits::default(),
            max_body_bytes: 32 * 1024 * 1024,
        }
    }
}

/// The member of staff whose token came with the request.
#[derive(Debug, Clone)]
pub(crate) struct Staff(StaffUser);

impl FromRequestParts<AppState> for Staff {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Staff, ApiError> {
        let token = bearer_key(parts)?;
        let user = state
            .store
            .staff_for_token(token)
            .await?
            .ok_or(ApiError::Unauthorized)?;
        Ok(Staff(user))
    }
}

impl Staff {
    fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.iter().any(|role| self.0.has(*role)) {
            return Ok(());
        }
        let names: Vec<&str> = roles.iter().map(|role| role.as_str()).collect();
        Err(ApiError::Forbidden(format!(
            "{} does not have the role {} this needs",
            self.0.name,
            names.join(" or ")
        )))
    }
}

impl From<ApplicationError> for ApiError {
    fn from(error: ApplicationError) -> ApiError {
        match error {
            ApplicationError::NotFound(_) => ApiError::NotFound,
            ApplicationError::NoPolicy => ApiError::NoPolicy,
            ApplicationError::Store(error) => ApiError::from(error),
            ApplicationError::NotStaff(_)
            | ApplicationError::MissingRole { .. }
            | ApplicationError::SelfReview { .. } => ApiError::Forbidden(error.to_string()),
            ApplicationError::NoLetter
            | ApplicationError::NotSigned { .. }
            | ApplicationError::LetterChanged { .. }
            | ApplicationError::NotInReview { .. }
            | ApplicationError::NothingToDecide(_)
            | ApplicationError::Refused(_) => ApiError::Refusal(error.to_string()),
            ApplicationError::UnknownPerson => ApiError::BadParameter {
                field: "person_id",
                message: error.to_string(),
            },
            ApplicationError::ReasonRequired => ApiError::BadParameter {
                field: "reason",
                message: error.to_string(),
            },
            ApplicationError::Invalid(message) => ApiError::BadParameter {
                field: "body",
                message,
            },
        }
    }
}

fn money(fen: jiuzhu_core::Fen) -> String {
    fen.to_string()
}

fn summary_json(summary: &ApplicationSummary) -> Value {
    json!({
        "id": summary.id,
        "person": summary.person_masked,
        "state": summary.state.as_str(),
        "channel": summary.channel,
        "entered_by": summary.entered_by,
        "submitted_at": summary.submitted_at,
        "bills": summary.bills,
        "findings": summary.findings,
        "in_scope_self_pay": money(summary.in_scope_self_pay),
    })
}

fn view_json(view: &ApplicationView) -> Value {
    let bills: Vec<Value> = view
        .bills
        .iter()
        .map(|bill| {
            json!({
                "line": bill.line,
                "invoice_no": bill.invoice_no,
                "hospital": bill.hospital,
                "visit_type": bill.visit_type,
                "service_date": bill.service_date,
                "settled_at": bill.settled_at,
                "total": money(bill.amounts[0]),
                "fund_paid": money(bill.amounts[1]),
                "in_scope_self_pay": money(bill.amounts[2]),
                "out_of_scope_self_pay": money(bill.amounts[3]),
                "scan": bill.scan.as_ref().map(|(media_type, bytes, sha256)| json!({
                    "media_type": media_type, "bytes": bytes, "sha256": sha256,
                })),
                "status": bill.status,
                "outcome": bill.decision.as_ref().map(|(outcome, _)| outcome),
                "amount": bill.decision.as_ref().map(|(_, amount)| money(*amount)),
            })
        })
        .collect();
    let checks: Vec<Value> = view
        .checks
        .iter()
        .map(|check| json!({"line": check.line, "check": check.name, "passed": check.passed, "detail": check.detail}))
        .collect();
    let events: Vec<Value> = view
        .events
        .iter()
        .map(|event| json!({"state": event.state, "at": event.at, "actor": event.actor, "reason": event.reason}))
        .collect();
    let mut value = summary_json(&view.summary);
    value["bills"] = Value::Array(bills);
    value["checks"] = Value::Array(checks);
    value["findings"] = Value::from(view.findings().count());
    value["events"] = Value::Array(events);
    value
}

/// A JSON body of a few string fields, each problem named.
fn fields<const N: usize>(
    body: Result<Bytes, BytesRejection>,
    limit_bytes: usize,
    names: [&'static str; N],
    required: usize,
) -> Result<[Option<String>; N], ApiError> {
    let body = body.map_err(|rejection| body_error(rejection, limit_bytes))?;
    let value: Value = serde_json::from_slice(&body).map_err(|error| ApiError::BadParameter {
        field: "body",
        message: format!("is not valid JSON: {error}"),
    })?;
    let Value::Object(object) = value else {
        return Err(ApiError::BadParameter {
            field: "body",
            message: "is not a JSON object".into(),
        });
    };
    if let Some(key) = object.keys().find(|key| !names.contains(&key.as_str())) {
        return Err(ApiError::BadParameter {
            field: "body",
            message: format!("{key} is not a field here; the fields are {}", names.join(", ")),
        });
    }
    let mut found: [Option<String>; N] = std::array::from_fn(|_| None);
    for (index, name) in names.iter().enumerate() {
        match object.get(*name) {
            Some(Value::String(text)) => found[index] = Some(text.clone()),
            Some(_) => {
                return Err(ApiError::BadParameter {
                    field: name,
                    message: "is not a JSON string".into(),
                });
            }
            None if index < required => {
                return Err(ApiError::BadParameter {
                    field: name,
                    message: "is missing".into(),
                });
            }
            None => {}
        }
    }
    Ok(found)
}

fn person(text: &str) -> Result<ResidentId, ApiError> {
    ResidentId::parse(text).map_err(|error| ApiError::BadParameter {
        field: "person_id",
        message: error.to_string(),
    })
}

fn channel(text: Option<&str>) -> Result<ApplyChannel, ApiError> {
    match text {
        None => Ok(ApplyChannel::Counter),
        Some(text) => ApplyChannel::parse(text).ok_or_else(|| ApiError::BadParameter {
            field: "channel",
            message: format!("{text:?} is not a channel; the channels are web, phone and counter"),
        }),
    }
}

/// `GET /api/v1/commitment-letter`: the current letter, for anyone to read.
pub(crate) async fn letter(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let letter = state.store.current_letter().await?.ok_or(ApiError::NotFound)?;
    Ok(Json(json!({
        "version": letter.version,
        "text": letter.body,
        "sha256": letter.sha256,
        "published_at": letter.published_at,
    })))
}

/// `POST /api/v1/commitment-signatures`: `{"person_id", "sha256",
/// "channel"}`, the person signs the letter whose text has that hash.
pub(crate) async fn sign(
    State(state): State<AppState>,
    staff: Staff,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let [person_id, sha256, channel_name] =
        fields(body, state.max_body_bytes, ["person_id", "sha256", "channel"], 2)?;
    let person = person(person_id.as_deref().unwrap_or_default())?;
    let channel = channel(channel_name.as_deref())?;
    let signature = state
        .store
        .sign_letter(
            person,
            sha256.as_deref().unwrap_or_default(),
            channel,
            &staff.0.name,
        )
        .await?;
    Ok(Json(json!({
        "person": person.masked(),
        "version": signature.letter_version,
        "sha256": signature.sha256,
        "channel": signature.channel,
        "signed_at": signature.signed_at,
    })))
}

/// `POST /api/v1/applications/prefill`: `{"person_id"}`, what the bureau
/// knows of the person. A logged read of their record.
pub(crate) async fn prefill(
    State(state): State<AppState>,
    staff: Staff,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let [person_id] = fields(body, state.max_body_bytes, ["person_id"], 1)?;
    let person = person(person_id.as_deref().unwrap_or_default())?;
    let prefill = state.store.application_prefill(person, &staff.0.name).await?;
    let spells: Vec<Value> = prefill
        .spells
        .iter()
        .map(|(category, from, to, source)| json!({"category": category, "valid_from": from, "valid_to": to, "source": source}))
        .collect();
    let bills: Vec<Value> = prefill
        .bills
        .iter()
        .map(|bill| {
            json!({
                "invoice_no": bill.invoice_no, "hospital": bill.hospital, "service_date": bill.service_date,
                "total": money(bill.total), "channel": bill.channel, "outcome": bill.outcome,
                "amount": money(bill.amount),
            })
        })
        .collect();
    Ok(Json(json!({
        "person": prefill.person_masked,
        "spells": spells,
        "letter": prefill.letter.as_ref().map(|(version, sha256)| json!({"version": version, "sha256": sha256})),
        "signed_current_letter": prefill.signed_current_letter,
        "bank_account": prefill.bank_account.as_ref().map(|(holder, bank, account)| json!({
            "holder": holder, "bank": bank, "account": account,
        })),
        "bills": bills,
        "applications": prefill.applications.iter().map(summary_json).collect::<Vec<_>>(),
    })))
}

/// `POST /api/v1/applications`: one submission (see
/// `jiuzhu_formats::application`), entered at the counter by the caller.
/// Answered with the application, its checks and its state: `decided` when
/// clean, `needs_review` otherwise.
pub(crate) async fn submit(
    State(state): State<AppState>,
    staff: Staff,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|rejection| body_error(rejection, state.applications.max_body_bytes))?;
    let request = parse_application_request(&body, state.applications.limits).map_err(ApiError::Invalid)?;
    let settings = AcceptanceSettings {
        filing_deadline_days: state.applications.filing_deadline_days,
        today: None,
    };
    let view = state
        .store
        .submit_application(&request, ApplyChannel::Counter, &staff.0.name, settings)
        .await?;
    tracing::info!(
        application = view.summary.id,
        state = view.summary.state.as_str(),
        findings = view.summary.findings,
        "application submitted"
    );
    Ok((axum::http::StatusCode::CREATED, Json(view_json(&view))).into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct QueueQuery {
    state: Option<String>,
}

/// `GET /api/v1/applications?state=needs_review`: the review queue, oldest
/// first (reviewers).
pub(crate) async fn queue(
    State(state): State<AppState>,
    staff: Staff,
    query: Result<Query<QueueQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|error| ApiError::BadParameter {
        field: "query",
        message: error.body_text(),
    })?;
    if let Some(other) = query.state.as_deref().filter(|state| *state != "needs_review") {
        return Err(ApiError::BadParameter {
            field: "state",
            message: format!("{other:?}: only the queue of needs_review is listed here"),
        });
    }
    staff.require(&[Role::Reviewer])?;
    let queue = state.store.review_queue(&staff.0.name).await?;
    Ok(Json(
        json!({"applications": queue.iter().map(summary_json).collect::<Vec<_>>()}),
    ))
}

fn application_id(path: Result<Path<String>, PathRejection>) -> Result<i64, ApiError> {
    let Path(text) = path.map_err(|_| ApiError::NotFound)?;
    text.parse::<i64>().map_err(|_| ApiError::NotFound)
}

#[derive(Debug, Deserialize)]
pub(crate) struct ReadQuery {
    purpose: Option<String>,
}

/// `GET /api/v1/applications/{id}`: an application with its bills, checks
/// and history, and the person's whole story (`history`: spells, bills,
/// other applications, payments; reviewers and auditors); a logged read.
pub(crate) async fn application(
    State(state): State<AppState>,
    staff: Staff,
    id: Result<Path<String>, PathRejection>,
    query: Query<ReadQuery>,
) -> Result<Json<Value>, ApiError> {
    staff.require(&[Role::Reviewer, Role::Auditor])?;
    let id = application_id(id)?;
    let purpose = query.purpose.clone().unwrap_or_else(|| "review".to_owned());
    let (view, story) = state.store.open_application(id, &staff.0.name, &purpose).await?;
    let mut value = view_json(&view);
    value["history"] = Value::Array(
        story
            .events
            .iter()
            .map(|event| json!({"at": event.at, "kind": event.kind.as_str(), "summary": event.summary, "details": event.details}))
            .collect(),
    );
    Ok(Json(value))
}

/// `GET /api/v1/applications/{id}/bills/{line}/scan`: a bill's scan
/// (reviewers and auditors).
pub(crate) async fn scan(
    State(state): State<AppState>,
    staff: Staff,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    staff.require(&[Role::Reviewer, Role::Auditor])?;
    let Path((id, line)) = path.map_err(|_| ApiError::NotFound)?;
    let (Ok(id), Ok(line)) = (id.parse::<i64>(), line.parse::<u32>()) else {
        return Err(ApiError::NotFound);
    };
    let (media_type, bytes) = state
        .store
        .application_scan(id, line)
        .await?
        .ok_or(ApiError::NotFound)?;
    let content_type =
        HeaderValue::from_str(&media_type).map_err(|error| ApiError::Internal(error.to_string()))?;
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment"),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// `POST /api/v1/applications/{id}/review`: `{"verdict": "approve" |
/// "reject", "reason"}` (reviewers, not the one who entered it).
pub(crate) async fn review(
    State(state): State<AppState>,
    staff: Staff,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = application_id(id)?;
    let [verdict, reason] = fields(body, state.max_body_bytes, ["verdict", "reason"], 2)?;
    let verdict = match verdict.as_deref() {
        Some("approve") => Verdict::Approve,
        Some("reject") => Verdict::Reject,
        other => {
            return Err(ApiError::BadParameter {
                field: "verdict",
                message: format!(
                    "{:?} is not a verdict; send approve or reject",
                    other.unwrap_or_default()
                ),
            })
        }
    };
    staff.require(&[Role::Reviewer])?;
    let view = state
        .store
        .review_application(id, verdict, reason.as_deref().unwrap_or_default(), &staff.0.name)
        .await?;
    Ok(Json(view_json(&view)))
}
