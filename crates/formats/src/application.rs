//! JSON of an application (救助申请, `POST /api/v1/applications`): one
//! submission for one person with one or more bills that neither real time
//! nor the insurance feed settled, each with an optional scan.
//!
//! ```json
//! {
//!   "person_id": "11010519491231002X",
//!   "bills": [
//!     {
//!       "invoice_no": "OUT-2024-001",
//!       "hospital": "外市中心医院",
//!       "visit_type": "inpatient",
//!       "service_date": "2024-03-05",
//!       "settled_at": "2024-03-09T10:22:31+08:00",
//!       "total": "1000.00",
//!       "fund_paid": "600",
//!       "in_scope_self_pay": "300.5",
//!       "out_of_scope_self_pay": "99.50",
//!       "scan": {"media_type": "image/jpeg", "content_base64": "/9j/4AAQ…"}
//!     }
//!   ]
//! }
//! ```
//!
//! A bill has the invoice fields of `formats.md` but `person_id` (the
//! submission's), each checked as the `invoices.csv` reader checks its
//! column. Whether the amounts add up to `total` is *not* a reason to refuse
//! the submission: it is one of smart acceptance's checks (智能受理), stored
//! with the application and shown to the reviewer. A scan is a JPEG, PNG or
//! PDF whose first bytes must match the declared `media_type`, at most
//! [`ApplicationLimits::max_scan_bytes`] once decoded.
//!
//! A refused submission is answered with [`FieldErrors`], every problem
//! named by its path (`bills[1].service_date`, `bills[0].scan`).

use base64::Engine as _;
use jiuzhu_core::{Date, Fen, Hospital, InvoiceNo, ResidentId, Timestamp};
use serde_json::Value;

use crate::json::{FieldError, FieldErrors};

/// The bill fields of an application, in the order of `formats.md`.
pub const BILL_FIELDS: [&str; 9] = [
    "invoice_no",
    "hospital",
    "visit_type",
    "service_date",
    "settled_at",
    "total",
    "fund_paid",
    "in_scope_self_pay",
    "out_of_scope_self_pay",
];

/// The kinds of scan accepted, with the bytes each file starts with.
pub const SCAN_TYPES: [(&str, &[u8]); 3] = [
    ("image/jpeg", &[0xFF, 0xD8, 0xFF]),
    ("image/png", &[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]),
    ("application/pdf", b"%PDF-"),
];

/// Limits of one submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApplicationLimits {
    pub max_bills: usize,
    pub max_scan_bytes: usize,
}

impl Default for ApplicationLimits {
    fn default() -> ApplicationLimits {
        ApplicationLimits {
            max_bills: 50,
            max_scan_bytes: 5 * 1024 * 1024,
        }
    }
}

/// A scan of a bill, its type checked against its first bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Scan {
    pub media_type: &'static str,
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for Scan {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "Scan({}, {} bytes)", self.media_type, self.bytes.len())
    }
}

/// One bill of an application, as the applicant entered it. The amounts are
/// each valid money but need not add up (a finding, not a refusal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplicationBill {
    pub invoice_no: InvoiceNo,
    pub hospital: Hospital,
    pub visit_type: String,
    pub service_date: Date,
    pub settled_at: Timestamp,
    /// total, fund_paid, in_scope_self_pay, out_of_scope_self_pay.
    pub amounts: [Fen; 4],
    pub scan: Option<Scan>,
}

/// A submission, checked field by field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplicationRequest {
    pub person: ResidentId,
    pub bills: Vec<ApplicationBill>,
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a JSON boolean",
        Value::Number(_) => "a JSON number",
        Value::String(_) => "a JSON string",
        Value::Array(_) => "a JSON array",
        Value::Object(_) => "a JSON object",
    }
}

