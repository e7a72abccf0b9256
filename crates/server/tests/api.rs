//! The settlement API over HTTP: each test starts the real server on port
//! 0 over a fresh SQLite store with the example policy, the small fixture's
//! spells and an API key for each of its hospitals.

use std::collections::BTreeMap;

use jiuzhu_formats::{parse_policy, read_invoice_records, read_spell_rows};
use jiuzhu_server::{served_routes, ServerSettings};
use jiuzhu_store::{DataKeys, FeedOptions, SpellFile, Store};
use reqwest::StatusCode;
use serde_json::{json, Value};

mod common;
use common::read;

const POLICY: &str = "fixtures/example-policy.toml";
const SPELLS: &str = "crates/cli/tests/data/small/spells.csv";

/// The fixture's full resident ID numbers: none may appear in a response.
const RESIDENT_IDS: [&str; 5] = [
    "110105196001010017",
    "110105196001010025",
    "110105196001010033",
    "110105196001010041",
    "11010519600101005X",
];

/// The fixture's hospital that INV003 names.
const CITY_HOSPITAL: &str = "市第一人民医院";

struct TestApp {
    address: String,
    /// An API key for each hospital of the fixture.
    keys: BTreeMap<String, String>,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

struct Setup {
    max_body_bytes: usize,
    load_policy: bool,
    /// An insurance feed (invoices CSV) imported before the server starts.
    feed: Option<&'static str>,
}

impl Default for Setup {
    fn default() -> Setup {
        Setup {
            max_body_bytes: 64 * 1024,
            load_policy: true,
            feed: None,
        }
    }
}

async fn spawn_app() -> TestApp {
    spawn_app_with(Setup::default()).await
}

async fn spawn_app_with(setup: Setup) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("jiuzhu.db").display());
    let store = Store::open(&url, DataKeys::from_bytes([7; 32], [9; 32]), 4)
        .await
        .unwrap();
    let policy = parse_policy(POLICY, &read(POLICY)).unwrap();
    if setup.load_policy {
        store.load_policy(&read(POLICY), &policy, "admin").await.unwrap();
    }
    let bytes = read(SPELLS);
    let rows = read_spell_rows(SPELLS, bytes.as_bytes(), Some(&policy)).unwrap();
    let file = SpellFile::new("民政", SPELLS, bytes.as_bytes(), &rows);
    store.import_spells(&file, "admin").await.unwrap();
    let mut keys = BTreeMap::new();
    for hospital in ["H001", "H002", "H003", CITY_HOSPITAL] {
        let key = store.create_api_key(hospital, "admin").await.unwrap();
        keys.insert(hospital.to_owned(), key.into_string());
    }
    if let Some(feed) = setup.feed {
        let known: Vec<String> = policy
            .visit_types()
            .iter()
            .map(|(name, _)| name.clone())
            .collect();
        let records = read_invoice_records(feed, read(feed).as_bytes(), &known).unwrap();
        store
            .import_invoices(feed, records, "admin", FeedOptions::default(), &|_| {})
            .await
            .unwrap();
    }
    let settings = ServerSettings {
        max_body_bytes: setup.max_body_bytes,
        ..common::settings()
    };
    let address = common::serve(store, settings).await;
    TestApp {
        address,
        keys,
        client: reqwest::Client::new(),
        _dir: dir,
    }
}

/// INV003 of the small fixture: ZCX inpatient at 市第一人民医院, 1,000
/// deductible then 70% of 500: 350.00.
fn inv003() -> Value {
    json!({
        "invoice_no": "INV003",
        "person_id": "110105196001010025",
        "hospital": CITY_HOSPITAL,
        "visit_type": "inpatient",
        "service_date": "2024-05-01",
        "settled_at": "2024-05-02T08:00:00Z",
        "total": "3000",
        "fund_paid": "1000",
        "in_scope_self_pay": "1500",
        "out_of_scope_self_pay": "500"
    })
}

/// A response, read whole, with a check that it carries no resident ID.
struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|error| panic!("{error}: {}", self.text))
    }

    fn replayed(&self) -> Option<&str> {
        self.headers
            .get("jiuzhu-replayed")
            .map(|value| value.to_str().unwrap())
    }
}

