//! The resident's application on the web (`GET, POST /me/apply`): one
//! submission (一次提交) of several bills, prefilled with what the bureau
//! already knows, working without JavaScript.
//!
//! The form starts with one bill; "add another bill" and each bill's
//! "remove" are submit buttons that send the form back with what was typed
//! kept (files are not: the page says to choose them again), up to the
//! bills an application takes. Each bill has its own scan, checked as the
//! API checks it. Errors name the bill (第 2 张发票) and the field.
//!
//! Of the bills the bureau holds for the resident, two kinds are shown:
//!
//! - bills real time or the feed decided without assistance: read only,
//!   because an application would decide a bill a second time (an invoice
//!   number is decided once; approval could not decide it, and the
//!   periodic clearing, which recomputes every stored bill with the spells
//!   known then, is what pays a late category's difference);
//! - bills of the resident's rejected applications that nothing decided
//!   since: ticked, they are read again from the store by number for this
//!   resident (never from the form) and go through smart acceptance again.

use std::collections::HashMap;

use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;

use super::text::Language;
use super::{failed, resident, status_of, today_in_china};
use crate::AppState;

/// The fields a resident types for each bill, in the form's order.
const BILL_FIELDS: [&str; 8] = [
    "invoice_no",
    "hospital",
    "visit_type",
    "service_date",
    "total",
    "fund_paid",
    "in_scope_self_pay",
    "out_of_scope_self_pay",
];

/// What the form carries: the typed bills (field → value, in order) and
/// the numbers of the held bills ticked.
#[derive(Debug, Default)]
struct Draft {
    bills: Vec<HashMap<String, String>>,
    held: Vec<String>,
}

impl Draft {
    fn new() -> Draft {
        Draft {
            bills: vec![HashMap::new()],
            held: Vec::new(),
        }
    }
}

/// "第 2 张发票" / "Bill 2".
fn bill_label(language: Language, number: usize) -> String {
    match language {
        Language::Chinese => format!("第 {number} 张发票"),
        Language::English => format!("Bill {number}"),
    }
}

/// A held bill named by its number: "发票 R-1" / "Bill R-1".
fn held_label(language: Language, invoice_no: &str) -> String {
    match language {
        Language::Chinese => format!("发票 {invoice_no}"),
        Language::English => format!("Bill {invoice_no}"),
    }
}

/// How a held bill was decided, in plain words.
fn decided_in_words(language: Language, bill: &jiuzhu_store::UnassistedBill) -> String {
    let channel = language.text(match bill.channel.as_str() {
        "realtime" => "held_realtime",
        _ => "held_feed",
    });
    let outcome = match bill.outcome.as_str() {
        "not_eligible" => language.text("held_not_eligible").to_owned(),
        "no_rule" => language.text("held_no_rule").to_owned(),
        "duplicate" => language.text("held_duplicate").to_owned(),
        _ => format!("{} ¥{}", language.text("amount"), bill.amount),
    };
    let day = bill.decided_at.get(..10).unwrap_or(&bill.decided_at);
    match language {
        Language::Chinese => format!("{channel}已于 {day} 核定：{outcome}"),
        Language::English => format!("Decided by {channel} on {day}: {outcome}"),
    }
}

