//! Browser tests: headless Chromium on a 360-pixel phone screen against a
//! real `jiuzhu serve --demo`. Screenshots of a failed page go to
//! target/browser-screenshots/.

mod common;

use common::browser::Browser;

/// Fails with every serious or critical accessibility problem of the page.
async fn accessible(browser: &Browser, page: &str) {
    if let Some(problems) = browser.accessibility_problems().await {
        assert!(problems.is_empty(), "{page}: {problems:#?}");
    }
}

async fn logged_in(base: &str, browser: &Browser, name: &str, password: &str) {
    browser.open(&format!("{base}/staff/login")).await;
    browser.type_into("#name", name).await;
    browser.type_into("#password", password).await;
    browser.click("button[type=submit]").await;
    browser.wait_for("/staff").await;
}

#[tokio::test]
async fn on_a_phone_a_reviewer_logs_in_finds_the_queue_and_reads_it_in_english_and_large_type() {
    let Some(browser) = Browser::start("reviewer_on_a_phone", 360, 740).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("demo.db").display());
    let (server, printed) = common::serve_demo(dir.path(), &database);
    let password = common::demo_password(&printed);
    let base = server.base.clone();

    browser.open(&format!("{base}/")).await;
    assert_eq!(browser.script("document.documentElement.lang").await, "zh-CN");
    accessible(&browser, "home").await;
    // Nothing is wider than the phone's screen.
    let width = browser.script("document.documentElement.scrollWidth").await;
    assert!(width.as_u64().unwrap() <= 360, "the page is {width} pixels wide");

    logged_in(&base, &browser, "shenhe", &password).await;
    browser.click("nav.menu a[href='/staff/reviews']").await;
    browser.wait_for("/staff/reviews").await;
    assert_eq!(browser.count("tbody tr").await, 2);
    assert!(browser.text("h1").await.contains("救助审核"));

    // Open the first, read its finding, reject it with a reason.
    accessible(&browser, "review queue").await;
    browser.click("tbody tr:first-child a").await;
    browser.wait_for_path_containing("/staff/reviews/").await;
    assert_eq!(browser.count("ul.findings li").await, 1);
    accessible(&browser, "an application").await;
    browser.type_into("#reason", "超过申请期限且无正当理由").await;
    browser.click("button[value=reject]").await;
    browser.wait_for_text("h1", "未通过").await;
    browser.open(&format!("{base}/staff/reviews")).await;
    assert_eq!(browser.count("tbody tr").await, 1);

    browser.click("nav.prefs a[lang=en]").await;
    browser.wait_for("/staff/reviews").await;
    assert_eq!(browser.script("document.documentElement.lang").await, "en");
    assert_eq!(browser.text("h1").await, "Review queue");
    browser.click("nav.prefs a[href*='size=large']").await;
    browser.wait_for("/staff/reviews").await;
    assert_eq!(
        browser.script("document.documentElement.className").await,
        "large"
    );
    let size = browser
        .script("parseFloat(getComputedStyle(document.body).fontSize)")
        .await;
    assert!(size.as_f64().unwrap() >= 24.0, "{size}");

    // Logging out closes the pages again.
    browser.click("nav.menu button").await;
    browser.wait_for("/staff/login").await;
    browser.open(&format!("{base}/staff/reviews")).await;
    browser.wait_for("/staff/login").await;
    accessible(&browser, "login, English, large type").await;
}

