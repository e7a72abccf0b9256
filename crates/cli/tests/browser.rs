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
    let (server, printed) = common::serve_demo(dir.path(), &database);
    let (id, phone) = common::demo_resident(&printed);
    let base = server.base.clone();

    browser.open(&format!("{base}/")).await;
    browser.click("a[href='/login']").await;
    browser.wait_for("/login").await;
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
        ("#invoice_no", "WEB-0001"),
        ("#hospital", "外市中心医院"),
        ("#total", "3000"),
        ("#fund_paid", "1800"),
        ("#in_scope_self_pay", "1000"),
        ("#out_of_scope_self_pay", "200"),
    ] {
        browser.type_into(field, value).await;
    }
    browser
        .script(&format!(
            "document.querySelector('#service_date').value = '{}'",
            yesterday.as_str().unwrap()
        ))
        .await;
    browser.type_into("#scan", scan.to_str().unwrap()).await;
    browser.click("main button[type=submit]").await;
    browser.wait_for("/me/applications").await;
    let newest = browser.text("ul.bills > li:first-child h2").await;
    assert!(
        newest.contains("已核定") || newest.contains("Decided"),
        "{newest}"
    );
}
