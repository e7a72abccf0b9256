//! The staff's web pages over HTTP, against the real server on port 0 over
//! a fresh SQLite store: login with CSRF and rate limits, sessions, roles,
//! the spells upload with its report of refused rows, the review queue,
//! languages and large type, and the security headers.

use jiuzhu_formats::parse_policy;
use jiuzhu_server::ServerSettings;
use jiuzhu_store::{Role, Store};
use reqwest::StatusCode;

mod common;
use common::{browser, hidden, read, PASSWORD, POLICY};

struct TestApp {
    address: String,
    _dir: tempfile::TempDir,
}

async fn spawn_app() -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = common::store_with_policy(dir.path()).await;
    common::add_staff(
        &store,
        &[
            ("admin", &[Role::Admin]),
            ("rev", &[Role::Reviewer]),
            ("aud", &[Role::Auditor]),
        ],
    )
    .await;
    TestApp {
        address: common::serve(store, common::settings()).await,
        _dir: dir,
    }
}

/// The server over `store` in demo mode (login codes shown on the page).
async fn demo_app(store: Store, dir: tempfile::TempDir) -> TestApp {
    let settings = ServerSettings {
        demo: true,
        ..common::settings()
    };
    TestApp {
        address: common::serve(store, settings).await,
        _dir: dir,
    }
}

impl TestApp {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    async fn page(&self, client: &reqwest::Client, path: &str) -> (StatusCode, String) {
        let response = client.get(self.url(path)).send().await.unwrap();
        (response.status(), response.text().await.unwrap())
    }

