//! The hospitals' settlement API (`/api/v1/settlements`), health and
//! metrics. Every handler of the API authenticates the caller by its API key
//! first; no request body is logged, and no response carries a resident ID.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use jiuzhu_core::InvoiceNo;
use jiuzhu_formats::json::{parse_settlement_request, SettlementResponse};
use jiuzhu_store::Settled;
use serde::Serialize;

use crate::error::ApiError;
use crate::AppState;

/// Set to `true` on the answer to a request that repeated an earlier one.
pub const REPLAYED_HEADER: &str = "jiuzhu-replayed";

/// Keys are far shorter; a longer header is refused without a look-up.
const LONGEST_API_KEY: usize = 256;

/// The hospital whose API key came with the request.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    hospital: String,
}

impl Caller {
    fn actor(&self) -> String {
        format!("hospital:{}", self.hospital)
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Caller, ApiError> {
        let key = bearer_key(parts)?;
        let hospital = state
            .store
            .hospital_for_key(key)
            .await?
            .ok_or(ApiError::Unauthorized)?;
        Ok(Caller { hospital })
    }
}

/// The key of `Authorization: Bearer <key>`; a missing header, another
/// scheme or a key that cannot be one is refused without a look-up.
pub(crate) fn bearer_key(parts: &Parts) -> Result<&str, ApiError> {
    let value = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .ok_or(ApiError::Unauthorized)?;
    let (scheme, key) = value.split_once(' ').ok_or(ApiError::Unauthorized)?;
    let key = key.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || key.is_empty() || key.len() > LONGEST_API_KEY {
        return Err(ApiError::Unauthorized);
    }
    Ok(key)
}

/// A stored settlement: the response as first answered, and whether the
/// hospital has since reversed it.
#[derive(Debug, Serialize)]
pub(crate) struct StoredSettlement {
    #[serde(flatten)]
    response: SettlementResponse,
    reversed: bool,
}

impl From<Settled> for StoredSettlement {
    fn from(settled: Settled) -> StoredSettlement {
        StoredSettlement {
            response: settled.response,
            reversed: settled.reversed,
        }
    }
}

/// `POST /api/v1/settlements`: settles one invoice in real time.
pub(crate) async fn settle(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let answer = settle_answer(&state, caller, body).await;
    state.metrics.observe_settlement(started.elapsed());
    match answer {
        Ok(settled) => {
            if settled.replayed {
                state.metrics.replayed();
            } else {
                state.metrics.settled(&settled.response.outcome);
            }
            let mut response = Json(&settled.response).into_response();
            if settled.replayed {
                response.headers_mut().insert(
                    HeaderName::from_static(REPLAYED_HEADER),
                    HeaderValue::from_static("true"),
                );
            }
            response
        }
        Err(error) => {
            state.metrics.refused(error.status_code().as_u16());
            error.into_response()
        }
    }
}

async fn settle_answer(
    state: &AppState,
    caller: Result<Caller, ApiError>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Settled, ApiError> {
    let caller = caller?;
    let body = body.map_err(|rejection| body_error(rejection, state.max_body_bytes))?;
    let invoice = parse_settlement_request(&body).map_err(ApiError::Invalid)?;
    let settled = state
        .store
        .settle(&caller.hospital, &invoice, &caller.actor())
        .await?;
    tracing::info!(
        hospital = %caller.hospital,
        invoice_no = %invoice.invoice_no,
        outcome = %settled.response.outcome,
        replayed = settled.replayed,
        "settled"
    );
    Ok(settled)
}

pub(crate) fn body_error(rejection: BytesRejection, limit_bytes: usize) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::TooLarge { limit_bytes }
    } else {
        ApiError::UnreadableBody
    }
}

/// `GET /api/v1/settlements/{invoice_no}`: the caller's own settlement.
pub(crate) async fn settlement(
    State(state): State<AppState>,
    caller: Caller,
    invoice_no: Result<Path<String>, PathRejection>,
) -> Result<Json<StoredSettlement>, ApiError> {
    let invoice_no = invoice_number(invoice_no)?;
    let settled = state
        .store
        .settlement(&caller.hospital, &invoice_no)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(settled.into()))
}

/// `POST /api/v1/settlements/{invoice_no}/reversal`: the hospital cancelled
/// the bill (冲正).
pub(crate) async fn reverse(
    State(state): State<AppState>,
    caller: Caller,
    invoice_no: Result<Path<String>, PathRejection>,
) -> Result<Json<StoredSettlement>, ApiError> {
    let invoice_no = invoice_number(invoice_no)?;
    let settled = state
        .store
        .reverse(&caller.hospital, &invoice_no, &caller.actor())
        .await?;
    state.metrics.reversed();
    tracing::info!(hospital = %caller.hospital, invoice_no = %invoice_no, "reversed");
    Ok(Json(settled.into()))
}

/// A path's invoice number; one that cannot be valid names no settlement.
fn invoice_number(path: Result<Path<String>, PathRejection>) -> Result<InvoiceNo, ApiError> {
    let Path(text) = path.map_err(|_| ApiError::NotFound)?;
    InvoiceNo::parse(&text).map_err(|_| ApiError::NotFound)
}

/// `GET /healthz`: `ok` when the database answers.
pub(crate) async fn healthz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    match state.store.policy_in_force().await {
        Ok(_) => (StatusCode::OK, "ok"),
        Err(error) => {
            tracing::warn!(cause = %crate::error::mask_id_numbers(&error.to_string()), "health check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
        }
    }
}

/// `GET /metrics`: Prometheus' text format.
pub(crate) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        state.metrics.render(state.store.write_stats())
            + &crate::metrics::render_notifications(state.store.notification_stats()),
    )
}

/// `GET /api/v1/openapi.json`.
pub(crate) async fn openapi() -> Json<serde_json::Value> {
    Json(crate::openapi::document())
}
