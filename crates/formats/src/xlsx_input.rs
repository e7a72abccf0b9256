//! XLSX workbooks in place of CSV files: the first sheet is read like a CSV
//! file whose line numbers are the sheet's row numbers. Each cell becomes
//! the text a CSV field would hold, and that text goes through exactly the
//! checks of the CSV readers, so a row is valid in a sheet if and only if
//! the same text is valid in CSV.
//!
//! Cells become text without float arithmetic: a number is written in its
//! shortest round-trip decimal form (`12.3`, `0.30000000000000004`) and that
//! text is parsed as any CSV field would be, so a number with more than two
//! decimals is refused as an amount, as its text would be. A date cell
//! becomes `YYYY-MM-DD` when its serial number is a whole number of days.

use std::io::{Read, Seek, SeekFrom};

use calamine::{DataRef, Reader, Xlsx};
use jiuzhu_core::Date;

use crate::csv_input::{self, CellKind, CellProblem, CsvFormat, Mode, Outcome, Record};
use crate::problem::{Problem, Problems};

/// The first bytes of a ZIP archive, and so of an XLSX workbook.
pub(crate) const ZIP_MAGIC: &[u8] = b"PK\x03\x04";
/// The most columns a sheet has (A to XFD).
const MAX_COLUMNS: u32 = 16_384;
/// The most bytes the parts of a workbook may unpack to: a sheet of a
/// million rows of invoices unpacks to about 1 GB; more is a ZIP bomb.
pub const MAX_WORKBOOK_UNPACKED_BYTES: u64 = 4 << 30;

/// Whether `start` (a file's first bytes) is a ZIP archive.
pub(crate) fn is_zip(start: &[u8]) -> bool {
    start.starts_with(ZIP_MAGIC)
}

/// Reads the first sheet of the workbook in `source` as a file of format `F`.
pub(crate) fn read_workbook<F: CsvFormat, R: Read + Seek>(
    file: &str,
    mut source: R,
    format: &F,
    mode: Mode,
) -> Result<Outcome<F::Row>, Problems> {
    guarded(file, || check_unpacked_size(file, &mut source))?;
    let mut workbook = guarded(file, || {
        Xlsx::new(source).map_err(|error| not_a_workbook(file, &error))
    })?;
    let is_1904 = workbook.has_1904_epoch();
    let Some(sheet) = workbook.sheet_names().into_iter().next() else {
        return Err(Problem::whole_file(file, "is a workbook without any sheet").into());
    };
    let mut cells = guarded(file, || {
        workbook
            .worksheet_cells_reader(&sheet)
            .map_err(|error| sheet_problem(file, &sheet, &error))
    })?;
    let mut rows = SheetRows::default();

    // The header: the first row that is not blank.
    let (header_line, names) = loop {
        let Some(row) = rows.next(file, &sheet, &mut cells)? else {
            return Err(Problem::at_line(
                file,
                1,
                format!(
                    "has no header row: its first sheet ({sheet:?}) is empty; expected a header row naming \
                     the columns {}",
                    column_list::<F>()
                ),
            )
            .into());
        };
        if !row.is_blank(u32::MAX) {
            break (row.line, row.header_names(is_1904));
        }
    };
    let layout = csv_input::match_header(file, header_line, names, F::COLUMNS)?;
    let width = layout.names().len();
    // Per field, the kind of the known column it holds, if any.
    let kinds: Vec<Option<(usize, CellKind)>> = (0..width)
        .map(|field| {
            F::COLUMNS
                .iter()
                .enumerate()
                .find(|&(column, _)| layout.field(column) == field)
                .map(|(column, spec)| (column, spec.kind))
        })
        .collect();

    let produce = |check: &mut dyn FnMut(&Record<'_>, u64, &[CellProblem])| -> Result<(), Problems> {
        let mut text = String::new();
        let mut bounds = Vec::new();
        let mut problems = Vec::new();
        // The row's cells under the header, by column; the last of two in
        // one place wins.
        let mut placed: Vec<(u32, usize)> = Vec::new();
        while let Some(row) = rows.next(file, &sheet, &mut cells)? {
            if row.is_blank(width as u32) {
                continue;
            }
            placed.clear();
            placed.extend(
                row.cells
                    .iter()
                    .enumerate()
                    .filter(|(_, (column, _))| (*column as usize) < width)
                    .map(|(index, (column, _))| (*column, index)),
            );
            placed.sort_by_key(|&(column, _)| column);
            text.clear();
            bounds.clear();
            problems.clear();
            // The record ends at the row's last cell, so that a row costs
            // what its cells do, however wide the header.
            let mut next = placed.iter().peekable();
            let end = placed.last().map_or(0, |&(column, _)| column as usize + 1);
            for (field, kind) in kinds.iter().enumerate().take(end) {
                let start = text.len();
                let mut cell = None;
                while let Some(&&(column, index)) = next.peek() {
                    if column as usize != field {
                        break;
                    }
                    cell = Some(&row.cells[index].1);
                    next.next();
                }
                if let Some(cell) = cell {
                    let kind = kind.map(|(_, kind)| kind);
                    let (shown, problem) = match cell_text(cell, kind, is_1904) {
                        Ok(shown) => (shown, None),
                        Err((shown, message)) => (shown, Some(message)),
                    };
                    text.push_str(&shown);
                    if let (Some(message), Some((column, _))) = (problem, kinds[field]) {
                        problems.push(CellProblem { column, message });
                    }
                }
                bounds.push((start, text.len()));
            }
            check(
                &Record::new(text.as_bytes(), &bounds, row.line),
                row.line,
                &problems,
            );
        }
        Ok(())
    };
    csv_input::check_records(file, format, layout, mode, produce)
}