    /// Logs `name` in; the browser then holds the session. Returns the
    /// session's CSRF token, as the dashboard's forms carry it.
    async fn log_in(&self, client: &reqwest::Client, name: &str) -> String {
        let (_, form) = self.page(client, "/staff/login").await;
        let csrf = hidden(&form, "csrf");
        let response = client
            .post(self.url("/staff/login"))
            .form(&[("name", name), ("password", PASSWORD), ("csrf", &csrf)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(response.headers()["location"], "/staff");
        let (status, dashboard) = self.page(client, "/staff").await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            dashboard.contains(&format!("<strong>{name}</strong>")),
            "{dashboard}"
        );
        hidden(&dashboard, "csrf")
    }
}

#[tokio::test]
async fn a_member_of_staff_logs_in_with_the_forms_token_and_out_again() {
    let app = spawn_app().await;
    let client = browser();
    // Not logged in: the dashboard sends to the login page.
    let response = client.get(app.url("/staff")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/staff/login");

    // The login page, with its security headers and cookie.
    let response = client.get(app.url("/staff/login")).send().await.unwrap();
    let headers = response.headers().clone();
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("frame-ancestors 'none'")
            && csp.contains("script-src 'self'")
            && !csp.contains("unsafe-inline")
    );
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let cookie = headers["set-cookie"].to_str().unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("Secure") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let form = response.text().await.unwrap();
    assert!(
        form.contains("<html lang=\"zh-CN\">") && form.contains("工作人员登录"),
        "{form}"
    );
    let csrf = hidden(&form, "csrf");

    // Without the form's token, or with another, the login is refused.
    for token in ["", "forged"] {
        let refused = client
            .post(app.url("/staff/login"))
            .form(&[("name", "admin"), ("password", PASSWORD), ("csrf", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "token {token:?}");
    }
    // A wrong password is refused, and the name is kept in the form.
    let wrong = client
        .post(app.url("/staff/login"))
        .form(&[
            ("name", "admin"),
            ("password", "not the password"),
            ("csrf", &csrf),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let page = wrong.text().await.unwrap();
    assert!(
        page.contains("用户名或密码不正确") && page.contains("value=\"admin\""),
        "{page}"
    );

    let session_csrf = app.log_in(&client, "admin").await;
    // A logout without the session's token is refused; with it, the
    // session ends and the dashboard is closed again.
    let refused = client
        .post(app.url("/staff/logout"))
        .form(&[("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.page(&client, "/staff").await.0, StatusCode::OK);
    let out = client
        .post(app.url("/staff/logout"))
        .form(&[("csrf", session_csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.page(&client, "/staff").await.0, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn failed_logins_are_limited_per_name() {
    let app = spawn_app().await;
    let client = browser();
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let (_, form) = app.page(&client, "/staff/login").await;
        let csrf = hidden(&form, "csrf");
        let response = client
            .post(app.url("/staff/login"))
            .form(&[
                ("name", "rev"),
                ("password", "guess guess guess"),
                ("csrf", &csrf),
            ])
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429]);
    // Even the right password waits now; another name does not.
    let (_, form) = app.page(&client, "/staff/login").await;
    let csrf = hidden(&form, "csrf");
    let limited = client
        .post(app.url("/staff/login"))
        .form(&[("name", "rev"), ("password", PASSWORD), ("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    app.log_in(&browser(), "aud").await;
}

#[tokio::test]
async fn each_page_is_open_only_to_its_roles() {
    let app = spawn_app().await;
    let auditor = browser();
    app.log_in(&auditor, "aud").await;
    for path in ["/staff/imports", "/staff/reviews"] {
        let (status, page) = app.page(&auditor, path).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        assert!(page.contains("无权访问"), "{page}");
    }
    let reviewer = browser();
    app.log_in(&reviewer, "rev").await;
    let (status, page) = app.page(&reviewer, "/staff/reviews").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("目前没有待审核的申请"), "{page}");
    assert_eq!(
        app.page(&reviewer, "/staff/imports").await.0,
        StatusCode::FORBIDDEN
    );
    // Nobody's session: the login page.
    assert_eq!(
        app.page(&browser(), "/staff/reviews").await.0,
        StatusCode::SEE_OTHER
    );
}

async fn upload(
    app: &TestApp,
    client: &reqwest::Client,
    csrf: &str,
    name: &str,
    bytes: Vec<u8>,
) -> (StatusCode, String) {
    let form = reqwest::multipart::Form::new()
        .text("csrf", csrf.to_owned())
        .text("source", "民政")
        .part(
            "file",
            reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned()),
        );
    let response = client
        .post(app.url("/staff/imports/spells"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    (response.status(), response.text().await.unwrap())
}

#[tokio::test]
async fn an_uploaded_spells_file_is_refused_whole_with_a_report_to_download_or_imported() {
    let app = spawn_app().await;
    let admin = browser();
    let csrf = app.log_in(&admin, "admin").await;
    let (status, form) = app.page(&admin, "/staff/imports").await;
    assert_eq!(status, StatusCode::OK);
    assert!(form.contains("enctype=\"multipart/form-data\""));

    let bad = "person_id,category,valid_from,valid_to\n\
               110105196001010017,DB,2024-01-01,\n\
               110105196001010018,DB,2024-01-01,\n\
               110105196001010025,XX,2024-01-01,\n\
               110105196001010041,DB,2024-05-01,2024-02-01\n";
    let (status, page) = upload(&app, &admin, &csrf, "民政-2024.csv", bad.as_bytes().to_vec()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{page}");
    assert!(
        page.contains("文件未导入") && page.contains("错误数： 3"),
        "{page}"
    );
    let rows: Vec<&str> = page.matches("<tr><td>").collect();
    assert_eq!(rows.len(), 3, "{page}");
    // The page escapes every value (`/` as `&#x2f;`), as a browser reads it.
    let page = page.replace("&#x2f;", "/");
    let link = {
        let start = page.find("/staff/imports/rejected/").unwrap();
        page[start..start + page[start..].find('"').unwrap()].to_owned()
    };
    let report = admin.get(app.url(&link)).send().await.unwrap();
    assert_eq!(report.status(), StatusCode::OK);
    assert_eq!(report.headers()["content-type"], "text/csv; charset=utf-8");
    assert!(report.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains("-rejected.csv"));
    let csv = report.text().await.unwrap();
    let lines: Vec<&str> = csv.trim_start_matches('\u{feff}').lines().collect();
    assert_eq!(lines[0], "line,column,message");
    assert_eq!(lines.len(), 4, "{csv}");
    assert!(
        lines[1].starts_with("3,person_id,")
            && lines[2].starts_with("4,category,")
            && lines[3].starts_with("5,"),
        "{csv}"
    );
    // The report is the uploader's alone.
    let other = browser();
    app.log_in(&other, "rev").await;
    assert_eq!(
        other.get(app.url(&link)).send().await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    // Without the session's token the upload is refused.
    let (status, _) = upload(&app, &admin, "forged", "x.csv", bad.as_bytes().to_vec()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Nothing of the refused file was stored: its good row 017 is new to
    // the good file that follows.
    let good = "person_id,category,valid_from,valid_to\n110105196001010017,DB,2024-01-01,\n110105196001010025,TK,2024-01-01,\n";
    let (status, page) = upload(&app, &admin, &csrf, "民政-2024.csv", good.as_bytes().to_vec()).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("导入完成"), "{page}");
    assert!(
        page.contains("<dt>新增</dt><dd>2</dd>") && page.contains("<dt>救助新增</dt><dd>2</dd>"),
        "{page}"
    );
    let (status, page) = upload(&app, &admin, &csrf, "民政-2024.csv", good.as_bytes().to_vec()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("该文件已导入过"), "{page}");
}

#[tokio::test]
async fn the_pages_speak_english_or_large_type_when_asked_and_remember_it() {
    let app = spawn_app().await;
    let client = browser();
    let response = client
        .get(app.url("/prefs?lang=en&size=large&back=/staff/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/staff/login");
    let (_, page) = app.page(&client, "/staff/login").await;
    assert!(page.contains("<html lang=\"en\" class=\"large\">"), "{page}");
    assert!(
        page.contains("Staff login") && page.contains("中文") && page.contains("Normal type"),
        "{page}"
    );
    // Only a path of this site is a place to go back to.
    let response = client
        .get(app.url("/prefs?lang=zh&back=//evil.example/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["location"], "/");
    let (_, page) = app.page(&client, "/").await;
    assert!(page.contains("<html lang=\"zh-CN\" class=\"large\">"), "{page}");
    let css = client.get(app.url("/static/app.css")).send().await.unwrap();
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
    assert!(css.text().await.unwrap().contains("html.large"));
}

#[tokio::test]
async fn a_reviewer_decides_an_application_on_its_page_and_an_approver_approves_a_batch() {
    // A store with spells, a letter, an application with a finding entered
    // by the clerk, and a batch made by the admin.
    let dir = tempfile::tempdir().unwrap();
    let (store, policy) = common::store_with_policy(dir.path()).await;
    common::import_small_spells(&store, &policy, "民政").await;
    for (name, roles) in [
        ("clerk", &[Role::Reviewer][..]),
        ("rev", &[Role::Reviewer][..]),
        ("pay", &[Role::Approver][..]),
        ("admin", &[Role::Admin][..]),
    ] {
        store.add_staff(name, roles, "setup").await.unwrap();
        store.set_staff_password(name, PASSWORD, "setup").await.unwrap();
    }
    let letter = store.publish_letter("v1", "承诺书", "admin").await.unwrap();
    let person = jiuzhu_core::ResidentId::parse("110105196001010017").unwrap();
    store
        .sign_letter(
            person,
            &letter.sha256,
            jiuzhu_store::ApplyChannel::Counter,
            "clerk",
        )
        .await
        .unwrap();
    let body = r#"{"person_id":"110105196001010017","bills":[{"invoice_no":"OUT9","hospital":"外市医院",
        "visit_type":"inpatient","service_date":"2026-10-01","settled_at":"2026-10-02T09:00:00+08:00",
        "total":"1000","fund_paid":"600","in_scope_self_pay":"300","out_of_scope_self_pay":"101"}]}"#;
    let request = jiuzhu_formats::application::parse_application_request(
        body.as_bytes(),
        jiuzhu_formats::application::ApplicationLimits::default(),
    )
    .unwrap();
    let amounts_wrong = store
        .submit_application(
            &request,
            jiuzhu_store::ApplyChannel::Counter,
            "clerk",
            Default::default(),
        )
        .await
        .unwrap();
    let ok = body
        .replace("OUT9", "OUT10")
        .replace("\"101\"", "\"100\"")
        .replace("2026-10-01", "2026-10-03");
    let request = jiuzhu_formats::application::parse_application_request(
        ok.as_bytes(),
        jiuzhu_formats::application::ApplicationLimits::default(),
    )
    .unwrap();
    // Past a deadline of 1 day: to review, then approvable.
    let late = jiuzhu_store::AcceptanceSettings {
        filing_deadline_days: 1,
        today: None,
    };
    let late_one = store
        .submit_application(&request, jiuzhu_store::ApplyChannel::Counter, "clerk", late)
        .await
        .unwrap();
    let app = TestApp {
        address: common::serve(store.clone(), common::settings()).await,
        _dir: dir,
    };

    // The clerk sees the finding but no form: they entered it.
    let clerk = browser();
    app.log_in(&clerk, "clerk").await;
    let (status, page) = app
        .page(&clerk, &format!("/staff/reviews/{}", amounts_wrong.summary.id))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("amounts_add_up") && !page.contains("name=\"verdict\""),
        "{page}"
    );

    let reviewer = browser();
    let csrf = app.log_in(&reviewer, "rev").await;
    let path = format!("/staff/reviews/{}", late_one.summary.id);
    let (_, page) = app.page(&reviewer, &path).await;
    assert!(
        page.contains("within_deadline") && page.contains("name=\"verdict\""),
        "{page}"
    );
    assert!(
        page.contains("该对象的全部记录") && page.contains("commitment letter v1 signed"),
        "{page}"
    );
    // Without a reason: refused on the page, nothing decided.
    let refused = reviewer
        .post(app.url(&path))
        .form(&[("csrf", csrf.as_str()), ("verdict", "approve"), ("reason", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // Without the token: refused.
    let forged = reviewer
        .post(app.url(&path))
        .form(&[("csrf", "forged"), ("verdict", "approve"), ("reason", "ok")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let approved = reviewer
        .post(app.url(&path))
        .form(&[
            ("csrf", csrf.as_str()),
            ("verdict", "approve"),
            ("reason", "逾期有正当理由"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(approved.status(), StatusCode::SEE_OTHER);
    let (_, page) = app.page(&reviewer, &path).await;
    assert!(
        page.contains("已核定") && page.contains("逾期有正当理由"),
        "{page}"
    );

    // The dashboard draws its charts on the server: recipients by category
    // (the fixture's 4 current ones) and assistance per month.
    let (_, page) = app.page(&reviewer, "/staff").await;
    assert!(page.contains("<svg class=\"chart\" role=\"img\""), "{page}");
    assert!(
        page.contains(">DB</text>") && page.contains(">TK</text>"),
        "{page}"
    );
    // The figures are read once for all viewers, and say when: a second
    // later they are the same read.
    let read_at = |page: &str| {
        let at = page
            .find("数据统计时间 ")
            .expect("the dashboard says when its figures were read");
        page[at..at + "数据统计时间 00:00:00".len()].to_owned()
    };
    let first = read_at(&page);
    for pause in [1100, 300] {
        tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
        let (_, again) = app.page(&reviewer, "/staff").await;
        assert_eq!(read_at(&again), first);
    }

    // The person's whole record, found by their full ID, shown masked; the
    // read is logged with its purpose.
    let (status, page) = app
        .page(
            &reviewer,
            "/staff/persons?id=110105196001010017&purpose=%E7%94%B3%E8%AF%89%2042",
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("110105********0017") && !page.contains("110105196001010017"),
        "{page}"
    );
    assert!(
        page.contains("application") && page.contains("spell DB"),
        "{page}"
    );
    let (status, _) = app
        .page(&reviewer, "/staff/persons?id=11010519491231002X&purpose=x")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.page(&reviewer, "/staff/persons?id=123&purpose=x").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // A batch of what the approved bill granted, made by the admin, is
    // approved on the page by the approver.
    let accounts = jiuzhu_formats::bank::read_bank_accounts(
        "accounts.csv",
        "person_id,name,bank,account\n110105196001010017,张三,农业银行,6228480012345678\n".as_bytes(),
    )
    .unwrap();
    store
        .load_bank_accounts("accounts.csv", &accounts, "admin")
        .await
        .unwrap();
    let batch = store.create_batch("admin").await.unwrap().batch.unwrap();
    let payer = browser();
    let csrf = app.log_in(&payer, "pay").await;
    let (status, page) = app.page(&payer, "/staff/batches").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("待审批"), "{page}");
    let done = payer
        .post(app.url(&format!("/staff/batches/{}/approve", batch.id)))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    let (_, page) = app.page(&payer, "/staff/batches").await;
    assert!(page.contains("已审批"), "{page}");
    // Both tables export to Excel, for their roles only.
    let workbook = payer.get(app.url("/staff/batches.xlsx")).send().await.unwrap();
    assert_eq!(workbook.status(), StatusCode::OK);
    let bytes = workbook.bytes().await.unwrap();
    assert!(bytes.starts_with(b"PK"), "not an XLSX file");
    let queue = reviewer.get(app.url("/staff/reviews.xlsx")).send().await.unwrap();
    assert_eq!(queue.status(), StatusCode::OK);
    assert_eq!(
        reviewer
            .get(app.url("/staff/batches.xlsx"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
    // The reviewer has no batches page.
    assert_eq!(
        app.page(&reviewer, "/staff/batches").await.0,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn every_staff_page_is_tried_as_every_role_and_as_nobody() {
    let app = spawn_app().await;
    // (page, who may open it).
    let pages: [(&str, &[&str]); 23] = [
        ("/staff/persons", &["rev", "aud"]),
        ("/staff", &["admin", "rev", "aud"]),
        ("/staff/reviews", &["rev"]),
        ("/staff/imports", &["admin"]),
        ("/staff/batches", &["admin"]),
        // No batch 1: the roles that may read one are told so.
        ("/staff/batches/1", &["admin"]),
        // No application 1: the roles that may read one are told so.
        ("/staff/reviews/1", &["rev", "aud"]),
        ("/staff/imports/rejected/nothing", &["admin"]),
        ("/staff/policies", &["admin", "aud"]),
        ("/staff/policies.xlsx", &["admin", "aud"]),
        ("/staff/clearings", &["admin", "aud"]),
        ("/staff/clearings.xlsx", &["admin", "aud"]),
        // No clearing 1: the roles that may read one are told so.
        ("/staff/clearings/1", &["admin", "aud"]),
        ("/staff/clearings/1/differences.csv", &["admin", "aud"]),
        ("/staff/clearings/1/differences.xlsx", &["admin", "aud"]),
        ("/staff/audit", &["aud"]),
        ("/staff/audit/verify", &["aud"]),
        ("/staff/users", &["admin"]),
        ("/staff/users.xlsx", &["admin"]),
        ("/staff/keys", &["admin"]),
        ("/staff/keys.xlsx", &["admin"]),
        ("/staff/audit?id=110105196001010017&purpose=x", &["aud"]),
        ("/staff/audit.xlsx?id=110105196001010017&purpose=x", &["aud"]),
    ];
    let mut sessions = Vec::new();
    for name in ["admin", "rev", "aud"] {
        let client = browser();
        app.log_in(&client, name).await;
        sessions.push((name, client));
    }
    for (page, allowed) in pages {
        let (status, _) = app.page(&browser(), page).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "nobody at {page}");
        for (name, client) in &sessions {
            let (status, _) = app.page(client, page).await;
            let expected = if !allowed.contains(name) {
                StatusCode::FORBIDDEN
            } else if page.ends_with("/1")
                || page.ends_with("/nothing")
                || page.contains("/clearings/1/")
                || page.contains("?id=")
            {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::OK
            };
            assert_eq!(status, expected, "{name} at {page}");
        }
    }
    // Every form refuses a post without the session's token.
    for (name, client) in &sessions {
        for (path, form) in [
            ("/staff/logout", vec![("csrf", "")]),
            (
                "/staff/reviews/1",
                vec![("csrf", ""), ("verdict", "approve"), ("reason", "x")],
            ),
            ("/staff/batches/1/approve", vec![("csrf", "")]),
            ("/staff/batches", vec![("csrf", "")]),
            ("/staff/batches/1/export", vec![("csrf", "")]),
            ("/staff/clearings", vec![("csrf", ""), ("period", "2024")]),
            (
                "/staff/users",
                vec![
                    ("csrf", ""),
                    ("name", "intruder"),
                    ("roles", "admin"),
                    ("password", PASSWORD),
                ],
            ),
            (
                "/staff/keys",
                vec![("csrf", ""), ("owner", "hospital"), ("whose", "H001")],
            ),
            ("/staff/keys/hospital/1/revoke", vec![("csrf", "")]),
        ] {
            let status = client
                .post(app.url(path))
                .form(&form)
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(status, StatusCode::FORBIDDEN, "{name} posting {path}");
        }
        for action in ["what-if", "what-if.xlsx", "load"] {
            let (status, _) = post_policy(&app, client, action, "", "2024", "p.toml", &read(POLICY)).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{name} posting {action}");
        }
    }
    // Nothing of it was done.
    let admin = &sessions[0].1;
    let (_, page) = app.page(admin, "/staff/users").await;
    assert!(!page.contains("intruder"), "{page}");
    let (_, page) = app.page(admin, "/staff/clearings").await;
    assert!(page.contains("尚未进行过清算"), "{page}");
}

/// The one-time code a demo page shows, if it shows one.
fn shown_code(page: &str) -> Option<String> {
    let start = page.find("<strong>")? + "<strong>".len();
    let text = &page[start..start + page[start..].find("</strong>")?];
    let code: String = text.chars().filter(char::is_ascii_digit).collect();
    (code.len() == 6).then_some(code)
}

#[tokio::test]
async fn a_resident_logs_in_with_id_phone_and_a_code_and_sees_only_their_own_bills() {
    let dir = tempfile::tempdir().unwrap();
    let (store, policy) = common::store_with_policy(dir.path()).await;
    common::import_small_spells(&store, &policy, "民政").await;
    common::import_small_feed(&store, &policy).await;
    let person = jiuzhu_core::ResidentId::parse("110105196001010017").unwrap();
    store.set_phone(person, "13800138000", "clerk").await.unwrap();
    assert!(store.set_phone(person, "2380013800", "clerk").await.is_err());
    let app = demo_app(store.clone(), dir).await;

    let resident = browser();
    let ask = |phone: &'static str| {
        let resident = resident.clone();
        let app_url = app.url("/login");
        async move {
            let form = resident.get(&app_url).send().await.unwrap().text().await.unwrap();
            let csrf = hidden(&form, "csrf");
            let response = resident
                .post(&app_url)
                .form(&[
                    ("csrf", csrf.as_str()),
                    ("person_id", "110105196001010017"),
                    ("phone", phone),
                ])
                .send()
                .await
                .unwrap();
            (response.status(), response.text().await.unwrap())
        }
    };
    // A wrong phone: the same page, and no code.
    let (status, page) = ask("13900139000").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("验证码已发送") && shown_code(&page).is_none(),
        "{page}"
    );
    let (_, page) = ask("13800138000").await;
    let code = shown_code(&page).unwrap();
    let csrf = hidden(&page, "csrf");
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let refused = resident
        .post(app.url("/login/code"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("person_id", "110105196001010017"),
            ("code", wrong),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let page = refused.text().await.unwrap();
    let csrf = hidden(&page, "csrf");
    let done = resident
        .post(app.url("/login/code"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("person_id", "110105196001010017"),
            ("code", code.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    let (status, page) = app.page(&resident, "/me").await;
    assert_eq!(status, StatusCode::OK);
    // 017's bills (INV001, INV002, INV007), explained; nobody else's.
    assert!(
        page.contains("INV001") && page.contains("INV002") && !page.contains("INV003"),
        "{page}"
    );
    assert!(page.contains("救助比例 90%"), "{page}");
    assert!(!page.contains("110105196001010017"), "{page}");
    // The commitment letter: read, signed with the hash of the text shown;
    // a new version is read and signed again.
    let first = store
        .publish_letter("v1", "本人承诺票据真实。", "admin")
        .await
        .unwrap();
    let (_, page) = app.page(&resident, "/me/letter").await;
    assert!(
        page.contains("本人承诺票据真实。") && page.contains(&first.sha256),
        "{page}"
    );
    let csrf = hidden(&page, "csrf");
    let forged = resident
        .post(app.url("/me/letter"))
        .form(&[("csrf", "forged"), ("sha256", first.sha256.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let signed = resident
        .post(app.url("/me/letter"))
        .form(&[("csrf", csrf.as_str()), ("sha256", first.sha256.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), StatusCode::SEE_OTHER);
    let (_, page) = app.page(&resident, "/me/letter").await;
    assert!(page.contains("您已签署"), "{page}");
    let second = store
        .publish_letter("v2", "本人承诺票据真实、未重复报销。", "admin")
        .await
        .unwrap();
    let (_, page) = app.page(&resident, "/me/letter").await;
    assert!(
        page.contains("未重复报销") && !page.contains("您已签署"),
        "{page}"
    );
    // Signing what the page showed before v2 signs nothing.
    resident
        .post(app.url("/me/letter"))
        .form(&[("csrf", csrf.as_str()), ("sha256", first.sha256.as_str())])
        .send()
        .await
        .unwrap();
    let (_, page) = app.page(&resident, "/me/letter").await;
    assert!(
        !page.contains("您已签署") && page.contains(&second.sha256),
        "{page}"
    );

    // A new bank account, confirmed by a code sent to the phone on record.
    let (_, page) = app.page(&resident, "/me/details").await;
    assert!(page.contains("138****8000"), "{page}");
    let csrf = hidden(&page, "csrf");
    let page = resident
        .post(app.url("/me/details/code"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let code = shown_code(&page).unwrap();
    let change = |code: String| {
        let resident = resident.clone();
        let url = app.url("/me/details");
        let csrf = csrf.clone();
        async move {
            resident
                .post(url)
                .form(&[
                    ("csrf", csrf.as_str()),
                    ("holder", "张三"),
                    ("bank", "工商银行"),
                    ("account", "6222 0202 0011 2233"),
                    ("new_phone", ""),
                    ("code", code.as_str()),
                ])
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let wrong = if code == "000000" { "111111" } else { "000000" };
    assert_eq!(change(wrong.to_owned()).await, StatusCode::CONFLICT);
    assert_eq!(change(code).await, StatusCode::SEE_OTHER);
    let (_, page) = app.page(&resident, "/me/details?done=1").await;
    assert!(
        page.contains("已修改") && page.contains("6222********2233") && page.contains("工商银行"),
        "{page}"
    );
    assert!(!page.contains("6222020200112233"), "{page}");

    // Logging out ends the session.
    let (_, page) = app.page(&resident, "/me").await;
    let csrf = hidden(&page, "csrf");
    let out = resident
        .post(app.url("/me/logout"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.page(&resident, "/me").await.0, StatusCode::SEE_OTHER);

    // A used code opens nothing again; a staff page stays closed.
    assert_eq!(app.page(&resident, "/staff").await.0, StatusCode::SEE_OTHER);
    // Codes are limited: five in the window (two were made: the login's
    // and the change's), then refused.
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(ask("13800138000").await.0.as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    // Without a session, /me sends to the login page.
    assert_eq!(app.page(&browser(), "/me").await.0, StatusCode::SEE_OTHER);
}

/// A sender that keeps what it is handed, and says when it was.
#[derive(Default)]
struct Phone {
    received: std::sync::Mutex<Vec<jiuzhu_store::Notification>>,
    arrived: tokio::sync::Notify,
}

impl jiuzhu_store::Sender for Phone {
    fn send(&self, notification: &jiuzhu_store::Notification) -> Result<(), String> {
        self.received.lock().unwrap().push(notification.clone());
        self.arrived.notify_one();
        Ok(())
    }
}

impl Phone {
    /// The next notification handed over, waiting at most 3 s: far less
    /// than the code task's retry interval, so only the wake of a code
    /// made delivers it in time.
    async fn next(&self, seen: usize) -> jiuzhu_store::Notification {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
        loop {
            if let Some(notification) = self.received.lock().unwrap().get(seen) {
                return notification.clone();
            }
            tokio::time::timeout_at(deadline, self.arrived.notified())
                .await
                .expect("no notification reached the phone in time");
        }
    }
}

#[tokio::test]
async fn outside_demo_mode_the_codes_reach_the_phone_on_record_at_once_and_never_the_page() {
    let dir = tempfile::tempdir().unwrap();
    let (store, policy) = common::store_with_policy(dir.path()).await;
    common::import_small_spells(&store, &policy, "民政").await;
    let person = jiuzhu_core::ResidentId::parse(FULL_ID).unwrap();
    store.set_phone(person, "13800138000", "clerk").await.unwrap();
    // The import's new-recipient notifications are sent first, so that the
    // phone hears only codes.
    let phone = std::sync::Arc::new(Phone::default());
    store.dispatch_notifications(&*phone, 1000).await.unwrap();
    phone.received.lock().unwrap().clear();
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    // No periodic round: only a code made sends anything.
    store.spawn_dispatcher(phone.clone(), None, 0, stopped);
    let app = serve(store, dir).await;

    let resident = browser();
    let ask = |phone: &'static str| {
        let resident = resident.clone();
        let app_url = app.url("/login");
        async move {
            let form = resident.get(&app_url).send().await.unwrap().text().await.unwrap();
            let csrf = hidden(&form, "csrf");
            let response = resident
                .post(&app_url)
                .form(&[("csrf", csrf.as_str()), ("person_id", FULL_ID), ("phone", phone)])
                .send()
                .await
                .unwrap();
            (response.status(), response.text().await.unwrap())
        }
    };
    // A wrong phone: the same page, and nothing sent.
    let (status, wrong_page) = ask("13900139000").await;
    assert_eq!(status, StatusCode::OK);
    let (status, page) = ask("13800138000").await;
    assert_eq!(status, StatusCode::OK);
    let sms = phone.next(0).await;
    assert_eq!(sms.kind, jiuzhu_store::NotificationKind::LoginCode);
    assert_eq!(sms.phone.as_deref(), Some("13800138000"));
    assert_eq!(sms.person, person.masked());
    let code: String = sms
        .text
        .split("验证码 ")
        .nth(1)
        .unwrap()
        .chars()
        .take(6)
        .collect();
    assert!(
        code.len() == 6 && code.chars().all(|c| c.is_ascii_digit()),
        "{}",
        sms.text
    );
    assert!(sms.text.contains("5 分钟内有效"), "{}", sms.text);
    // The page says the same as for the wrong phone, and never the code.
    assert!(
        page.contains("验证码已发送") && shown_code(&page).is_none(),
        "{page}"
    );
    assert!(!page.contains(&code), "{page}");
    let strip = |page: &str| page.replace(&hidden(page, "csrf"), "");
    assert_eq!(strip(&page), strip(&wrong_page));
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        phone.received.lock().unwrap().len(),
        1,
        "the wrong phone got a code"
    );

    let csrf = hidden(&page, "csrf");
    let done = resident
        .post(app.url("/login/code"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("person_id", FULL_ID),
            ("code", code.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    let (status, _) = app.page(&resident, "/me").await;
    assert_eq!(status, StatusCode::OK);

    // The details' code: to the same phone, with its own words.
    let (_, page) = app.page(&resident, "/me/details").await;
    let csrf = hidden(&page, "csrf");
    let page = resident
        .post(app.url("/me/details/code"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let sms = phone.next(1).await;
    assert_eq!(sms.kind, jiuzhu_store::NotificationKind::DetailsCode);
    assert_eq!(sms.phone.as_deref(), Some("13800138000"));
    assert!(sms.text.contains("银行账户"), "{}", sms.text);
    let code: String = sms
        .text
        .split("验证码 ")
        .nth(1)
        .unwrap()
        .chars()
        .take(6)
        .collect();
    assert!(shown_code(&page).is_none() && !page.contains(&code), "{page}");
    let changed = resident
        .post(app.url("/me/details"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("holder", "张三"),
            ("bank", "工商银行"),
            ("account", "6222 0202 0011 2233"),
            ("new_phone", ""),
            ("code", code.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), StatusCode::SEE_OTHER);
    assert_eq!(phone.received.lock().unwrap().len(), 2);
}

const SPELLS: &str = "crates/cli/tests/data/small/spells.csv";
const INVOICES: &str = "crates/cli/tests/data/small/invoices.csv";
const WHAT_IF_POLICY: &str = "fixtures/what-if-policy.toml";
const FULL_ID: &str = "110105196001010017";

/// A store with the example policy, the small fixture's spells and every
/// bill of its invoices settled in real time; staff `admin`, `rev`, `aud`.
async fn settled_store(dir: &tempfile::TempDir) -> Store {
    let (store, policy) = common::store_with_policy(dir.path()).await;
    common::import_small_spells(&store, &policy, "民政").await;
    let known: Vec<String> = policy
        .visit_types()
        .iter()
        .map(|(name, _)| name.clone())
        .collect();
    let mut invoices = jiuzhu_formats::read_invoices(INVOICES, read(INVOICES).as_bytes(), &known).unwrap();
    invoices.sort_by(|a, b| {
        a.settled_at
            .cmp(&b.settled_at)
            .then(a.invoice_no.cmp(&b.invoice_no))
    });
    for invoice in invoices {
        match store.settle(invoice.hospital.as_str(), &invoice, "H").await {
            Ok(_) | Err(jiuzhu_store::SettleError::Conflict(_)) => {}
            Err(error) => panic!("{}: {error}", invoice.invoice_no),
        }
    }
    for (name, role) in [
        ("admin", Role::Admin),
        ("rev", Role::Reviewer),
        ("aud", Role::Auditor),
    ] {
        store.add_staff(name, &[role], "setup").await.unwrap();
        store.set_staff_password(name, PASSWORD, "setup").await.unwrap();
    }
    store
}

async fn serve(store: Store, dir: tempfile::TempDir) -> TestApp {
    let app = TestApp {
        address: common::serve(store, common::settings()).await,
        _dir: dir,
    };
    app
}

/// Posts a policy form (`what-if` or `load`) with a file, a year and a
/// token.
async fn post_policy(
    app: &TestApp,
    client: &reqwest::Client,
    action: &str,
    csrf: &str,
    year: &str,
    file: &str,
    text: &str,
) -> (StatusCode, String) {
    let form = reqwest::multipart::Form::new()
        .text("csrf", csrf.to_owned())
        .text("year", year.to_owned())
        .part(
            "file",
            reqwest::multipart::Part::bytes(text.as_bytes().to_vec()).file_name(file.to_owned()),
        );
    let response = client
        .post(app.url(&format!("/staff/policies/{action}")))
        .multipart(form)
        .send()
        .await
        .unwrap();
    (response.status(), response.text().await.unwrap())
}

/// The text of the element with `id` in a page.
fn by_id(page: &str, id: &str) -> String {
    let marker = format!("id=\"{id}\">");
    let start = page.find(&marker).unwrap_or_else(|| panic!("no #{id} in {page}")) + marker.len();
    page[start..start + page[start..].find('<').unwrap()].to_owned()
}

/// Text as it was before HTML escaping.
fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#x2f;", "/")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Yuan with two decimals, as `Fen` shows itself.
fn yuan(fen: i64) -> String {
    jiuzhu_core::Fen::from_fen(fen).to_string()
}

/// The what-if of the example policy against the proposed one over the
/// fixture's bills of `year`, computed by the engine straight from the
/// files: (total now, total then, persons changed, per category code: now,
/// then).
#[allow(clippy::type_complexity)]
fn engine_what_if(year: i32) -> (i64, i64, usize, std::collections::BTreeMap<String, (i64, i64)>) {
    let current = parse_policy(POLICY, &read(POLICY)).unwrap();
    let proposed = parse_policy(WHAT_IF_POLICY, &read(WHAT_IF_POLICY)).unwrap();
    let known: Vec<String> = current
        .visit_types()
        .iter()
        .map(|(name, _)| name.clone())
        .collect();
    let spells = jiuzhu_formats::read_spells("spells.csv", read(SPELLS).as_bytes(), Some(&current)).unwrap();
    let batch = jiuzhu_core::Batch::new(
        jiuzhu_formats::read_batch_invoices(INVOICES, read(INVOICES).as_bytes(), &known).unwrap(),
        known,
    );
    let (book_now, _) = jiuzhu_core::SpellBook::new_lenient(&current, &spells);
    let (book_then, _) = jiuzhu_core::SpellBook::new_lenient(&proposed, &spells);
    let now = batch.run(&current, &book_now, &|_| {}).unwrap();
    let then = batch.run(&proposed, &book_then, &|_| {}).unwrap();
    let (mut total_now, mut total_then) = (0, 0);
    let mut persons: std::collections::BTreeMap<String, i64> = Default::default();
    let mut categories: std::collections::BTreeMap<String, (i64, i64)> = Default::default();
    for (index, invoice) in batch.invoices().iter().enumerate() {
        if invoice.service_date.year() != year {
            continue;
        }
        let (before, after) = (now.decision(index), then.decision(index));
        total_now += before.amount.fen();
        total_then += after.amount.fen();
        *persons.entry(invoice.person.to_string()).or_default() += after.amount.fen() - before.amount.fen();
        if let Some(category) = before.category() {
            categories
                .entry(current.category(category).code.clone())
                .or_default()
                .0 += before.amount.fen();
        }
        if let Some(category) = after.category() {
            categories
                .entry(proposed.category(category).code.clone())
                .or_default()
                .1 += after.amount.fen();
        }
    }
    let changed = persons.values().filter(|change| **change != 0).count();
    (total_now, total_then, changed, categories)
}

#[tokio::test]
async fn the_what_if_agrees_with_the_engine_to_the_fen_stores_nothing_and_a_policy_is_loaded_apart() {
    let dir = tempfile::tempdir().unwrap();
    let store = settled_store(&dir).await;
    let app = serve(store.clone(), dir).await;
    let admin = browser();
    let csrf = app.log_in(&admin, "admin").await;

    let (status, page) = app.page(&admin, "/staff/policies").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("示例政策 (example district policy)")
            && page.contains("现行")
            && page.contains("<td>admin</td>"),
        "{page}"
    );

    let (status, page) = post_policy(
        &app,
        &admin,
        "what-if",
        &csrf,
        "2024",
        "what-if-policy.toml",
        &read(WHAT_IF_POLICY),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let (now, then, changed, categories) = engine_what_if(2024);
    assert_ne!(now, then, "the fixture's proposal changes something");
    assert_eq!(by_id(&page, "total-now"), yuan(now));
    assert_eq!(by_id(&page, "total-then"), yuan(then));
    assert_eq!(by_id(&page, "difference"), yuan(then - now));
    assert_eq!(by_id(&page, "persons-changed"), changed.to_string());
    for (code, (before, after)) in &categories {
        let row = format!(
            "<td>{code}</td><td>{}",
            "" // the invoice counts follow; the amounts are checked below
        );
        let start = page
            .find(&row)
            .unwrap_or_else(|| panic!("no row {code} in {page}"));
        let cells = &page[start..start + page[start..].find("</tr>").unwrap()];
        assert!(
            cells.contains(&format!("<td class=\"money\">{}</td>", yuan(*before)))
                && cells.contains(&format!("<td class=\"money\">{}</td>", yuan(*after)))
                && cells.contains(&format!("<td class=\"money\">{}</td>", yuan(after - before))),
            "{code}: {cells}"
        );
    }
    // The page carries the policy's text back, to load it or export the
    // figures as a workbook.
    let source = unescape(&hidden(&page, "source"));
    assert_eq!(source, read(WHAT_IF_POLICY));
    let form = reqwest::multipart::Form::new()
        .text("csrf", csrf.clone())
        .text("year", "2024")
        .text("source", source);
    let workbook = admin
        .post(app.url("/staff/policies/what-if.xlsx"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(workbook.status(), StatusCode::OK);
    assert!(workbook.bytes().await.unwrap().starts_with(b"PK"));
    // Nothing was stored: still one version.
    assert_eq!(store.policy_versions().await.unwrap().len(), 1);

    // A TOML that does not parse is refused, naming its line and column.
    let (status, page) = post_policy(
        &app,
        &admin,
        "what-if",
        &csrf,
        "2024",
        "bad.toml",
        "name = \"x\"\nratio = = 2\n",
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("bad.toml:2") && page.contains("column"), "{page}");
    // Without the token: refused, whatever the file.
    let (status, _) = post_policy(
        &app,
        &admin,
        "what-if",
        "",
        "2024",
        "what-if-policy.toml",
        &read(WHAT_IF_POLICY),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = post_policy(
        &app,
        &admin,
        "load",
        "forged",
        "",
        "p.toml",
        &read(WHAT_IF_POLICY),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // An auditor reads the versions but neither computes nor loads.
    let auditor = browser();
    let audit_csrf = app.log_in(&auditor, "aud").await;
    assert_eq!(app.page(&auditor, "/staff/policies").await.0, StatusCode::OK);
    for action in ["what-if", "what-if.xlsx", "load"] {
        let (status, _) = post_policy(
            &app,
            &auditor,
            action,
            &audit_csrf,
            "2024",
            "p.toml",
            &read(WHAT_IF_POLICY),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{action}");
    }
    assert_eq!(store.policy_versions().await.unwrap().len(), 1);

    // Loading is its own post: a new version, in force.
    let (status, page) = post_policy(&app, &admin, "load", &csrf, "", "p.toml", &read(WHAT_IF_POLICY)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("已载入，新版本号： 2"), "{page}");
    let versions = store.policy_versions().await.unwrap();
    assert_eq!(
        versions
            .iter()
            .map(|version| (version.id, version.in_force, version.loaded_by.as_str()))
            .collect::<Vec<_>>(),
        vec![(2, true, "admin"), (1, false, "admin")]
    );
    assert_eq!(store.policy_in_force().await.unwrap().unwrap().0, 2);
    let workbook = admin.get(app.url("/staff/policies.xlsx")).send().await.unwrap();
    assert_eq!(workbook.status(), StatusCode::OK);
    assert!(workbook.bytes().await.unwrap().starts_with(b"PK"));
}

#[tokio::test]
async fn a_clearing_runs_from_its_page_and_its_lines_match_the_stores_clearing() {
    let dir = tempfile::tempdir().unwrap();
    let store = settled_store(&dir).await;
    // A late spell: INV005's person was DB all along.
    let late = "person_id,category,valid_from,valid_to\n110105196001010033,DB,2024-01-01,\n";
    let policy = parse_policy(POLICY, &read(POLICY)).unwrap();
    let rows = jiuzhu_formats::read_spell_rows("late.csv", late.as_bytes(), Some(&policy)).unwrap();
    store
        .import_spells(
            &jiuzhu_store::SpellFile::new("民政", "late.csv", late.as_bytes(), &rows),
            "admin",
        )
        .await
        .unwrap();
    let report = store
        .run_clearing(jiuzhu_core::Period::parse("2024-06").unwrap(), "admin", &|_| {})
        .await
        .unwrap();
    assert!(!report.differences.is_empty());
    let app = serve(store.clone(), dir).await;

    let auditor = browser();
    let audit_csrf = app.log_in(&auditor, "aud").await;
    let (status, page) = app.page(&auditor, "/staff/clearings").await;
    assert_eq!(status, StatusCode::OK);
    let (top_ups, top_up_total) = report.top_ups();
    assert!(
        page.contains(&format!(
            "<td>{top_ups}</td><td class=\"money\">{top_up_total}</td>"
        )),
        "{page}"
    );
    // The auditor reads, but runs no clearing.
    assert!(!page.contains("name=\"period\""), "{page}");
    let refused = auditor
        .post(app.url("/staff/clearings"))
        .form(&[("csrf", audit_csrf.as_str()), ("period", "2024")])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);

    let path = format!("/staff/clearings/{}", report.clearing_id);
    let (status, page) = app.page(&auditor, &path).await;
    assert_eq!(status, StatusCode::OK);
    for row in &report.differences {
        let line = format!(
            "<td>{}</td><td>{}</td><td class=\"money\">{}</td><td class=\"money\">{}</td><td class=\"money\">{}</td>",
            row.person_id.masked(),
            row.year,
            row.granted,
            row.recomputed,
            row.difference()
        );
        assert!(page.contains(&line), "{line} in {page}");
        assert!(!page.contains(&row.person_id.to_string()), "{page}");
    }
    assert_eq!(page.matches("<tr><td>").count(), report.differences.len());
    // The differences as CSV, the same lines.
    let csv = auditor
        .get(app.url(&format!("{path}/differences.csv")))
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), StatusCode::OK);
    let csv = csv.text().await.unwrap();
    let mut expected = vec!["\u{feff}person,year,granted,recomputed,difference,invoices".to_owned()];
    for row in &report.differences {
        let invoices: Vec<&str> = row.invoices.iter().map(|invoice| invoice.as_str()).collect();
        expected.push(format!(
            "{},{},{},{},{},{}",
            row.person_id.masked(),
            row.year,
            row.granted,
            row.recomputed,
            row.difference(),
            invoices.join(" ")
        ));
    }
    assert_eq!(csv.lines().collect::<Vec<_>>(), expected);
    let xlsx = auditor
        .get(app.url(&format!("{path}/differences.xlsx")))
        .send()
        .await
        .unwrap();
    assert_eq!(xlsx.status(), StatusCode::OK);
    assert!(xlsx.bytes().await.unwrap().starts_with(b"PK"));
    assert_eq!(
        app.page(&auditor, "/staff/clearings/999").await.0,
        StatusCode::NOT_FOUND
    );

    // The admin runs one: over unchanged data, no line.
    let admin = browser();
    let csrf = app.log_in(&admin, "admin").await;
    let bad = admin
        .post(app.url("/staff/clearings"))
        .form(&[("csrf", csrf.as_str()), ("period", "2024-13")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let ran = admin
        .post(app.url("/staff/clearings"))
        .form(&[("csrf", csrf.as_str()), ("period", "2024-Q2")])
        .send()
        .await
        .unwrap();
    assert_eq!(ran.status(), StatusCode::SEE_OTHER);
    let next = format!("/staff/clearings/{}", report.clearing_id + 1);
    assert_eq!(ran.headers()["location"], next.as_str());
    let (status, page) = app.page(&admin, &next).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("2024-Q2") && page.contains("本次清算没有差额"),
        "{page}"
    );
    assert_eq!(
        store
            .clearings_of(jiuzhu_core::Period::parse("2024-Q2").unwrap())
            .await
            .unwrap(),
        1
    );
}

#[tokio::test]
async fn an_auditor_reads_a_persons_trail_logged_and_sees_the_chain_verify() {
    let dir = tempfile::tempdir().unwrap();
    let store = settled_store(&dir).await;
    let app = serve(store.clone(), dir).await;
    let auditor = browser();
    app.log_in(&auditor, "aud").await;
    let entries = |page: &str| by_id(page, "entries").parse::<u64>().unwrap();
    let (status, page) = app.page(&auditor, "/staff/audit/verify").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("审计日志完整"), "{page}");
    let before = entries(&page);
    assert_eq!(before, store.verify_audit().await.unwrap().unwrap().entries);

    let (status, page) = app
        .page(&auditor, &format!("/staff/audit?id={FULL_ID}&purpose=review%201"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("110105********0017") && !page.contains(FULL_ID),
        "{page}"
    );
    // The story as `jiuzhu audit show` has it, in time order.
    let story = store
        .person_story(jiuzhu_core::ResidentId::parse(FULL_ID).unwrap(), "test", "test")
        .await
        .unwrap()
        .unwrap();
    let mut at = 0;
    for event in &story.events {
        let cell = format!("<td>{}</td><td>{}</td>", event.at, event.kind.as_str());
        let found = page[at..]
            .find(&cell)
            .unwrap_or_else(|| panic!("{cell} after {at} in {page}"));
        at += found + cell.len();
    }
    // The read was logged (one entry), and the test's own read after it.
    let (_, page) = app.page(&auditor, "/staff/audit/verify").await;
    assert_eq!(entries(&page), before + 2);
    // The same story as a workbook, the read logged again.
    let workbook = auditor
        .get(app.url(&format!("/staff/audit.xlsx?id={FULL_ID}&purpose=export")))
        .send()
        .await
        .unwrap();
    assert_eq!(workbook.status(), StatusCode::OK);
    assert!(workbook.bytes().await.unwrap().starts_with(b"PK"));
    let (_, page) = app.page(&auditor, "/staff/audit/verify").await;
    assert_eq!(entries(&page), before + 3);
    assert_eq!(
        app.page(&auditor, "/staff/audit?id=123&purpose=x").await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        app.page(&auditor, "/staff/audit?id=11010519491231002X&purpose=x")
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    // In English on request.
    let english = browser();
    english
        .get(app.url("/prefs?lang=en&back=/"))
        .send()
        .await
        .unwrap();
    app.log_in(&english, "aud").await;
    let (_, page) = app.page(&english, "/staff/audit/verify").await;
    assert!(page.contains("The audit chain is whole"), "{page}");
}

#[tokio::test]
async fn an_admin_adds_a_user_who_can_log_in_and_makes_and_revokes_keys_shown_once() {
    let app = spawn_app().await;
    let admin = browser();
    let csrf = app.log_in(&admin, "admin").await;
    let (status, page) = app.page(&admin, "/staff/users").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("<td>aud</td><td>auditor</td>"), "{page}");

    let add = |name: &'static str, password: &'static str, csrf: String| {
        let admin = admin.clone();
        let url = app.url("/staff/users");
        async move {
            let response = admin
                .post(url)
                .form(&[
                    ("csrf", csrf.as_str()),
                    ("name", name),
                    ("roles", "reviewer"),
                    ("roles", "approver"),
                    ("password", password),
                ])
                .send()
                .await
                .unwrap();
            (response.status(), response.text().await.unwrap())
        }
    };
    assert_eq!(
        add("newbie", "short", csrf.clone()).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        add("newbie", PASSWORD, String::new()).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        add("aud", PASSWORD, csrf.clone()).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let (status, page) = add("newbie", PASSWORD, csrf.clone()).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        page.contains("<td>newbie</td><td>reviewer approver</td>"),
        "{page}"
    );
    let newbie = browser();
    app.log_in(&newbie, "newbie").await;
    assert_eq!(app.page(&newbie, "/staff/reviews").await.0, StatusCode::OK);
    assert_eq!(app.page(&newbie, "/staff/users").await.0, StatusCode::FORBIDDEN);
    let workbook = admin.get(app.url("/staff/users.xlsx")).send().await.unwrap();
    assert!(workbook.bytes().await.unwrap().starts_with(b"PK"));

    // A hospital's key: its secret shown once, never listed.
    let made = admin
        .post(app.url("/staff/keys"))
        .form(&[("csrf", csrf.as_str()), ("owner", "hospital"), ("whose", "H001")])
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), StatusCode::OK);
    let page = made.text().await.unwrap();
    let start = page.find("<code class=\"secret\">").unwrap() + "<code class=\"secret\">".len();
    let secret = page[start..start + page[start..].find('<').unwrap()].to_owned();
    let (status, listed) = app.page(&admin, "/staff/keys").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!listed.contains(&secret), "{listed}");
    assert!(
        listed.contains("<td>H001</td>") && listed.contains("<td>admin</td>"),
        "{listed}"
    );
    let made = admin
        .post(app.url("/staff/keys"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("owner", "department"),
            ("whose", "民政"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), StatusCode::OK);
    let bad = admin
        .post(app.url("/staff/keys"))
        .form(&[("csrf", csrf.as_str()), ("owner", "department"), ("whose", " ")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let workbook = admin.get(app.url("/staff/keys.xlsx")).send().await.unwrap();
    assert!(workbook.bytes().await.unwrap().starts_with(b"PK"));

    // The key settles for its hospital until it is revoked.
    let settle = |key: String| {
        let url = app.url("/api/v1/settlements/INV999");
        async move {
            reqwest::Client::new()
                .get(url)
                .header("authorization", format!("Bearer {key}"))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(settle(secret.clone()).await, StatusCode::NOT_FOUND);
    let forged = admin
        .post(app.url("/staff/keys/hospital/1/revoke"))
        .form(&[("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let revoked = admin
        .post(app.url("/staff/keys/hospital/1/revoke"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::SEE_OTHER);
    assert_eq!(settle(secret).await, StatusCode::UNAUTHORIZED);
    let (_, listed) = app.page(&admin, "/staff/keys").await;
    assert!(listed.contains("已吊销"), "{listed}");
    // Once revoked, it is not found to revoke again.
    let again = admin
        .post(app.url("/staff/keys/hospital/1/revoke"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_FOUND);

    // In English and large type on request, the menu leading to each page.
    admin
        .get(app.url("/prefs?lang=en&size=large&back=/"))
        .send()
        .await
        .unwrap();
    let (_, page) = app.page(&admin, "/staff/keys").await;
    assert!(
        page.contains("<html lang=\"en\" class=\"large\">")
            && page.contains("<h1>API keys</h1>")
            && page.contains("Revoked"),
        "{page}"
    );
    for link in [
        "/staff/policies",
        "/staff/clearings",
        "/staff/users",
        "/staff/keys",
    ] {
        assert!(page.contains(&format!("<a href=\"{link}\">")), "{link} in {page}");
    }
    assert!(!page.contains("<a href=\"/staff/audit\">"), "{page}");
}

/// A store with the example policy, the small fixture's spells, its bills
/// as the insurance feed (decisions to pay persons) when `owed`, and bank
/// accounts for 017 and 025; staff `admin`, `rev`, `aud` and two
/// approvers, `pay` and `pay2`.
async fn disbursing_app(owed: bool) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let (store, policy) = common::store_with_policy(dir.path()).await;
    for (name, role) in [
        ("admin", Role::Admin),
        ("rev", Role::Reviewer),
        ("aud", Role::Auditor),
        ("pay", Role::Approver),
        ("pay2", Role::Approver),
    ] {
        store.add_staff(name, &[role], "setup").await.unwrap();
        store.set_staff_password(name, PASSWORD, "setup").await.unwrap();
    }
    if owed {
        let spells = read(SPELLS);
        let rows = jiuzhu_formats::read_spell_rows("spells.csv", spells.as_bytes(), Some(&policy)).unwrap();
        store
            .import_spells(
                &jiuzhu_store::SpellFile::new("民政", "spells.csv", spells.as_bytes(), &rows),
                "admin",
            )
            .await
            .unwrap();
        let known: Vec<String> = policy
            .visit_types()
            .iter()
            .map(|(name, _)| name.clone())
            .collect();
        let records =
            jiuzhu_formats::read_invoice_records("feed.csv", read(INVOICES).as_bytes(), &known).unwrap();
        store
            .import_invoices(
                "feed.csv",
                records,
                "admin",
                jiuzhu_store::FeedOptions { chunk_invoices: 64 },
                &|_| {},
            )
            .await
            .unwrap();
        let accounts = jiuzhu_formats::bank::read_bank_accounts(
            "accounts.csv",
            "person_id,name,bank,account\n110105196001010017,张三,农业银行,6228480012345678\n\
             110105196001010025,李四,工商银行,6222020200112233\n"
                .as_bytes(),
        )
        .unwrap();
        store
            .load_bank_accounts("accounts.csv", &accounts, "admin")
            .await
            .unwrap();
    }
    serve(store, dir).await
}

/// Posts the bank's return file for `batch`.
async fn upload_return(
    app: &TestApp,
    client: &reqwest::Client,
    batch: &str,
    csrf: &str,
    text: &str,
) -> (StatusCode, String) {
    let form = reqwest::multipart::Form::new()
        .text("csrf", csrf.to_owned())
        .part(
            "file",
            reqwest::multipart::Part::bytes(text.as_bytes().to_vec()).file_name("return.csv"),
        );
    let response = client
        .post(app.url(&format!("/staff/batches/{batch}/return")))
        .multipart(form)
        .send()
        .await
        .unwrap();
    (response.status(), response.text().await.unwrap())
}

async fn post_form(app: &TestApp, client: &reqwest::Client, path: &str, csrf: &str) -> reqwest::Response {
    client
        .post(app.url(path))
        .form(&[("csrf", csrf)])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_batch_is_made_approved_by_another_exported_and_answered_by_the_bank_on_its_pages() {
    let app = disbursing_app(true).await;
    let maker = browser();
    let maker_csrf = app.log_in(&maker, "pay").await;
    let (status, page) = app.page(&maker, "/staff/batches").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("action=\"/staff/batches\""), "{page}");

    // Made by one approver: a line per person with an account, both masked.
    let made = post_form(&app, &maker, "/staff/batches", &maker_csrf).await;
    assert_eq!(made.status(), StatusCode::SEE_OTHER);
    let here = made.headers()["location"].to_str().unwrap().to_owned();
    let batch = here.rsplit('/').next().unwrap().to_owned();
    let (status, page) = app.page(&maker, &here).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("110105********0017") && page.contains("6228********5678"),
        "{page}"
    );
    assert!(
        !page.contains("110105196001010017") && !page.contains("6228480012345678"),
        "{page}"
    );
    assert_eq!(by_id(&page, "pending"), "2 · 5600.00", "{page}");
    assert!(
        page.contains("该批次由您制单") && !page.contains("id=\"approve\""),
        "{page}"
    );
    // Its maker cannot approve it; nothing is exported before approval.
    let own = post_form(&app, &maker, &format!("{here}/approve"), &maker_csrf).await;
    assert_eq!(own.status(), StatusCode::CONFLICT);
    assert!(own.text().await.unwrap().contains("须由另一位审批员审批"));
    let early = post_form(&app, &maker, &format!("{here}/export"), &maker_csrf).await;
    assert_eq!(early.status(), StatusCode::CONFLICT);
    assert!(early.text().await.unwrap().contains("尚未审批"));
    // An admin reads it but neither approves nor exports.
    let admin = browser();
    let admin_csrf = app.log_in(&admin, "admin").await;
    assert_eq!(app.page(&admin, &here).await.0, StatusCode::OK);
    for step in ["approve", "export"] {
        let response = post_form(&app, &admin, &format!("{here}/{step}"), &admin_csrf).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "admin {step}");
    }

    // Another approver approves it and downloads the bank payment file.
    let checker = browser();
    let checker_csrf = app.log_in(&checker, "pay2").await;
    let (_, page) = app.page(&checker, &here).await;
    assert!(page.contains("id=\"approve\""), "{page}");
    let approved = post_form(&app, &checker, &format!("{here}/approve"), &checker_csrf).await;
    assert_eq!(approved.status(), StatusCode::SEE_OTHER);
    let file = post_form(&app, &checker, &format!("{here}/export"), &checker_csrf).await;
    assert_eq!(file.status(), StatusCode::OK);
    assert_eq!(
        file.headers()["content-disposition"],
        format!("attachment; filename=\"batch-{batch}-payments.csv\"").as_str()
    );
    assert_eq!(file.headers()["cache-control"], "no-store");
    let text = file.text().await.unwrap();
    assert!(
        text.starts_with("batch_id,line_id,person_id,name,account,amount,reference\n"),
        "{text}"
    );
    let line_of = |account: &str| {
        let line = text
            .lines()
            .find(|line| line.contains(account))
            .unwrap_or_else(|| panic!("no {account} in {text}"));
        line.split(',').nth(1).unwrap().to_owned()
    };
    let (first, second) = (line_of("6228480012345678"), line_of("6222020200112233"));

    // A bad return file is refused whole, each bad line named; nothing of
    // it is applied.
    let (status, page) = upload_return(
        &app,
        &admin,
        &batch,
        &admin_csrf,
        &format!("line_id,status,reason\n{first},paid,\n{second},maybe,\n"),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        page.contains("回盘文件未被接受") && page.contains("<td>3</td><td>status</td>"),
        "{page}"
    );
    let (status, page) = upload_return(
        &app,
        &admin,
        &batch,
        &admin_csrf,
        &format!("line_id,status,reason\n{first},paid,\n999999,failed,查无此户\n"),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        page.contains("<td>3</td><td>line_id</td>") && page.contains("is not a line of batch"),
        "{page}"
    );
    let (_, page) = app.page(&admin, &here).await;
    assert_eq!(by_id(&page, "pending"), "2 · 5600.00", "{page}");
    assert_eq!(by_id(&page, "paid"), "0 · 0.00", "{page}");

    // Without the token: refused.
    let (status, _) = upload_return(&app, &admin, &batch, "", "line_id,status,reason\n").await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The bank's answer: one paid, one failed with its reason.
    let (status, _) = upload_return(
        &app,
        &admin,
        &batch,
        &admin_csrf,
        &format!("line_id,status,reason\n{first},paid,\n{second},failed,账户已销户\n"),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, page) = app.page(&admin, &here).await;
    assert!(page.contains("银行已回盘"), "{page}");
    assert_eq!(by_id(&page, "pending"), "0 · 0.00", "{page}");
    assert!(
        page.contains(&format!("<tr class=\"paid\"><td>{first}</td>"))
            && page.contains(&format!("<tr class=\"failed\"><td>{second}</td>"))
            && page.contains("账户已销户"),
        "{page}"
    );
    assert!(!page.contains(&format!("action=\"/staff/batches/{batch}/return\"")));
    // The same page in English.
    admin
        .get(app.url(&format!("/prefs?lang=en&back={here}")))
        .send()
        .await
        .unwrap();
    let (_, page) = app.page(&admin, &here).await;
    assert!(
        page.contains("Answered by the bank")
            && page.contains("<td>Failed</td>")
            && page.contains("<td>Paid</td>"),
        "{page}"
    );
    // The failed line's debt waits for the next batch.
    let next = post_form(&app, &admin, "/staff/batches", &admin_csrf).await;
    assert_eq!(next.status(), StatusCode::SEE_OTHER);
    let (_, page) = app
        .page(&admin, next.headers()["location"].to_str().unwrap())
        .await;
    assert!(
        page.contains("6222********2233") && !page.contains("6228********5678"),
        "{page}"
    );
}

#[tokio::test]
async fn every_batch_route_is_tried_as_every_role_and_as_nobody_and_refuses_a_post_without_its_token() {
    let app = disbursing_app(false).await;
    let mut sessions = Vec::new();
    for name in ["admin", "rev", "aud", "pay"] {
        let client = browser();
        let csrf = app.log_in(&client, name).await;
        sessions.push((name, client, csrf));
    }
    // (page, who may open it, its status for them: there is no batch 1).
    let pages: [(&str, &[&str], StatusCode); 2] = [
        ("/staff/batches", &["admin", "pay"], StatusCode::OK),
        ("/staff/batches/1", &["admin", "pay"], StatusCode::NOT_FOUND),
    ];
    for (page, allowed, status_allowed) in pages {
        assert_eq!(
            app.page(&browser(), page).await.0,
            StatusCode::SEE_OTHER,
            "nobody at {page}"
        );
        for (name, client, _) in &sessions {
            let expected = if allowed.contains(name) {
                status_allowed
            } else {
                StatusCode::FORBIDDEN
            };
            assert_eq!(app.page(client, page).await.0, expected, "{name} at {page}");
        }
    }
    // (form, who may post it, its status for them).
    let forms: [(&str, &[&str], StatusCode); 3] = [
        // Nothing is owed: no batch is made.
        ("/staff/batches", &["admin", "pay"], StatusCode::OK),
        ("/staff/batches/1/export", &["pay"], StatusCode::NOT_FOUND),
        ("/staff/batches/1/approve", &["pay"], StatusCode::NOT_FOUND),
    ];
    for (path, allowed, status_allowed) in forms {
        let nobody = post_form(&app, &browser(), path, "x").await.status();
        assert_eq!(nobody, StatusCode::SEE_OTHER, "nobody posting {path}");
        for (name, client, csrf) in &sessions {
            let without = post_form(&app, client, path, "").await.status();
            assert_eq!(
                without,
                StatusCode::FORBIDDEN,
                "{name} posting {path} without the token"
            );
            let expected = if allowed.contains(name) {
                status_allowed
            } else {
                StatusCode::FORBIDDEN
            };
            let status = post_form(&app, client, path, csrf).await.status();
            assert_eq!(status, expected, "{name} posting {path}");
        }
    }
    let (_, admin, csrf) = &sessions[0];
    let page = post_form(&app, admin, "/staff/batches", csrf)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("未生成批次") && page.contains("还没有拨付批次"),
        "{page}"
    );
    // The return file: admins and approvers.
    let (status, _) = upload_return(&app, &browser(), "1", "x", "line_id,status,reason\n").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    for (name, client, csrf) in &sessions {
        let (status, _) = upload_return(&app, client, "1", "", "line_id,status,reason\n1,paid,\n").await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "{name} uploading without the token"
        );
        let (status, _) = upload_return(&app, client, "1", csrf, "line_id,status,reason\n1,paid,\n").await;
        let expected = if ["admin", "pay"].contains(name) {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::FORBIDDEN
        };
        assert_eq!(status, expected, "{name} uploading");
    }
}

/// Residents for the apply page: the small fixture's spells and feed
/// (017's INV007 decided without assistance), the letter signed by 017
/// and 041, and a rejected application of each (017's R-0001, 041's
/// OTHER-0001) whose bill may be applied for again. Codes are shown (demo).
async fn apply_app() -> (TestApp, Store) {
    let dir = tempfile::tempdir().unwrap();
    let (store, policy) = common::store_with_policy(dir.path()).await;
    common::import_small_spells(&store, &policy, "民政").await;
    common::import_small_feed(&store, &policy).await;
    common::add_staff(&store, &[("admin", &[Role::Admin]), ("rev", &[Role::Reviewer])]).await;
    let letter = store
        .publish_letter("v1", "本人承诺票据真实。", "admin")
        .await
        .unwrap();
    let day = days_ago(10);
    for (id, phone, number) in [
        (FULL_ID, "13800138000", "R-0001"),
        (OTHER_ID, "13900139000", "OTHER-0001"),
    ] {
        let person = jiuzhu_core::ResidentId::parse(id).unwrap();
        store.set_phone(person, phone, "clerk").await.unwrap();
        store
            .sign_letter(
                person,
                &letter.sha256,
                jiuzhu_store::ApplyChannel::Counter,
                "clerk",
            )
            .await
            .unwrap();
        // Entered at the counter as if 400 days late: a finding, then
        // turned down by a reviewer.
        let body = serde_json::json!({"person_id": id, "bills": [{
            "invoice_no": number, "hospital": "外市医院", "visit_type": "inpatient",
            "service_date": day, "settled_at": format!("{day}T16:00:00+08:00"),
            "total": "300", "fund_paid": "100", "in_scope_self_pay": "150", "out_of_scope_self_pay": "50",
            "scan": {"media_type": "image/png", "content_base64": "iVBORw0KGgphIHNjYW4="},
        }]});
        let request = jiuzhu_formats::application::parse_application_request(
            body.to_string().as_bytes(),
            Default::default(),
        )
        .unwrap();
        let late = jiuzhu_core::Date::parse(&day).unwrap().days_since_epoch() + 400;
        let settings = jiuzhu_store::AcceptanceSettings {
            filing_deadline_days: 365,
            today: jiuzhu_core::Date::from_days_since_epoch(late),
        };
        let view = store
            .submit_application(&request, jiuzhu_store::ApplyChannel::Counter, "clerk", settings)
            .await
            .unwrap();
        store
            .review_application(
                view.summary.id,
                jiuzhu_store::Verdict::Reject,
                "no proof yet",
                "rev",
            )
            .await
            .unwrap();
    }
    let app = demo_app(store.clone(), dir).await;
    (app, store)
}

const OTHER_ID: &str = "110105196001010041";

/// A day `days` before today in China, `YYYY-MM-DD`.
fn days_ago(days: i32) -> String {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + 8 * 3600;
    jiuzhu_core::Date::from_days_since_epoch(seconds.div_euclid(86_400) as i32 - days)
        .unwrap()
        .to_string()
}

/// A resident logged in with their ID, phone and the code the demo shows.
async fn resident_in(app: &TestApp, id: &str, phone: &str) -> reqwest::Client {
    let resident = browser();
    let (_, form) = app.page(&resident, "/login").await;
    let page = resident
        .post(app.url("/login"))
        .form(&[
            ("csrf", hidden(&form, "csrf").as_str()),
            ("person_id", id),
            ("phone", phone),
        ])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let code = shown_code(&page).unwrap();
    let done = resident
        .post(app.url("/login/code"))
        .form(&[
            ("csrf", hidden(&page, "csrf").as_str()),
            ("person_id", id),
            ("code", code.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    resident
}

/// A typed bill's fields as the form names them (bill `n`).
fn typed(n: usize, number: &str, day: &str, amounts: [&str; 4]) -> Vec<(String, String)> {
    [
        ("invoice_no", number),
        ("hospital", "外市中心医院"),
        ("visit_type", "outpatient"),
        ("service_date", day),
        ("total", amounts[0]),
        ("fund_paid", amounts[1]),
        ("in_scope_self_pay", amounts[2]),
        ("out_of_scope_self_pay", amounts[3]),
    ]
    .into_iter()
    .map(|(name, value)| (format!("{name}_{n}"), value.to_owned()))
    .collect()
}

/// Posts the apply form: its text fields, and files (field, type, bytes).
async fn post_apply(
    app: &TestApp,
    client: &reqwest::Client,
    fields: &[(String, String)],
    files: &[(&str, &str, &[u8])],
) -> (StatusCode, String) {
    let mut form = reqwest::multipart::Form::new();
    for (name, value) in fields {
        form = form.text(name.clone(), value.clone());
    }
    for (name, media_type, bytes) in files {
        let part = reqwest::multipart::Part::bytes(bytes.to_vec())
            .file_name("scan")
            .mime_str(media_type)
            .unwrap();
        form = form.part(name.to_string(), part);
    }
    let response = client
        .post(app.url("/me/apply"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let location = response
        .headers()
        .get("location")
        .map(|location| location.to_str().unwrap().to_owned());
    (status, location.unwrap_or(response.text().await.unwrap()))
}

fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

/// The value of the input with this id on a page.
fn value_of(page: &str, id: &str) -> String {
    let marker = format!("id=\"{id}\"");
    let start = page.find(&marker).unwrap_or_else(|| panic!("no #{id} in {page}"));
    let tag = &page[start..start + page[start..].find('>').unwrap()];
    let marker = "value=\"";
    let start = tag
        .find(marker)
        .unwrap_or_else(|| panic!("{id} has no value: {tag}"))
        + marker.len();
    unescape(&tag[start..start + tag[start..].find('"').unwrap()])
}

async fn applications_of(store: &Store, id: &str) -> Vec<jiuzhu_store::ApplicationSummary> {
    store
        .applications_of(jiuzhu_core::ResidentId::parse(id).unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn the_apply_page_is_prefilled_and_lists_only_the_residents_own_held_bills() {
    let (app, store) = apply_app().await;
    let resident = resident_in(&app, FULL_ID, "13800138000").await;
    let (status, page) = app.page(&resident, "/me/apply").await;
    assert_eq!(status, StatusCode::OK);
    // What the bureau knows: the ID and the phone masked, the category in
    // force, where to change the account; the full ID nowhere.
    assert!(page.contains("110105********0017"), "{page}");
    assert!(!page.contains(FULL_ID), "{page}");
    assert!(
        page.contains("138****8000") && page.contains("DB 低保对象"),
        "{page}"
    );
    assert!(page.contains("href=\"/me/details\""), "{page}");
    // The bill the feed decided without assistance is read only, with
    // when and how it was decided; the rejected one may be ticked.
    assert!(
        page.contains("INV007") && page.contains("医保结算数据已于"),
        "{page}"
    );
    assert!(!page.contains("value=\"INV007\""), "{page}");
    assert!(page.contains("name=\"held\" value=\"R-0001\""), "{page}");
    // Nobody else's bills.
    assert!(!page.contains("OTHER-0001") && !page.contains("INV003"), "{page}");
    let other = resident_in(&app, OTHER_ID, "13900139000").await;
    let (_, page) = app.page(&other, "/me/apply").await;
    assert!(
        page.contains("value=\"OTHER-0001\"") && !page.contains("value=\"R-0001\""),
        "{page}"
    );
    assert!(!page.contains("INV007"), "{page}");
    // In English too.
    app.page(&other, "/prefs?lang=en&back=/me/apply").await;
    let (_, page) = app.page(&other, "/me/apply").await;
    assert!(
        page.contains("What the bureau already knows") && page.contains("Bill 1"),
        "{page}"
    );
    // Reading the page changes nothing.
    assert_eq!(applications_of(&store, OTHER_ID).await.len(), 1);
}

#[tokio::test]
async fn two_typed_bills_make_one_application_with_both_bills_shown_to_the_resident() {
    let (app, store) = apply_app().await;
    let resident = resident_in(&app, FULL_ID, "13800138000").await;
    let (_, page) = app.page(&resident, "/me/apply").await;
    let csrf = hidden(&page, "csrf");
    let day = days_ago(5);
    let before = applications_of(&store, FULL_ID).await.len();
    let mut form = fields(&[("csrf", &csrf), ("bill_count", "2"), ("action", "submit")]);
    form.extend(typed(1, "WEB-0001", &day, ["100", "60", "30", "10"]));
    form.extend(typed(2, "WEB-0002", &day, ["200", "120", "80", "0"]));
    let png = b"\x89PNG\r\n\x1a\nthe first scan";
    let pdf = b"%PDF-1.4 the second scan";
    let (status, location) = post_apply(
        &app,
        &resident,
        &form,
        &[("scan_1", "image/png", png), ("scan_2", "application/pdf", pdf)],
    )
    .await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, "/me/applications")
    );
    let after = applications_of(&store, FULL_ID).await;
    assert_eq!(after.len(), before + 1);
    let view = store.read_application(after[0].id).await.unwrap();
    let numbers: Vec<&str> = view.bills.iter().map(|bill| bill.invoice_no.as_str()).collect();
    assert_eq!(numbers, ["WEB-0001", "WEB-0002"]);
    assert_eq!(view.bills[0].scan.as_ref().unwrap().0, "image/png");
    assert_eq!(view.bills[1].scan.as_ref().unwrap().0, "application/pdf");
    assert_eq!(view.bills[1].amounts[0].fen(), 20_000);
    assert_eq!(view.summary.state, jiuzhu_store::ApplicationState::Decided);
    let (_, page) = app.page(&resident, "/me/applications").await;
    assert!(page.contains("WEB-0001") && page.contains("WEB-0002"), "{page}");
}

#[tokio::test]
async fn adding_and_removing_a_bill_keeps_what_was_typed_and_stores_nothing() {
    let (app, store) = apply_app().await;
    let resident = resident_in(&app, FULL_ID, "13800138000").await;
    let (_, page) = app.page(&resident, "/me/apply").await;
    assert_eq!(hidden(&page, "bill_count"), "1");
    assert!(!page.contains("value=\"remove-1\""), "{page}");
    let csrf = hidden(&page, "csrf");
    let day = days_ago(3);
    let before = applications_of(&store, FULL_ID).await.len();

    let mut form = fields(&[
        ("csrf", &csrf),
        ("bill_count", "1"),
        ("action", "add"),
        ("held", "R-0001"),
    ]);
    form.extend(typed(1, "KEEP-0001", &day, ["100", "60", "30", "10"]));
    let (status, page) = post_apply(
        &app,
        &resident,
        &form,
        &[("scan_1", "image/png", b"\x89PNG\r\n\x1a\nx")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(hidden(&page, "bill_count"), "2");
    assert_eq!(value_of(&page, "invoice_no_1"), "KEEP-0001", "{page}");
    assert_eq!(value_of(&page, "service_date_1"), day);
    assert_eq!(value_of(&page, "out_of_scope_self_pay_1"), "10");
    assert_eq!(value_of(&page, "invoice_no_2"), "");
    assert!(
        page.contains("第 2 张发票") && page.contains("value=\"remove-2\""),
        "{page}"
    );
    assert!(page.contains("票据照片不会保留"), "{page}");
    assert!(page.contains("value=\"R-0001\" checked"), "{page}");

    // Bill 1 removed: bill 2 becomes bill 1, as typed.
    let mut form = fields(&[("csrf", &csrf), ("bill_count", "2"), ("action", "remove-1")]);
    form.extend(typed(1, "KEEP-0001", &day, ["100", "60", "30", "10"]));
    form.extend(typed(2, "KEEP-0002", &day, ["7.5", "0", "7.5", "0"]));
    let (status, page) = post_apply(&app, &resident, &form, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(hidden(&page, "bill_count"), "1");
    assert_eq!(value_of(&page, "invoice_no_1"), "KEEP-0002");
    assert_eq!(value_of(&page, "total_1"), "7.5");
    assert!(
        !page.contains("KEEP-0001") && !page.contains("id=\"invoice_no_2\""),
        "{page}"
    );
    assert_eq!(applications_of(&store, FULL_ID).await.len(), before);
}

#[tokio::test]
async fn each_problem_names_its_bill_and_field_keeps_the_form_and_stores_nothing() {
    let (app, store) = apply_app().await;
    let resident = resident_in(&app, FULL_ID, "13800138000").await;
    let (_, page) = app.page(&resident, "/me/apply").await;
    let csrf = hidden(&page, "csrf");
    let day = days_ago(5);
    let before = applications_of(&store, FULL_ID).await.len();
    let mut form = fields(&[("csrf", &csrf), ("bill_count", "2"), ("action", "submit")]);
    form.extend(typed(1, "GOOD-0001", &day, ["100", "60", "30", "10"]));
    form.extend(typed(2, "BAD 0002", &day, ["abc", "60", "30", "10"]));
    // Bill 1's scan says PNG but is not one.
    let (status, page) = post_apply(&app, &resident, &form, &[("scan_1", "image/png", b"GIF89a")]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("第 2 张发票 · 总金额"), "{page}");
    assert!(page.contains("第 2 张发票 · 票据号"), "{page}");
    assert!(page.contains("第 1 张发票 · 票据照片"), "{page}");
    assert!(!page.contains("第 1 张发票 · 总金额"), "{page}");
    assert_eq!(value_of(&page, "invoice_no_1"), "GOOD-0001");
    assert_eq!(value_of(&page, "invoice_no_2"), "BAD 0002");
    assert_eq!(value_of(&page, "total_2"), "abc");
    assert!(page.contains("票据照片不会保留"), "{page}");
    // Nothing typed and nothing ticked: said, nothing stored.
    let form = fields(&[
        ("csrf", &csrf),
        ("bill_count", "1"),
        ("action", "submit"),
        ("visit_type_1", "outpatient"),
    ]);
    let (status, page) = post_apply(&app, &resident, &form, &[]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("请至少填写或勾选一张发票"), "{page}");
    assert_eq!(applications_of(&store, FULL_ID).await.len(), before);
}

#[tokio::test]
async fn a_held_bill_is_applied_for_with_its_stored_fields_never_another_persons_and_only_with_the_token() {
    let (app, store) = apply_app().await;
    let resident = resident_in(&app, FULL_ID, "13800138000").await;
    let (_, page) = app.page(&resident, "/me/apply").await;
    let csrf = hidden(&page, "csrf");
    let before = applications_of(&store, FULL_ID).await.len();
    let others = applications_of(&store, OTHER_ID).await.len();

    // Another person's bill: refused, nothing stored for either.
    let form = fields(&[
        ("csrf", &csrf),
        ("bill_count", "1"),
        ("action", "submit"),
        ("held", "OTHER-0001"),
    ]);
    let (status, page) = post_apply(&app, &resident, &form, &[]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        page.contains("发票 OTHER-0001") && page.contains("未作任何修改"),
        "{page}"
    );
    assert!(!page.contains("外市医院 · 票据号 OTHER-0001"), "{page}");
    assert_eq!(applications_of(&store, FULL_ID).await.len(), before);
    assert_eq!(applications_of(&store, OTHER_ID).await.len(), others);
    // A bill the feed decided cannot be chosen either.
    let form = fields(&[
        ("csrf", &csrf),
        ("bill_count", "1"),
        ("action", "submit"),
        ("held", "INV007"),
    ]);
    assert_eq!(
        post_apply(&app, &resident, &form, &[]).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    // Without the form's token: refused, nothing stored.
    let form = fields(&[
        ("csrf", "forged"),
        ("bill_count", "1"),
        ("action", "submit"),
        ("held", "R-0001"),
    ]);
    assert_eq!(
        post_apply(&app, &resident, &form, &[]).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(applications_of(&store, FULL_ID).await.len(), before);

    // Its own, ticked, with fields sent that the server ignores: the
    // stored fields and the stored scan are taken.
    let form = fields(&[
        ("csrf", &csrf),
        ("bill_count", "1"),
        ("action", "submit"),
        ("held", "R-0001"),
        ("total_R-0001", "99999"),
        ("hospital_1", ""),
    ]);
    let (status, location) = post_apply(&app, &resident, &form, &[]).await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, "/me/applications")
    );
    let after = applications_of(&store, FULL_ID).await;
    assert_eq!(after.len(), before + 1);
    let view = store.read_application(after[0].id).await.unwrap();
    assert_eq!(view.bills.len(), 1);
    let bill = &view.bills[0];
    assert_eq!(
        (bill.invoice_no.as_str(), bill.hospital.as_str()),
        ("R-0001", "外市医院")
    );
    assert_eq!(
        bill.amounts.map(|amount| amount.fen()),
        [30_000, 10_000, 15_000, 5_000]
    );
    assert_eq!(bill.scan.as_ref().unwrap().0, "image/png");
    // Within the deadline now and eligible: decided at once.
    assert_eq!(view.summary.state, jiuzhu_store::ApplicationState::Decided);
    assert_eq!(bill.status, "decided");
    // No longer offered.
    let (_, page) = app.page(&resident, "/me/apply").await;
    assert!(!page.contains("value=\"R-0001\""), "{page}");
    let (_, page) = app.page(&resident, "/me/applications").await;
    assert!(page.contains("R-0001"), "{page}");
}

#[tokio::test]
async fn the_apply_page_is_only_for_a_residents_own_session() {
    let (app, store) = apply_app().await;
    let before = applications_of(&store, FULL_ID).await.len();
    // Nobody, and staff without a resident's session: to the login page,
    // for the page and for a post.
    let nobody = browser();
    let staff = browser();
    app.log_in(&staff, "admin").await;
    for client in [&nobody, &staff] {
        let (status, _) = app.page(client, "/me/apply").await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        let form = fields(&[("csrf", "x"), ("bill_count", "1"), ("held", "R-0001")]);
        let (status, location) = post_apply(&app, client, &form, &[]).await;
        assert_eq!((status, location.as_str()), (StatusCode::SEE_OTHER, "/login"));
    }
    // Another resident's token does not post for this one.
    let other = resident_in(&app, OTHER_ID, "13900139000").await;
    let (_, page) = app.page(&other, "/me/apply").await;
    let other_csrf = hidden(&page, "csrf");
    let resident = resident_in(&app, FULL_ID, "13800138000").await;
    let form = fields(&[("csrf", &other_csrf), ("bill_count", "1"), ("held", "R-0001")]);
    assert_eq!(
        post_apply(&app, &resident, &form, &[]).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(applications_of(&store, FULL_ID).await.len(), before);
}
