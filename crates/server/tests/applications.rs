//! The applications API over HTTP (救助申请, 智能受理, 救助审核): the real
//! server on port 0 over a fresh SQLite store with the example policy, the
//! small fixture's spells, a published commitment letter and staff with
//! their tokens.

use std::collections::BTreeMap;

use jiuzhu_server::{ApplicationSettings, ServerSettings};
use jiuzhu_store::Role;
use reqwest::StatusCode;
use serde_json::{json, Value};

mod common;

const PERSON: &str = "110105196001010017";

struct TestApp {
    address: String,
    /// A token per member of staff: clerk (reviewer too), reviewer, auditor.
    tokens: BTreeMap<&'static str, String>,
    hospital_key: String,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn spawn_app() -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let (store, policy) = common::store_with_policy(dir.path()).await;
    common::import_small_spells(&store, &policy, "民政").await;
    let mut tokens = BTreeMap::new();
    for (name, role) in [
        ("clerk", Role::Reviewer),
        ("reviewer", Role::Reviewer),
        ("auditor", Role::Auditor),
    ] {
        tokens.insert(name, store.add_staff(name, &[role], "admin").await.unwrap());
    }
    let hospital_key = store.create_api_key("H001", "admin").await.unwrap().into_string();
    store
        .publish_letter("2024-01", "本人承诺所提交的票据真实有效。", "admin")
        .await
        .unwrap();
    let settings = ServerSettings {
        applications: ApplicationSettings {
            max_body_bytes: 256 * 1024,
            ..ApplicationSettings::default()
        },
        ..common::settings()
    };
    let address = common::serve(store, settings).await;
    TestApp {
        address,
        tokens,
        hospital_key,
        client: reqwest::Client::new(),
        _dir: dir,
    }
}

