//! A resident's login with the city's unified login (统一身份认证, OpenID
//! Connect), end to end: a fake issuer served in the test (discovery, keys,
//! token endpoint; ID tokens signed with the test-only RSA keys under
//! fixtures/) and the real server on port 0 over a fresh SQLite store,
//! driven by a client that follows no redirect. A login lands a session
//! that opens `/me` for the person the ID token names; every refusal
//! stores nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::Engine as _;
use jiuzhu_server::{ClientSecret, OidcSettings, ServerSettings};
use jiuzhu_store::Store;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::Digest as _;

mod common;
use common::{browser, hidden, read};

const ISSUER_KEY: &str = "fixtures/oidc-test-only-issuer-key.pem";
const OTHER_KEY: &str = "fixtures/oidc-test-only-other-key.pem";
const CLIENT_ID: &str = "jiuzhu-test";
const CLIENT_SECRET: &str = "s3cret: test only";
const REDIRECT_URL: &str = "http://127.0.0.1:8080/login/oidc/callback";
/// 017 holds INV001, INV002 and INV007 in the small fixture; 025 INV003
/// and INV004.
const RESIDENT: &str = "110105196001010017";
const OTHER_RESIDENT: &str = "110105196001010025";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// What the fake issuer's token endpoint answers for one code.
#[derive(Clone)]
struct Grant {
    claims: Value,
    challenge: String,
    /// The PEM it signs with, and the key id its header names.
    signer: &'static str,
    kid: Option<&'static str>,
}

#[derive(Default)]
struct IssuerState {
    grants: HashMap<String, Grant>,
    /// The keys published: (key id, PEM).
    published: Vec<(&'static str, &'static str)>,
    keys_read: u32,
    token_requests: u32,
    /// How long the token endpoint takes to answer.
    token_delay: Duration,
    /// The discovery document names no end-session endpoint.
    no_end_session: bool,
}

/// The fake issuer: discovery, keys and a token endpoint that checks the
/// client's secret, the code, the redirect and the PKCE verifier.
#[derive(Clone)]
struct Issuer {
    base: String,
    state: Arc<Mutex<IssuerState>>,
}

async fn discovery(State(issuer): State<Issuer>) -> Json<Value> {
    let base = &issuer.base;
    let no_end_session = issuer.state.lock().unwrap().no_end_session;
    let mut document = json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
        "jwks_uri": format!("{base}/jwks"),
        "response_types_supported": ["code"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
    });
    if !no_end_session {
        document["end_session_endpoint"] = json!(format!("{base}/logout"));
    }
    Json(document)
}

fn public_jwk(kid: &str, pem: &str) -> Jwk {
    let key = EncodingKey::from_rsa_pem(read(pem).as_bytes()).unwrap();
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    jwk
}

async fn jwks(State(issuer): State<Issuer>) -> Json<JwkSet> {
    let published = {
        let mut state = issuer.state.lock().unwrap();
        state.keys_read += 1;
        state.published.clone()
    };
    Json(JwkSet {
        keys: published.iter().map(|(kid, pem)| public_jwk(kid, pem)).collect(),
    })
}

fn invalid_grant() -> Response {
    (AxumStatus::BAD_REQUEST, Json(json!({"error": "invalid_grant"}))).into_response()
}

async fn token(
    State(issuer): State<Issuer>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let (grant, delay) = {
        let mut state = issuer.state.lock().unwrap();
        state.token_requests += 1;
        let code = form.get("code").cloned().unwrap_or_default();
        (state.grants.remove(&code), state.token_delay)
    };
    tokio::time::sleep(delay).await;
    let credentials =
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:s3cret%3A+test+only"));
    let given = headers.get("authorization").and_then(|value| value.to_str().ok());
    if given != Some(format!("Basic {credentials}").as_str()) {
        return (AxumStatus::UNAUTHORIZED, Json(json!({"error": "invalid_client"}))).into_response();
    }
    let Some(grant) = grant else {
        return invalid_grant();
    };
    let verifier = form.get("code_verifier").cloned().unwrap_or_default();
    let challenge =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    if form.get("grant_type").map(String::as_str) != Some("authorization_code")
        || form.get("redirect_uri").map(String::as_str) != Some(REDIRECT_URL)
        || challenge != grant.challenge
    {
        return invalid_grant();
    }
    let mut header = Header::new(Algorithm::RS256);
    header.kid = grant.kid.map(str::to_owned);
    let key = EncodingKey::from_rsa_pem(read(grant.signer).as_bytes()).unwrap();
    let id_token = jsonwebtoken::encode(&header, &grant.claims, &key).unwrap();
    Json(json!({"access_token": "opaque", "token_type": "Bearer", "expires_in": 300, "id_token": id_token}))
        .into_response()
}

