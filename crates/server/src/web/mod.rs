//! The web pages: server-rendered HTML (minijinja, every value escaped),
//! Chinese by default with English on request, large type and high contrast
//! on request (适老化), phone first, nothing loaded from outside the server
//! and no script needed.
//!
//! Staff log in with their name and password (Argon2id in the store); the
//! session's token goes in a `Secure`, `HttpOnly`, `SameSite=Strict` cookie
//! and every form carries the session's CSRF token (the login form a token
//! of its own, double-submitted). Failed logins are limited per name. Each
//! page is checked for the role it needs on the server. Every answer has a
//! content security policy without inline script or style, and may not be
//! framed.
//!
//! | page | who |
//! | --- | --- |
//! | `GET /` | anyone |
//! | `GET /prefs?lang=zh|en&size=large|normal&back=/path` | anyone: remembered in cookies |
//! | `GET, POST /login`, `POST /login/code` | residents: ID, phone, one-time code |
//! | `GET /login/oidc`, `GET /login/oidc/callback` | residents, when configured: the city's unified login (统一身份认证, OpenID Connect; `oidc_login.rs`) |
//! | `GET /me`, `POST /me/logout` | the resident: their assisted bills, each explained in plain words |
//! | `GET /me/applications`, `GET /me/payments` | the resident: their applications step by step, their payments made and coming |
//! | `GET, POST /me/letter` | the resident: the commitment letter, read and signed (its text's hash recorded) |
//! | `GET, POST /me/details`, `POST /me/details/code` | the resident: phone and bank account, changed with a code sent to the phone on record |
//! | `GET, POST /me/apply` | the resident: one application of several bills, typed or chosen from their rejected applications' bills, each with its scan, prefilled with what the bureau knows, checked at once (智能受理) |
//! | `GET, POST /staff/login`, `POST /staff/logout` | staff |
//! | `GET /staff` | staff: the dashboard |
//! | `GET /staff/reviews` | reviewers: the review queue |
//! | `GET /staff/reviews.xlsx`, `GET /staff/batches.xlsx` | the same tables for Excel (money as text, exact) |
//! | `GET, POST /staff/reviews/{id}` | reviewers (auditors read): an application, its findings, the person's record; the verdict |
//! | `GET /staff/batches`, `POST /staff/batches/{id}/approve` | approvers (admins read and make): payment batches, approved by an approver other than their maker |
//! | `POST /staff/batches`, `GET /staff/batches/{id}` | admins, approvers: a batch made of everything owed; a batch's lines, persons and accounts masked |
//! | `POST /staff/batches/{id}/export` | approvers: an approved batch's bank payment file (CSV, full account numbers), the export recorded |
//! | `POST /staff/batches/{id}/return` | admins, approvers: the bank's return file (CSV `line_id,status,reason`), refused whole with each bad line named |
//! | `GET /staff/persons?id=…&purpose=…` | reviewers, auditors: a person's whole record, masked; each read logged with its purpose |
//! | `GET /staff/imports`, `POST /staff/imports/spells` | admins: a department's spells file, uploaded |
//! | `GET /staff/imports/rejected/{id}` | the admin who uploaded it: the report of a refused file, CSV |
//! | `GET /staff/policies`, `GET /staff/policies.xlsx` | admins, auditors: the stored policy versions, which is in force |
//! | `POST /staff/policies/what-if`, `POST /staff/policies/what-if.xlsx` | admins: an uploaded policy against the one in force on a year's stored bills, nothing stored; the same as a workbook |
//! | `POST /staff/policies/load` | admins: an uploaded policy stored as a new version, in force from then on |
//! | `GET /staff/clearings`, `GET /staff/clearings.xlsx`, `POST /staff/clearings` | admins, auditors: the clearings that ran; admins run one for a period |
//! | `GET /staff/clearings/{id}`, `…/differences.csv`, `…/differences.xlsx` | admins, auditors: a clearing's lines, persons masked |
//! | `GET /staff/audit?id=…&purpose=…`, `GET /staff/audit.xlsx?id=…&purpose=…` | auditors: a person's whole story in time order, masked; each read logged with its purpose |
//! | `GET /staff/audit/verify` | auditors: whether the audit chain verifies |
//! | `GET, POST /staff/users`, `GET /staff/users.xlsx` | admins: staff users, their roles and whether (since when, by whom) disabled; a user added with an initial password |
//! | `GET /staff/users/{name}`, `POST …/roles`, `…/disable`, `…/enable` | admins: a member of staff's roles changed, disabled with a reason (sessions end, API tokens revoked), enabled; never oneself nor the last enabled admin |
//! | `GET, POST /staff/accounts`, `GET /staff/accounts/rejected/{id}` | admins, approvers: persons' bank accounts uploaded (CSV in UTF-8 or GBK, or XLSX), refused whole with a report, or stored and shown masked |
//! | `GET, POST /staff/keys`, `GET /staff/keys.xlsx`, `POST /staff/keys/{owner}/{id}/revoke` | admins: hospitals' and departments' API keys, listed without secrets; a new one shown once; one revoked |
//!
//! A one-time code (`POST /login`, `POST /me/details/code`) is sent by the
//! store's notification outbox to the phone on record, at once (see
//! `jiuzhu_store::notify`); the page never shows it and the log never holds
//! it, except in a demo (`ServerSettings::demo`), where both do.

mod apply;
mod console;
mod oidc_login;
mod payments;
mod text;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use jiuzhu_formats::Problems;
use jiuzhu_store::{Role, StaffUser, WebSession};
use minijinja::{context, Environment};
use serde::Deserialize;

use crate::AppState;
use text::Language;

/// How long a staff session lasts.
const SESSION_SECONDS: i64 = 8 * 3600;
/// Failed logins allowed per name in [`LOGIN_WINDOW`].
const LOGIN_FAILURES: u32 = 5;
const LOGIN_WINDOW: Duration = Duration::from_secs(15 * 60);
/// How long the report of a refused file can be downloaded.
const REPORT_KEPT: Duration = Duration::from_secs(3600);
/// Reports kept at most, all users together.
const REPORTS_KEPT: usize = 256;

const SESSION_COOKIE: &str = "jiuzhu_session";
const CITIZEN_COOKIE: &str = "jiuzhu_resident";
/// Set beside a resident's session when they logged in with the unified
/// login: their logout then goes on to the issuer's (see `crate::oidc`).
/// It grants nothing: forged, it only sends a logout to the issuer.
const VIA_OIDC_COOKIE: &str = "jiuzhu_via";
const LOGIN_COOKIE: &str = "jiuzhu_login";

/// What the pages share beyond the API's state.
#[derive(Debug, Default)]
pub(crate) struct WebState {
    /// Failed logins by name: how many, since when.
    failures: Mutex<HashMap<String, (u32, Instant)>>,
    /// Residents' logins with the unified login, by the SHA-256 of their
    /// ID: how many, since when.
    oidc_logins: Mutex<HashMap<[u8; 32], (u32, Instant)>>,
    /// Reports of refused files, by id.
    reports: Mutex<HashMap<String, RejectedReport>>,
    /// The dashboard's figures, read at most once per
    /// [`DASHBOARD_FRESH`] whatever the number of staff looking.
    dashboard: DashboardCache,
}

/// How long the dashboard's figures are shown before they are read again.
/// They sum every bill of the year: read once for all viewers, not once
/// per page view, and after the first read only the bills decided or
/// reversed since are read. The page says when they were read.
const DASHBOARD_FRESH: Duration = Duration::from_secs(60);

/// The dashboard's figures as last read, shared by every viewer. A viewer
/// after [`DASHBOARD_FRESH`] (or on a new day of the same year) gets the
/// figures as they are and starts one new read in the background (the
/// next viewers get the new figures); only the very first viewer, one
/// after a failed read, or one in a new year, waits for a read.
#[derive(Debug, Default)]
struct DashboardCache {
    figures: Mutex<Option<CachedDashboard>>,
    /// One read at a time: held by whichever read runs, in the background
    /// or waited for.
    reading: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Debug, Clone)]
struct CachedDashboard {
    figures: Arc<jiuzhu_store::Dashboard>,
    today: String,
    read_at: Instant,
    /// When it was read, for the page (China time, `HH:MM:SS`).
    read_at_text: String,
}

impl CachedDashboard {
    fn fresh(&self, today: &str) -> bool {
        self.today == today && self.read_at.elapsed() < DASHBOARD_FRESH
    }
}

impl DashboardCache {
    /// The figures as last read, if they are of `year`.
    fn current(&self, year: i32) -> Option<CachedDashboard> {
        let figures = self
            .figures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        figures
            .as_ref()
            .filter(|cached| cached.figures.year == year)
            .cloned()
    }

    /// Waits for the read under way, if any, and reads unless it left the
    /// figures fresh.
    async fn read(
        &self,
        store: &jiuzhu_store::Store,
        today: &str,
        year: i32,
    ) -> Result<CachedDashboard, jiuzhu_store::StoreError> {
        let _reading = self.reading.lock().await;
        // Another viewer may have read it while this one waited.
        if let Some(cached) = self.current(year).filter(|cached| cached.fresh(today)) {
            return Ok(cached);
        }
        self.read_now(store, today, year).await
    }