impl TestApp {
    async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        for id in RESIDENT_IDS {
            assert!(!text.contains(id), "{id} is in a response: {text}");
            assert!(
                !text.contains(&id.to_lowercase()),
                "{id} is in a response: {text}"
            );
        }
        Answer {
            status,
            headers,
            text,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    async fn settle(&self, hospital: &str, body: &Value) -> Answer {
        self.settle_raw(hospital, body.to_string()).await
    }

    async fn settle_raw(&self, hospital: &str, body: String) -> Answer {
        let request = self
            .client
            .post(self.url("/api/v1/settlements"))
            .bearer_auth(&self.keys[hospital])
            .header("content-type", "application/json")
            .body(body);
        self.send(request).await
    }

    async fn read_back(&self, hospital: &str, invoice_no: &str) -> Answer {
        let request = self
            .client
            .get(self.url(&format!("/api/v1/settlements/{invoice_no}")))
            .bearer_auth(&self.keys[hospital]);
        self.send(request).await
    }

    async fn reverse(&self, hospital: &str, invoice_no: &str) -> Answer {
        let request = self
            .client
            .post(self.url(&format!("/api/v1/settlements/{invoice_no}/reversal")))
            .bearer_auth(&self.keys[hospital]);
        self.send(request).await
    }

    async fn get(&self, path: &str) -> Answer {
        self.send(self.client.get(self.url(path))).await
    }
}

fn assert_error_body(answer: &Answer, status: StatusCode, error: &str) -> Value {
    assert_eq!(answer.status, status, "{}", answer.text);
    let body = answer.json();
    assert_eq!(body["error"], error, "{body}");
    assert!(body["message"]
        .as_str()
        .is_some_and(|message| !message.is_empty()));
    assert!(body["fields"].is_array(), "{body}");
    body
}

#[tokio::test]
async fn a_valid_settlement_is_decided_and_answered_with_the_amount() {
    let app = spawn_app().await;
    let answer = app.settle(CITY_HOSPITAL, &inv003()).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.replayed(), None);
    let body = answer.json();
    assert_eq!(body["invoice_no"], "INV003");
    assert_eq!(body["outcome"], "assisted");
    assert_eq!(body["category"], "ZCX");
    assert_eq!(body["pool"], "inpatient");
    assert_eq!(body["deductible_applied"], "1000.00");
    assert_eq!(body["amount"], "350.00");
    assert!(body.get("person_id").is_none());
    assert!(body["explanation"]["text"]
        .as_array()
        .is_some_and(|text| !text.is_empty()));
}

#[tokio::test]
async fn the_same_body_again_gets_the_same_answer_marked_as_replayed() {
    let app = spawn_app().await;
    let first = app.settle(CITY_HOSPITAL, &inv003()).await;
    assert_eq!(first.status, StatusCode::OK);
    // The same invoice written differently (amounts, key order) is the same body.
    let mut same = inv003();
    same["total"] = json!("3000.00");
    let second = app.settle(CITY_HOSPITAL, &same).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.text);
    assert_eq!(second.replayed(), Some("true"));
    assert_eq!(second.json(), first.json());
}

#[tokio::test]
async fn a_different_body_under_a_settled_number_is_refused_with_409_and_changes_nothing() {
    let app = spawn_app().await;
    let first = app.settle(CITY_HOSPITAL, &inv003()).await;
    let mut changed = inv003();
    changed["settled_at"] = json!("2024-05-03T08:00:00Z");
    let answer = app.settle(CITY_HOSPITAL, &changed).await;
    let body = assert_error_body(&answer, StatusCode::CONFLICT, "conflict");
    assert!(body["message"].as_str().unwrap().contains("INV003"), "{body}");
    let stored = app.read_back(CITY_HOSPITAL, "INV003").await.json();
    assert_eq!(stored["amount"], "350.00");
    assert_eq!(stored["reversed"], false);
    let mut first = first.json();
    first["reversed"] = json!(false);
    assert_eq!(stored, first);
}

