//! The departments' feeds API over HTTP: each test starts the real server
//! on port 0 over a fresh SQLite store with the example policy, the small
//! fixture's spells (imported for 民政), an API key for each of its
//! hospitals and one for each of 民政, 残联 and 医保结算.

use std::collections::BTreeMap;

use jiuzhu_core::ResidentId;
use jiuzhu_server::ServerSettings;
use jiuzhu_store::{Store, INSURANCE_SETTLEMENT_DEPARTMENT};
use reqwest::StatusCode;
use serde_json::{json, Value};

mod common;
use common::read;

const INVOICES: &str = "crates/cli/tests/data/small/invoices.csv";
const CITY_HOSPITAL: &str = "市第一人民医院";
const CIVIL_AFFAIRS: &str = "民政";
const DISABILITY: &str = "残联";

/// A valid resident ID whose first 17 characters are `seventeen`.
fn resident_id(seventeen: &str) -> String {
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = seventeen
        .chars()
        .zip(WEIGHTS)
        .map(|(digit, weight)| digit.to_digit(10).unwrap() * weight)
        .sum();
    let check = "10X98765432".as_bytes()[(sum % 11) as usize] as char;
    let id = format!("{seventeen}{check}");
    ResidentId::parse(&id).unwrap();
    id
}

struct TestApp {
    address: String,
    /// Keys by hospital code or department name.
    keys: BTreeMap<String, String>,
    /// The server's store, to look behind the API.
    store: Store,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

struct Answer {
    status: StatusCode,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|error| panic!("{error}: {}", self.text))
    }

    /// The body of a refusal, checked to be the API's error body.
    fn error(&self, status: StatusCode, error: &str) -> Value {
        assert_eq!(self.status, status, "{}", self.text);
        let body = self.json();
        assert_eq!(body["error"], error, "{body}");
        assert!(body["message"]
            .as_str()
            .is_some_and(|message| !message.is_empty()));
        assert!(body["fields"].is_array(), "{body}");
        body
    }
}

async fn spawn_app(max_body_bytes: usize, feed_max_body_bytes: usize) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let (store, policy) = common::store_with_policy(dir.path()).await;
    common::import_small_spells(&store, &policy, CIVIL_AFFAIRS).await;
    let mut keys = BTreeMap::new();
    for hospital in ["H001", "H002", "H003", CITY_HOSPITAL] {
        let key = store.create_api_key(hospital, "admin").await.unwrap();
        keys.insert(hospital.to_owned(), key.into_string());
    }
    for department in [CIVIL_AFFAIRS, DISABILITY, INSURANCE_SETTLEMENT_DEPARTMENT] {
        let key = store.create_department_key(department, "admin").await.unwrap();
        keys.insert(department.to_owned(), key.into_string());
    }
    let settings = ServerSettings {
        max_body_bytes,
        feed_max_body_bytes,
        ..common::settings()
    };
    let address = common::serve(store.clone(), settings).await;
    TestApp {
        address,
        keys,
        store,
        client: reqwest::Client::new(),
        _dir: dir,
    }
}

async fn default_app() -> TestApp {
    spawn_app(64 * 1024, 1024 * 1024).await
}

impl TestApp {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        Answer { status, text }
    }

    /// POSTs `body` of `content_type` to `path` with the key of `whose`.
    async fn push(
        &self,
        path: &str,
        whose: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> Answer {
        let request = self
            .client
            .post(self.url(path))
            .bearer_auth(&self.keys[whose])
            .header("content-type", content_type)
            .body(body);
        self.send(request).await
    }

    async fn spells_csv(&self, whose: &str, file_name: &str, text: &str) -> Answer {
        let path = format!("/api/v1/feeds/spells?file_name={file_name}");
        self.push(&path, whose, "text/csv; charset=utf-8", text.to_owned())
            .await
    }

    async fn decisions(&self, whose: &str, query: &str) -> Answer {
        let request = self
            .client
            .get(self.url(&format!("/api/v1/feeds/decisions{query}")))
            .bearer_auth(&self.keys[whose]);
        self.send(request).await
    }

    async fn audit_entries(&self) -> u64 {
        self.store.verify_audit().await.unwrap().unwrap().entries
    }

    async fn spell_versions(&self, person: &str) -> usize {
        let person = ResidentId::parse(person).unwrap();
        self.store.spell_history(person).await.unwrap().len()
    }
}

