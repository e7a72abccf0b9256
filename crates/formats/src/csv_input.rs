//! What the CSV readers share (`formats.md`, general rules): the text
//! encoding (UTF-8 with an optional BOM, else GBK/GB18030), RFC 4180 records
//! with the line each starts on, header matching, and one driver that reads
//! a file in bounded chunks and parses each chunk's pieces in parallel,
//! keeping file order.
//!
//! How a file is cut: a record ends at a line feed outside quotes. Every
//! double quote toggles "inside quotes" (in a well-formed file that is
//! exactly RFC 4180; a quote anywhere else is reported as a problem but
//! still toggles), so a line feed ends a record exactly when the number of
//! quotes before it is even. Counting quotes and line feeds is done in
//! parallel, which gives the record boundaries near each piece's start and
//! the line number of each piece before any piece is parsed. In GBK and
//! GB18030 the bytes `\n`, `"` and `,` never occur inside a multi-byte
//! character, so the same cutting works on the raw bytes of either encoding.

use std::borrow::Cow;
use std::io::{self, Read, Seek, SeekFrom};
use std::sync::atomic::{AtomicU64, Ordering};

use encoding_rs::{DecoderResult, GB18030};
use memchr::{memchr, memchr2, memchr_iter, memrchr2};
use rayon::prelude::*;

use crate::partitioned::{RejectedRow, MAX_REJECTED_BYTES};
use crate::problem::{Problem, Problems, MAX_PROBLEMS_REPORTED};

/// How much of a file is read at a time; also the longest record a file
/// read from disk may hold.
pub(crate) const CHUNK_BYTES: usize = 32 << 20;
/// The size of the pieces a chunk is split into for parallel parsing.
pub(crate) const PIECE_BYTES: usize = 1 << 20;
/// A NUL byte among the first this many bytes marks a binary file.
const SNIFF_BYTES: usize = 8000;
const BOM: &[u8] = b"\xEF\xBB\xBF";
/// The field index of a column the header does not name.
const ABSENT: usize = usize::MAX;

/// A column a reader knows.
#[derive(Debug)]
pub(crate) struct Column {
    pub name: &'static str,
    pub required: bool,
    /// What it holds: how a spreadsheet cell becomes its text.
    pub kind: CellKind,
}

/// What a column holds, for turning a spreadsheet cell into the text a CSV
/// field would hold (CSV fields are text already).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CellKind {
    /// Free text; a number is taken as the text Excel would show.
    Text,
    /// An identifier: text only, since a number loses digits in Excel.
    Identifier,
    /// A date: `YYYY-MM-DD` text or a date cell without a time of day.
    Date,
    /// A timestamp with an offset: text only.
    Timestamp,
    /// Yuan: text or a number.
    Money,
}

/// Whether a bad record refuses the whole file, or is set aside with its
/// reasons while the good ones are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Strict,
    Lenient,
}

/// What a read found: the header's names, the good rows (with their lines
/// when lenient) and, when lenient, the rejected records.
#[derive(Debug)]
pub(crate) struct Outcome<Row> {
    pub header: Vec<String>,
    pub rows: Vec<Row>,
    /// The line of each row; only when lenient.
    pub lines: Vec<u64>,
    pub rejected: Vec<RejectedRow>,
}

/// A problem with one cell of a sheet found before its text is checked:
/// `column` indexes the format's columns.
#[derive(Debug)]
pub(crate) struct CellProblem {
    pub column: usize,
    pub message: String,
}

/// One kind of CSV file: its columns and how a record becomes a row.
pub(crate) trait CsvFormat: Sync {
    type Row: Send;
    /// The known columns; a reader refers to them by index.
    const COLUMNS: &'static [Column];
    /// The most records a file may hold.
    const MAX_RECORDS: u64 = u64::MAX;

    /// Checks one record (with as many fields as the header). Every problem
    /// goes to `problems`; a row is returned only when there is none.
    fn read_row(
        &self,
        layout: &Layout,
        record: &Record<'_>,
        problems: &mut RowProblems<'_>,
    ) -> Option<Self::Row>;

    /// Tells a row its 0-based position among the file's records.
    fn place(_row: &mut Self::Row, _position: u64) {}

    /// Tells a row the 1-based line its record starts on.
    fn at_line(_row: &mut Self::Row, _line: u64) {}
}

/// The header of one file: which field holds each known column.
#[derive(Debug)]
pub(crate) struct Layout {
    /// Per known column, its field index, or [`ABSENT`].
    fields: Vec<usize>,
    /// The header's names, by field index.
    names: Vec<String>,
}

impl Layout {
    /// The field index of a known column ([`ABSENT`] when the header does not
    /// name it: then [`Record::get`] gives an empty field).
    pub fn field(&self, column: usize) -> usize {
        self.fields.get(column).copied().unwrap_or(ABSENT)
    }

    fn field_count(&self) -> usize {
        self.names.len()
    }

    /// The header's names, by field index.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

/// One record's fields, as text (UTF-8, decoded if the file was GBK).
#[derive(Debug)]
pub(crate) struct Record<'a> {
    text: &'a [u8],
    bounds: &'a [(usize, usize)],
    /// The line the record starts on.
    line: u64,
}

impl<'a> Record<'a> {
    /// A record of fields `bounds` within `text`, starting on `line`.
    pub fn new(text: &'a [u8], bounds: &'a [(usize, usize)], line: u64) -> Record<'a> {
        Record { text, bounds, line }
    }

    /// The line the record starts on (1 is the header's, when the file
    /// has no blank lines before it).
    pub fn line(&self) -> u64 {
        self.line
    }

    /// The field at `index`; empty when there is none.
    pub fn get(&self, index: usize) -> &'a [u8] {
        match self.bounds.get(index) {
            Some(&(start, end)) => self.text.get(start..end).unwrap_or_default(),
            None => &[],
        }
    }
}

/// A field as text, for messages.
pub(crate) fn text(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// The problems of one record, reported in the order of the file's columns.
#[derive(Debug)]
pub(crate) struct RowProblems<'a> {
    layout: &'a Layout,
    columns: &'static [Column],
    /// (field index, column name, message)
    found: Vec<(usize, &'static str, String)>,
    /// When the report is full, messages are not built, only counted.
    quiet: bool,
}

impl RowProblems<'_> {
    pub fn add(&mut self, column: usize, message: impl FnOnce() -> String) {
        let name = self.columns.get(column).map_or("", |column| column.name);
        let message = if self.quiet { String::new() } else { message() };
        self.found.push((self.layout.field(column), name, message));
    }

    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }
}

/// The encoding a pass reads a file in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TextEncoding {
    Utf8,
    Gb18030,
}

/// How one pass over a file ended.
enum PassEnd<Row> {
    Done(Result<Outcome<Row>, Problems>),
    /// Not UTF-8: the line of the first bad byte.
    NotUtf8(u64),
    /// Not GB18030 either: the line of the first bad byte.
    NotGb18030(u64),
}

