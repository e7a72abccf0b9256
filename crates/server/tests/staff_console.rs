//! The staff console's administration over HTTP, against the real server on
//! port 0 over a fresh SQLite store: members of staff's roles changed,
//! disabled (their live session and API token refused at once) and enabled
//! again, with the guards; and the persons' bank accounts uploaded, stored
//! and shown masked, or refused whole with a report.

use jiuzhu_store::{Role, Store};
use reqwest::StatusCode;

mod common;
use common::{browser, hidden, PASSWORD};

struct TestApp {
    address: String,
    store: Store,
    /// The API token of each member of staff.
    tokens: Vec<(String, String)>,
    _dir: tempfile::TempDir,
}

/// A server over a store with the example policy, the small spells file
/// and the staff `admin`, `rev` (reviewer), `aud` (auditor) and `pay`
/// (approver), each with the same password.
async fn spawn_app() -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let (store, policy) = common::store_with_policy(dir.path()).await;
    common::import_small_spells(&store, &policy, "民政").await;
    let tokens = common::add_staff(
        &store,
        &[
            ("admin", &[Role::Admin]),
            ("rev", &[Role::Reviewer]),
            ("aud", &[Role::Auditor]),
            ("pay", &[Role::Approver]),
        ],
    )
    .await;
    let address = common::serve(store.clone(), common::settings()).await;
    TestApp {
        address,
        store,
        tokens,
        _dir: dir,
    }
}

impl TestApp {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    fn token(&self, name: &str) -> &str {
        &self.tokens.iter().find(|(who, _)| who == name).unwrap().1
    }

    async fn page(&self, client: &reqwest::Client, path: &str) -> (StatusCode, String) {
        let response = client.get(self.url(path)).send().await.unwrap();
        (response.status(), response.text().await.unwrap())
    }

    async fn try_log_in(&self, client: &reqwest::Client, name: &str) -> StatusCode {
        let (_, form) = self.page(client, "/staff/login").await;
        let csrf = hidden(&form, "csrf");
        client
            .post(self.url("/staff/login"))
            .form(&[("name", name), ("password", PASSWORD), ("csrf", &csrf)])
            .send()
            .await
            .unwrap()
            .status()
    }

    /// Logs `name` in; returns the session's CSRF token.
    async fn log_in(&self, client: &reqwest::Client, name: &str) -> String {
        assert_eq!(self.try_log_in(client, name).await, StatusCode::SEE_OTHER);
        let (status, dashboard) = self.page(client, "/staff").await;
        assert_eq!(status, StatusCode::OK);
        hidden(&dashboard, "csrf")
    }

    async fn post(
        &self,
        client: &reqwest::Client,
        path: &str,
        form: &[(&str, &str)],
    ) -> (StatusCode, String) {
        let response = client.post(self.url(path)).form(form).send().await.unwrap();
        (response.status(), response.text().await.unwrap())
    }

