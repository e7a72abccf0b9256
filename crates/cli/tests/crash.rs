//! Crashes lose no acknowledged settlement: under continuous load the
//! server is killed (SIGKILL) several times; after each restart every
//! settlement that got a 2xx answer is there with the same answer, no
//! half-written one exists, the counters equal the sum of the decisions,
//! and the audit chain is whole.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiuzhu_core::Invoice;
use sqlx::{Connection as _, Row as _};

mod common;

use common::{generated_invoices, jiuzhu, kill, load_policy_and_spells, serve};

/// The request body of an invoice.
fn body(invoice: &Invoice) -> serde_json::Value {
    serde_json::from_str(&jiuzhu_formats::json::canonical_request(invoice)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_server_under_load_loses_no_acknowledged_settlement() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    jiuzhu(path, &["init"]);
    jiuzhu(
        path,
        &[
            "gen",
            "--people",
            "300",
            "--invoices",
            "6000",
            "--seed",
            "5",
            "--dir",
            "data",
        ],
    );
    let database = format!("sqlite://{}", path.join("jiuzhu.db").display());
    load_policy_and_spells(path, &database, "data/policy.toml", "data/spells.csv");
    let (_, mut invoices) = generated_invoices(path);
    // One bill per number: the second report of a bill would only be refused.
    let mut seen = std::collections::BTreeSet::new();
    invoices.retain(|invoice| seen.insert(invoice.invoice_no.to_string()));
    let hospitals: std::collections::BTreeSet<String> = invoices
        .iter()
        .map(|invoice| invoice.hospital.to_string())
        .collect();
    let mut keys = BTreeMap::new();
    for hospital in hospitals {
        let created = jiuzhu(
            path,
            &[
                "apikey",
                "create",
                "--hospital",
                &hospital,
                "--database",
                &database,
            ],
        );
        keys.insert(hospital, created.lines().last().unwrap().to_owned());
    }
    let keys = Arc::new(keys);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    // Every acknowledged answer, by invoice number.
    let acknowledged: Arc<Mutex<BTreeMap<String, serde_json::Value>>> = Arc::default();
    let queue: Arc<Mutex<Vec<Invoice>>> = Arc::new(Mutex::new(invoices.clone()));

    for (round, run_for_ms) in [350u64, 500, 800, 0].into_iter().enumerate() {
        let mut server = serve(path, &database, None);
        let base = server.base.clone();
        let mut workers = Vec::new();
        for _ in 0..8 {
            let (client, base, keys) = (client.clone(), base.clone(), keys.clone());
            let (queue, acknowledged) = (queue.clone(), acknowledged.clone());
            workers.push(tokio::spawn(async move {
                loop {
                    let Some(invoice) = queue.lock().unwrap().pop() else {
                        return;
                    };
                    let sent = client
                        .post(format!("{base}/api/v1/settlements"))
                        .bearer_auth(&keys[invoice.hospital.as_str()])
                        .json(&body(&invoice))
                        .send()
                        .await;
                    let answer = match sent {
                        Ok(answer) if answer.status().is_success() => {
                            answer.json::<serde_json::Value>().await.ok()
                        }
                        Ok(answer) => panic!("refused: {} {:?}", answer.status(), answer.text().await),
                        Err(_) => None,
                    };
                    match answer {
                        Some(json) => {
                            acknowledged
                                .lock()
                                .unwrap()
                                .insert(invoice.invoice_no.to_string(), json);
                        }
                        // No answer (the server died): send it again later.
                        None => {
                            queue.lock().unwrap().insert(0, invoice);
                            return;
                        }
                    }
                }
            }));
        }
        if run_for_ms > 0 {
            tokio::time::sleep(Duration::from_millis(run_for_ms)).await;
            kill(&mut server);
        }
        for worker in workers {
            worker.await.unwrap();
        }
        if run_for_ms > 0 {
            // The kill came under load: bills were left to send.
            assert!(
                !queue.lock().unwrap().is_empty(),
                "round {round} finished before the kill"
            );
            assert!(!acknowledged.lock().unwrap().is_empty());
        }
        if run_for_ms == 0 {
            assert!(queue.lock().unwrap().is_empty());
            // Every acknowledged settlement reads back with the same answer.
            let acknowledged = acknowledged.lock().unwrap().clone();
            assert_eq!(acknowledged.len(), invoices.len(), "round {round}");
            for invoice in invoices.iter().step_by(7) {
                let number = invoice.invoice_no.as_str();
                let read: serde_json::Value = client
                    .get(format!("{base}/api/v1/settlements/{number}"))
                    .bearer_auth(&keys[invoice.hospital.as_str()])
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                for field in [
                    "amount",
                    "outcome",
                    "deductible_applied",
                    "category",
                    "policy_version",
                ] {
                    assert_eq!(read[field], acknowledged[number][field], "{field} of {number}");
                }
            }
            kill(&mut server);
        }
    }

    // No half-written settlement, and counters equal the sum of decisions.
    let mut connection = sqlx::SqliteConnection::connect(&database).await.unwrap();
    let orphans: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM invoices i LEFT JOIN decisions d ON d.invoice_no = i.invoice_no \
         AND d.kind = 'decision' WHERE d.id IS NULL",
    )
    .fetch_one(&mut connection)
    .await
    .unwrap()
    .get("n");
    assert_eq!(orphans, 0);
    let stored: i64 = sqlx::query("SELECT COUNT(*) AS n FROM invoices")
        .fetch_one(&mut connection)
        .await
        .unwrap()
        .get("n");
    assert_eq!(stored as usize, invoices.len());
    let mismatched: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM counters c LEFT JOIN ( \
           SELECT person_key, year, pool, SUM(amount) AS amount, SUM(deductible_applied) AS deductible \
           FROM decisions WHERE kind = 'decision' AND outcome IN ('assisted', 'capped') \
           GROUP BY person_key, year, pool) d \
         ON d.person_key = c.person_key AND d.year = c.year AND d.pool = c.pool \
         WHERE c.granted IS NOT COALESCE(d.amount, 0) OR c.deductible_used IS NOT COALESCE(d.deductible, 0)",
    )
    .fetch_one(&mut connection)
    .await
    .unwrap()
    .get("n");
    assert_eq!(mismatched, 0);
    drop(connection);
    let verified = jiuzhu(path, &["audit", "verify", "--database", &database]);
    assert!(verified.contains("The audit chain is whole"), "{verified}");
}
