//! The staff console's pages beyond the daily work: policy versions and
//! the what-if of a proposed policy, the clearings and their lines, a
//! person's audit trail and the chain's check, staff users (their roles
//! changed, disabled with a reason, enabled again) and API keys.
//! Each page checks its roles on the server and each form its CSRF token,
//! as the other staff pages do.

use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use jiuzhu_store::{KeyOwner, Role, WhatIf, WhatIfError};
use minijinja::context;
use serde::Deserialize;

use super::{
    failed, staff_page, staff_post, story_page, workbook, xlsx_download, CsrfForm, FindQuery, Viewer,
};
use crate::AppState;

/// The largest policy file accepted, in bytes.
pub(super) const POLICY_MAX_BYTES: usize = 1024 * 1024;

/// Who reads the policies and the clearings.
const POLICY_READERS: &[Role] = &[Role::Admin, Role::Auditor];

fn current_year() -> i32 {
    super::today_in_china()
        .get(..4)
        .and_then(|year| year.parse().ok())
        .unwrap_or(2026)
}

/// The limit of a policy upload's body: the file and the form around it.
pub(super) fn policy_upload_limit() -> DefaultBodyLimit {
    DefaultBodyLimit::max(POLICY_MAX_BYTES + 64 * 1024)
}

// ---------------------------------------------------------------------
// Policy versions and the what-if.

async fn policy_rows(state: &AppState) -> Result<Vec<minijinja::Value>, Response> {
    match state.store.policy_versions().await {
        Ok(versions) => Ok(versions
            .iter()
            .map(|version| {
                context! {
                    id => version.id, name => version.name.clone().unwrap_or_default(),
                    digest => version.digest.get(..16).unwrap_or_default().to_owned(),
                    loaded_at => version.loaded_at.clone(), loaded_by => version.loaded_by.clone(),
                    in_force => version.in_force,
                }
            })
            .collect()),
        Err(error) => Err(failed("the policy versions could not be read", &error)),
    }
}

async fn show_policies(
    state: &AppState,
    viewer: &Viewer,
    status: StatusCode,
    extra: minijinja::Value,
) -> Response {
    match policy_rows(state).await {
        Ok(versions) => viewer.render(
            status,
            "policies.html",
            context! { versions => versions, year => current_year(), ..extra },
        ),
        Err(response) => response,
    }
}

pub(super) async fn policies_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let (viewer, _) = match staff_page(&state, &headers, "/staff/policies", POLICY_READERS).await {
        Ok(found) => found,
        Err(response) => return *response,
    };
    show_policies(&state, &viewer, StatusCode::OK, context! {}).await
}

pub(super) async fn policies_xlsx(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(response) = staff_page(&state, &headers, "/staff/policies", POLICY_READERS).await {
        return *response;
    }
    match state.store.policy_versions().await {
        Ok(versions) => {
            let rows: Vec<Vec<String>> = versions
                .iter()
                .map(|version| {
                    vec![
                        version.id.to_string(),
                        version.name.clone().unwrap_or_default(),
                        version.digest.clone(),
                        version.loaded_at.clone(),
                        version.loaded_by.clone(),
                        if version.in_force { "yes" } else { "no" }.to_owned(),
                    ]
                })
                .collect();
            let header = ["policy", "name", "sha256", "loaded_at", "loaded_by", "in_force"];
            xlsx_download("policies.xlsx", workbook("政策版本 policies", &header, &rows))
        }
        Err(error) => failed("the policy versions could not be read", &error),
    }
}

/// The parts of a policy form: the file (or its text, sent back by the
/// what-if's page), the year and the token.
#[derive(Debug, Default)]
struct PolicyUpload {
    csrf: String,
    year: String,
    file_name: String,
    source: Option<String>,
    bytes: Vec<u8>,
}

async fn read_policy_upload(mut multipart: Multipart) -> Result<PolicyUpload, String> {
    let mut upload = PolicyUpload::default();
    while let Some(field) = multipart.next_field().await.map_err(|error| error.body_text())? {
        match field.name().unwrap_or_default() {
            "csrf" => upload.csrf = field.text().await.map_err(|error| error.body_text())?,
            "year" => upload.year = field.text().await.map_err(|error| error.body_text())?,
            "source" => upload.source = Some(field.text().await.map_err(|error| error.body_text())?),
            "file" => {
                upload.file_name = field.file_name().unwrap_or("policy.toml").to_owned();
                upload.bytes = field.bytes().await.map_err(|error| error.body_text())?.to_vec();
            }
            _ => {}
        }
    }
    if upload.file_name.is_empty() {
        upload.file_name = "policy.toml".to_owned();
    }
    Ok(upload)
}

