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

    let log_in = |name: &'static str| {
        let base = base.clone();
        let password = password.clone();
        async move {
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
                .form(&[
                    ("name", name),
                    ("password", password.as_str()),
                    ("csrf", csrf.as_str()),
                ])
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 303, "{name}");
            client
        }
    };
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
