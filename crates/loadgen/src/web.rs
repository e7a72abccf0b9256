//! `jiuzhu-loadgen web`: the pages of bench/web.sh under load. Logs in once
//! as a resident (ID, phone and the one-time code a demo server shows) and
//! once as a member of staff, then for each page runs `concurrency` users,
//! each asking for the page again as soon as it has the last answer, for a
//! fixed time, and reports how many answers came and their latency (p50,
//! p99, max, in integer microseconds). The baseline, measured in the same
//! run at the same concurrency, is the server's stylesheet: a page of the
//! same server that reads nothing from the store.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::{per_second, thousandths};

#[derive(Debug, clap::Args)]
pub struct WebArgs {
    /// The server's base URL (`http://127.0.0.1:PORT`).
    #[arg(long, value_name = "URL")]
    base: String,
    /// A member of staff who may see the dashboard, and their password.
    #[arg(long)]
    staff: String,
    #[arg(long)]
    password: String,
    /// A resident and the phone number on record (a demo server shows the
    /// one-time code on the page).
    #[arg(long)]
    resident: String,
    #[arg(long)]
    phone: String,
    /// Users at once, each asking again when answered.
    #[arg(long, default_value_t = 100)]
    concurrency: usize,
    #[arg(long, default_value_t = 10)]
    duration_seconds: u64,
}

/// A browser that keeps its cookies and does not follow redirects.
fn browser() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(1024)
        .build()
        .context("cannot build an HTTP client")
}

/// The value of the hidden field `name` of a form on `page`.
fn hidden(page: &str, name: &str) -> anyhow::Result<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let Some(start) = page.find(&marker).map(|at| at + marker.len()) else {
        bail!("no field {name} on the page");
    };
    let end = page[start..].find('"').map_or(page.len(), |end| start + end);
    Ok(page[start..end].to_owned())
}

/// The six-digit code a demo server shows on the page.
fn shown_code(page: &str) -> anyhow::Result<String> {
    let start = page.find("<strong>").map(|at| at + "<strong>".len());
    let text = start.and_then(|start| Some(&page[start..start + page[start..].find("</strong>")?]));
    let code: String = text
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    if code.len() != 6 {
        bail!("the page shows no one-time code: is the server a demo (`jiuzhu serve --demo`)?");
    }
    Ok(code)
}

async fn staff_login(args: &WebArgs) -> anyhow::Result<reqwest::Client> {
    let client = browser()?;
    let page = client
        .get(format!("{}/staff/login", args.base))
        .send()
        .await?
        .text()
        .await?;
    let csrf = hidden(&page, "csrf")?;
    let answer = client
        .post(format!("{}/staff/login", args.base))
        .form(&[
            ("csrf", csrf.as_str()),
            ("name", &args.staff),
            ("password", &args.password),
        ])
        .send()
        .await?;
    if answer.status() != reqwest::StatusCode::SEE_OTHER {
        bail!(
            "the staff login of {} was refused: {}",
            args.staff,
            answer.status()
        );
    }
    Ok(client)
}

async fn resident_login(args: &WebArgs) -> anyhow::Result<reqwest::Client> {
    let client = browser()?;
    let page = client
        .get(format!("{}/login", args.base))
        .send()
        .await?
        .text()
        .await?;
    let csrf = hidden(&page, "csrf")?;
    let page = client
        .post(format!("{}/login", args.base))
        .form(&[
            ("csrf", csrf.as_str()),
            ("person_id", &args.resident),
            ("phone", &args.phone),
        ])
        .send()
        .await?
        .text()
        .await?;
    let code = shown_code(&page)?;
    let csrf = hidden(&page, "csrf")?;
    let answer = client
        .post(format!("{}/login/code", args.base))
        .form(&[
            ("csrf", csrf.as_str()),
            ("person_id", &args.resident),
            ("code", &code),
        ])
        .send()
        .await?;
    if answer.status() != reqwest::StatusCode::SEE_OTHER {
        bail!("the resident's login was refused: {}", answer.status());
    }
    Ok(client)
}

/// What one page answered under load.
struct PageRun {
    answers: u64,
    errors: u64,
    elapsed_us: u128,
    /// Latencies of the answers, sorted, in microseconds.
    latencies: Vec<u64>,
}

impl PageRun {
    fn percentile(&self, per_thousand: usize) -> u64 {
        if self.latencies.is_empty() {
            return 0;
        }
        let rank = (self.latencies.len() * per_thousand).div_ceil(1000).max(1) - 1;
        self.latencies[rank.min(self.latencies.len() - 1)]
    }
}

async fn run_page(client: &reqwest::Client, url: &str, args: &WebArgs) -> PageRun {
    // One request first: a cold cache is not what the run measures.
    let _ = client.get(url).send().await;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.duration_seconds);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency {
        let client = client.clone();
        let url = url.to_owned();
        workers.spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let asked = Instant::now();
                let ok = match client.get(&url).send().await {
                    Ok(answer) => answer.status() == reqwest::StatusCode::OK && answer.bytes().await.is_ok(),
                    Err(_) => false,
                };
                if ok {
                    latencies.push(u64::try_from(asked.elapsed().as_micros()).unwrap_or(u64::MAX));
                } else {
                    errors += 1;
                }
            }
            (latencies, errors)
        });
    }
    let mut run = PageRun {
        answers: 0,
        errors: 0,
        elapsed_us: 0,
        latencies: Vec::new(),
    };
    while let Some(done) = workers.join_next().await {
        match done {
            Ok((latencies, errors)) => {
                run.latencies.extend(latencies);
                run.errors += errors;
            }
            Err(_) => run.errors += 1,
        }
    }
    run.elapsed_us = started.elapsed().as_micros();
    run.answers = run.latencies.len() as u64;
    run.latencies.sort_unstable();
    run
}

pub async fn web(args: &WebArgs) -> anyhow::Result<()> {
    let staff = staff_login(args).await?;
    let resident = resident_login(args).await?;
    println!(
        "{} users at once, {} s per page, against {}",
        args.concurrency, args.duration_seconds, args.base
    );
    let pages = [
        ("baseline", "/static/app.css", &staff),
        ("invoices", "/me", &resident),
        ("dashboard", "/staff", &staff),
    ];
    let mut failed = false;
    for (label, path, client) in pages {
        let run = run_page(client, &format!("{}{path}", args.base), args).await;
        let (p50, p99, max) = (
            run.percentile(500),
            run.percentile(990),
            run.latencies.last().copied().unwrap_or(0),
        );
        println!(
            "{label:<10} {path:<16} {:>8} answers {:>6}/s  p50 {:>8} ms  p99 {:>8} ms  max {:>8} ms  errors {}",
            run.answers,
            per_second(run.answers, run.elapsed_us),
            thousandths(u128::from(p50)),
            thousandths(u128::from(p99)),
            thousandths(u128::from(max)),
            run.errors
        );
        println!(
            "RESULT page={label} answers={} errors={} p50_us={p50} p99_us={p99} max_us={max}",
            run.answers, run.errors
        );
        failed |= run.errors > 0 || run.answers == 0;
    }
    if failed {
        bail!("some requests failed or none was answered");
    }
    Ok(())
}