/// The policy's text, or what is wrong with the file.
fn policy_text(upload: &PolicyUpload) -> Result<String, String> {
    let text = match &upload.source {
        Some(source) if upload.bytes.is_empty() => source.clone(),
        _ => String::from_utf8(upload.bytes.clone())
            .map_err(|_| format!("{}: is not UTF-8 text", upload.file_name))?,
    };
    if text.trim().is_empty() {
        return Err(format!("{}: is empty", upload.file_name));
    }
    if text.len() > POLICY_MAX_BYTES {
        return Err(format!(
            "{}: is larger than {POLICY_MAX_BYTES} bytes",
            upload.file_name
        ));
    }
    Ok(text)
}

/// The problems of a policy file, one a line, each naming its line (and
/// column, where TOML's syntax is at fault).
fn policy_problems(problems: &jiuzhu_formats::Problems) -> Vec<String> {
    let mut lines: Vec<String> = problems.kept().iter().map(ToString::to_string).collect();
    let more = problems.total() - problems.kept().len();
    if more > 0 {
        lines.push(format!("… and {more} more problems"));
    }
    lines
}

/// The what-if's figures as the page shows them.
fn what_if_context(what_if: &WhatIf) -> minijinja::Value {
    let categories: Vec<minijinja::Value> = what_if
        .categories
        .iter()
        .map(|category| {
            context! {
                code => category.code.clone(),
                invoices_now => category.invoices_now, amount_now => category.amount_now.to_string(),
                invoices_then => category.invoices_then, amount_then => category.amount_then.to_string(),
                difference => category.difference().to_string(),
            }
        })
        .collect();
    context! {
        year => what_if.year, policy_id => what_if.policy_id, invoices => what_if.invoices,
        persons => what_if.persons, total_now => what_if.total_now.to_string(),
        total_then => what_if.total_then.to_string(), difference => what_if.difference().to_string(),
        persons_changed => what_if.persons_changed, categories => categories,
        spells_left_out => what_if.spells_left_out,
    }
}

/// A computed what-if: the figures, the proposed policy's name, its text
/// and the year.
struct Computed {
    what_if: WhatIf,
    name: String,
    file: String,
    text: String,
    year: i32,
}

/// The what-if of an uploaded form, for admins with the form's token; else
/// the page that says why not.
async fn compute_what_if(
    state: &AppState,
    headers: &HeaderMap,
    multipart: Multipart,
) -> Result<(Viewer, Computed), Response> {
    let (viewer, _) = staff_page(state, headers, "/staff/policies", &[Role::Admin])
        .await
        .map_err(|response| *response)?;
    let upload = match read_policy_upload(multipart).await {
        Ok(upload) => upload,
        Err(message) => {
            return Err(show_policies(
                state,
                &viewer,
                StatusCode::BAD_REQUEST,
                context! { problems => vec![message] },
            )
            .await)
        }
    };
    if !viewer.csrf_ok(&upload.csrf) {
        return Err(viewer.error(StatusCode::FORBIDDEN, "forbidden", "bad_form"));
    }
    let refused = match what_if_of(state, &upload).await {
        Ok(computed) => return Ok((viewer, computed)),
        Err(Ok(problems)) => problems,
        Err(Err(response)) => return Err(*response),
    };
    Err(show_policies(
        state,
        &viewer,
        StatusCode::UNPROCESSABLE_ENTITY,
        context! { problems => refused, file => upload.file_name.clone() },
    )
    .await)
}

/// The what-if of an upload; else what is wrong with it (`Ok`) or the
/// store's failure (`Err`).
async fn what_if_of(
    state: &AppState,
    upload: &PolicyUpload,
) -> Result<Computed, Result<Vec<String>, Box<Response>>> {
    let year = match upload.year.trim() {
        "" => current_year(),
        typed => match typed.parse::<i32>() {
            Ok(year) if (2000..=2100).contains(&year) => year,
            _ => return Err(Ok(vec![format!("year {typed:?}: expected a year such as 2024")])),
        },
    };
    let text = policy_text(upload).map_err(|problem| Ok(vec![problem]))?;
    let proposed = jiuzhu_formats::parse_policy(&upload.file_name, &text)
        .map_err(|problems| Ok(policy_problems(&problems)))?;
    match state.store.what_if(year, &proposed).await {
        Ok(what_if) => Ok(Computed {
            what_if,
            name: proposed.name().unwrap_or_default().to_owned(),
            file: upload.file_name.clone(),
            text,
            year,
        }),
        Err(WhatIfError::Store(error)) => {
            Err(Err(Box::new(failed("a what-if could not be computed", &error))))
        }
        Err(other) => Err(Ok(vec![other.to_string()])),
    }
}

