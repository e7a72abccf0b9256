//! `jiuzhu import spells` and `jiuzhu import invoices` over the files
//! departments really send, run as a bureau runs them: the real binary on
//! real SQLite files.
//!
//! - A generated spells file gives the same stored state whether it comes
//!   as UTF-8 CSV, GBK CSV or an XLSX workbook (dates as date cells or as
//!   text), and importing it twice changes nothing.
//! - Every kind of bad file is refused with its place named, and the
//!   database is byte for byte what it was.
//! - `--skip-bad REPORT` imports the good rows, writes the rejected ones
//!   with their reasons to REPORT, and still refuses a file whose problem
//!   is the whole file.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use rust_xlsxwriter::{ExcelDateTime, Format, Workbook};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::{Connection as _, Row as _};

mod common;

use common::{repository, BINARY};

/// A bureau's folder: a jiuzhu.toml with its data key, and SQLite
/// databases in the same folder, all under that one key (so that the blind
/// indexes of two databases can be compared).
struct Bureau {
    dir: tempfile::TempDir,
}

impl Bureau {
    fn new() -> Bureau {
        let bureau = Bureau {
            dir: tempfile::tempdir().unwrap(),
        };
        bureau.ok(&["init"]);
        bureau
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, bytes: impl AsRef<[u8]>) {
        std::fs::write(self.path(name), bytes).unwrap();
    }

    /// `sqlite://` URL of the database file `name`.
    fn url(&self, name: &str) -> String {
        format!("sqlite://{}", self.path(name).display())
    }

    /// Runs `jiuzhu ARGS` in the folder, whatever its exit status.
    fn run(&self, args: &[&str]) -> Output {
        Command::new(BINARY)
            .current_dir(self.dir.path())
            .env_remove("JIUZHU_DATA_KEY")
            .env_remove("JIUZHU_DATABASE")
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs `jiuzhu ARGS`, which must succeed; returns standard output.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// `jiuzhu import spells FILE --source 民政 [EXTRA] --database DB`.
    fn import_spells(&self, database: &str, file: &str, extra: &[&str]) -> Output {
        let url = self.url(database);
        let mut args = vec!["import", "spells", file, "--source", "民政"];
        args.extend(extra);
        args.extend(["--database", &url]);
        self.run(&args)
    }

    /// `jiuzhu import invoices FILE [EXTRA] --database DB`.
    fn import_invoices(&self, database: &str, file: &str, extra: &[&str]) -> Output {
        let url = self.url(database);
        let mut args = vec!["import", "invoices", file];
        args.extend(extra);
        args.extend(["--database", &url]);
        self.run(&args)
    }

    /// Loads `policy` into the database `database`.
    fn load_policy(&self, database: &str, policy: &str) {
        let url = self.url(database);
        self.ok(&["policy", "load", policy, "--database", &url]);
    }

    /// Brings the database `name` to rest, as a clean shutdown does: every
    /// committed write copied from the write-ahead log into the database
    /// file, and the log removed. (A command's connections may be cut at
    /// its exit before they close, leaving the log to the next one.) A
    /// checkpoint copies only what was committed: a database brought to
    /// rest is byte for byte the same file as long as nothing was written.
    async fn settle(&self, name: &str) {
        let options = SqliteConnectOptions::new()
            .filename(self.path(name))
            .journal_mode(SqliteJournalMode::Wal);
        let mut connection = sqlx::SqliteConnection::connect_with(&options).await.unwrap();
        sqlx::raw_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut connection)
            .await
            .unwrap();
        connection.close().await.unwrap();
        assert!(
            self.pending_log_bytes(name) == 0,
            "the write-ahead log of {name} is still there"
        );
    }

    /// The bytes of the database file `name`, brought to rest.
    async fn settled_bytes(&self, name: &str) -> Vec<u8> {
        self.settle(name).await;
        std::fs::read(self.path(name)).unwrap()
    }

    /// The size of the write-ahead log of the database `name`: 0 when
    /// there is none or it holds nothing.
    fn pending_log_bytes(&self, name: &str) -> u64 {
        std::fs::metadata(self.path(&format!("{name}-wal"))).map_or(0, |metadata| metadata.len())
    }

