//! Problems found in input files, each naming its place:
//! `FILE:LINE: column: what is wrong` (`formats.md`, "Bad input").

use std::fmt;

/// How many problems a report keeps; the rest are only counted.
pub const MAX_PROBLEMS_REPORTED: usize = 100;

/// One problem in one place of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file as the user named it.
    pub file: String,
    /// 1-based line (for CSV, the line where the record starts); `None` for
    /// a problem with the whole file (unreadable, empty, wrong encoding).
    pub line: Option<u64>,
    /// The column (CSV header name) or key (TOML) at fault, if any.
    pub column: Option<String>,
    pub message: String,
}

impl Problem {
    pub fn at(file: &str, line: u64, column: &str, message: impl Into<String>) -> Problem {
        Problem {
            file: file.to_owned(),
            line: Some(line),
            column: Some(column.to_owned()),
            message: message.into(),
        }
    }

    pub fn at_line(file: &str, line: u64, message: impl Into<String>) -> Problem {
        Problem {
            file: file.to_owned(),
            line: Some(line),
            column: None,
            message: message.into(),
        }
    }

    pub fn whole_file(file: &str, message: impl Into<String>) -> Problem {
        Problem {
            file: file.to_owned(),
            line: None,
            column: None,
            message: message.into(),
        }
    }
}

/// `FILE:LINE: column: message`, leaving out what is not known.
impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(column) = &self.column {
            write!(f, ": {column}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The problems of one or more files: the first [`MAX_PROBLEMS_REPORTED`]
/// kept, in the order found, the rest counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Problems {
    kept: Vec<Problem>,
    total: usize,
}

impl Problems {
    pub fn new() -> Problems {
        Problems::default()
    }

    pub fn push(&mut self, problem: Problem) {
        self.total += 1;
        if self.kept.len() < MAX_PROBLEMS_REPORTED {
            self.kept.push(problem);
        }
    }

    pub fn extend(&mut self, other: Problems) {
        let uncounted = other.total - other.kept.len();
        for problem in other.kept {
            self.push(problem);
        }
        self.total += uncounted;
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// All problems found, kept or not.
    pub fn total(&self) -> usize {
        self.total
    }

    pub fn kept(&self) -> &[Problem] {
        &self.kept
    }

    /// The same problems, the kept ones in the order of their lines (a
    /// problem of the whole file first, the order found kept within a
    /// line); the count of the rest unchanged.
    pub fn sorted_by_line(mut self) -> Problems {
        self.kept.sort_by_key(|problem| problem.line);
        self
    }

    /// `Err(self)` when there is any problem.
    pub fn into_result(self) -> Result<(), Problems> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
    }
}

impl From<Problem> for Problems {
    fn from(problem: Problem) -> Problems {
        let mut problems = Problems::new();
        problems.push(problem);
        problems
    }
}

/// One problem a line, then `… and N more problems` when some were not kept.
impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for problem in &self.kept {
            writeln!(f, "{problem}")?;
        }
        let more = self.total - self.kept.len();
        if more > 0 {
            writeln!(f, "… and {more} more problems")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_names_file_line_and_column() {
        let problem = Problem::at("invoices.csv", 7, "total", "is empty");
        assert_eq!(problem.to_string(), "invoices.csv:7: total: is empty");
        assert_eq!(
            Problem::whole_file("x.csv", "is empty").to_string(),
            "x.csv: is empty"
        );
    }

    #[test]
    fn problems_beyond_the_limit_are_counted_not_kept() {
        let mut problems = Problems::new();
        for line in 0..(MAX_PROBLEMS_REPORTED as u64 + 5) {
            problems.push(Problem::at_line("a.csv", line + 2, "bad"));
        }
        assert_eq!(problems.kept().len(), MAX_PROBLEMS_REPORTED);
        assert_eq!(problems.total(), MAX_PROBLEMS_REPORTED + 5);
        assert!(problems.to_string().ends_with("… and 5 more problems\n"));
    }
}