    /// Reads the figures and keeps them; whoever calls it holds `reading`.
    async fn read_now(
        &self,
        store: &jiuzhu_store::Store,
        today: &str,
        year: i32,
    ) -> Result<CachedDashboard, jiuzhu_store::StoreError> {
        // Read on from the figures as last read: only what was decided
        // or reversed since is read.
        let previous = self.current(year).map(|cached| cached.figures);
        let figures = store.dashboard_after(today, year, previous.as_deref()).await?;
        let cached = CachedDashboard {
            figures: Arc::new(figures),
            today: today.to_owned(),
            read_at: Instant::now(),
            read_at_text: china_time_of_day(),
        };
        *self
            .figures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(cached.clone());
        Ok(cached)
    }
}

/// The time of day in China now, `HH:MM:SS`.
fn china_time_of_day() -> String {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let of_day = (seconds + 8 * 3600) % 86_400;
    format!("{:02}:{:02}:{:02}", of_day / 3600, of_day / 60 % 60, of_day % 60)
}

/// The dashboard's figures for `today`: as last read if fresh; as last
/// read while a new read starts in the background if stale; read now if
/// none of `year`.
async fn dashboard_figures(
    state: &AppState,
    today: &str,
    year: i32,
) -> Result<CachedDashboard, jiuzhu_store::StoreError> {
    let cache = &state.web.dashboard;
    match cache.current(year) {
        Some(cached) if cached.fresh(today) => Ok(cached),
        Some(stale) => {
            // One background read at a time: if one runs, none starts.
            // The viewer does not wait: the lock, taken without waiting,
            // goes with the read.
            if let Ok(reading) = Arc::clone(&cache.reading).try_lock_owned() {
                let state = state.clone();
                let today = today.to_owned();
                tokio::spawn(async move {
                    let _reading = reading;
                    if let Err(error) = state.web.dashboard.read_now(&state.store, &today, year).await {
                        tracing::error!(cause = %error, "the dashboard's figures could not be read");
                    }
                });
            }
            Ok(stale)
        }
        None => cache.read(&state.store, today, year).await,
    }
}

/// The report of a refused file, for its uploader to download.
#[derive(Debug)]
struct RejectedReport {
    owner: String,
    file: String,
    csv: Vec<u8>,
    at: Instant,
}

fn templates() -> &'static Environment<'static> {
    static TEMPLATES: OnceLock<Environment<'static>> = OnceLock::new();
    TEMPLATES.get_or_init(|| {
        let mut environment = Environment::new();
        for (name, source) in [
            ("layout.html", include_str!("templates/layout.html")),
            ("home.html", include_str!("templates/home.html")),
            ("login.html", include_str!("templates/login.html")),
            ("dashboard.html", include_str!("templates/dashboard.html")),
            ("imports.html", include_str!("templates/imports.html")),
            ("import_result.html", include_str!("templates/import_result.html")),
            ("reviews.html", include_str!("templates/reviews.html")),
            ("review.html", include_str!("templates/review.html")),
            ("batches.html", include_str!("templates/batches.html")),
            ("batch.html", include_str!("templates/batch.html")),
            ("citizen_login.html", include_str!("templates/citizen_login.html")),
            ("oidc_done.html", include_str!("templates/oidc_done.html")),
            ("my_bills.html", include_str!("templates/my_bills.html")),
            (
                "my_applications.html",
                include_str!("templates/my_applications.html"),
            ),
            ("my_payments.html", include_str!("templates/my_payments.html")),
            ("resident_menu.html", include_str!("templates/resident_menu.html")),
            ("my_letter.html", include_str!("templates/my_letter.html")),
            ("my_details.html", include_str!("templates/my_details.html")),
            ("my_apply.html", include_str!("templates/my_apply.html")),
            ("person.html", include_str!("templates/person.html")),
            ("error.html", include_str!("templates/error.html")),
            ("policies.html", include_str!("templates/policies.html")),
            ("clearings.html", include_str!("templates/clearings.html")),
            ("clearing.html", include_str!("templates/clearing.html")),
            ("audit.html", include_str!("templates/audit.html")),
            ("audit_verify.html", include_str!("templates/audit_verify.html")),
            ("users.html", include_str!("templates/users.html")),
            ("keys.html", include_str!("templates/keys.html")),
            ("user.html", include_str!("templates/user.html")),
            ("accounts.html", include_str!("templates/accounts.html")),
        ] {
            environment
                .add_template(name, source)
                .unwrap_or_else(|error| panic!("template {name} does not parse: {error}"));
        }
        environment
    })
}

/// The pages' routes, with their security headers.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/static/app.css", get(stylesheet))
        .route("/prefs", get(preferences))
        .route("/login", get(citizen_login_page).post(citizen_request_code))
        .route("/login/code", post(citizen_login))
        .route("/login/oidc", get(oidc_login::start))
        .route("/login/oidc/callback", get(oidc_login::callback))
        .route("/me", get(my_bills))
        .route("/me/applications", get(my_applications))
        .route("/me/payments", get(my_payments))
        .route("/me/letter", get(my_letter).post(sign_my_letter))
        .route("/me/details", get(my_details).post(change_my_details))
        .route("/me/details/code", post(details_code))
        .route(
            "/me/apply",
            get(apply::apply_page)
                .post(apply::apply)
                .layer(DefaultBodyLimit::max(16 * 1024 * 1024)),
        )
        .route("/me/logout", post(citizen_logout))
        .route("/staff/login", get(login_page).post(login))
        .route("/staff/logout", post(logout))
        .route("/staff", get(dashboard))
        .route("/staff/reviews", get(reviews))
        .route("/staff/reviews.xlsx", get(reviews_xlsx))
        .route("/staff/batches.xlsx", get(batches_xlsx))
        .route("/staff/reviews/{id}", get(review_page).post(review))
        .route("/staff/batches", get(batches_page).post(payments::make_batch))
        .route("/staff/batches/{id}", get(payments::batch_page))
        .route("/staff/batches/{id}/export", post(payments::export_batch))
        .route(
            "/staff/batches/{id}/return",
            post(payments::upload_return).layer(DefaultBodyLimit::max(16 * 1024 * 1024)),
        )
        .route("/staff/persons", get(find_person))
        .route("/staff/batches/{id}/approve", post(approve_batch))
        .route("/staff/imports", get(imports_page))
        .route(
            "/staff/imports/spells",
            post(upload_spells).layer(DefaultBodyLimit::max(64 * 1024 * 1024)),
        )
        .route("/staff/imports/rejected/{id}", get(rejected_report))
        .route("/staff/policies", get(console::policies_page))
        .route("/staff/policies.xlsx", get(console::policies_xlsx))
        .route(
            "/staff/policies/what-if",
            post(console::what_if).layer(console::policy_upload_limit()),
        )
        .route(
            "/staff/policies/what-if.xlsx",
            post(console::what_if_xlsx).layer(console::policy_upload_limit()),
        )
        .route(
            "/staff/policies/load",
            post(console::load_policy).layer(console::policy_upload_limit()),
        )
        .route(
            "/staff/clearings",
            get(console::clearings_page).post(console::run_clearing),
        )
        .route("/staff/clearings.xlsx", get(console::clearings_xlsx))
        .route("/staff/clearings/{id}", get(console::clearing_page))
        .route(
            "/staff/clearings/{id}/differences.csv",
            get(console::clearing_csv),
        )
        .route(
            "/staff/clearings/{id}/differences.xlsx",
            get(console::clearing_xlsx),
        )
        .route("/staff/audit", get(console::audit_person))
        .route("/staff/audit.xlsx", get(console::audit_person_xlsx))
        .route("/staff/audit/verify", get(console::audit_verify))
        .route("/staff/users", get(console::users_page).post(console::add_user))
        .route("/staff/users.xlsx", get(console::users_xlsx))
        .route("/staff/users/{name}", get(console::user_page))
        .route("/staff/users/{name}/roles", post(console::change_roles))
        .route("/staff/users/{name}/disable", post(console::disable_user))
        .route("/staff/users/{name}/enable", post(console::enable_user))
        .route(
            "/staff/accounts",
            get(payments::accounts_page)
                .post(payments::upload_accounts)
                .layer(DefaultBodyLimit::max(16 * 1024 * 1024)),
        )
        .route("/staff/accounts/rejected/{id}", get(payments::accounts_report))
        .route("/staff/keys", get(console::keys_page).post(console::create_key))
        .route("/staff/keys.xlsx", get(console::keys_xlsx))
        .route("/staff/keys/{owner}/{id}/revoke", post(console::revoke_key))
        .layer(middleware::from_fn(secure_headers))
}

