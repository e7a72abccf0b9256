//! `jiuzhu-loadgen`, the two measuring halves of `bench/settle.sh`:
//!
//! - `baseline`: the floor a settlement store stands on, one durable SQLite
//!   transaction (WAL, `synchronous=FULL`, `BEGIN IMMEDIATE`) per
//!   settlement-sized write (five rows, about 1 KB), done one after another;
//! - `load`: generated invoices posted to `POST /api/v1/settlements`, each
//!   once, by a fixed number of workers (closed loop) or at a fixed rate
//!   (open loop), with every latency kept in integer microseconds;
//! - `bulk-baseline` (for `bench/import.sh`): the rows an insurance feed
//!   import wrote, copied with plain durable multi-row inserts ([`bulk`]).
//!
//! Numbers are integers throughout: the workspace denies float arithmetic.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions as _, Connection as _};
mod web;

mod bulk;

#[derive(Debug, Parser)]
#[command(
    name = "jiuzhu-loadgen",
    about = "Load generator and SQLite baselines for bench/settle.sh and bench/import.sh"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// N sequential durable SQLite transactions, each about one settlement's writes.
    Baseline(BaselineArgs),
    /// Posts generated invoices to running servers and reports throughput and latency.
    Load(LoadArgs),
    /// Copies an imported feed's invoice and decision rows to a fresh SQLite
    /// file with plain durable multi-row inserts, and reports rows per second.
    BulkBaseline(bulk::BulkArgs),
    /// Logs in as a resident and as staff, then asks for the resident's
    /// invoice list and the staff dashboard at a fixed concurrency.
    Web(web::WebArgs),
}

#[derive(Debug, clap::Args)]
struct BaselineArgs {
    /// `sqlite://PATH`; the file is created and must not exist yet.
    #[arg(long, value_name = "URL")]
    database: String,
    /// Number of transactions.
    #[arg(long, default_value_t = 2000)]
    writes: u64,
}