impl TestApp {
    async fn send(
        &self,
        who: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let token = self.tokens.get(who).cloned().unwrap_or_else(|| who.to_owned());
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.address))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(!text.contains(PERSON), "a full resident ID in an answer: {text}");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn post(&self, who: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(who, reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, who: &str, path: &str) -> (StatusCode, Value) {
        self.send(who, reqwest::Method::GET, path, None).await
    }

    async fn sign(&self) {
        let (status, letter) = self.get("nobody", "/api/v1/commitment-letter").await;
        assert_eq!(status, StatusCode::OK);
        let (status, signed) = self
            .post(
                "clerk",
                "/api/v1/commitment-signatures",
                json!({"person_id": PERSON, "sha256": letter["sha256"], "channel": "counter"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{signed}");
        assert_eq!(signed["version"], "2024-01");
    }
}

fn bill(number: &str, date: &str, amounts: [&str; 4]) -> Value {
    json!({
        "invoice_no": number, "hospital": "外市医院", "visit_type": "inpatient", "service_date": date,
        "settled_at": format!("{date}T16:00:00+08:00"), "total": amounts[0], "fund_paid": amounts[1],
        "in_scope_self_pay": amounts[2], "out_of_scope_self_pay": amounts[3],
    })
}

#[tokio::test]
async fn a_clerk_submits_for_a_person_who_signed_and_a_clean_application_is_decided_at_once() {
    let app = spawn_app().await;
    let application = json!({"person_id": PERSON, "bills": [bill("OUT001", "2026-03-10", ["10000", "7000", "2500", "500"])]});
    // Not signed yet: refused with 409, nothing stored.
    let (status, body) = app
        .post("clerk", "/api/v1/applications", application.clone())
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"], "refused");
    assert!(body["message"].as_str().unwrap().contains("commitment letter"));

    app.sign().await;
    let (status, body) = app.post("clerk", "/api/v1/applications", application).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["state"], "decided");
    assert_eq!(body["findings"], 0);
    assert_eq!(body["person"], "110105********0017");
    assert_eq!(body["bills"][0]["status"], "decided");
    assert_eq!(body["bills"][0]["outcome"], "assisted");
    assert_eq!(body["checks"].as_array().unwrap().len(), 7);
    let states: Vec<&str> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["submitted", "accepted", "decided"]);

    // The prefill now knows the bill and the application.
    let (status, prefill) = app
        .post(
            "clerk",
            "/api/v1/applications/prefill",
            json!({"person_id": PERSON}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(prefill["signed_current_letter"], true);
    assert_eq!(prefill["bills"][0]["invoice_no"], "OUT001");
    assert_eq!(prefill["bills"][0]["channel"], "application");
    assert_eq!(prefill["applications"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn findings_go_to_the_queue_and_only_another_reviewer_decides() {
    let app = spawn_app().await;
    app.sign().await;
    let png = jiuzhu_store::scan_base64(b"\x89PNG\r\n\x1a\nscan");
    let mut with_scan = bill("OUT002", "2026-04-01", ["100", "70", "25", "5"]);
    with_scan["scan"] = json!({"media_type": "image/png", "content_base64": png});
    let application = json!({"person_id": PERSON, "bills": [
        with_scan,
        bill("OUT003", "2026-04-02", ["100", "70", "25", "6"]),
    ]});
    let (status, body) = app.post("clerk", "/api/v1/applications", application).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["state"], "needs_review");
    let id = body["id"].as_i64().unwrap();
    let failed: Vec<(i64, &str)> = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|check| check["passed"] == false)
        .map(|check| (check["line"].as_i64().unwrap(), check["check"].as_str().unwrap()))
        .collect();
    assert_eq!(failed, [(2, "amounts_add_up")]);

    // The queue, by role and token kind.
    let (status, queue) = app
        .get("reviewer", "/api/v1/applications?state=needs_review")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(queue["applications"][0]["id"], id);
    assert_eq!(
        app.get("auditor", "/api/v1/applications").await.0,
        StatusCode::FORBIDDEN
    );
    let hospital = app.hospital_key.clone();
    assert_eq!(
        app.get(&hospital, "/api/v1/applications").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get("no-such-token", "/api/v1/applications").await.0,
        StatusCode::UNAUTHORIZED
    );

    // The auditor opens it and its scan; an unknown one is 404.
    let (status, opened) = app
        .get("auditor", &format!("/api/v1/applications/{id}?purpose=audit"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(opened["bills"][0]["scan"]["media_type"], "image/png");
    let history: Vec<&str> = opened["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["kind"].as_str().unwrap())
        .collect();
    assert!(
        history.contains(&"spell") && history.contains(&"signature") && history.contains(&"application"),
        "{history:?}"
    );
    let scan = app
        .client
        .get(format!("{}/api/v1/applications/{id}/bills/1/scan", app.address))
        .bearer_auth(&app.tokens["auditor"])
        .send()
        .await
        .unwrap();
    assert_eq!(scan.status(), StatusCode::OK);
    assert_eq!(scan.headers()["content-type"], "image/png");
    assert_eq!(scan.bytes().await.unwrap().as_ref(), b"\x89PNG\r\n\x1a\nscan");
    assert_eq!(
        app.get("auditor", "/api/v1/applications/9999").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("auditor", &format!("/api/v1/applications/{id}/bills/2/scan"))
            .await
            .0,
        StatusCode::NOT_FOUND
    );

    // The clerk entered it: refused; an auditor may not review; a reason
    // is required; the reviewer approves.
    let review = format!("/api/v1/applications/{id}/review");
    let (status, body) = app
        .post("clerk", &review, json!({"verdict": "approve", "reason": "ok"}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body["message"].as_str().unwrap().contains("another reviewer"));
    assert_eq!(
        app.post("auditor", &review, json!({"verdict": "approve", "reason": "ok"}))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    let (status, body) = app.post("reviewer", &review, json!({"verdict": "approve"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["fields"][0]["field"], "reason");
    let (status, body) = app
        .post("reviewer", &review, json!({"verdict": "maybe", "reason": "x"}))
        .await;
    assert_eq!(
        (status, body["fields"][0]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("verdict"))
    );
    let (status, body) = app
        .post(
            "reviewer",
            &review,
            json!({"verdict": "approve", "reason": "金额核对无误"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "decided");
    assert_eq!(body["bills"][0]["status"], "decided");
    assert_eq!(body["bills"][1]["status"], "excluded");
    let (status, _) = app
        .post(
            "reviewer",
            &review,
            json!({"verdict": "reject", "reason": "again"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn a_bad_submission_is_refused_with_every_field_named_and_a_bad_scan_type_too() {
    let app = spawn_app().await;
    app.sign().await;
    let mut lying = bill("OUT004", "2026-04-01", ["100", "70", "25", "5"]);
    lying["scan"] =
        json!({"media_type": "application/pdf", "content_base64": jiuzhu_store::scan_base64(b"MZ\x90\0")});
    let mut bad_date = bill("OUT005", "2026-02-30", ["100", "70", "25", "5"]);
    bad_date["total"] = json!(100);
    let (status, body) = app
        .post(
            "clerk",
            "/api/v1/applications",
            json!({"person_id": PERSON, "bills": [lying, bad_date]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let fields: Vec<&str> = body["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|field| field["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "bills[0].scan",
            "bills[1].total",
            "bills[1].service_date",
            "bills[1].settled_at"
        ]
    );
    let (status, body) = app
        .post(
            "clerk",
            "/api/v1/applications",
            json!({"person_id": "110105196001010018", "bills": []}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<&str> = body["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|field| field["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["person_id", "bills"]);
    // Too large for the route's limit.
    let big = "A".repeat(300 * 1024);
    let (status, _) = app
        .post(
            "clerk",
            "/api/v1/applications",
            json!({"person_id": PERSON, "bills": [], "x": big}),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // Nothing was stored.
    let (_, prefill) = app
        .post(
            "clerk",
            "/api/v1/applications/prefill",
            json!({"person_id": PERSON}),
        )
        .await;
    assert_eq!(prefill["applications"].as_array().unwrap().len(), 0);
}