/// Security headers on every page.
async fn secure_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// A cookie for the whole site, not readable by scripts.
fn set_cookie(name: &str, value: &str, max_age: i64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; Secure; SameSite=Strict"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Who looks at a page and how they want it shown.
struct Viewer {
    language: Language,
    large: bool,
    /// The path shown, to come back to after changing a preference.
    here: String,
    staff: Option<(WebSession, StaffUser)>,
}

impl Viewer {
    async fn of(state: &AppState, headers: &HeaderMap, here: &str) -> Result<Viewer, Box<Response>> {
        let language = cookie(headers, "lang")
            .and_then(Language::parse)
            .unwrap_or(Language::Chinese);
        let large = cookie(headers, "size") == Some("large");
        let staff = match cookie(headers, SESSION_COOKIE) {
            Some(token) => state.store.session(token).await.map_err(|error| {
                tracing::error!(cause = %error, "a session could not be read");
                Box::new(StatusCode::INTERNAL_SERVER_ERROR.into_response())
            })?,
            None => None,
        };
        Ok(Viewer {
            language,
            large,
            here: here.to_owned(),
            staff,
        })
    }

    /// Renders `template` with what every page has and `extra` (whose
    /// values win over the common ones of the same name).
    fn render(&self, status: StatusCode, template: &str, extra: minijinja::Value) -> Response {
        let staff = self.staff.as_ref().map(|(_, user)| {
            context! {
                name => user.name.clone(),
                roles => user.roles.iter().map(|role| role.as_str()).collect::<Vec<_>>(),
            }
        });
        let csrf = self.staff.as_ref().map(|(session, _)| session.csrf.clone());
        let base = context! {
            t => self.language.texts(),
            lang => self.language.code(),
            lang_tag => self.language.tag(),
            large => self.large,
            here => self.here.clone(),
            staff => staff,
            csrf => csrf,
        };
        let page = templates()
            .get_template(template)
            .and_then(|template| template.render(context! { ..extra, ..base }));
        match page {
            Ok(page) => (status, Html(page)).into_response(),
            Err(error) => {
                tracing::error!(%error, template, "a page did not render");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        }
    }

    fn error(&self, status: StatusCode, heading: &str, message: &str) -> Response {
        self.render(
            status,
            "error.html",
            context! { heading => self.language.text(heading), message => self.language.text(message) },
        )
    }

    /// The member of staff, if they have one of `roles`; else the page that
    /// says why not (login, or forbidden).
    fn require(&self, roles: &[Role]) -> Result<&StaffUser, Box<Response>> {
        match &self.staff {
            None => Err(Box::new(Redirect::to("/staff/login").into_response())),
            Some((_, user)) if roles.is_empty() || roles.iter().any(|role| user.has(*role)) => Ok(user),
            Some(_) => Err(Box::new(self.error(
                StatusCode::FORBIDDEN,
                "forbidden",
                "forbidden_text",
            ))),
        }
    }

    /// Whether `given` is the session's CSRF token.
    fn csrf_ok(&self, given: &str) -> bool {
        self.staff
            .as_ref()
            .is_some_and(|(session, _)| !given.is_empty() && session.csrf == given)
    }
}

/// The viewer of a staff page and the member of staff, if they have one of
/// `roles` (any role when empty); else the page that says why not.
async fn staff_page(
    state: &AppState,
    headers: &HeaderMap,
    here: &str,
    roles: &[Role],
) -> Result<(Viewer, StaffUser), Box<Response>> {
    let viewer = Viewer::of(state, headers, here).await?;
    let user = viewer.require(roles)?.clone();
    Ok((viewer, user))
}

/// [`staff_page`] for a form's post: the session's token must come with it.
async fn staff_post(
    state: &AppState,
    headers: &HeaderMap,
    here: &str,
    roles: &[Role],
    csrf: &str,
) -> Result<(Viewer, StaffUser), Box<Response>> {
    let (viewer, user) = staff_page(state, headers, here, roles).await?;
    if !viewer.csrf_ok(csrf) {
        return Err(Box::new(viewer.error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "bad_form",
        )));
    }
    Ok((viewer, user))
}

#[derive(Debug, Deserialize)]
struct FindQuery {
    id: Option<String>,
    purpose: Option<String>,
}

/// A person's whole record by their full ID (typed, never shown back):
/// the read is logged with who and why before anything is shown.
async fn find_person(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<FindQuery>,
) -> Response {
    let (viewer, user) = match staff_page(
        &state,
        &headers,
        "/staff/persons",
        &[Role::Reviewer, Role::Auditor],
    )
    .await
    {
        Ok(found) => found,
        Err(response) => return *response,
    };
    story_page(&state, &viewer, &user, query, "person.html", "staff search").await
}

/// The page `template` with a person's whole story, found by their full ID
/// as typed in `query` (never shown back). The read is logged with who and
/// why (the purpose typed, or `default_why`) before anything is shown; the
/// page alone, with what was typed, when no ID was; a refusal naming the
/// problem when the ID is not one or nobody has it.
async fn story_page(
    state: &AppState,
    viewer: &Viewer,
    user: &StaffUser,
    query: FindQuery,
    template: &str,
    default_why: &str,
) -> Response {
    let purpose = query.purpose.unwrap_or_default();
    let Some(typed) = query.id.filter(|id| !id.trim().is_empty()) else {
        return viewer.render(StatusCode::OK, template, context! { purpose => purpose });
    };
    let refused = |status: StatusCode, problem: &str| {
        let problem = viewer.language.text(problem);
        viewer.render(
            status,
            template,
            context! { purpose => purpose.clone(), problem => problem },
        )
    };
    let Ok(person) = jiuzhu_core::ResidentId::parse(typed.trim()) else {
        return refused(StatusCode::UNPROCESSABLE_ENTITY, "bad_id");
    };
    let why = match purpose.trim() {
        "" => default_why,
        typed => typed,
    };
    match state.store.person_story(person, &user.name, why).await {
        Ok(Some(story)) => {
            let events: Vec<minijinja::Value> = story
                .events
                .iter()
                .map(|event| {
                    context! {
                        at => event.at.clone(), kind => event.kind.as_str(),
                        summary => event.summary.clone(), details => event.details.clone(),
                    }
                })
                .collect();
            viewer.render(
                StatusCode::OK,
                template,
                context! { purpose => purpose, person => story.masked_id, events => events },
            )
        }
        Ok(None) => refused(StatusCode::NOT_FOUND, "unknown_person"),
        Err(error) => failed("a record could not be read", &error),
    }
}

/// A workbook of one sheet: a header row, then the rows, every cell text
/// (money stays exact: no float touches it).
fn workbook(
    sheet_name: &str,
    header: &[&str],
    rows: &[Vec<String>],
) -> Result<Vec<u8>, rust_xlsxwriter::XlsxError> {
    let mut workbook = rust_xlsxwriter::Workbook::new();
    let sheet = workbook.add_worksheet();
    sheet.set_name(sheet_name)?;
    for (column, name) in header.iter().enumerate() {
        sheet.write_string(0, column as u16, *name)?;
    }
    for (row, fields) in rows.iter().enumerate() {
        for (column, field) in fields.iter().enumerate() {
            sheet.write_string(row as u32 + 1, column as u16, field)?;
        }
    }
    workbook.save_to_buffer()
}

fn xlsx_download(name: &str, built: Result<Vec<u8>, rust_xlsxwriter::XlsxError>) -> Response {
    match built {
        Ok(bytes) => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(
                        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                    ),
                ),
                (
                    header::CONTENT_DISPOSITION,
                    HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
                        .unwrap_or_else(|_| HeaderValue::from_static("attachment")),
                ),
            ],
            bytes,
        )
            .into_response(),
        Err(error) => {
            tracing::error!(%error, "a workbook could not be built");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn reviews_xlsx(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let (_, user) = match staff_page(&state, &headers, "/staff/reviews", &[Role::Reviewer]).await {
        Ok(found) => found,
        Err(response) => return *response,
    };
    match state.store.review_queue(&user.name).await {
        Ok(queue) => {
            let rows: Vec<Vec<String>> = queue
                .iter()
                .map(|item| {
                    vec![
                        item.id.to_string(),
                        item.person_masked.clone(),
                        item.bills.to_string(),
                        item.findings.to_string(),
                        item.in_scope_self_pay.to_string(),
                        item.entered_by.clone(),
                        item.submitted_at.clone(),
                    ]
                })
                .collect();
            let header = [
                "application",
                "person",
                "bills",
                "findings",
                "in_scope_self_pay",
                "entered_by",
                "submitted_at",
            ];
            xlsx_download("reviews.xlsx", workbook("待审核 reviews", &header, &rows))
        }
        Err(error) => failed("the review queue could not be read", &error),
    }
}

async fn batches_xlsx(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(response) = staff_page(&state, &headers, "/staff/batches", &[Role::Approver]).await {
        return *response;
    }
    match state.store.batches().await {
        Ok(batches) => {
            let rows: Vec<Vec<String>> = batches
                .iter()
                .map(|batch| {
                    vec![
                        batch.id.to_string(),
                        batch.lines.to_string(),
                        batch.total.to_string(),
                        batch.created_by.clone(),
                        batch.created_at.clone(),
                        batch.approved_by.clone().unwrap_or_default(),
                        batch.paid.1.to_string(),
                        batch.failed.1.to_string(),
                        batch.pending.1.to_string(),
                    ]
                })
                .collect();
            let header = [
                "batch",
                "lines",
                "total",
                "made_by",
                "made_at",
                "approved_by",
                "paid",
                "failed",
                "pending",
            ];
            xlsx_download("batches.xlsx", workbook("拨付批次 batches", &header, &rows))
        }
        Err(error) => failed("the batches could not be read", &error),
    }
}

/// The answer to a failure of the store: a generic 500, the cause logged
/// with what was being done.
fn failed(doing: &str, error: &dyn std::fmt::Display) -> Response {
    tracing::error!(cause = %error, "{doing}");
    StatusCode::INTERNAL_SERVER_ERROR.into_response()
}

/// Today in China (UTC+8), `YYYY-MM-DD`.
fn today_in_china() -> String {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64)
        + 8 * 3600;
    jiuzhu_core::Date::from_days_since_epoch(seconds.div_euclid(86_400) as i32)
        .map(|date| date.to_string())
        .unwrap_or_default()
}