async fn spawn_issuer() -> Issuer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let issuer = Issuer {
        base,
        state: Arc::new(Mutex::new(IssuerState {
            published: vec![("key-1", ISSUER_KEY)],
            ..IssuerState::default()
        })),
    };
    let router = Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(jwks))
        .route("/token", post(token))
        .with_state(issuer.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    issuer
}

struct TestApp {
    address: String,
    store: Store,
    _dir: tempfile::TempDir,
}

fn oidc_settings(issuer: &str, timeout_ms: u64) -> OidcSettings {
    OidcSettings {
        issuer: issuer.to_owned(),
        client_id: CLIENT_ID.to_owned(),
        client_secret: ClientSecret::new(CLIENT_SECRET.to_owned()),
        redirect_url: REDIRECT_URL.to_owned(),
        resident_id_claim: "resident_id".to_owned(),
        scopes: vec!["openid".to_owned(), "profile".to_owned()],
        timeout_ms,
    }
}

/// The server over a store with the small fixture's spells and bills.
async fn spawn_app(oidc: Option<OidcSettings>) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let (store, policy) = common::store_with_policy(dir.path()).await;
    common::import_small_spells(&store, &policy, "民政").await;
    common::import_small_feed(&store, &policy).await;
    let address = common::serve(
        store.clone(),
        ServerSettings {
            oidc,
            ..common::settings()
        },
    )
    .await;
    TestApp {
        address,
        store,
        _dir: dir,
    }
}

/// A valid resident ID number the store does not know.
fn unknown_resident() -> String {
    "0123456789X"
        .chars()
        .map(|last| format!("11010519700101001{last}"))
        .find(|id| jiuzhu_core::ResidentId::parse(id).is_ok())
        .unwrap()
}

/// How a test bends the issuer's answer or the browser's return.
struct Login {
    /// Changes the ID token's claims (made with the login's nonce).
    claims: Box<dyn Fn(&mut Value) + Send>,
    signer: &'static str,
    kid: Option<&'static str>,
    /// The `state` the browser comes back with, if not the login's.
    state: Option<String>,
}

impl Login {
    fn as_resident(resident: &str) -> Login {
        let resident = resident.to_owned();
        Login {
            claims: Box::new(move |claims| claims["resident_id"] = json!(resident)),
            signer: ISSUER_KEY,
            kid: Some("key-1"),
            state: None,
        }
    }

    fn with(claims: impl Fn(&mut Value) + Send + 'static) -> Login {
        Login {
            claims: Box::new(claims),
            ..Login::as_resident(RESIDENT)
        }
    }
}

/// What the server answered the browser's return, with its body.
struct Returned {
    status: StatusCode,
    cookies: Vec<String>,
    page: String,
}

impl TestApp {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    async fn audit_entries(&self) -> u64 {
        self.store.verify_audit().await.unwrap().unwrap().entries
    }