/// `POST /staff/policies/what-if`: the uploaded policy against the one in
/// force on a year's stored bills. Nothing is stored.
pub(super) async fn what_if(
    State(state): State<AppState>,
    headers: HeaderMap,
    multipart: Multipart,
) -> Response {
    let (viewer, computed) = match compute_what_if(&state, &headers, multipart).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    show_policies(
        &state,
        &viewer,
        StatusCode::OK,
        context! {
            what_if => what_if_context(&computed.what_if), file => computed.file,
            proposed_name => computed.name, source => computed.text, year => computed.year,
        },
    )
    .await
}

/// `POST /staff/policies/what-if.xlsx`: the same what-if as a workbook,
/// a row per category and one for the total.
pub(super) async fn what_if_xlsx(
    State(state): State<AppState>,
    headers: HeaderMap,
    multipart: Multipart,
) -> Response {
    let (_, computed) = match compute_what_if(&state, &headers, multipart).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let what_if = &computed.what_if;
    let mut rows: Vec<Vec<String>> = what_if
        .categories
        .iter()
        .map(|category| {
            vec![
                category.code.clone(),
                category.invoices_now.to_string(),
                category.amount_now.to_string(),
                category.invoices_then.to_string(),
                category.amount_then.to_string(),
                category.difference().to_string(),
            ]
        })
        .collect();
    rows.push(vec![
        "total".to_owned(),
        what_if.invoices.to_string(),
        what_if.total_now.to_string(),
        what_if.invoices.to_string(),
        what_if.total_then.to_string(),
        what_if.difference().to_string(),
    ]);
    rows.push(vec![
        "persons_changed".to_owned(),
        what_if.persons_changed.to_string(),
    ]);
    let header = [
        "category",
        "invoices_now",
        "amount_now",
        "invoices_then",
        "amount_then",
        "difference",
    ];
    xlsx_download(
        &format!("what-if-{}.xlsx", computed.year),
        workbook("政策测算 what-if", &header, &rows),
    )
}

/// `POST /staff/policies/load`: stores the uploaded policy as a new
/// version, in force from now on.
pub(super) async fn load_policy(
    State(state): State<AppState>,
    headers: HeaderMap,
    multipart: Multipart,
) -> Response {
    let (viewer, user) = match staff_page(&state, &headers, "/staff/policies", &[Role::Admin]).await {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let upload = match read_policy_upload(multipart).await {
        Ok(upload) => upload,
        Err(message) => {
            return show_policies(
                &state,
                &viewer,
                StatusCode::BAD_REQUEST,
                context! { problems => vec![message] },
            )
            .await
        }
    };
    if !viewer.csrf_ok(&upload.csrf) {
        return viewer.error(StatusCode::FORBIDDEN, "forbidden", "bad_form");
    }
    let refuse = |problems: Vec<String>| {
        show_policies(
            &state,
            &viewer,
            StatusCode::UNPROCESSABLE_ENTITY,
            context! { problems => problems, file => upload.file_name.clone() },
        )
    };
    let text = match policy_text(&upload) {
        Ok(text) => text,
        Err(problem) => return refuse(vec![problem]).await,
    };
    let policy = match jiuzhu_formats::parse_policy(&upload.file_name, &text) {
        Ok(policy) => policy,
        Err(problems) => return refuse(policy_problems(&problems)).await,
    };
    match state.store.load_policy(&text, &policy, &user.name).await {
        Ok(loaded) => {
            let key = if loaded.fresh {
                "policy_loaded"
            } else {
                "policy_known"
            };
            show_policies(
                &state,
                &viewer,
                StatusCode::OK,
                context! { loaded => format!("{} {}", viewer.language.text(key), loaded.id) },
            )
            .await
        }
        Err(error) => failed("a policy could not be stored", &error),
    }
}

// ---------------------------------------------------------------------
// Clearings.

async fn show_clearings(
    state: &AppState,
    viewer: &Viewer,
    status: StatusCode,
    problem: Option<String>,
    period: &str,
) -> Response {
    match state.store.clearing_runs().await {
        Ok(runs) => {
            let rows: Vec<minijinja::Value> = runs
                .iter()
                .map(|run| {
                    context! {
                        id => run.id, period => run.period.clone(), finished_at => run.finished_at.clone(),
                        run_by => run.run_by.clone(), policy_id => run.policy_id,
                        top_ups => run.top_ups, top_up_total => run.top_up_total.to_string(),
                        recoveries => run.recoveries, recovery_total => run.recovery_total.to_string(),
                    }
                })
                .collect();
            viewer.render(
                status,
                "clearings.html",
                context! { clearings => rows, problem => problem, period => period },
            )
        }
        Err(error) => failed("the clearings could not be read", &error),
    }
}

pub(super) async fn clearings_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let (viewer, _) = match staff_page(&state, &headers, "/staff/clearings", POLICY_READERS).await {
        Ok(found) => found,
        Err(response) => return *response,
    };
    show_clearings(&state, &viewer, StatusCode::OK, None, "").await
}