fn column_list<F: CsvFormat>() -> String {
    F::COLUMNS
        .iter()
        .map(|column| column.name)
        .collect::<Vec<_>>()
        .join(",")
}

fn not_a_workbook(file: &str, error: &dyn std::fmt::Display) -> Problem {
    Problem::whole_file(
        file,
        format!(
            "is a ZIP archive but not a readable XLSX workbook ({error}): save the sheet as .xlsx, or as CSV \
             in UTF-8"
        ),
    )
}

/// Runs `read`, a call into the ZIP or XLSX readers, turning a panic in
/// them (a bug of theirs, met on a malformed file: calamine 0.38 computes
/// cell positions with arithmetic that overflows on absurd references) into
/// a problem with the file.
fn guarded<T>(file: &str, read: impl FnOnce() -> Result<T, Problem>) -> Result<T, Problem> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(read)).unwrap_or_else(|_| {
        Err(Problem::whole_file(
            file,
            "is a malformed workbook the XLSX reader fails on: save it again in Excel, or as CSV in UTF-8",
        ))
    })
}

fn sheet_problem(file: &str, sheet: &str, error: &dyn std::fmt::Display) -> Problem {
    Problem::whole_file(
        file,
        format!("its first sheet ({sheet:?}) cannot be read: {error}"),
    )
}

/// Refuses a workbook whose parts would unpack to more than
/// [`MAX_WORKBOOK_UNPACKED_BYTES`], from the sizes its ZIP directory
/// declares (which bound what is unpacked: a part that unpacks to more
/// than its declared size fails).
fn check_unpacked_size<R: Read + Seek>(file: &str, source: &mut R) -> Result<(), Problem> {
    let mut archive = zip::ZipArchive::new(&mut *source).map_err(|error| not_a_workbook(file, &error))?;
    let mut total: u64 = 0;
    for index in 0..archive.len() {
        let part = archive
            .by_index_raw(index)
            .map_err(|error| not_a_workbook(file, &error))?;
        total = total.saturating_add(part.size());
    }
    drop(archive);
    if total > MAX_WORKBOOK_UNPACKED_BYTES {
        return Err(Problem::whole_file(
            file,
            format!(
                "is a workbook whose parts unpack to {total} bytes, more than the {} allowed: split it \
                 into smaller files",
                MAX_WORKBOOK_UNPACKED_BYTES
            ),
        ));
    }
    source
        .seek(SeekFrom::Start(0))
        .map_err(|error| Problem::whole_file(file, format!("cannot be read: {error}")))?;
    Ok(())
}

/// One row of a sheet: its cells that hold something, by column.
#[derive(Debug, Default)]
struct SheetRow<'a> {
    /// The sheet's row number (1-based), as a line.
    line: u64,
    cells: Vec<(u32, DataRef<'a>)>,
}

impl<'a> SheetRow<'a> {
    /// Whether every cell left of `width` is empty or only spaces and tabs.
    fn is_blank(&self, width: u32) -> bool {
        self.cells.iter().all(|(column, cell)| {
            *column >= width
                || match cell {
                    DataRef::Empty => true,
                    DataRef::String(text) => is_blank_text(text),
                    DataRef::SharedString(text) => is_blank_text(text),
                    _ => false,
                }
        })
    }

    /// The header's names: each cell as text, up to the last that is not
    /// empty.
    fn header_names(&self, is_1904: bool) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for (column, cell) in &self.cells {
            let name = cell_text(cell, None, is_1904).unwrap_or_else(|(shown, _)| shown);
            let column = *column as usize;
            if name.is_empty() {
                continue;
            }
            if names.len() <= column {
                names.resize(column + 1, String::new());
            }
            names[column] = name;
        }
        names
    }
}