fn escaped(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A bar chart as SVG, drawn on the server: one bar per (label, value,
/// value as shown), heights in integer proportion to the largest value.
/// Every text is escaped; the chart is an image with a title for screen
/// readers, and each bar carries its value as text.
fn bar_chart(title: &str, bars: &[(String, i64, String)]) -> String {
    const HEIGHT: i64 = 160;
    const BAR: i64 = 36;
    const GAP: i64 = 14;
    let largest = bars.iter().map(|(_, value, _)| *value).max().unwrap_or(0).max(1);
    let width = (bars.len() as i64 * (BAR + GAP) + GAP).max(200);
    let mut svg = format!(
        "<svg class=\"chart\" role=\"img\" aria-label=\"{title}\" viewBox=\"0 0 {width} {}\" \
         xmlns=\"http://www.w3.org/2000/svg\"><title>{title}</title>",
        HEIGHT + 60,
        title = escaped(title)
    );
    for (index, (label, value, shown)) in bars.iter().enumerate() {
        let height = (*value).max(0) * HEIGHT / largest;
        let x = GAP + index as i64 * (BAR + GAP);
        let y = 20 + HEIGHT - height;
        svg.push_str(&format!(
            "<rect x=\"{x}\" y=\"{y}\" width=\"{BAR}\" height=\"{height}\" class=\"bar\"><title>{} {}</title></rect>\
             <text x=\"{}\" y=\"{}\" class=\"label\">{}</text><text x=\"{}\" y=\"{}\" class=\"value\">{}</text>",
            escaped(label),
            escaped(shown),
            x + BAR / 2,
            HEIGHT + 40,
            escaped(label),
            x + BAR / 2,
            (y - 4).max(12),
            escaped(shown),
        ));
    }
    svg.push_str("</svg>");
    svg
}

async fn home(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match Viewer::of(&state, &headers, "/").await {
        Ok(viewer) => viewer.render(StatusCode::OK, "home.html", context! {}),
        Err(response) => *response,
    }
}

async fn stylesheet() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/css; charset=utf-8"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        include_str!("app.css"),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct Preferences {
    lang: Option<String>,
    size: Option<String>,
    back: Option<String>,
}

/// Remembers a language or a type size and goes back to the page.
async fn preferences(Query(preferences): Query<Preferences>) -> Response {
    let back = preferences
        .back
        .filter(|back| back.starts_with('/') && !back.starts_with("//") && !back.contains('\\'))
        .unwrap_or_else(|| "/".to_owned());
    let mut response = Redirect::to(&back).into_response();
    let year = 365 * 24 * 3600;
    if let Some(language) = preferences.lang.as_deref().and_then(Language::parse) {
        response
            .headers_mut()
            .append(header::SET_COOKIE, set_cookie("lang", language.code(), year));
    }
    match preferences.size.as_deref() {
        Some("large") => {
            response
                .headers_mut()
                .append(header::SET_COOKIE, set_cookie("size", "large", year));
        }
        Some("normal") => {
            response
                .headers_mut()
                .append(header::SET_COOKIE, set_cookie("size", "normal", year));
        }
        _ => {}
    }
    response
}

fn random_token() -> String {
    jiuzhu_store::ApiKey::generate()
        .map(|(key, _)| key.into_string())
        .unwrap_or_default()
}

async fn login_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let viewer = match Viewer::of(&state, &headers, "/staff/login").await {
        Ok(viewer) => viewer,
        Err(response) => return *response,
    };
    if viewer.staff.is_some() {
        return Redirect::to("/staff").into_response();
    }
    login_form(&viewer, StatusCode::OK, "", None)
}

/// The login form with a fresh token of its own, double-submitted.
fn login_form(viewer: &Viewer, status: StatusCode, name: &str, problem: Option<&str>) -> Response {
    let token = random_token();
    let mut response = viewer.render(
        status,
        "login.html",
        context! { login_csrf => token.clone(), name => name, problem => problem.map(|key| viewer.language.text(key)) },
    );
    response
        .headers_mut()
        .append(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, &token, 3600));
    response
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
}

async fn login(State(state): State<AppState>, headers: HeaderMap, Form(form): Form<LoginForm>) -> Response {
    let viewer = match Viewer::of(&state, &headers, "/staff/login").await {
        Ok(viewer) => viewer,
        Err(response) => return *response,
    };
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if form.csrf.is_empty() || form.csrf != expected {
        return viewer.error(StatusCode::FORBIDDEN, "forbidden", "bad_form");
    }
    let name = form.name.trim().to_owned();
    {
        let mut failures = state
            .web
            .failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        failures.retain(|_, (_, since)| since.elapsed() < LOGIN_WINDOW);
        if failures
            .get(&name)
            .is_some_and(|(count, _)| *count >= LOGIN_FAILURES)
        {
            return login_form(
                &viewer,
                StatusCode::TOO_MANY_REQUESTS,
                &name,
                Some("login_limited"),
            );
        }
    }
    let user = match state.store.staff_login(&name, &form.password).await {
        Ok(user) => user,
        Err(error) => return failed("a login could not be checked", &error),
    };
    let Some(user) = user else {
        let mut failures = state
            .web
            .failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = failures.entry(name.clone()).or_insert((0, Instant::now()));
        entry.0 += 1;
        tracing::warn!(name = %name, failures = entry.0, "a staff login failed");
        return login_form(&viewer, StatusCode::UNAUTHORIZED, &name, Some("login_failed"));
    };
    state
        .web
        .failures
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .remove(&name);
    match state.store.open_session(&user.name, SESSION_SECONDS).await {
        Ok(session) => {
            let mut response = Redirect::to("/staff").into_response();
            let headers = response.headers_mut();
            headers.append(
                header::SET_COOKIE,
                set_cookie(SESSION_COOKIE, &session.token, SESSION_SECONDS),
            );
            headers.append(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, "", 0));
            response
        }
        Err(error) => failed("a session could not be opened", &error),
    }
}

#[derive(Debug, Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(State(state): State<AppState>, headers: HeaderMap, Form(form): Form<CsrfForm>) -> Response {
    let viewer = match Viewer::of(&state, &headers, "/staff").await {
        Ok(viewer) => viewer,
        Err(response) => return *response,
    };
    if !viewer.csrf_ok(&form.csrf) {
        return viewer.error(StatusCode::FORBIDDEN, "forbidden", "bad_form");
    }
    if let Some(token) = cookie(&headers, SESSION_COOKIE) {
        if let Err(error) = state.store.end_session(token).await {
            tracing::error!(cause = %error, "a session could not be ended");
        }
    }
    let mut response = Redirect::to("/staff/login").into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, "", 0));
    response
}