/// Reads a CSV file from any seekable source, `chunk_bytes` at a time.
#[cfg(test)]
pub(crate) fn read_stream<F: CsvFormat, R: Read + Seek + Send>(
    file: &str,
    source: &mut R,
    size: Option<u64>,
    format: &F,
    chunk_bytes: usize,
    piece_bytes: usize,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<F::Row>, Problems> {
    let sizes = (chunk_bytes, piece_bytes);
    read_stream_in(file, source, size, format, Mode::Strict, sizes, progress).map(|outcome| outcome.rows)
}

/// Reads a CSV file from any seekable source, in chunks and pieces of
/// `(chunk_bytes, piece_bytes)`.
pub(crate) fn read_stream_in<F: CsvFormat, R: Read + Seek + Send>(
    file: &str,
    source: &mut R,
    size: Option<u64>,
    format: &F,
    mode: Mode,
    (chunk_bytes, piece_bytes): (usize, usize),
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Outcome<F::Row>, Problems> {
    // Progress is reported once per byte even when a second pass (GBK)
    // reads the file again.
    let reported = std::sync::atomic::AtomicU64::new(0);
    let mut pass = |encoding: TextEncoding| -> Result<PassEnd<F::Row>, io::Error> {
        source.seek(SeekFrom::Start(0))?;
        let mut consumed: u64 = 0;
        let report = |consumed: u64| {
            let before = reported.fetch_max(consumed, std::sync::atomic::Ordering::Relaxed);
            if consumed > before {
                progress(consumed - before);
            }
        };
        stream_pass(
            file,
            source,
            size,
            format,
            (encoding, mode),
            chunk_bytes,
            piece_bytes,
            &mut |bytes| {
                consumed += bytes;
                report(consumed);
            },
        )
    };
    let io_problem =
        |error: io::Error| Problems::from(Problem::whole_file(file, format!("cannot be read: {error}")));
    match pass(TextEncoding::Utf8).map_err(io_problem)? {
        PassEnd::Done(result) => result,
        PassEnd::NotUtf8(utf8_line) => match pass(TextEncoding::Gb18030).map_err(io_problem)? {
            PassEnd::Done(result) => result,
            PassEnd::NotGb18030(gbk_line) | PassEnd::NotUtf8(gbk_line) => {
                Err(neither_utf8_nor_gbk(file, utf8_line, gbk_line).into())
            }
        },
        PassEnd::NotGb18030(line) => Err(neither_utf8_nor_gbk(file, line, line).into()),
    }
}

/// Reads a CSV file held in memory.
#[cfg(test)]
pub(crate) fn read_slice<F: CsvFormat>(
    file: &str,
    bytes: &[u8],
    format: &F,
    piece_bytes: usize,
) -> Result<Vec<F::Row>, Problems> {
    read_slice_in(file, bytes, format, Mode::Strict, piece_bytes).map(|outcome| outcome.rows)
}

/// Reads a CSV file held in memory.
pub(crate) fn read_slice_in<F: CsvFormat>(
    file: &str,
    bytes: &[u8],
    format: &F,
    mode: Mode,
    piece_bytes: usize,
) -> Result<Outcome<F::Row>, Problems> {
    let pass = |encoding: TextEncoding| -> PassEnd<F::Row> {
        if let Some(problem) = sniff(file, bytes, F::COLUMNS) {
            return PassEnd::Done(Err(problem.into()));
        }
        let mut processor = Processor::new(file, format, (encoding, mode), piece_bytes);
        let mut accumulator = Accumulator::new(file, Some(bytes.len() as u64));
        let plan = match processor.plan(bytes, true) {
            Ok(plan) => plan,
            Err(end) => return end,
        };
        let buffers = accumulator.take_buffers(plan.pieces.len());
        let parsed = processor.parse(bytes, &plan, buffers, accumulator.keeps_rows());
        if let Some(end) = accumulator.merge::<F>(parsed) {
            return end;
        }
        PassEnd::Done(accumulator.finish::<F>(processor.layout.take()))
    };
    match pass(TextEncoding::Utf8) {
        PassEnd::Done(result) => result,
        PassEnd::NotUtf8(utf8_line) => match pass(TextEncoding::Gb18030) {
            PassEnd::Done(result) => result,
            PassEnd::NotGb18030(gbk_line) | PassEnd::NotUtf8(gbk_line) => {
                Err(neither_utf8_nor_gbk(file, utf8_line, gbk_line).into())
            }
        },
        PassEnd::NotGb18030(line) => Err(neither_utf8_nor_gbk(file, line, line).into()),
    }
}

fn neither_utf8_nor_gbk(file: &str, utf8_line: u64, gbk_line: u64) -> Problem {
    let message = if utf8_line == gbk_line {
        format!(
            "is neither UTF-8 nor GBK text: line {utf8_line} holds bytes that are valid in neither; \
             save the file as CSV in UTF-8"
        )
    } else {
        format!(
            "is neither UTF-8 nor GBK text: read as UTF-8 it breaks on line {utf8_line}, read as GBK \
             on line {gbk_line}; save the file as CSV in UTF-8"
        )
    };
    Problem::at_line(file, utf8_line.min(gbk_line), message)
}

/// One pass over a stream, in three overlapping stages: while the pieces of
/// one chunk are parsed in parallel, the next chunk is read into the other
/// buffer and the rows of the previous chunk are merged.
#[allow(clippy::too_many_arguments)]
fn stream_pass<F: CsvFormat, R: Read + Send>(
    file: &str,
    source: &mut R,
    size: Option<u64>,
    format: &F,
    (encoding, mode): (TextEncoding, Mode),
    chunk_bytes: usize,
    piece_bytes: usize,
    consumed: &mut dyn FnMut(u64),
) -> Result<PassEnd<F::Row>, io::Error> {
    // A small file needs no more buffer than itself (and one byte to see
    // its end).
    let capacity = match size {
        Some(size) => chunk_bytes.min(usize::try_from(size.saturating_add(1)).unwrap_or(usize::MAX)),
        None => chunk_bytes,
    }
    .max(1);
    let mut current = vec![0u8; capacity];
    let mut next: Vec<u8> = Vec::new();
    let mut filled = read_full(source, &mut current)?;
    if let Some(problem) = sniff(file, &current[..filled], F::COLUMNS) {
        return Ok(PassEnd::Done(Err(problem.into())));
    }
    let mut eof = filled < current.len();
    let mut processor = Processor::new(file, format, (encoding, mode), piece_bytes);
    let mut accumulator = Accumulator::new(file, size);
    // The previous chunk's pieces, parsed but not merged yet.
    let mut pending: Vec<PieceOutput<F::Row>> = Vec::new();
    loop {
        let data = &current[..filled];
        let plan = match processor.plan(data, eof) {
            Ok(plan) => plan,
            Err(end) => return Ok(end),
        };
        if plan.cut == 0 && !eof {
            if let Some(end) = accumulator.merge::<F>(std::mem::take(&mut pending)) {
                return Ok(end);
            }
            accumulator
                .problems
                .push(too_long(file, processor.line, data, capacity));
            return Ok(PassEnd::Done(accumulator.finish::<F>(processor.layout.take())));
        }
        let leftover = filled - plan.cut;
        if !eof {
            next.resize(current.len(), 0);
            next[..leftover].copy_from_slice(&data[plan.cut..]);
        }
        let buffers = accumulator.take_buffers(plan.pieces.len());
        let keep_rows = accumulator.keeps_rows();
        let previous = std::mem::take(&mut pending);
        let ((merged, read), parsed) = rayon::join(
            || {
                rayon::join(
                    || accumulator.merge::<F>(previous),
                    || {
                        if eof {
                            Ok(0)
                        } else {
                            read_full(source, &mut next[leftover..])
                        }
                    },
                )
            },
            || processor.parse(data, &plan, buffers, keep_rows),
        );
        consumed(plan.cut as u64);
        if let Some(end) = merged {
            return Ok(end);
        }
        pending = parsed;
        if eof {
            break;
        }
        let read = read?;
        eof = read < next.len() - leftover;
        filled = leftover + read;
        std::mem::swap(&mut current, &mut next);
    }
    if let Some(end) = accumulator.merge::<F>(pending) {
        return Ok(end);
    }
    Ok(PassEnd::Done(accumulator.finish::<F>(processor.layout.take())))
}

fn too_long(file: &str, line: u64, data: &[u8], capacity: usize) -> Problem {
    let limit = if capacity >= 1 << 20 {
        format!("{} MiB", capacity >> 20)
    } else {
        format!("{capacity} bytes")
    };
    let message = if memchr(b'"', data).is_some() {
        format!(
            "a record runs on for more than {limit}: a double quote opened in it is probably never closed"
        )
    } else {
        format!("a line is longer than {limit}; this does not look like a CSV file")
    };
    Problem::at_line(file, line, message)
}

/// Reads until `buffer` is full or the source ends; returns the bytes read.
fn read_full(source: &mut impl Read, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match source.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

/// Refuses what is plainly not CSV text, from the first bytes of a file.
fn sniff(file: &str, start: &[u8], columns: &[Column]) -> Option<Problem> {
    if start.is_empty() {
        return Some(Problem::at_line(
            file,
            1,
            format!(
                "is empty: expected a header row naming the columns {}",
                column_list(columns)
            ),
        ));
    }
    if start.starts_with(b"\xFF\xFE") || start.starts_with(b"\xFE\xFF") {
        return Some(Problem::at_line(
            file,
            1,
            "is UTF-16 text, not UTF-8 or GBK: save the file as CSV in UTF-8",
        ));
    }
    let head = &start[..start.len().min(SNIFF_BYTES)];
    memchr(0, head).map(|at| binary(file, 1 + count_newlines(&head[..at])))
}

fn binary(file: &str, line: u64) -> Problem {
    Problem::at_line(
        file,
        line,
        format!("holds binary data (a NUL byte on line {line}), not CSV text: is this the right file?"),
    )
}

fn column_list(columns: &[Column]) -> String {
    columns
        .iter()
        .map(|column| column.name)
        .collect::<Vec<_>>()
        .join(",")
}

fn count_newlines(bytes: &[u8]) -> u64 {
    memchr_iter(b'\n', bytes).count() as u64
}

/// Decodes GB18030 (a superset of GBK) strictly; on a malformed sequence,
/// its offset.
fn decode_gb18030(bytes: &[u8]) -> Result<String, usize> {
    let mut decoder = GB18030.new_decoder_without_bom_handling();
    let capacity = decoder
        .max_utf8_buffer_length_without_replacement(bytes.len())
        .unwrap_or(bytes.len().saturating_mul(3));
    let mut decoded = String::with_capacity(capacity);
    let mut offset = 0;
    loop {
        let (result, read) =
            decoder.decode_to_string_without_replacement(&bytes[offset..], &mut decoded, true);
        offset += read;
        match result {
            DecoderResult::InputEmpty => return Ok(decoded),
            DecoderResult::OutputFull => decoded.reserve(decoded.capacity().max(64)),
            DecoderResult::Malformed(bad, after) => {
                return Err(offset.saturating_sub(usize::from(bad) + usize::from(after)));
            }
        }
    }
}

/// A stretch of a chunk made of whole records, with the line it starts on.
#[derive(Debug, Clone, Copy)]
struct Piece {
    start: usize,
    end: usize,
    line: u64,
}

/// How a chunk is to be parsed: its pieces, and how far it is consumed.
#[derive(Debug)]
struct Plan {
    pieces: Vec<Piece>,
    /// Bytes of the chunk consumed (the rest is an unfinished record).
    cut: usize,
    /// The line the first byte after `cut` is on.
    next_line: u64,
}

/// One pass over one file in one encoding: finds the header, then splits
/// chunk after chunk into pieces and parses them.
struct Processor<'a, F: CsvFormat> {
    file: &'a str,
    format: &'a F,
    encoding: TextEncoding,
    mode: Mode,
    piece_bytes: usize,
    at_file_start: bool,
    layout: Option<Layout>,
    /// The line of the next byte to come.
    line: u64,
    /// The estimated memory of the records rejected so far in this pass,
    /// across the pieces parsed in parallel: past [`MAX_REJECTED_BYTES`],
    /// rejected records are no longer kept.
    rejected_bytes: AtomicU64,
}

enum HeaderProgress {
    /// The header ends at this offset.
    Found(usize),
    /// No header yet: blank lines up to this offset were consumed.
    Pending(usize),
}

impl<'a, F: CsvFormat> Processor<'a, F> {
    fn new(file: &'a str, format: &'a F, (encoding, mode): (TextEncoding, Mode), piece_bytes: usize) -> Self {
        Processor {
            file,
            format,
            encoding,
            mode,
            piece_bytes: piece_bytes.max(1),
            at_file_start: true,
            layout: None,
            line: 1,
            rejected_bytes: AtomicU64::new(0),
        }
    }

    /// Takes the header if it is still to come, then splits the records of
    /// `data` into pieces; `data` starts at a record boundary.
    fn plan(&mut self, data: &[u8], eof: bool) -> Result<Plan, PassEnd<F::Row>> {
        let mut start = 0;
        if self.at_file_start {
            self.at_file_start = false;
            if data.starts_with(BOM) {
                start = BOM.len();
            }
        }
        if self.layout.is_none() {
            match self.take_header(data, start, eof)? {
                HeaderProgress::Found(end) => start = end,
                HeaderProgress::Pending(end) => {
                    return Ok(Plan {
                        pieces: Vec::new(),
                        cut: end,
                        next_line: self.line,
                    });
                }
            }
        }
        let plan = plan_pieces(data, start, eof, self.line, self.piece_bytes);
        self.line = plan.next_line;
        Ok(plan)
    }

    fn take_header(
        &mut self,
        data: &[u8],
        mut pos: usize,
        eof: bool,
    ) -> Result<HeaderProgress, PassEnd<F::Row>> {
        let mut scratch = Vec::new();
        let mut bounds = Vec::new();
        loop {
            let record_start = pos;
            let Some(scanned) = scan_record(data, &mut pos, &mut scratch, &mut bounds) else {
                return Ok(HeaderProgress::Pending(pos));
            };
            if !scanned.terminated && !eof {
                return Ok(HeaderProgress::Pending(record_start));
            }
            let line = self.line;
            self.line += scanned.newlines;
            if scanned.blank {
                continue;
            }
            let span = &data[record_start..pos];
            if let Some(at) = memchr(0, span) {
                return Err(PassEnd::Done(Err(binary(
                    self.file,
                    line + count_newlines(&span[..at]),
                )
                .into())));
            }
            let field = |&(start, end): &(usize, usize)| &scratch[start..end];
            let names: Vec<String> = match self.encoding {
                TextEncoding::Utf8 => {
                    if let Err(error) = std::str::from_utf8(span) {
                        return Err(PassEnd::NotUtf8(
                            line + count_newlines(&span[..error.valid_up_to()]),
                        ));
                    }
                    bounds
                        .iter()
                        .map(|bound| text(field(bound)).into_owned())
                        .collect()
                }
                TextEncoding::Gb18030 => {
                    if let Err(at) = decode_gb18030(span) {
                        return Err(PassEnd::NotGb18030(line + count_newlines(&span[..at])));
                    }
                    bounds
                        .iter()
                        .map(|bound| decode_gb18030(field(bound)).unwrap_or_default())
                        .collect()
                }
            };
            if let Some(issue) = scanned.issue {
                let problem = quote_problem(self.file, line, issue, &names);
                return Err(PassEnd::Done(Err(problem.into())));
            }
            let layout = match_header(self.file, line, names, F::COLUMNS)
                .map_err(|problems| PassEnd::Done(Err(problems)))?;
            self.layout = Some(layout);
            return Ok(HeaderProgress::Found(pos));
        }
    }

    /// Parses the pieces of a plan in parallel, each into one of `buffers`.
    fn parse(
        &self,
        data: &[u8],
        plan: &Plan,
        buffers: Vec<Vec<F::Row>>,
        keep_rows: bool,
    ) -> Vec<PieceOutput<F::Row>> {
        let Some(layout) = &self.layout else {
            return Vec::new();
        };
        let context = PieceContext {
            file: self.file,
            format: self.format,
            layout,
            encoding: self.encoding,
            mode: self.mode,
            rejected_bytes: &self.rejected_bytes,
        };
        plan.pieces
            .par_iter()
            .zip(buffers)
            .map(|(piece, rows)| {
                parse_piece(
                    &context,
                    &data[piece.start..piece.end],
                    piece.line,
                    keep_rows,
                    rows,
                )
            })
            .collect()
    }
}

/// What a pass has found so far: the rows, in file order with their
/// positions, or, once there is any problem, only the problems.
struct Accumulator<'a, Row> {
    file: &'a str,
    size: Option<u64>,
    rows: Vec<Row>,
    lines: Vec<u64>,
    rejected: Vec<RejectedRow>,
    /// The estimated memory of every rejected record, kept or not.
    rejected_bytes: u64,
    /// Row buffers of the pieces, kept from chunk to chunk: allocating
    /// them anew each time costs page faults.
    spare: Vec<Vec<Row>>,
    records: u64,
    problems: Problems,
    reserved: bool,
}

impl<'a, Row> Accumulator<'a, Row> {
    fn new(file: &'a str, size: Option<u64>) -> Self {
        Accumulator {
            file,
            size,
            rows: Vec::new(),
            lines: Vec::new(),
            rejected: Vec::new(),
            rejected_bytes: 0,
            spare: Vec::new(),
            records: 0,
            problems: Problems::new(),
            reserved: false,
        }
    }

    /// Whether rows are still wanted: not once the file has a problem.
    fn keeps_rows(&self) -> bool {
        self.problems.is_empty()
    }

    fn take_buffers(&mut self, count: usize) -> Vec<Vec<Row>> {
        (0..count).map(|_| self.spare.pop().unwrap_or_default()).collect()
    }

    /// Adds the pieces of one chunk, in order. Returns how the pass ends if
    /// a piece found that the file is not text in this encoding.
    fn merge<F: CsvFormat<Row = Row>>(&mut self, outputs: Vec<PieceOutput<Row>>) -> Option<PassEnd<Row>> {
        for output in outputs {
            match output.failure {
                Some(Failure::Binary(line)) => {
                    return Some(PassEnd::Done(Err(binary(self.file, line).into())))
                }
                Some(Failure::NotUtf8(line)) => return Some(PassEnd::NotUtf8(line)),
                Some(Failure::NotGb18030(line)) => return Some(PassEnd::NotGb18030(line)),
                None => {}
            }
            let before = self.records;
            self.records += output.records;
            if before <= F::MAX_RECORDS && self.records > F::MAX_RECORDS {
                self.problems.push(Problem::whole_file(
                    self.file,
                    format!(
                        "has more than {} records: split it into smaller files",
                        F::MAX_RECORDS
                    ),
                ));
            }
            self.problems.extend(output.problems);
            let rejected_before = self.rejected_bytes;
            self.rejected_bytes += output.rejected_bytes;
            if rejected_before <= MAX_REJECTED_BYTES && self.rejected_bytes > MAX_REJECTED_BYTES {
                self.problems.push(Problem::whole_file(
                    self.file,
                    format!(
                        "has too many bad records to set aside (they would take more than {} MiB): correct \
                         what is wrong with most of them first; reading the file strictly lists the first \
                         problems",
                        MAX_REJECTED_BYTES >> 20
                    ),
                ));
            } else if self.problems.is_empty() {
                self.rejected.extend(output.rejected);
            }
            let mut rows = output.rows;
            if self.problems.is_empty() {
                if !self.reserved {
                    self.reserve_for_file(output.bytes, rows.len());
                }
                for mut row in rows.drain(..) {
                    F::place(&mut row, self.rows.len() as u64);
                    self.rows.push(row);
                }
                self.lines.extend(output.lines);
            } else {
                rows.clear();
                if self.rows.capacity() > 0 {
                    self.rows = Vec::new();
                }
                self.lines = Vec::new();
                self.rejected = Vec::new();
            }
            self.spare.push(rows);
        }
        None
    }

    /// Reserves room for the whole file's rows once, from the density of
    /// the first records, so that the row vector does not grow by copying.
    fn reserve_for_file(&mut self, bytes: usize, rows: usize) {
        self.reserved = true;
        let Some(size) = self.size else { return };
        let bytes = bytes as u64;
        if rows == 0 || bytes == 0 {
            return;
        }
        let estimate = size / bytes * rows as u64 + size % bytes * rows as u64 / bytes;
        let estimate = estimate + estimate / 64 + 16;
        self.rows
            .reserve(usize::try_from(estimate).unwrap_or(0).min(1 << 31));
    }

    fn finish<F: CsvFormat<Row = Row>>(mut self, layout: Option<Layout>) -> Result<Outcome<Row>, Problems> {
        if layout.is_none() && self.problems.is_empty() {
            self.problems.push(Problem::whole_file(
                self.file,
                format!(
                    "has no header row, only blank lines: expected a header row naming the columns {}",
                    column_list(F::COLUMNS)
                ),
            ));
        }
        self.problems.into_result()?;
        self.rows.shrink_to_fit();
        Ok(Outcome {
            header: layout.map(|layout| layout.names).unwrap_or_default(),
            rows: self.rows,
            lines: self.lines,
            rejected: self.rejected,
        })
    }
}

/// Matches the header's names to the known columns.
pub(crate) fn match_header(
    file: &str,
    line: u64,
    names: Vec<String>,
    columns: &[Column],
) -> Result<Layout, Problems> {
    let mut fields = vec![ABSENT; columns.len()];
    let mut problems = Problems::new();
    for (index, name) in names.iter().enumerate() {
        if let Some(column) = columns.iter().position(|column| column.name == name) {
            if fields[column] == ABSENT {
                fields[column] = index;
            } else {
                problems.push(Problem::at(
                    file,
                    line,
                    name,
                    format!(
                        "is named twice in the header (columns {} and {}); each column may appear only once",
                        fields[column] + 1,
                        index + 1
                    ),
                ));
            }
        }
    }
    let required: Vec<&str> = columns
        .iter()
        .filter(|column| column.required)
        .map(|column| column.name)
        .collect();
    for (column, spec) in columns.iter().enumerate() {
        if !spec.required || fields[column] != ABSENT {
            continue;
        }
        let near = names
            .iter()
            .find(|name| name.trim().eq_ignore_ascii_case(spec.name));
        let hint = match near {
            Some(near) => {
                format!(" (there is {near:?}: names must match exactly, in lower case without spaces)")
            }
            None => String::new(),
        };
        problems.push(Problem::at(
            file,
            line,
            spec.name,
            format!(
                "is missing from the header{hint}; the required columns are {}",
                required.join(",")
            ),
        ));
    }
    problems.into_result()?;
    Ok(Layout { fields, names })
}

/// Splits `data[start..]` into pieces of whole records near `piece_bytes`
/// long, and finds how far the chunk can be consumed.
fn plan_pieces(data: &[u8], start: usize, eof: bool, first_line: u64, piece_bytes: usize) -> Plan {
    let body = &data[start..];
    let length = body.len();
    if length == 0 {
        return Plan {
            pieces: Vec::new(),
            cut: data.len(),
            next_line: first_line,
        };
    }
    let segments = length.div_ceil(piece_bytes).max(1);
    let segment_start = |index: usize| index * length / segments;
    // Line feeds and quotes per segment, counted in parallel.
    let counts: Vec<(u64, u64)> = (0..segments)
        .into_par_iter()
        .map(|index| {
            let segment = &body[segment_start(index)..segment_start(index + 1)];
            let quotes = if memchr(b'"', segment).is_some() {
                memchr_iter(b'"', segment).count() as u64
            } else {
                0
            };
            (count_newlines(segment), quotes)
        })
        .collect();
    let mut newlines_before = Vec::with_capacity(segments + 1);
    let mut quotes_before = Vec::with_capacity(segments + 1);
    let (mut newlines, mut quotes) = (0u64, 0u64);
    for &(segment_newlines, segment_quotes) in &counts {
        newlines_before.push(newlines);
        quotes_before.push(quotes);
        newlines += segment_newlines;
        quotes += segment_quotes;
    }
    let (total_newlines, total_quotes) = (newlines, quotes);

    // How far the chunk is consumed: past the last record boundary, unless
    // the input ends here.
    let (cut, newlines_to_cut) = if eof {
        (length, total_newlines)
    } else {
        match last_boundary(body, total_quotes % 2 == 1) {
            Some((cut, newlines_after)) => (cut, total_newlines - newlines_after),
            None => (0, 0),
        }
    };

    // Each piece starts at the first boundary at or after its segment's start.
    let mut starts: Vec<(usize, u64)> = vec![(0, 0)];
    for index in 1..segments {
        let from = segment_start(index);
        let Some(&(previous, _)) = starts.last() else {
            break;
        };
        if from <= previous {
            continue;
        }
        match next_boundary(body, from, quotes_before[index] % 2 == 1) {
            Some((boundary, newlines)) if boundary < cut && boundary > previous => {
                starts.push((boundary, newlines_before[index] + newlines));
            }
            Some(_) => {}
            None => break,
        }
    }
    let mut pieces = Vec::with_capacity(starts.len());
    for (index, &(piece_start, newlines)) in starts.iter().enumerate() {
        let piece_end = starts.get(index + 1).map_or(cut, |&(next, _)| next);
        if piece_start < piece_end {
            pieces.push(Piece {
                start: start + piece_start,
                end: start + piece_end,
                line: first_line + newlines,
            });
        }
    }
    Plan {
        pieces,
        cut: start + cut,
        next_line: first_line + newlines_to_cut,
    }
}

/// The first record boundary at or after `from` (the offset just past a
/// line feed outside quotes), with the line feeds from `from` to it.
fn next_boundary(data: &[u8], from: usize, mut inside_quotes: bool) -> Option<(usize, u64)> {
    let mut at = from;
    let mut newlines = 0;
    while let Some(offset) = memchr2(b'\n', b'"', &data[at..]) {
        let found = at + offset;
        if data[found] == b'"' {
            inside_quotes = !inside_quotes;
        } else {
            newlines += 1;
            if !inside_quotes {
                return Some((found + 1, newlines));
            }
        }
        at = found + 1;
    }
    None
}

/// The last record boundary in `data` (which starts at one), with the line
/// feeds after it; `odd_quotes` tells the parity of all quotes in `data`.
fn last_boundary(data: &[u8], odd_quotes: bool) -> Option<(usize, u64)> {
    // Scanning backwards: `inside` is the parity of the quotes before the
    // current position.
    let mut inside = odd_quotes;
    let mut end = data.len();
    let mut newlines_after = 0;
    while let Some(found) = memrchr2(b'\n', b'"', &data[..end]) {
        if data[found] == b'"' {
            inside = !inside;
        } else {
            if !inside {
                return Some((found + 1, newlines_after));
            }
            newlines_after += 1;
        }
        end = found;
    }
    None
}

/// What a piece needs to be parsed; shared by the threads.
struct PieceContext<'a, F: CsvFormat> {
    file: &'a str,
    format: &'a F,
    layout: &'a Layout,
    encoding: TextEncoding,
    mode: Mode,
    /// Shared by the pieces of a pass: see [`Processor::rejected_bytes`].
    rejected_bytes: &'a AtomicU64,
}