/// `(field, line)` of each entry of an error body.
fn problems(body: &Value) -> Vec<(Option<String>, Option<u64>)> {
    body["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| (entry["field"].as_str().map(str::to_owned), entry["line"].as_u64()))
        .collect()
}

#[tokio::test]
async fn spells_pushed_as_csv_are_imported_for_the_keys_department_and_the_same_body_again_changes_nothing() {
    let app = default_app().await;
    let new_person = resident_id("11010519700101001");
    let other = resident_id("11010519700101002");
    let text = format!(
        "person_id,category,valid_from,valid_to,source\n\
         {new_person},DB,2024-01-01,,\n\
         {other},TK,2024-02-01,2024-12-31,民政\n\
         {other},TK,2024-02-01,2024-12-31,民政\n"
    );
    let answer = app.spells_csv(CIVIL_AFFAIRS, "2024-06.csv", &text).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let report = answer.json();
    assert_eq!(report["file_name"], "2024-06.csv");
    assert_eq!(report["source"], CIVIL_AFFAIRS);
    for (field, expected) in [
        ("rows", 3),
        ("added", 2),
        ("changed", 0),
        ("unchanged", 0),
        ("duplicates", 1),
        ("new_persons", 2),
        ("changed_persons", 0),
        ("ended_persons", 0),
        // Neither has a bill stored: no decision to recompute.
        ("marked", 0),
    ] {
        assert_eq!(report[field], expected, "{field}: {report}");
    }
    assert_eq!(report["already_imported"], false);
    let import_id = report["import_id"].as_i64().unwrap();
    let history = app
        .store
        .spell_history(ResidentId::parse(&new_person).unwrap())
        .await
        .unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].source, CIVIL_AFFAIRS);
    assert_eq!(history[0].file_name.as_deref(), Some("2024-06.csv"));

    let entries = app.audit_entries().await;
    let again = app.spells_csv(CIVIL_AFFAIRS, "again.csv", &text).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    let again = again.json();
    assert_eq!(again["already_imported"], true, "{again}");
    assert_eq!(again["import_id"], import_id);
    assert_eq!(again["added"], 0);
    assert_eq!(again["earlier"]["file_name"], "2024-06.csv");
    assert_eq!(again["earlier"]["imported_by"], "department:民政");
    assert_eq!(app.audit_entries().await, entries);
    assert_eq!(app.spell_versions(&new_person).await, 1);

    // Another department sending the same rows is another source.
    let disability = format!("person_id,category,valid_from\n{new_person},ZC,2024-03-01\n");
    let answer = app.spells_csv(DISABILITY, "cl.csv", &disability).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let history = app
        .store
        .spell_history(ResidentId::parse(&new_person).unwrap())
        .await
        .unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[1].source, DISABILITY);
}