    /// Checks that nothing was written to the database `name` since its
    /// `before` bytes at rest: its file is the same and its log empty
    /// right away, and the same once brought to rest again.
    async fn assert_unchanged(&self, name: &str, before: &[u8], what: &str) {
        assert!(
            std::fs::read(self.path(name)).unwrap() == before,
            "{what}: the database file changed"
        );
        assert_eq!(self.pending_log_bytes(name), 0, "{what}: something was logged");
        assert!(
            self.settled_bytes(name).await == before,
            "{what}: the database changed"
        );
    }
}

fn fixture(path: &str) -> String {
    repository().join(path).display().to_string()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// What a database holds of the spells imported into it, without what
/// legitimately differs between two imports of the same rows (when, the
/// file's name, its digest, the random nonce of each encrypted ID): every
/// spell version with its person's blind index and whether it was
/// superseded, every person, every import's counts, every mark for
/// recomputation.
async fn spells_state(database: &str) -> Vec<String> {
    const QUERIES: [&str; 4] = [
        "SELECT 'spell ' || id || ' ' || hex(person_key) || ' ' || category || ' ' || valid_from || ' ' \
         || ifnull(valid_to, 'open') || ' ' || source || ' superseded by ' || ifnull(superseded_by, '-') \
         || ' import ' || ifnull(import_id, '-') AS line FROM spells ORDER BY id",
        "SELECT 'person ' || hex(person_key) || ' ' || resident_id_masked AS line FROM persons \
         ORDER BY person_key",
        "SELECT 'import ' || id || ' ' || kind || ' ' || source || ' ' || rows || ' ' || report AS line \
         FROM imports ORDER BY id",
        "SELECT 'mark ' || hex(person_key) || ' ' || since || ' import ' || import_id AS line \
         FROM recompute_marks ORDER BY rowid",
    ];
    let mut connection = sqlx::SqliteConnection::connect(database).await.unwrap();
    let mut lines = Vec::new();
    for query in QUERIES {
        for row in sqlx::query(query).fetch_all(&mut connection).await.unwrap() {
            lines.push(row.get::<String, _>("line"));
        }
    }
    connection.close().await.unwrap();
    lines
}

/// How many rows `table` holds.
async fn count(database: &str, table: &str) -> i64 {
    let mut connection = sqlx::SqliteConnection::connect(database).await.unwrap();
    let query = sqlx::AssertSqlSafe(format!("SELECT count(*) AS n FROM {table}"));
    let n = sqlx::query(query)
        .fetch_one(&mut connection)
        .await
        .unwrap()
        .get("n");
    connection.close().await.unwrap();
    n
}

/// A generated district's policy and spells, in `data/` of the bureau.
fn generated(bureau: &Bureau) -> String {
    bureau.ok(&[
        "gen",
        "--people",
        "60",
        "--invoices",
        "10",
        "--seed",
        "5",
        "--dir",
        "data",
    ]);
    std::fs::read_to_string(bureau.path("data/spells.csv")).unwrap()
}

/// How a workbook's date columns are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dates {
    /// Date cells formatted `yyyy-mm-dd`, as a spreadsheet holds dates.
    Cells,
    /// Text cells, as an export that writes every cell as text.
    Text,
}

/// `csv` (no quoted fields) as an XLSX workbook of one sheet; an empty
/// field is a cell left empty.
fn spells_workbook(csv: &str, dates: Dates) -> Vec<u8> {
    let mut workbook = Workbook::new();
    let date_format = Format::new().set_num_format("yyyy-mm-dd");
    let sheet = workbook.add_worksheet();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    for (column, name) in header.iter().enumerate() {
        sheet.write_string(0, column as u16, *name).unwrap();
    }
    for (row, line) in lines.enumerate() {
        let row = row as u32 + 1;
        for (column, field) in line.split(',').enumerate() {
            if field.is_empty() {
                continue;
            }
            let is_date = header[column].starts_with("valid_");
            if is_date && dates == Dates::Cells {
                let part = |range: std::ops::Range<usize>| field[range].parse().unwrap();
                let date = ExcelDateTime::from_ymd(part(0..4), part(5..7) as u8, part(8..10) as u8).unwrap();
                sheet
                    .write_datetime_with_format(row, column as u16, &date, &date_format)
                    .unwrap();
            } else {
                sheet.write_string(row, column as u16, field).unwrap();
            }
        }
    }
    workbook.save_to_buffer().unwrap()
}

