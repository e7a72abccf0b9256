//! JSON for the hospitals' settlement API (`POST /api/v1/settlements`): the
//! request body (one invoice), the error body of a refused request, the
//! response (one decision), and the canonical form of a request that
//! idempotency compares.
//!
//! # Request
//!
//! A JSON object with exactly the columns of `invoices.csv` (`formats.md`,
//! "Invoices") as keys, every value a JSON string in the format of the CSV:
//!
//! ```json
//! {
//!   "invoice_no": "INV-001",
//!   "person_id": "11010519491231002X",
//!   "hospital": "市第一人民医院",
//!   "visit_type": "inpatient",
//!   "service_date": "2024-03-05",
//!   "settled_at": "2024-03-06T10:22:31+08:00",
//!   "total": "1000.00",
//!   "fund_paid": "600",
//!   "in_scope_self_pay": "300.5",
//!   "out_of_scope_self_pay": "99.50"
//! }
//! ```
//!
//! Money is a string (`"12.5"`), never a JSON number, so that it stays exact.
//! Keys may come in any order; an unknown key, a missing key or a key given
//! twice is refused. The visit type is only checked to be non-empty here:
//! whether the policy knows it is the store's check.
//!
//! # Error body
//!
//! A refused request is answered (4xx) with [`FieldErrors`] serialised as:
//!
//! ```json
//! {
//!   "error": "invalid_request",
//!   "message": "the invoice is not valid: see person_id, total",
//!   "fields": [
//!     {"field": "person_id", "message": "check character is '1' but should be 'X' (GB 11643)"},
//!     {"field": "total", "message": "is a JSON number; send amounts as strings such as \"1234.56\", so that they stay exact"}
//!   ]
//! }
//! ```
//!
//! `error` is always `"invalid_request"`; `message` sums up for people;
//! `fields` lists every problem found, in the order of the invoice fields
//! above, then unknown keys in the order they came. `field` names the key at
//! fault, or is `null` when the body as a whole is at fault (not JSON, not an
//! object, nested too deep, trailing characters): there is then one entry,
//! which also carries the 1-based `line` and `column` where the JSON parser
//! stopped (`line` and `column` are left out of every other entry).
//!
//! # Response
//!
//! [`SettlementResponse`]: the columns of a `results.csv` row (`formats.md`,
//! "Results") with the same names and values, except `person_id`, plus an
//! `explanation`:
//!
//! ```json
//! {
//!   "invoice_no": "INV-001",
//!   "year": 2024,
//!   "category": "DB",
//!   "pool": "inpatient",
//!   "base": "3000.00",
//!   "deductible_applied": "1000.00",
//!   "eligible": "2000.00",
//!   "amount": "1800.00",
//!   "outcome": "assisted",
//!   "policy_version": "2024-01-01",
//!   "explanation": {
//!     "category_code": "DB",
//!     "category_name": "低保对象",
//!     "rank": 2,
//!     "policy_version": "2024-01-01",
//!     "pool": "inpatient",
//!     "deductible": "1000.00",
//!     "ratio": "0.9",
//!     "out_of_scope_self_pay": "0.00",
//!     "out_of_scope_ratio": "0",
//!     "raw_in_scope": "1800.00",
//!     "raw_out_of_scope": "0.00",
//!     "raw": "1800.00",
//!     "pool_cap": "5000.00",
//!     "pool_cap_room": "5000.00",
//!     "annual_cap": null,
//!     "annual_cap_room": null,
//!     "text": ["Category DB 低保对象 under policy version 2024-01-01, pool inpatient.", "…"]
//!   }
//! }
//! ```
//!
//! Money is a string with exactly two decimals and `year` a number, as in
//! `results.csv`. Where `results.csv` leaves `category`, `pool` or
//! `policy_version` empty, the response has `null` (not `""`), so that "not
//! filled" cannot be mistaken for a value. In `explanation`, the parameters of
//! the pool rule that applied (`deductible`, `ratio`, `out_of_scope_ratio`,
//! `pool_cap`, `annual_cap`) are `null` when no rule applied (`duplicate`,
//! `not_eligible`, `no_rule`) and the caps also when the rule has none; the cap
//! rooms are `null` likewise; the computed amounts (`out_of_scope_self_pay`,
//! `raw_in_scope`, `raw_out_of_scope`, `raw`) are always strings, `"0.00"`
//! when nothing was computed. Ratios are decimals without trailing zeros
//! (`"0.9"`, `"1"`, `"0"`). `text` is [`Decision::explanation`], one sentence
//! a step.
//!
//! # Same body
//!
//! See [`canonical_request`].

use std::fmt;

use jiuzhu_core::{
    BillAmounts, Date, Decision, Fen, Hospital, Invoice, InvoiceNo, Outcome, Policy, ResidentId, Timestamp,
};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The keys of a settlement request, in the order of `formats.md`.
pub const INVOICE_FIELDS: [&str; 10] = [
    "invoice_no",
    "person_id",
    "hospital",
    "visit_type",
    "service_date",
    "settled_at",
    "total",
    "fund_paid",
    "in_scope_self_pay",
    "out_of_scope_self_pay",
];

const INVOICE_NO: usize = 0;
const PERSON_ID: usize = 1;
const HOSPITAL: usize = 2;
const VISIT_TYPE: usize = 3;
const SERVICE_DATE: usize = 4;
const SETTLED_AT: usize = 5;
const TOTAL: usize = 6;
const FUND_PAID: usize = 7;
const IN_SCOPE_SELF_PAY: usize = 8;
const OUT_OF_SCOPE_SELF_PAY: usize = 9;

/// The `error` of every error body.
pub const INVALID_REQUEST: &str = "invalid_request";

/// Unknown keys named one by one in an error body; any more are counted in
/// one last entry.
pub const MAX_UNKNOWN_FIELDS_REPORTED: usize = 10;

/// One problem of a refused request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// The key at fault; `None` (JSON `null`) when the body as a whole is.
    pub field: Option<String>,
    pub message: String,
    /// Where the JSON parser stopped, 1-based; only for a body that is not a
    /// JSON object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
}

impl FieldError {
    /// A problem of the key at `field` (`None`: the body as a whole).
    pub(crate) fn at_path(field: Option<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field,
            message: message.into(),
            line: None,
            column: None,
        }
    }

    fn at(field: &str, message: impl Into<String>) -> FieldError {
        FieldError {
            field: Some(field.to_owned()),
            message: message.into(),
            line: None,
            column: None,
        }
    }
}

/// Every problem of a refused request, never empty. Serialises to the error
/// body described in the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldErrors {
    message: String,
    errors: Vec<FieldError>,
}

impl FieldErrors {
    /// The summary for people (the body's `message`).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Every problem, in order (the body's `fields`).
    pub fn errors(&self) -> &[FieldError] {
        &self.errors
    }

    /// Whether the body was refused as a whole (not a JSON object of
    /// fields), rather than for the values of some fields.
    pub fn is_malformed_body(&self) -> bool {
        self.errors
            .iter()
            .any(|error| error.field.is_none() && error.line.is_some())
    }