async fn dashboard(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let (viewer, user) = match staff_page(&state, &headers, "/staff", &[]).await {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let reviews = if user.has(Role::Reviewer) {
        state
            .store
            .review_queue(&user.name)
            .await
            .ok()
            .map(|queue| queue.len())
    } else {
        None
    };
    let batches = if user.has(Role::Approver) {
        state
            .store
            .batches()
            .await
            .ok()
            .map(|batches| batches.iter().filter(|batch| batch.approved_by.is_none()).count())
    } else {
        None
    };
    let today = today_in_china();
    let year: i32 = today.get(..4).and_then(|year| year.parse().ok()).unwrap_or(2026);
    let mut read_at = String::new();
    let (recipients_chart, months_chart, categories_chart) =
        match dashboard_figures(&state, &today, year).await {
            Ok(cached) => {
                read_at = cached.read_at_text.clone();
                let figures = &cached.figures;
                (
                    bar_chart(
                        viewer.language.text("recipients_by_category"),
                        &figures
                            .recipients
                            .iter()
                            .map(|(code, count)| (code.clone(), *count as i64, count.to_string()))
                            .collect::<Vec<_>>(),
                    ),
                    bar_chart(
                        &format!("{} {year}", viewer.language.text("assistance_per_month")),
                        &figures
                            .per_month
                            .iter()
                            .map(|(month, amount)| {
                                (
                                    month.get(5..).unwrap_or_default().to_owned(),
                                    amount.fen(),
                                    format!("¥{amount}"),
                                )
                            })
                            .collect::<Vec<_>>(),
                    ),
                    bar_chart(
                        &format!("{} {year}", viewer.language.text("assistance_per_category")),
                        &figures
                            .per_category
                            .iter()
                            .map(|(code, amount)| (code.clone(), amount.fen(), format!("¥{amount}")))
                            .collect::<Vec<_>>(),
                    ),
                )
            }
            Err(error) => {
                tracing::error!(cause = %error, "the dashboard's figures could not be read");
                (String::new(), String::new(), String::new())
            }
        };
    viewer.render(
        StatusCode::OK,
        "dashboard.html",
        context! {
            reviews => reviews, batches => batches,
            recipients_chart => minijinja::Value::from_safe_string(recipients_chart),
            months_chart => minijinja::Value::from_safe_string(months_chart),
            categories_chart => minijinja::Value::from_safe_string(categories_chart),
            read_at => read_at,
        },
    )
}

async fn reviews(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let (viewer, user) = match staff_page(&state, &headers, "/staff/reviews", &[Role::Reviewer]).await {
        Ok(found) => found,
        Err(response) => return *response,
    };
    match state.store.review_queue(&user.name).await {
        Ok(queue) => {
            let applications: Vec<minijinja::Value> = queue
                .iter()
                .map(|item| {
                    context! {
                        id => item.id, person => item.person_masked.clone(), bills => item.bills,
                        findings => item.findings, in_scope => item.in_scope_self_pay.to_string(),
                        entered_by => item.entered_by.clone(), submitted_at => item.submitted_at.clone(),
                    }
                })
                .collect();
            viewer.render(
                StatusCode::OK,
                "reviews.html",
                context! { applications => applications },
            )
        }
        Err(error) => failed("the review queue could not be read", &error),
    }
}

async fn imports_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let viewer = match Viewer::of(&state, &headers, "/staff/imports").await {
        Ok(viewer) => viewer,
        Err(response) => return *response,
    };
    match viewer.require(&[Role::Admin]) {
        Ok(_) => viewer.render(StatusCode::OK, "imports.html", context! {}),
        Err(response) => *response,
    }
}

/// The parts of the upload form.
#[derive(Debug, Default)]
struct Upload {
    csrf: String,
    source: String,
    file_name: String,
    bytes: Vec<u8>,
}

async fn read_upload(mut multipart: Multipart) -> Result<Upload, String> {
    let mut upload = Upload::default();
    while let Some(field) = multipart.next_field().await.map_err(|error| error.body_text())? {
        match field.name().unwrap_or_default() {
            "csrf" => upload.csrf = field.text().await.map_err(|error| error.body_text())?,
            "source" => {
                upload.source = field
                    .text()
                    .await
                    .map_err(|error| error.body_text())?
                    .trim()
                    .to_owned()
            }
            "file" => {
                upload.file_name = field.file_name().unwrap_or("upload.csv").to_owned();
                upload.bytes = field.bytes().await.map_err(|error| error.body_text())?.to_vec();
            }
            _ => {}
        }
    }
    Ok(upload)
}

/// A staff upload read and its CSRF token checked: an unreadable form
/// answers the error page headed by the text `heading`, a bad token 403.
async fn checked_upload(viewer: &Viewer, multipart: Multipart, heading: &str) -> Result<Upload, Response> {
    let upload = match read_upload(multipart).await {
        Ok(upload) => upload,
        Err(message) => {
            let heading = viewer.language.text(heading);
            return Err(viewer.render(
                StatusCode::BAD_REQUEST,
                "error.html",
                context! { heading => heading, message => message },
            ));
        }
    };
    if !viewer.csrf_ok(&upload.csrf) {
        return Err(viewer.error(StatusCode::FORBIDDEN, "forbidden", "bad_form"));
    }
    Ok(upload)
}

/// A refused file's problems as the rejected-rows report: `line,column,
/// message`, with a byte order mark so that Excel reads it as UTF-8.
fn report_csv(problems: &Problems) -> Vec<u8> {
    let mut text = String::from("\u{feff}line,column,message\n");
    let quote = |field: &str| {
        if field.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", field.replace('"', "\"\""))
        } else {
            field.to_owned()
        }
    };
    for problem in problems.kept() {
        text.push_str(&format!(
            "{},{},{}\n",
            problem.line.map_or_else(String::new, |line| line.to_string()),
            quote(problem.column.as_deref().unwrap_or_default()),
            quote(&problem.message)
        ));
    }
    let more = problems.total() - problems.kept().len();
    if more > 0 {
        text.push_str(&format!(",,{}\n", quote(&format!("… and {more} more problems"))));
    }
    text.into_bytes()
}

async fn upload_spells(State(state): State<AppState>, headers: HeaderMap, multipart: Multipart) -> Response {
    let (viewer, user) = match staff_page(&state, &headers, "/staff/imports", &[Role::Admin]).await {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let upload = match checked_upload(&viewer, multipart, "import_result").await {
        Ok(upload) => upload,
        Err(response) => return response,
    };
    let imported = crate::feeds::import_uploaded_spells(
        &state,
        &upload.file_name,
        upload.bytes,
        &upload.source,
        &user.name,
    )
    .await;
    match imported {
        Ok(report) => {
            let already = report.already_imported.as_ref().map(|earlier| {
                format!(
                    "{} ({}, {})",
                    earlier.file_name, earlier.imported_at, earlier.imported_by
                )
            });
            viewer.render(
                StatusCode::OK,
                "import_result.html",
                context! {
                    file => upload.file_name,
                    already => already,
                    report => context! {
                        rows => report.rows, added => report.added, changed => report.changed,
                        new_persons => report.new_persons, ended_persons => report.ended_persons,
                        marked => report.marked,
                    },
                },
            )
        }
        Err(crate::ApiError::Refused(problems)) => {
            let id = keep_report(&state, &user.name, &upload.file_name, &problems);
            let rows = payments::problem_rows(&problems);
            viewer.render(
                StatusCode::UNPROCESSABLE_ENTITY,
                "import_result.html",
                context! {
                    file => upload.file_name, problems => rows, total => problems.total(),
                    report_url => format!("/staff/imports/rejected/{id}"),
                },
            )
        }
        Err(other) => {
            let heading = viewer.language.text("import_result");
            viewer.render(
                other.status_code(),
                "error.html",
                context! { heading => heading, message => other.to_string() },
            )
        }
    }
}

/// Keeps the report of a file refused whole for the member of staff who
/// uploaded it, for [`REPORT_KEPT`]; returns its id.
fn keep_report(state: &AppState, owner: &str, file: &str, problems: &Problems) -> String {
    let id = random_token();
    let mut reports = state
        .web
        .reports
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    reports.retain(|_, report| report.at.elapsed() < REPORT_KEPT);
    if reports.len() >= REPORTS_KEPT {
        reports.clear();
    }
    reports.insert(
        id.clone(),
        RejectedReport {
            owner: owner.to_owned(),
            file: file.to_owned(),
            csv: report_csv(problems),
            at: Instant::now(),
        },
    );
    id
}

async fn rejected_report(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let (viewer, user) = match staff_page(&state, &headers, "/staff/imports", &[Role::Admin]).await {
        Ok(found) => found,
        Err(response) => return *response,
    };
    report_download(&state, &viewer, &user, &id)
}

/// A kept report as a CSV download, for the member of staff who uploaded
/// the file only.
fn report_download(state: &AppState, viewer: &Viewer, user: &StaffUser, id: &str) -> Response {
    let found = {
        let reports = state
            .web
            .reports
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        reports
            .get(id)
            .filter(|report| report.owner == user.name && report.at.elapsed() < REPORT_KEPT)
            .map(|report| (report.file.clone(), report.csv.clone()))
    };
    let Some((file, csv)) = found else {
        return viewer.error(StatusCode::NOT_FOUND, "not_found", "not_found");
    };
    let stem: String = file
        .chars()
        .take_while(|c| *c != '.')
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    let disposition = format!(
        "attachment; filename=\"{}-rejected.csv\"",
        if stem.is_empty() { "file" } else { &stem }
    );
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&disposition)
                    .unwrap_or_else(|_| HeaderValue::from_static("attachment")),
            ),
        ],
        csv,
    )
        .into_response()
}

/// An application as the review page shows it.
fn application_context(view: &jiuzhu_store::ApplicationView, language: Language) -> minijinja::Value {
    let bills: Vec<minijinja::Value> = view
        .bills
        .iter()
        .map(|bill| {
            context! {
                line => bill.line, invoice_no => bill.invoice_no.clone(), hospital => bill.hospital.clone(),
                service_date => bill.service_date.clone(), total => bill.amounts[0].to_string(),
                in_scope => bill.amounts[2].to_string(), status => bill.status.clone(),
                amount => bill.decision.as_ref().map(|(_, amount)| amount.to_string()).unwrap_or_default(),
            }
        })
        .collect();
    let findings: Vec<minijinja::Value> = view
        .findings()
        .map(|check| context! { line => check.line, name => check.name.clone(), detail => check.detail.clone() })
        .collect();
    let events: Vec<minijinja::Value> = view
        .events
        .iter()
        .map(|event| {
            context! {
                at => event.at.clone(), state => event.state.clone(), actor => event.actor.clone(),
                reason => event.reason.clone(),
            }
        })
        .collect();
    let state = view.summary.state.as_str();
    context! {
        id => view.summary.id, person => view.summary.person_masked.clone(),
        state => state, state_text => language.text(&format!("state_{state}")),
        entered_by => view.summary.entered_by.clone(), submitted_at => view.summary.submitted_at.clone(),
        bills => bills, findings => findings, events => events,
    }
}