#[tokio::test]
async fn a_spells_file_as_utf8_csv_gbk_csv_or_xlsx_gives_the_same_stored_state_and_twice_changes_nothing() {
    let bureau = Bureau::new();
    let csv = generated(&bureau);
    assert!(!csv.contains('"'), "the workbook writer splits on commas");
    assert!(csv.lines().count() > 50, "{csv}");
    let (gbk, _, unmappable) = encoding_rs::GBK.encode(&csv);
    assert!(!unmappable);
    assert!(
        std::str::from_utf8(&gbk).is_err(),
        "the GBK file must not also be UTF-8"
    );
    bureau.write("utf8.csv", &csv);
    bureau.write("gbk.csv", &gbk);
    bureau.write("date-cells.xlsx", spells_workbook(&csv, Dates::Cells));
    bureau.write("text-cells.xlsx", spells_workbook(&csv, Dates::Text));

    let mut states = Vec::new();
    for file in ["utf8.csv", "gbk.csv", "date-cells.xlsx", "text-cells.xlsx"] {
        let database = format!("{file}.db");
        bureau.load_policy(&database, "data/policy.toml");
        let output = bureau.import_spells(&database, file, &[]);
        assert!(output.status.success(), "{file}: {}", stderr(&output));
        let rows = csv.lines().count() - 1;
        assert!(
            stdout(&output).starts_with(&format!("{file} from 民政: {rows} rows; {rows} added, ")),
            "{file}: {}",
            stdout(&output)
        );
        let state = spells_state(&bureau.url(&database)).await;
        assert!(
            state.iter().filter(|line| line.starts_with("spell ")).count() == rows,
            "{file}: {state:?}"
        );
        states.push((file, state));

        // The same file again: already imported, not a byte changed.
        let before = bureau.settled_bytes(&database).await;
        let again = bureau.import_spells(&database, file, &[]);
        assert!(again.status.success(), "{file}: {}", stderr(&again));
        assert!(
            stdout(&again).contains(": already imported on ")
                && stdout(&again).ends_with(": nothing changed.\n"),
            "{file}: {}",
            stdout(&again)
        );
        bureau
            .assert_unchanged(&database, &before, &format!("{file} imported again"))
            .await;
    }
    let (first, expected) = &states[0];
    for (file, state) in &states[1..] {
        assert_eq!(state, expected, "{file} against {first}");
    }
}

/// A bureau with the example policy, the small fixture's spells and
/// invoices imported into `jiuzhu.db`: a store with something in it.
fn bureau_with_data() -> Bureau {
    let bureau = Bureau::new();
    bureau.load_policy("jiuzhu.db", &fixture("fixtures/example-policy.toml"));
    let spells = fixture("crates/cli/tests/data/small/spells.csv");
    assert!(bureau.import_spells("jiuzhu.db", &spells, &[]).status.success());
    let invoices = fixture("crates/cli/tests/data/small/invoices.csv");
    assert!(bureau
        .import_invoices("jiuzhu.db", &invoices, &[])
        .status
        .success());
    bureau
}

const SPELLS_HEADER: &str = "person_id,category,valid_from,valid_to,source";
/// Resident IDs of the example data whose check characters are right.
const ID: &str = "110105196001010017";
const OTHER_ID: &str = "110105196001010025";
const THIRD_ID: &str = "110105196001010033";

/// A spells file of good rows with `bad` as its line 3.
fn spells_with(bad: &str) -> String {
    format!(
        "{SPELLS_HEADER}\n\
         {ID},DB,2024-01-01,,\n\
         {bad}\n\
         {OTHER_ID},TK,2024-02-01,2024-12-31,残联\n"
    )
}

const INVOICES_HEADER: &str =
    "invoice_no,person_id,hospital,visit_type,service_date,settled_at,total,fund_paid,\
                               in_scope_self_pay,out_of_scope_self_pay";