    /// Starts a login, lets the issuer grant a code as `login` says, and
    /// comes back with it.
    async fn log_in(&self, issuer: &Issuer, browser: &reqwest::Client, login: Login) -> Returned {
        let started = browser.get(self.url("/login/oidc")).send().await.unwrap();
        assert_eq!(started.status(), StatusCode::SEE_OTHER);
        let flow_cookie = started.headers()["set-cookie"].to_str().unwrap().to_owned();
        assert!(
            flow_cookie.starts_with("jiuzhu_oidc=")
                && flow_cookie.contains("HttpOnly")
                && flow_cookie.contains("SameSite=Lax")
                && flow_cookie.contains("Path=/login/oidc")
                && flow_cookie.contains("Max-Age=600"),
            "{flow_cookie}"
        );
        let to = reqwest::Url::parse(started.headers()["location"].to_str().unwrap()).unwrap();
        assert_eq!(
            to.as_str().split('?').next().unwrap(),
            format!("{}/authorize", issuer.base)
        );
        let query: HashMap<String, String> = to.query_pairs().into_owned().collect();
        assert_eq!(query["response_type"], "code");
        assert_eq!(query["client_id"], CLIENT_ID);
        assert_eq!(query["redirect_uri"], REDIRECT_URL);
        assert_eq!(query["scope"], "openid profile");
        assert_eq!(query["code_challenge_method"], "S256");
        assert_eq!(query["code_challenge"].len(), 43);
        let (state, nonce) = (query["state"].clone(), query["nonce"].clone());
        assert!(state.len() >= 43 && nonce.len() >= 43 && state != nonce);

        let mut claims = json!({
            "iss": issuer.base,
            "sub": "citizen-42",
            "aud": CLIENT_ID,
            "exp": now() + 300,
            "iat": now(),
            "nonce": nonce,
        });
        (login.claims)(&mut claims);
        let code = format!("code-{}", nonce);
        issuer.state.lock().unwrap().grants.insert(
            code.clone(),
            Grant {
                claims,
                challenge: query["code_challenge"].clone(),
                signer: login.signer,
                kid: login.kid,
            },
        );
        let state = login.state.unwrap_or(state);
        let back = browser
            .get(self.url("/login/oidc/callback"))
            .query(&[("code", code.as_str()), ("state", state.as_str())])
            .send()
            .await
            .unwrap();
        let status = back.status();
        let cookies = back
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|value| value.to_str().unwrap().to_owned())
            .collect();
        Returned {
            status,
            cookies,
            page: back.text().await.unwrap(),
        }
    }

    /// Whether the browser has a resident's session: `/me` opens, or sends
    /// to the login page.
    async fn me(&self, browser: &reqwest::Client) -> Option<String> {
        let response = browser.get(self.url("/me")).send().await.unwrap();
        match response.status() {
            StatusCode::OK => Some(response.text().await.unwrap()),
            StatusCode::SEE_OTHER => {
                assert_eq!(response.headers()["location"], "/login");
                None
            }
            other => panic!("/me answered {other}"),
        }
    }
}

impl Returned {
    fn session_set(&self) -> bool {
        self.cookies
            .iter()
            .any(|cookie| cookie.starts_with("jiuzhu_resident=") && !cookie.starts_with("jiuzhu_resident=;"))
    }

    fn flow_cleared(&self) -> bool {
        self.cookies
            .iter()
            .any(|cookie| cookie.starts_with("jiuzhu_oidc=;") && cookie.contains("Max-Age=0"))
    }
}

#[tokio::test]
async fn a_resident_logs_in_with_the_unified_login_and_sees_only_their_own_bills() {
    let issuer = spawn_issuer().await;
    let app = spawn_app(Some(oidc_settings(&issuer.base, 5_000))).await;

    // The login page offers the unified login first.
    let page = browser()
        .get(app.url("/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("<a class=\"action\" href=\"/login/oidc\">用统一身份认证登录</a>"),
        "{page}"
    );

    let before = app.audit_entries().await;
    let resident = browser();
    let returned = app.log_in(&issuer, &resident, Login::as_resident(RESIDENT)).await;
    assert_eq!(returned.status, StatusCode::OK, "{}", returned.page);
    assert!(
        returned.session_set() && returned.flow_cleared(),
        "{:?}",
        returned.cookies
    );
    let session = returned
        .cookies
        .iter()
        .find(|cookie| cookie.starts_with("jiuzhu_resident="))
        .unwrap();
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Strict"),
        "{session}"
    );
    // The page opens /me itself: a same-site navigation, which carries the
    // session's Strict cookie.
    assert!(
        returned
            .page
            .contains("<meta http-equiv=\"refresh\" content=\"0;url=/me\">"),
        "{}",
        returned.page
    );
    let page = app.me(&resident).await.expect("a session");
    assert!(
        page.contains("INV001") && page.contains("INV002") && !page.contains("INV003"),
        "{page}"
    );
    assert!(!page.contains(RESIDENT), "{page}");
    // The login is audited, once.
    assert_eq!(app.audit_entries().await, before + 1);
    // The flow's cookie is gone: coming back again opens nothing more.
    let again = resident
        .get(app.url("/login/oidc/callback?code=x&state=y"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);

    // Another resident in another browser sees their bills, not the first's.
    let other = browser();
    let returned = app
        .log_in(&issuer, &other, Login::as_resident(OTHER_RESIDENT))
        .await;
    assert_eq!(returned.status, StatusCode::OK, "{}", returned.page);
    let page = app.me(&other).await.expect("a session");
    assert!(
        page.contains("INV003") && !page.contains("INV001") && !page.contains("INV002"),
        "{page}"
    );

    // The issuer turns its keys over: a token under a key it did not
    // publish when its keys were read is checked against its keys read
    // again, once.
    let keys_read = issuer.state.lock().unwrap().keys_read;
    issuer.state.lock().unwrap().published.push(("key-2", OTHER_KEY));
    let rotated = browser();
    let returned = app
        .log_in(
            &issuer,
            &rotated,
            Login {
                signer: OTHER_KEY,
                kid: Some("key-2"),
                ..Login::as_resident(RESIDENT)
            },
        )
        .await;
    assert_eq!(returned.status, StatusCode::OK, "{}", returned.page);
    assert!(app.me(&rotated).await.is_some());
    assert_eq!(issuer.state.lock().unwrap().keys_read, keys_read + 1);
    // A key id it never published: read once more, then refused.
    let returned = app
        .log_in(
            &issuer,
            &browser(),
            Login {
                kid: Some("key-9"),
                ..Login::as_resident(RESIDENT)
            },
        )
        .await;
    assert_eq!(returned.status, StatusCode::UNAUTHORIZED);
    assert_eq!(issuer.state.lock().unwrap().keys_read, keys_read + 2);
}