pub(super) async fn clearings_xlsx(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(response) = staff_page(&state, &headers, "/staff/clearings", POLICY_READERS).await {
        return *response;
    }
    match state.store.clearing_runs().await {
        Ok(runs) => {
            let rows: Vec<Vec<String>> = runs
                .iter()
                .map(|run| {
                    vec![
                        run.id.to_string(),
                        run.period.clone(),
                        run.policy_id.to_string(),
                        run.started_at.clone(),
                        run.finished_at.clone(),
                        run.run_by.clone(),
                        run.top_ups.to_string(),
                        run.top_up_total.to_string(),
                        run.recoveries.to_string(),
                        run.recovery_total.to_string(),
                    ]
                })
                .collect();
            let header = [
                "clearing",
                "period",
                "policy",
                "started_at",
                "finished_at",
                "run_by",
                "top_ups",
                "top_up_total",
                "recoveries",
                "recovery_total",
            ];
            xlsx_download("clearings.xlsx", workbook("定期清算 clearings", &header, &rows))
        }
        Err(error) => failed("the clearings could not be read", &error),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct ClearingForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    period: String,
}

/// `POST /staff/clearings`: runs a clearing for the period typed, then
/// shows it.
pub(super) async fn run_clearing(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<ClearingForm>,
) -> Response {
    let (viewer, user) =
        match staff_post(&state, &headers, "/staff/clearings", &[Role::Admin], &form.csrf).await {
            Ok(found) => found,
            Err(response) => return *response,
        };
    let typed = form.period.trim();
    let period = match jiuzhu_core::Period::parse(typed) {
        Ok(period) => period,
        Err(error) => {
            let problem = format!("{}: {error}", viewer.language.text("period"));
            return show_clearings(
                &state,
                &viewer,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some(problem),
                typed,
            )
            .await;
        }
    };
    // On a task of its own: a request that times out does not stop a
    // clearing half done (it would store nothing), and it finishes.
    let store = state.store.clone();
    let actor = user.name.clone();
    let running = tokio::spawn(async move { store.run_clearing(period, &actor, &|_| {}).await });
    let ran = match running.await {
        Ok(ran) => ran,
        Err(error) => return failed("a clearing stopped", &error),
    };
    match ran {
        Ok(report) => Redirect::to(&format!("/staff/clearings/{}", report.clearing_id)).into_response(),
        Err(jiuzhu_store::ClearingError::Store(error)) => failed("a clearing could not be run", &error),
        Err(other) => {
            let status = match other {
                jiuzhu_store::ClearingError::Changed(_) => StatusCode::CONFLICT,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            show_clearings(&state, &viewer, status, Some(other.to_string()), typed).await
        }
    }
}

/// A clearing and its lines, or the page that says why not.
async fn clearing_of(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
) -> Result<
    (
        Viewer,
        jiuzhu_store::ClearingRun,
        Vec<jiuzhu_store::ClearingLineView>,
    ),
    Response,
> {
    let (viewer, _) = staff_page(state, headers, "/staff/clearings", POLICY_READERS)
        .await
        .map_err(|response| *response)?;
    let Ok(id) = id.parse::<i64>() else {
        return Err(viewer.error(StatusCode::NOT_FOUND, "not_found", "not_found"));
    };
    match state.store.clearing_run(id).await {
        Ok(Some((run, lines))) => Ok((viewer, run, lines)),
        Ok(None) => Err(viewer.error(StatusCode::NOT_FOUND, "not_found", "not_found")),
        Err(error) => Err(failed("a clearing could not be read", &error)),
    }
}

const LINE_HEADER: [&str; 6] = [
    "person",
    "year",
    "granted",
    "recomputed",
    "difference",
    "invoices",
];

fn line_fields(line: &jiuzhu_store::ClearingLineView) -> Vec<String> {
    vec![
        line.person_masked.clone(),
        line.year.to_string(),
        line.granted.to_string(),
        line.recomputed.to_string(),
        line.difference().to_string(),
        line.invoices.clone(),
    ]
}

pub(super) async fn clearing_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let (viewer, run, lines) = match clearing_of(&state, &headers, &id).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let rows: Vec<minijinja::Value> = lines
        .iter()
        .map(|line| {
            context! {
                person => line.person_masked.clone(), year => line.year,
                granted => line.granted.to_string(), recomputed => line.recomputed.to_string(),
                difference => line.difference().to_string(), top_up => line.difference().fen() > 0,
                invoices => line.invoices.clone(),
            }
        })
        .collect();
    viewer.render(
        StatusCode::OK,
        "clearing.html",
        context! {
            clearing => context! {
                id => run.id, period => run.period.clone(), started_at => run.started_at.clone(),
                finished_at => run.finished_at.clone(), run_by => run.run_by.clone(), policy_id => run.policy_id,
                top_ups => run.top_ups, top_up_total => run.top_up_total.to_string(),
                recoveries => run.recoveries, recovery_total => run.recovery_total.to_string(),
            },
            lines => rows,
        },
    )
}

/// A CSV field, quoted when it must be.
fn csv_field(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_owned()
    }
}