/// An invoices file of good bills with `bad` as its line 3.
fn invoices_with(bad: &str) -> String {
    format!(
        "{INVOICES_HEADER}\n\
         B001,{ID},H009,outpatient,2024-06-01,2024-06-02T10:00:00+08:00,100,0,100,0\n\
         {bad}\n\
         B003,{THIRD_ID},H009,inpatient,2024-07-01,2024-07-03T10:00:00+08:00,3000,2000,900,100\n"
    )
}

/// Bytes that are neither text nor a workbook: a NUL among the first.
fn binary_garbage() -> Vec<u8> {
    (0..4000u32).map(|index| (index * 7919 % 251) as u8).collect()
}

/// Bytes without a NUL that are neither UTF-8 nor GBK.
fn undecodable(header: &str) -> Vec<u8> {
    let mut bytes = format!("{header}\n").into_bytes();
    bytes.extend_from_slice(b"\xFF\xFE\xFD,\x80\x80\n");
    bytes
}

/// A sparse file of 2 GiB: no room on disk, and long to read.
fn sparse_2_gib(bureau: &Bureau, name: &str) {
    std::fs::File::create(bureau.path(name))
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
}

/// Runs a refused import, with and without `--skip-bad` when `whole_file`
/// (a problem with the whole file refuses it either way): exit status 2,
/// nothing on standard output, standard error starting with `expected`
/// and saying nothing was imported, no report written, and the database
/// byte for byte what it was.
async fn assert_refused(
    bureau: &Bureau,
    import: fn(&Bureau, &str, &str, &[&str]) -> Output,
    file: &str,
    expected: &str,
    whole_file: bool,
) {
    let before = bureau.settled_bytes("jiuzhu.db").await;
    let mut runs: Vec<Vec<&str>> = vec![vec![]];
    if whole_file {
        runs.push(vec!["--skip-bad", "rejected.csv"]);
    }
    for extra in runs {
        let started = Instant::now();
        let output = import(bureau, "jiuzhu.db", file, &extra);
        let elapsed = started.elapsed();
        let errors = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{file} {extra:?}: {errors}");
        assert_eq!(stdout(&output), "", "{file} {extra:?}");
        assert!(
            errors.starts_with(expected),
            "{file} {extra:?}: expected {expected:?} first, got:\n{errors}"
        );
        assert!(
            errors.contains("Nothing was imported"),
            "{file} {extra:?}: {errors}"
        );
        assert!(
            elapsed < Duration::from_secs(20),
            "{file} {extra:?} took {elapsed:?}"
        );
        assert!(
            !bureau.path("rejected.csv").exists(),
            "{file} {extra:?}: a report was written"
        );
        bureau
            .assert_unchanged("jiuzhu.db", &before, &format!("{file} {extra:?}"))
            .await;
    }
}

fn spells_import(bureau: &Bureau, database: &str, file: &str, extra: &[&str]) -> Output {
    bureau.import_spells(database, file, extra)
}

fn invoices_import(bureau: &Bureau, database: &str, file: &str, extra: &[&str]) -> Output {
    bureau.import_invoices(database, file, extra)
}