/// Parses and checks a submission (see the module documentation): either
/// the request, or every problem found.
pub fn parse_application_request(
    body: &[u8],
    limits: ApplicationLimits,
) -> Result<ApplicationRequest, FieldErrors> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|error| FieldErrors::malformed_as(&error, "a JSON object with person_id and bills"))?;
    let Value::Object(object) = value else {
        return Err(FieldErrors::with_message(
            "the request body is not a JSON object with person_id and bills",
            vec![FieldError::at_path(None, format!("is {}", describe(&value)))],
        ));
    };
    let mut errors = Vec::new();
    for key in object.keys() {
        if key != "person_id" && key != "bills" {
            errors.push(FieldError::at_path(
                Some(key.clone()),
                "is not a field of an application; the fields are person_id and bills",
            ));
        }
    }
    let person = match object.get("person_id") {
        Some(Value::String(text)) => ResidentId::parse(text)
            .map_err(|error| errors.push(FieldError::at_path(Some("person_id".into()), error.to_string())))
            .ok(),
        Some(other) => {
            errors.push(FieldError::at_path(
                Some("person_id".into()),
                format!("is {}; expected a JSON string", describe(other)),
            ));
            None
        }
        None => {
            errors.push(FieldError::at_path(Some("person_id".into()), "is missing"));
            None
        }
    };
    let mut bills = Vec::new();
    match object.get("bills") {
        Some(Value::Array(items)) if items.is_empty() => errors.push(FieldError::at_path(
            Some("bills".into()),
            "is empty; an application has at least one bill",
        )),
        Some(Value::Array(items)) if items.len() > limits.max_bills => errors.push(FieldError::at_path(
            Some("bills".into()),
            format!(
                "has {} bills; one application takes at most {}",
                items.len(),
                limits.max_bills
            ),
        )),
        Some(Value::Array(items)) => {
            for (index, item) in items.iter().enumerate() {
                if let Some(bill) = parse_bill(index, item, limits, &mut errors) {
                    bills.push(bill);
                }
            }
        }
        Some(other) => errors.push(FieldError::at_path(
            Some("bills".into()),
            format!("is {}; expected a JSON array of bills", describe(other)),
        )),
        None => errors.push(FieldError::at_path(Some("bills".into()), "is missing")),
    }
    match person {
        Some(person) if errors.is_empty() => Ok(ApplicationRequest { person, bills }),
        _ => {
            let mut names: Vec<&str> = Vec::new();
            for name in errors.iter().filter_map(|error| error.field.as_deref()) {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
            let message = if names.is_empty() {
                "the application is not valid".to_owned()
            } else {
                format!("the application is not valid: see {}", names.join(", "))
            };
            Err(FieldErrors::with_message(&message, errors))
        }
    }
}

fn parse_bill(
    index: usize,
    item: &Value,
    limits: ApplicationLimits,
    errors: &mut Vec<FieldError>,
) -> Option<ApplicationBill> {
    let path = |field: &str| format!("bills[{index}].{field}");
    let Value::Object(fields) = item else {
        errors.push(FieldError::at_path(
            Some(format!("bills[{index}]")),
            format!("is {}; expected a JSON object of bill fields", describe(item)),
        ));
        return None;
    };
    let before = errors.len();
    for key in fields.keys() {
        if !BILL_FIELDS.contains(&key.as_str()) && key != "scan" {
            errors.push(FieldError::at_path(
                Some(path(key)),
                format!(
                    "is not a bill field; the fields are {} and scan",
                    BILL_FIELDS.join(", ")
                ),
            ));
        }
    }
    let mut text = |field: &str| -> Option<&str> {
        match fields.get(field) {
            Some(Value::String(text)) => Some(text),
            Some(Value::Number(_)) if BILL_FIELDS[5..].contains(&field) => {
                errors.push(FieldError::at_path(
                    Some(path(field)),
                    "is a JSON number; send amounts as strings such as \"1234.56\", so that they stay exact",
                ));
                None
            }
            Some(other) => {
                errors.push(FieldError::at_path(
                    Some(path(field)),
                    format!("is {}; expected a JSON string", describe(other)),
                ));
                None
            }
            None => {
                errors.push(FieldError::at_path(Some(path(field)), "is missing"));
                None
            }
        }
    };
    let texts: Vec<Option<String>> = BILL_FIELDS
        .iter()
        .map(|field| text(field).map(str::to_owned))
        .collect();
    let mut check =
        |field: &str, message: String| errors.push(FieldError::at_path(Some(path(field)), message));
    let invoice_no = texts[0].as_deref().and_then(|text| {
        InvoiceNo::parse(text)
            .map_err(|error| check("invoice_no", error.to_string()))
            .ok()
    });
    let hospital = texts[1].as_deref().and_then(|text| {
        Hospital::parse(text)
            .map_err(|error| check("hospital", error.to_string()))
            .ok()
    });
    let visit_type = match texts[2].as_deref() {
        Some("") => {
            check("visit_type", "is empty; expected a visit type".into());
            None
        }
        other => other.map(str::to_owned),
    };
    let service_date = texts[3].as_deref().and_then(|text| {
        Date::parse(text)
            .map_err(|error| check("service_date", error.to_string()))
            .ok()
    });
    let settled_at = texts[4].as_deref().and_then(|text| {
        Timestamp::parse(text)
            .map_err(|error| check("settled_at", error.to_string()))
            .ok()
    });
    let mut amounts = [Fen::ZERO; 4];
    for (slot, field) in BILL_FIELDS[5..].iter().enumerate() {
        if let Some(text) = texts[5 + slot].as_deref() {
            match Fen::parse_yuan(text) {
                Ok(amount) if amount < Fen::ZERO => check(field, "is negative; amounts are 0 or more".into()),
                Ok(amount) => amounts[slot] = amount,
                Err(error) => check(field, error.to_string()),
            }
        }
    }
    let scan = match fields.get("scan") {
        None | Some(Value::Null) => None,
        Some(value) => parse_scan(value, limits, &path("scan"), errors),
    };
    if errors.len() > before {
        return None;
    }
    Some(ApplicationBill {
        invoice_no: invoice_no?,
        hospital: hospital?,
        visit_type: visit_type?,
        service_date: service_date?,
        settled_at: settled_at?,
        amounts,
        scan,
    })
}

