//! `bulk-baseline`, the floor under `jiuzhu import invoices` in
//! `bench/import.sh`: the same invoice and decision rows, byte for byte,
//! copied from a store a feed was imported into to a fresh SQLite file,
//! with plain multi-row inserts and nothing else: no reading of spells or
//! counters, no deciding, no persons, counters or audit entries, no foreign
//! keys. The same tables and indexes (their DDL is copied), the same
//! durability (WAL, `synchronous=FULL`, `BEGIN IMMEDIATE` … `COMMIT`), the
//! same page cache and the same rows per transaction as the import. Only the transactions are
//! timed, not the reading of the rows from the source.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteRow, SqliteSynchronous};
use sqlx::{ConnectOptions as _, Connection as _, QueryBuilder, Row as _, Sqlite, SqliteConnection};

use crate::{per_second, thousandths};

#[derive(Debug, clap::Args)]
pub struct BulkArgs {
    /// The store the feed was imported into (`sqlite://PATH`), read only.
    #[arg(long, value_name = "URL")]
    from: String,
    /// `sqlite://PATH` for the copy; the file is created and must not exist yet.
    #[arg(long, value_name = "URL")]
    database: String,
    /// Rows per transaction, as the import's `--chunk`.
    #[arg(long, default_value_t = 1024)]
    chunk: usize,
    /// SQLite's page cache, in KiB, as the store's (`SQLITE_CACHE_KIB`).
    #[arg(long, default_value_t = jiuzhu_store::SQLITE_CACHE_KIB)]
    cache_kib: u32,
}

/// How a column is read and bound.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Integer,
    Text,
    OptionalText,
    Blob,
}

const INVOICE_COLUMNS: &[(&str, Kind)] = &[
    ("invoice_no", Kind::Text),
    ("person_key", Kind::Blob),
    ("hospital", Kind::Text),
    ("visit_type", Kind::Text),
    ("service_date", Kind::Text),
    ("settled_at", Kind::Text),
    ("settled_unix_seconds", Kind::Integer),
    ("settled_attoseconds", Kind::Integer),
    ("settled_finer_digits", Kind::OptionalText),
    ("total", Kind::Integer),
    ("fund_paid", Kind::Integer),
    ("in_scope_self_pay", Kind::Integer),
    ("out_of_scope_self_pay", Kind::Integer),
    ("request_digest", Kind::Blob),
    ("channel", Kind::Text),
    ("received_at", Kind::Text),
];

/// All but `id`, which each database numbers itself.
const DECISION_COLUMNS: &[(&str, Kind)] = &[
    ("invoice_no", Kind::Text),
    ("person_key", Kind::Blob),
    ("kind", Kind::Text),
    ("policy_id", Kind::Integer),
    ("year", Kind::Integer),
    ("outcome", Kind::Text),
    ("category", Kind::OptionalText),
    ("pool", Kind::OptionalText),
    ("policy_version", Kind::OptionalText),
    ("base", Kind::Integer),
    ("deductible_applied", Kind::Integer),
    ("eligible", Kind::Integer),
    ("amount", Kind::Integer),
    ("response", Kind::Text),
    ("decided_at", Kind::Text),
    ("decided_by", Kind::Text),
];

#[derive(Debug)]
enum Value {
    Integer(i64),
    Text(Option<String>),
    Blob(Vec<u8>),
}

fn values(row: &SqliteRow, columns: &[(&str, Kind)]) -> Result<Vec<Value>, sqlx::Error> {
    columns
        .iter()
        .map(|(name, kind)| {
            Ok(match kind {
                Kind::Integer => Value::Integer(row.try_get(*name)?),
                Kind::Text => Value::Text(Some(row.try_get(*name)?)),
                Kind::OptionalText => Value::Text(row.try_get(*name)?),
                Kind::Blob => Value::Blob(row.try_get(*name)?),
            })
        })
        .collect()
}

/// One multi-row insert of `rows` into `table`.
async fn insert(
    connection: &mut SqliteConnection,
    table: &str,
    columns: &[(&str, Kind)],
    rows: &[Vec<Value>],
) -> Result<(), sqlx::Error> {
    let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
    let mut query = QueryBuilder::<Sqlite>::new(format!("INSERT INTO {table} ({}) ", names.join(", ")));
    query.push_values(rows, |mut builder, row| {
        for value in row {
            match value {
                Value::Integer(number) => builder.push_bind(*number),
                Value::Text(text) => builder.push_bind(text.clone()),
                Value::Blob(bytes) => builder.push_bind(bytes.clone()),
            };
        }
    });
    query.build().persistent(false).execute(&mut *connection).await?;
    Ok(())
}