#[tokio::test]
async fn every_kind_of_bad_spells_file_is_refused_with_its_place_named_and_the_database_untouched() {
    let bureau = bureau_with_data();
    let cases: [(&str, Vec<u8>, &str, bool); 9] = [
        (
            "checksum.csv",
            spells_with("110105196001010018,DB,2024-01-01,,").into_bytes(),
            "checksum.csv:3: person_id: check character is '8' but should be '7' (GB 11643)\n",
            false,
        ),
        (
            "category.csv",
            spells_with(&format!("{THIRD_ID},XX,2024-01-01,,")).into_bytes(),
            "category.csv:3: category: \"XX\" is not a category of the policy; its categories are ",
            false,
        ),
        (
            "backwards.csv",
            spells_with(&format!("{THIRD_ID},DB,2024-03-02,2024-03-01,")).into_bytes(),
            "backwards.csv:3: valid_to: ends on 2024-03-01, before it starts on 2024-03-02\n",
            false,
        ),
        (
            "date.csv",
            spells_with(&format!("{THIRD_ID},DB,2024-02-30,,")).into_bytes(),
            "date.csv:3: valid_from: \"2024-02-30\" is not a day of the calendar\n",
            false,
        ),
        (
            "columns.csv",
            format!("person_id,category,valid_to\n{ID},DB,\n").into_bytes(),
            "columns.csv:1: valid_from: is missing from the header",
            true,
        ),
        (
            "garbage.csv",
            binary_garbage(),
            "garbage.csv:1: holds binary data (a NUL byte on line 1), not CSV text",
            true,
        ),
        (
            "undecodable.csv",
            undecodable(SPELLS_HEADER),
            "undecodable.csv:2: is neither UTF-8 nor GBK text",
            true,
        ),
        (
            "empty.csv",
            Vec::new(),
            "empty.csv:1: is empty: expected a header row naming the columns",
            true,
        ),
        (
            "fake.xlsx",
            b"PK\x03\x04 not really a workbook".to_vec(),
            "fake.xlsx",
            true,
        ),
    ];
    for (file, bytes, expected, whole_file) in cases {
        bureau.write(file, bytes);
        assert_refused(&bureau, spells_import, file, expected, whole_file).await;
    }
    // Refused by the size limit before it is read.
    sparse_2_gib(&bureau, "huge.csv");
    assert_refused(
        &bureau,
        spells_import,
        "huge.csv",
        "huge.csv: is 2 GiB (2147483648 bytes), more than the 1 GiB (1073741824 bytes) allowed: split it into \
         smaller files\n",
        true,
    )
    .await;
}

#[tokio::test]
async fn every_kind_of_bad_invoices_file_is_refused_with_its_place_named_and_the_database_untouched() {
    let bureau = bureau_with_data();
    let bill = |person: &str, visit_type: &str, service_date: &str, amounts: &str| {
        format!("B002,{person},H009,{visit_type},{service_date},2024-06-02T10:00:00+08:00,{amounts}")
    };
    let cases: [(&str, Vec<u8>, &str, bool); 9] = [
        (
            "checksum.csv",
            invoices_with(&bill("110105196001010018", "outpatient", "2024-06-01", "100,0,100,0")).into_bytes(),
            "checksum.csv:3: person_id: check character is '8' but should be '7' (GB 11643)\n",
            false,
        ),
        (
            "visit.csv",
            invoices_with(&bill(OTHER_ID, "dental", "2024-06-01", "100,0,100,0")).into_bytes(),
            "visit.csv:3: visit_type: \"dental\" is not a known visit type; the known ones are ",
            false,
        ),
        (
            "date.csv",
            invoices_with(&bill(OTHER_ID, "outpatient", "2024-13-01", "100,0,100,0")).into_bytes(),
            "date.csv:3: service_date: \"2024-13-01\" is not a day of the calendar\n",
            false,
        ),
        (
            "sum.csv",
            invoices_with(&bill(OTHER_ID, "outpatient", "2024-06-01", "100,0,99,0")).into_bytes(),
            "sum.csv:3: total: fund_paid 0.00 + in_scope_self_pay 99.00 + out_of_scope_self_pay 0.00 = 99.00, \
             but total is 100.00\n",
            false,
        ),
        (
            "columns.csv",
            "invoice_no,person_id,hospital,visit_type,service_date,settled_at,total,fund_paid,in_scope_self_pay\n"
                .as_bytes()
                .to_vec(),
            "columns.csv:1: out_of_scope_self_pay: is missing from the header",
            true,
        ),
        (
            "garbage.csv",
            binary_garbage(),
            "garbage.csv:1: holds binary data (a NUL byte on line 1), not CSV text",
            true,
        ),
        (
            "undecodable.csv",
            undecodable(INVOICES_HEADER),
            "undecodable.csv:2: is neither UTF-8 nor GBK text",
            true,
        ),
        (
            "empty.csv",
            Vec::new(),
            "empty.csv:1: is empty: expected a header row naming the columns",
            true,
        ),
        (
            "fake.xlsx",
            b"PK\x03\x04 not really a workbook".to_vec(),
            "fake.xlsx",
            true,
        ),
    ];
    for (file, bytes, expected, whole_file) in cases {
        bureau.write(file, bytes);
        assert_refused(&bureau, invoices_import, file, expected, whole_file).await;
    }
    // The feed is streamed, with no size limit; 2 GiB of nothing is
    // refused at its first line, not read to the end.
    sparse_2_gib(&bureau, "huge.csv");
    assert_refused(
        &bureau,
        invoices_import,
        "huge.csv",
        "huge.csv:1: holds binary data (a NUL byte on line 1), not CSV text",
        true,
    )
    .await;
}