/// The apply page: the draft, what the bureau knows, the held bills.
async fn apply_form(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    draft: &Draft,
    problems: Vec<String>,
    sent_back: bool,
) -> Response {
    let (viewer, session, key, masked) = match resident(state, headers, "/me/apply").await {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let language = viewer.language;
    let signed = state.store.signed_current_letter(&key).await.unwrap_or(false);
    let policy = match state.store.policy_in_force().await {
        Ok(policy) => policy.map(|(_, policy)| policy),
        Err(error) => return failed("the policy could not be read", &error),
    };
    let visit_types: Vec<String> = policy
        .as_ref()
        .map(|policy| {
            policy
                .visit_types()
                .iter()
                .map(|(name, _)| name.clone())
                .collect()
        })
        .unwrap_or_default();
    let (held, details) = match (
        state.store.held_bills_of_key(&key).await,
        state.store.citizen_details(&key).await,
    ) {
        (Ok(held), Ok(details)) => (held, details),
        (Err(error), _) | (_, Err(error)) => {
            return failed("a resident's held bills could not be read", &error)
        }
    };
    // The categories in force today, by name where the policy names them.
    let today = today_in_china();
    let mut categories: Vec<String> = Vec::new();
    for (code, from, to) in &held.spells {
        let covers = from.as_str() <= today.as_str() && to.as_deref().is_none_or(|to| today.as_str() <= to);
        let name = policy
            .as_ref()
            .and_then(|policy| policy.categories().iter().find(|category| &category.code == code))
            .and_then(|category| category.name.clone());
        let text = match name {
            Some(name) => format!("{code} {name}"),
            None => code.clone(),
        };
        if covers && !categories.contains(&text) {
            categories.push(text);
        }
    }
    let max_bills = state.applications.limits.max_bills;
    let many = draft.bills.len() > 1;
    let bills: Vec<minijinja::Value> = draft
        .bills
        .iter()
        .enumerate()
        .map(|(index, values)| {
            let number = index + 1;
            let remove = match language {
                Language::Chinese => format!("删除第 {number} 张发票"),
                Language::English => format!("Remove bill {number}"),
            };
            let field = |name: &str| values.get(name).cloned().unwrap_or_default();
            context! {
                n => number, label => bill_label(language, number), remove => remove, can_remove => many,
                invoice_no => field("invoice_no"), hospital => field("hospital"), visit_type => field("visit_type"),
                service_date => field("service_date"), total => field("total"), fund_paid => field("fund_paid"),
                in_scope_self_pay => field("in_scope_self_pay"),
                out_of_scope_self_pay => field("out_of_scope_self_pay"),
            }
        })
        .collect();
    let reapplicable: Vec<minijinja::Value> = held
        .reapplicable
        .iter()
        .map(|bill| {
            let [total, fund_paid, in_scope, out_of_scope] = bill.amounts;
            context! {
                invoice_no => bill.invoice_no.clone(), hospital => bill.hospital.clone(),
                service_date => bill.service_date.clone(), visit_type => bill.visit_type.clone(),
                total => total.to_string(), fund_paid => fund_paid.to_string(),
                in_scope => in_scope.to_string(), out_of_scope => out_of_scope.to_string(),
                application => bill.application, has_scan => bill.scan.is_some(),
                checked => draft.held.contains(&bill.invoice_no),
            }
        })
        .collect();
    let unassisted: Vec<minijinja::Value> = held
        .unassisted
        .iter()
        .map(|bill| {
            context! {
                invoice_no => bill.invoice_no.clone(), hospital => bill.hospital.clone(),
                service_date => bill.service_date.clone(), total => bill.total.to_string(),
                in_scope => bill.in_scope_self_pay.to_string(), decided => decided_in_words(language, bill),
            }
        })
        .collect();
    let account = details
        .bank_account
        .map(|(holder, bank, number)| context! { holder => holder, bank => bank, number => number });
    viewer.render(
        status,
        "my_apply.html",
        context! {
            signed => signed, citizen => masked, csrf => session.csrf, visit_types => visit_types,
            categories => categories, phone => details.phone, account => account,
            bills => bills, bill_count => draft.bills.len(), can_add => draft.bills.len() + draft.held.len() < max_bills,
            max_bills => max_bills, reapplicable => reapplicable, unassisted => unassisted,
            problems => problems, sent_back => sent_back,
        },
    )
}

pub(super) async fn apply_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    apply_form(&state, &headers, StatusCode::OK, &Draft::new(), Vec::new(), false).await
}

/// What a posted form holds.
struct Posted {
    fields: HashMap<String, String>,
    held: Vec<String>,
    /// Files by field name: media type and bytes (empty inputs left out).
    files: HashMap<String, (String, Vec<u8>)>,
}

async fn read_posted(mut multipart: Multipart) -> Result<Posted, String> {
    let mut posted = Posted {
        fields: HashMap::new(),
        held: Vec::new(),
        files: HashMap::new(),
    };
    while let Some(field) = multipart.next_field().await.map_err(|error| error.body_text())? {
        let name = field.name().unwrap_or_default().to_owned();
        if field.file_name().is_some() || name.starts_with("scan_") || name.starts_with("held_scan_") {
            let media_type = field
                .content_type()
                .unwrap_or("application/octet-stream")
                .to_owned();
            let bytes = field.bytes().await.map_err(|error| error.body_text())?;
            if !bytes.is_empty() {
                posted.files.insert(name, (media_type, bytes.to_vec()));
            }
        } else {
            let text = field.text().await.map_err(|error| error.body_text())?;
            if name == "held" {
                let number = text.trim().to_owned();
                if !number.is_empty() && !posted.held.contains(&number) {
                    posted.held.push(number);
                }
            } else {
                posted.fields.insert(name, text.trim().to_owned());
            }
        }
    }
    Ok(posted)
}