enum Failure {
    Binary(u64),
    NotUtf8(u64),
    NotGb18030(u64),
}

struct PieceOutput<Row> {
    /// The piece's length in bytes.
    bytes: usize,
    rows: Vec<Row>,
    /// The line of each row; only when lenient.
    lines: Vec<u64>,
    /// Only when lenient.
    rejected: Vec<RejectedRow>,
    /// The estimated memory of the records rejected, kept or not.
    rejected_bytes: u64,
    /// Only problems that refuse the file: when strict, any.
    problems: Problems,
    records: u64,
    failure: Option<Failure>,
}

impl<Row> PieceOutput<Row> {
    /// Adds a problem, building it only while the report has room.
    fn report(&mut self, problem: impl FnOnce() -> Problem) {
        if self.problems.kept().len() < MAX_PROBLEMS_REPORTED {
            self.problems.push(problem());
        } else {
            self.problems.push(counted_only());
        }
    }
}

/// A problem beyond the report's limit: counted, never shown, so not built.
fn counted_only() -> Problem {
    Problem {
        file: String::new(),
        line: None,
        column: None,
        message: String::new(),
    }
}

fn parse_piece<F: CsvFormat>(
    context: &PieceContext<'_, F>,
    raw: &[u8],
    first_line: u64,
    keep_rows: bool,
    mut rows: Vec<F::Row>,
) -> PieceOutput<F::Row> {
    rows.clear();
    let mut output = PieceOutput {
        bytes: raw.len(),
        rows,
        lines: Vec::new(),
        rejected: Vec::new(),
        rejected_bytes: 0,
        problems: Problems::new(),
        records: 0,
        failure: None,
    };
    if let Some(at) = memchr(0, raw) {
        output.failure = Some(Failure::Binary(first_line + count_newlines(&raw[..at])));
        return output;
    }
    let decoded: String;
    let text: &[u8] = match context.encoding {
        TextEncoding::Utf8 => match std::str::from_utf8(raw) {
            Ok(_) => raw,
            Err(error) => {
                output.failure = Some(Failure::NotUtf8(
                    first_line + count_newlines(&raw[..error.valid_up_to()]),
                ));
                return output;
            }
        },
        TextEncoding::Gb18030 => match decode_gb18030(raw) {
            Ok(text) => {
                decoded = text;
                decoded.as_bytes()
            }
            Err(at) => {
                output.failure = Some(Failure::NotGb18030(first_line + count_newlines(&raw[..at])));
                return output;
            }
        },
    };
    let mut reader = PieceReader {
        context,
        sheet_rows: false,
        keep_rows,
        row_problems: RowProblems {
            layout: context.layout,
            columns: F::COLUMNS,
            found: Vec::new(),
            quiet: false,
        },
    };
    if keep_rows {
        output.rows.reserve(text.len() / 128 + 1);
    }
    let mut bounds: Vec<(usize, usize)> = Vec::with_capacity(context.layout.field_count() + 1);
    if memchr(b'"', text).is_none() {
        // The fast path: no quotes, so a record is a line and a field is
        // what lies between commas.
        split_plain(text, &mut bounds, |bounds, line| {
            let line = first_line + line;
            reader.record(&mut output, Record { text, bounds, line }, line, None, &[]);
        });
    } else {
        let mut scratch = Vec::new();
        let mut pos = 0;
        let mut line = first_line;
        while let Some(scanned) = scan_record(text, &mut pos, &mut scratch, &mut bounds) {
            let record_line = line;
            line += scanned.newlines;
            if scanned.blank {
                continue;
            }
            reader.record(
                &mut output,
                Record {
                    text: &scratch,
                    bounds: &bounds,
                    line: record_line,
                },
                record_line,
                scanned.issue,
                &[],
            );
        }
    }
    output
}