fn is_blank_text(text: &str) -> bool {
    text.bytes().all(|byte| byte == b' ' || byte == b'\t')
}

/// Groups the cells of a sheet, which come row after row, into rows.
#[derive(Debug, Default)]
struct SheetRows<'a> {
    /// The first cell of the next row, read ahead.
    pending: Option<(u32, u32, DataRef<'a>)>,
    done: bool,
}

impl<'a> SheetRows<'a> {
    fn next<R: Read + Seek>(
        &mut self,
        file: &str,
        sheet: &str,
        cells: &mut calamine::XlsxCellReader<'a, R>,
    ) -> Result<Option<SheetRow<'a>>, Problem> {
        let mut row = SheetRow::default();
        let mut current = None;
        if let Some((at_row, column, cell)) = self.pending.take() {
            current = Some(at_row);
            row.line = u64::from(at_row) + 1;
            row.cells.push((column, cell));
        }
        while !self.done {
            let Some(cell) = guarded(file, || {
                cells
                    .next_cell()
                    .map_err(|error| sheet_problem(file, sheet, &error))
            })?
            else {
                self.done = true;
                break;
            };
            let (at_row, column) = cell.get_position();
            if column >= MAX_COLUMNS {
                return Err(Problem::at_line(
                    file,
                    u64::from(at_row) + 1,
                    format!(
                        "has a cell beyond the last column of a sheet (XFD): column {}",
                        column + 1
                    ),
                ));
            }
            match current {
                Some(current) if at_row == current => {}
                Some(current) if at_row > current => {
                    self.pending = Some((at_row, column, cell.get_value().clone()));
                    return Ok(Some(row));
                }
                Some(_) => {
                    return Err(Problem::at_line(
                        file,
                        u64::from(at_row) + 1,
                        format!(
                            "its first sheet ({sheet:?}) lists its rows out of order: save it again in Excel"
                        ),
                    ));
                }
                None => {
                    current = Some(at_row);
                    row.line = u64::from(at_row) + 1;
                }
            }
            if row.cells.len() >= MAX_COLUMNS as usize {
                return Err(Problem::at_line(
                    file,
                    row.line,
                    format!("has more than {MAX_COLUMNS} cells in one row"),
                ));
            }
            row.cells.push((column, cell.get_value().clone()));
        }
        Ok(current.map(|_| row))
    }
}

