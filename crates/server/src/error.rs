//! The one error type of the API: each refusal has its status and a JSON
//! body of the shape of [`FieldErrors`] (`error`, `message`, `fields`), so
//! that a hospital system reads every refusal the same way. A 5xx body is
//! generic; its cause is logged.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use jiuzhu_formats::json::{FieldError, FieldErrors, INVALID_REQUEST};
use jiuzhu_formats::Problems;
use jiuzhu_store::{SettleError, StoreError};
use serde::Serialize;
use thiserror::Error;

/// Why a request was refused.
#[derive(Debug, Error)]
pub enum ApiError {
    #[error("send an API key as `Authorization: Bearer <key>`; the key given is missing or not known")]
    Unauthorized,
    /// A body that is not a JSON object of invoice fields (400), or fields
    /// with invalid values (422).
    #[error("{0}")]
    Invalid(FieldErrors),
    /// Rows of a file sent to a feed are not valid (422): every problem,
    /// each with its line and column; nothing was stored.
    #[error("the file is refused; nothing was stored:\n{0}")]
    Refused(Problems),
    /// A query parameter or the file's name is not valid (400).
    #[error("{field}: {message}")]
    BadParameter { field: &'static str, message: String },
    #[error("the request's Content-Type is not one this route takes: {0}")]
    UnsupportedMediaType(String),
    /// The key is valid but may not do this (403).
    #[error("{0}")]
    Forbidden(String),
    #[error("visit type {0:?} is not one the policy knows")]
    UnknownVisitType(String),
    #[error("the invoice names another hospital than the API key's")]
    OtherHospital,
    #[error("no settlement of this invoice by your hospital")]
    NotFound,
    #[error("invoice {0} was already settled with a different body; nothing was changed")]
    Conflict(String),
    #[error("invoice {0} was already reversed")]
    AlreadyReversed(String),
    /// The request is valid but the state of things refuses it (409): a
    /// letter not signed, an application not waiting for review.
    #[error("{0}")]
    Refusal(String),
    #[error("the request body is larger than {limit_bytes} bytes")]
    TooLarge { limit_bytes: usize },
    #[error("the request body could not be read")]
    UnreadableBody,
    #[error("no policy is in force; settlements are not possible until one is loaded")]
    NoPolicy,
    #[error("the request took too long and was stopped; send the same request again")]
    Timeout,
    /// The cause is logged, never shown.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Invalid(errors) if errors.is_malformed_body() => StatusCode::BAD_REQUEST,
            ApiError::Invalid(_) | ApiError::UnknownVisitType(_) | ApiError::Refused(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::BadParameter { .. } => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::OtherHospital | ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) | ApiError::AlreadyReversed(_) | ApiError::Refusal(_) => {
                StatusCode::CONFLICT
            }
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnreadableBody => StatusCode::BAD_REQUEST,
            ApiError::NoPolicy | ApiError::Timeout => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The body's `error`: what kind of refusal, for machines.
    fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::Invalid(_)
            | ApiError::UnknownVisitType(_)
            | ApiError::UnreadableBody
            | ApiError::Refused(_)
            | ApiError::BadParameter { .. } => INVALID_REQUEST,
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::OtherHospital => "other_hospital",
            ApiError::NotFound => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::AlreadyReversed(_) => "already_reversed",
            ApiError::Refusal(_) => "refused",
            ApiError::TooLarge { .. } => "payload_too_large",
            ApiError::NoPolicy => "no_policy",
            ApiError::Timeout => "timeout",
            ApiError::Internal(_) => "internal",
        }
    }

    fn body(&self) -> ErrorBody {
        match self {
            ApiError::Invalid(errors) => ErrorBody {
                error: INVALID_REQUEST,
                message: mask_id_numbers(errors.message()),
                fields: errors
                    .errors()
                    .iter()
                    .map(|error| FieldError {
                        field: error.field.as_deref().map(mask_id_numbers),
                        message: mask_id_numbers(&error.message),
                        line: error.line,
                        column: error.column,
                    })
                    .collect(),
            },
            ApiError::Refused(problems) => ErrorBody {
                error: INVALID_REQUEST,
                message: format!(
                    "the file is refused and nothing was stored: {} found, each in `fields` with its line",
                    match problems.total() {
                        1 => "1 problem".to_owned(),
                        many => format!("{many} problems"),
                    }
                ),
                fields: problem_fields(problems),
            },
            ApiError::BadParameter { field, message } => ErrorBody {
                error: INVALID_REQUEST,
                message: format!("the request is not valid: see {field}"),
                fields: vec![FieldError {
                    field: Some((*field).to_owned()),
                    message: mask_id_numbers(message),
                    line: None,
                    column: None,
                }],
            },
            ApiError::UnknownVisitType(visit_type) => ErrorBody {
                error: INVALID_REQUEST,
                message: "the invoice is not valid: see visit_type".to_owned(),
                fields: vec![FieldError {
                    field: Some("visit_type".to_owned()),
                    message: mask_id_numbers(&format!(
                        "{visit_type:?} is not a visit type of the policy in force"
                    )),
                    line: None,
                    column: None,
                }],
            },
            ApiError::Internal(_) => ErrorBody {
                error: self.code(),
                message: "the server failed to answer; the cause is logged".to_owned(),
                fields: Vec::new(),
            },
            other => ErrorBody {
                error: other.code(),
                message: other.to_string(),
                fields: Vec::new(),
            },
        }
    }
}

