//! `jiuzhu apikey create --department` and `jiuzhu apikey revoke
//! --department`, the real binary on a real SQLite
//! file: the key it prints opens the feeds API of `jiuzhu serve` for that
//! department, and no hospital route.

use std::process::Command;

mod common;

use common::{jiuzhu, load_policy_and_spells, repository, serve, BINARY};

#[tokio::test]
async fn a_department_key_printed_once_opens_the_feeds_api_for_that_department() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    jiuzhu(path, &["init"]);
    let database = format!("sqlite://{}", path.join("jiuzhu.db").display());
    let policy = repository().join("fixtures/example-policy.toml");
    let spells = repository().join("crates/cli/tests/data/small/spells.csv");
    load_policy_and_spells(
        path,
        &database,
        policy.to_str().unwrap(),
        spells.to_str().unwrap(),
    );
    let created = jiuzhu(
        path,
        &[
            "apikey",
            "create",
            "--department",
            "民政",
            "--database",
            &database,
        ],
    );
    assert!(created.starts_with("API key for department 民政;"), "{created}");
    let key = created.lines().last().unwrap().to_owned();
    assert!(key.starts_with("jz_") && key.len() > 40, "{created}");
    assert_eq!(created.matches(&key).count(), 1, "{created}");

    // --hospital and --department together, or neither, are refused.
    for args in [
        &["apikey", "create", "--hospital", "H001", "--department", "民政"][..],
        &["apikey", "create"][..],
        &["apikey", "create", "--department", " 民政"][..],
    ] {
        let mut all = args.to_vec();
        all.extend(["--database", &database]);
        let output = Command::new(BINARY)
            .current_dir(path)
            .env_remove("JIUZHU_DATA_KEY")
            .args(&all)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{args:?}");
    }

    let server = serve(path, &database, None);
    let client = reqwest::Client::new();
    let answer = client
        .get(format!("{}/api/v1/feeds/decisions", server.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), reqwest::StatusCode::OK);
    let page: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(page["decisions"], serde_json::json!([]));
    assert_eq!(page["has_more"], false);
    let spells = "person_id,category,valid_from\n110105196001010033,DB,2024-01-01\n";
    let pushed = client
        .post(format!("{}/api/v1/feeds/spells?file_name=new.csv", server.base))
        .bearer_auth(&key)
        .header("content-type", "text/csv")
        .body(spells)
        .send()
        .await
        .unwrap();
    assert_eq!(pushed.status(), reqwest::StatusCode::OK);
    let report: serde_json::Value = pushed.json().await.unwrap();
    assert_eq!(
        (report["source"].as_str(), report["added"].as_u64()),
        (Some("民政"), Some(1))
    );
    // Not a hospital's key.
    let settlement = client
        .get(format!("{}/api/v1/settlements/INV001", server.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(settlement.status(), reqwest::StatusCode::UNAUTHORIZED);
    // The feed routes are counted, by route and status, with their rows.
    let metrics = client
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for expected in [
        "jiuzhu_feed_requests_total{route=\"decisions\",status=\"200\"} 1\n",
        "jiuzhu_feed_requests_total{route=\"spells\",status=\"200\"} 1\n",
        "jiuzhu_feed_rows_total{route=\"spells\",rows=\"received\"} 1\n",
        "jiuzhu_feed_rows_total{route=\"spells\",rows=\"stored\"} 1\n",
        "jiuzhu_feed_seconds_count{route=\"spells\"} 1\n",
    ] {
        assert!(metrics.contains(expected), "{expected}: {metrics}");
    }
    drop(server);

    // Revoked, the key opens nothing; a department without keys in use
    // is told so.
    let revoked = jiuzhu(
        path,
        &[
            "apikey",
            "revoke",
            "--department",
            "民政",
            "--database",
            &database,
        ],
    );
    assert!(
        revoked.starts_with("1 key of department 民政 revoked"),
        "{revoked}"
    );
    let again = jiuzhu(
        path,
        &[
            "apikey",
            "revoke",
            "--department",
            "民政",
            "--database",
            &database,
        ],
    );
    assert!(again.contains("had no key in use: nothing changed"), "{again}");
    let server = serve(path, &database, None);
    let answer = client
        .get(format!("{}/api/v1/feeds/decisions", server.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), reqwest::StatusCode::UNAUTHORIZED);
    let verified = jiuzhu(path, &["audit", "verify", "--database", &database]);
    assert!(verified.contains("The audit chain is whole"), "{verified}");
}