/// The number on the line of a feed's report that starts with `label`.
fn reported(report: &str, label: &str) -> u64 {
    let line = report
        .lines()
        .find(|line| line.trim_start().starts_with(label))
        .unwrap_or_else(|| panic!("no {label:?} in {report}"));
    line.trim_start()[label.len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .replace(',', "")
        .parse()
        .unwrap()
}

/// The records of a rejected-rows report (after its BOM), each as its
/// fields; the report's fields hold no comma or quote here but in the
/// message, which is the third.
fn report_rows(report: &str) -> Vec<(String, String, String)> {
    let text = report.strip_prefix('\u{FEFF}').expect("a BOM");
    text.split("\r\n")
        .skip(1)
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (line_no, rest) = line.split_once(',').unwrap();
            let (column, rest) = rest.split_once(',').unwrap();
            let message = if let Some(quoted) = rest.strip_prefix('"') {
                quoted.split_once("\",").unwrap().0.replace("\"\"", "\"")
            } else {
                rest.split_once(',').unwrap().0.to_owned()
            };
            (line_no.to_owned(), column.to_owned(), message)
        })
        .collect()
}

#[tokio::test]
async fn with_skip_bad_the_good_spells_are_imported_and_the_two_bad_rows_reported() {
    let bureau = bureau_with_data();
    let database = bureau.url("jiuzhu.db");
    let spells_before = count(&database, "spells").await;
    let good = [
        format!("{ID},ZC,2024-01-01,,"),
        format!("{OTHER_ID},ZC,2024-02-01,2024-12-31,残联"),
        format!("{THIRD_ID},ZC,2024-03-01,,"),
        "11010519600101005X,ZC,2024-04-01,,".to_owned(),
    ];
    let text = format!(
        "{SPELLS_HEADER}\n{}\n110105196001010018,ZC,2024-01-01,,\n{}\n{}\n{THIRD_ID},XX,2024-01-01,,\n{}\n",
        good[0], good[1], good[2], good[3]
    );
    bureau.write("mixed.csv", &text);

    let output = bureau.import_spells("jiuzhu.db", "mixed.csv", &["--skip-bad", "rejected.csv"]);
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "mixed.csv from 民政: 4 rows; 4 added, 0 changed, 0 unchanged; 1 new recipient, 0 changed, \
         0 ended; 4 marked for recomputation.\n\
         4 rows passed their checks and were imported; 2 rows were rejected and not imported: they are in \
         rejected.csv with their reasons.\n"
    );
    let errors = stderr(&output);
    assert!(
        errors.starts_with(
            "mixed.csv:3: person_id: check character is '8' but should be '7' (GB 11643)\n\
             mixed.csv:6: category: \"XX\" is not a category of the policy;"
        ),
        "{errors}"
    );
    assert!(
        errors.ends_with(
            "These rows were rejected and not imported: they are in rejected.csv with their reasons.\n"
        ),
        "{errors}"
    );
    assert_eq!(count(&database, "spells").await, spells_before + 4);
    let report = std::fs::read_to_string(bureau.path("rejected.csv")).unwrap();
    assert!(
        report.starts_with("\u{FEFF}line,column,message,person_id,category,valid_from,valid_to,source\r\n"),
        "{report}"
    );
    let rows = report_rows(&report);
    assert_eq!(rows.len(), 2, "{report}");
    assert_eq!(
        rows[0],
        (
            "3".into(),
            "person_id".into(),
            "check character is '8' but should be '7' (GB 11643)".into()
        )
    );
    assert_eq!((rows[1].0.as_str(), rows[1].1.as_str()), ("6", "category"));
    assert!(rows[1].2.starts_with("\"XX\" is not a category"), "{report}");
    assert!(
        report.contains(",110105196001010018,ZC,2024-01-01,,\r\n"),
        "{report}"
    );

    // The same file with the same rows set aside: already imported.
    let before = bureau.settled_bytes("jiuzhu.db").await;
    let again = bureau.import_spells("jiuzhu.db", "mixed.csv", &["--skip-bad", "rejected.csv"]);
    assert_eq!(again.status.code(), Some(4), "{}", stderr(&again));
    assert!(
        stdout(&again).contains("already imported on "),
        "{}",
        stdout(&again)
    );
    bureau
        .assert_unchanged("jiuzhu.db", &before, "the same part again")
        .await;

    // Once a policy defines XX, the same file has one bad row less: it is
    // not taken for the import of before, and its XX row is added.
    let policy = std::fs::read_to_string(repository().join("fixtures/example-policy.toml")).unwrap();
    bureau.write(
        "with-xx.toml",
        format!("{policy}\n[[category]]\ncode = \"XX\"\nrank = 99\n"),
    );
    bureau.load_policy("jiuzhu.db", "with-xx.toml");
    let wider = bureau.import_spells("jiuzhu.db", "mixed.csv", &["--skip-bad", "rejected.csv"]);
    assert_eq!(wider.status.code(), Some(4), "{}", stderr(&wider));
    assert!(
        stdout(&wider).starts_with("mixed.csv from 民政: 5 rows; 1 added, 0 changed, 4 unchanged;"),
        "{}",
        stdout(&wider)
    );
    assert_eq!(
        report_rows(&std::fs::read_to_string(bureau.path("rejected.csv")).unwrap()).len(),
        1
    );

    // The corrected file, imported whole: only the corrected row is new.
    bureau.write(
        "corrected.csv",
        text.replace("110105196001010018", "110105196001010068"),
    );
    let corrected = bureau.import_spells("jiuzhu.db", "corrected.csv", &[]);
    assert_eq!(corrected.status.code(), Some(0), "{}", stderr(&corrected));
    assert!(
        stdout(&corrected).starts_with("corrected.csv from 民政: 6 rows; 1 added, 0 changed, 5 unchanged;"),
        "{}",
        stdout(&corrected)
    );
    assert_eq!(count(&database, "spells").await, spells_before + 6);
    let verified = bureau.ok(&["audit", "verify", "--database", &database]);
    assert!(verified.contains("The audit chain is whole"), "{verified}");
}