    /// Problems with a summary of their own.
    pub(crate) fn with_message(message: &str, errors: Vec<FieldError>) -> FieldErrors {
        FieldErrors {
            message: message.to_owned(),
            errors,
        }
    }

    fn malformed(error: &serde_json::Error) -> FieldErrors {
        FieldErrors::malformed_as(error, "a JSON object of invoice fields")
    }

    /// The body as a whole refused: not JSON, or not `expected` (such as
    /// "a JSON object of invoice fields"); one entry with where the parser
    /// stopped.
    pub(crate) fn malformed_as(error: &serde_json::Error, expected: &str) -> FieldErrors {
        let message = match error.classify() {
            serde_json::error::Category::Data => format!("the request body is not {expected}"),
            _ => "the request body is not valid JSON".to_owned(),
        };
        FieldErrors {
            message,
            errors: vec![FieldError {
                field: None,
                message: error.to_string(),
                line: Some(error.line()),
                column: Some(error.column()),
            }],
        }
    }

    fn of_fields(errors: Vec<FieldError>) -> FieldErrors {
        let mut names: Vec<&str> = Vec::new();
        for name in errors.iter().filter_map(|error| error.field.as_deref()) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        let message = format!("the invoice is not valid: see {}", names.join(", "));
        FieldErrors { message, errors }
    }
}

impl Serialize for FieldErrors {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut body = serializer.serialize_struct("FieldErrors", 3)?;
        body.serialize_field("error", INVALID_REQUEST)?;
        body.serialize_field("message", &self.message)?;
        body.serialize_field("fields", &self.errors)?;
        body.end()
    }
}

/// The summary, then `; field: message` for each problem.
impl fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        for error in &self.errors {
            match &error.field {
                Some(field) => write!(f, "; {field}: {}", error.message)?,
                None => write!(f, "; {}", error.message)?,
            }
        }
        Ok(())
    }
}

impl std::error::Error for FieldErrors {}

/// A JSON value as far as the checks need it: strings are kept, anything
/// else only by its kind (so that no number is ever converted for use).
pub(crate) enum JsonValue {
    String(String),
    Number,
    Boolean,
    Null,
    Array,
    Object,
}

impl JsonValue {
    pub(crate) fn describe(&self) -> &'static str {
        match self {
            JsonValue::String(_) => "a JSON string",
            JsonValue::Number => "a JSON number",
            JsonValue::Boolean => "a JSON boolean",
            JsonValue::Null => "null",
            JsonValue::Array => "a JSON array",
            JsonValue::Object => "a JSON object",
        }
    }
}

impl<'de> Deserialize<'de> for JsonValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<JsonValue, D::Error> {
        deserializer.deserialize_any(JsonValueVisitor)
    }
}

struct JsonValueVisitor;