const LOW_SEVEN_BITS: u64 = 0x7F7F_7F7F_7F7F_7F7F;
const EVERY_BYTE: u64 = 0x0101_0101_0101_0101;

/// The high bit of every byte of `word` that equals `byte`, exactly (no
/// carries between bytes).
#[inline]
fn bytes_equal(word: u64, byte: u8) -> u64 {
    let difference = word ^ (EVERY_BYTE * u64::from(byte));
    !((difference & LOW_SEVEN_BITS).wrapping_add(LOW_SEVEN_BITS) | difference | LOW_SEVEN_BITS)
}

/// Splits text without quotes into records (lines, less a final carriage
/// return) and fields (between commas), eight bytes at a time. Calls
/// `record` with each non-blank record's field bounds and its line, counted
/// from 0.
fn split_plain(
    text: &[u8],
    bounds: &mut Vec<(usize, usize)>,
    mut record: impl FnMut(&[(usize, usize)], u64),
) {
    let mut split = PlainSplit {
        record_start: 0,
        field_start: 0,
        line: 0,
    };
    bounds.clear();
    let mut words = text.chunks_exact(8);
    let mut base = 0;
    for word in &mut words {
        let word = u64::from_le_bytes([
            word[0], word[1], word[2], word[3], word[4], word[5], word[6], word[7],
        ]);
        let mut found = bytes_equal(word, b',') | bytes_equal(word, b'\n');
        while found != 0 {
            split.separator(
                text,
                base + (found.trailing_zeros() / 8) as usize,
                bounds,
                &mut record,
            );
            found &= found - 1;
        }
        base += 8;
    }
    for (offset, &byte) in words.remainder().iter().enumerate() {
        if byte == b',' || byte == b'\n' {
            split.separator(text, base + offset, bounds, &mut record);
        }
    }
    if split.record_start < text.len() {
        split.end_record(text, text.len(), bounds, &mut record);
    }
}