async fn review_page(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    show_application(&state, &headers, &id, StatusCode::OK, None).await
}

/// The review page of application `id`, opened (and logged) for review.
async fn show_application(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
    status: StatusCode,
    problem: Option<String>,
) -> Response {
    let here = format!("/staff/reviews/{id}");
    let viewer = match Viewer::of(state, headers, &here).await {
        Ok(viewer) => viewer,
        Err(response) => return *response,
    };
    let user = match viewer.require(&[Role::Reviewer, Role::Auditor]) {
        Ok(user) => user.clone(),
        Err(response) => return *response,
    };
    let Ok(id) = id.parse::<i64>() else {
        return viewer.error(StatusCode::NOT_FOUND, "not_found", "not_found");
    };
    match state.store.open_application(id, &user.name, "review page").await {
        Ok((view, story)) => {
            let events: Vec<minijinja::Value> = story
                .events
                .iter()
                .map(|event| context! { at => event.at.clone(), summary => event.summary.clone() })
                .collect();
            let can_review = user.has(Role::Reviewer)
                && view.summary.state == jiuzhu_store::ApplicationState::NeedsReview
                && view.summary.entered_by != user.name;
            viewer.render(
                status,
                "review.html",
                context! {
                    application => application_context(&view, viewer.language),
                    story => events, can_review => can_review, problem => problem,
                },
            )
        }
        Err(jiuzhu_store::ApplicationError::NotFound(_)) => {
            viewer.error(StatusCode::NOT_FOUND, "not_found", "not_found")
        }
        Err(error) => failed("an application could not be opened", &error),
    }
}

#[derive(Debug, Deserialize)]
struct VerdictForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    verdict: String,
    #[serde(default)]
    reason: String,
}

async fn review(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<VerdictForm>,
) -> Response {
    let (viewer, user) =
        match staff_post(&state, &headers, "/staff/reviews", &[Role::Reviewer], &form.csrf).await {
            Ok(found) => found,
            Err(response) => return *response,
        };
    let Ok(number) = id.parse::<i64>() else {
        return viewer.error(StatusCode::NOT_FOUND, "not_found", "not_found");
    };
    let verdict = match form.verdict.as_str() {
        "approve" => jiuzhu_store::Verdict::Approve,
        "reject" => jiuzhu_store::Verdict::Reject,
        _ => return viewer.error(StatusCode::BAD_REQUEST, "forbidden", "bad_form"),
    };
    match state
        .store
        .review_application(number, verdict, &form.reason, &user.name)
        .await
    {
        Ok(_) => Redirect::to(&format!("/staff/reviews/{number}")).into_response(),
        Err(error) => {
            let status = status_of(&error);
            show_application(&state, &headers, &id, status, Some(error.to_string())).await
        }
    }
}

/// The status of a page that shows a refusal.
fn status_of(error: &jiuzhu_store::ApplicationError) -> StatusCode {
    use jiuzhu_store::ApplicationError as E;
    match error {
        E::SelfReview { .. } | E::MissingRole { .. } | E::NotStaff(_) => StatusCode::FORBIDDEN,
        E::ReasonRequired | E::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        E::NotFound(_) => StatusCode::NOT_FOUND,
        E::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::CONFLICT,
    }
}

async fn batches_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    show_batches(&state, &headers, StatusCode::OK, None, None).await
}

async fn show_batches(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    problem: Option<String>,
    notice: Option<String>,
) -> Response {
    let (viewer, user) = match staff_page(state, headers, "/staff/batches", &payments::MAKERS).await {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let approver = user.has(Role::Approver);
    match state.store.batches().await {
        Ok(batches) => {
            let language = viewer.language;
            let rows: Vec<minijinja::Value> = batches
                .iter()
                .map(|batch| {
                    let status = if batch.returned {
                        "returned"
                    } else if batch.exported {
                        "exported"
                    } else if batch.approved_by.is_some() {
                        "approved"
                    } else {
                        "awaiting_approval"
                    };
                    context! {
                        id => batch.id, lines => batch.lines, total => batch.total.to_string(),
                        created_by => batch.created_by.clone(), status => language.text(status),
                        awaiting => approver && batch.approved_by.is_none() && batch.created_by != user.name,
                    }
                })
                .collect();
            viewer.render(
                status,
                "batches.html",
                context! { batches => rows, problem => problem, notice => notice },
            )
        }
        Err(error) => failed("the batches could not be read", &error),
    }
}

async fn approve_batch(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let (viewer, user) =
        match staff_post(&state, &headers, "/staff/batches", &[Role::Approver], &form.csrf).await {
            Ok(found) => found,
            Err(response) => return *response,
        };
    let Ok(batch) = id.parse::<i64>() else {
        return viewer.error(StatusCode::NOT_FOUND, "not_found", "not_found");
    };
    match state.store.approve_batch(batch, &user.name).await {
        Ok(_) => Redirect::to("/staff/batches").into_response(),
        Err(error) => {
            let problem = payments::said(viewer.language, &error);
            show_batches(&state, &headers, payments::status_of(&error), Some(problem), None).await
        }
    }
}

/// The login page of residents, with a fresh form token (and the link to
/// the unified login when it is configured).
fn citizen_form(state: &AppState, viewer: &Viewer, status: StatusCode, extra: minijinja::Value) -> Response {
    let token = random_token();
    let mut response = viewer.render(
        status,
        "citizen_login.html",
        context! { login_csrf => token.clone(), oidc => state.oidc.is_some(), ..extra },
    );
    response
        .headers_mut()
        .append(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, &token, 3600));
    response
}

async fn citizen_login_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let viewer = match Viewer::of(&state, &headers, "/login").await {
        Ok(viewer) => viewer,
        Err(response) => return *response,
    };
    citizen_form(
        &state,
        &viewer,
        StatusCode::OK,
        context! { step => "ask", person_id => "" },
    )
}

#[derive(Debug, Deserialize)]
struct CodeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    person_id: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    code: String,
}

/// Checks the login form's own token; the resident ID as typed.
fn login_form_ok(headers: &HeaderMap, form: &CodeForm) -> bool {
    let expected = cookie(headers, LOGIN_COOKIE).unwrap_or_default();
    !form.csrf.is_empty() && form.csrf == expected
}

async fn citizen_request_code(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<CodeForm>,
) -> Response {
    let viewer = match Viewer::of(&state, &headers, "/login").await {
        Ok(viewer) => viewer,
        Err(response) => return *response,
    };
    if !login_form_ok(&headers, &form) {
        return viewer.error(StatusCode::FORBIDDEN, "forbidden", "bad_form");
    }
    let typed = form.person_id.trim().to_owned();
    let Ok(person) = jiuzhu_core::ResidentId::parse(&typed) else {
        let problem = viewer.language.text("bad_id");
        return citizen_form(
            &state,
            &viewer,
            StatusCode::UNPROCESSABLE_ENTITY,
            context! { step => "ask", person_id => typed, problem => problem },
        );
    };
    match state.store.request_login_code(person, form.phone.trim()).await {
        Ok(jiuzhu_store::CodeRequest::Limited) => {
            let problem = viewer.language.text("codes_limited");
            citizen_form(
                &state,
                &viewer,
                StatusCode::TOO_MANY_REQUESTS,
                context! { step => "ask", person_id => typed, problem => problem },
            )
        }
        Ok(request) => {
            let demo_code = match &request {
                jiuzhu_store::CodeRequest::Made {
                    code, masked_phone, ..
                } => {
                    if state.demo {
                        tracing::info!(person = %person.masked(), phone = %masked_phone, code = %code, "a login code (demo)");
                        Some(code.clone())
                    } else {
                        tracing::info!(person = %person.masked(), phone = %masked_phone, "a login code was made and is being sent");
                        None
                    }
                }
                _ => None,
            };
            // The same page whether or not the ID and phone matched.
            citizen_form(
                &state,
                &viewer,
                StatusCode::OK,
                context! { step => "code", person_id => typed, demo_code => demo_code },
            )
        }
        Err(error) => failed("a login code could not be made", &error),
    }
}

