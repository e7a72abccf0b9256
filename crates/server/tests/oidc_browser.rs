//! The city's unified login in headless Chromium (the browser tests'
//! helper, from the CLI's tests): the issuer on another site (`localhost`
//! against the server's `127.0.0.1`) shows a page the resident approves
//! on, whose link brings the browser back cross-site. The resident lands
//! on their bills: the session's `SameSite=Strict` cookie, which a browser
//! does not send on a redirect that follows such a navigation, is sent
//! when the callback's page opens `/me` itself. Skipped, saying so,
//! without Chromium and chromedriver; in CI (`CI=true`) it fails instead.

#[path = "../../cli/tests/common/browser.rs"]
#[allow(dead_code, reason = "the helper serves the CLI's browser tests too")]
mod browser;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::response::Html;
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use jiuzhu_server::{ClientSecret, OidcSettings, ServerSettings};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

mod common;
use common::read;

const ISSUER_KEY: &str = "fixtures/oidc-test-only-issuer-key.pem";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The fake issuer: its base URL and the nonce of each code it granted.
#[derive(Clone)]
struct Issuer {
    base: String,
    nonces: Arc<Mutex<HashMap<String, String>>>,
}

async fn discovery(State(issuer): State<Issuer>) -> Json<Value> {
    let base = &issuer.base;
    Json(json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
        "jwks_uri": format!("{base}/jwks"),
    }))
}

async fn jwks() -> Json<JwkSet> {
    let key = EncodingKey::from_rsa_pem(read(ISSUER_KEY).as_bytes()).unwrap();
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
    jwk.common.key_id = Some("key-1".to_owned());
    Json(JwkSet { keys: vec![jwk] })
}

/// The issuer's own page: the resident approves by following its link.
async fn authorize(
    State(issuer): State<Issuer>,
    Query(query): Query<HashMap<String, String>>,
) -> Html<String> {
    issuer
        .nonces
        .lock()
        .unwrap()
        .insert("code-1".to_owned(), query["nonce"].clone());
    Html(format!(
        "<!doctype html><html lang=\"en\"><title>Unified login</title><body>\
         <a id=\"approve\" href=\"{}?code=code-1&amp;state={}\">Approve</a></body></html>",
        query["redirect_uri"], query["state"]
    ))
}

async fn token(State(issuer): State<Issuer>, Form(form): Form<HashMap<String, String>>) -> Json<Value> {
    let nonce = issuer.nonces.lock().unwrap()[&form["code"]].clone();
    let claims = json!({
        "iss": issuer.base, "aud": "jiuzhu", "sub": "citizen-42", "exp": now() + 300, "iat": now(),
        "nonce": nonce, "resident_id": "110105196001010017",
    });
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("key-1".to_owned());
    let key = EncodingKey::from_rsa_pem(read(ISSUER_KEY).as_bytes()).unwrap();
    let id_token = jsonwebtoken::encode(&header, &claims, &key).unwrap();
    Json(json!({"id_token": id_token, "token_type": "Bearer"}))
}

#[tokio::test(flavor = "multi_thread")]
async fn in_a_browser_a_resident_approves_at_the_unified_login_and_lands_on_their_bills() {
    let Some(browser) = browser::Browser::start("unified_login_on_a_phone", 360, 740).await else {
        return;
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = Issuer {
        base: format!("http://localhost:{}", listener.local_addr().unwrap().port()),
        nonces: Arc::default(),
    };
    let router = Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(jwks))
        .route("/authorize", get(authorize))
        .route("/token", post(token))
        .with_state(issuer.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });

    // The server's port is known before it starts: the callback names it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let (store, policy) = common::store_with_policy(dir.path()).await;
    common::import_small_spells(&store, &policy, "民政").await;
    let settings = ServerSettings {
        listen: SocketAddr::from(([127, 0, 0, 1], port)),
        oidc: Some(OidcSettings {
            issuer: issuer.base.clone(),
            client_id: "jiuzhu".to_owned(),
            client_secret: ClientSecret::new("test only".to_owned()),
            redirect_url: format!("http://127.0.0.1:{port}/login/oidc/callback"),
            resident_id_claim: "resident_id".to_owned(),
            scopes: vec!["openid".to_owned()],
            timeout_ms: 5_000,
        }),
        ..common::settings()
    };
    common::serve(store, settings).await;

    browser.open(&format!("http://127.0.0.1:{port}/login")).await;
    browser.click("a[href='/login/oidc']").await;
    browser.wait_for_path_containing("/authorize").await;
    browser.click("#approve").await;
    browser.wait_for("/me").await;
    let heading = browser.text("h1").await;
    assert!(heading.contains("我的救助票据"), "{heading}");
}