#[tokio::test]
async fn an_admin_uploads_a_bad_spells_file_and_sees_every_problem_with_its_line() {
    let Some(browser) = Browser::start("admin_upload", 360, 740).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("demo.db").display());
    let (server, printed) = common::serve_demo(dir.path(), &database);
    let password = common::demo_password(&printed);
    let base = server.base.clone();
    let file = dir.path().join("bad-spells.csv");
    std::fs::write(
        &file,
        "person_id,category,valid_from,valid_to\n110105196001010018,DB,2024-01-01,\n110105196001010025,XX,2024-01-01,\n",
    )
    .unwrap();

    logged_in(&base, &browser, "admin", &password).await;
    browser.click("nav.menu a[href='/staff/imports']").await;
    browser.wait_for("/staff/imports").await;
    browser.type_into("#file", file.to_str().unwrap()).await;
    browser.click("main button[type=submit]").await;
    browser.wait_for("/staff/imports/spells").await;
    assert_eq!(browser.count("tbody tr").await, 2);
    let first = browser.text("tbody tr:first-child").await;
    assert!(first.starts_with("2 person_id"), "{first}");
    assert!(browser.count("a[download]").await == 1);
    accessible(&browser, "a refused upload").await;
    browser.open(&format!("{base}/staff/imports")).await;
    accessible(&browser, "the upload form").await;
}

#[tokio::test]
async fn on_a_phone_the_console_pages_of_an_admin_and_an_auditor_pass_the_accessibility_check() {
    let Some(browser) = Browser::start("console_pages", 360, 740).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("demo.db").display());
    let (server, printed) = common::serve_demo(dir.path(), &database);
    let password = common::demo_password(&printed);
    let base = server.base.clone();

    logged_in(&base, &browser, "admin", &password).await;
    for (link, path) in [
        ("/staff/policies", "policy versions"),
        ("/staff/clearings", "clearings"),
        ("/staff/users", "staff users"),
        ("/staff/keys", "API keys"),
    ] {
        browser.click(&format!("nav.menu a[href='{link}']")).await;
        browser.wait_for(link).await;
        accessible(&browser, path).await;
    }
    // A member of staff's page, with the forms that change them.
    browser.open(&format!("{base}/staff/users/shenhe")).await;
    browser.wait_for("/staff/users/shenhe").await;
    accessible(&browser, "a member of staff").await;

    // The bank accounts' upload: a bad file refused with every problem,
    // a good one stored and shown masked.
    browser.click("nav.menu a[href='/staff/accounts']").await;
    browser.wait_for("/staff/accounts").await;
    accessible(&browser, "the bank accounts' upload").await;
    let bad = dir.path().join("bad-accounts.csv");
    std::fs::write(
        &bad,
        "person_id,name,bank,account\n110105196001010018,张三,农业银行,12\n",
    )
    .unwrap();
    browser.type_into("#file", bad.to_str().unwrap()).await;
    browser.click("main button[type=submit]").await;
    browser.wait_for_text("p.error", "文件未导入").await;
    assert_eq!(browser.count("tbody tr").await, 2);
    accessible(&browser, "a refused bank accounts file").await;
    let (id, _) = common::demo_resident(&printed);
    let good = dir.path().join("accounts.csv");
    std::fs::write(
        &good,
        format!("person_id,name,bank,account\n{id},张三,农业银行,6228480012345678\n"),
    )
    .unwrap();
    browser.type_into("#file", good.to_str().unwrap()).await;
    browser.click("main button[type=submit]").await;
    browser.wait_for_text("p.ok", "自下一拨付批次起使用").await;
    let page = browser.script("document.body.innerText").await;
    let page = page.as_str().unwrap();
    assert!(page.contains("6228********5678") && !page.contains("6228480012345678") && !page.contains(&id));
    accessible(&browser, "bank accounts stored").await;
    browser.click("nav.menu button").await;
    browser.wait_for("/staff/login").await;

    logged_in(&base, &browser, "jicha", &password).await;
    browser.click("nav.menu a[href='/staff/audit']").await;
    browser.wait_for("/staff/audit").await;
    accessible(&browser, "the audit trail's form").await;
    browser.open(&format!("{base}/staff/audit/verify")).await;
    accessible(&browser, "the audit chain check").await;
}