#[tokio::test]
async fn every_login_that_fails_a_check_is_refused_with_nothing_stored() {
    let issuer = spawn_issuer().await;
    let app = spawn_app(Some(oidc_settings(&issuer.base, 5_000))).await;
    let unknown = unknown_resident();
    let cases: Vec<(&str, Login, StatusCode, &str)> = vec![
        (
            "another state",
            Login {
                state: Some("A".repeat(43)),
                ..Login::as_resident(RESIDENT)
            },
            StatusCode::BAD_REQUEST,
            "统一身份认证登录已过期或未完成",
        ),
        (
            "another nonce",
            Login::with(|claims| claims["nonce"] = json!("B".repeat(43))),
            StatusCode::UNAUTHORIZED,
            "未通过校验",
        ),
        (
            "no nonce",
            Login::with(|claims| {
                claims.as_object_mut().unwrap().remove("nonce");
            }),
            StatusCode::UNAUTHORIZED,
            "未通过校验",
        ),
        (
            "another audience",
            Login::with(|claims| claims["aud"] = json!("someone-else")),
            StatusCode::UNAUTHORIZED,
            "未通过校验",
        ),
        (
            "several audiences without azp",
            Login::with(|claims| claims["aud"] = json!([CLIENT_ID, "someone-else"])),
            StatusCode::UNAUTHORIZED,
            "未通过校验",
        ),
        (
            "another issuer",
            Login::with(|claims| claims["iss"] = json!("http://127.0.0.1:1")),
            StatusCode::UNAUTHORIZED,
            "未通过校验",
        ),
        (
            "expired",
            Login::with(|claims| {
                // Past the minute of leeway; issued recently enough.
                claims["exp"] = json!(now() - 120);
                claims["iat"] = json!(now() - 300);
            }),
            StatusCode::UNAUTHORIZED,
            "未通过校验",
        ),
        (
            "issued long ago",
            Login::with(|claims| claims["iat"] = json!(now() - 3600)),
            StatusCode::UNAUTHORIZED,
            "未通过校验",
        ),
        (
            "issued in the future",
            Login::with(|claims| claims["iat"] = json!(now() + 3600)),
            StatusCode::UNAUTHORIZED,
            "未通过校验",
        ),
        (
            "signed with another key",
            Login {
                signer: OTHER_KEY,
                ..Login::as_resident(RESIDENT)
            },
            StatusCode::UNAUTHORIZED,
            "未通过校验",
        ),
        (
            "an unknown person",
            Login::as_resident(&unknown),
            StatusCode::FORBIDDEN,
            "没有查到您的医疗救助记录",
        ),
        (
            "no resident ID claim",
            Login::with(|claims| {
                claims.as_object_mut().unwrap().remove("resident_id");
            }),
            StatusCode::UNAUTHORIZED,
            "未提供有效的身份证号码",
        ),
        (
            "a claim that is no resident ID",
            Login::with(|claims| claims["resident_id"] = json!("110105196001010018")),
            StatusCode::UNAUTHORIZED,
            "未提供有效的身份证号码",
        ),
    ];
    let before = app.audit_entries().await;
    for (case, login, status, words) in cases {
        let resident = browser();
        let returned = app.log_in(&issuer, &resident, login).await;
        assert_eq!(returned.status, status, "{case}: {}", returned.page);
        assert!(returned.page.contains(words), "{case}: {}", returned.page);
        // The login page again, with the reason and both ways to log in.
        assert!(
            returned.page.contains("role=\"alert\"") && returned.page.contains("href=\"/login/oidc\""),
            "{case}: {}",
            returned.page
        );
        assert!(!returned.session_set(), "{case}: {:?}", returned.cookies);
        assert!(returned.flow_cleared(), "{case}: {:?}", returned.cookies);
        assert!(app.me(&resident).await.is_none(), "{case}: a session");
        assert_eq!(app.audit_entries().await, before, "{case}: something was stored");
        assert!(!returned.page.contains(&unknown) && !returned.page.contains(RESIDENT));
    }
    // With another state the code was never taken to the token endpoint.
    assert_eq!(issuer.state.lock().unwrap().token_requests, 12);
    // The issuer's refusal of the login, in English when asked.
    let resident = browser();
    resident.get(app.url("/prefs?lang=en")).send().await.unwrap();
    let started = resident.get(app.url("/login/oidc")).send().await.unwrap();
    let to = reqwest::Url::parse(started.headers()["location"].to_str().unwrap()).unwrap();
    let state = to
        .query_pairs()
        .find(|(name, _)| name == "state")
        .unwrap()
        .1
        .into_owned();
    let back = resident
        .get(app.url("/login/oidc/callback"))
        .query(&[("error", "access_denied"), ("state", state.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(back.status(), StatusCode::UNAUTHORIZED);
    let page = back.text().await.unwrap();
    assert!(page.contains("The unified login did not log you in"), "{page}");
    assert!(app.me(&resident).await.is_none());
    assert_eq!(app.audit_entries().await, before);
}

#[tokio::test]
async fn a_person_logs_in_at_most_five_times_in_fifteen_minutes() {
    let issuer = spawn_issuer().await;
    let app = spawn_app(Some(oidc_settings(&issuer.base, 5_000))).await;
    for _ in 0..5 {
        let returned = app
            .log_in(&issuer, &browser(), Login::as_resident(RESIDENT))
            .await;
        assert_eq!(returned.status, StatusCode::OK, "{}", returned.page);
    }
    let before = app.audit_entries().await;
    let resident = browser();
    let returned = app.log_in(&issuer, &resident, Login::as_resident(RESIDENT)).await;
    assert_eq!(returned.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(returned.page.contains("登录次数过多"), "{}", returned.page);
    assert!(!returned.session_set());
    assert!(app.me(&resident).await.is_none());
    assert_eq!(app.audit_entries().await, before);
    // Another person is not held back.
    let returned = app
        .log_in(&issuer, &browser(), Login::as_resident(OTHER_RESIDENT))
        .await;
    assert_eq!(returned.status, StatusCode::OK);
}

#[tokio::test]
async fn an_issuer_that_cannot_be_reached_or_answers_late_is_said_plainly() {
    // Nothing listens on a port just freed.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port())
    };
    let app = spawn_app(Some(oidc_settings(&closed, 1_000))).await;
    let response = browser().get(app.url("/login/oidc")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let page = response.text().await.unwrap();
    assert!(page.contains("暂时无法连接统一身份认证"), "{page}");

    // A token endpoint slower than the time limit.
    let issuer = spawn_issuer().await;
    issuer.state.lock().unwrap().token_delay = Duration::from_secs(5);
    let app = spawn_app(Some(oidc_settings(&issuer.base, 500))).await;
    let before = app.audit_entries().await;
    let resident = browser();
    let started = Instant::now();
    let returned = app.log_in(&issuer, &resident, Login::as_resident(RESIDENT)).await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(returned.status, StatusCode::BAD_GATEWAY, "{}", returned.page);
    assert!(returned.page.contains("暂时无法连接统一身份认证"));
    assert!(app.me(&resident).await.is_none());
    assert_eq!(app.audit_entries().await, before);
}

#[tokio::test]
async fn without_the_unified_login_configured_the_login_page_offers_only_the_code() {
    let app = spawn_app(None).await;
    let page = browser()
        .get(app.url("/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("获取验证码") && !page.contains("/login/oidc") && !page.contains("统一身份认证"),
        "{page}"
    );
    for path in ["/login/oidc", "/login/oidc/callback?code=x&state=y"] {
        let response = browser().get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }
}

/// Logs the browser out from `/me`; gives where it is sent and the cookies
/// set.
async fn log_out(app: &TestApp, browser: &reqwest::Client) -> (String, Vec<String>) {
    let page = app.me(browser).await.expect("logged in");
    let csrf = hidden(&page, "csrf");
    let out = browser
        .post(app.url("/me/logout"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    let cookies = out
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|value| value.to_str().unwrap().to_owned())
        .collect();
    (out.headers()["location"].to_str().unwrap().to_owned(), cookies)
}

#[tokio::test]
async fn logging_out_after_the_unified_login_ends_the_session_at_the_issuer_too() {
    let issuer = spawn_issuer().await;
    let app = spawn_app(Some(oidc_settings(&issuer.base, 5_000))).await;
    let resident = browser();
    let returned = app.log_in(&issuer, &resident, Login::as_resident(RESIDENT)).await;
    assert!(returned.session_set(), "{:?}", returned.cookies);
    assert!(
        returned
            .cookies
            .iter()
            .any(|cookie| cookie.starts_with("jiuzhu_via=oidc;") && cookie.contains("HttpOnly")),
        "{:?}",
        returned.cookies
    );
    let token = returned
        .cookies
        .iter()
        .find_map(|cookie| cookie.strip_prefix("jiuzhu_resident="))
        .map(|rest| rest.split(';').next().unwrap().to_owned())
        .unwrap();

    let (to, cookies) = log_out(&app, &resident).await;
    // To the issuer's end-session endpoint, with the client and the way
    // back to this server's login page; no ID token is sent.
    let to = reqwest::Url::parse(&to).unwrap();
    assert_eq!(
        to.as_str().split('?').next().unwrap(),
        format!("{}/logout", issuer.base)
    );
    let query: HashMap<String, String> = to.query_pairs().into_owned().collect();
    assert_eq!(query.len(), 2, "{query:?}");
    assert_eq!(query["client_id"], CLIENT_ID);
    assert_eq!(query["post_logout_redirect_uri"], "http://127.0.0.1:8080/login");
    for name in ["jiuzhu_resident", "jiuzhu_via"] {
        assert!(
            cookies
                .iter()
                .any(|cookie| cookie.starts_with(&format!("{name}=;")) && cookie.contains("Max-Age=0")),
            "{name} not cleared: {cookies:?}"
        );
    }
    // The session is ended here, not only forgotten by the browser.
    assert!(app.me(&resident).await.is_none());
    let replayed = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(app.url("/me"))
        .header("cookie", format!("jiuzhu_resident={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_logout_stays_here_when_the_issuer_has_no_end_session_endpoint_or_the_login_was_by_code() {
    // An issuer without an end-session endpoint.
    let issuer = spawn_issuer().await;
    issuer.state.lock().unwrap().no_end_session = true;
    let app = spawn_app(Some(oidc_settings(&issuer.base, 5_000))).await;
    let resident = browser();
    let returned = app.log_in(&issuer, &resident, Login::as_resident(RESIDENT)).await;
    assert!(returned.session_set(), "{:?}", returned.cookies);
    let (to, _) = log_out(&app, &resident).await;
    assert_eq!(to, "/login");
    assert!(app.me(&resident).await.is_none());

    // A session opened by the code login, with an issuer that has one.
    let issuer = spawn_issuer().await;
    let app = spawn_app(Some(oidc_settings(&issuer.base, 5_000))).await;
    let person = jiuzhu_core::ResidentId::parse(OTHER_RESIDENT).unwrap();
    let session = app
        .store
        .open_citizen_session(person, jiuzhu_store::LoginChannel::Code, 600)
        .await
        .unwrap()
        .unwrap();
    let jar = Arc::new(reqwest::cookie::Jar::default());
    jar.add_cookie_str(
        &format!("jiuzhu_resident={}; Path=/", session.token),
        &app.url("/").parse().unwrap(),
    );
    let resident = reqwest::Client::builder()
        .cookie_provider(jar)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let (to, _) = log_out(&app, &resident).await;
    assert_eq!(to, "/login");
    assert!(app.me(&resident).await.is_none());
}