fn parse_scan(
    value: &Value,
    limits: ApplicationLimits,
    path: &str,
    errors: &mut Vec<FieldError>,
) -> Option<Scan> {
    let mut refuse = |message: String| {
        errors.push(FieldError::at_path(Some(path.to_owned()), message));
        None
    };
    let Value::Object(fields) = value else {
        return refuse(format!(
            "is {}; expected an object with media_type and content_base64",
            describe(value)
        ));
    };
    let (Some(Value::String(media_type)), Some(Value::String(content))) =
        (fields.get("media_type"), fields.get("content_base64"))
    else {
        return refuse("needs media_type and content_base64, both strings".into());
    };
    if let Some(key) = fields
        .keys()
        .find(|key| *key != "media_type" && *key != "content_base64")
    {
        return refuse(format!(
            "has {key}, which is not a field of a scan (media_type, content_base64)"
        ));
    }
    let Some((media_type, magic)) = SCAN_TYPES.iter().find(|(name, _)| name == media_type) else {
        return refuse(format!(
            "is of type {media_type}; a scan is one of {}",
            SCAN_TYPES.map(|(name, _)| name).join(", ")
        ));
    };
    // Decoded, a scan is about 3/4 of its text: refuse before decoding.
    if content.len() / 4 * 3 > limits.max_scan_bytes + 3 {
        return refuse(format!("is larger than {} bytes", limits.max_scan_bytes));
    }
    let bytes = match base64::engine::general_purpose::STANDARD.decode(content) {
        Ok(bytes) => bytes,
        Err(error) => return refuse(format!("content_base64 is not base64: {error}")),
    };
    if bytes.len() > limits.max_scan_bytes {
        return refuse(format!("is larger than {} bytes", limits.max_scan_bytes));
    }
    if bytes.is_empty() {
        return refuse("is empty".into());
    }
    if !bytes.starts_with(magic) {
        return refuse(format!(
            "is declared {media_type} but its content is not a {media_type} file"
        ));
    }
    Some(Scan { media_type, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bill(extra: &str) -> String {
        format!(
            r#"{{"invoice_no":"OUT-1","hospital":"外市医院","visit_type":"inpatient","service_date":"2024-03-05",
            "settled_at":"2024-03-09T10:22:31+08:00","total":"1000.00","fund_paid":"600","in_scope_self_pay":"300.5",
            "out_of_scope_self_pay":"99.50"{extra}}}"#
        )
    }

    fn body(bills: &[String]) -> String {
        format!(
            r#"{{"person_id":"11010519491231002X","bills":[{}]}}"#,
            bills.join(",")
        )
    }

    fn fields(error: &FieldErrors) -> Vec<String> {
        error
            .errors()
            .iter()
            .filter_map(|error| error.field.clone())
            .collect()
    }

    #[test]
    fn a_valid_submission_is_read_with_its_amounts() {
        let request =
            parse_application_request(body(&[bill("")]).as_bytes(), ApplicationLimits::default()).unwrap();
        assert_eq!(request.bills.len(), 1);
        assert_eq!(request.bills[0].amounts[2], Fen::from_fen(30_050));
        assert!(request.bills[0].scan.is_none());
    }

    #[test]
    fn amounts_that_do_not_add_up_are_not_refused_here() {
        let text = bill("").replace("\"600\"", "\"601\"");
        let request =
            parse_application_request(body(&[text]).as_bytes(), ApplicationLimits::default()).unwrap();
        assert_eq!(request.bills[0].amounts[1], Fen::from_fen(60_100));
    }

    #[test]
    fn every_problem_is_named_by_its_path() {
        let second = bill("")
            .replace("2024-03-05", "2024-02-30")
            .replace("\"600\"", "600");
        let error = parse_application_request(
            body(&[bill(r#","colour":"red""#), second]).as_bytes(),
            ApplicationLimits::default(),
        )
        .unwrap_err();
        assert_eq!(
            fields(&error),
            ["bills[0].colour", "bills[1].fund_paid", "bills[1].service_date"]
        );
        assert!(
            error.message().contains("bills[1].service_date"),
            "{}",
            error.message()
        );
    }

    #[test]
    fn a_scan_must_be_what_it_says_and_not_too_large() {
        let png = base64::engine::general_purpose::STANDARD.encode(b"\x89PNG\r\n\x1a\nrest");
        let good = bill(&format!(
            r#","scan":{{"media_type":"image/png","content_base64":"{png}"}}"#
        ));
        let request =
            parse_application_request(body(&[good]).as_bytes(), ApplicationLimits::default()).unwrap();
        assert_eq!(request.bills[0].scan.as_ref().unwrap().media_type, "image/png");

        let lying = bill(&format!(
            r#","scan":{{"media_type":"application/pdf","content_base64":"{png}"}}"#
        ));
        let error =
            parse_application_request(body(&[lying]).as_bytes(), ApplicationLimits::default()).unwrap_err();
        assert_eq!(fields(&error), ["bills[0].scan"]);
        assert!(error.errors()[0].message.contains("not a application/pdf"));

        let exe = base64::engine::general_purpose::STANDARD.encode(b"MZ\x90\x00");
        let other = bill(&format!(
            r#","scan":{{"media_type":"application/x-msdownload","content_base64":"{exe}"}}"#
        ));
        assert!(parse_application_request(body(&[other]).as_bytes(), ApplicationLimits::default()).is_err());

        let big =
            base64::engine::general_purpose::STANDARD.encode([0xFF, 0xD8, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let large = bill(&format!(
            r#","scan":{{"media_type":"image/jpeg","content_base64":"{big}"}}"#
        ));
        let limits = ApplicationLimits {
            max_bills: 5,
            max_scan_bytes: 8,
        };
        let error = parse_application_request(body(&[large]).as_bytes(), limits).unwrap_err();
        assert!(error.errors()[0].message.contains("larger than 8 bytes"));
    }

    #[test]
    fn no_bills_or_too_many_are_refused() {
        let empty =
            parse_application_request(body(&[]).as_bytes(), ApplicationLimits::default()).unwrap_err();
        assert_eq!(fields(&empty), ["bills"]);
        let limits = ApplicationLimits {
            max_bills: 1,
            max_scan_bytes: 8,
        };
        let many = parse_application_request(body(&[bill(""), bill("")]).as_bytes(), limits).unwrap_err();
        assert!(many.errors()[0].message.contains("at most 1"));
        let broken = parse_application_request(b"{\"person_id\":", ApplicationLimits::default()).unwrap_err();
        assert!(broken.is_malformed_body());
    }
}