#[tokio::test]
async fn on_a_phone_a_resident_logs_in_with_a_code_and_reads_each_bill_in_plain_words() {
    let Some(browser) = Browser::start("resident_on_a_phone", 360, 740).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("demo.db").display());
    // The city's unified login configured (its issuer is never reached
    // here): the login page offers it beside the code.
    let (server, printed) = common::serve_demo_with(
        dir.path(),
        &database,
        &[
            ("JIUZHU_OIDC_ISSUER", "http://127.0.0.1:9"),
            ("JIUZHU_OIDC_CLIENT_ID", "jiuzhu"),
            ("JIUZHU_OIDC_CLIENT_SECRET", "test only"),
            (
                "JIUZHU_OIDC_REDIRECT_URL",
                "http://127.0.0.1:8080/login/oidc/callback",
            ),
        ],
    );
    let (id, phone) = common::demo_resident(&printed);
    let base = server.base.clone();

    browser.open(&format!("{base}/")).await;
    browser.click("a[href='/login']").await;
    browser.wait_for("/login").await;
    assert_eq!(browser.text("a[href='/login/oidc']").await, "用统一身份认证登录");
    accessible(&browser, "resident login").await;
    browser.type_into("#person_id", &id).await;
    browser.type_into("#phone", &phone).await;
    browser.click("main button[type=submit]").await;
    browser.wait_for_text("p.notice", "验证码").await;
    let notice = browser.text("p.notice strong").await;
    let code: String = notice.chars().filter(char::is_ascii_digit).collect();
    assert_eq!(code.len(), 6, "{notice}");
    browser.type_into("#code", &code).await;
    browser.click("main button[type=submit]").await;
    browser.wait_for("/me").await;
    assert!(browser.text("h1").await.contains("我的救助票据"));
    let bills = browser.count("ul.bills li").await;
    assert!(bills >= 1, "no bill");
    let words = browser.text("ul.bills li:first-child p:last-child").await;
    assert!(words.starts_with("您这张票据总金额 ¥"), "{words}");
    // Nothing shows the full ID.
    let page = browser.script("document.body.innerText").await;
    assert!(
        !page.as_str().unwrap().contains(&id),
        "the full ID is on the page"
    );
    accessible(&browser, "my bills").await;

    // Their applications, step by step: the demo's first was decided, then
    // paid.
    browser.click("nav.menu a[href='/me/applications']").await;
    browser.wait_for("/me/applications").await;
    let steps = browser.text("ul.bills").await;
    assert!(
        steps.contains("已提交") && steps.contains("已核定") && steps.contains("已拨付"),
        "{steps}"
    );
    accessible(&browser, "my applications").await;
    // Their payments: one paid by the bank, one in a batch awaiting approval.
    browser.click("nav.menu a[href='/me/payments']").await;
    browser.wait_for("/me/payments").await;
    let payments = browser.text("tbody").await;
    assert!(
        payments.contains("已到账") && payments.contains("银行处理中"),
        "{payments}"
    );
    browser.click("nav.prefs a[href*='size=large']").await;
    browser.wait_for("/me/payments").await;
    accessible(&browser, "my payments, large type").await;

    // An application for a bill of a hospital elsewhere, with a photo of it:
    // clean, it is decided at once.
    let scan = dir.path().join("bill.png");
    std::fs::write(&scan, b"\x89PNG\r\n\x1a\nthe bill").unwrap();
    browser.click("nav.menu a[href='/me/apply']").await;
    browser.wait_for("/me/apply").await;
    accessible(&browser, "apply, large type").await;
    let yesterday = browser
        .script("new Date(Date.now() - 86400000 * 3).toISOString().slice(0, 10)")
        .await;
    for (field, value) in [
        ("#invoice_no_1", "WEB-0001"),
        ("#hospital_1", "外市中心医院"),
        ("#total_1", "3000"),
        ("#fund_paid_1", "1800"),
        ("#in_scope_self_pay_1", "1000"),
        ("#out_of_scope_self_pay_1", "200"),
    ] {
        browser.type_into(field, value).await;
    }
    browser
        .script(&format!(
            "document.querySelector('#service_date_1').value = '{}'",
            yesterday.as_str().unwrap()
        ))
        .await;
    browser.type_into("#scan_1", scan.to_str().unwrap()).await;
    browser
        .click("main button[value=submit]:not(.default-action)")
        .await;
    browser.wait_for("/me/applications").await;
    let newest = browser.text("ul.bills > li:first-child h2").await;
    assert!(
        newest.contains("已核定") || newest.contains("Decided"),
        "{newest}"
    );
}