/// The text a CSV field would hold for `cell`, in a column of `kind`
/// (`None`: a column no reader knows, where any cell is taken as shown).
/// `Err` with the cell as shown and a message when the cell cannot stand
/// for a value of that kind.
fn cell_text(cell: &DataRef<'_>, kind: Option<CellKind>, is_1904: bool) -> Result<String, (String, String)> {
    let shown = match cell {
        DataRef::Empty => String::new(),
        DataRef::String(text) => text.clone(),
        DataRef::SharedString(text) => (*text).to_owned(),
        DataRef::Float(number) => number.to_string(),
        DataRef::Int(number) => number.to_string(),
        DataRef::Bool(true) => "TRUE".to_owned(),
        DataRef::Bool(false) => "FALSE".to_owned(),
        DataRef::DateTime(date_time) if date_time.is_duration() => date_time.as_f64().to_string(),
        DataRef::DateTime(date_time) => match DateCell::of(date_time, is_1904) {
            DateCell::Outside => date_time.as_f64().to_string(),
            date => date.to_string(),
        },
        DataRef::DateTimeIso(text) | DataRef::DurationIso(text) => text.clone(),
        DataRef::Error(error) => error.to_string(),
    };
    let Some(kind) = kind else { return Ok(shown) };
    let expected = match kind {
        CellKind::Text => "expected text",
        CellKind::Identifier => "expected an identifier typed as text",
        CellKind::Date => "expected a date",
        CellKind::Timestamp => {
            "expected a time with its offset typed as text, such as 2024-03-05T10:22:31+08:00"
        }
        CellKind::Money => "expected an amount in yuan",
    };
    let message = match (cell, kind) {
        (DataRef::Empty | DataRef::String(_) | DataRef::SharedString(_), _) => return Ok(shown),
        (DataRef::Float(_) | DataRef::Int(_), CellKind::Text | CellKind::Money) => return Ok(shown),
        (DataRef::Float(_) | DataRef::Int(_), CellKind::Identifier) => format!(
            "is a number in the sheet ({shown}), and an ID typed as a number loses digits in Excel (it keeps \
             15, and no leading zeros): format the column as text and type the IDs again"
        ),
        (DataRef::Float(_) | DataRef::Int(_), CellKind::Date) => format!(
            "is a number in the sheet ({shown}), not a date: type the date as YYYY-MM-DD or format the cell \
             as a date"
        ),
        (DataRef::Float(_) | DataRef::Int(_), CellKind::Timestamp) => format!(
            "is a number in the sheet ({shown}); type the time as text with its offset, such as \
             2024-03-05T10:22:31+08:00"
        ),
        (DataRef::DateTime(date_time), _) if date_time.is_duration() => {
            format!("is a duration cell ({shown}); {expected}")
        }
        (DataRef::DateTime(date_time), CellKind::Date) => match DateCell::of(date_time, is_1904) {
            DateCell::Date(_) => return Ok(shown),
            DateCell::WithTime(_) => format!(
                "is a date cell with a time of day ({shown}); expected a date alone: format the cell as a \
                 date without time, or type it as YYYY-MM-DD"
            ),
            DateCell::Outside => {
                format!("is a date cell whose serial number {shown} is no day from 1900-01-01 to 9999-12-31")
            }
        },
        (DataRef::DateTime(_), CellKind::Timestamp) => format!(
            "is a date cell ({shown}), which holds no offset from UTC: type the time as text with its \
             offset, such as 2024-03-05T10:22:31+08:00 (format the column as text)"
        ),
        (DataRef::DateTime(_), _) => format!("is a date cell ({shown}); {expected}"),
        (DataRef::DateTimeIso(text), CellKind::Date) if !text.contains('T') => return Ok(shown),
        (DataRef::DateTimeIso(_), CellKind::Date) => {
            format!("is a date cell with a time of day ({shown}); expected a date alone, as YYYY-MM-DD")
        }
        (DataRef::DateTimeIso(_), _) => format!("is a date cell ({shown}); {expected}"),
        (DataRef::DurationIso(_), _) => format!("is a duration cell ({shown}); {expected}"),
        (DataRef::Bool(_), _) => format!("is a TRUE/FALSE cell ({shown}); {expected}"),
        (DataRef::Error(_), _) => format!("holds the error {shown} (a formula that failed?); {expected}"),
    };
    Err((shown, message))
}

/// What a date cell's serial number stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DateCell {
    /// A whole number of days.
    Date(Date),
    /// A date with a time of day: shown as Excel would compute it.
    WithTime((u16, u8, u8, u8, u8, u8, u16)),
    /// Not a day Excel can show.
    Outside,
}

impl DateCell {
    /// Decides without float arithmetic: the serial number's shortest
    /// decimal text either is a whole number of days or it is not.
    fn of(date_time: &calamine::ExcelDateTime, is_1904: bool) -> DateCell {
        let serial = date_time.as_f64().to_string();
        if serial.contains(['.', 'e', 'E']) {
            // A fraction of a day: a time of day, if the day is one Excel has.
            return match serial.split('.').next().and_then(|days| days.parse::<i64>().ok()) {
                Some(days) if serial_to_date(days, is_1904).is_some() => {
                    DateCell::WithTime(date_time.to_ymd_hms_milli())
                }
                _ => DateCell::Outside,
            };
        }
        match serial
            .parse::<i64>()
            .ok()
            .and_then(|days| serial_to_date(days, is_1904))
        {
            Some(date) => DateCell::Date(date),
            None => DateCell::Outside,
        }
    }
}

impl std::fmt::Display for DateCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DateCell::Date(date) => write!(f, "{date}"),
            DateCell::WithTime((year, month, day, hour, minute, second, milli)) => {
                write!(
                    f,
                    "{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02}"
                )?;
                if *milli > 0 {
                    write!(f, ".{milli:03}")?;
                }
                Ok(())
            }
            DateCell::Outside => f.write_str("a serial number that is no day"),
        }
    }
}