/// The typed bills of a posted form, as many as it says (at least one, at
/// most `max_bills`).
fn typed_bills(fields: &HashMap<String, String>, max_bills: usize) -> Vec<HashMap<String, String>> {
    let count = fields
        .get("bill_count")
        .and_then(|count| count.parse::<usize>().ok())
        .unwrap_or(1)
        .clamp(1, max_bills.max(1));
    (1..=count)
        .map(|number| {
            BILL_FIELDS
                .iter()
                .filter_map(|name| {
                    let value = fields.get(&format!("{name}_{number}"))?;
                    Some(((*name).to_owned(), value.clone()))
                })
                .collect()
        })
        .collect()
}

/// Whether a typed bill is left empty (the visit type always has a value).
fn is_blank(bill: &HashMap<String, String>) -> bool {
    BILL_FIELDS
        .iter()
        .filter(|name| **name != "visit_type")
        .all(|name| bill.get(*name).is_none_or(String::is_empty))
}

/// Submits a resident's application from the form, or sends the form back
/// with a bill more or less: the same checks and the same acceptance as
/// the API's.
pub(super) async fn apply(
    State(state): State<AppState>,
    headers: HeaderMap,
    multipart: Multipart,
) -> Response {
    let (viewer, session, key, masked) = match resident(&state, &headers, "/me/apply").await {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let language = viewer.language;
    let posted = match read_posted(multipart).await {
        Ok(posted) => posted,
        Err(problem) => {
            return apply_form(
                &state,
                &headers,
                StatusCode::BAD_REQUEST,
                &Draft::new(),
                vec![problem],
                false,
            )
            .await
        }
    };
    if posted
        .fields
        .get("csrf")
        .is_none_or(|csrf| csrf.is_empty() || *csrf != session.csrf)
    {
        return viewer.error(StatusCode::FORBIDDEN, "forbidden", "bad_form");
    }
    let limits = state.applications.limits;
    let mut draft = Draft {
        bills: typed_bills(&posted.fields, limits.max_bills),
        held: posted.held.clone(),
    };
    let action = posted.fields.get("action").map_or("submit", String::as_str);
    if action == "add" {
        if draft.bills.len() + draft.held.len() < limits.max_bills {
            draft.bills.push(HashMap::new());
        }
        return apply_form(&state, &headers, StatusCode::OK, &draft, Vec::new(), true).await;
    }
    if let Some(number) = action.strip_prefix("remove-") {
        if let Ok(number) = number.parse::<usize>() {
            if (1..=draft.bills.len()).contains(&number) && draft.bills.len() > 1 {
                draft.bills.remove(number - 1);
            }
        }
        return apply_form(&state, &headers, StatusCode::OK, &draft, Vec::new(), true).await;
    }

    // The resident's ID is decrypted from their own record, never typed.
    let person = match state.store.resident_id_of_key(&key).await {
        Ok(Some(person)) => person,
        Ok(None) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Err(error) => return failed("a resident's ID could not be read", &error),
    };
    let mut bills: Vec<serde_json::Value> = Vec::new();
    // Each bill's name on the page, and whether it was typed.
    let mut labels: Vec<(String, bool)> = Vec::new();
    for (index, values) in draft.bills.iter().enumerate() {
        let number = index + 1;
        let scan = posted.files.get(&format!("scan_{number}"));
        if is_blank(values) && scan.is_none() {
            continue;
        }
        let mut bill = serde_json::Map::new();
        for name in BILL_FIELDS {
            let value = values.get(name).cloned().unwrap_or_default();
            bill.insert(name.to_owned(), serde_json::Value::String(value));
        }
        let date = values.get("service_date").cloned().unwrap_or_default();
        bill.insert(
            "settled_at".into(),
            serde_json::Value::String(format!("{date}T12:00:00+08:00")),
        );
        if let Some((media_type, bytes)) = scan {
            bill.insert("scan".into(), scan_json(media_type, bytes));
        }
        bills.push(serde_json::Value::Object(bill));
        labels.push((bill_label(language, number), true));
    }
    // The held bills ticked: read again by number, for this resident only.
    let mut problems = Vec::new();
    let mut missing: Vec<String> = Vec::new();
    for invoice_no in &draft.held {
        match state.store.reapplicable_bill_of_key(&key, invoice_no).await {
            Ok(Some(held)) => {
                let [total, fund_paid, in_scope, out_of_scope] = held.amounts;
                let mut bill = serde_json::json!({
                    "invoice_no": held.invoice_no, "hospital": held.hospital, "visit_type": held.visit_type,
                    "service_date": held.service_date, "settled_at": held.settled_at,
                    "total": total.to_string(), "fund_paid": fund_paid.to_string(),
                    "in_scope_self_pay": in_scope.to_string(), "out_of_scope_self_pay": out_of_scope.to_string(),
                });
                let scan = posted
                    .files
                    .get(&format!("held_scan_{invoice_no}"))
                    .or(held.scan.as_ref());
                if let Some((media_type, bytes)) = scan {
                    bill["scan"] = scan_json(media_type, bytes);
                }
                bills.push(bill);
                labels.push((held_label(language, invoice_no), false));
            }
            Ok(None) => {
                problems.push(format!(
                    "{}: {}",
                    held_label(language, invoice_no),
                    language.text("not_held")
                ));
                missing.push(invoice_no.clone());
            }
            Err(error) => return failed("a held bill could not be read", &error),
        }
    }
    if problems.is_empty() && bills.is_empty() {
        problems.push(language.text("no_bill").to_owned());
    }
    if !problems.is_empty() {
        draft.held.retain(|invoice_no| !missing.contains(invoice_no));
        return apply_form(
            &state,
            &headers,
            StatusCode::UNPROCESSABLE_ENTITY,
            &draft,
            problems,
            true,
        )
        .await;
    }
    let body = serde_json::json!({"person_id": person.to_string(), "bills": bills});
    let request =
        match jiuzhu_formats::application::parse_application_request(body.to_string().as_bytes(), limits) {
            Ok(request) => request,
            Err(errors) => {
                let problems = said(language, &errors, &labels);
                return apply_form(
                    &state,
                    &headers,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &draft,
                    problems,
                    true,
                )
                .await;
            }
        };
    let settings = jiuzhu_store::AcceptanceSettings {
        filing_deadline_days: state.applications.filing_deadline_days,
        today: None,
    };
    let entered_by = format!("citizen:{masked}");
    match state
        .store
        .submit_application(&request, jiuzhu_store::ApplyChannel::Web, &entered_by, settings)
        .await
    {
        Ok(_) => Redirect::to("/me/applications").into_response(),
        Err(error) => {
            let status = status_of(&error);
            if status == StatusCode::INTERNAL_SERVER_ERROR {
                return failed("an application could not be stored", &error);
            }
            apply_form(&state, &headers, status, &draft, vec![error.to_string()], true).await
        }
    }
}

fn scan_json(media_type: &str, bytes: &[u8]) -> serde_json::Value {
    serde_json::json!({"media_type": media_type, "content_base64": jiuzhu_store::scan_base64(bytes)})
}

/// The parser's problems in the page's words, each naming its bill and
/// field (`bills[1].total` → "第 2 张发票 · 总金额: …").
fn said(
    language: Language,
    errors: &jiuzhu_formats::json::FieldErrors,
    labels: &[(String, bool)],
) -> Vec<String> {
    let mut problems = Vec::new();
    for error in errors.errors() {
        let path = error.field.as_deref().unwrap_or_default();
        let (bill, field) = match path.strip_prefix("bills[").and_then(|rest| rest.split_once("].")) {
            Some((index, field)) => (index.parse::<usize>().ok(), field),
            None => (None, path),
        };
        // A typed bill's settlement time is its service date's: the date's
        // own problem says it.
        let (label_of_bill, typed) = match bill.and_then(|index| labels.get(index)) {
            Some((label, typed)) => (Some(label), *typed),
            None => (None, false),
        };
        if field == "settled_at" && typed {
            continue;
        }
        let label = match field {
            "in_scope_self_pay" => language.text("in_scope"),
            "out_of_scope_self_pay" => language.text("out_of_scope"),
            "settled_at" => language.text("settled_at"),
            "scan" => language.text("scan_short"),
            "bills" => language.text("bills_all"),
            other => language.text(other),
        };
        let label = if label.is_empty() { field } else { label };
        let problem = match label_of_bill {
            Some(bill) => format!("{bill} · {label}: {}", error.message),
            None => format!("{label}: {}", error.message),
        };
        if !problems.contains(&problem) {
            problems.push(problem);
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::{is_blank, typed_bills};

    #[test]
    fn the_typed_bills_are_read_by_number_up_to_the_limit() {
        let fields: HashMap<String, String> = [
            ("bill_count", "3"),
            ("invoice_no_1", "A1"),
            ("total_2", "12.50"),
            ("invoice_no_4", "beyond the count"),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
        let bills = typed_bills(&fields, 50);
        assert_eq!(bills.len(), 3);
        assert_eq!(bills[0]["invoice_no"], "A1");
        assert_eq!(bills[1]["total"], "12.50");
        assert!(is_blank(&bills[2]) && !is_blank(&bills[0]));
        assert_eq!(typed_bills(&fields, 2).len(), 2);
        let mut many = fields.clone();
        many.insert("bill_count".into(), "1000000".into());
        assert_eq!(typed_bills(&many, 50).len(), 50);
    }
}