    /// The status of an API call with a member of staff's token.
    async fn api_status(&self, token: &str) -> StatusCode {
        reqwest::Client::new()
            .get(self.url("/api/v1/applications"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status()
    }

    /// How many entries the audit log holds: every write adds one.
    async fn audit_entries(&self) -> u64 {
        self.store.verify_audit().await.unwrap().unwrap().entries
    }

    async fn upload(
        &self,
        client: &reqwest::Client,
        csrf: &str,
        file: &str,
        bytes: Vec<u8>,
    ) -> (StatusCode, String) {
        let form = reqwest::multipart::Form::new()
            .text("csrf", csrf.to_owned())
            .part(
                "file",
                reqwest::multipart::Part::bytes(bytes).file_name(file.to_owned()),
            );
        let response = client
            .post(self.url("/staff/accounts"))
            .multipart(form)
            .send()
            .await
            .unwrap();
        (response.status(), response.text().await.unwrap())
    }
}

#[tokio::test]
async fn only_admins_open_a_member_of_staffs_page_and_change_them_with_the_sessions_token() {
    let app = spawn_app().await;
    let paths = [
        "/staff/users/rev/roles",
        "/staff/users/rev/disable",
        "/staff/users/rev/enable",
    ];
    // Not logged in: sent to the login page.
    let anonymous = browser();
    let response = anonymous.get(app.url("/staff/users/rev")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/staff/login");
    for path in paths {
        let (status, _) = app
            .post(&anonymous, path, &[("csrf", "x"), ("reason", "r")])
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{path}");
    }
    // The other roles, with their own session's token: refused.
    let mut others = Vec::new();
    for name in ["rev", "aud", "pay"] {
        let client = browser();
        let csrf = app.log_in(&client, name).await;
        others.push((name, client, csrf));
    }
    let admin = browser();
    let csrf = app.log_in(&admin, "admin").await;
    // Logins are audited; from here on, nothing is written.
    let entries = app.audit_entries().await;
    for (name, client, csrf) in &others {
        let (name, client, csrf) = (*name, client, csrf.as_str());
        assert_eq!(
            app.page(client, "/staff/users/admin").await.0,
            StatusCode::FORBIDDEN
        );
        for path in paths {
            let (status, _) = app
                .post(
                    client,
                    path,
                    &[("csrf", csrf), ("roles", "admin"), ("reason", "taking over")],
                )
                .await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{name} {path}");
        }
    }
    // An admin without the session's token: refused too.
    let (status, page) = app.page(&admin, "/staff/users/rev").await;
    assert_eq!(status, StatusCode::OK);
    for form in ["/staff/users/rev/roles", "/staff/users/rev/disable"] {
        assert!(page.contains(&format!("action=\"{form}\"")), "{page}");
    }
    assert!(page.contains(&format!("name=\"csrf\" value=\"{csrf}\"")));
    for token in ["", "forged"] {
        for path in paths {
            let (status, _) = app
                .post(
                    &admin,
                    path,
                    &[("csrf", token), ("roles", "admin"), ("reason", "r")],
                )
                .await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{token:?} {path}");
        }
    }
    // Nothing was written, and rev is as before.
    assert_eq!(app.audit_entries().await, entries);
    let rev = app.store.staff_member("rev").await.unwrap().unwrap();
    assert_eq!((rev.roles, rev.disabled_at), (vec![Role::Reviewer], None));
    // A name no one has: not found.
    assert_eq!(
        app.page(&admin, "/staff/users/nobody").await.0,
        StatusCode::NOT_FOUND
    );
    let (status, _) = app
        .post(
            &admin,
            "/staff/users/nobody/disable",
            &[("csrf", &csrf), ("reason", "r")],
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_disabled_member_of_staffs_live_session_and_api_token_are_refused_at_once_until_enabled() {
    let app = spawn_app().await;
    let admin = browser();
    let csrf = app.log_in(&admin, "admin").await;
    let reviewer = browser();
    app.log_in(&reviewer, "rev").await;
    assert_eq!(app.api_status(app.token("rev")).await, StatusCode::OK);

    // Roles, ticked on the member's page.
    let (status, page) = app
        .post(
            &admin,
            "/staff/users/rev/roles",
            &[("csrf", &csrf), ("roles", "reviewer"), ("roles", "approver")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("角色已保存"), "{page}");
    assert!(page.contains("value=\"approver\" checked"), "{page}");
    assert_eq!(
        app.store.staff_member("rev").await.unwrap().unwrap().roles,
        vec![Role::Reviewer, Role::Approver]
    );
    // No role at all, or a role that does not exist: refused, nothing changed.
    let entries = app.audit_entries().await;
    let (status, page) = app
        .post(&admin, "/staff/users/rev/roles", &[("csrf", &csrf)])
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("至少需要选择一个角色"), "{page}");
    let (status, _) = app
        .post(
            &admin,
            "/staff/users/rev/roles",
            &[("csrf", &csrf), ("roles", "king")],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // Disabling needs a reason.
    let (status, page) = app
        .post(
            &admin,
            "/staff/users/rev/disable",
            &[("csrf", &csrf), ("reason", " ")],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("请填写停用原因"), "{page}");
    assert_eq!(app.audit_entries().await, entries);
    assert_eq!(app.page(&reviewer, "/staff").await.0, StatusCode::OK);

    // Disabled: the live session and the token are refused at once, and
    // they cannot log in.
    let (status, page) = app
        .post(
            &admin,
            "/staff/users/rev/disable",
            &[("csrf", &csrf), ("reason", "调离本岗位")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("已停用") && page.contains("调离本岗位"), "{page}");
    let response = reviewer.get(app.url("/staff")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/staff/login");
    assert_eq!(app.api_status(app.token("rev")).await, StatusCode::UNAUTHORIZED);
    assert_eq!(app.try_log_in(&browser(), "rev").await, StatusCode::UNAUTHORIZED);
    // The users page says since when and by whom, in both languages.
    let (_, users) = app.page(&admin, "/staff/users").await;
    assert!(
        users.contains("停用时间") && users.contains("停用人 admin"),
        "{users}"
    );
    app.page(&admin, "/prefs?lang=en&back=/staff/users/rev").await;
    let (_, page) = app.page(&admin, "/staff/users/rev").await;
    assert!(
        page.contains("Disabled since") && page.contains("Enable again") && page.contains("调离本岗位"),
        "{page}"
    );
    let (_, users) = app.page(&admin, "/staff/users").await;
    assert!(users.contains("Disabled by admin"), "{users}");
    // The workbook carries the state too.
    let workbook = admin.get(app.url("/staff/users.xlsx")).send().await.unwrap();
    assert_eq!(workbook.status(), StatusCode::OK);
    assert!(workbook.bytes().await.unwrap().starts_with(b"PK"));
    // A disabled name cannot be added again over the users page.
    let (status, _) = app
        .post(
            &admin,
            "/staff/users",
            &[
                ("csrf", &csrf),
                ("name", "rev"),
                ("roles", "admin"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(app.store.staff("rev").await.unwrap().is_none());

    // Enabled again: they log in; the old session stays ended and the
    // token revoked when they were disabled stays revoked.
    let (status, page) = app
        .post(&admin, "/staff/users/rev/enable", &[("csrf", &csrf)])
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("Enabled again."), "{page}");
    assert_eq!(app.page(&reviewer, "/staff").await.0, StatusCode::SEE_OTHER);
    assert_eq!(app.api_status(app.token("rev")).await, StatusCode::UNAUTHORIZED);
    let roles = app.store.staff("rev").await.unwrap().unwrap().roles;
    let new_token = app.store.add_staff("rev", &roles, "admin").await.unwrap();
    assert_eq!(app.api_status(&new_token).await, StatusCode::OK);
    app.log_in(&browser(), "rev").await;
    let (status, _) = app
        .post(&admin, "/staff/users/rev/enable", &[("csrf", &csrf)])
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn an_admin_cannot_disable_themselves_nor_drop_their_admin_role_nor_leave_no_admin() {
    let app = spawn_app().await;
    let admin = browser();
    let csrf = app.log_in(&admin, "admin").await;
    let entries = app.audit_entries().await;
    let (status, page) = app
        .post(
            &admin,
            "/staff/users/admin/disable",
            &[("csrf", &csrf), ("reason", "bye")],
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(page.contains("不能停用自己的账号"), "{page}");
    let (status, page) = app
        .post(
            &admin,
            "/staff/users/admin/roles",
            &[("csrf", &csrf), ("roles", "reviewer")],
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(page.contains("不能取消自己的管理员角色"), "{page}");
    assert_eq!(app.audit_entries().await, entries);
    assert_eq!(app.page(&admin, "/staff/users").await.0, StatusCode::OK);

    // A second admin may be disabled by the first; then the first is the
    // last enabled admin, whom nobody can disable or demote (here through
    // the store, as the command line would).
    app.store
        .add_staff("second", &[Role::Admin], "admin")
        .await
        .unwrap();
    let (status, _) = app
        .post(
            &admin,
            "/staff/users/second/disable",
            &[("csrf", &csrf), ("reason", "moved")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let entries = app.audit_entries().await;
    let refused = app.store.disable_staff("admin", "x", "second").await.unwrap_err();
    assert_eq!(refused.key(), "last_admin");
    let refused = app
        .store
        .set_staff_roles("admin", &[Role::Auditor], "second")
        .await
        .unwrap_err();
    assert_eq!(refused.key(), "last_admin");
    assert_eq!(app.audit_entries().await, entries);
    assert_eq!(app.page(&admin, "/staff/users").await.0, StatusCode::OK);
}

const GOOD_ACCOUNTS: &str = "person_id,name,bank,account\n\
    110105196001010017,张三,农业银行,6228 4800 1234 5678\n\
    110105196001010025,李四,工商银行,6222020200112233\n";

#[tokio::test]
async fn bank_accounts_are_uploaded_by_admins_and_approvers_stored_and_shown_masked() {
    let app = spawn_app().await;
    for name in ["rev", "aud"] {
        let client = browser();
        let csrf = app.log_in(&client, name).await;
        assert_eq!(
            app.page(&client, "/staff/accounts").await.0,
            StatusCode::FORBIDDEN
        );
        let (status, _) = app
            .upload(&client, &csrf, "a.csv", GOOD_ACCOUNTS.as_bytes().to_vec())
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{name}");
    }
    let payer = browser();
    let csrf = app.log_in(&payer, "pay").await;
    let (status, page) = app.page(&payer, "/staff/accounts").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("enctype=\"multipart/form-data\""), "{page}");
    // Without the session's token: refused, nothing stored.
    let entries = app.audit_entries().await;
    for token in ["", "forged"] {
        let (status, _) = app
            .upload(&payer, token, "a.csv", GOOD_ACCOUNTS.as_bytes().to_vec())
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    assert_eq!(app.audit_entries().await, entries);

    let (status, page) = app
        .upload(&payer, &csrf, "a.csv", GOOD_ACCOUNTS.as_bytes().to_vec())
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("自下一拨付批次起使用"), "{page}");
    assert!(page.contains("<dd>2</dd>"), "{page}");
    assert!(
        page.contains("6228********5678") && page.contains("6222********2233"),
        "{page}"
    );
    assert!(page.contains("张三") && page.contains("农业银行"), "{page}");
    for full in [
        "6228480012345678",
        "6228 4800 1234 5678",
        "6222020200112233",
        "110105196001010017",
    ] {
        assert!(!page.contains(full), "{full} shown in full");
    }
    assert_eq!(app.audit_entries().await, entries + 1);
    // The same file again: unchanged, from the admin too.
    let admin = browser();
    let admin_csrf = app.log_in(&admin, "admin").await;
    let (status, page) = app
        .upload(&admin, &admin_csrf, "a.csv", GOOD_ACCOUNTS.as_bytes().to_vec())
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        page.contains("<dt>已保存（新增或变更）</dt><dd>0</dd>")
            && page.contains("<dt>未变化</dt><dd>2</dd>"),
        "{page}"
    );

    // A GBK file, as many government systems write it: read as such.
    // 王五,建设银行 in GBK.
    let names = [
        0xcd, 0xf5, 0xce, 0xe5, b',', 0xbd, 0xa8, 0xc9, 0xe8, 0xd2, 0xf8, 0xd0, 0xd0,
    ];
    let mut gbk = b"person_id,name,bank,account\n110105196001010041,".to_vec();
    gbk.extend_from_slice(&names);
    gbk.extend_from_slice(b",6217000010001234\n");
    assert!(std::str::from_utf8(&gbk).is_err());
    let (status, page) = app.upload(&payer, &csrf, "gbk.csv", gbk).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        page.contains("王五") && page.contains("建设银行") && page.contains("6217********1234"),
        "{page}"
    );
    assert!(page.contains("<dt>已保存（新增或变更）</dt><dd>1</dd>"), "{page}");

    // A workbook too.
    let mut workbook = rust_xlsxwriter::Workbook::new();
    let sheet = workbook.add_worksheet();
    for (row, cells) in [
        ["person_id", "name", "bank", "account"],
        ["11010519600101005X", "赵六", "中国银行", "6216610100009999"],
    ]
    .iter()
    .enumerate()
    {
        for (column, cell) in cells.iter().enumerate() {
            sheet.write_string(row as u32, column as u16, *cell).unwrap();
        }
    }
    let bytes = workbook.save_to_buffer().unwrap();
    let (status, page) = app.upload(&payer, &csrf, "accounts.xlsx", bytes).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        page.contains("赵六") && page.contains("6216********9999"),
        "{page}"
    );
}

#[tokio::test]
async fn a_bad_bank_accounts_file_is_refused_whole_with_a_report_of_every_bad_row() {
    let app = spawn_app().await;
    let payer = browser();
    let csrf = app.log_in(&payer, "pay").await;
    let admin = browser();
    app.log_in(&admin, "admin").await;
    let entries = app.audit_entries().await;
    // A good row among bad ones: nothing of the file is stored.
    let bad = "person_id,name,bank,account\n\
        110105196001010017,张三,农业银行,6228480012345678\n\
        110105196001010018,李四,工商银行,6222020200112233\n\
        110105196001010025,,工商银行,12-34\n";
    let (status, page) = app
        .upload(&payer, &csrf, "bad.csv", bad.as_bytes().to_vec())
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{page}");
    assert!(page.contains("文件未导入，未作任何修改"), "{page}");
    for cell in [
        "<td>3</td><td>person_id</td>",
        "<td>4</td><td>name</td>",
        "<td>4</td><td>account</td>",
    ] {
        assert!(page.contains(cell), "{cell}: {page}");
    }
    // The page escapes every value (`/` as `&#x2f;`), as a browser reads it.
    let page = page.replace("&#x2f;", "/");
    let link = "/staff/accounts/rejected/";
    let start = page.find(link).unwrap();
    let url = &page[start..start + page[start..].find('"').unwrap()];
    let report = payer.get(app.url(url)).send().await.unwrap();
    assert_eq!(report.status(), StatusCode::OK);
    assert!(report.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains("bad-rejected.csv"));
    let text = report.text().await.unwrap();
    assert!(text.starts_with("\u{feff}line,column,message\n"), "{text}");
    for row in ["\n3,person_id,", "\n4,name,is empty", "\n4,account,"] {
        assert!(text.contains(row), "{row}: {text}");
    }
    // Only its uploader downloads it.
    assert_eq!(app.page(&admin, url).await.0, StatusCode::NOT_FOUND);

    // A person the store does not know refuses the file whole too.
    let unknown = "person_id,name,bank,account\n\
        110105196001010017,张三,农业银行,6228480012345678\n\
        11010519491231002X,陈七,农业银行,6228480012349999\n";
    let (status, page) = app
        .upload(&payer, &csrf, "unknown.csv", unknown.as_bytes().to_vec())
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{page}");
    assert!(page.contains("<td>3</td><td>person_id</td>"), "{page}");
    assert_eq!(app.audit_entries().await, entries);

    // Nothing was stored: the good row of those files is new now.
    let (status, page) = app
        .upload(&payer, &csrf, "a.csv", GOOD_ACCOUNTS.as_bytes().to_vec())
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("<dt>已保存（新增或变更）</dt><dd>2</dd>"), "{page}");
}
