//! Two `jiuzhu serve` processes on one PostgreSQL database: concurrent
//! settlements for one person never pass a cap, and one bill sent many
//! times at once is decided once. In CI (`CI=true`) PostgreSQL must be
//! reachable; elsewhere the test says plainly that it skipped.

use sqlx::Connection as _;

mod common;

use common::{jiuzhu, load_policy_and_spells, repository, serve};

/// A bill of the fixture's DB recipient (outpatient cap 3,000 yuan in 2024,
/// 70%): 100 yuan of base, under number `number`.
fn bill(number: &str) -> serde_json::Value {
    serde_json::json!({
        "invoice_no": number,
        "person_id": "110105196001010017",
        "hospital": "H001",
        "visit_type": "outpatient",
        "service_date": "2024-04-01",
        "settled_at": "2024-04-01T09:00:00+08:00",
        "total": "100.00",
        "fund_paid": "0",
        "in_scope_self_pay": "100.00",
        "out_of_scope_self_pay": "0",
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_postgresql_never_pass_a_cap_nor_decide_a_bill_twice() {
    let admin = std::env::var("JIUZHU_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".to_owned());
    let mut connection = match sqlx::PgConnection::connect(&admin).await {
        Ok(connection) => connection,
        Err(error) => {
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "PostgreSQL is required in CI: {error}"
            );
            eprintln!("SKIPPED: PostgreSQL at {admin} could not be reached: {error}");
            return;
        }
    };
    let name = format!("jiuzhu_two_servers_{}", std::process::id());
    for sql in [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut connection)
            .await
            .unwrap();
    }
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(base, _)| base);
    let database = format!("{base}/{name}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    jiuzhu(path, &["init"]);
    let policy = repository()
        .join("fixtures/example-policy.toml")
        .display()
        .to_string();
    let spells = repository()
        .join("crates/cli/tests/data/small/spells.csv")
        .display()
        .to_string();
    load_policy_and_spells(path, &database, &policy, &spells);
    let created = jiuzhu(
        path,
        &["apikey", "create", "--hospital", "H001", "--database", &database],
    );
    let key = created.lines().last().unwrap().to_owned();
    let servers = [serve(path, &database, None), serve(path, &database, None)];
    let client = reqwest::Client::new();

    // 200 bills at once, half to each server: 70 yuan each without the cap.
    let mut tasks = Vec::new();
    for n in 0..200 {
        let url = format!("{}/api/v1/settlements", servers[n % 2].base);
        let (client, key) = (client.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            let answer = client
                .post(url)
                .bearer_auth(key)
                .json(&bill(&format!("P{n:04}")))
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status().as_u16(), 200);
            let json: serde_json::Value = answer.json().await.unwrap();
            jiuzhu_core::Fen::parse_yuan(json["amount"].as_str().unwrap())
                .unwrap()
                .fen()
        }));
    }
    let mut granted = 0;
    for task in tasks {
        granted += task.await.unwrap();
    }
    assert_eq!(granted, 300_000, "the 3,000-yuan cap");

    // One bill 50 times at once, across both servers: decided once.
    let mut tasks = Vec::new();
    for n in 0..50 {
        let url = format!("{}/api/v1/settlements", servers[n % 2].base);
        let (client, key) = (client.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            let answer = client
                .post(url)
                .bearer_auth(key)
                .json(&bill("ONCE"))
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status().as_u16(), 200);
            answer.headers().contains_key("jiuzhu-replayed")
        }));
    }
    let mut fresh = 0;
    for task in tasks {
        fresh += usize::from(!task.await.unwrap());
    }
    assert_eq!(fresh, 1);
    drop(servers);
    let verified = jiuzhu(path, &["audit", "verify", "--database", &database]);
    assert!(verified.contains("The audit chain is whole"), "{verified}");
    let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
    sqlx::raw_sql(sqlx::AssertSqlSafe(drop))
        .execute(&mut connection)
        .await
        .unwrap();
}
