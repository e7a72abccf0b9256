//! Notifications through the real binary on a real SQLite file: `jiuzhu
//! notify send` writes one line per notification the imports enqueued to
//! the notification log, and nothing twice; `jiuzhu serve` sends what real
//! time granted in the background.

use std::path::Path;
use std::time::{Duration, Instant};

use jiuzhu_store::Notification;

mod common;

use common::{jiuzhu, load_policy_and_spells, repository, serve};

/// The notifications in a log, in order.
fn logged(path: &Path) -> Vec<Notification> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// A folder with a configuration, the example policy, the small spells
/// (4 new recipients) and the small invoices as the insurance feed.
fn bureau(dir: &Path, database: &str) {
    let data = repository().join("crates/cli/tests/data/small");
    let policy = repository().join("fixtures/example-policy.toml");
    jiuzhu(dir, &["init"]);
    load_policy_and_spells(
        dir,
        database,
        policy.to_str().unwrap(),
        data.join("spells.csv").to_str().unwrap(),
    );
}

#[test]
fn notify_send_writes_each_notice_of_the_imports_once_to_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let database = format!("sqlite://{}", path.join("jiuzhu.db").display());
    bureau(path, &database);
    let invoices = repository().join("crates/cli/tests/data/small/invoices.csv");
    jiuzhu(
        path,
        &[
            "import",
            "invoices",
            invoices.to_str().unwrap(),
            "--database",
            &database,
        ],
    );

    let out = jiuzhu(
        path,
        &["notify", "send", "--database", &database, "--log", "sent.log"],
    );
    assert_eq!(
        out,
        "Notifications: 9 sent, 0 failed, 0 pending (log sent.log).\n"
    );
    let sent = logged(&path.join("sent.log"));
    let kinds: Vec<&str> = sent.iter().map(|notice| notice.kind.as_str()).collect();
    assert_eq!(kinds[..4], ["new_recipient"; 4]);
    assert_eq!(kinds[4..], ["assisted"; 5]);
    let inv003 = sent.iter().find(|notice| notice.text.contains("INV003")).unwrap();
    assert_eq!(inv003.person, "110105********0025");
    for part in ["市第一人民医院", "350.00 元", "2024-05-01", "已救助发票查询"] {
        assert!(inv003.text.contains(part), "{part} is not in {}", inv003.text);
    }
    let text = std::fs::read_to_string(path.join("sent.log")).unwrap();
    assert!(!text.contains("110105196001010025"), "{text}");

    // Nothing is due any more; the log is not written again.
    let out = jiuzhu(
        path,
        &["notify", "send", "--database", &database, "--log", "sent.log"],
    );
    assert_eq!(
        out,
        "Notifications: 0 sent, 0 failed, 0 pending (log sent.log).\n"
    );
    assert_eq!(logged(&path.join("sent.log")), sent);
}

#[tokio::test]
async fn serve_sends_what_real_time_granted_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let database = format!("sqlite://{}", path.join("jiuzhu.db").display());
    bureau(path, &database);
    let mut config = std::fs::read_to_string(path.join("jiuzhu.toml")).unwrap();
    config.push_str("notify_interval_ms = 200\n");
    std::fs::write(path.join("jiuzhu.toml"), config).unwrap();
    let created = jiuzhu(
        path,
        &["apikey", "create", "--hospital", "H001", "--database", &database],
    );
    let key = created.lines().last().unwrap().to_owned();

    let server = serve(path, &database, None);
    let log = path.join("notifications.log");
    let answer = reqwest::Client::new()
        .post(format!("{}/api/v1/settlements", server.base))
        .bearer_auth(&key)
        .json(&serde_json::json!({
            "invoice_no": "RT001", "person_id": "110105196001010017", "hospital": "H001",
            "visit_type": "inpatient", "service_date": "2024-03-01",
            "settled_at": "2024-03-05T10:00:00+08:00", "total": "10000", "fund_paid": "7000",
            "in_scope_self_pay": "2500", "out_of_scope_self_pay": "500"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    let started = Instant::now();
    while logged(&log).len() < 5 && started.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sent = logged(&log);
    assert_eq!(sent.len(), 5, "{sent:?}");
    assert!(sent[4].text.contains("RT001"), "{}", sent[4].text);
    assert!(sent[4].text.contains("2250.00 元"), "{}", sent[4].text);
    // Counted once the notices are marked sent, just after they are written.
    let mut metrics = String::new();
    while started.elapsed() < Duration::from_secs(20) {
        metrics = reqwest::get(format!("{}/metrics", server.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metrics.contains("jiuzhu_notifications_sent_total 5\n") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        metrics.contains("jiuzhu_notifications_sent_total 5\n"),
        "{metrics}"
    );
    drop(server);
    let out = jiuzhu(path, &["notify", "send", "--database", &database]);
    assert!(out.starts_with("Notifications: 0 sent"), "{out}");
    assert_eq!(logged(&log), sent);
}