#[derive(Debug, clap::Args)]
struct LoadArgs {
    /// A server's base URL (`http://127.0.0.1:PORT`); repeat it to spread the
    /// requests over several servers in turn.
    #[arg(long = "base", value_name = "URL", required = true)]
    bases: Vec<String>,
    /// Lines `HOSPITAL<TAB>KEY`.
    #[arg(long, value_name = "FILE")]
    keys: PathBuf,
    #[arg(long, value_name = "FILE")]
    invoices: PathBuf,
    #[arg(long, value_name = "FILE")]
    policy: PathBuf,
    /// Workers, each sending its next request when the last one answered.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    #[arg(long, default_value_t = 10)]
    duration_seconds: u64,
    /// Requests per second on a fixed schedule, whatever the answers (open
    /// loop); latency counts from the scheduled moment.
    #[arg(long)]
    rate: Option<u64>,
    /// At most this many requests in flight in open loop; past it, requests
    /// wait, and their wait counts in their latency.
    #[arg(long, default_value_t = 2048)]
    max_in_flight: usize,
    /// Holds the index of the first invoice not yet sent, so that runs one
    /// after another against one database never send an invoice twice.
    #[arg(long, value_name = "FILE")]
    cursor: Option<PathBuf>,
    /// Also prints, for each second of the run, the requests sent in it and
    /// their p99 and maximum latency: it shows whether slow answers come in
    /// bursts (a stall) or evenly (a queue).
    #[arg(long)]
    timeline: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Baseline(args) => baseline(&args).await,
            Command::Load(args) => load(&args).await,
            Command::BulkBaseline(args) => bulk::bulk_baseline(&args).await,
            Command::Web(args) => web::web(&args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `whole.mmm` from a count of thousandths.
fn thousandths(value: u128) -> String {
    format!("{}.{:03}", value / 1000, value % 1000)
}

/// Events per second from a count and elapsed microseconds.
fn per_second(count: u64, elapsed_us: u128) -> u128 {
    u128::from(count) * 1_000_000 / elapsed_us.max(1)
}

async fn baseline(args: &BaselineArgs) -> anyhow::Result<()> {
    let Some(path) = args.database.strip_prefix("sqlite://") else {
        bail!("--database must be sqlite://PATH");
    };
    if Path::new(path).exists() {
        bail!("{path} exists; the baseline wants a fresh file");
    }
    let mut connection = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .connect()
        .await
        .with_context(|| format!("cannot open {path}"))?;
    sqlx::raw_sql(
        "CREATE TABLE persons (person_key BLOB PRIMARY KEY NOT NULL, encrypted BLOB NOT NULL, \
           masked TEXT NOT NULL) STRICT;
         CREATE TABLE invoices (invoice_no TEXT PRIMARY KEY NOT NULL, person_key BLOB NOT NULL, \
           fields TEXT NOT NULL, digest BLOB NOT NULL) STRICT;
         CREATE TABLE decisions (id INTEGER PRIMARY KEY, invoice_no TEXT NOT NULL UNIQUE, \
           person_key BLOB NOT NULL, amount INTEGER NOT NULL, response TEXT NOT NULL) STRICT;
         CREATE TABLE counters (person_key BLOB NOT NULL, year INTEGER NOT NULL, pool TEXT NOT NULL, \
           granted INTEGER NOT NULL, PRIMARY KEY (person_key, year, pool)) STRICT;
         CREATE TABLE audit_log (sequence INTEGER PRIMARY KEY NOT NULL, details TEXT NOT NULL, \
           hash BLOB NOT NULL) STRICT;",
    )
    .execute(&mut connection)
    .await?;

    // About what one settlement writes: a person (new or not), the invoice,
    // the decision with its JSON answer, a counter, an audit entry.
    let fields = "x".repeat(200);
    let response = "r".repeat(400);
    let details = "d".repeat(150);
    let started = Instant::now();
    for write in 0..args.writes {
        let person = (write % 10_000).to_be_bytes().repeat(4);
        let invoice_no = format!("BASELINE{write:012}");
        sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut connection).await?;
        sqlx::query("INSERT INTO persons VALUES ($1, $2, $3) ON CONFLICT (person_key) DO NOTHING")
            .bind(&person)
            .bind(vec![7u8; 60])
            .bind("110105********002X")
            .execute(&mut connection)
            .await?;
        sqlx::query("INSERT INTO invoices VALUES ($1, $2, $3, $4)")
            .bind(&invoice_no)
            .bind(&person)
            .bind(&fields)
            .bind(vec![9u8; 32])
            .execute(&mut connection)
            .await?;
        sqlx::query(
            "INSERT INTO decisions (invoice_no, person_key, amount, response) VALUES ($1, $2, $3, $4)",
        )
        .bind(&invoice_no)
        .bind(&person)
        .bind(write as i64)
        .bind(&response)
        .execute(&mut connection)
        .await?;
        sqlx::query(
            "INSERT INTO counters VALUES ($1, 2025, 'pool', $2) \
             ON CONFLICT (person_key, year, pool) DO UPDATE SET granted = excluded.granted",
        )
        .bind(&person)
        .bind(write as i64)
        .execute(&mut connection)
        .await?;
        sqlx::query("INSERT INTO audit_log VALUES ($1, $2, $3)")
            .bind(write as i64 + 1)
            .bind(&details)
            .bind(vec![5u8; 32])
            .execute(&mut connection)
            .await?;
        sqlx::raw_sql("COMMIT").execute(&mut connection).await?;
    }
    let elapsed_us = started.elapsed().as_micros();
    connection.close().await?;
    let rate = per_second(args.writes, elapsed_us);
    println!(
        "baseline: {} durable transactions (5 rows, about 1 KB each) in {} s: {rate} writes/s",
        args.writes,
        thousandths(elapsed_us / 1000)
    );
    println!(
        "RESULT writes={} elapsed_us={elapsed_us} writes_per_second={rate}",
        args.writes
    );
    Ok(())
}

/// One request ready to go: the key of its hospital and its JSON body.
#[derive(Debug)]
struct Prepared {
    key: Arc<str>,
    body: Vec<u8>,
}

/// The invoices in file order, each invoice number once (the generator
/// writes some duplicates on purpose; a repeat would be a cheap replay or a
/// 409, not a settlement).
fn prepare(args: &LoadArgs) -> anyhow::Result<Vec<Prepared>> {
    let keys_text = std::fs::read_to_string(&args.keys)
        .with_context(|| format!("cannot read {}", args.keys.display()))?;
    let mut keys: HashMap<String, Arc<str>> = HashMap::new();
    for (number, line) in keys_text.lines().enumerate() {
        let Some((hospital, key)) = line.split_once('\t') else {
            bail!("{}:{}: not HOSPITAL<TAB>KEY", args.keys.display(), number + 1);
        };
        keys.insert(hospital.to_owned(), Arc::from(key));
    }
    let policy = jiuzhu_formats::read_policy_file(&args.policy, "policy.toml")
        .map_err(|problems| anyhow::anyhow!("{problems}"))?;
    let known: Vec<String> = policy
        .visit_types()
        .iter()
        .map(|(name, _)| name.clone())
        .collect();
    let invoices = jiuzhu_formats::read_invoices_file(&args.invoices, "invoices.csv", &known)
        .map_err(|problems| anyhow::anyhow!("{problems}"))?;
    let mut seen = HashSet::new();
    let mut prepared = Vec::with_capacity(invoices.len());
    for invoice in &invoices {
        if !seen.insert(invoice.invoice_no.as_str().to_owned()) {
            continue;
        }
        let Some(key) = keys.get(invoice.hospital.as_str()) else {
            bail!(
                "no key for hospital {} in {}",
                invoice.hospital,
                args.keys.display()
            );
        };
        prepared.push(Prepared {
            key: key.clone(),
            body: jiuzhu_formats::json::canonical_request(invoice).into_bytes(),
        });
    }
    Ok(prepared)
}

/// What one request gave: its latency, or why it failed.
#[derive(Debug)]
struct Outcome {
    /// When the request was due, from the start of the run.
    sent_at_us: u64,
    latency_us: u64,
    /// `None` for a new settlement (200 without `jiuzhu-replayed`).
    error: Option<String>,
}

async fn send(
    client: &reqwest::Client,
    base: &str,
    request: &Prepared,
    started: Instant,
    since: Instant,
) -> Outcome {
    let answer = client
        .post(format!("{base}/api/v1/settlements"))
        .bearer_auth(&*request.key)
        .header("content-type", "application/json")
        .body(request.body.clone())
        .send()
        .await;
    let error = match answer {
        Ok(answer) => {
            let status = answer.status().as_u16();
            let replayed = answer.headers().contains_key("jiuzhu-replayed");
            match answer.bytes().await {
                Err(_) => Some("transport".to_owned()),
                Ok(_) if status == 200 && replayed => Some("200-replayed".to_owned()),
                Ok(_) if status == 200 => None,
                Ok(_) => Some(status.to_string()),
            }
        }
        Err(error) if error.is_timeout() => Some("timeout".to_owned()),
        Err(_) => Some("transport".to_owned()),
    };
    Outcome {
        sent_at_us: u64::try_from(since.duration_since(started).as_micros()).unwrap_or(u64::MAX),
        latency_us: u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX),
        error,
    }
}