pub(super) async fn clearing_csv(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let (_, run, lines) = match clearing_of(&state, &headers, &id).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    // A byte order mark, so that Excel reads it as UTF-8.
    let mut text = format!("\u{feff}{}\n", LINE_HEADER.join(","));
    for line in &lines {
        let fields: Vec<String> = line_fields(line).iter().map(|field| csv_field(field)).collect();
        text.push_str(&fields.join(","));
        text.push('\n');
    }
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&format!(
                    "attachment; filename=\"clearing-{}-differences.csv\"",
                    run.id
                ))
                .unwrap_or_else(|_| HeaderValue::from_static("attachment")),
            ),
        ],
        text,
    )
        .into_response()
}

pub(super) async fn clearing_xlsx(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let (_, run, lines) = match clearing_of(&state, &headers, &id).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let rows: Vec<Vec<String>> = lines.iter().map(line_fields).collect();
    xlsx_download(
        &format!("clearing-{}-differences.xlsx", run.id),
        workbook("清算差额 differences", &LINE_HEADER, &rows),
    )
}

// ---------------------------------------------------------------------
// The audit trail.

/// `GET /staff/audit?id=…&purpose=…`: a person's whole story, in the
/// order it was recorded, as `jiuzhu audit show --person` prints it; the
/// read is logged with who and why before anything is shown.
pub(super) async fn audit_person(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<FindQuery>,
) -> Response {
    let (viewer, user) = match staff_page(&state, &headers, "/staff/audit", &[Role::Auditor]).await {
        Ok(found) => found,
        Err(response) => return *response,
    };
    story_page(&state, &viewer, &user, query, "audit.html", "audit trail").await
}

/// `GET /staff/audit.xlsx?id=…&purpose=…`: the same story as a workbook;
/// the read is logged as the page's is.
pub(super) async fn audit_person_xlsx(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<FindQuery>,
) -> Response {
    let (viewer, user) = match staff_page(&state, &headers, "/staff/audit", &[Role::Auditor]).await {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let Some(person) = query
        .id
        .as_deref()
        .and_then(|typed| jiuzhu_core::ResidentId::parse(typed.trim()).ok())
    else {
        return viewer.error(StatusCode::UNPROCESSABLE_ENTITY, "not_found", "bad_id");
    };
    let why = match query.purpose.as_deref().map(str::trim) {
        Some(purpose) if !purpose.is_empty() => purpose.to_owned(),
        _ => "audit trail export".to_owned(),
    };
    match state.store.person_story(person, &user.name, &why).await {
        Ok(Some(story)) => {
            let rows: Vec<Vec<String>> = story
                .events
                .iter()
                .map(|event| {
                    vec![
                        story.masked_id.clone(),
                        event.at.clone(),
                        event.kind.as_str().to_owned(),
                        event.summary.clone(),
                        event.details.join("\n"),
                    ]
                })
                .collect();
            let header = ["person", "at", "kind", "summary", "details"];
            xlsx_download("audit-trail.xlsx", workbook("审计日志 audit", &header, &rows))
        }
        Ok(None) => viewer.error(StatusCode::NOT_FOUND, "not_found", "unknown_person"),
        Err(error) => failed("a record could not be read", &error),
    }
}

/// `GET /staff/audit/verify`: whether the audit chain verifies.
pub(super) async fn audit_verify(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let (viewer, _) = match staff_page(&state, &headers, "/staff/audit/verify", &[Role::Auditor]).await {
        Ok(found) => found,
        Err(response) => return *response,
    };
    match state.store.verify_audit().await {
        Ok(Ok(summary)) => {
            let hash: String = summary
                .last_hash
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect();
            viewer.render(
                StatusCode::OK,
                "audit_verify.html",
                context! { whole => true, entries => summary.entries, last_hash => hash },
            )
        }
        Ok(Err(broken)) => viewer.render(
            StatusCode::OK,
            "audit_verify.html",
            context! { whole => false, sequence => broken.sequence, reason => broken.reason.to_string() },
        ),
        Err(error) => failed("the audit log could not be read", &error),
    }
}

// ---------------------------------------------------------------------
// Users and API keys.

async fn show_users(
    state: &AppState,
    viewer: &Viewer,
    status: StatusCode,
    extra: minijinja::Value,
) -> Response {
    match state.store.staff_users().await {
        Ok(users) => {
            let rows: Vec<minijinja::Value> = users
                .iter()
                .map(|user| {
                    context! {
                        name => user.name.clone(),
                        roles => user.roles.iter().map(|role| role.as_str()).collect::<Vec<_>>().join(" "),
                        created_at => user.created_at.clone(), created_by => user.created_by.clone(),
                        disabled => user.disabled_at.is_some(), disabled_at => user.disabled_at.clone(),
                        disabled_by => user.disabled_by.clone(), has_password => user.has_password,
                    }
                })
                .collect();
            let roles: Vec<&str> = Role::ALL.iter().map(|role| role.as_str()).collect();
            viewer.render(
                status,
                "users.html",
                context! { users => rows, all_roles => roles, ..extra },
            )
        }
        Err(error) => failed("the staff users could not be read", &error),
    }
}

pub(super) async fn users_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let (viewer, _) = match staff_page(&state, &headers, "/staff/users", &[Role::Admin]).await {
        Ok(found) => found,
        Err(response) => return *response,
    };
    show_users(&state, &viewer, StatusCode::OK, context! {}).await
}