async fn citizen_login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<CodeForm>,
) -> Response {
    let viewer = match Viewer::of(&state, &headers, "/login").await {
        Ok(viewer) => viewer,
        Err(response) => return *response,
    };
    if !login_form_ok(&headers, &form) {
        return viewer.error(StatusCode::FORBIDDEN, "forbidden", "bad_form");
    }
    let typed = form.person_id.trim().to_owned();
    let session = match jiuzhu_core::ResidentId::parse(&typed) {
        Ok(person) => {
            state
                .store
                .finish_login(person, &form.code, SESSION_SECONDS)
                .await
        }
        Err(_) => Ok(None),
    };
    match session {
        Ok(Some(session)) => {
            let mut response = Redirect::to("/me").into_response();
            let headers = response.headers_mut();
            headers.append(
                header::SET_COOKIE,
                set_cookie(CITIZEN_COOKIE, &session.token, SESSION_SECONDS),
            );
            headers.append(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, "", 0));
            headers.append(header::SET_COOKIE, set_cookie(VIA_OIDC_COOKIE, "", 0));
            response
        }
        Ok(None) => {
            let problem = viewer.language.text("code_wrong");
            citizen_form(
                &state,
                &viewer,
                StatusCode::UNAUTHORIZED,
                context! { step => "code", person_id => typed, problem => problem },
            )
        }
        Err(error) => failed("a login could not be checked", &error),
    }
}

/// A ratio as the explanation writes it (`"0.9"`, `"1"`, `"0.755"`) in
/// percent (`"90%"`, `"100%"`, `"75.5%"`), without floating point.
fn percent_of(ratio: &str) -> String {
    let (whole, fraction) = ratio.split_once('.').unwrap_or((ratio, ""));
    let Ok(whole) = whole.parse::<u64>() else {
        return String::new();
    };
    let digits: String = fraction.chars().chain(std::iter::repeat('0')).take(4).collect();
    let Ok(fraction) = digits.parse::<u64>() else {
        return String::new();
    };
    let basis_points = whole * 10_000 + fraction;
    let (percent, rest) = (basis_points / 100, basis_points % 100);
    if rest == 0 {
        format!("{percent}%")
    } else {
        format!("{percent}.{}%", format!("{rest:02}").trim_end_matches('0'))
    }
}

/// The few words of a stored settlement answer (`SettlementResponse`) a
/// resident's page shows, borrowed from its text; the rest of the answer
/// is passed over, nothing of it kept.
#[derive(serde::Deserialize)]
struct AnswerWords<'a> {
    #[serde(borrow)]
    explanation: ExplanationWords<'a>,
}

#[derive(serde::Deserialize)]
struct ExplanationWords<'a> {
    #[serde(borrow, default)]
    category_code: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    category_name: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    ratio: Option<std::borrow::Cow<'a, str>>,
}

/// A bill explained in plain words, in the page's language.
fn bill_in_words(bill: &jiuzhu_store::CitizenBill, language: Language) -> String {
    let answer: Option<AnswerWords<'_>> = serde_json::from_str(&bill.response).ok();
    let explanation = answer.as_ref().map(|answer| &answer.explanation);
    let category = explanation
        .map(|explanation| {
            format!(
                "{} {}",
                explanation.category_code.as_deref().unwrap_or_default(),
                explanation.category_name.as_deref().unwrap_or_default()
            )
        })
        .unwrap_or_default();
    let ratio = explanation
        .and_then(|explanation| explanation.ratio.as_deref())
        .unwrap_or_default();
    let percent = percent_of(ratio);
    match (language, bill.outcome.as_str()) {
        (Language::Chinese, "assisted" | "capped") => format!(
            "您这张票据总金额 ¥{}，其中医保目录内个人自付 ¥{}；按您的类别 {category}，救助比例 {percent}，获医疗救助 ¥{}。",
            bill.total, bill.in_scope_self_pay, bill.amount
        ),
        (Language::English, "assisted" | "capped") => format!(
            "Your bill of ¥{}: ¥{} was yours to pay within the insurance catalogue; your category {category} covers {percent}: ¥{} assistance.",
            bill.total, bill.in_scope_self_pay, bill.amount
        ),
        (Language::Chinese, "not_eligible") => format!("您这张票据总金额 ¥{}；就诊当天您不在救助对象名单内，未获救助。", bill.total),
        (Language::English, "not_eligible") => {
            format!("Your bill of ¥{}: on that day you were not a recipient, so nothing was paid.", bill.total)
        }
        (Language::Chinese, _) => format!("您这张票据总金额 ¥{}；按政策未获救助（¥{}）。", bill.total, bill.amount),
        (Language::English, _) => format!("Your bill of ¥{}: the policy pays nothing for it (¥{}).", bill.total, bill.amount),
    }
}

/// The resident whose session came with the request: their session,
/// blind index and masked ID; else the login page.
async fn resident(
    state: &AppState,
    headers: &HeaderMap,
    here: &str,
) -> Result<(Viewer, jiuzhu_store::WebSession, Vec<u8>, String), Box<Response>> {
    let viewer = Viewer::of(state, headers, here).await?;
    let citizen = match cookie(headers, CITIZEN_COOKIE) {
        Some(token) => state.store.citizen_session(token).await,
        None => Ok(None),
    };
    match citizen {
        Ok(Some((session, key, masked))) => Ok((viewer, session, key, masked)),
        Ok(None) => Err(Box::new(Redirect::to("/login").into_response())),
        Err(error) => {
            tracing::error!(cause = %error, "a resident's session could not be read");
            Err(Box::new(StatusCode::INTERNAL_SERVER_ERROR.into_response()))
        }
    }
}

async fn my_bills(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let viewer = match Viewer::of(&state, &headers, "/me").await {
        Ok(viewer) => viewer,
        Err(response) => return *response,
    };
    // The session, who it is and their bills, read at once.
    let page = match cookie(&headers, CITIZEN_COOKIE) {
        Some(token) => state.store.citizen_bills_page(token).await,
        None => Ok(None),
    };
    let page = match page {
        Ok(Some(page)) => page,
        Ok(None) => return Redirect::to("/login").into_response(),
        Err(error) => return failed("a resident's bills could not be read", &error),
    };
    let language = viewer.language;
    let rows: Vec<minijinja::Value> = page
        .bills
        .iter()
        .map(|bill| {
            context! {
                invoice_no => bill.invoice_no.clone(), hospital => bill.hospital.clone(),
                service_date => bill.service_date.clone(), reversed => bill.reversed,
                paid => bill.amount.fen() > 0 && !bill.reversed, words => bill_in_words(bill, language),
            }
        })
        .collect();
    viewer.render(
        StatusCode::OK,
        "my_bills.html",
        context! { citizen => page.masked, bills => rows, csrf => page.session.csrf },
    )
}

async fn my_applications(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let (viewer, _, key, _) = match resident(&state, &headers, "/me/applications").await {
        Ok(found) => found,
        Err(response) => return *response,
    };
    match state.store.applications_of_key(&key).await {
        Ok(views) => {
            let language = viewer.language;
            let applications: Vec<minijinja::Value> = views
                .iter()
                .map(|view| {
                    let events: Vec<minijinja::Value> = view
                        .events
                        .iter()
                        .map(|event| {
                            context! {
                                at => event.at.clone(),
                                state_text => language.text(&format!("state_{}", event.state)),
                                reason => event.reason.clone(),
                            }
                        })
                        .collect();
                    let bills: Vec<minijinja::Value> = view
                        .bills
                        .iter()
                        .map(|bill| {
                            context! {
                                invoice_no => bill.invoice_no.clone(), service_date => bill.service_date.clone(),
                                hospital => bill.hospital.clone(), total => bill.amounts[0].to_string(),
                                status_text => language.text(&format!("bill_{}", bill.status)),
                                amount => bill.decision.as_ref().map(|(_, amount)| amount.to_string()),
                            }
                        })
                        .collect();
                    let state = view.summary.state.as_str();
                    context! {
                        id => view.summary.id, state_text => language.text(&format!("state_{state}")),
                        bills => bills, events => events,
                    }
                })
                .collect();
            viewer.render(
                StatusCode::OK,
                "my_applications.html",
                context! { applications => applications },
            )
        }
        Err(error) => failed("a resident's applications could not be read", &error),
    }
}

async fn my_payments(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let (viewer, _, key, _) = match resident(&state, &headers, "/me/payments").await {
        Ok(found) => found,
        Err(response) => return *response,
    };
    match state.store.citizen_payments(&key).await {
        Ok(payments) => {
            let language = viewer.language;
            let rows: Vec<minijinja::Value> = payments
                .iter()
                .map(|payment| {
                    context! {
                        status => language.text(&format!("payment_{}", payment.status)),
                        amount => payment.amount.to_string(), at => payment.at.clone(),
                        paying => payment.paying.join(", "), reason => payment.reason.clone(),
                    }
                })
                .collect();
            viewer.render(StatusCode::OK, "my_payments.html", context! { payments => rows })
        }
        Err(error) => failed("a resident's payments could not be read", &error),
    }
}

