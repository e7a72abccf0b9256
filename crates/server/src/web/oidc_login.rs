//! A resident's login with the city's unified login (统一身份认证), beside
//! the code login: `GET /login/oidc` sends the browser to the issuer with a
//! fresh `state`, `nonce` and PKCE challenge, kept in a cookie of its own
//! for [`FLOW_SECONDS`] (`SameSite=Lax`: the issuer sends the browser back
//! with a cross-site top-level GET); `GET /login/oidc/callback` checks the
//! `state`, exchanges the code and checks the ID token (`crate::oidc`),
//! reads the resident ID from its claim and opens the same session as the
//! code login for a person the store knows, audited with the channel
//! `oidc`. A person may log in this way [`LOGINS_PER_WINDOW`] times in
//! [`LOGIN_WINDOW`], as many as the codes of the code login.
//!
//! The session's cookie is `SameSite=Strict`, which a browser does not send
//! on a redirect that follows the issuer's cross-site one: so the callback
//! answers a short page that opens `/me` itself (a same-site navigation)
//! rather than a redirect. A cookie beside the session says it came from
//! the unified login, so that logging out ends the issuer's session too.
//! Every refusal shows the login page with the
//! reason, clears the login's cookie and logs the cause, never a secret, a
//! token or a full ID number.

use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::{
    citizen_form, cookie, failed, set_cookie, Viewer, CITIZEN_COOKIE, SESSION_SECONDS, VIA_OIDC_COOKIE,
};
use crate::oidc::{same_text, OidcError, Pending};
use crate::AppState;

/// The cookie that keeps a login under way.
const FLOW_COOKIE: &str = "jiuzhu_oidc";
/// The paths the login's cookie is sent to.
const FLOW_PATH: &str = "/login/oidc";
/// How long a login may take at the issuer.
const FLOW_SECONDS: i64 = 600;
/// Logins of one person allowed in [`LOGIN_WINDOW`].
const LOGINS_PER_WINDOW: u32 = 5;
const LOGIN_WINDOW: Duration = Duration::from_secs(15 * 60);