pub(super) async fn users_xlsx(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(response) = staff_page(&state, &headers, "/staff/users", &[Role::Admin]).await {
        return *response;
    }
    match state.store.staff_users().await {
        Ok(users) => {
            let rows: Vec<Vec<String>> = users
                .iter()
                .map(|user| {
                    vec![
                        user.name.clone(),
                        user.roles
                            .iter()
                            .map(|role| role.as_str())
                            .collect::<Vec<_>>()
                            .join(" "),
                        user.created_at.clone(),
                        user.created_by.clone(),
                        user.disabled_at.clone().unwrap_or_default(),
                        user.disabled_by.clone().unwrap_or_default(),
                        user.disabled_reason.clone().unwrap_or_default(),
                        if user.has_password { "yes" } else { "no" }.to_owned(),
                    ]
                })
                .collect();
            let header = [
                "name",
                "roles",
                "created_at",
                "created_by",
                "disabled_at",
                "disabled_by",
                "disabled_reason",
                "password_set",
            ];
            xlsx_download("users.xlsx", workbook("工作人员 staff", &header, &rows))
        }
        Err(error) => failed("the staff users could not be read", &error),
    }
}

/// The value of `name` in a form's pairs (the last one given).
fn field<'f>(pairs: &'f [(String, String)], name: &str) -> &'f str {
    pairs
        .iter()
        .rev()
        .find(|(key, _)| key == name)
        .map_or("", |(_, value)| value.as_str())
}