#[tokio::test]
async fn a_request_without_a_key_or_with_an_unknown_key_is_refused_with_401() {
    let app = spawn_app().await;
    let url = app.url("/api/v1/settlements");
    let body = inv003().to_string();
    let without = app.send(app.client.post(&url).body(body.clone())).await;
    assert_error_body(&without, StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(without.headers["www-authenticate"], "Bearer");
    let unknown = app
        .send(
            app.client
                .post(&url)
                .bearer_auth("jz_not-a-key")
                .body(body.clone()),
        )
        .await;
    assert_error_body(&unknown, StatusCode::UNAUTHORIZED, "unauthorized");
    let not_bearer = app
        .send(
            app.client
                .post(&url)
                .basic_auth(CITY_HOSPITAL, Some(&app.keys[CITY_HOSPITAL]))
                .body(body),
        )
        .await;
    assert_error_body(&not_bearer, StatusCode::UNAUTHORIZED, "unauthorized");
    let read_back = app
        .send(app.client.get(app.url("/api/v1/settlements/INV003")))
        .await;
    assert_error_body(&read_back, StatusCode::UNAUTHORIZED, "unauthorized");
    let reversal = app
        .send(app.client.post(app.url("/api/v1/settlements/INV003/reversal")))
        .await;
    assert_error_body(&reversal, StatusCode::UNAUTHORIZED, "unauthorized");
    // Nothing was settled.
    let stored = app.read_back(CITY_HOSPITAL, "INV003").await;
    assert_eq!(stored.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_invoice_of_another_hospital_is_refused_with_403() {
    let app = spawn_app().await;
    let answer = app.settle("H001", &inv003()).await;
    assert_error_body(&answer, StatusCode::FORBIDDEN, "other_hospital");
    assert_eq!(
        app.read_back(CITY_HOSPITAL, "INV003").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_body_that_is_not_json_is_refused_with_400_and_the_error_body() {
    let app = spawn_app().await;
    let answer = app
        .settle_raw(CITY_HOSPITAL, "{\"invoice_no\": \"INV003\",".to_owned())
        .await;
    let body = assert_error_body(&answer, StatusCode::BAD_REQUEST, "invalid_request");
    let fields = body["fields"].as_array().unwrap();
    assert_eq!(fields.len(), 1, "{body}");
    assert_eq!(fields[0]["field"], Value::Null);
    assert_eq!(fields[0]["line"], 1);
    assert!(fields[0]["column"].as_u64().is_some());
    // Not an object: still 400, and an ID number sent is not echoed.
    let answer = app
        .settle_raw(CITY_HOSPITAL, "\"110105196001010025\"".to_owned())
        .await;
    let body = assert_error_body(&answer, StatusCode::BAD_REQUEST, "invalid_request");
    assert!(body.to_string().contains("110105********0025"), "{body}");
}

#[tokio::test]
async fn an_invalid_field_is_refused_with_422_naming_it() {
    let app = spawn_app().await;
    let mut bad = inv003();
    bad["total"] = json!(3000);
    bad["person_id"] = json!("110105196001010026");
    let answer = app.settle(CITY_HOSPITAL, &bad).await;
    let body = assert_error_body(&answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    let named: Vec<&str> = body["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|field| field["field"].as_str().unwrap())
        .collect();
    assert_eq!(named, ["person_id", "total"], "{body}");

    let mut unknown_visit = inv003();
    unknown_visit["visit_type"] = json!("dental");
    let answer = app.settle(CITY_HOSPITAL, &unknown_visit).await;
    let body = assert_error_body(&answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    assert_eq!(body["fields"][0]["field"], "visit_type", "{body}");
}

#[tokio::test]
async fn a_hospital_reads_back_its_own_settlement_and_not_another_hospitals() {
    let app = spawn_app().await;
    let settled = app.settle(CITY_HOSPITAL, &inv003()).await.json();
    let own = app.read_back(CITY_HOSPITAL, "INV003").await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.text);
    let own = own.json();
    assert_eq!(own["reversed"], false);
    assert_eq!(own["amount"], settled["amount"]);
    assert_eq!(own["explanation"], settled["explanation"]);
    let other = app.read_back("H001", "INV003").await;
    assert_error_body(&other, StatusCode::NOT_FOUND, "not_found");
    let never = app.read_back(CITY_HOSPITAL, "INV999").await;
    assert_error_body(&never, StatusCode::NOT_FOUND, "not_found");
    let invalid = app.read_back(CITY_HOSPITAL, "no%20such").await;
    assert_error_body(&invalid, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn a_bill_from_the_insurance_feed_reads_back_replays_and_reverses_as_a_real_time_one() {
    let app = spawn_app_with(Setup {
        feed: Some("crates/cli/tests/data/small/invoices.csv"),
        ..Setup::default()
    })
    .await;
    let own = app.read_back(CITY_HOSPITAL, "INV003").await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.text);
    let own = own.json();
    assert_eq!(own["invoice_no"], "INV003");
    assert_eq!(own["outcome"], "assisted");
    assert_eq!(own["amount"], "350.00");
    assert_eq!(own["reversed"], false);
    assert_error_body(
        &app.read_back("H001", "INV003").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    // The hospital sends the same bill at its counter afterwards: the
    // feed's answer, not a second decision.
    let again = app.settle(CITY_HOSPITAL, &inv003()).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_eq!(again.replayed(), Some("true"));
    assert_eq!(again.json()["explanation"], own["explanation"]);
    let reversed = app.reverse(CITY_HOSPITAL, "INV003").await;
    assert_eq!(reversed.status, StatusCode::OK, "{}", reversed.text);
    assert_eq!(
        app.read_back(CITY_HOSPITAL, "INV003").await.json()["reversed"],
        true
    );
    // A not-eligible bill of the feed reads back too.
    let not_eligible = app.read_back("H002", "INV005").await.json();
    assert_eq!(not_eligible["outcome"], "not_eligible");
    assert_eq!(not_eligible["amount"], "0.00");
}

#[tokio::test]
async fn a_reversal_is_answered_once_and_refused_the_second_time() {
    let app = spawn_app().await;
    app.settle(CITY_HOSPITAL, &inv003()).await;
    assert_error_body(
        &app.reverse("H001", "INV003").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let reversed = app.reverse(CITY_HOSPITAL, "INV003").await;
    assert_eq!(reversed.status, StatusCode::OK, "{}", reversed.text);
    let reversed = reversed.json();
    assert_eq!(reversed["reversed"], true);
    assert_eq!(reversed["amount"], "350.00");
    let again = app.reverse(CITY_HOSPITAL, "INV003").await;
    assert_error_body(&again, StatusCode::CONFLICT, "already_reversed");
    assert_eq!(
        app.read_back(CITY_HOSPITAL, "INV003").await.json()["reversed"],
        true
    );
    assert_error_body(
        &app.reverse(CITY_HOSPITAL, "INV999").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}

#[tokio::test]
async fn without_a_policy_a_settlement_is_refused_with_503() {
    let app = spawn_app_with(Setup {
        load_policy: false,
        ..Setup::default()
    })
    .await;
    let answer = app.settle(CITY_HOSPITAL, &inv003()).await;
    assert_error_body(&answer, StatusCode::SERVICE_UNAVAILABLE, "no_policy");
}

#[tokio::test]
async fn the_health_check_answers_ok_when_the_database_answers() {
    let app = spawn_app().await;
    let answer = app.get("/healthz").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.text, "ok");
}

#[tokio::test]
async fn the_metrics_count_what_was_settled_refused_and_replayed() {
    let app = spawn_app().await;
    app.settle(CITY_HOSPITAL, &inv003()).await;
    app.settle(CITY_HOSPITAL, &inv003()).await;
    app.settle("H001", &inv003()).await;
    let not_eligible = json!({
        "invoice_no": "INV005",
        "person_id": "110105196001010033",
        "hospital": "H002",
        "visit_type": "outpatient",
        "service_date": "2024-05-04",
        "settled_at": "2024-05-04T12:00:00+08:00",
        "total": "100",
        "fund_paid": "50",
        "in_scope_self_pay": "50",
        "out_of_scope_self_pay": "0"
    });
    assert_eq!(
        app.settle("H002", &not_eligible).await.json()["outcome"],
        "not_eligible"
    );
    app.reverse(CITY_HOSPITAL, "INV003").await;
    let answer = app.get("/metrics").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = answer.text;
    for line in [
        "jiuzhu_settlements_total{outcome=\"assisted\"} 1",
        "jiuzhu_settlements_total{outcome=\"not_eligible\"} 1",
        "jiuzhu_settlements_total{outcome=\"capped\"} 0",
        "jiuzhu_settlement_replays_total 1",
        "jiuzhu_settlement_refusals_total{status=\"403\"} 1",
        "jiuzhu_reversals_total 1",
        "jiuzhu_settlement_seconds_bucket{le=\"+Inf\"} 4",
        "jiuzhu_settlement_seconds_count 4",
        // One after the other: each its own transaction; the replay and
        // the refusal wrote nothing.
        "jiuzhu_write_transactions_total 4",
        "jiuzhu_writes_total 3",
    ] {
        assert!(text.lines().any(|got| got == line), "{line} is not in:\n{text}");
    }
    assert!(text.contains("jiuzhu_settlement_seconds_bucket{le=\"0.001\"} "));
    assert!(text.contains("jiuzhu_settlement_seconds_sum "));
}

#[tokio::test]
async fn the_openapi_document_describes_every_route_the_router_serves() {
    let app = spawn_app().await;
    let answer = app.get("/api/v1/openapi.json").await;
    assert_eq!(answer.status, StatusCode::OK);
    let document = answer.json();
    assert_eq!(document["openapi"], "3.1.0");
    assert_eq!(
        document["components"]["securitySchemes"]["apiKey"]["scheme"],
        "bearer"
    );
    for schema in [
        "SettlementRequest",
        "SettlementResponse",
        "StoredSettlement",
        "Error",
    ] {
        assert!(document["components"]["schemas"][schema].is_object(), "{schema}");
    }
    let served = served_routes();
    assert_eq!(served.len(), 17);
    for route in &served {
        assert!(
            document["paths"][route.path][route.method].is_object(),
            "{} {} is not in the document",
            route.method,
            route.path
        );
    }
    // And the document names nothing that is not served.
    let paths = document["paths"].as_object().unwrap();
    let documented: usize = paths.values().map(|item| item.as_object().unwrap().len()).sum();
    assert_eq!(documented, served.len());
    // Every `$ref` resolves.
    let text = document.to_string();
    for reference in text.split("\"$ref\":\"#/").skip(1) {
        let pointer = &reference[..reference.find('"').unwrap()];
        assert!(document.pointer(&format!("/{pointer}")).is_some(), "{pointer}");
    }
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_with_413_and_the_error_body() {
    let app = spawn_app_with(Setup {
        max_body_bytes: 1024,
        ..Setup::default()
    })
    .await;
    let mut large = inv003();
    large["padding"] = json!("x".repeat(2048));
    let answer = app.settle(CITY_HOSPITAL, &large).await;
    assert_error_body(&answer, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    // Within the limit, the same server settles.
    assert_eq!(app.settle(CITY_HOSPITAL, &inv003()).await.status, StatusCode::OK);
}

#[tokio::test]
async fn no_response_carries_a_full_resident_id() {
    // `TestApp::send` checks every response of every test; this one sends
    // the ID numbers where a careless server would echo them.
    let app = spawn_app().await;
    let mut bad_check = inv003();
    bad_check["person_id"] = json!("110105196001010026");
    bad_check["110105196001010025"] = json!("an unknown key");
    let answer = app.settle(CITY_HOSPITAL, &bad_check).await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    let answer = app
        .settle_raw(CITY_HOSPITAL, "[\"110105196001010025\"]".to_owned())
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    let answer = app.read_back(CITY_HOSPITAL, "110105196001010025").await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    app.settle(CITY_HOSPITAL, &inv003()).await;
    app.settle(CITY_HOSPITAL, &inv003()).await;
    app.read_back(CITY_HOSPITAL, "INV003").await;
    app.reverse(CITY_HOSPITAL, "INV003").await;
    app.get("/metrics").await;
}