struct PlainSplit {
    record_start: usize,
    field_start: usize,
    line: u64,
}

impl PlainSplit {
    #[inline]
    fn separator(
        &mut self,
        text: &[u8],
        at: usize,
        bounds: &mut Vec<(usize, usize)>,
        record: &mut impl FnMut(&[(usize, usize)], u64),
    ) {
        if text[at] == b',' {
            bounds.push((self.field_start, at));
            self.field_start = at + 1;
        } else {
            self.end_record(text, at, bounds, record);
            self.line += 1;
        }
    }

    fn end_record(
        &mut self,
        text: &[u8],
        end: usize,
        bounds: &mut Vec<(usize, usize)>,
        record: &mut impl FnMut(&[(usize, usize)], u64),
    ) {
        let mut field_end = end;
        if end > self.record_start && text[end - 1] == b'\r' {
            field_end -= 1;
        }
        let blank = bounds.is_empty()
            && text[self.record_start..field_end]
                .iter()
                .all(|&byte| byte == b' ' || byte == b'\t');
        if !blank {
            bounds.push((self.field_start, field_end));
            record(bounds, self.line);
        }
        bounds.clear();
        self.record_start = end + 1;
        self.field_start = end + 1;
    }
}

struct PieceReader<'a, F: CsvFormat> {
    context: &'a PieceContext<'a, F>,
    /// The records are rows of a sheet: one may end before the header
    /// does (what follows its last cell is empty).
    sheet_rows: bool,
    keep_rows: bool,
    row_problems: RowProblems<'a>,
}