/// `POST /staff/users`: adds a member of staff with roles and an initial
/// password. A name already taken is refused (roles change elsewhere).
pub(super) async fn add_user(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let (viewer, user) = match staff_post(
        &state,
        &headers,
        "/staff/users",
        &[Role::Admin],
        field(&pairs, "csrf"),
    )
    .await
    {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let name = field(&pairs, "name").trim().to_owned();
    let password = field(&pairs, "password").to_owned();
    let roles: Vec<Role> = pairs
        .iter()
        .filter(|(key, _)| key == "roles")
        .filter_map(|(_, value)| Role::parse(value))
        .collect();
    let refuse = |problem: String| {
        show_users(
            &state,
            &viewer,
            StatusCode::UNPROCESSABLE_ENTITY,
            context! { problem => problem, name => name.clone() },
        )
    };
    if password.chars().count() < jiuzhu_store::SHORTEST_PASSWORD {
        let problem = format!(
            "{} {}",
            viewer.language.text("password_too_short"),
            jiuzhu_store::SHORTEST_PASSWORD
        );
        return refuse(problem).await;
    }
    // A disabled member of staff's name is taken too: adding it would
    // enable them again.
    match state.store.staff_member(&name).await {
        Ok(Some(_)) => return refuse(viewer.language.text("user_exists").to_owned()).await,
        Ok(None) => {}
        Err(error) => return failed("a member of staff could not be read", &error),
    }
    let token = match state.store.add_staff(&name, &roles, &user.name).await {
        Ok(token) => token,
        Err(jiuzhu_store::ApplicationError::Store(error)) => {
            return failed("a member of staff could not be added", &error)
        }
        Err(other) => return refuse(other.to_string()).await,
    };
    if let Err(error) = state.store.set_staff_password(&name, &password, &user.name).await {
        return failed("a password could not be set", &error);
    }
    show_users(
        &state,
        &viewer,
        StatusCode::OK,
        context! { added => name.clone(), token => token },
    )
    .await
}

/// A member of staff's page: what they are, and the forms that change
/// their roles, disable or enable them.
async fn show_user(
    state: &AppState,
    viewer: &Viewer,
    name: &str,
    status: StatusCode,
    extra: minijinja::Value,
) -> Response {
    let member = match state.store.staff_member(name).await {
        Ok(Some(member)) => member,
        Ok(None) => return viewer.error(StatusCode::NOT_FOUND, "not_found", "not_found"),
        Err(error) => return failed("a member of staff could not be read", &error),
    };
    let roles: Vec<minijinja::Value> = Role::ALL
        .iter()
        .map(|role| context! { name => role.as_str(), held => member.roles.contains(role) })
        .collect();
    let shown = context! {
        name => member.name.clone(),
        roles => member.roles.iter().map(|role| role.as_str()).collect::<Vec<_>>().join(" "),
        created_at => member.created_at.clone(), created_by => member.created_by.clone(),
        disabled => member.disabled_at.is_some(), disabled_at => member.disabled_at.clone(),
        disabled_by => member.disabled_by.clone(), disabled_reason => member.disabled_reason.clone(),
        has_password => member.has_password,
    };
    viewer.render(
        status,
        "user.html",
        context! { member => shown, all_roles => roles, ..extra },
    )
}

/// `GET /staff/users/{name}`.
pub(super) async fn user_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let (viewer, _) = match staff_page(&state, &headers, "/staff/users", &[Role::Admin]).await {
        Ok(found) => found,
        Err(response) => return *response,
    };
    show_user(&state, &viewer, &name, StatusCode::OK, context! {}).await
}

/// The page after a change of a member of staff: the notice, or the
/// refusal in the viewer's words (nothing changed).
async fn after_change(
    state: &AppState,
    viewer: &Viewer,
    name: &str,
    result: Result<&'static str, jiuzhu_store::StaffError>,
    reason: &str,
) -> Response {
    match result {
        Ok(notice) => {
            let notice = viewer.language.text(notice);
            show_user(state, viewer, name, StatusCode::OK, context! { notice => notice }).await
        }
        Err(jiuzhu_store::StaffError::Store(error)) => {
            failed("a member of staff could not be changed", &error)
        }
        Err(jiuzhu_store::StaffError::NotFound(_)) => {
            viewer.error(StatusCode::NOT_FOUND, "not_found", "not_found")
        }
        Err(error) => {
            let status = match error {
                jiuzhu_store::StaffError::NoRole
                | jiuzhu_store::StaffError::ReasonRequired
                | jiuzhu_store::StaffError::ReasonTooLong => StatusCode::UNPROCESSABLE_ENTITY,
                _ => StatusCode::CONFLICT,
            };
            let problem = viewer.language.text(error.key());
            show_user(
                state,
                viewer,
                name,
                status,
                context! { problem => problem, reason => reason.to_owned() },
            )
            .await
        }
    }
}

/// `POST /staff/users/{name}/roles`: the roles ticked, in place of theirs.
pub(super) async fn change_roles(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let (viewer, user) = match staff_post(
        &state,
        &headers,
        "/staff/users",
        &[Role::Admin],
        field(&pairs, "csrf"),
    )
    .await
    {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let mut roles = Vec::new();
    for (key, value) in &pairs {
        if key == "roles" {
            match Role::parse(value) {
                Some(role) => roles.push(role),
                None => return viewer.error(StatusCode::UNPROCESSABLE_ENTITY, "bad_form", "bad_form"),
            }
        }
    }
    let result = state
        .store
        .set_staff_roles(&name, &roles, &user.name)
        .await
        .map(|changed| if changed { "roles_saved" } else { "roles_unchanged" });
    after_change(&state, &viewer, &name, result, "").await
}

#[derive(Debug, Deserialize)]
pub(super) struct DisableForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
}