/// Problems of a file as the entries of an error body: the column at fault
/// as `field` (`null` when the line or the whole file is), the line as
/// `line` (left out for the whole file); then, when more were found than
/// kept, one entry that counts the rest. ID numbers are masked.
pub(crate) fn problem_fields(problems: &Problems) -> Vec<FieldError> {
    let mut fields: Vec<FieldError> = problems
        .kept()
        .iter()
        .map(|problem| FieldError {
            field: problem.column.as_deref().map(mask_id_numbers),
            message: mask_id_numbers(&problem.message),
            line: problem.line.and_then(|line| usize::try_from(line).ok()),
            column: None,
        })
        .collect();
    let more = problems.total() - problems.kept().len();
    if more > 0 {
        fields.push(FieldError {
            field: None,
            message: format!("… and {more} more problems"),
            line: None,
            column: None,
        });
    }
    fields
}

/// The JSON of every refusal.
#[derive(Debug, Serialize)]
struct ErrorBody {
    error: &'static str,
    message: String,
    fields: Vec<FieldError>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status_code();
        if let ApiError::Internal(cause) = &self {
            tracing::error!(cause = %mask_id_numbers(cause), "request failed");
        }
        let mut response = (status, Json(self.body())).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        ApiError::Internal(error.to_string())
    }
}

impl From<SettleError> for ApiError {
    fn from(error: SettleError) -> ApiError {
        match error {
            SettleError::Conflict(invoice_no) => ApiError::Conflict(invoice_no),
            SettleError::OtherHospital { .. } => ApiError::OtherHospital,
            SettleError::NoPolicy => ApiError::NoPolicy,
            SettleError::UnknownVisitType(visit_type) => ApiError::UnknownVisitType(visit_type),
            SettleError::NotFound(_) => ApiError::NotFound,
            SettleError::AlreadyReversed(invoice_no) => ApiError::AlreadyReversed(invoice_no),
            SettleError::Store(error) => ApiError::from(error),
        }
    }
}

/// `text` with every run of 15 or more digits (an ID number, possibly
/// ending in `X`) masked as the store masks resident IDs: the first six and
/// the last four characters kept. A body that is not JSON, or a key that is
/// not a field, is echoed by the parser's messages; this keeps an ID number
/// out of them.
pub(crate) fn mask_id_numbers(text: &str) -> String {
    const LONGEST_KEPT: usize = 14;
    let characters: Vec<char> = text.chars().collect();
    let mut masked = String::with_capacity(text.len());
    let mut index = 0;
    while index < characters.len() {
        let start = index;
        while index < characters.len() && characters[index].is_ascii_digit() {
            index += 1;
        }
        if index > start && index < characters.len() && matches!(characters[index], 'X' | 'x') {
            index += 1;
        }
        let run = &characters[start..index];
        if run.len() > LONGEST_KEPT {
            masked.extend(&run[..6]);
            masked.extend(std::iter::repeat_n('*', run.len() - 10));
            masked.extend(&run[run.len() - 4..]);
        } else if run.is_empty() {
            masked.push(characters[index]);
            index += 1;
        } else {
            masked.extend(run);
        }
    }
    masked
}

#[cfg(test)]
mod tests {
    use super::mask_id_numbers;

    #[test]
    fn an_id_number_in_a_message_is_masked_and_short_numbers_are_kept() {
        assert_eq!(
            mask_id_numbers("invalid type: string \"110105196001010025\", expected x at line 1 column 20"),
            "invalid type: string \"110105********0025\", expected x at line 1 column 20"
        );
        assert_eq!(mask_id_numbers("11010519600101005x"), "110105********005x");
        assert_eq!(mask_id_numbers("INV003 total 3000.00"), "INV003 total 3000.00");
        assert_eq!(mask_id_numbers("市第一人民医院 X"), "市第一人民医院 X");
    }
}