/// Reads up to `limit` rows of `table` after `after` in `key` order, with
/// the key of the last.
async fn read_after(
    source: &mut SqliteConnection,
    table: &str,
    key: &str,
    columns: &[(&str, Kind)],
    after: i64,
    limit: usize,
) -> anyhow::Result<(Vec<Vec<Value>>, i64)> {
    let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
    let sql = format!(
        "SELECT {key} AS row_key, {} FROM {table} WHERE {key} > $1 ORDER BY {key} LIMIT $2",
        names.join(", ")
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(after)
        .bind(limit as i64)
        .fetch_all(&mut *source)
        .await?;
    let last = match rows.last() {
        Some(row) => row.try_get("row_key")?,
        None => after,
    };
    let values = rows
        .iter()
        .map(|row| values(row, columns))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((values, last))
}

pub async fn bulk_baseline(args: &BulkArgs) -> anyhow::Result<()> {
    let (Some(from), Some(path)) = (
        args.from.strip_prefix("sqlite://"),
        args.database.strip_prefix("sqlite://"),
    ) else {
        bail!("--from and --database must be sqlite://PATH");
    };
    if !(1..=2048).contains(&args.chunk) {
        bail!("--chunk must be 1 to 2048, as the import's");
    }
    if Path::new(path).exists() {
        bail!("{path} exists; the baseline wants a fresh file");
    }
    let mut source = SqliteConnectOptions::new()
        .filename(from)
        .read_only(true)
        .connect()
        .await
        .with_context(|| format!("cannot open {from}"))?;
    let mut connection = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(false)
        .pragma("cache_size", format!("-{}", args.cache_kib))
        .connect()
        .await
        .with_context(|| format!("cannot open {path}"))?;
    // The same tables and indexes as the store's.
    let schema = sqlx::query(
        "SELECT sql FROM sqlite_master WHERE tbl_name IN ('invoices', 'decisions') AND sql IS NOT NULL \
         ORDER BY type DESC, rowid",
    )
    .fetch_all(&mut source)
    .await?;
    if schema.is_empty() {
        bail!("{from} has no invoices table: import a feed into it first");
    }
    for row in &schema {
        let sql: String = row.try_get("sql")?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut connection)
            .await?;
    }

    let (mut invoices_after, mut decisions_after) = (0i64, 0i64);
    let mut rows = 0u64;
    let mut transactions = 0u64;
    let mut writing = Duration::ZERO;
    let started = Instant::now();
    loop {
        let (invoices, last) = read_after(
            &mut source,
            "invoices",
            "rowid",
            INVOICE_COLUMNS,
            invoices_after,
            args.chunk,
        )
        .await?;
        invoices_after = last;
        let (decisions, last) = read_after(
            &mut source,
            "decisions",
            "id",
            DECISION_COLUMNS,
            decisions_after,
            args.chunk,
        )
        .await?;
        decisions_after = last;
        if invoices.is_empty() && decisions.is_empty() {
            break;
        }
        let transaction = Instant::now();
        sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut connection).await?;
        if !invoices.is_empty() {
            insert(&mut connection, "invoices", INVOICE_COLUMNS, &invoices).await?;
        }
        if !decisions.is_empty() {
            insert(&mut connection, "decisions", DECISION_COLUMNS, &decisions).await?;
        }
        sqlx::raw_sql("COMMIT").execute(&mut connection).await?;
        writing += transaction.elapsed();
        rows += invoices.len() as u64;
        transactions += 1;
    }
    let total_us = started.elapsed().as_micros();
    connection.close().await?;
    let elapsed_us = writing.as_micros();
    let rate = per_second(rows, elapsed_us);
    println!(
        "bulk baseline: {rows} invoice and decision rows in {transactions} durable transactions of \
         {} rows: {} s writing ({} s with reading the source): {rate} rows/s",
        args.chunk,
        thousandths(elapsed_us / 1000),
        thousandths(total_us / 1000)
    );
    println!("RESULT rows={rows} elapsed_us={elapsed_us} rows_per_second={rate}");
    Ok(())
}
