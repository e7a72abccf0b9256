//! Where the readers of row files start: a file is an XLSX workbook when
//! it starts as a ZIP archive does, and CSV text otherwise; a file on disk
//! larger than the limit is refused before it is read.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use crate::csv_input::{self, CsvFormat, Mode, Outcome};
use crate::problem::{Problem, Problems};
use crate::xlsx_input;

/// The largest input file the readers of files on disk take by default:
/// 1 GiB.
pub const DEFAULT_MAX_INPUT_BYTES: u64 = 1 << 30;

/// How files on disk are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOptions {
    /// A larger file is refused before anything of it is read.
    pub max_bytes: u64,
}

impl Default for ReadOptions {
    fn default() -> ReadOptions {
        ReadOptions {
            max_bytes: DEFAULT_MAX_INPUT_BYTES,
        }
    }
}

/// Refuses a file of `size` bytes above `max_bytes`, naming both.
pub fn check_input_size(file: &str, size: u64, max_bytes: u64) -> Result<(), Problem> {
    if size <= max_bytes {
        return Ok(());
    }
    Err(Problem::whole_file(
        file,
        format!(
            "is {}, more than the {} allowed: split it into smaller files",
            size_with_bytes(size),
            size_with_bytes(max_bytes)
        ),
    ))
}

/// `1.8 GiB (2000000000 bytes)`; `63 bytes`.
fn size_with_bytes(bytes: u64) -> String {
    let human = human_bytes(bytes);
    if bytes < 1 << 10 {
        human
    } else {
        format!("{human} ({bytes} bytes)")
    }
}

/// A size for people: `1.5 GiB`, `300 MiB`, `12 KiB`, `10 bytes`; rounded
/// down to a tenth.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [(&str, u32); 4] = [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)];
    for (unit, shift) in UNITS {
        if bytes >= 1 << shift {
            let whole = bytes >> shift;
            let tenths = ((bytes - (whole << shift)) * 10) >> shift;
            return if tenths == 0 {
                format!("{whole} {unit}")
            } else {
                format!("{whole}.{tenths} {unit}")
            };
        }
    }
    format!("{bytes} bytes")
}

/// Reads a file held in memory: a workbook or CSV text.
pub(crate) fn read_bytes<F: CsvFormat>(
    file: &str,
    bytes: &[u8],
    format: &F,
    mode: Mode,
) -> Result<Outcome<F::Row>, Problems> {
    if xlsx_input::is_zip(bytes) {
        xlsx_input::read_workbook(file, std::io::Cursor::new(bytes), format, mode)
    } else {
        csv_input::read_slice_in(file, bytes, format, mode, csv_input::PIECE_BYTES)
    }
}

/// Reads a file from disk: a workbook, or CSV text in bounded chunks.
/// With `max_bytes`, a larger file is refused before it is read.
pub(crate) fn read_path<F: CsvFormat>(
    path: &Path,
    file: &str,
    format: &F,
    mode: Mode,
    max_bytes: Option<u64>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Outcome<F::Row>, Problems> {
    let mut source =
        File::open(path).map_err(|error| Problem::whole_file(file, format!("cannot be opened: {error}")))?;
    let size = source.metadata().map(|metadata| metadata.len()).ok();
    if let (Some(size), Some(max_bytes)) = (size, max_bytes) {
        check_input_size(file, size, max_bytes)?;
    }
    let unreadable = |error: std::io::Error| Problem::whole_file(file, format!("cannot be read: {error}"));
    let mut start = [0u8; 4];
    let started = read_start(&mut source, &mut start).map_err(unreadable)?;
    source.seek(SeekFrom::Start(0)).map_err(unreadable)?;
    if xlsx_input::is_zip(&start[..started]) {
        let outcome = xlsx_input::read_workbook(file, BufReader::new(source), format, mode);
        progress(size.unwrap_or(0));
        return outcome;
    }
    let sizes = (csv_input::CHUNK_BYTES, csv_input::PIECE_BYTES);
    csv_input::read_stream_in(file, &mut source, size, format, mode, sizes, progress)
}

/// Reads up to `buffer.len()` bytes; fewer only at the end of the file.
fn read_start(source: &mut File, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match source.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_shown_in_binary_units() {
        assert_eq!(human_bytes(10), "10 bytes");
        assert_eq!(human_bytes(1 << 30), "1 GiB");
        assert_eq!(human_bytes(2_000_000_000), "1.8 GiB");
        assert_eq!(human_bytes(3 << 19), "1.5 MiB");
    }

    #[test]
    fn a_file_over_the_limit_is_refused_with_its_size_and_the_limit() {
        assert_eq!(
            check_input_size("big.csv", 2_000_000_000, DEFAULT_MAX_INPUT_BYTES)
                .unwrap_err()
                .to_string(),
            "big.csv: is 1.8 GiB (2000000000 bytes), more than the 1 GiB (1073741824 bytes) allowed: split it \
             into smaller files"
        );
        assert!(check_input_size("ok.csv", 1 << 30, DEFAULT_MAX_INPUT_BYTES).is_ok());
    }
}