/// The day of an Excel serial number of days: from 1899-12-30 (1900 date
/// system, where 60 stands for 1900-02-29, a day that never was, and the
/// days before it count from 1899-12-31) or from 1904-01-01 (1904 system).
fn serial_to_date(days: i64, is_1904: bool) -> Option<Date> {
    let (epoch, days) = match (is_1904, days) {
        (true, days) if days >= 0 => (Date::from_ymd(1904, 1, 1)?, days),
        (false, 61..) => (Date::from_ymd(1899, 12, 30)?, days),
        (false, 1..=59) => (Date::from_ymd(1899, 12, 31)?, days),
        _ => return None,
    };
    let date = epoch.add_days(i32::try_from(days).ok()?)?;
    (date.year() <= 9999).then_some(date)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excel_serial_numbers_name_the_days_excel_shows() {
        let date = |days| serial_to_date(days, false).map(|date| date.to_string());
        assert_eq!(date(1).as_deref(), Some("1900-01-01"));
        assert_eq!(date(59).as_deref(), Some("1900-02-28"));
        assert_eq!(date(60), None);
        assert_eq!(date(61).as_deref(), Some("1900-03-01"));
        assert_eq!(date(45_356).as_deref(), Some("2024-03-05"));
        assert_eq!(date(2_958_465).as_deref(), Some("9999-12-31"));
        assert_eq!(date(2_958_466), None);
        assert_eq!(date(0), None);
        assert_eq!(date(-1), None);
        assert_eq!(
            serial_to_date(43_894, true)
                .map(|date| date.to_string())
                .as_deref(),
            Some("2024-03-05")
        );
    }

    fn text_of(cell: DataRef<'_>, kind: CellKind) -> Result<String, String> {
        cell_text(&cell, Some(kind), false).map_err(|(_, message)| message)
    }

    fn date_time(serial: f64) -> DataRef<'static> {
        DataRef::DateTime(calamine::ExcelDateTime::new(
            serial,
            calamine::ExcelDateTimeType::DateTime,
            false,
        ))
    }

    #[test]
    fn numbers_are_written_in_their_shortest_decimal_form() {
        assert_eq!(text_of(DataRef::Float(12.3), CellKind::Money).unwrap(), "12.3");
        assert_eq!(text_of(DataRef::Float(1000.0), CellKind::Money).unwrap(), "1000");
        assert_eq!(
            text_of(DataRef::Float(0.30000000000000004), CellKind::Money).unwrap(),
            "0.30000000000000004"
        );
        assert_eq!(
            text_of(DataRef::Float(1e21), CellKind::Money).unwrap(),
            "1000000000000000000000"
        );
        assert_eq!(text_of(DataRef::Float(f64::NAN), CellKind::Money).unwrap(), "NaN");
        assert_eq!(text_of(DataRef::Int(42), CellKind::Text).unwrap(), "42");
    }

    #[test]
    fn date_cells_are_days_only_when_whole() {
        assert_eq!(
            text_of(date_time(45_356.0), CellKind::Date).unwrap(),
            "2024-03-05"
        );
        let with_time = text_of(date_time(45_356.5), CellKind::Date).unwrap_err();
        assert!(
            with_time.contains("time of day (2024-03-05 12:00:00)"),
            "{with_time}"
        );
        // Less than a microsecond past midnight is still a time of day.
        let just_after = text_of(date_time(45_356.000_000_000_01), CellKind::Date).unwrap_err();
        assert!(just_after.contains("time of day"), "{just_after}");
        let outside = text_of(date_time(-3.0), CellKind::Date).unwrap_err();
        assert!(outside.contains("serial number -3 is no day"), "{outside}");
        let outside = text_of(date_time(f64::INFINITY), CellKind::Date).unwrap_err();
        assert!(outside.contains("serial number inf is no day"), "{outside}");
        let duration = DataRef::DateTime(calamine::ExcelDateTime::new(
            1.5,
            calamine::ExcelDateTimeType::TimeDelta,
            false,
        ));
        assert_eq!(
            text_of(duration, CellKind::Date).unwrap_err(),
            "is a duration cell (1.5); expected a date"
        );
    }

    #[test]
    fn iso_date_cells_are_taken_as_their_text_in_date_columns() {
        assert_eq!(
            text_of(DataRef::DateTimeIso("2024-03-05".into()), CellKind::Date).unwrap(),
            "2024-03-05"
        );
        assert!(text_of(DataRef::DateTimeIso("2024-03-05T10:00:00".into()), CellKind::Date).is_err());
        assert!(text_of(DataRef::DateTimeIso("2024-03-05".into()), CellKind::Timestamp).is_err());
    }

    #[test]
    fn error_and_true_false_cells_stand_for_no_value() {
        assert_eq!(
            text_of(DataRef::Error(calamine::CellErrorType::NA), CellKind::Money).unwrap_err(),
            "holds the error #N/A (a formula that failed?); expected an amount in yuan"
        );
        assert_eq!(
            text_of(DataRef::Bool(true), CellKind::Identifier).unwrap_err(),
            "is a TRUE/FALSE cell (TRUE); expected an identifier typed as text"
        );
        // In a column no reader knows, any cell is taken as shown.
        assert_eq!(
            cell_text(&DataRef::Error(calamine::CellErrorType::Div0), None, false).unwrap(),
            "#DIV/0!"
        );
    }
}
