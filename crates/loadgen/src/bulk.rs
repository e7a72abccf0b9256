//! `bulk-baseline`, the floor under `jiuzhu import` in `bench/import.sh`:
//! the very rows an import stored, byte for byte, copied from its store to a
//! fresh SQLite file with plain multi-row inserts and nothing else: no
//! reading or checking of a file, no deciding, no audit entries, no
//! notifications, no foreign keys. The same tables and indexes (their DDL is
//! copied), the same durability (WAL, `synchronous=FULL`, `BEGIN IMMEDIATE`
//! … `COMMIT`) and the same page cache as the store.
//!
//! - `--kind invoices` (the insurance feed): the invoice, decision and answer rows,
//!   `--chunk` of each per transaction, as the import's `--chunk`.
//! - `--kind spells` (a department's spells file): the person and spell
//!   rows, all in one transaction as the import writes a file, in
//!   statements of `--chunk` rows.
//!
//! Only the transactions are timed: the rows are read from the source first.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteRow, SqliteSynchronous};
use sqlx::{
    ConnectOptions as _, Connection as _, QueryBuilder, Row as _, Sqlite, SqliteConnection, TypeInfo as _,
    ValueRef as _,
};

use crate::{per_second, thousandths};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CopyKind {
    /// Invoice and decision rows, `--chunk` of each per transaction.
    Invoices,
    /// Person and spell rows, in one transaction.
    Spells,
}

#[derive(Debug, clap::Args)]
pub struct BulkArgs {
    /// The store the file was imported into (`sqlite://PATH`), read only.
    #[arg(long, value_name = "URL")]
    from: String,
    /// `sqlite://PATH` for the copy; the file is created and must not exist yet.
    #[arg(long, value_name = "URL")]
    database: String,
    /// Which import's rows to copy.
    #[arg(long, value_enum, default_value_t = CopyKind::Invoices)]
    kind: CopyKind,
    /// Rows per transaction (invoices, as the import's `--chunk`) or per
    /// statement (spells, as the import's statements).
    #[arg(long, default_value_t = 1024)]
    chunk: usize,
    /// SQLite's page cache, in KiB, as the store's (`SQLITE_CACHE_KIB`).
    #[arg(long, default_value_t = jiuzhu_store::SQLITE_CACHE_KIB)]
    cache_kib: u32,
}

/// One column's value, as SQLite stored it.
#[derive(Debug)]
enum Value {
    Null,
    Integer(i64),
    Text(String),
    Blob(Vec<u8>),
}

/// A table to copy: its name, the column that orders its rows, and the
/// columns copied (all but an `INTEGER PRIMARY KEY`, which each database
/// numbers itself, unless it refers to another table's row).
#[derive(Debug)]
struct Table {
    name: &'static str,
    order: &'static str,
    columns: Vec<String>,
}

impl Table {
    async fn of(
        source: &mut SqliteConnection,
        name: &'static str,
        order: &'static str,
        keep_key: bool,
    ) -> anyhow::Result<Table> {
        let info = sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA table_info({name})")))
            .fetch_all(&mut *source)
            .await?;
        let mut columns = Vec::new();
        for row in &info {
            let column: String = row.try_get("name")?;
            let primary: i64 = row.try_get("pk")?;
            let kind: String = row.try_get("type")?;
            if primary == 1 && kind.eq_ignore_ascii_case("INTEGER") && !keep_key {
                continue;
            }
            columns.push(column);
        }
        if columns.is_empty() {
            bail!("the source has no table {name}: import into it first");
        }
        Ok(Table { name, order, columns })
    }