/// Why a record whose fields are all there gives no row.
enum RowFailure {
    /// Problems, in `RowProblems::found`, in the order of the fields.
    Problems,
    /// None found, yet no row: should not happen.
    Unread,
}

impl<F: CsvFormat> PieceReader<'_, F> {
    /// Checks one record starting on `line`; `cells` are problems a sheet's
    /// cells had before they became text.
    fn record(
        &mut self,
        output: &mut PieceOutput<F::Row>,
        record: Record<'_>,
        line: u64,
        issue: Option<QuoteIssue>,
        cells: &[CellProblem],
    ) {
        output.records += 1;
        match self.context.mode {
            Mode::Strict => self.strict_record(output, &record, line, issue, cells),
            Mode::Lenient => self.lenient_record(output, &record, line, issue, cells),
        }
    }

    fn strict_record(
        &mut self,
        output: &mut PieceOutput<F::Row>,
        record: &Record<'_>,
        line: u64,
        issue: Option<QuoteIssue>,
        cells: &[CellProblem],
    ) {
        let context = self.context;
        let file = context.file;
        if let Some(issue) = issue {
            self.fail(output);
            output.report(|| quote_problem(file, line, issue, &context.layout.names));
            return;
        }
        if let Some(found) = self.wrong_field_count(record) {
            self.fail(output);
            output.report(|| self.field_count_problem(line, found));
            return;
        }
        let quiet = output.problems.kept().len() >= MAX_PROBLEMS_REPORTED;
        match self.check_fields(record, cells, quiet) {
            Ok(mut row) => {
                if self.keep_rows {
                    F::at_line(&mut row, line);
                    output.rows.push(row);
                }
            }
            Err(RowFailure::Unread) => {
                self.fail(output);
                output.report(|| Problem::at_line(file, line, "could not be read"));
            }
            Err(RowFailure::Problems) => {
                self.fail(output);
                for (_, column, message) in self.row_problems.found.drain(..) {
                    output.report(|| Problem::at(file, line, column, message));
                }
            }
        }
    }

    /// Keeps a good row with its line, or sets the record aside with every
    /// reason it was refused.
    fn lenient_record(
        &mut self,
        output: &mut PieceOutput<F::Row>,
        record: &Record<'_>,
        line: u64,
        issue: Option<QuoteIssue>,
        cells: &[CellProblem],
    ) {
        let context = self.context;
        let file = context.file;
        // Past the budget, bad records are only counted (and the file will
        // be refused): their problems are not built.
        let full = context.rejected_bytes.load(Ordering::Relaxed) > MAX_REJECTED_BYTES;
        let mut problems = Vec::new();
        if let Some(issue) = issue {
            problems.push(quote_problem(file, line, issue, &context.layout.names));
        } else if let Some(found) = self.wrong_field_count(record) {
            problems.push(self.field_count_problem(line, found));
        } else {
            match self.check_fields(record, cells, full) {
                Ok(row) => {
                    output.rows.push(row);
                    output.lines.push(line);
                    return;
                }
                Err(RowFailure::Unread) => problems.push(Problem::at_line(file, line, "could not be read")),
                Err(RowFailure::Problems) => problems.extend(
                    self.row_problems
                        .found
                        .drain(..)
                        .map(|(_, column, message)| Problem::at(file, line, column, message)),
                ),
            }
        }
        let bytes = rejected_estimate(file, record, problems.len());
        output.rejected_bytes += bytes;
        let before = context.rejected_bytes.fetch_add(bytes, Ordering::Relaxed);
        if full || before + bytes > MAX_REJECTED_BYTES {
            return;
        }
        let fields = (0..record.bounds.len())
            .map(|index| text(record.get(index)).into_owned())
            .collect();
        output.rejected.push(RejectedRow {
            line,
            fields,
            problems,
        });
    }

    /// For a record with more or fewer fields than the header names, how
    /// many it has.
    fn wrong_field_count(&self, record: &Record<'_>) -> Option<usize> {
        let found = record.bounds.len();
        let expected = self.context.layout.field_count();
        let wrong = if self.sheet_rows {
            found > expected
        } else {
            found != expected
        };
        wrong.then_some(found)
    }

    fn field_count_problem(&self, line: u64, found: usize) -> Problem {
        let expected = self.context.layout.field_count();
        Problem::at_line(
            self.context.file,
            line,
            format!(
                "has {found} fields but the header has {expected} columns (a comma too many or too few?)"
            ),
        )
    }

    /// Checks the fields of a record with as many as the header. A problem
    /// a cell had replaces what the check says of the same column.
    fn check_fields(
        &mut self,
        record: &Record<'_>,
        cells: &[CellProblem],
        quiet: bool,
    ) -> Result<F::Row, RowFailure> {
        let context = self.context;
        let found = &mut self.row_problems;
        found.found.clear();
        found.quiet = quiet;
        for cell in cells {
            found.add(cell.column, || cell.message.clone());
        }
        let row = context.format.read_row(context.layout, record, found);
        if !cells.is_empty() {
            let layout = context.layout;
            let mut index = 0;
            found.found.retain(|&(field, _, _)| {
                let keep =
                    index < cells.len() || !cells.iter().any(|cell| layout.field(cell.column) == field);
                index += 1;
                keep
            });
        }
        if !found.found.is_empty() {
            found.found.sort_by_key(|&(field, _, _)| field);
            return Err(RowFailure::Problems);
        }
        row.ok_or(RowFailure::Unread)
    }

    /// After a problem the file is refused: its rows are no longer kept.
    fn fail(&mut self, output: &mut PieceOutput<F::Row>) {
        if self.keep_rows {
            self.keep_rows = false;
            output.rows.clear();
        }
    }
}

/// The memory a rejected record takes, estimated from what it holds (the
/// same whatever the record is read with): its fields, and a problem's
/// text as 128 bytes.
fn rejected_estimate(file: &str, record: &Record<'_>, problems: usize) -> u64 {
    let fields = record.bounds.len() * std::mem::size_of::<String>()
        + record
            .bounds
            .iter()
            .map(|&(start, end)| end.saturating_sub(start))
            .sum::<usize>();
    let problems = problems * (std::mem::size_of::<Problem>() + file.len() + 128);
    (std::mem::size_of::<RejectedRow>() + fields + problems) as u64
}