#[tokio::test]
async fn with_skip_bad_the_good_bills_are_decided_and_the_two_bad_rows_reported() {
    let bureau = bureau_with_data();
    let database = bureau.url("jiuzhu.db");
    let decisions_before = count(&database, "decisions").await;
    let text = format!(
        "{INVOICES_HEADER}\n\
         S001,{ID},H009,outpatient,2024-06-01,2024-06-02T10:00:00+08:00,100,0,100,0\n\
         S002,{ID},H009,dental,2024-06-01,2024-06-02T10:00:00+08:00,100,0,100,0\n\
         S003,{OTHER_ID},H009,outpatient,2024-06-05,2024-06-06T10:00:00+08:00,200,100,100,0\n\
         S004,{THIRD_ID},H009,inpatient,2024-07-01,2024-07-03T10:00:00+08:00,3000,2000,900,100\n\
         S005,{OTHER_ID},H009,outpatient,2024-06-07,2024-06-08T10:00:00+08:00,100,0,99,0\n\
         S006,{ID},H009,outpatient,2024-06-09,2024-06-10T10:00:00+08:00,50,0,50,0\n"
    );
    bureau.write("feed.csv", &text);
    let output = bureau.import_invoices("jiuzhu.db", "feed.csv", &["--skip-bad", "rejected.csv"]);
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    let report = stdout(&output);
    assert_eq!(reported(&report, "rows read"), 6, "{report}");
    assert_eq!(reported(&report, "rejected"), 2, "{report}");
    assert!(
        report.contains(
            "   rows that failed their checks: not stored; each with its reasons in rejected.csv\n"
        ),
        "{report}"
    );
    assert_eq!(reported(&report, "decided now"), 4, "{report}");
    assert!(
        report.ends_with(
            "4 rows passed their checks and were imported; 2 rows were rejected and not imported: they are \
             in rejected.csv with their reasons.\n"
        ),
        "{report}"
    );
    let errors = stderr(&output);
    assert!(
        errors.starts_with("feed.csv:3: visit_type: \"dental\" is not a known visit type;"),
        "{errors}"
    );
    assert!(errors.contains("\nfeed.csv:6: total: "), "{errors}");
    assert_eq!(count(&database, "decisions").await, decisions_before + 4);
    let rows = report_rows(&std::fs::read_to_string(bureau.path("rejected.csv")).unwrap());
    let places: Vec<(&str, &str)> = rows
        .iter()
        .map(|(line, column, _)| (line.as_str(), column.as_str()))
        .collect();
    assert_eq!(places, vec![("3", "visit_type"), ("6", "total")]);

    // Again: the good bills are already decided; nothing changes.
    let before = bureau.settled_bytes("jiuzhu.db").await;
    let again = bureau.import_invoices("jiuzhu.db", "feed.csv", &["--skip-bad", "rejected.csv"]);
    assert_eq!(again.status.code(), Some(4), "{}", stderr(&again));
    assert_eq!(reported(&stdout(&again), "already decided"), 4);
    assert_eq!(reported(&stdout(&again), "decided now"), 0);
    bureau
        .assert_unchanged("jiuzhu.db", &before, "the same feed again")
        .await;

    // The corrected file, imported whole: the two corrected bills alone
    // are decided.
    bureau.write(
        "corrected.csv",
        text.replace(",dental,", ",outpatient,")
            .replace("100,0,99,0", "100,0,100,0"),
    );
    let corrected = bureau.import_invoices("jiuzhu.db", "corrected.csv", &[]);
    assert_eq!(corrected.status.code(), Some(0), "{}", stderr(&corrected));
    assert_eq!(reported(&stdout(&corrected), "decided now"), 2);
    assert_eq!(reported(&stdout(&corrected), "already decided"), 4);
    assert_eq!(count(&database, "decisions").await, decisions_before + 6);
}