async fn load(args: &LoadArgs) -> anyhow::Result<()> {
    if args.concurrency == 0 || args.rate == Some(0) {
        bail!("--concurrency and --rate must be at least 1");
    }
    let prepared = Arc::new(prepare(args)?);
    let first = match &args.cursor {
        Some(path) if path.exists() => std::fs::read_to_string(path)?
            .trim()
            .parse::<usize>()
            .with_context(|| format!("{} does not hold a number", path.display()))?,
        _ => 0,
    };
    if first >= prepared.len() {
        bail!(
            "every one of the {} distinct invoices was sent already",
            prepared.len()
        );
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(args.max_in_flight.max(args.concurrency))
        .build()?;
    let bases: Arc<Vec<String>> = Arc::new(
        args.bases
            .iter()
            .map(|base| base.trim_end_matches('/').to_owned())
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(first));
    let duration = Duration::from_secs(args.duration_seconds);
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    let mut outcomes: Vec<Outcome> = Vec::new();

    match args.rate {
        None => {
            for _ in 0..args.concurrency {
                let (client, bases, prepared, next) =
                    (client.clone(), bases.clone(), prepared.clone(), next.clone());
                tasks.spawn(async move {
                    let mut mine = Vec::new();
                    while Instant::now() < deadline {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(request) = prepared.get(index) else { break };
                        let base = &bases[index % bases.len()];
                        mine.push(send(&client, base, request, started, Instant::now()).await);
                    }
                    mine
                });
            }
        }
        Some(rate) => {
            let gate = Arc::new(tokio::sync::Semaphore::new(args.max_in_flight));
            let total = rate * args.duration_seconds;
            for sent in 0..total {
                // The scheduled moment of this request, in whole microseconds.
                let scheduled = started + Duration::from_micros(sent * 1_000_000 / rate);
                tokio::time::sleep_until(scheduled.into()).await;
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= prepared.len() {
                    break;
                }
                let permit = gate.clone().acquire_owned().await?;
                let (client, bases, prepared) = (client.clone(), bases.clone(), prepared.clone());
                tasks.spawn(async move {
                    let base = &bases[index % bases.len()];
                    let outcome = send(&client, base, &prepared[index], started, scheduled).await;
                    drop(permit);
                    vec![outcome]
                });
                while let Some(done) = tasks.try_join_next() {
                    outcomes.extend(done?);
                }
            }
        }
    }
    while let Some(done) = tasks.join_next().await {
        outcomes.extend(done?);
    }
    let elapsed_us = started.elapsed().as_micros();
    let used = next.load(Ordering::Relaxed).min(prepared.len());
    if let Some(path) = &args.cursor {
        std::fs::write(path, format!("{used}\n"))?;
    }
    if used >= prepared.len() {
        eprintln!(
            "warning: the {} distinct invoices ran out before the end of the run",
            prepared.len()
        );
    }
    if args.timeline {
        timeline(&outcomes);
    }
    report(args, &outcomes, elapsed_us);
    Ok(())
}

/// One line per second of the run: requests due in it, p99 and max latency.
fn timeline(outcomes: &[Outcome]) {
    let mut seconds: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for outcome in outcomes {
        seconds
            .entry(outcome.sent_at_us / 1_000_000)
            .or_default()
            .push(outcome.latency_us);
    }
    for (second, mut latencies) in seconds {
        latencies.sort_unstable();
        let rank = (latencies.len() * 990).div_ceil(1000).max(1);
        println!(
            "second {second:>4}: {:>6} requests, p99 {} ms, max {} ms",
            latencies.len(),
            thousandths(u128::from(latencies[rank - 1])),
            thousandths(u128::from(latencies.last().copied().unwrap_or(0))),
        );
    }
}

fn report(args: &LoadArgs, outcomes: &[Outcome], elapsed_us: u128) {
    let mut errors: BTreeMap<&str, u64> = BTreeMap::new();
    let mut latencies: Vec<u64> = Vec::with_capacity(outcomes.len());
    for outcome in outcomes {
        match &outcome.error {
            None => latencies.push(outcome.latency_us),
            Some(error) => *errors.entry(error.as_str()).or_default() += 1,
        }
    }
    latencies.sort_unstable();
    // The nearest-rank percentile: the smallest latency at or above which
    // `per_mille` thousandths of the requests answered.
    let percentile = |per_mille: usize| -> u64 {
        if latencies.is_empty() {
            return 0;
        }
        let rank = (latencies.len() * per_mille).div_ceil(1000).max(1);
        latencies[rank - 1]
    };
    let settled = latencies.len() as u64;
    let throughput = per_second(settled, elapsed_us);
    let (p50, p99, max) = (
        percentile(500),
        percentile(990),
        latencies.last().copied().unwrap_or(0),
    );
    let error_count: u64 = errors.values().sum();
    let errors_text = if errors.is_empty() {
        "none".to_owned()
    } else {
        errors
            .iter()
            .map(|(status, count)| format!("{status}:{count}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let mode = match args.rate {
        Some(rate) => format!("open loop at {rate}/s"),
        None => format!("closed loop, {} workers", args.concurrency),
    };
    println!(
        "{mode}, {} server(s): {} requests in {} s, {settled} settled, errors {errors_text}; \
         {throughput} settlements/s, p50 {} ms, p99 {} ms, max {} ms",
        args.bases.len(),
        outcomes.len(),
        thousandths(elapsed_us / 1000),
        thousandths(u128::from(p50)),
        thousandths(u128::from(p99)),
        thousandths(u128::from(max)),
    );
    println!(
        "RESULT requests={} settled={settled} errors={error_count} error_kinds={errors_text} \
         elapsed_us={elapsed_us} throughput={throughput} p50_us={p50} p99_us={p99} max_us={max}",
        outcomes.len()
    );
}