    /// Up to `limit` rows after `after` in order, with the order key of the last.
    async fn read_after(
        &self,
        source: &mut SqliteConnection,
        after: i64,
        limit: usize,
    ) -> anyhow::Result<(Vec<Vec<Value>>, i64)> {
        let sql = format!(
            "SELECT {order} AS row_key, {columns} FROM {table} WHERE {order} > $1 ORDER BY {order} LIMIT $2",
            order = self.order,
            columns = self.columns.join(", "),
            table = self.name,
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
            .map(|row| self.values(row))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((values, last))
    }

    /// Every row, in order.
    async fn read_all(&self, source: &mut SqliteConnection) -> anyhow::Result<Vec<Vec<Value>>> {
        let mut all = Vec::new();
        let mut after = i64::MIN;
        loop {
            let (rows, last) = self.read_after(source, after, 10_000).await?;
            if rows.is_empty() {
                return Ok(all);
            }
            after = last;
            all.extend(rows);
        }
    }

    fn values(&self, row: &SqliteRow) -> anyhow::Result<Vec<Value>> {
        (1..=self.columns.len())
            .map(|index| {
                let raw = row.try_get_raw(index)?;
                if raw.is_null() {
                    return Ok(Value::Null);
                }
                let kind = raw.type_info().name().to_owned();
                Ok(match kind.as_str() {
                    "INTEGER" => Value::Integer(row.try_get(index)?),
                    "TEXT" => Value::Text(row.try_get(index)?),
                    "BLOB" => Value::Blob(row.try_get(index)?),
                    other => bail!(
                        "{}.{} holds a value of type {other}",
                        self.name,
                        self.columns[index - 1]
                    ),
                })
            })
            .collect()
    }

    /// One multi-row insert.
    async fn insert(
        &self,
        connection: &mut SqliteConnection,
        rows: &[Vec<Value>],
    ) -> Result<(), sqlx::Error> {
        let mut query = QueryBuilder::<Sqlite>::new(format!(
            "INSERT INTO {} ({}) ",
            self.name,
            self.columns.join(", ")
        ));
        query.push_values(rows, |mut builder, row| {
            for value in row {
                match value {
                    Value::Null => builder.push_bind(None::<i64>),
                    Value::Integer(number) => builder.push_bind(*number),
                    Value::Text(text) => builder.push_bind(text.clone()),
                    Value::Blob(bytes) => builder.push_bind(bytes.clone()),
                };
            }
        });
        query.build().persistent(false).execute(&mut *connection).await?;
        Ok(())
    }
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
    let tables = match args.kind {
        CopyKind::Invoices => vec![
            Table::of(&mut source, "invoices", "rowid", false).await?,
            Table::of(&mut source, "decisions", "id", false).await?,
            // Each answer keeps the id of its decision, which the copy
            // numbers as the store did (one decision per invoice, in order).
            Table::of(&mut source, "decision_responses", "decision_id", true).await?,
        ],
        CopyKind::Spells => vec![
            Table::of(&mut source, "persons", "rowid", false).await?,
            Table::of(&mut source, "spells", "id", false).await?,
        ],
    };
    // The same tables and indexes as the store's.
    let names = tables
        .iter()
        .map(|table| format!("'{}'", table.name))
        .collect::<Vec<_>>();
    let schema = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT sql FROM sqlite_master WHERE tbl_name IN ({}) AND sql IS NOT NULL ORDER BY type DESC, rowid",
        names.join(", ")
    )))
    .fetch_all(&mut source)
    .await?;
    for row in &schema {
        let sql: String = row.try_get("sql")?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut connection)
            .await?;
    }

    let (rows, transactions, writing, total) = match args.kind {
        CopyKind::Invoices => copy_in_chunks(&mut source, &mut connection, &tables, args.chunk).await?,
        CopyKind::Spells => {
            copy_at_once(&mut source, &mut connection, &tables[0], &tables[1], args.chunk).await?
        }
    };
    connection.close().await?;
    let elapsed_us = writing.as_micros();
    let rate = per_second(rows, elapsed_us);
    let what = match args.kind {
        CopyKind::Invoices => format!(
            "{rows} invoices with their decision and answer rows in {transactions} durable transactions of {} rows",
            args.chunk
        ),
        CopyKind::Spells => format!(
            "{rows} spell rows and their persons in {transactions} durable transaction, {} rows a statement",
            args.chunk
        ),
    };
    println!(
        "bulk baseline: {what}: {} s writing ({} s with reading the source): {rate} rows/s",
        thousandths(elapsed_us / 1000),
        thousandths(total.as_millis())
    );
    println!("RESULT rows={rows} elapsed_us={elapsed_us} rows_per_second={rate}");
    Ok(())
}

/// Invoices: each transaction inserts the next `chunk` rows of each table.
/// Returns the rows of the first table copied, the transactions, the time
/// spent in them and the whole time.
async fn copy_in_chunks(
    source: &mut SqliteConnection,
    connection: &mut SqliteConnection,
    tables: &[Table],
    chunk: usize,
) -> anyhow::Result<(u64, u64, Duration, Duration)> {
    let mut afters = vec![i64::MIN; tables.len()];
    let (mut rows, mut transactions) = (0u64, 0u64);
    let mut writing = Duration::ZERO;
    let started = Instant::now();
    loop {
        let mut chunks = Vec::with_capacity(tables.len());
        for (table, after) in tables.iter().zip(afters.iter_mut()) {
            let (values, last) = table.read_after(source, *after, chunk).await?;
            *after = last;
            chunks.push(values);
        }
        if chunks.iter().all(Vec::is_empty) {
            break;
        }
        let transaction = Instant::now();
        sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut *connection).await?;
        for (table, values) in tables.iter().zip(&chunks) {
            if !values.is_empty() {
                table.insert(connection, values).await?;
            }
        }
        sqlx::raw_sql("COMMIT").execute(&mut *connection).await?;
        writing += transaction.elapsed();
        rows += chunks[0].len() as u64;
        transactions += 1;
    }
    Ok((rows, transactions, writing, started.elapsed()))
}

/// Spells: every row of both tables in one transaction, `chunk` rows a
/// statement. Returns the rows of `second` copied.
async fn copy_at_once(
    source: &mut SqliteConnection,
    connection: &mut SqliteConnection,
    first: &Table,
    second: &Table,
    chunk: usize,
) -> anyhow::Result<(u64, u64, Duration, Duration)> {
    let started = Instant::now();
    let firsts = first.read_all(source).await?;
    let seconds = second.read_all(source).await?;
    if seconds.is_empty() {
        bail!("the source holds no {}: import into it first", second.name);
    }
    let transaction = Instant::now();
    sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut *connection).await?;
    for rows in firsts.chunks(chunk) {
        first.insert(connection, rows).await?;
    }
    for rows in seconds.chunks(chunk) {
        second.insert(connection, rows).await?;
    }
    sqlx::raw_sql("COMMIT").execute(&mut *connection).await?;
    let writing = transaction.elapsed();
    Ok((seconds.len() as u64, 1, writing, started.elapsed()))
}