/// Logs the demo's resident in with their ID, phone and the code the demo
/// shows.
async fn resident_logged_in(base: &str, browser: &Browser, id: &str, phone: &str) {
    browser.open(&format!("{base}/login")).await;
    browser.type_into("#person_id", id).await;
    browser.type_into("#phone", phone).await;
    browser.click("main button[type=submit]").await;
    browser.wait_for_text("p.notice", "验证码").await;
    let notice = browser.text("p.notice strong").await;
    let code: String = notice.chars().filter(char::is_ascii_digit).collect();
    browser.type_into("#code", &code).await;
    browser.click("main button[type=submit]").await;
    browser.wait_for("/me").await;
}

/// The digits of the one-time code a demo page shows in `css`.
async fn shown_code(browser: &Browser, css: &str) -> String {
    let shown = browser.text(css).await;
    let code: String = shown.chars().filter(char::is_ascii_digit).collect();
    assert_eq!(code.len(), 6, "{shown}");
    code
}

#[tokio::test]
async fn on_a_phone_a_resident_uses_each_of_the_six_services_and_each_page_passes_in_both_type_sizes() {
    let Some(browser) = Browser::start("resident_six_services", 360, 740).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // A configuration with a data key, so that the bureau's command line
    // reaches the demo's store while it serves.
    common::jiuzhu(dir.path(), &["init"]);
    let database = format!("sqlite://{}", dir.path().join("demo.db").display());
    let (server, printed) = common::serve_demo(dir.path(), &database);
    let (id, phone) = common::demo_resident(&printed);
    let base = server.base.clone();
    // The bureau publishes a new version of the letter: the resident signs
    // it again before their next application.
    let letter = dir.path().join("letter.txt");
    std::fs::write(
        &letter,
        "本人承诺：所提交的票据真实、完整，未在其他渠道重复报销。",
    )
    .unwrap();
    common::jiuzhu(
        dir.path(),
        &[
            "letter",
            "publish",
            letter.to_str().unwrap(),
            "--version",
            "2026-12",
            "--database",
            &database,
        ],
    );

    resident_logged_in(&base, &browser, &id, &phone).await;

    // (1) The commitment letter: the new version, read and signed.
    browser.click("nav.menu a[href='/me/letter']").await;
    browser.wait_for("/me/letter").await;
    assert!(browser.text("main").await.contains("2026-12"));
    assert!(browser
        .text("blockquote.letter")
        .await
        .contains("未在其他渠道重复报销"));
    accessible(&browser, "the letter to sign").await;
    browser.click("main form button[type=submit]").await;
    browser.wait_for_text("p.ok", "您已签署这一版承诺书").await;
    assert_eq!(browser.count("main form").await, 0);

    // (2) An application for two bills in one submission, each with its
    // scan, checked at once: the second bill added with the form's own
    // button (no script), what was typed kept.
    browser.click("nav.menu a[href='/me/applications']").await;
    browser.wait_for("/me/applications").await;
    let before = browser.count("ul.bills > li").await;
    let scan = dir.path().join("bill.png");
    std::fs::write(&scan, b"\x89PNG\r\n\x1a\na small scan of the bill").unwrap();
    let receipt = dir.path().join("receipt.pdf");
    std::fs::write(&receipt, b"%PDF-1.4 the second bill").unwrap();
    browser.click("nav.menu a[href='/me/apply']").await;
    browser.wait_for("/me/apply").await;
    assert!(browser.text("dl.known").await.contains("********"));
    accessible(&browser, "apply").await;
    let day = browser
        .script("new Date(Date.now() - 86400000 * 5).toISOString().slice(0, 10)")
        .await;
    let day = day.as_str().unwrap();
    let fill = |bill: usize, number: &'static str, amounts: [&'static str; 4]| {
        let browser = &browser;
        async move {
            for (field, value) in [
                ("invoice_no", number),
                ("hospital", "外市中心医院"),
                ("total", amounts[0]),
                ("fund_paid", amounts[1]),
                ("in_scope_self_pay", amounts[2]),
                ("out_of_scope_self_pay", amounts[3]),
            ] {
                browser.type_into(&format!("#{field}_{bill}"), value).await;
            }
            browser
                .script(&format!(
                    "document.querySelector('#service_date_{bill}').value = '{day}'"
                ))
                .await;
        }
    };
    fill(1, "WALK-0001", ["4000", "2400", "1300", "300"]).await;
    browser.click("main button[value=add]").await;
    browser.wait_for_text("#bill-2 legend", "第 2 张发票").await;
    assert_eq!(
        browser
            .script("document.querySelector('#invoice_no_1').value")
            .await,
        "WALK-0001"
    );
    assert!(browser.text("p.notice[role=status]").await.contains("重新选择"));
    let width = browser.script("document.documentElement.scrollWidth").await;
    assert!(
        width.as_u64().unwrap() <= 360,
        "two bills are {width} pixels wide"
    );
    accessible(&browser, "apply, two bills").await;
    fill(2, "WALK-0002", ["800", "500", "300", "0"]).await;
    browser.type_into("#scan_1", scan.to_str().unwrap()).await;
    browser.type_into("#scan_2", receipt.to_str().unwrap()).await;
    browser
        .click("main button[value=submit]:not(.default-action)")
        .await;
    browser.wait_for("/me/applications").await;

    // (4) The applications, step by step: the new one first, decided.
    assert_eq!(browser.count("ul.bills > li").await, before + 1);
    let newest = browser.text("ul.bills > li:first-child h2").await;
    assert!(newest.contains("已核定"), "{newest}");
    let bills = browser
        .text("ul.bills > li:first-child ul.application-bills")
        .await;
    assert!(
        bills.contains("WALK-0001") && bills.contains("WALK-0002"),
        "{bills}"
    );
    let steps = browser.text("ul.bills > li:first-child ol.history").await;
    assert!(steps.contains("已提交") && steps.contains("已核定"), "{steps}");
    let all = browser.text("ul.bills").await;
    assert!(all.contains("已拨付"), "{all}");
    accessible(&browser, "my applications").await;

    // (2, again) A bill filed long after its date goes to a reviewer, who
    // turns it down; the resident applies again by ticking it among the
    // bills the bureau holds, with a new scan, and types nothing.
    browser.click("nav.menu a[href='/me/apply']").await;
    browser.wait_for("/me/apply").await;
    let long_ago = browser
        .script("new Date(Date.now() - 86400000 * 400).toISOString().slice(0, 10)")
        .await;
    fill(1, "WALK-0003", ["2100", "1200", "700", "200"]).await;
    browser
        .script(&format!(
            "document.querySelector('#service_date_1').value = '{}'",
            long_ago.as_str().unwrap()
        ))
        .await;
    browser
        .click("main button[value=submit]:not(.default-action)")
        .await;
    browser.wait_for("/me/applications").await;
    let newest = browser.text("ul.bills > li:first-child h2").await;
    assert!(newest.contains("待审核"), "{newest}");
    let queue = common::jiuzhu(
        dir.path(),
        &["review", "list", "--as", "shenhe", "--database", &database],
    );
    let late = queue
        .lines()
        .filter_map(|line| line.split('\t').next()?.parse::<u64>().ok())
        .max()
        .unwrap_or_else(|| panic!("nothing to review: {queue}"))
        .to_string();
    common::jiuzhu(
        dir.path(),
        &[
            "review",
            "reject",
            &late,
            "--reason",
            "票据看不清，请重新上传",
            "--as",
            "shenhe",
            "--database",
            &database,
        ],
    );
    browser.click("nav.menu a[href='/me/apply']").await;
    browser.wait_for("/me/apply").await;
    let held = browser.text("fieldset.held").await;
    assert!(held.contains("WALK-0003") && held.contains("¥2100.00"), "{held}");
    accessible(&browser, "apply, a bill to apply for again").await;
    browser.click("#held-WALK-0003").await;
    browser
        .type_into("#held_scan_WALK-0003", scan.to_str().unwrap())
        .await;
    browser
        .click("main button[value=submit]:not(.default-action)")
        .await;
    browser.wait_for("/me/applications").await;
    assert_eq!(browser.count("ul.bills > li").await, before + 3);
    let again = browser.text("ul.bills > li:first-child").await;
    assert!(again.contains("WALK-0003"), "{again}");
    let turned_down = browser.text("ul.bills > li:nth-child(2)").await;
    assert!(
        turned_down.contains("未通过") && turned_down.contains("WALK-0003"),
        "{turned_down}"
    );

    // (3) The assisted bills, each in plain words, the new one among them.
    browser.click("nav.menu a[href='/me']").await;
    browser.wait_for("/me").await;
    assert!(browser.text("h1").await.contains("我的救助票据"));
    let bills = browser.text("ul.bills").await;
    assert!(bills.contains("WALK-0001"), "{bills}");
    let words = browser.text("ul.bills li:first-child p:last-child").await;
    assert!(words.starts_with("您这张票据总金额 ¥"), "{words}");
    let page = browser.script("document.body.innerText").await;
    assert!(
        !page.as_str().unwrap().contains(&id),
        "the full ID is on the page"
    );
    accessible(&browser, "my bills").await;

    // (5) The payments: one paid by the bank, one in a batch on its way.
    browser.click("nav.menu a[href='/me/payments']").await;
    browser.wait_for("/me/payments").await;
    let payments = browser.text("tbody").await;
    assert!(
        payments.contains("已到账") && payments.contains("银行处理中") && payments.contains('¥'),
        "{payments}"
    );
    accessible(&browser, "my payments").await;

    // (6) A new bank account and phone, confirmed by a one-time code.
    browser.click("nav.menu a[href='/me/details']").await;
    browser.wait_for("/me/details").await;
    accessible(&browser, "my details").await;
    browser.click("form[action='/me/details/code'] button").await;
    browser.wait_for_text("p.notice", "验证码").await;
    let code = shown_code(&browser, "p.notice strong").await;
    for (field, value) in [
        ("#holder", "王小明"),
        ("#bank", "工商银行"),
        ("#account", "6222 0202 0011 2233"),
        ("#new_phone", "13900139000"),
        ("#code", &code),
    ] {
        browser.type_into(field, value).await;
    }
    browser.click("form[action='/me/details'] button").await;
    browser.wait_for("/me/details?done=1").await;
    assert!(browser.text("p.ok").await.contains("已修改"));
    let details = browser.text("dl.counts").await;
    assert!(
        details.contains("工商银行") && details.contains("6222********2233") && details.contains("王小明"),
        "{details}"
    );
    assert!(!details.contains("6222020200112233"), "{details}");
    assert!(details.contains("9000"), "{details}");
    accessible(&browser, "my details, changed").await;

    // Each of the six pages in large type passes too.
    browser.click("nav.prefs a[href*='size=large']").await;
    browser.wait_for("/me/details").await;
    for page in [
        "/me",
        "/me/letter",
        "/me/apply",
        "/me/applications",
        "/me/payments",
        "/me/details",
    ] {
        browser.open(&format!("{base}{page}")).await;
        assert_eq!(
            browser.script("document.documentElement.className").await,
            "large",
            "{page}"
        );
        let width = browser.script("document.documentElement.scrollWidth").await;
        assert!(width.as_u64().unwrap() <= 360, "{page} is {width} pixels wide");
        accessible(&browser, &format!("{page}, large type")).await;
    }
    // The new phone logs in from now on.
    browser.open(&format!("{base}/me")).await;
    browser.click("form[action='/me/logout'] button").await;
    browser.wait_for("/login").await;
    resident_logged_in(&base, &browser, &id, "13900139000").await;
}