#[tokio::test]
async fn spells_pushed_as_json_are_imported_as_a_csv_is() {
    let app = default_app().await;
    let person = resident_id("11010519700101003");
    let body = json!({
        "file_name": "民政-2024-06.json",
        "rows": [
            { "person_id": person, "category": "DB", "valid_from": "2024-01-01", "valid_to": null },
            { "person_id": person, "category": "TK", "valid_from": "2024-07-01", "valid_to": "", "source": "民政" }
        ]
    });
    let answer = app
        .push(
            "/api/v1/feeds/spells",
            CIVIL_AFFAIRS,
            "application/json",
            body.to_string(),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let report = answer.json();
    assert_eq!(report["file_name"], "民政-2024-06.json");
    assert_eq!(
        (report["rows"].as_u64(), report["added"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(report["new_persons"], 1);
    assert_eq!(app.spell_versions(&person).await, 2);
    // The same body again: already imported.
    let again = app
        .push(
            "/api/v1/feeds/spells",
            CIVIL_AFFAIRS,
            "application/json",
            body.to_string(),
        )
        .await;
    assert_eq!(again.json()["already_imported"], true, "{}", again.text);
    assert_eq!(app.spell_versions(&person).await, 2);
}

#[tokio::test]
async fn a_body_with_bad_rows_is_refused_with_every_problem_by_line_and_field_and_nothing_is_stored() {
    let app = default_app().await;
    let good = resident_id("11010519700101004");
    let entries = app.audit_entries().await;
    let text = format!(
        "person_id,category,valid_from,valid_to,source\n\
         {good},DB,2024-01-01,,\n\
         110105197001010041,DB,2024-01-01,,\n\
         {good},XX,2024-01-01,,\n\
         {good},TK,2024-03-01,2024-02-01,\n\
         {good},ZC,2024-01-01,,残联\n"
    );
    let answer = app.spells_csv(CIVIL_AFFAIRS, "bad.csv", &text).await;
    let body = answer.error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    assert_eq!(
        problems(&body),
        [
            (Some("person_id".to_owned()), Some(3)),
            (Some("category".to_owned()), Some(4)),
            (Some("valid_to".to_owned()), Some(5)),
            (Some("source".to_owned()), Some(6)),
        ],
        "{body}"
    );
    assert!(body["message"].as_str().unwrap().contains("4 problems"), "{body}");
    assert!(
        body["fields"][3]["message"].as_str().unwrap().contains("残联"),
        "{body}"
    );
    // An ID number in a message is masked.
    assert!(!answer.text.contains("110105197001010041"), "{}", answer.text);
    assert_eq!(app.audit_entries().await, entries);
    assert_eq!(app.spell_versions(&good).await, 0);

    // Rows of one body that overlap: refused by the import, naming both.
    let overlapping = format!(
        "person_id,category,valid_from,valid_to\n{good},DB,2024-01-01,2024-06-30\n{good},DB,2024-06-01,\n"
    );
    let body = app
        .spells_csv(CIVIL_AFFAIRS, "overlap.csv", &overlapping)
        .await
        .error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    assert!(!problems(&body).is_empty(), "{body}");
    assert_eq!(app.audit_entries().await, entries);

    // JSON: the row's position is its line.
    let json_body = json!({ "rows": [
        { "person_id": good, "category": "DB", "valid_from": "2024-01-01" },
        { "person_id": good, "category": "DB", "valid_from": 20240101, "note": "x" },
        { "person_id": good, "category": "TK", "valid_from": "2024-01-01", "source": "残联" }
    ]});
    let body = app
        .push(
            "/api/v1/feeds/spells",
            CIVIL_AFFAIRS,
            "application/json",
            json_body.to_string(),
        )
        .await
        .error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    assert_eq!(
        problems(&body),
        [
            (Some("valid_from".to_owned()), Some(2)),
            (Some("note".to_owned()), Some(2)),
            (Some("source".to_owned()), Some(3)),
        ],
        "{body}"
    );
    // Not JSON of the body's shape: 400 with where the parser stopped.
    let body = app
        .push(
            "/api/v1/feeds/spells",
            CIVIL_AFFAIRS,
            "application/json",
            "[1, 2]",
        )
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_request");
    assert!(body["fields"][0]["line"].as_u64().is_some(), "{body}");
    // A Content-Type the route does not read.
    app.push("/api/v1/feeds/spells", CIVIL_AFFAIRS, "text/html", "<p>")
        .await
        .error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    assert_eq!(app.audit_entries().await, entries);
    assert_eq!(app.spell_versions(&good).await, 0);
}

#[tokio::test]
async fn each_kind_of_key_opens_only_its_own_routes() {
    let app = default_app().await;
    let spells = "person_id,category,valid_from\n110105196001010017,DB,2024-01-01\n";
    // A hospital's key on the feeds: not a department's key.
    app.spells_csv("H001", "h.csv", spells)
        .await
        .error(StatusCode::UNAUTHORIZED, "unauthorized");
    app.decisions("H001", "")
        .await
        .error(StatusCode::UNAUTHORIZED, "unauthorized");
    let unauthenticated = app.send(app.client.get(app.url("/api/v1/feeds/decisions"))).await;
    unauthenticated.error(StatusCode::UNAUTHORIZED, "unauthorized");
    // A department's key on the settlements: not a hospital's key.
    let settle = app
        .client
        .post(app.url("/api/v1/settlements"))
        .bearer_auth(&app.keys[CIVIL_AFFAIRS])
        .header("content-type", "application/json")
        .body("{}");
    app.send(settle)
        .await
        .error(StatusCode::UNAUTHORIZED, "unauthorized");
    // Bills only from the insurance settlement system.
    let body = app
        .push(
            "/api/v1/feeds/invoices",
            CIVIL_AFFAIRS,
            "text/csv",
            read(INVOICES),
        )
        .await
        .error(StatusCode::FORBIDDEN, "forbidden");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains(INSURANCE_SETTLEMENT_DEPARTMENT),
        "{body}"
    );
    app.push("/api/v1/feeds/invoices", "H001", "text/csv", read(INVOICES))
        .await
        .error(StatusCode::UNAUTHORIZED, "unauthorized");
    // Nothing was decided.
    let read_back = app
        .client
        .get(app.url("/api/v1/settlements/INV003"))
        .bearer_auth(&app.keys[CITY_HOSPITAL]);
    assert_eq!(app.send(read_back).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_insurance_feed_decides_bills_that_their_hospitals_read_back_and_the_same_body_again_changes_nothing(
) {
    let app = default_app().await;
    let answer = app
        .push(
            "/api/v1/feeds/invoices?file_name=feed-2024-06.csv",
            INSURANCE_SETTLEMENT_DEPARTMENT,
            "text/csv",
            read(INVOICES),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let report = answer.json();
    assert_eq!(report["file_name"], "feed-2024-06.csv");
    assert_eq!(report["rows"], 9);
    assert_eq!(report["decided"], 8);
    assert_eq!(report["already_decided"], 0);
    assert_eq!(
        report["duplicates"],
        json!([{ "invoice_no": "INV001", "line": 8, "first_line": 2 }]),
        "{report}"
    );
    assert_eq!(report["refused"], json!([]));
    let read_back = app
        .client
        .get(app.url("/api/v1/settlements/INV003"))
        .bearer_auth(&app.keys[CITY_HOSPITAL]);
    let stored = app.send(read_back).await;
    assert_eq!(stored.status, StatusCode::OK, "{}", stored.text);
    let stored = stored.json();
    assert_eq!(stored["outcome"], "assisted");
    assert_eq!(stored["amount"], "350.00");

    let entries = app.audit_entries().await;
    let again = app
        .push(
            "/api/v1/feeds/invoices",
            INSURANCE_SETTLEMENT_DEPARTMENT,
            "text/csv",
            read(INVOICES),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    let again = again.json();
    assert_eq!(
        (again["decided"].as_u64(), again["already_decided"].as_u64()),
        (Some(0), Some(8))
    );
    assert_eq!(app.audit_entries().await, entries);

    // JSON rows, each a settlement request's body; a bad one refuses all.
    let bill = |number: &str, total: &str| {
        json!({
            "invoice_no": number, "person_id": "110105196001010017", "hospital": "H001",
            "visit_type": "outpatient", "service_date": "2024-06-01",
            "settled_at": "2024-06-01T09:00:00+08:00", "total": total, "fund_paid": "0",
            "in_scope_self_pay": "100", "out_of_scope_self_pay": "0"
        })
    };
    let bad = json!({ "rows": [bill("J001", "100"), bill("J002", "99")] });
    let body = app
        .push(
            "/api/v1/feeds/invoices",
            INSURANCE_SETTLEMENT_DEPARTMENT,
            "application/json",
            bad.to_string(),
        )
        .await
        .error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    assert_eq!(problems(&body), [(Some("total".to_owned()), Some(2))], "{body}");
    let good = json!({ "file_name": "j.json", "rows": [bill("J001", "100")] });
    let answer = app
        .push(
            "/api/v1/feeds/invoices",
            INSURANCE_SETTLEMENT_DEPARTMENT,
            "application/json",
            good.to_string(),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.json()["decided"], 1);
    let read_back = app
        .client
        .get(app.url("/api/v1/settlements/J001"))
        .bearer_auth(&app.keys["H001"]);
    assert_eq!(app.send(read_back).await.status, StatusCode::OK);

    // A bill stored before with other amounts refuses the body, naming it.
    let conflict = read(INVOICES).replace("INV003,110105196001010025,市第一人民医院,inpatient,2024-05-01,2024-05-02T08:00:00Z,3000,1000,1500,500", "INV003,110105196001010025,市第一人民医院,inpatient,2024-05-01,2024-05-02T08:00:00Z,3000,1500,1000,500");
    assert_ne!(conflict, read(INVOICES));
    let body = app
        .push(
            "/api/v1/feeds/invoices",
            INSURANCE_SETTLEMENT_DEPARTMENT,
            "text/csv",
            conflict,
        )
        .await
        .error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    assert_eq!(
        problems(&body),
        [(Some("invoice_no".to_owned()), Some(4))],
        "{body}"
    );
}

#[tokio::test]
async fn a_department_pulls_the_decisions_about_its_people_page_by_page() {
    let app = default_app().await;
    let feed = app
        .push(
            "/api/v1/feeds/invoices",
            INSURANCE_SETTLEMENT_DEPARTMENT,
            "text/csv",
            read(INVOICES),
        )
        .await;
    assert_eq!(feed.status, StatusCode::OK, "{}", feed.text);
    let reversal = app
        .client
        .post(app.url("/api/v1/settlements/INV003/reversal"))
        .bearer_auth(&app.keys[CITY_HOSPITAL]);
    assert_eq!(app.send(reversal).await.status, StatusCode::OK);

    // 民政 reported every person of the fixture but 110105196001010033
    // (INV005's): 7 decisions and INV003's reversal, 3 a page.
    let mut pulled: Vec<Value> = Vec::new();
    let mut query = "?limit=3".to_owned();
    let mut pages = 0;
    loop {
        let answer = app.decisions(CIVIL_AFFAIRS, &query).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        let page = answer.json();
        let decisions = page["decisions"].as_array().unwrap();
        assert!(decisions.len() <= 3);
        pulled.extend(decisions.iter().cloned());
        pages += 1;
        let cursor = page["next_cursor"].as_str().unwrap();
        query = format!("?limit=3&since={cursor}");
        if page["has_more"] == false {
            break;
        }
    }
    assert_eq!(pages, 3);
    let seen: Vec<(&str, &str)> = pulled
        .iter()
        .map(|item| {
            (
                item["invoice_no"].as_str().unwrap(),
                item["kind"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(seen.len(), 8, "{seen:?}");
    assert!(!seen.iter().any(|(number, _)| *number == "INV005"), "{seen:?}");
    assert_eq!(seen.last(), Some(&("INV003", "reversal")));
    let inv003 = pulled
        .iter()
        .find(|item| item["invoice_no"] == "INV003" && item["kind"] == "decision")
        .unwrap();
    assert_eq!(inv003["person_id"], "110105196001010025");
    assert_eq!(inv003["hospital"], CITY_HOSPITAL);
    assert_eq!(inv003["amount"], "350.00");
    assert_eq!(inv003["base"], "1500.00");
    assert_eq!(inv003["category"], "ZCX");
    assert_eq!(inv003["policy_version"], "2024-01-01");
    assert_eq!(inv003["year"], 2024);
    let not_assisted = pulled
        .iter()
        .find(|item| item["outcome"] == "no_rule" || item["outcome"] == "not_eligible");
    if let Some(item) = not_assisted {
        assert_eq!(item["base"], "0.00", "{item}");
    }
    // Nothing new: an empty page that keeps the cursor.
    let last = app.decisions(CIVIL_AFFAIRS, &query).await.json();
    assert_eq!(last["decisions"], json!([]));
    assert_eq!(
        format!("?limit=3&since={}", last["next_cursor"].as_str().unwrap()),
        query
    );
    // 残联 reported only 11010519600101005X (INV008's).
    let disability = app.decisions(DISABILITY, "").await.json();
    let numbers: Vec<&str> = disability["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["invoice_no"].as_str().unwrap())
        .collect();
    assert_eq!(numbers, ["INV008"]);
    assert_eq!(disability["decisions"][0]["person_id"], "11010519600101005X");

    for bad in ["?since=abc", "?since=-1", "?limit=0", "?limit=5001", "?limit=x"] {
        app.decisions(CIVIL_AFFAIRS, bad)
            .await
            .error(StatusCode::BAD_REQUEST, "invalid_request");
    }
}

#[tokio::test]
async fn feeds_take_bodies_up_to_their_own_limit() {
    let app = spawn_app(1024, 4096).await;
    let mut text = String::from("person_id,category,valid_from\n");
    for n in 0..40 {
        text.push_str(&format!(
            "{},DB,2024-01-01\n",
            resident_id(&format!("110105198001{n:05}"))
        ));
    }
    assert!(text.len() > 1024 && text.len() < 4096);
    let answer = app.spells_csv(CIVIL_AFFAIRS, "within.csv", &text).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.json()["added"], 40);
    let large = text.repeat(4);
    app.spells_csv(CIVIL_AFFAIRS, "large.csv", &large)
        .await
        .error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
}

#[tokio::test]
async fn the_openapi_document_describes_the_feeds_bodies_and_answers() {
    let app = default_app().await;
    let document = app
        .send(app.client.get(app.url("/api/v1/openapi.json")))
        .await
        .json();
    let xlsx = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
    for path in ["/api/v1/feeds/spells", "/api/v1/feeds/invoices"] {
        let content = &document["paths"][path]["post"]["requestBody"]["content"];
        for media_type in ["application/json", "text/csv", xlsx] {
            assert!(content[media_type].is_object(), "{path} {media_type}: {content}");
        }
        assert!(document["paths"][path]["post"]["responses"]["422"].is_object());
    }
    let decisions = &document["paths"]["/api/v1/feeds/decisions"]["get"];
    assert!(decisions["description"]
        .as_str()
        .unwrap()
        .contains("disbursement"));
    for schema in [
        "SpellsBody",
        "InvoicesBody",
        "SpellsReport",
        "InvoicesReport",
        "DecisionsPage",
        "SharedDecision",
    ] {
        assert!(document["components"]["schemas"][schema].is_object(), "{schema}");
    }
}