#[tokio::test]
async fn with_skip_bad_a_file_of_nothing_but_bad_rows_imports_nothing() {
    let bureau = bureau_with_data();
    bureau.write(
        "all-bad.csv",
        format!("{SPELLS_HEADER}\n110105196001010018,DB,2024-01-01,,\n{ID},XX,2024-01-01,,\n"),
    );
    let before = bureau.settled_bytes("jiuzhu.db").await;
    let output = bureau.import_spells("jiuzhu.db", "all-bad.csv", &["--skip-bad", "rejected.csv"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert_eq!(stdout(&output), "");
    assert!(
        stderr(&output).ends_with(
            "Nothing was imported: no row passed its checks; the rejected rows and their reasons are in \
             rejected.csv.\n"
        ),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        report_rows(&std::fs::read_to_string(bureau.path("rejected.csv")).unwrap()).len(),
        2
    );
    bureau
        .assert_unchanged("jiuzhu.db", &before, "a file of bad rows")
        .await;

    // The report may not replace the file imported.
    let output = bureau.import_spells("jiuzhu.db", "all-bad.csv", &["--skip-bad", "all-bad.csv"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("is the file being imported"),
        "{}",
        stderr(&output)
    );
    assert!(std::fs::read_to_string(bureau.path("all-bad.csv"))
        .unwrap()
        .starts_with(SPELLS_HEADER));
    bureau
        .assert_unchanged("jiuzhu.db", &before, "a report in place of the file")
        .await;
}

#[test]
fn the_help_of_both_imports_documents_skip_bad_and_the_exit_statuses() {
    let bureau = Bureau::new();
    for kind in ["spells", "invoices"] {
        let help = bureau.ok(&["import", kind, "--help"]);
        assert!(help.contains("--skip-bad <REPORT>"), "{help}");
        assert!(help.contains("4 imported with --skip-bad"), "{help}");
    }
}