/// Sends the form `css` of the page as the browser would and returns the
/// answer's status and text (for a file the browser would download).
async fn submitted(browser: &Browser, css: &str) -> (u64, String) {
    let answer = browser
        .script(&format!(
            "(() => {{ const form = document.querySelector(\"{css}\"); const request = new XMLHttpRequest(); \
             request.open('POST', form.action, false); \
             request.setRequestHeader('Content-Type', 'application/x-www-form-urlencoded'); \
             request.send(new URLSearchParams(new FormData(form)).toString()); \
             return [request.status, request.responseText]; }})()"
        ))
        .await;
    (
        answer[0].as_u64().unwrap(),
        answer[1].as_str().unwrap().to_owned(),
    )
}

/// The line ids of a bank payment file.
fn line_ids(file: &str) -> Vec<String> {
    file.lines()
        .skip(1)
        .map(|line| line.split(',').nth(1).unwrap().to_owned())
        .collect()
}

async fn logged_out(browser: &Browser) {
    browser.click("nav.menu button").await;
    browser.wait_for("/staff/login").await;
}

#[tokio::test]
async fn on_a_phone_staff_take_an_application_from_review_through_clearing_batch_approval_and_the_banks_return(
) {
    let Some(browser) = Browser::start("staff_payment_path", 360, 740).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("demo.db").display());
    let (server, printed) = common::serve_demo(dir.path(), &database);
    let password = common::demo_password(&printed);
    let base = server.base.clone();

    // Review: the reviewer approves an application of the queue.
    logged_in(&base, &browser, "shenhe", &password).await;
    browser.click("nav.menu a[href='/staff/reviews']").await;
    browser.wait_for("/staff/reviews").await;
    let queue = browser.count("tbody tr").await;
    browser.click("tbody tr:first-child a").await;
    browser.wait_for_path_containing("/staff/reviews/").await;
    browser
        .type_into("#reason", "异地就医票据已核验，逾期有正当理由")
        .await;
    browser.click("button[value=approve]").await;
    browser.wait_for_text("h1", "已核定").await;
    browser.open(&format!("{base}/staff/reviews")).await;
    assert_eq!(browser.count("tbody tr").await, queue - 1);
    logged_out(&browser).await;

    // Clearing: the admin runs one for the year.
    logged_in(&base, &browser, "admin", &password).await;
    browser.click("nav.menu a[href='/staff/clearings']").await;
    browser.wait_for("/staff/clearings").await;
    let year = browser.script("String(new Date().getFullYear())").await;
    browser.type_into("#period", year.as_str().unwrap()).await;
    browser.click("main form button[type=submit]").await;
    browser.wait_for_path_containing("/staff/clearings/").await;
    assert!(browser.text("h1").await.contains(year.as_str().unwrap()));

    // Batch: the admin makes one of everything owed.
    browser.click("nav.menu a[href='/staff/batches']").await;
    browser.wait_for("/staff/batches").await;
    accessible(&browser, "batches, as the admin").await;
    browser.click("#make-batch").await;
    browser.wait_for_path_containing("/staff/batches/").await;
    let batch_url = browser.url().await;
    assert!(browser.text("h1").await.contains("待审批"));
    assert!(browser.count("table.lines tbody tr").await >= 1);
    assert_eq!(browser.count("#approve").await, 0, "an admin approves nothing");
    let lines = browser.text("table.lines tbody").await;
    assert!(lines.contains("********"), "{lines}");
    accessible(&browser, "a batch awaiting approval").await;
    logged_out(&browser).await;

    // Approval by the approver, another person than the maker; the bank
    // payment file downloaded.
    logged_in(&base, &browser, "shenpi", &password).await;
    browser.click("nav.menu a[href='/staff/batches']").await;
    browser.wait_for("/staff/batches").await;
    // The demo's other batch awaits approval too: both are approved.
    let awaiting = browser.count("tbody form[action$='/approve']").await;
    assert!(awaiting >= 2, "{awaiting} batches to approve");
    browser.open(&batch_url).await;
    browser.click("#approve").await;
    browser.wait_for("/staff/batches").await;
    browser.click("tbody form[action$='/approve'] button").await;
    // The same page comes back, without the approved batch's form.
    let started = std::time::Instant::now();
    while browser.count("tbody form[action$='/approve']").await > 0 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "a batch still awaits approval"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    accessible(&browser, "batches, approved").await;
    browser.open(&batch_url).await;
    assert!(browser.text("h1").await.contains("已审批"));
    accessible(&browser, "an approved batch").await;
    let (status, file) = submitted(&browser, "#export").await;
    assert_eq!(status, 200, "{file}");
    assert!(
        file.starts_with("batch_id,line_id,person_id,name,account,amount,reference"),
        "{file}"
    );
    let paid = line_ids(&file);
    assert!(!paid.is_empty(), "{file}");

    // A bad return file is refused with its line named, nothing applied.
    browser.open(&batch_url).await;
    let bad = dir.path().join("bad-return.csv");
    std::fs::write(
        &bad,
        format!("line_id,status,reason\n{},paid,\n999999,paid,\n", paid[0]),
    )
    .unwrap();
    browser.type_into("#file", bad.to_str().unwrap()).await;
    browser.click("#return button").await;
    browser.wait_for_text("p.error", "回盘文件未被接受").await;
    let problems = browser.text("table.problems tbody").await;
    assert!(problems.starts_with("3 line_id"), "{problems}");
    accessible(&browser, "a refused return file").await;
    browser.open(&batch_url).await;
    assert!(browser.text("#paid").await.starts_with("0 "));

    // The bank's return: every line paid.
    let good = dir.path().join("return.csv");
    let text: String = paid.iter().map(|line| format!("{line},paid,\n")).collect();
    std::fs::write(&good, format!("line_id,status,reason\n{text}")).unwrap();
    browser.type_into("#file", good.to_str().unwrap()).await;
    browser.click("#return button").await;
    browser.wait_for_text("h1", "银行已回盘").await;
    assert_eq!(browser.count("table.lines tbody tr.paid").await, paid.len());
    assert!(browser.text("#pending").await.starts_with("0 "));
    accessible(&browser, "a batch the bank answered").await;

    // The demo's other batch: its file downloaded, its line failed.
    browser.click("nav.menu a[href='/staff/batches']").await;
    browser.wait_for("/staff/batches").await;
    let other = browser
        .script(&format!(
            "[...document.querySelectorAll('tbody tr')].filter(row => row.innerText.includes('已审批')).map(row => row.querySelector('a').href).find(href => href !== '{batch_url}')"
        ))
        .await;
    let other = other.as_str().expect("another approved batch").to_owned();
    browser.open(&other).await;
    let (status, file) = submitted(&browser, "#export").await;
    assert_eq!(status, 200, "{file}");
    let failed = line_ids(&file);
    browser.open(&other).await;
    let answer = dir.path().join("return-failed.csv");
    let text: String = failed
        .iter()
        .map(|line| format!("{line},failed,账户已冻结\n"))
        .collect();
    std::fs::write(&answer, format!("line_id,status,reason\n{text}")).unwrap();
    browser.type_into("#file", answer.to_str().unwrap()).await;
    browser.click("#return button").await;
    browser.wait_for_text("h1", "银行已回盘").await;
    assert_eq!(browser.count("table.lines tbody tr.failed").await, failed.len());
    assert!(browser.text("table.lines tbody").await.contains("账户已冻结"));

    // The same page in English and large type.
    browser.click("nav.prefs a[lang=en]").await;
    browser.wait_for(other.trim_start_matches(&base)).await;
    assert!(browser.text("table.lines tbody").await.contains("Failed"));
    browser.click("nav.prefs a[href*='size=large']").await;
    browser.wait_for(other.trim_start_matches(&base)).await;
    accessible(&browser, "a failed batch, English, large type").await;
    logged_out(&browser).await;
}
