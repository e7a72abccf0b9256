//! The application path end to end with the real binary: staff and a
//! commitment letter from the command line, a signature and an application
//! through `jiuzhu serve`'s API, the review from the command line.

use serde_json::{json, Value};

mod common;

use common::{jiuzhu, jiuzhu_status as run};

fn token(output: &str) -> String {
    output
        .lines()
        .find_map(|line| line.strip_prefix("API token (shown once; keep it secret): "))
        .unwrap()
        .trim()
        .to_owned()
}

#[tokio::test]
async fn a_clerk_enters_an_application_through_the_api_and_another_reviewer_approves_it_from_the_command_line(
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    jiuzhu(path, &["init"]);
    let database = format!("sqlite://{}", path.join("jiuzhu.db").display());
    let data = common::repository().join("crates/cli/tests/data/small");
    let policy = common::repository().join("fixtures/example-policy.toml");
    common::load_policy_and_spells(
        path,
        &database,
        policy.to_str().unwrap(),
        data.join("spells.csv").to_str().unwrap(),
    );

    let clerk = token(&jiuzhu(
        path,
        &[
            "staff",
            "add",
            "clerk",
            "--roles",
            "reviewer",
            "--database",
            &database,
        ],
    ));
    jiuzhu(
        path,
        &[
            "staff",
            "add",
            "rev",
            "--roles",
            "reviewer,approver",
            "--database",
            &database,
        ],
    );
    jiuzhu(
        path,
        &[
            "staff",
            "add",
            "aud",
            "--roles",
            "auditor",
            "--database",
            &database,
        ],
    );
    let (code, _, error) = run(
        path,
        &["staff", "add", "x", "--roles", "boss", "--database", &database],
    );
    assert_eq!(code, 2, "{error}");
    assert!(error.contains("\"boss\" is not a role"), "{error}");

    std::fs::write(
        path.join("letter.txt"),
        "本人承诺所提交的票据真实有效，未重复报销。",
    )
    .unwrap();
    let published = jiuzhu(
        path,
        &[
            "letter",
            "publish",
            "letter.txt",
            "--version",
            "2026-01",
            "--database",
            &database,
        ],
    );
    assert!(
        published.contains("commitment letter 2026-01 published"),
        "{published}"
    );
    let shown = jiuzhu(path, &["letter", "show", "--database", &database]);
    assert!(shown.contains("未重复报销"), "{shown}");

    let server = common::serve(path, &database, None);
    let client = reqwest::Client::new();
    let letter: Value = client
        .get(format!("{}/api/v1/commitment-letter", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let signed = client
        .post(format!("{}/api/v1/commitment-signatures", server.base))
        .bearer_auth(&clerk)
        .json(&json!({"person_id": "110105196001010017", "sha256": letter["sha256"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status().as_u16(), 200);
    let bill = |number: &str, total: &str| {
        json!({"invoice_no": number, "hospital": "外市医院", "visit_type": "inpatient", "service_date": "2026-05-01",
               "settled_at": "2026-05-02T09:00:00+08:00", "total": total, "fund_paid": "600",
               "in_scope_self_pay": "300", "out_of_scope_self_pay": "100"})
    };
    let submitted: Value = client
        .post(format!("{}/api/v1/applications", server.base))
        .bearer_auth(&clerk)
        .json(&json!({"person_id": "110105196001010017", "bills": [bill("OUT1", "1000"), bill("OUT2", "1001")]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(submitted["state"], "needs_review", "{submitted}");
    let id = submitted["id"].as_i64().unwrap().to_string();
    drop(server);

    let queue = jiuzhu(path, &["review", "list", "--as", "rev", "--database", &database]);
    assert!(
        queue.starts_with(&format!("{id}\t110105********0017\t2 bills\t1 findings")),
        "{queue}"
    );
    let (code, _, error) = run(path, &["review", "list", "--as", "aud", "--database", &database]);
    assert_eq!(code, 3, "{error}");
    assert!(error.contains("aud does not have the role reviewer"), "{error}");

    let shown = jiuzhu(
        path,
        &[
            "review",
            "show",
            &id,
            "--as",
            "aud",
            "--purpose",
            "audit",
            "--database",
            &database,
        ],
    );
    assert!(
        shown.contains("the person's story:") && shown.contains("[signature] commitment letter 2026-01"),
        "{shown}"
    );
    assert!(shown.contains("bill 2: amounts_add_up — fund_paid + in_scope_self_pay + out_of_scope_self_pay = 1000.00, but total is 1001.00"), "{shown}");

    let (code, _, error) = run(
        path,
        &[
            "review",
            "approve",
            &id,
            "--as",
            "clerk",
            "--reason",
            "ok",
            "--database",
            &database,
        ],
    );
    assert_eq!(code, 3, "{error}");
    assert!(error.contains("another reviewer must decide it"), "{error}");
    let approved = jiuzhu(
        path,
        &[
            "review",
            "approve",
            &id,
            "--as",
            "rev",
            "--reason",
            "第2张票据金额有误，其余核准",
            "--database",
            &database,
        ],
    );
    assert!(approved.contains(": decided — entered by clerk"), "{approved}");
    assert!(
        approved.contains("OUT1 外市医院 inpatient 2026-05-01") && approved.contains("[decided] → assisted"),
        "{approved}"
    );
    assert!(
        approved.contains("approved by rev: 第2张票据金额有误，其余核准"),
        "{approved}"
    );
    let (code, _, _) = run(
        path,
        &["review", "show", "999", "--as", "rev", "--database", &database],
    );
    assert_eq!(code, 5);

    // The story and the audit chain.
    let verified = jiuzhu(path, &["audit", "verify", "--database", &database]);
    assert!(verified.contains("The audit chain is whole"), "{verified}");
}

#[test]
fn a_recovery_found_by_a_clearing_is_reviewed_then_repaid_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let database = common::small_store_with_feed(path);
    // 017's spell now ends before INV002 (served 2024-04-01, granted 3,000.00).
    std::fs::write(
        path.join("ended.csv"),
        "person_id,category,valid_from,valid_to\n110105196001010017,DB,2023-01-01,2024-03-31\n",
    )
    .unwrap();
    jiuzhu(
        path,
        &[
            "import",
            "spells",
            "ended.csv",
            "--source",
            "民政",
            "--database",
            &database,
        ],
    );
    jiuzhu(
        path,
        &[
            "clear",
            "--period",
            "2024",
            "--out",
            "report",
            "--database",
            &database,
        ],
    );
    jiuzhu(
        path,
        &[
            "staff",
            "add",
            "rev",
            "--roles",
            "reviewer",
            "--database",
            &database,
        ],
    );
    jiuzhu(
        path,
        &[
            "staff",
            "add",
            "cashier",
            "--roles",
            "approver",
            "--database",
            &database,
        ],
    );

    let listed = jiuzhu(
        path,
        &["review", "recoveries", "--as", "rev", "--database", &database],
    );
    assert!(
        listed.starts_with("1\t110105********0017\t2024\t3,000.00\tto_review\t"),
        "{listed}"
    );
    let (code, _, error) = run(
        path,
        &[
            "review",
            "recovery",
            "1",
            "--recover",
            "--reason",
            "x",
            "--as",
            "cashier",
            "--database",
            &database,
        ],
    );
    assert_eq!(code, 3, "{error}");
    let (code, _, error) = run(
        path,
        &[
            "review",
            "recovery",
            "1",
            "--reason",
            "x",
            "--as",
            "rev",
            "--database",
            &database,
        ],
    );
    assert_eq!(code, 2, "neither --recover nor --waive: {error}");
    let reviewed = jiuzhu(
        path,
        &[
            "review",
            "recovery",
            "1",
            "--recover",
            "--reason",
            "身份已终止",
            "--as",
            "rev",
            "--database",
            &database,
        ],
    );
    assert!(
        reviewed.contains("\tto_recover\t") && reviewed.contains("recover by rev: 身份已终止"),
        "{reviewed}"
    );
    let (code, _, error) = run(
        path,
        &[
            "review",
            "recovery",
            "1",
            "--waive",
            "--reason",
            "again",
            "--as",
            "rev",
            "--database",
            &database,
        ],
    );
    assert_eq!(code, 3, "{error}");
    assert!(error.contains("is to_recover"), "{error}");
    let repaid = jiuzhu(
        path,
        &[
            "review",
            "repaid",
            "1",
            "--reference",
            "流水 2024-0001",
            "--as",
            "cashier",
            "--database",
            &database,
        ],
    );
    assert!(
        repaid.contains("\trepaid\t") && repaid.contains("repaid by cashier: 流水 2024-0001"),
        "{repaid}"
    );
}

#[test]
fn staff_are_disabled_enabled_and_given_roles_from_the_command_line_never_the_last_admin() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    jiuzhu(path, &["init"]);
    let database = format!("sqlite://{}", path.join("jiuzhu.db").display());
    let db = ["--database", database.as_str()];
    for (name, roles) in [("boss", "admin"), ("clerk", "reviewer")] {
        jiuzhu(
            path,
            &[&["staff", "add", name, "--roles", roles][..], &db].concat(),
        );
    }
    let refused = [
        (
            &["staff", "disable", "boss", "--reason", "leaving"][..],
            3,
            "last enabled admin",
        ),
        (
            &["staff", "roles", "boss", "--roles", "reviewer"][..],
            3,
            "last enabled admin",
        ),
        (
            &["staff", "add", "boss", "--roles", "auditor"][..],
            3,
            "last enabled admin",
        ),
        (
            &["staff", "disable", "clerk", "--reason", " "][..],
            2,
            "a reason is required",
        ),
        (&["staff", "disable", "clerk"][..], 2, "--reason"),
        (
            &["staff", "roles", "clerk", "--roles", "king"][..],
            2,
            "\"king\" is not a role",
        ),
        (
            &["staff", "disable", "nobody", "--reason", "x"][..],
            5,
            "nobody is not a member of staff",
        ),
        (&["staff", "enable", "clerk"][..], 3, "clerk is not disabled"),
    ];
    for (args, expected, message) in refused {
        let (code, _, error) = run(path, &[args, &db].concat());
        assert_eq!(code, expected, "{args:?}: {error}");
        assert!(error.contains(message), "{args:?}: {error}");
    }
    let disabled = jiuzhu(
        path,
        &[&["staff", "disable", "clerk", "--reason", "调离本岗位"][..], &db].concat(),
    );
    assert!(disabled.contains("clerk is disabled"), "{disabled}");
    let (code, _, error) = run(
        path,
        &[&["staff", "disable", "clerk", "--reason", "again"][..], &db].concat(),
    );
    assert_eq!(code, 3, "{error}");
    jiuzhu(path, &[&["staff", "enable", "clerk"][..], &db].concat());
    let roles = jiuzhu(
        path,
        &[
            &["staff", "roles", "clerk", "--roles", "reviewer,approver"][..],
            &db,
        ]
        .concat(),
    );
    assert!(
        roles.contains("clerk: roles set to reviewer, approver"),
        "{roles}"
    );
    let verified = jiuzhu(path, &[&["audit", "verify"][..], &db].concat());
    assert!(!verified.is_empty());
}