/// The login's cookie: sent back by the issuer's cross-site redirect
/// (`Lax`), only to `/login/oidc…`, not readable by scripts.
fn flow_cookie(value: &str, max_age: i64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{FLOW_COOKIE}={value}; Path={FLOW_PATH}; Max-Age={max_age}; HttpOnly; Secure; SameSite=Lax"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `GET /login/oidc`: to the issuer.
pub(super) async fn start(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let viewer = match Viewer::of(&state, &headers, "/login").await {
        Ok(viewer) => viewer,
        Err(response) => return *response,
    };
    let Some(oidc) = state.oidc.clone() else {
        return viewer.error(StatusCode::NOT_FOUND, "not_found", "oidc_off");
    };
    let pending = match Pending::generate() {
        Ok(pending) => pending,
        Err(error) => return failed("a login with the unified login could not start", &error),
    };
    match oidc.authorization_url(&pending).await {
        Ok(url) => {
            let mut response = Redirect::to(&url).into_response();
            response.headers_mut().append(
                header::SET_COOKIE,
                flow_cookie(&pending.to_cookie(), FLOW_SECONDS),
            );
            response
        }
        Err(error) => {
            tracing::warn!(cause = %error, "a login with the unified login could not start");
            refused(&state, &viewer, StatusCode::BAD_GATEWAY, "oidc_unavailable")
        }
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// `GET /login/oidc/callback?code&state`: back from the issuer.
pub(super) async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(callback): Query<Callback>,
) -> Response {
    let viewer = match Viewer::of(&state, &headers, "/login").await {
        Ok(viewer) => viewer,
        Err(response) => return *response,
    };
    let Some(oidc) = state.oidc.clone() else {
        return viewer.error(StatusCode::NOT_FOUND, "not_found", "oidc_off");
    };
    let pending = cookie(&headers, FLOW_COOKIE).and_then(Pending::from_cookie);
    let Some(pending) = pending.filter(|pending| {
        callback
            .state
            .as_deref()
            .is_some_and(|given| same_text(given, &pending.state))
    }) else {
        tracing::warn!("a login with the unified login came back without its state or with another");
        return refused(&state, &viewer, StatusCode::BAD_REQUEST, "oidc_expired");
    };
    if let Some(error) = callback.error.as_deref() {
        let error: String = error.chars().filter(char::is_ascii_graphic).take(64).collect();
        tracing::warn!(%error, "the unified login answered with an error");
        return refused(&state, &viewer, StatusCode::UNAUTHORIZED, "oidc_cancelled");
    }
    let Some(code) = callback.code.filter(|code| !code.is_empty()) else {
        tracing::warn!("a login with the unified login came back without a code");
        return refused(&state, &viewer, StatusCode::BAD_REQUEST, "oidc_expired");
    };
    let claim = match oidc.finish(&code, &pending).await {
        Ok(claim) => claim,
        Err(error) => {
            tracing::warn!(cause = %error, "a login with the unified login is refused");
            let (status, problem) = match error {
                OidcError::Unavailable(_) => (StatusCode::BAD_GATEWAY, "oidc_unavailable"),
                OidcError::CodeRefused(_) => (StatusCode::UNAUTHORIZED, "oidc_expired"),
                OidcError::TokenRefused(_) => (StatusCode::UNAUTHORIZED, "oidc_refused"),
                OidcError::NoResidentId(_) => (StatusCode::UNAUTHORIZED, "oidc_no_id"),
            };
            return refused(&state, &viewer, status, problem);
        }
    };
    let Ok(person) = jiuzhu_core::ResidentId::parse(&claim) else {
        tracing::warn!("the unified login's resident ID claim is not a resident ID number");
        return refused(&state, &viewer, StatusCode::UNAUTHORIZED, "oidc_no_id");
    };
    let counted = Sha256::digest(person.to_string().as_bytes()).into();
    if !within_limit(&state, counted) {
        tracing::warn!(person = %person.masked(), "too many logins with the unified login");
        return refused(&state, &viewer, StatusCode::TOO_MANY_REQUESTS, "oidc_limited");
    }
    let session = state
        .store
        .open_citizen_session(person, jiuzhu_store::LoginChannel::Oidc, SESSION_SECONDS)
        .await;
    match session {
        Ok(Some(session)) => {
            tracing::info!(person = %person.masked(), "a resident logged in with the unified login");
            let mut response = viewer.render(StatusCode::OK, "oidc_done.html", context! {});
            let headers = response.headers_mut();
            headers.append(
                header::SET_COOKIE,
                set_cookie(CITIZEN_COOKIE, &session.token, SESSION_SECONDS),
            );
            headers.append(
                header::SET_COOKIE,
                set_cookie(VIA_OIDC_COOKIE, "oidc", SESSION_SECONDS),
            );
            headers.append(header::SET_COOKIE, flow_cookie("", 0));
            response
        }
        Ok(None) => {
            tracing::warn!(person = %person.masked(), "the unified login vouched for a person the store does not know");
            refused(&state, &viewer, StatusCode::FORBIDDEN, "oidc_unknown_person")
        }
        Err(error) => {
            let mut response = failed("a resident's session could not be opened", &error);
            response
                .headers_mut()
                .append(header::SET_COOKIE, flow_cookie("", 0));
            response
        }
    }
}

/// The login page with why the unified login did not log the resident in;
/// the login's cookie cleared.
fn refused(state: &AppState, viewer: &Viewer, status: StatusCode, problem: &str) -> Response {
    let problem = viewer.language.text(problem);
    let mut response = citizen_form(
        state,
        viewer,
        status,
        context! { step => "ask", person_id => "", problem => problem },
    );
    response
        .headers_mut()
        .append(header::SET_COOKIE, flow_cookie("", 0));
    response
}

/// Counts a login of the person whose ID hashes to `counted`, unless they
/// had [`LOGINS_PER_WINDOW`] in the window already.
fn within_limit(state: &AppState, counted: [u8; 32]) -> bool {
    let mut logins = state
        .web
        .oidc_logins
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    logins.retain(|_, (_, since)| since.elapsed() < LOGIN_WINDOW);
    let entry = logins.entry(counted).or_insert((0, Instant::now()));
    if entry.0 >= LOGINS_PER_WINDOW {
        return false;
    }
    entry.0 += 1;
    true
}
