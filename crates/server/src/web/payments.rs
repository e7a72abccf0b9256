//! Payment batches on the staff pages, beyond the list and its approval:
//! a batch made of everything owed (admins, approvers), a batch's lines
//! with the person and the account masked, its bank payment file exported
//! (approvers: full account numbers) and the bank's return file uploaded
//! (admins, approvers); the persons' bank accounts uploaded (admins,
//! approvers), refused whole with a report or stored and shown masked.
//! The store holds the rules (maker-checker, only an
//! approved batch exported, a bad return file refused whole); these pages
//! check each role again on the server and each form's token.

use axum::extract::{Multipart, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use jiuzhu_formats::bank::{payment_file_text, read_bank_accounts, read_bank_return};
use jiuzhu_formats::Problems;
use jiuzhu_store::{DisburseError, Role};
use minijinja::context;

use super::{
    checked_upload, failed, keep_report, report_download, show_batches, staff_page, staff_post,
    text::Language, CsrfForm, Viewer,
};
use crate::AppState;

/// Who may make a batch, read a batch's lines and upload a return file.
pub(super) const MAKERS: [Role; 2] = [Role::Admin, Role::Approver];

/// The status of a refusal.
pub(super) fn status_of(error: &DisburseError) -> StatusCode {
    match error {
        DisburseError::NotFound(_) => StatusCode::NOT_FOUND,
        DisburseError::NotStaff(_) | DisburseError::NotApprover { .. } => StatusCode::FORBIDDEN,
        DisburseError::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
        DisburseError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::CONFLICT,
    }
}

/// A refusal in the viewer's language where the pages have its words.
pub(super) fn said(language: Language, error: &DisburseError) -> String {
    let key = match error {
        DisburseError::SelfApproval { .. } => "self_approval",
        DisburseError::AlreadyApproved(_) => "already_approved",
        DisburseError::NotApproved(_) => "not_approved_yet",
        DisburseError::NotExported(_) => "not_exported_yet",
        DisburseError::NotApprover { .. } => "forbidden_text",
        _ => return error.to_string(),
    };
    language.text(key).to_owned()
}

/// `POST /staff/batches`: a batch of everything owed to persons with a
/// bank account; its page, or the list saying that nothing was owed.
pub(super) async fn make_batch(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let (viewer, user) = match staff_post(&state, &headers, "/staff/batches", &MAKERS, &form.csrf).await {
        Ok(found) => found,
        Err(response) => return *response,
    };
    match state.store.create_batch(&user.name).await {
        Ok(made) => match made.batch {
            Some(batch) => Redirect::to(&format!("/staff/batches/{}", batch.id)).into_response(),
            None => {
                let notice = viewer.language.text("nothing_to_pay").to_owned();
                show_batches(&state, &headers, StatusCode::OK, None, Some(notice)).await
            }
        },
        Err(error) => {
            let problem = said(viewer.language, &error);
            show_batches(&state, &headers, status_of(&error), Some(problem), None).await
        }
    }
}

/// A refused file's problems, one row each.
pub(super) fn problem_rows(problems: &Problems) -> Vec<minijinja::Value> {
    problems
        .kept()
        .iter()
        .map(|problem| {
            context! {
                line => problem.line.map_or_else(String::new, |line| line.to_string()),
                column => problem.column.clone().unwrap_or_default(),
                message => problem.message.clone(),
            }
        })
        .collect()
}

/// A batch's page: its figures, its lines, the forms its state allows the
/// viewer.
async fn show_batch(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
    status: StatusCode,
    problem: Option<String>,
    problems: Option<&Problems>,
) -> Response {
    let here = format!("/staff/batches/{id}");
    let (viewer, user) = match staff_page(state, headers, &here, &MAKERS).await {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let Ok(batch) = id.parse::<i64>() else {
        return viewer.error(StatusCode::NOT_FOUND, "not_found", "not_found");
    };
    let summary = match state.store.batches().await {
        Ok(batches) => batches.into_iter().find(|found| found.id == batch),
        Err(error) => return failed("the batches could not be read", &error),
    };
    let Some(summary) = summary else {
        return viewer.error(StatusCode::NOT_FOUND, "not_found", "not_found");
    };
    let lines = match state.store.batch_lines(batch).await {
        Ok(lines) => lines.unwrap_or_default(),
        Err(error) => return failed("a batch's lines could not be read", &error),
    };
    let language = viewer.language;
    let rows: Vec<minijinja::Value> = lines
        .iter()
        .map(|line| {
            context! {
                id => line.id, person => line.person_masked.clone(), holder => line.holder_name.clone(),
                account => line.account_masked.clone(), amount => line.amount.to_string(),
                status => language.text(&format!("line_{}", line.status)), code => line.status.clone(),
                reason => line.reason.clone().unwrap_or_default(),
            }
        })
        .collect();
    let state_key = if summary.returned {
        "returned"
    } else if summary.exported {
        "exported"
    } else if summary.approved_by.is_some() {
        "approved"
    } else {
        "awaiting_approval"
    };
    let approver = user.has(Role::Approver);
    let figures = context! {
        id => summary.id, lines => summary.lines, total => summary.total.to_string(),
        created_by => summary.created_by.clone(), created_at => summary.created_at.clone(),
        approved_by => summary.approved_by.clone(), status => language.text(state_key),
        paid => summary.paid.0, paid_amount => summary.paid.1.to_string(),
        failed => summary.failed.0, failed_amount => summary.failed.1.to_string(),
        pending => summary.pending.0, pending_amount => summary.pending.1.to_string(),
    };
    viewer.render(
        status,
        "batch.html",
        context! {
            batch => figures,
            batch_lines => rows,
            can_approve => approver && summary.approved_by.is_none() && summary.created_by != user.name,
            own_batch => summary.approved_by.is_none() && summary.created_by == user.name,
            can_export => approver && summary.approved_by.is_some() && summary.pending.0 > 0,
            can_return => summary.exported && summary.pending.0 > 0,
            problem => problem,
            problems => problems.map(problem_rows),
            problems_total => problems.map(Problems::total),
        },
    )
}

/// `GET /staff/batches/{id}`.
pub(super) async fn batch_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    show_batch(&state, &headers, &id, StatusCode::OK, None, None).await
}

/// `POST /staff/batches/{id}/export`: the approved batch's bank payment
/// file (CSV, full account numbers), its totals checked by the store and
/// the export recorded.
pub(super) async fn export_batch(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let here = format!("/staff/batches/{id}");
    let (viewer, user) = match staff_post(&state, &headers, &here, &[Role::Approver], &form.csrf).await {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let Ok(batch) = id.parse::<i64>() else {
        return viewer.error(StatusCode::NOT_FOUND, "not_found", "not_found");
    };
    match state.store.export_batch(batch, &user.name).await {
        Ok(lines) => {
            let disposition = format!("attachment; filename=\"batch-{batch}-payments.csv\"");
            let mut response = payment_file_text(&lines).into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            );
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            if let Ok(value) = HeaderValue::from_str(&disposition) {
                headers.insert(header::CONTENT_DISPOSITION, value);
            }
            response
        }
        Err(error) => refused_on_page(&state, &headers, &viewer, &id, &error).await,
    }
}

async fn refused_on_page(
    state: &AppState,
    headers: &HeaderMap,
    viewer: &Viewer,
    id: &str,
    error: &DisburseError,
) -> Response {
    match error {
        DisburseError::NotFound(_) => viewer.error(StatusCode::NOT_FOUND, "not_found", "not_found"),
        DisburseError::Store(cause) => failed("a batch step failed", cause),
        DisburseError::Refused(problems) => {
            let problem = viewer.language.text("return_refused").to_owned();
            show_batch(
                state,
                headers,
                id,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some(problem),
                Some(problems),
            )
            .await
        }
        other => {
            let problem = said(viewer.language, other);
            show_batch(state, headers, id, status_of(other), Some(problem), None).await
        }
    }
}

/// `POST /staff/batches/{id}/return`: the bank's return file (CSV
/// `line_id,status,reason[,amount]`); a file with any bad line is refused
/// whole, each problem named with its line, and nothing of it applied.
pub(super) async fn upload_return(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    multipart: Multipart,
) -> Response {
    let here = format!("/staff/batches/{id}");
    let (viewer, user) = match staff_page(&state, &headers, &here, &MAKERS).await {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let upload = match checked_upload(&viewer, multipart, "upload_return").await {
        Ok(upload) => upload,
        Err(response) => return response,
    };
    let Ok(batch) = id.parse::<i64>() else {
        return viewer.error(StatusCode::NOT_FOUND, "not_found", "not_found");
    };
    let result = match read_bank_return(&upload.file_name, &upload.bytes) {
        Ok(rows) => {
            state
                .store
                .import_bank_return(batch, &upload.file_name, &rows, &user.name)
                .await
        }
        Err(problems) => Err(DisburseError::Refused(problems)),
    };
    match result {
        Ok(_) => Redirect::to(&here).into_response(),
        Err(error) => refused_on_page(&state, &headers, &viewer, &id, &error).await,
    }
}

// ---------------------------------------------------------------------
// Bank accounts.

/// `GET /staff/accounts`: the upload form of the persons' bank accounts.
pub(super) async fn accounts_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match staff_page(&state, &headers, "/staff/accounts", &MAKERS).await {
        Ok((viewer, _)) => viewer.render(StatusCode::OK, "accounts.html", context! {}),
        Err(response) => *response,
    }
}

/// `POST /staff/accounts`: a file of bank accounts (CSV in UTF-8 or GBK,
/// or XLSX), every row checked: refused whole with a report of every bad
/// row, or stored (encrypted; a person's newest account is used from the
/// next batch) and listed masked.
pub(super) async fn upload_accounts(
    State(state): State<AppState>,
    headers: HeaderMap,
    multipart: Multipart,
) -> Response {
    let (viewer, user) = match staff_page(&state, &headers, "/staff/accounts", &MAKERS).await {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let upload = match checked_upload(&viewer, multipart, "upload_accounts").await {
        Ok(upload) => upload,
        Err(response) => return response,
    };
    let file = upload.file_name.clone();
    let result = match read_bank_accounts(&file, &upload.bytes) {
        Ok(rows) => state
            .store
            .load_bank_accounts(&file, &rows, &user.name)
            .await
            .map(|loaded| (rows, loaded)),
        Err(problems) => Err(DisburseError::Refused(problems)),
    };
    match result {
        Ok((rows, loaded)) => {
            let accounts: Vec<minijinja::Value> = rows
                .iter()
                .map(|row| {
                    context! {
                        line => row.line, person => row.person.masked(), holder => row.holder_name.clone(),
                        bank => row.bank.clone(), account => jiuzhu_store::masked_account(&row.account),
                    }
                })
                .collect();
            viewer.render(
                StatusCode::OK,
                "accounts.html",
                context! {
                    file => file, loaded => true, accounts => accounts,
                    stored => loaded.stored, unchanged => loaded.unchanged,
                },
            )
        }
        Err(DisburseError::Refused(problems)) => {
            let id = keep_report(&state, &user.name, &file, &problems);
            viewer.render(
                StatusCode::UNPROCESSABLE_ENTITY,
                "accounts.html",
                context! {
                    file => file, problems => problem_rows(&problems), total => problems.total(),
                    report_url => format!("/staff/accounts/rejected/{id}"),
                },
            )
        }
        Err(DisburseError::Store(error)) => failed("bank accounts could not be stored", &error),
        Err(other) => viewer.render(
            status_of(&other),
            "accounts.html",
            context! { file => file, problem => said(viewer.language, &other) },
        ),
    }
}

/// `GET /staff/accounts/rejected/{id}`: the report of a refused accounts
/// file, CSV, for the member of staff who uploaded it.
pub(super) async fn accounts_report(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    match staff_page(&state, &headers, "/staff/accounts", &MAKERS).await {
        Ok((viewer, user)) => report_download(&state, &viewer, &user, &id),
        Err(response) => *response,
    }
}