/// Checks records that do not come from CSV text (the rows of a sheet),
/// with the same checks as CSV records, one after another. `produce` calls
/// its argument with each record, the line it is on and the problems its
/// cells had; it may end the read early with problems of the whole file.
pub(crate) fn check_records<F: CsvFormat>(
    file: &str,
    format: &F,
    layout: Layout,
    mode: Mode,
    produce: impl FnOnce(&mut dyn FnMut(&Record<'_>, u64, &[CellProblem])) -> Result<(), Problems>,
) -> Result<Outcome<F::Row>, Problems> {
    let rejected_bytes = AtomicU64::new(0);
    let context = PieceContext {
        file,
        format,
        layout: &layout,
        encoding: TextEncoding::Utf8,
        mode,
        rejected_bytes: &rejected_bytes,
    };
    let mut reader = PieceReader {
        context: &context,
        sheet_rows: true,
        keep_rows: true,
        row_problems: RowProblems {
            layout: &layout,
            columns: F::COLUMNS,
            found: Vec::new(),
            quiet: false,
        },
    };
    let mut output = PieceOutput {
        bytes: 0,
        rows: Vec::new(),
        lines: Vec::new(),
        rejected: Vec::new(),
        rejected_bytes: 0,
        problems: Problems::new(),
        records: 0,
        failure: None,
    };
    produce(&mut |record, line, cells| {
        let record = Record {
            text: record.text,
            bounds: record.bounds,
            line,
        };
        reader.record(&mut output, record, line, None, cells);
    })?;
    let mut accumulator = Accumulator::new(file, None);
    if let Some(PassEnd::Done(Err(problems))) = accumulator.merge::<F>(vec![output]) {
        return Err(problems);
    }
    accumulator.finish::<F>(Some(layout))
}

/// A double quote where RFC 4180 does not allow one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QuoteIssueKind {
    /// A quote inside a field that does not start with one.
    InsideUnquotedField,
    /// Text between a closing quote and the next comma or line end.
    TextAfterClosingQuote,
    /// The input ends inside quotes.
    NeverClosed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct QuoteIssue {
    kind: QuoteIssueKind,
    /// The field's index in the record.
    field: usize,
}

fn quote_problem(file: &str, line: u64, issue: QuoteIssue, names: &[String]) -> Problem {
    let message = match issue.kind {
        QuoteIssueKind::InsideUnquotedField => {
            "has a double quote inside a field that does not start with one: put the whole field in double \
             quotes and write each double quote inside it twice (\"\")"
        }
        QuoteIssueKind::TextAfterClosingQuote => {
            "has text after the closing double quote of a field: a quoted field ends at its closing quote \
             (write a double quote inside it twice: \"\")"
        }
        QuoteIssueKind::NeverClosed => {
            "has a double quote that is never closed: the record runs on to the end of the file"
        }
    };
    match names.get(issue.field) {
        Some(name) => Problem::at(file, line, name, message),
        None => Problem::at_line(file, line, message),
    }
}

/// How one record was scanned.
#[derive(Debug)]
struct Scanned {
    /// Line feeds inside the record and at its end.
    newlines: u64,
    /// Whether it ended at a line feed (rather than at the end of the input).
    terminated: bool,
    /// An empty line, or one of only spaces and tabs.
    blank: bool,
    issue: Option<QuoteIssue>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    FieldStart,
    Unquoted,
    Quoted,
    /// Just after a quote that closed (or, if another follows, escaped).
    QuoteSeen,
}

/// Scans one record of `input` from `pos`, with RFC 4180 quoting: its
/// fields, unquoted, go to `scratch`, their bounds to `bounds`. `None` at
/// the end of the input.
fn scan_record(
    input: &[u8],
    pos: &mut usize,
    scratch: &mut Vec<u8>,
    bounds: &mut Vec<(usize, usize)>,
) -> Option<Scanned> {
    if *pos >= input.len() {
        return None;
    }
    scratch.clear();
    bounds.clear();
    let mut state = State::FieldStart;
    let mut any_quote = false;
    let mut newlines = 0;
    let mut issue = None;
    let mut field_start = 0;
    let mut at = *pos;
    let terminated = loop {
        let Some(&byte) = input.get(at) else { break false };
        at += 1;
        match (state, byte) {
            (State::Quoted, b'"') => state = State::QuoteSeen,
            (State::Quoted, _) => {
                newlines += u64::from(byte == b'\n');
                scratch.push(byte);
            }
            (_, b',') => {
                bounds.push((field_start, scratch.len()));
                field_start = scratch.len();
                state = State::FieldStart;
            }
            (_, b'\n') => {
                newlines += 1;
                break true;
            }
            (_, b'\r') if input.get(at) == Some(&b'\n') => {
                at += 1;
                newlines += 1;
                break true;
            }
            (State::FieldStart, b'"') => {
                any_quote = true;
                state = State::Quoted;
            }
            (State::QuoteSeen, b'"') => {
                scratch.push(b'"');
                state = State::Quoted;
            }
            (State::Unquoted, b'"') => {
                issue.get_or_insert(QuoteIssue {
                    kind: QuoteIssueKind::InsideUnquotedField,
                    field: bounds.len(),
                });
                any_quote = true;
                state = State::Quoted;
            }
            (State::QuoteSeen, _) => {
                issue.get_or_insert(QuoteIssue {
                    kind: QuoteIssueKind::TextAfterClosingQuote,
                    field: bounds.len(),
                });
                scratch.push(byte);
                state = State::Unquoted;
            }
            (State::FieldStart | State::Unquoted, _) => {
                scratch.push(byte);
                state = State::Unquoted;
            }
        }
    };
    if !terminated {
        match state {
            State::Quoted => {
                issue = Some(QuoteIssue {
                    kind: QuoteIssueKind::NeverClosed,
                    field: bounds.len(),
                });
            }
            // A carriage return at the very end belongs to a line ending.
            State::Unquoted if scratch.last() == Some(&b'\r') && scratch.len() > field_start => {
                scratch.pop();
            }
            _ => {}
        }
    }
    bounds.push((field_start, scratch.len()));
    *pos = at;
    let blank = !any_quote && bounds.len() == 1 && scratch.iter().all(|&byte| byte == b' ' || byte == b'\t');
    Some(Scanned {
        newlines,
        terminated,
        blank,
        issue,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A format that keeps every field as text: for testing the machinery.
    pub(crate) struct Fields;

    const FIELD_COLUMNS: &[Column] = &[
        Column {
            name: "a",
            required: true,
            kind: CellKind::Text,
        },
        Column {
            name: "b",
            required: true,
            kind: CellKind::Text,
        },
        Column {
            name: "c",
            required: false,
            kind: CellKind::Text,
        },
    ];

    impl CsvFormat for Fields {
        type Row = (u64, Vec<String>);
        const COLUMNS: &'static [Column] = FIELD_COLUMNS;

        fn read_row(
            &self,
            layout: &Layout,
            record: &Record<'_>,
            problems: &mut RowProblems<'_>,
        ) -> Option<Self::Row> {
            let row: Vec<String> = (0..3)
                .map(|column| text(record.get(layout.field(column))).into_owned())
                .collect();
            if row[0] == "bad" {
                problems.add(0, || "is bad".to_owned());
                return None;
            }
            if row[1] == "bad" {
                problems.add(1, || "is bad".to_owned());
                return None;
            }
            Some((0, row))
        }

        fn place(row: &mut Self::Row, position: u64) {
            row.0 = position;
        }
    }

    fn rows(result: Result<Vec<(u64, Vec<String>)>, Problems>) -> Vec<Vec<String>> {
        result.unwrap().into_iter().map(|(_, fields)| fields).collect()
    }

    fn row(fields: &[&str]) -> Vec<String> {
        fields.iter().map(|field| field.to_string()).collect()
    }

    fn lines(problems: &Problems) -> Vec<Option<u64>> {
        problems.kept().iter().map(|problem| problem.line).collect()
    }

    /// Reads `bytes` both ways: whole, and streamed in small chunks and
    /// pieces; both must agree.
    fn read_both(
        bytes: &[u8],
        chunk_bytes: usize,
        piece_bytes: usize,
    ) -> Result<Vec<(u64, Vec<String>)>, Problems> {
        let whole = read_slice("t.csv", bytes, &Fields, piece_bytes);
        let mut cursor = io::Cursor::new(bytes);
        let streamed = read_stream(
            "t.csv",
            &mut cursor,
            None,
            &Fields,
            chunk_bytes,
            piece_bytes,
            &|_| {},
        );
        assert_eq!(whole, streamed, "chunk {chunk_bytes}, piece {piece_bytes}");
        whole
    }

    #[test]
    fn quoted_fields_may_hold_commas_doubled_quotes_and_line_breaks() {
        let input = "a,b,c\n\"x,1\",\"say \"\"hi\"\"\",\"two\nlines\"\nplain,\"\",3\n";
        let read = rows(read_slice("t.csv", input.as_bytes(), &Fields, PIECE_BYTES));
        assert_eq!(
            read,
            vec![
                row(&["x,1", "say \"hi\"", "two\nlines"]),
                row(&["plain", "", "3"])
            ]
        );
    }

    #[test]
    fn line_numbers_stay_right_after_a_record_that_spans_lines() {
        let input = "a,b,c\n1,\"two\nlines\nthree\",3\n\nbad,2,3\n4,bad,\"\"\n";
        let problems = read_slice("t.csv", input.as_bytes(), &Fields, PIECE_BYTES).unwrap_err();
        assert_eq!(lines(&problems), vec![Some(6), Some(7)]);
        assert_eq!(problems.kept()[0].to_string(), "t.csv:6: a: is bad");
        assert_eq!(problems.kept()[1].to_string(), "t.csv:7: b: is bad");
    }

    #[test]
    fn reading_in_small_chunks_and_pieces_agrees_with_reading_whole() {
        let mut input = String::from("\u{FEFF}\n\nc,b,x,a\r\n");
        for index in 0..60 {
            match index % 6 {
                0 => input.push_str(&format!("{index},b{index},x,a{index}\n")),
                1 => input.push_str(&format!("\"{index}\nq\",\"b,{index}\",\"x\"\"\",a\r\n")),
                2 => input.push_str("\n   \n"),
                3 => input.push_str(&format!("é{index},\"\",,\"a\n\n{index}\"\n")),
                4 => input.push_str(&format!("{index},\"b\"\"\"\"\",x,\"\"\r\n")),
                _ => input.push_str(&format!("{index},b,x,\"a{index}\"")),
            }
            if index % 6 == 5 {
                input.push('\n');
            }
        }
        let expected = read_both(input.as_bytes(), 1 << 20, 1 << 20).unwrap();
        assert_eq!(expected.len(), 50);
        for (position, (placed, _)) in expected.iter().enumerate() {
            assert_eq!(*placed, position as u64);
        }
        for chunk_bytes in [40, 41, 57, 64, 100, 333] {
            for piece_bytes in [1, 7, 30, 1000] {
                assert_eq!(
                    read_both(input.as_bytes(), chunk_bytes, piece_bytes).unwrap(),
                    expected
                );
            }
        }
    }

    #[test]
    fn problems_are_the_same_whatever_the_chunk_and_piece_sizes() {
        let mut input = String::from("a,b\n");
        for index in 0..40 {
            match index % 4 {
                0 => input.push_str("bad,\"x\ny\"\n"),
                1 => input.push_str("1,2,3,4\n"),
                2 => input.push_str("1,bad\n"),
                _ => input.push_str("ok,ok\n"),
            }
        }
        let expected = read_both(input.as_bytes(), 1 << 20, 1 << 20).unwrap_err();
        assert_eq!(expected.total(), 30);
        for chunk_bytes in [20, 50, 128] {
            for piece_bytes in [1, 16, 100] {
                assert_eq!(
                    read_both(input.as_bytes(), chunk_bytes, piece_bytes).unwrap_err(),
                    expected
                );
            }
        }
    }

    #[test]
    fn a_lenient_read_with_more_bad_records_than_memory_allows_is_refused_whatever_the_chunks() {
        // Rows of 300 empty fields: each takes some 7 kB once set aside,
        // for 300 bytes of the file.
        let columns: Vec<String> = (0..300).map(|index| format!("x{index}")).collect();
        let header = format!("a,b,c,{}\n", columns[3..].join(","));
        let bad = format!("bad{}\n", ",".repeat(299));
        let rows = (MAX_REJECTED_BYTES / 7000) as usize;
        let input = header + &bad.repeat(rows);
        let whole =
            read_slice_in("t.csv", input.as_bytes(), &Fields, Mode::Lenient, PIECE_BYTES).unwrap_err();
        assert_eq!(whole.total(), 1);
        assert!(
            whole.kept()[0]
                .message
                .starts_with("has too many bad records to set aside (they would take more than 256 MiB)"),
            "{whole}"
        );
        for (chunk_bytes, piece_bytes) in [(1 << 20, 64 << 10), (4 << 20, 1 << 20)] {
            let mut cursor = io::Cursor::new(input.as_bytes());
            let sizes = (chunk_bytes, piece_bytes);
            let streamed = read_stream_in("t.csv", &mut cursor, None, &Fields, Mode::Lenient, sizes, &|_| {})
                .unwrap_err();
            assert_eq!(streamed, whole);
        }
    }

    #[test]
    fn a_record_longer_than_a_chunk_is_refused_with_its_line() {
        let input = format!("a,b\n1,2\n1,\"{}\n", "x".repeat(200));
        let mut cursor = io::Cursor::new(input.as_bytes());
        let problems = read_stream("t.csv", &mut cursor, None, &Fields, 64, 16, &|_| {}).unwrap_err();
        assert_eq!(problems.total(), 1);
        assert_eq!(problems.kept()[0].line, Some(3));
        assert!(problems.kept()[0].message.contains("never closed"), "{problems}");
    }

    #[test]
    fn a_quote_that_is_never_closed_is_refused_at_the_record_it_opens() {
        let input = "a,b\n1,2\n3,\"4\n5,6\n";
        let problems = read_both(input.as_bytes(), 1 << 20, 4).unwrap_err();
        assert_eq!(problems.to_string(), "t.csv:3: b: has a double quote that is never closed: the record runs on to the end of the file\n");
    }

    #[test]
    fn quotes_where_rfc_4180_allows_none_are_refused() {
        let input = "a,b\nab\"c\",2\n\"x\"y,2\nok,ok\n";
        let problems = read_both(input.as_bytes(), 1 << 20, 1 << 20).unwrap_err();
        assert_eq!(lines(&problems), vec![Some(2), Some(3)]);
        assert!(problems.kept()[0]
            .message
            .contains("inside a field that does not start with one"));
        assert!(problems.kept()[1]
            .message
            .contains("after the closing double quote"));
    }

    #[test]
    fn progress_adds_up_to_the_bytes_of_the_file() {
        let input = "a,b\n".to_owned() + &"1,2\n".repeat(100);
        let total = std::sync::atomic::AtomicU64::new(0);
        let mut cursor = io::Cursor::new(input.as_bytes());
        let progress = |bytes: u64| {
            total.fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
        };
        read_stream("t.csv", &mut cursor, None, &Fields, 32, 8, &progress).unwrap();
        assert_eq!(total.into_inner(), input.len() as u64);
    }

    #[test]
    fn a_file_of_only_blank_lines_has_no_header() {
        let problems = read_both(b"\xEF\xBB\xBF\n  \r\n\n", 16, 4).unwrap_err();
        assert!(
            problems.kept()[0].message.starts_with("has no header row"),
            "{problems}"
        );
    }

    #[test]
    fn a_header_alone_gives_no_rows() {
        assert!(read_both(b"a,b", 16, 4).unwrap().is_empty());
        assert!(read_both(b"a,b\r\n\r\n", 16, 4).unwrap().is_empty());
    }

    /// Records as (line, fields) by the general scanner.
    fn scanned_records(text: &[u8]) -> Vec<(u64, Vec<Vec<u8>>)> {
        let (mut scratch, mut bounds, mut pos, mut line) = (Vec::new(), Vec::new(), 0, 0);
        let mut records = Vec::new();
        while let Some(scanned) = scan_record(text, &mut pos, &mut scratch, &mut bounds) {
            if !scanned.blank {
                records.push((
                    line,
                    bounds
                        .iter()
                        .map(|&(start, end)| scratch[start..end].to_vec())
                        .collect(),
                ));
            }
            line += scanned.newlines;
        }
        records
    }

    proptest::proptest! {
        #[test]
        fn the_fast_splitter_agrees_with_the_general_scanner_on_text_without_quotes(
            text in proptest::collection::vec(proptest::sample::select(b"ab,\n\r \t".to_vec()), 0..200)
        ) {
            let mut fast = Vec::new();
            split_plain(&text, &mut Vec::new(), |bounds, line| {
                fast.push((line, bounds.iter().map(|&(start, end)| text[start..end].to_vec()).collect()));
            });
            proptest::prop_assert_eq!(fast, scanned_records(&text));
        }
    }

    #[test]
    fn boundaries_are_found_outside_quotes_only() {
        let data = b"1,\"a\nb\"\n2,3\n4,\"";
        assert_eq!(last_boundary(data, true), Some((12, 0)));
        assert_eq!(next_boundary(data, 0, false), Some((8, 2)));
        assert_eq!(next_boundary(data, 4, true), Some((8, 2)));
        assert_eq!(next_boundary(data, 5, true), Some((8, 1)));
        assert_eq!(last_boundary(b"1,\"a\n", true), None);
    }
}