async fn my_letter(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let (viewer, session, key, _) = match resident(&state, &headers, "/me/letter").await {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let letter = state.store.current_letter().await;
    let signed = state.store.signed_current_letter(&key).await;
    match (letter, signed) {
        (Ok(letter), Ok(signed)) => {
            let letter = letter.map(|letter| {
                context! { version => letter.version, text => letter.body, sha256 => letter.sha256 }
            });
            viewer.render(
                StatusCode::OK,
                "my_letter.html",
                context! { letter => letter, signed => signed, csrf => session.csrf },
            )
        }
        (Err(error), _) | (_, Err(error)) => {
            tracing::error!(cause = %error, "the letter could not be read");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[derive(Debug, Deserialize)]
struct SignForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    sha256: String,
}

/// Signs the letter whose text the page showed: if a new version came
/// meanwhile, the page shows that one to read and sign.
async fn sign_my_letter(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<SignForm>,
) -> Response {
    let (viewer, session, key, masked) = match resident(&state, &headers, "/me/letter").await {
        Ok(found) => found,
        Err(response) => return *response,
    };
    if form.csrf.is_empty() || form.csrf != session.csrf {
        return viewer.error(StatusCode::FORBIDDEN, "forbidden", "bad_form");
    }
    let actor = format!("citizen:{masked}");
    match state
        .store
        .sign_letter_as(
            &key,
            &masked,
            &form.sha256,
            jiuzhu_store::ApplyChannel::Web,
            &actor,
        )
        .await
    {
        Ok(_) | Err(jiuzhu_store::ApplicationError::LetterChanged { .. }) => {
            Redirect::to("/me/letter").into_response()
        }
        Err(error) => {
            tracing::error!(cause = %error, "a letter could not be signed");
            viewer.error(StatusCode::CONFLICT, "letter", "no_letter")
        }
    }
}

/// The details page, with what a step adds.
async fn details_page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    extra: minijinja::Value,
) -> Response {
    let (viewer, session, key, _) = match resident(state, headers, "/me/details").await {
        Ok(found) => found,
        Err(response) => return *response,
    };
    match state.store.citizen_details(&key).await {
        Ok(details) => {
            let account = details
                .bank_account
                .map(|(holder, bank, number)| context! { holder => holder, bank => bank, number => number });
            viewer.render(
                status,
                "my_details.html",
                context! { ..extra, ..context! { phone => details.phone, account => account, csrf => session.csrf } },
            )
        }
        Err(error) => failed("a resident's details could not be read", &error),
    }
}

#[derive(Debug, Deserialize)]
struct DoneQuery {
    done: Option<String>,
}

async fn my_details(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<DoneQuery>,
) -> Response {
    details_page(
        &state,
        &headers,
        StatusCode::OK,
        context! { done => query.done.is_some() },
    )
    .await
}

async fn details_code(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let (viewer, session, key, masked) = match resident(&state, &headers, "/me/details").await {
        Ok(found) => found,
        Err(response) => return *response,
    };
    if form.csrf.is_empty() || form.csrf != session.csrf {
        return viewer.error(StatusCode::FORBIDDEN, "forbidden", "bad_form");
    }
    match state.store.request_code_by_key(&key).await {
        Ok(jiuzhu_store::CodeRequest::Made { code, .. }) => {
            let demo_code = if state.demo {
                tracing::info!(person = %masked, code = %code, "a code to change details (demo)");
                Some(code)
            } else {
                tracing::info!(person = %masked, "a code to change details was made and is being sent");
                None
            };
            details_page(
                &state,
                &headers,
                StatusCode::OK,
                context! { code_sent => true, demo_code => demo_code },
            )
            .await
        }
        Ok(jiuzhu_store::CodeRequest::Limited) => {
            let problem = viewer.language.text("codes_limited");
            details_page(
                &state,
                &headers,
                StatusCode::TOO_MANY_REQUESTS,
                context! { problem => problem },
            )
            .await
        }
        Ok(jiuzhu_store::CodeRequest::NoMatch) => {
            let problem = viewer.language.text("code_wrong");
            details_page(
                &state,
                &headers,
                StatusCode::CONFLICT,
                context! { problem => problem },
            )
            .await
        }
        Err(error) => failed("a code could not be made", &error),
    }
}

#[derive(Debug, Deserialize)]
struct DetailsForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    holder: String,
    #[serde(default)]
    bank: String,
    #[serde(default)]
    account: String,
    #[serde(default)]
    new_phone: String,
    #[serde(default)]
    code: String,
}

async fn change_my_details(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<DetailsForm>,
) -> Response {
    let (viewer, session, key, masked) = match resident(&state, &headers, "/me/details").await {
        Ok(found) => found,
        Err(response) => return *response,
    };
    if form.csrf.is_empty() || form.csrf != session.csrf {
        return viewer.error(StatusCode::FORBIDDEN, "forbidden", "bad_form");
    }
    let account: String = form.account.chars().filter(|c| !c.is_whitespace()).collect();
    let new = jiuzhu_store::NewDetails {
        phone: Some(form.new_phone.trim().to_owned()).filter(|phone| !phone.is_empty()),
        bank_account: (!account.is_empty()).then(|| (form.holder.clone(), form.bank.clone(), account)),
    };
    match state.store.change_details(&key, &masked, &form.code, &new).await {
        Ok(()) => Redirect::to("/me/details?done=1").into_response(),
        Err(error) => {
            let status = status_of(&error);
            details_page(
                &state,
                &headers,
                status,
                context! { problem => error.to_string() },
            )
            .await
        }
    }
}

async fn citizen_logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let token = cookie(&headers, CITIZEN_COOKIE).unwrap_or_default().to_owned();
    let session = state.store.citizen_session(&token).await.ok().flatten();
    match session {
        Some((session, _, _)) if !form.csrf.is_empty() && session.csrf == form.csrf => {
            if let Err(error) = state.store.end_session(&token).await {
                tracing::error!(cause = %error, "a session could not be ended");
            }
            // A login with the unified login ends there too, when the
            // issuer has an end-session endpoint.
            let mut to = "/login".to_owned();
            if let (Some(oidc), Some("oidc")) = (&state.oidc, cookie(&headers, VIA_OIDC_COOKIE)) {
                match oidc.logout_url().await {
                    Ok(Some(url)) => to = url,
                    Ok(None) => {}
                    Err(error) => {
                        tracing::warn!(cause = %error, "a resident logged out here but not at the unified login");
                    }
                }
            }
            let mut response = Redirect::to(&to).into_response();
            let headers = response.headers_mut();
            headers.append(header::SET_COOKIE, set_cookie(CITIZEN_COOKIE, "", 0));
            headers.append(header::SET_COOKIE, set_cookie(VIA_OIDC_COOKIE, "", 0));
            response
        }
        _ => StatusCode::FORBIDDEN.into_response(),
    }
}

/// The web's state, shared by clones of the router.
pub(crate) fn state() -> Arc<WebState> {
    Arc::new(WebState::default())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::{dashboard_figures, percent_of, DASHBOARD_FRESH};
    use crate::metrics::Metrics;
    use crate::AppState;

    /// A viewer of stale figures is answered at once even while a read of
    /// new ones is under way (held here as a slow read would hold it), and
    /// a later viewer starts the background read that freshens them.
    #[tokio::test]
    async fn a_stale_dashboard_is_shown_at_once_while_a_read_is_under_way() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("jiuzhu.db").display());
        let keys = jiuzhu_store::DataKeys::from_bytes([7; 32], [9; 32]);
        let store = jiuzhu_store::Store::open(&url, keys, 2).await.unwrap();
        let state = AppState {
            store,
            metrics: Arc::new(Metrics::default()),
            max_body_bytes: 1 << 20,
            feed_max_body_bytes: 1 << 20,
            applications: crate::ApplicationSettings::default(),
            web: super::state(),
            demo: false,
            oidc: None,
        };
        let (today, year) = ("2026-11-30", 2026);
        let first = dashboard_figures(&state, today, year).await.unwrap();
        let cache = &state.web.dashboard;
        let long_ago = Instant::now().checked_sub(DASHBOARD_FRESH * 2).unwrap();
        let make_stale = || {
            cache.figures.lock().unwrap().as_mut().unwrap().read_at = long_ago;
        };
        make_stale();

        // A read is under way and does not end while the viewer asks.
        let under_way = Arc::clone(&cache.reading).lock_owned().await;
        let shown = tokio::time::timeout(Duration::from_secs(2), dashboard_figures(&state, today, year))
            .await
            .expect("a viewer of stale figures waited for the read under way")
            .unwrap();
        assert_eq!(shown.read_at, long_ago);
        assert!(Arc::ptr_eq(&shown.figures, &first.figures));
        drop(under_way);

        // The next viewer of stale figures gets them at once too, and the
        // read it starts in the background freshens them for later ones.
        let shown = tokio::time::timeout(Duration::from_secs(2), dashboard_figures(&state, today, year))
            .await
            .expect("a viewer of stale figures waited")
            .unwrap();
        assert_eq!(shown.read_at, long_ago);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let current = cache.current(year).unwrap();
            if current.read_at > long_ago && current.fresh(today) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the background read never freshened the figures"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let later = dashboard_figures(&state, today, year).await.unwrap();
        assert!(later.read_at > long_ago);
    }

    #[test]
    fn a_ratio_is_said_in_percent() {
        assert_eq!(percent_of("0.9"), "90%");
        assert_eq!(percent_of("1"), "100%");
        assert_eq!(percent_of("0.755"), "75.5%");
        assert_eq!(percent_of("0.05"), "5%");
        assert_eq!(percent_of("0"), "0%");
        assert_eq!(percent_of(""), "");
    }
}
