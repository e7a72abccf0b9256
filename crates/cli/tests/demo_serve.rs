//! `jiuzhu serve --demo`: a fresh store with a district, staff, applications
//! in each state and a batch awaiting approval, served at once.

use std::process::Command;

mod common;

/// The value of `<input ... name="NAME" value="...">` in a page.
fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {page}"))
        + marker.len();
    page[start..start + page[start..].find('"').unwrap()].to_owned()
}

/// A member of the demo's staff logged in: a client that keeps the
/// session's cookie and follows no redirect.
async fn staff_login(base: &str, name: &str, password: &str) -> reqwest::Client {
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = client
        .get(format!("{base}/staff/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = hidden(&form, "csrf");
    let response = client
        .post(format!("{base}/staff/login"))
        .form(&[("name", name), ("password", password), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 303, "{name}");
    client
}

#[tokio::test]
async fn the_demo_serves_a_district_whose_staff_log_in_and_find_work_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("demo.db").display());
    let (server, printed) = common::serve_demo(dir.path(), &database);
    let base = server.base.clone();
    let password = common::demo_password(&printed);
    assert!(
        printed[2].trim_start().starts_with("shenhe") && printed[2].contains("reviewer"),
        "{printed:?}"
    );
    assert!(
        printed[3].trim_start().starts_with("shenpi") && printed[3].contains("approver"),
        "{printed:?}"
    );

    let log_in = |name: &'static str| staff_login(&base, name, &password);
    // The reviewer finds the two applications with findings.
    let reviewer = log_in("shenhe").await;
    let queue = reviewer
        .get(format!("{base}/staff/reviews"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(queue.matches("<tr><td>").count(), 2, "{queue}");
    // The approver finds the batch awaiting approval.
    let approver = log_in("shenpi").await;
    let dashboard = approver
        .get(format!("{base}/staff"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(dashboard.contains("待审批拨付批次</dt><dd>1</dd>"), "{dashboard}");
    drop(server);

    // A demo never overwrites a store.
    let again = Command::new(common::BINARY)
        .current_dir(dir.path())
        .args([
            "serve",
            "--demo",
            "--listen",
            "127.0.0.1:0",
            "--database",
            &database,
        ])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"));
}

#[tokio::test]
async fn the_demo_is_added_to_a_store_filled_from_its_district_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    common::jiuzhu(path, &["init"]);
    common::jiuzhu(
        path,
        &[
            "gen",
            "--people",
            "300",
            "--invoices",
            "1500",
            "--seed",
            "4",
            "--dir",
            "district",
        ],
    );
    let database = format!("sqlite://{}", path.join("feed.db").display());
    common::jiuzhu(
        path,
        &["policy", "load", "district/policy.toml", "--database", &database],
    );
    common::jiuzhu(
        path,
        &[
            "import",
            "spells",
            "district/spells.csv",
            "--source",
            "民政",
            "--database",
            &database,
        ],
    );
    common::jiuzhu(
        path,
        &[
            "import",
            "invoices",
            "district/invoices.csv",
            "--database",
            &database,
        ],
    );

    // A store that does not exist is not made.
    let missing = format!("sqlite://{}", path.join("none.db").display());
    let (status, _, error) = common::jiuzhu_status(
        path,
        &[
            "serve",
            "--demo",
            "--demo-district",
            "district",
            "--listen",
            "127.0.0.1:0",
            "--database",
            &missing,
        ],
    );
    assert_ne!(status, 0);
    assert!(error.contains("does not exist"), "{error}");
    assert!(!path.join("none.db").exists());

    let (server, printed) = common::serve_demo_over(path, &database, "district");
    let password = common::demo_password(&printed);
    let (resident, _) = common::demo_resident(&printed);
    assert_eq!(resident.len(), 18, "{printed:?}");
    let client = staff_login(&server.base, "shenpi", &password).await;
    let dashboard = client
        .get(format!("{}/staff", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // The demo's batch awaits approval, beside the district's own bills.
    assert!(dashboard.contains("待审批拨付批次</dt><dd>1</dd>"), "{dashboard}");
    drop(server);
    // What the demo added is audited on the same chain as the district.
    let verified = common::jiuzhu(path, &["audit", "verify", "--database", &database]);
    assert!(verified.starts_with("The audit chain is whole"), "{verified}");

    // Served again, as it is: the demo is not added twice.
    let (server, again) = common::serve_demo_over(path, &database, "district");
    assert_eq!(common::demo_resident(&again).0, resident);
    drop(server);
    let verified_again = common::jiuzhu(path, &["audit", "verify", "--database", &database]);
    assert_eq!(
        verified_again.split(" entries").next(),
        verified.split(" entries").next(),
        "{verified_again}"
    );
}