impl<'de> Visitor<'de> for JsonValueVisitor {
    type Value = JsonValue;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<JsonValue, E> {
        Ok(JsonValue::String(value.to_owned()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<JsonValue, E> {
        Ok(JsonValue::String(value))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<JsonValue, E> {
        Ok(JsonValue::Boolean)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<JsonValue, E> {
        Ok(JsonValue::Number)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<JsonValue, E> {
        Ok(JsonValue::Number)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<JsonValue, E> {
        Ok(JsonValue::Number)
    }

    fn visit_unit<E: de::Error>(self) -> Result<JsonValue, E> {
        Ok(JsonValue::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<JsonValue, A::Error> {
        SkipVisitor.visit_seq(seq).map(|Skipped| JsonValue::Array)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<JsonValue, A::Error> {
        SkipVisitor.visit_map(map).map(|Skipped| JsonValue::Object)
    }
}

/// A value read and dropped. Unlike serde's `IgnoredAny`, which serde_json
/// skips without its nesting limit, each level goes through
/// `deserialize_any`, so that a body nested deeper than serde_json's limit
/// (128) is refused as a whole wherever the nesting is.
pub(crate) struct Skipped;

impl<'de> Deserialize<'de> for Skipped {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Skipped, D::Error> {
        deserializer.deserialize_any(SkipVisitor)
    }
}

struct SkipVisitor;

impl<'de> Visitor<'de> for SkipVisitor {
    type Value = Skipped;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Skipped, E> {
        Ok(Skipped)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Skipped, E> {
        Ok(Skipped)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Skipped, E> {
        Ok(Skipped)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Skipped, E> {
        Ok(Skipped)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Skipped, E> {
        Ok(Skipped)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Skipped, E> {
        Ok(Skipped)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skipped, A::Error> {
        while seq.next_element::<Skipped>()?.is_some() {}
        Ok(Skipped)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skipped, A::Error> {
        while map.next_entry::<IgnoredAny, Skipped>()?.is_some() {}
        Ok(Skipped)
    }
}

/// The top-level object, key by key: a repeated key is noted, not silently
/// overwritten; values of unknown keys are skipped unread.
struct RequestBody {
    values: [Option<JsonValue>; INVOICE_FIELDS.len()],
    repeated: [bool; INVOICE_FIELDS.len()],
    unknown: Vec<String>,
    unknown_count: usize,
}

impl<'de> Deserialize<'de> for RequestBody {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<RequestBody, D::Error> {
        deserializer.deserialize_map(RequestBodyVisitor)
    }
}

struct RequestBodyVisitor;

impl<'de> Visitor<'de> for RequestBodyVisitor {
    type Value = RequestBody;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON object of invoice fields")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RequestBody, A::Error> {
        let mut body = RequestBody {
            values: Default::default(),
            repeated: [false; INVOICE_FIELDS.len()],
            unknown: Vec::new(),
            unknown_count: 0,
        };
        while let Some(key) = map.next_key::<String>()? {
            match INVOICE_FIELDS.iter().position(|field| *field == key) {
                Some(index) if body.values[index].is_some() => {
                    body.repeated[index] = true;
                    map.next_value::<Skipped>()?;
                }
                Some(index) => body.values[index] = Some(map.next_value::<JsonValue>()?),
                None => {
                    map.next_value::<Skipped>()?;
                    if !body.unknown.contains(&key) {
                        body.unknown_count += 1;
                        if body.unknown.len() < MAX_UNKNOWN_FIELDS_REPORTED {
                            body.unknown.push(key);
                        }
                    }
                }
            }
        }
        Ok(body)
    }
}

/// Parses and checks the body of a settlement request: a JSON object with
/// exactly the invoice fields, each a string checked as the `invoices.csv`
/// reader checks its column, the amounts adding up to `total`. Either the
/// invoice, or every problem found.
pub fn parse_settlement_request(body: &[u8]) -> Result<Invoice, FieldErrors> {
    let mut body: RequestBody =
        serde_json::from_slice(body).map_err(|error| FieldErrors::malformed(&error))?;
    // The problems of each field, reported in the order of the fields.
    let mut found: [Option<String>; INVOICE_FIELDS.len()] = Default::default();
    let mut text = |index: usize| -> Option<String> {
        let money = index >= TOTAL;
        let problem = if body.repeated[index] {
            "is given more than once; give each field once".to_owned()
        } else {
            match body.values[index].take() {
                Some(JsonValue::String(text)) => return Some(text),
                None => "is missing".to_owned(),
                Some(JsonValue::Number) if money => {
                    "is a JSON number; send amounts as strings such as \"1234.56\", so that they stay exact"
                        .to_owned()
                }
                Some(other) if money => {
                    format!("is {}; expected a string such as \"1234.56\"", other.describe())
                }
                Some(other) => format!("is {}; expected a JSON string", other.describe()),
            }
        };
        found[index] = Some(problem);
        None
    };
    let texts: [Option<String>; INVOICE_FIELDS.len()] = std::array::from_fn(&mut text);

    // Each field has at most one problem: a value is checked only once it
    // is a string, and `total`'s sum only once every amount parsed.
    let mut check = |index: usize, problem: String| found[index] = Some(problem);
    let invoice_no = texts[INVOICE_NO].as_deref().and_then(|text| {
        InvoiceNo::parse(text)
            .map_err(|error| check(INVOICE_NO, error.to_string()))
            .ok()
    });
    let person = texts[PERSON_ID].as_deref().and_then(|text| {
        ResidentId::parse(text)
            .map_err(|error| check(PERSON_ID, error.to_string()))
            .ok()
    });
    let hospital = texts[HOSPITAL].as_deref().and_then(|text| {
        Hospital::parse(text)
            .map_err(|error| check(HOSPITAL, error.to_string()))
            .ok()
    });
    let visit_type = match &texts[VISIT_TYPE] {
        Some(text) if text.is_empty() => {
            check(VISIT_TYPE, "is empty; expected a visit type".to_owned());
            None
        }
        other => other.clone(),
    };
    let service_date = texts[SERVICE_DATE].as_deref().and_then(|text| {
        Date::parse(text)
            .map_err(|error| check(SERVICE_DATE, error.to_string()))
            .ok()
    });
    let settled_at = texts[SETTLED_AT].as_deref().and_then(|text| {
        Timestamp::parse(text)
            .map_err(|error| check(SETTLED_AT, error.to_string()))
            .ok()
    });
    let mut money = |index: usize| {
        texts[index].as_deref().and_then(|text| {
            Fen::parse_yuan(text)
                .map_err(|error| check(index, error.to_string()))
                .ok()
        })
    };
    let total = money(TOTAL);
    let fund_paid = money(FUND_PAID);
    let in_scope = money(IN_SCOPE_SELF_PAY);
    let out_of_scope = money(OUT_OF_SCOPE_SELF_PAY);
    let amounts = match (total, fund_paid, in_scope, out_of_scope) {
        (Some(total), Some(fund_paid), Some(in_scope), Some(out_of_scope)) => {
            BillAmounts::new(total, fund_paid, in_scope, out_of_scope)
                .map_err(|error| check(TOTAL, error.to_string()))
                .ok()
        }
        _ => None,
    };

    let mut errors: Vec<FieldError> = INVOICE_FIELDS
        .iter()
        .zip(found)
        .filter_map(|(field, problem)| Some(FieldError::at(field, problem?)))
        .collect();
    for key in &body.unknown {
        errors.push(FieldError::at(
            key,
            format!(
                "is not an invoice field; the fields are {}",
                INVOICE_FIELDS.join(", ")
            ),
        ));
    }
    let unreported = body.unknown_count - body.unknown.len();
    if unreported > 0 {
        errors.push(FieldError {
            field: None,
            message: format!("… and {unreported} more keys that are not invoice fields"),
            line: None,
            column: None,
        });
    }

    match (
        invoice_no,
        person,
        hospital,
        visit_type,
        service_date,
        settled_at,
        amounts,
    ) {
        (
            Some(invoice_no),
            Some(person),
            Some(hospital),
            Some(visit_type),
            Some(service_date),
            Some(settled_at),
            Some(amounts),
        ) if errors.is_empty() => Ok(Invoice {
            invoice_no,
            person,
            hospital,
            visit_type,
            service_date,
            settled_at,
            amounts,
        }),
        _ => Err(FieldErrors::of_fields(errors)),
    }
}

/// The answer to a settlement: a `results.csv` row without `person_id`,
/// with the same values, and the decision's steps. See the module
/// documentation for the JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettlementResponse {
    pub invoice_no: String,
    /// The service date's year.
    pub year: i32,
    /// The category code; `null` where `results.csv` leaves it empty.
    pub category: Option<String>,
    /// The pool's name; `null` where `results.csv` leaves it empty.
    pub pool: Option<String>,
    pub base: String,
    pub deductible_applied: String,
    pub eligible: String,
    pub amount: String,
    /// `assisted`, `capped`, `duplicate`, `not_eligible` or `no_rule`.
    pub outcome: String,
    /// The version's `effective_from`; `null` where `results.csv` leaves it
    /// empty.
    pub policy_version: Option<String>,
    pub explanation: Explanation,
}

/// Each step behind a decision (`calculation.md`), in figures and in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    pub category_code: Option<String>,
    pub category_name: Option<String>,
    pub rank: Option<i64>,
    pub policy_version: Option<String>,
    pub pool: Option<String>,
    /// The pool rule's yearly deductible; `null` when no rule applied.
    pub deductible: Option<String>,
    /// The pool rule's ratio of the eligible base, as `"0.9"`.
    pub ratio: Option<String>,
    /// The out-of-scope self-pay the out-of-scope ratio applied to.
    pub out_of_scope_self_pay: String,
    pub out_of_scope_ratio: Option<String>,
    pub raw_in_scope: String,
    pub raw_out_of_scope: String,
    /// The amount before caps.
    pub raw: String,
    /// The pool rule's yearly cap, when it has one.
    pub pool_cap: Option<String>,
    /// What the pool cap left before this bill, when there is one.
    pub pool_cap_room: Option<String>,
    /// The rule's yearly cap over all pools, when it has one.
    pub annual_cap: Option<String>,
    pub annual_cap_room: Option<String>,
    /// [`Decision::explanation`]: one sentence a step.
    pub text: Vec<String>,
}

impl SettlementResponse {
    /// The response for `decision` on `invoice`, made under `policy`. The
    /// row's values follow the rules `results.csv` is written by: `base`,
    /// `deductible_applied` and `eligible` are zero unless the outcome is
    /// `assisted` or `capped`.
    pub fn new(invoice: &Invoice, decision: &Decision, policy: &Policy) -> SettlementResponse {
        let counts = decision.outcome.counts();
        let (base, deductible_applied) = if counts {
            (invoice.amounts.in_scope_self_pay(), decision.deductible_applied)
        } else {
            (Fen::ZERO, Fen::ZERO)
        };
        let eligible = Fen::from_fen(base.fen() - deductible_applied.fen());
        let category = decision.category.map(|category| policy.category(category));
        let pool = decision.pool.map(|pool| policy.pool_name(pool).to_owned());
        let version = decision.version.map(|version| policy.version(version));
        let policy_version = version.map(|version| version.effective_from.to_string());
        let rule = version
            .zip(decision.category)
            .and_then(|(version, category)| version.rule(category));
        let pool_rule = rule.zip(decision.pool).and_then(|(rule, pool)| rule.pool(pool));
        let money = |fen: Fen| fen.to_string();
        SettlementResponse {
            invoice_no: invoice.invoice_no.as_str().to_owned(),
            year: invoice.service_date.year(),
            category: category.map(|category| category.code.clone()),
            pool: pool.clone(),
            base: money(base),
            deductible_applied: money(deductible_applied),
            eligible: money(eligible),
            amount: money(decision.amount),
            outcome: decision.outcome.as_str().to_owned(),
            policy_version: policy_version.clone(),
            explanation: Explanation {
                category_code: category.map(|category| category.code.clone()),
                category_name: category.and_then(|category| category.name.clone()),
                rank: category.map(|category| category.rank),
                policy_version,
                pool,
                deductible: pool_rule.map(|pool_rule| money(pool_rule.deductible)),
                ratio: pool_rule.map(|pool_rule| pool_rule.ratio.to_string()),
                out_of_scope_self_pay: money(decision.out_of_scope_self_pay),
                out_of_scope_ratio: pool_rule.map(|pool_rule| pool_rule.out_of_scope_ratio.to_string()),
                raw_in_scope: money(decision.raw_in_scope),
                raw_out_of_scope: money(decision.raw_out_of_scope),
                raw: money(decision.raw),
                pool_cap: pool_rule.and_then(|pool_rule| pool_rule.cap).map(money),
                pool_cap_room: decision.pool_cap_room.map(money),
                annual_cap: pool_rule.and(rule).and_then(|rule| rule.annual_cap).map(money),
                annual_cap_room: decision.annual_cap_room.map(money),
                text: decision.explanation(policy),
            },
        }
    }

    /// The outcome as the engine's type (`None` only for a response that
    /// did not come from [`SettlementResponse::new`]).
    pub fn outcome(&self) -> Option<Outcome> {
        Outcome::parse(&self.outcome)
    }
}

/// The canonical form of a settlement request, for idempotency: a compact
/// JSON object with the invoice fields in the order of [`INVOICE_FIELDS`]
/// and every value in canonical form. Two request bodies are "the same body"
/// exactly when their invoices have the same canonical form.
///
/// Differences that do **not** count (the same body):
/// - key order, white space, and how a string is escaped in JSON
///   (`"\u0041"` is `"A"`);
/// - how an amount is written: `"12.5"`, `"12.50"` and `"012.50"` are all
///   `12.50`; `"12"` is `12.00`;
/// - the case of the resident ID's check character (`x` is `X`);
/// - in `settled_at`: the case of `T` and `Z`; `Z`, `+00:00` and `-00:00`
///   (all offset zero); trailing zeros of the fraction of a second (`.5` is
///   `.500`; `.000` is no fraction).
///
/// Differences that count (a different body): any character of
/// `invoice_no`, `hospital` or `visit_type` (case and spaces included); any
/// date; the instant of `settled_at`, and also its offset (`10:00:00+08:00`
/// and `02:00:00Z` are one instant written differently: a different body);
/// any amount.
///
/// ```text
/// {"invoice_no":"INV-001","person_id":"11010519491231002X","hospital":"市第一人民医院","visit_type":"inpatient","service_date":"2024-03-05","settled_at":"2024-03-06T10:22:31+08:00","total":"1000.00","fund_paid":"600.00","in_scope_self_pay":"300.50","out_of_scope_self_pay":"99.50"}
/// ```
pub fn canonical_request(invoice: &Invoice) -> String {
    let values = [
        invoice.invoice_no.as_str().to_owned(),
        invoice.person.to_string(),
        invoice.hospital.as_str().to_owned(),
        invoice.visit_type.clone(),
        invoice.service_date.to_string(),
        invoice.settled_at.to_string(),
        invoice.amounts.total().to_string(),
        invoice.amounts.fund_paid().to_string(),
        invoice.amounts.in_scope_self_pay().to_string(),
        invoice.amounts.out_of_scope_self_pay().to_string(),
    ];
    let mut canonical = String::from("{");
    for (index, (field, value)) in INVOICE_FIELDS.iter().zip(values).enumerate() {
        if index > 0 {
            canonical.push(',');
        }
        canonical.push('"');
        canonical.push_str(field);
        canonical.push_str("\":");
        // A JSON string literal, escaped as serde_json escapes it.
        canonical.push_str(&serde_json::Value::String(value).to_string());
    }
    canonical.push('}');
    canonical
}

/// SHA-256 of [`canonical_request`]'s UTF-8 bytes: what the store keeps
/// beside an invoice number to tell a repeated request (same digest: answer
/// as before) from a conflicting one (409).
pub fn canonical_request_digest(invoice: &Invoice) -> [u8; 32] {
    Sha256::digest(canonical_request(invoice).as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiuzhu_core::{Batch, SpellBook};
    use serde_json::{json, Value};

    use crate::{parse_policy, read_batch_invoices, read_invoices, read_spells, write_results};

    const GOOD: &str = r#"{
  "invoice_no": "INV-001",
  "person_id": "11010519491231002X",
  "hospital": "市第一人民医院",
  "visit_type": "inpatient",
  "service_date": "2024-03-05",
  "settled_at": "2024-03-06T10:22:31+08:00",
  "total": "1000.00",
  "fund_paid": "600",
  "in_scope_self_pay": "300.5",
  "out_of_scope_self_pay": "99.50"
}"#;

    fn good() -> serde_json::Map<String, Value> {
        match serde_json::from_str(GOOD) {
            Ok(Value::Object(object)) => object,
            other => panic!("GOOD is not an object: {other:?}"),
        }
    }

    /// GOOD with some keys set to other values.
    fn with(changes: &[(&str, Value)]) -> Vec<u8> {
        let mut object = good();
        for (key, value) in changes {
            object.insert((*key).to_owned(), value.clone());
        }
        serde_json::to_vec(&object).unwrap()
    }

    /// GOOD without some keys.
    fn without(keys: &[&str]) -> Vec<u8> {
        let mut object = good();
        for key in keys {
            object.remove(*key);
        }
        serde_json::to_vec(&object).unwrap()
    }

    fn errors_of(body: &[u8]) -> Vec<(Option<String>, String)> {
        parse_settlement_request(body)
            .unwrap_err()
            .errors()
            .iter()
            .map(|error| (error.field.clone(), error.message.clone()))
            .collect()
    }

    fn field(name: &str, message: &str) -> (Option<String>, String) {
        (Some(name.to_owned()), message.to_owned())
    }

    fn parse(body: &[u8]) -> Invoice {
        parse_settlement_request(body).unwrap()
    }

    #[test]
    fn a_valid_body_parses_into_the_expected_invoice() {
        let invoice = parse(GOOD.as_bytes());
        let expected = Invoice {
            invoice_no: InvoiceNo::parse("INV-001").unwrap(),
            person: ResidentId::parse("11010519491231002X").unwrap(),
            hospital: Hospital::parse("市第一人民医院").unwrap(),
            visit_type: "inpatient".to_owned(),
            service_date: Date::parse("2024-03-05").unwrap(),
            settled_at: Timestamp::parse("2024-03-06T10:22:31+08:00").unwrap(),
            amounts: BillAmounts::new(
                Fen::from_fen(100_000),
                Fen::from_fen(60_000),
                Fen::from_fen(30_050),
                Fen::from_fen(9_950),
            )
            .unwrap(),
        };
        assert_eq!(invoice, expected);
        assert_eq!(invoice.settled_at.offset_minutes(), 480);
    }

    #[test]
    fn every_bad_value_is_named_at_once_with_the_csv_readers_message() {
        let body = with(&[
            ("invoice_no", json!("INV 001")),
            ("person_id", json!("110105194912310021")),
            ("hospital", json!("")),
            ("visit_type", json!("")),
            ("service_date", json!("2024-3-5")),
            ("settled_at", json!("2024-03-06 10:22:31")),
            ("total", json!("1000.001")),
            ("fund_paid", json!("-600")),
            ("in_scope_self_pay", json!("1,000")),
            ("out_of_scope_self_pay", json!("")),
        ]);
        assert_eq!(
            errors_of(&body),
            [
                field("invoice_no", "may hold only A-Z, a-z, 0-9, '-' and '_'"),
                field("person_id", "check character is '1' but should be 'X' (GB 11643)"),
                field("hospital", "is empty; expected a hospital code or name"),
                field("visit_type", "is empty; expected a visit type"),
                field("service_date", "\"2024-3-5\" is not a date as YYYY-MM-DD"),
                field(
                    "settled_at",
                    "\"2024-03-06 10:22:31\" is not an RFC 3339 timestamp with an offset, such as 2024-03-05T10:22:31+08:00"
                ),
                field("total", "\"1000.001\" has more than two decimals; amounts are exact to the fen"),
                field(
                    "fund_paid",
                    "\"-600\" is not an amount in yuan: use digits, an optional point and at most two decimals, no sign (e.g. 1234.56)"
                ),
                field(
                    "in_scope_self_pay",
                    "\"1,000\" is not an amount in yuan: use digits, an optional point and at most two decimals, no sign (e.g. 1234.56)"
                ),
                field("out_of_scope_self_pay", "is empty; expected an amount in yuan such as 12.50"),
            ]
        );
    }

    #[test]
    fn amounts_that_do_not_add_up_are_refused_on_total() {
        let body = with(&[("fund_paid", json!("600.01"))]);
        assert_eq!(
            errors_of(&body),
            [field(
                "total",
                "fund_paid 600.01 + in_scope_self_pay 300.50 + out_of_scope_self_pay 99.50 = 1000.01, but total is 1000.00"
            )]
        );
    }

    #[test]
    fn money_as_a_json_number_is_refused_and_asked_for_as_a_string() {
        let body = with(&[("total", json!(1000)), ("in_scope_self_pay", json!(300.5))]);
        let number = "is a JSON number; send amounts as strings such as \"1234.56\", so that they stay exact";
        assert_eq!(
            errors_of(&body),
            [field("total", number), field("in_scope_self_pay", number)]
        );
        // Exactness is the point: not even a float that would round-trip is read.
        let body = String::from_utf8(GOOD.into())
            .unwrap()
            .replace("\"99.50\"", "99.5");
        assert_eq!(
            errors_of(body.as_bytes()),
            [field("out_of_scope_self_pay", number)]
        );
    }

    #[test]
    fn a_value_that_is_not_a_string_is_refused_with_its_kind() {
        let body = with(&[
            ("person_id", json!(110105194912310020_u64)),
            ("hospital", json!(null)),
            ("visit_type", json!(["inpatient"])),
            ("service_date", json!({"year": 2024})),
            ("settled_at", json!(true)),
            ("fund_paid", json!(null)),
        ]);
        assert_eq!(
            errors_of(&body),
            [
                field("person_id", "is a JSON number; expected a JSON string"),
                field("hospital", "is null; expected a JSON string"),
                field("visit_type", "is a JSON array; expected a JSON string"),
                field("service_date", "is a JSON object; expected a JSON string"),
                field("settled_at", "is a JSON boolean; expected a JSON string"),
                field("fund_paid", "is null; expected a string such as \"1234.56\""),
            ]
        );
    }

    #[test]
    fn unknown_keys_are_refused_and_named() {
        let body = with(&[("amount", json!("1.00")), ("Total", json!("1000.00"))]);
        let fields = INVOICE_FIELDS.join(", ");
        assert_eq!(
            errors_of(&body),
            [
                field(
                    "Total",
                    &format!("is not an invoice field; the fields are {fields}")
                ),
                field(
                    "amount",
                    &format!("is not an invoice field; the fields are {fields}")
                ),
            ]
        );
    }

    #[test]
    fn many_unknown_keys_are_named_up_to_a_limit_and_counted() {
        let changes: Vec<(String, Value)> = (0..25).map(|n| (format!("extra{n:02}"), json!(n))).collect();
        let changes: Vec<(&str, Value)> = changes.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        let errors = errors_of(&with(&changes));
        assert_eq!(errors.len(), MAX_UNKNOWN_FIELDS_REPORTED + 1);
        assert_eq!(errors[0].0.as_deref(), Some("extra00"));
        assert_eq!(
            errors[MAX_UNKNOWN_FIELDS_REPORTED],
            (None, "… and 15 more keys that are not invoice fields".to_owned())
        );
    }

    #[test]
    fn missing_keys_are_each_named() {
        assert_eq!(
            errors_of(&without(&["person_id", "out_of_scope_self_pay"])),
            [
                field("person_id", "is missing"),
                field("out_of_scope_self_pay", "is missing")
            ]
        );
        let errors = errors_of(b"{}");
        assert_eq!(errors.len(), INVOICE_FIELDS.len());
        for (error, name) in errors.iter().zip(INVOICE_FIELDS) {
            assert_eq!(*error, field(name, "is missing"));
        }
    }

    #[test]
    fn a_key_given_twice_is_refused_even_with_the_same_value() {
        for first in ["\"1000.00\"", "\"5.00\""] {
            let body = GOOD.replacen('{', &format!("{{\"total\": {first},"), 1);
            assert_eq!(
                errors_of(body.as_bytes()),
                [field("total", "is given more than once; give each field once")]
            );
        }
        // Escapes do not hide a repeated key.
        let body = GOOD.replacen('{', "{\"hospit\\u0061l\": \"X\",", 1);
        assert_eq!(
            errors_of(body.as_bytes()),
            [field("hospital", "is given more than once; give each field once")]
        );
    }

    fn malformed(body: &[u8]) -> FieldError {
        let errors = parse_settlement_request(body).unwrap_err();
        assert!(errors.is_malformed_body(), "{errors}");
        assert_eq!(errors.errors().len(), 1, "{errors}");
        errors.errors()[0].clone()
    }

    #[test]
    fn malformed_json_is_one_error_with_its_line_and_column() {
        let error = malformed(b"{\n  \"invoice_no\": \"INV-001\",\n  \"total\" \"12\"\n}");
        assert_eq!(error.field, None);
        assert_eq!((error.line, error.column), (Some(3), Some(11)));
        assert_eq!(error.message, "expected `:` at line 3 column 11");

        let error = malformed(format!("{GOOD} x").as_bytes());
        assert!(
            error.message.starts_with("trailing characters at line 12"),
            "{error:?}"
        );

        let error = malformed(b"");
        assert_eq!(error.message, "EOF while parsing a value at line 1 column 0");

        let error = malformed(b"{\"total\": \"1\"");
        assert!(
            error.message.starts_with("EOF while parsing an object"),
            "{error:?}"
        );

        let error = malformed(b"\xff");
        assert_eq!((error.line, error.column), (Some(1), Some(1)));
    }

    #[test]
    fn a_body_that_is_not_an_object_is_refused_as_a_whole() {
        for body in ["[]", "\"INV-001\"", "null", "12"] {
            let error = malformed(body.as_bytes());
            assert!(
                error.message.contains("expected a JSON object of invoice fields"),
                "{error:?}"
            );
            assert_eq!(error.line, Some(1));
        }
        let errors = parse_settlement_request(b"[]").unwrap_err();
        assert_eq!(
            errors.message(),
            "the request body is not a JSON object of invoice fields"
        );
        let errors = parse_settlement_request(b"{").unwrap_err();
        assert_eq!(errors.message(), "the request body is not valid JSON");
    }

    #[test]
    fn a_body_nested_too_deep_is_refused_as_a_whole() {
        let depth = 200;
        let body = format!("{{\"extra\": {}{}}}", "[".repeat(depth), "]".repeat(depth));
        let error = malformed(body.as_bytes());
        assert!(error.message.starts_with("recursion limit exceeded"), "{error:?}");
        // Nesting within the limit in an unknown key is only an unknown key.
        let body = GOOD.replacen('{', "{\"extra\": [[[{\"a\": [1]}]]],", 1);
        assert_eq!(errors_of(body.as_bytes()).len(), 1);
    }

    #[test]
    fn the_error_body_is_machine_readable() {
        let body = with(&[("person_id", json!("110105194912310021")), ("total", json!(1000))]);
        let errors = parse_settlement_request(&body).unwrap_err();
        assert_eq!(
            serde_json::to_string(&errors).unwrap(),
            r#"{"error":"invalid_request","message":"the invoice is not valid: see person_id, total","fields":[{"field":"person_id","message":"check character is '1' but should be 'X' (GB 11643)"},{"field":"total","message":"is a JSON number; send amounts as strings such as \"1234.56\", so that they stay exact"}]}"#
        );
        assert_eq!(
            errors.to_string(),
            "the invoice is not valid: see person_id, total; person_id: check character is '1' but should be 'X' (GB 11643); total: is a JSON number; send amounts as strings such as \"1234.56\", so that they stay exact"
        );
        let errors = parse_settlement_request(b"{\"total\": [1,").unwrap_err();
        assert_eq!(
            serde_json::to_value(&errors).unwrap(),
            json!({
                "error": "invalid_request",
                "message": "the request body is not valid JSON",
                "fields": [{
                    "field": null,
                    "message": "EOF while parsing a value at line 1 column 13",
                    "line": 1,
                    "column": 13,
                }],
            })
        );
        // A client can read the entries back.
        let fields: Vec<FieldError> =
            serde_json::from_value(serde_json::to_value(&errors).unwrap()["fields"].clone()).unwrap();
        assert_eq!(fields, errors.errors());
    }

    const POLICY: &str = r#"
name = "Test policy"

[[category]]
code = "TK"
name = "特困人员"
rank = 1

[[category]]
code = "DB"
name = "低保对象"
rank = 2

[pools]
outpatient = "outpatient"
chronic = "outpatient"
inpatient = "inpatient"

[[version]]
effective_from = "2024-01-01"

  [[version.rule]]
  category = "DB"
  annual_cap = "6000"

    [version.rule.pools.inpatient]
    deductible = "1000"
    ratio = "0.9"
    cap = "5000"

    [version.rule.pools.outpatient]
    deductible = "0"
    ratio = "0.5"
    out_of_scope_ratio = "0.1"
"#;

    const P1: &str = "11010519491231002X";
    const P2: &str = "440524188001010014";

    fn p3() -> String {
        ResidentId::from_leading_digits(11010519800101001)
            .unwrap()
            .to_string()
    }

    /// Every invoice of a small run with each outcome, in canonical order,
    /// with its full decision, and the `results.csv` the run writes.
    fn run() -> (Policy, Vec<(Invoice, Decision)>, String) {
        let policy = parse_policy("policy.toml", POLICY).unwrap();
        let p3 = p3();
        let spells = format!(
            "person_id,category,valid_from,valid_to,source\n{P1},DB,2024-01-01,,民政\n{p3},TK,2024-01-01,,民政\n"
        );
        let spells = read_spells("spells.csv", spells.as_bytes(), Some(&policy)).unwrap();
        let invoices = format!(
            "invoice_no,person_id,hospital,visit_type,service_date,settled_at,total,fund_paid,in_scope_self_pay,out_of_scope_self_pay
A1,{P1},H1,inpatient,2024-03-01,2024-03-02T10:00:00+08:00,5000,2000,3000,0
A2,{P1},H1,inpatient,2024-04-01,2024-04-02T10:00:00+08:00,8000,2000,6000,0
A1,{P1},H1,outpatient,2024-05-01,2024-05-02T10:00:00+08:00,100,0,100,0
B1,{P2},H1,inpatient,2024-03-01,2024-03-02T11:00:00+08:00,100,0,100,0
C1,{p3},H1,chronic,2024-03-01,2024-03-02T12:00:00+08:00,100,0,100,0
D1,{P1},H1,chronic,2024-06-01,2024-06-02T10:00:00+08:00,1500,0,1000,500
E1,{P1},H1,outpatient,2024-07-01,2024-07-02T10:00:00+08:00,2000,0,2000,0
"
        );
        let visit_types: Vec<String> = policy
            .visit_types()
            .iter()
            .map(|(name, _)| name.clone())
            .collect();
        let full = read_invoices("invoices.csv", invoices.as_bytes(), &visit_types).unwrap();
        let compact = read_batch_invoices("invoices.csv", invoices.as_bytes(), &visit_types).unwrap();
        let batch = Batch::new(compact, visit_types);
        let book = SpellBook::new(&policy, &spells).unwrap();
        let run = batch.run(&policy, &book, &|_| {}).unwrap();
        let mut results = Vec::new();
        write_results(&mut results, &policy, &batch, &run, &|_| {}).unwrap();
        let decided = (0..batch.len())
            .map(|index| {
                let position = batch.invoices()[index].position as usize;
                (
                    full[position].clone(),
                    batch.explain(&policy, &book, index).unwrap(),
                )
            })
            .collect();
        (policy, decided, String::from_utf8(results).unwrap())
    }

    fn response_for(invoice_no: &str, outcome: Outcome) -> SettlementResponse {
        let (policy, decided, _) = run();
        let (invoice, decision) = decided
            .iter()
            .find(|(invoice, decision)| {
                invoice.invoice_no.as_str() == invoice_no && decision.outcome == outcome
            })
            .unwrap();
        SettlementResponse::new(invoice, decision, &policy)
    }

    #[test]
    fn a_response_has_the_values_results_csv_has_for_the_same_decision() {
        let (policy, decided, results) = run();
        let mut lines = results.lines();
        assert_eq!(lines.next(), Some(crate::RESULTS_HEADER));
        let rows: Vec<&str> = lines.collect();
        assert_eq!(rows.len(), decided.len());
        let mut outcomes = Vec::new();
        for (row, (invoice, decision)) in rows.iter().zip(&decided) {
            let response = SettlementResponse::new(invoice, decision, &policy);
            let columns: Vec<&str> = row.split(',').collect();
            let empty_as_null = |text: &str| (!text.is_empty()).then(|| text.to_owned());
            assert_eq!(columns.len(), 11, "{row}");
            assert_eq!(columns[0], response.invoice_no, "{row}");
            assert_eq!(columns[1], invoice.person.to_string(), "{row}");
            assert_eq!(columns[2], response.year.to_string(), "{row}");
            assert_eq!(empty_as_null(columns[3]), response.category, "{row}");
            assert_eq!(empty_as_null(columns[4]), response.pool, "{row}");
            assert_eq!(columns[5], response.base, "{row}");
            assert_eq!(columns[6], response.deductible_applied, "{row}");
            assert_eq!(columns[7], response.eligible, "{row}");
            assert_eq!(columns[8], response.amount, "{row}");
            assert_eq!(columns[9], response.outcome, "{row}");
            assert_eq!(empty_as_null(columns[10]), response.policy_version, "{row}");
            assert_eq!(response.outcome(), Some(decision.outcome));
            let value = serde_json::to_value(&response).unwrap();
            assert!(value.get("person_id").is_none());
            outcomes.push(decision.outcome);
        }
        for outcome in Outcome::ALL {
            assert!(outcomes.contains(&outcome), "no {outcome} in the run");
        }
    }

    #[test]
    fn an_assisted_decision_answers_with_the_documented_json() {
        let response = response_for("A1", Outcome::Assisted);
        let expected = json!({
            "invoice_no": "A1",
            "year": 2024,
            "category": "DB",
            "pool": "inpatient",
            "base": "3000.00",
            "deductible_applied": "1000.00",
            "eligible": "2000.00",
            "amount": "1800.00",
            "outcome": "assisted",
            "policy_version": "2024-01-01",
            "explanation": {
                "category_code": "DB",
                "category_name": "低保对象",
                "rank": 2,
                "policy_version": "2024-01-01",
                "pool": "inpatient",
                "deductible": "1000.00",
                "ratio": "0.9",
                "out_of_scope_self_pay": "0.00",
                "out_of_scope_ratio": "0",
                "raw_in_scope": "1800.00",
                "raw_out_of_scope": "0.00",
                "raw": "1800.00",
                "pool_cap": "5000.00",
                "pool_cap_room": "5000.00",
                "annual_cap": "6000.00",
                "annual_cap_room": "6000.00",
                "text": [
                    "Category DB 低保对象 under policy version 2024-01-01, pool inpatient.",
                    "Base (in-scope self-pay) 3000.00; of the year's deductible of 1000.00, 1000.00 is taken from this bill; eligible 2000.00.",
                    "2000.00 × 90% = 1800.00; before caps 1800.00.",
                    "Pool cap 5000.00 a year: 5000.00 left before this bill.",
                    "Annual cap 6000.00 over all pools: 6000.00 left before this bill.",
                    "Paid 1800.00.",
                ],
            },
        });
        assert_eq!(serde_json::to_value(&response).unwrap(), expected);
        // The row's fields come first, in results.csv's order, then the explanation.
        let text = serde_json::to_string(&response).unwrap();
        assert!(
            text.starts_with(r#"{"invoice_no":"A1","year":2024,"category":"DB","pool":"inpatient","base":"3000.00","deductible_applied":"1000.00","eligible":"2000.00","amount":"1800.00","outcome":"assisted","policy_version":"2024-01-01","explanation":{"category_code":"DB","#),
            "{text}"
        );
        // And it reads back as it was.
        assert_eq!(
            serde_json::from_str::<SettlementResponse>(&text).unwrap(),
            response
        );
    }

    #[test]
    fn a_capped_decision_answers_with_the_documented_json() {
        let response = response_for("A2", Outcome::Capped);
        assert_eq!(
            serde_json::to_value(&response).unwrap(),
            json!({
                "invoice_no": "A2",
                "year": 2024,
                "category": "DB",
                "pool": "inpatient",
                "base": "6000.00",
                "deductible_applied": "0.00",
                "eligible": "6000.00",
                "amount": "3200.00",
                "outcome": "capped",
                "policy_version": "2024-01-01",
                "explanation": {
                    "category_code": "DB",
                    "category_name": "低保对象",
                    "rank": 2,
                    "policy_version": "2024-01-01",
                    "pool": "inpatient",
                    "deductible": "1000.00",
                    "ratio": "0.9",
                    "out_of_scope_self_pay": "0.00",
                    "out_of_scope_ratio": "0",
                    "raw_in_scope": "5400.00",
                    "raw_out_of_scope": "0.00",
                    "raw": "5400.00",
                    "pool_cap": "5000.00",
                    "pool_cap_room": "3200.00",
                    "annual_cap": "6000.00",
                    "annual_cap_room": "4200.00",
                    "text": [
                        "Category DB 低保对象 under policy version 2024-01-01, pool inpatient.",
                        "Base (in-scope self-pay) 6000.00; of the year's deductible of 1000.00, 0.00 is taken from this bill; eligible 6000.00.",
                        "6000.00 × 90% = 5400.00; before caps 5400.00.",
                        "Pool cap 5000.00 a year: 3200.00 left before this bill.",
                        "Annual cap 6000.00 over all pools: 4200.00 left before this bill.",
                        "Paid 3200.00: capped, 2200.00 less than before caps.",
                    ],
                },
            })
        );
    }

    #[test]
    fn an_out_of_scope_share_and_an_annual_cap_are_explained() {
        let response = response_for("E1", Outcome::Capped);
        assert_eq!(response.amount, "450.00");
        assert_eq!(response.explanation.pool_cap, None);
        assert_eq!(response.explanation.pool_cap_room, None);
        assert_eq!(response.explanation.annual_cap_room.as_deref(), Some("450.00"));
        let response = response_for("D1", Outcome::Assisted);
        assert_eq!(response.pool.as_deref(), Some("outpatient"));
        assert_eq!(response.explanation.out_of_scope_ratio.as_deref(), Some("0.1"));
        assert_eq!(response.explanation.out_of_scope_self_pay, "500.00");
        assert_eq!(response.explanation.raw_out_of_scope, "50.00");
        assert_eq!(response.explanation.raw, "550.00");
    }

    fn nothing_paid(invoice_no: &str, outcome: &str, text: &str) -> Value {
        json!({
            "invoice_no": invoice_no,
            "year": 2024,
            "category": null,
            "pool": null,
            "base": "0.00",
            "deductible_applied": "0.00",
            "eligible": "0.00",
            "amount": "0.00",
            "outcome": outcome,
            "policy_version": null,
            "explanation": {
                "category_code": null,
                "category_name": null,
                "rank": null,
                "policy_version": null,
                "pool": null,
                "deductible": null,
                "ratio": null,
                "out_of_scope_self_pay": "0.00",
                "out_of_scope_ratio": null,
                "raw_in_scope": "0.00",
                "raw_out_of_scope": "0.00",
                "raw": "0.00",
                "pool_cap": null,
                "pool_cap_room": null,
                "annual_cap": null,
                "annual_cap_room": null,
                "text": [text],
            },
        })
    }

    #[test]
    fn a_not_eligible_decision_answers_with_nulls_and_zeros() {
        let response = response_for("B1", Outcome::NotEligible);
        assert_eq!(
            serde_json::to_value(&response).unwrap(),
            nothing_paid(
                "B1",
                "not_eligible",
                "Not eligible: no category spell covers the service date."
            )
        );
    }

    #[test]
    fn a_duplicate_decision_answers_with_nulls_and_zeros() {
        let response = response_for("A1", Outcome::Duplicate);
        assert_eq!(
            serde_json::to_value(&response).unwrap(),
            nothing_paid(
                "A1",
                "duplicate",
                "Duplicate: an earlier bill in canonical order has the same number, so this one pays nothing."
            )
        );
    }

    #[test]
    fn a_no_rule_decision_names_category_pool_and_version_but_no_rule() {
        let response = response_for("C1", Outcome::NoRule);
        assert_eq!(response.category.as_deref(), Some("TK"));
        assert_eq!(response.pool.as_deref(), Some("outpatient"));
        assert_eq!(response.policy_version.as_deref(), Some("2024-01-01"));
        assert_eq!(response.amount, "0.00");
        assert_eq!(response.explanation.rank, Some(1));
        assert_eq!(response.explanation.category_name.as_deref(), Some("特困人员"));
        assert_eq!(response.explanation.ratio, None);
        assert_eq!(response.explanation.deductible, None);
    }

    #[test]
    fn the_canonical_form_has_fixed_order_and_canonical_values() {
        let invoice = parse(GOOD.as_bytes());
        assert_eq!(
            canonical_request(&invoice),
            r#"{"invoice_no":"INV-001","person_id":"11010519491231002X","hospital":"市第一人民医院","visit_type":"inpatient","service_date":"2024-03-05","settled_at":"2024-03-06T10:22:31+08:00","total":"1000.00","fund_paid":"600.00","in_scope_self_pay":"300.50","out_of_scope_self_pay":"99.50"}"#
        );
        let quoted = with(&[("hospital", json!("A \"B\" \\ 医"))]);
        assert!(canonical_request(&parse(&quoted)).contains(r#""hospital":"A \"B\" \\ 医","#));
    }

    #[test]
    fn the_canonical_digest_is_equal_for_equivalent_bodies() {
        let digest = canonical_request_digest(&parse(GOOD.as_bytes()));
        let equivalent = [
            // Other key order and white space, an escape.
            r#"{"out_of_scope_self_pay":"99.50","in_scope_self_pay":"300.5","fund_paid":"600","total":"1000.00","settled_at":"2024-03-06T10:22:31+08:00","service_date":"2024-03-05","visit_type":"inpatient","hospital":"市第一人民医院","person_id":"11010519491231002X","invoice_no":"\u0049NV-001"}"#.to_owned(),
            String::from_utf8(with(&[
                ("total", json!("1000")),
                ("fund_paid", json!("0600.0")),
                ("in_scope_self_pay", json!("300.50")),
                ("out_of_scope_self_pay", json!("99.5")),
            ]))
            .unwrap(),
            String::from_utf8(with(&[("person_id", json!("11010519491231002x"))])).unwrap(),
            String::from_utf8(with(&[("settled_at", json!("2024-03-06t10:22:31.000+08:00"))])).unwrap(),
        ];
        for body in &equivalent {
            assert_eq!(
                canonical_request_digest(&parse(body.as_bytes())),
                digest,
                "{body}"
            );
        }
        let utc =
            |settled_at: &str| canonical_request_digest(&parse(&with(&[("settled_at", json!(settled_at))])));
        assert_eq!(utc("2024-03-06T02:22:31.5Z"), utc("2024-03-06t02:22:31.500z"));
        assert_eq!(utc("2024-03-06T02:22:31Z"), utc("2024-03-06T02:22:31+00:00"));
        assert_eq!(utc("2024-03-06T02:22:31Z"), utc("2024-03-06T02:22:31-00:00"));
    }

    #[test]
    fn the_canonical_digest_differs_when_any_value_differs() {
        let base = canonical_request_digest(&parse(GOOD.as_bytes()));
        let p3 = p3();
        let changes: Vec<Vec<(&str, Value)>> = vec![
            vec![("invoice_no", json!("INV-002"))],
            vec![("invoice_no", json!("inv-001"))],
            vec![("person_id", json!(P2))],
            vec![("person_id", json!(p3))],
            vec![("hospital", json!("市第二人民医院"))],
            vec![("hospital", json!("市第一人民医院 "))],
            vec![("visit_type", json!("outpatient"))],
            vec![("service_date", json!("2024-03-04"))],
            vec![("settled_at", json!("2024-03-06T10:22:32+08:00"))],
            vec![(
                "settled_at",
                json!("2024-03-06T10:22:31.000000000000000000001+08:00"),
            )],
            // The same instant at another offset.
            vec![("settled_at", json!("2024-03-06T02:22:31Z"))],
            vec![("total", json!("1000.01")), ("fund_paid", json!("600.01"))],
            vec![
                ("in_scope_self_pay", json!("99.50")),
                ("out_of_scope_self_pay", json!("300.50")),
            ],
        ];
        let mut seen = vec![base];
        for change in &changes {
            let digest = canonical_request_digest(&parse(&with(change)));
            assert!(!seen.contains(&digest), "{change:?} gave a digest already seen");
            seen.push(digest);
        }
    }

    #[test]
    fn the_canonical_request_is_itself_a_request_that_reads_back_as_the_same_invoice() {
        let invoice = parse_settlement_request(
            br#"{"invoice_no":"A1","person_id":"11010519491231002x","hospital":"H1","visit_type":"inpatient",
                "service_date":"2024-03-05","settled_at":"2024-03-06t10:22:31.50+08:00","total":"12.5",
                "fund_paid":"2","in_scope_self_pay":"10.5","out_of_scope_self_pay":"0"}"#,
        )
        .unwrap();
        let again = parse_settlement_request(canonical_request(&invoice).as_bytes()).unwrap();
        assert_eq!(again, invoice);
        assert_eq!(canonical_request(&again), canonical_request(&invoice));
    }
}