/// `POST /staff/users/{name}/disable`: with a reason; their sessions end
/// at once and their API tokens are revoked.
pub(super) async fn disable_user(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(form): Form<DisableForm>,
) -> Response {
    let (viewer, user) = match staff_post(&state, &headers, "/staff/users", &[Role::Admin], &form.csrf).await
    {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let result = state
        .store
        .disable_staff(&name, &form.reason, &user.name)
        .await
        .map(|()| "user_disabled");
    after_change(&state, &viewer, &name, result, &form.reason).await
}

/// `POST /staff/users/{name}/enable`.
pub(super) async fn enable_user(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let (viewer, user) = match staff_post(&state, &headers, "/staff/users", &[Role::Admin], &form.csrf).await
    {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let result = state
        .store
        .enable_staff(&name, &user.name)
        .await
        .map(|()| "user_enabled");
    after_change(&state, &viewer, &name, result, "").await
}

async fn show_keys(
    state: &AppState,
    viewer: &Viewer,
    status: StatusCode,
    extra: minijinja::Value,
) -> Response {
    match state.store.api_keys().await {
        Ok(keys) => {
            let rows: Vec<minijinja::Value> = keys
                .iter()
                .map(|key| {
                    context! {
                        owner => key.owner.as_str(), owner_text => viewer.language.text(key.owner.as_str()),
                        id => key.id, whose => key.whose.clone(), created_at => key.created_at.clone(),
                        created_by => key.created_by.clone(), revoked_at => key.revoked_at.clone(),
                    }
                })
                .collect();
            viewer.render(status, "keys.html", context! { keys => rows, ..extra })
        }
        Err(error) => failed("the API keys could not be read", &error),
    }
}

pub(super) async fn keys_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let (viewer, _) = match staff_page(&state, &headers, "/staff/keys", &[Role::Admin]).await {
        Ok(found) => found,
        Err(response) => return *response,
    };
    show_keys(&state, &viewer, StatusCode::OK, context! {}).await
}

pub(super) async fn keys_xlsx(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(response) = staff_page(&state, &headers, "/staff/keys", &[Role::Admin]).await {
        return *response;
    }
    match state.store.api_keys().await {
        Ok(keys) => {
            let rows: Vec<Vec<String>> = keys
                .iter()
                .map(|key| {
                    vec![
                        key.owner.as_str().to_owned(),
                        key.id.to_string(),
                        key.whose.clone(),
                        key.created_at.clone(),
                        key.created_by.clone(),
                        key.revoked_at.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            let header = ["owner", "key", "whose", "created_at", "created_by", "revoked_at"];
            xlsx_download("keys.xlsx", workbook("接口密钥 keys", &header, &rows))
        }
        Err(error) => failed("the API keys could not be read", &error),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct KeyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    owner: String,
    #[serde(default)]
    whose: String,
}

/// `POST /staff/keys`: a new key for a hospital or a department; its secret
/// is shown once, on the page this answers.
pub(super) async fn create_key(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<KeyForm>,
) -> Response {
    let (viewer, user) = match staff_post(&state, &headers, "/staff/keys", &[Role::Admin], &form.csrf).await {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let whose = form.whose.trim();
    let checked = match KeyOwner::parse(&form.owner) {
        Some(KeyOwner::Hospital) => jiuzhu_core::Hospital::check(whose)
            .map(|_| KeyOwner::Hospital)
            .map_err(|error| format!("{}: {error}", viewer.language.text("hospital"))),
        Some(KeyOwner::Department) => jiuzhu_store::check_department(whose)
            .map(|()| KeyOwner::Department)
            .map_err(|error| format!("{}: {error}", viewer.language.text("department"))),
        None => Err(viewer.language.text("bad_form").to_owned()),
    };
    let owner = match checked {
        Ok(owner) => owner,
        Err(problem) => {
            return show_keys(
                &state,
                &viewer,
                StatusCode::UNPROCESSABLE_ENTITY,
                context! { problem => problem },
            )
            .await
        }
    };
    let created = match owner {
        KeyOwner::Hospital => state.store.create_api_key(whose, &user.name).await,
        KeyOwner::Department => state.store.create_department_key(whose, &user.name).await,
    };
    match created {
        Ok(key) => {
            show_keys(
                &state,
                &viewer,
                StatusCode::OK,
                context! { secret => key.into_string(), secret_for => whose.to_owned() },
            )
            .await
        }
        Err(error) => failed("an API key could not be created", &error),
    }
}

/// `POST /staff/keys/{owner}/{id}/revoke`.
pub(super) async fn revoke_key(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((owner, id)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let (viewer, user) = match staff_post(&state, &headers, "/staff/keys", &[Role::Admin], &form.csrf).await {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let (Some(owner), Ok(id)) = (KeyOwner::parse(&owner), id.parse::<i64>()) else {
        return viewer.error(StatusCode::NOT_FOUND, "not_found", "not_found");
    };
    match state.store.revoke_key(owner, id, &user.name).await {
        Ok(true) => Redirect::to("/staff/keys").into_response(),
        Ok(false) => viewer.error(StatusCode::NOT_FOUND, "not_found", "not_found"),
        Err(error) => failed("an API key could not be revoked", &error),
    }
}
