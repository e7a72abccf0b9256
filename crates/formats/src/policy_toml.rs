//! The policy file, `policy.toml` (`formats.md`, "Policy: policy.toml").
//!
//! The text is parsed with `toml_edit`, which keeps the place of every key
//! and table header, walked into a [`PolicyDraft`] while the line of each
//! element is remembered, and validated by [`Policy::from_draft`]. Every
//! problem names the line of the offending key or table header (for a
//! duplicate, the later one) and the key, relative to the element it belongs
//! to: the document, a `[[category]]`, a `[[version]]`, a `[[version.rule]]`
//! or one pool entry of a rule.

use std::collections::BTreeSet;
use std::path::Path;

use jiuzhu_core::money::{BasisPoints, Fen};
use jiuzhu_core::policy::{
    CategoryDraft, Policy, PolicyDraft, PolicyProblem, PoolRule, RuleDraft, VersionDraft,
};
use jiuzhu_core::time::Date;
use toml_edit::{Document, InlineTable, Item, Table, Value};

use crate::{Problem, Problems};

const CATEGORY_KEYS: &[&str] = &["code", "name", "rank"];
const TOP_LEVEL_KEYS: &[&str] = &["name", "category", "pools", "version"];
const VERSION_KEYS: &[&str] = &["effective_from", "rule"];
const RULE_KEYS: &[&str] = &["category", "annual_cap", "pools"];
const POOL_ENTRY_KEYS: &[&str] = &["deductible", "ratio", "out_of_scope_ratio", "cap"];

/// Parses and validates the text of a policy file. `file` is the name to show
/// in problems (as the user typed it). A leading byte order mark is allowed.
pub fn parse_policy(file: &str, text: &str) -> Result<Policy, Problems> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines = Lines::new(text);
    let document = match Document::parse(text) {
        Ok(document) => document,
        Err(error) => return Err(syntax_problem(file, text, &lines, &error).into()),
    };
    let root = view_table(&lines, document.as_table(), 1, true);
    let mut reader = Reader {
        file,
        text,
        problems: Vec::new(),
    };
    let (draft, places) = reader.read(&root);
    let mut problems = reader.problems;
    let policy = match Policy::from_draft(draft) {
        Ok(policy) => Some(policy),
        Err(found) => {
            problems.extend(found.iter().filter_map(|problem| places.locate(file, problem)));
            None
        }
    };
    match policy {
        Some(policy) if problems.is_empty() => Ok(policy),
        _ => {
            // Whole-file problems first, then in file order.
            problems.sort_by_key(|problem| problem.line);
            let mut report = Problems::new();
            for problem in problems {
                report.push(problem);
            }
            Err(report)
        }
    }
}

/// Reads a policy file (UTF-8, a leading byte order mark allowed) and parses
/// it with [`parse_policy`]. A file that cannot be read or is not UTF-8 is
/// one problem with the whole file.
pub fn read_policy_file(path: &Path, file: &str) -> Result<Policy, Problems> {
    let bytes = std::fs::read(path)
        .map_err(|error| Problems::from(Problem::whole_file(file, format!("cannot be read: {error}"))))?;
    let text = std::str::from_utf8(&bytes).map_err(|error| {
        let valid = &bytes[..error.valid_up_to()];
        let line = valid.iter().filter(|&&byte| byte == b'\n').count() + 1;
        Problems::from(Problem::at_line(
            file,
            line as u64,
            format!("is not UTF-8 text (the first invalid byte is on line {line}); save the policy as UTF-8"),
        ))
    })?;
    parse_policy(file, text)
}

/// The first problem `toml_edit` found, at the line it names.
fn syntax_problem(file: &str, text: &str, lines: &Lines, error: &toml_edit::TomlError) -> Problem {
    let Some(span) = error.span() else {
        return Problem::whole_file(file, format!("is not valid TOML: {}", error.message()));
    };
    let line = lines.line(span.start);
    if error.message() == "duplicate key" {
        if let Some(key) = text
            .get(span.clone())
            .filter(|key| !key.is_empty() && !key.contains('\n'))
        {
            return Problem::at(
                file,
                line,
                key,
                "is defined twice; TOML allows each key and table only once",
            );
        }
    }
    let column = lines.column(text, span.start);
    Problem::at_line(
        file,
        line,
        format!("not valid TOML (column {column}): {}", error.message()),
    )
}

/// Turns byte offsets into 1-based lines and columns.
struct Lines {
    /// The offset where each line starts.
    starts: Vec<usize>,
}

impl Lines {
    fn new(text: &str) -> Lines {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(offset, _)| offset + 1))
            .collect();
        Lines { starts }
    }

    fn line(&self, offset: usize) -> u64 {
        self.starts.partition_point(|&start| start <= offset) as u64
    }

    /// The 1-based column, in characters.
    fn column(&self, text: &str, offset: usize) -> u64 {
        let line = self.starts.partition_point(|&start| start <= offset);
        let start = line
            .checked_sub(1)
            .and_then(|index| self.starts.get(index))
            .copied()
            .unwrap_or(0);
        let characters = text
            .get(start..offset)
            .map_or(offset - start, |before| before.chars().count());
        characters as u64 + 1
    }
}

/// A table as written — a `[header]` or `[[header]]` table, a table made of
/// dotted keys, or an inline table — with the line of its header (or of the
/// key that made it) and of each of its keys.
struct TableView<'a> {
    line: u64,
    entries: Vec<Entry<'a>>,
}

struct Entry<'a> {
    key: &'a str,
    line: u64,
    node: Node<'a>,
}

enum Node<'a> {
    Table(TableView<'a>),
    /// An array of tables, `[[header]]` or an array of inline tables.
    Tables(Vec<TableView<'a>>),
    Value(&'a Value),
}

/// `key_line` is the line to name when the table has no header of its own
/// (an implicit table, one made of dotted keys, the document's root).
fn view_table<'a>(lines: &Lines, table: &'a Table, key_line: u64, root: bool) -> TableView<'a> {
    let line = match table.span() {
        Some(span) if !root && !table.is_implicit() && !table.is_dotted() => lines.line(span.start),
        _ => key_line,
    };
    let entries = table
        .iter()
        .filter_map(|(key, item)| {
            let entry_line = table
                .key(key)
                .and_then(|key| key.span())
                .map_or(line, |span| lines.line(span.start));
            let node = view_item(lines, item, entry_line)?;
            Some(Entry {
                key,
                line: entry_line,
                node,
            })
        })
        .collect();
    TableView { line, entries }
}

fn view_inline_table<'a>(lines: &Lines, table: &'a InlineTable, line: u64) -> TableView<'a> {
    let entries = table
        .iter()
        .map(|(key, value)| {
            let entry_line = table
                .key(key)
                .and_then(|key| key.span())
                .map_or(line, |span| lines.line(span.start));
            Entry {
                key,
                line: entry_line,
                node: view_value(lines, value, entry_line),
            }
        })
        .collect();
    TableView { line, entries }
}

fn view_item<'a>(lines: &Lines, item: &'a Item, key_line: u64) -> Option<Node<'a>> {
    match item {
        Item::None => None,
        Item::Table(table) => Some(Node::Table(view_table(lines, table, key_line, false))),
        Item::ArrayOfTables(tables) => Some(Node::Tables(
            tables
                .iter()
                .map(|table| view_table(lines, table, key_line, false))
                .collect(),
        )),
        Item::Value(value) => Some(view_value(lines, value, key_line)),
    }
}

fn view_value<'a>(lines: &Lines, value: &'a Value, key_line: u64) -> Node<'a> {
    match value {
        Value::InlineTable(table) => Node::Table(view_inline_table(lines, table, key_line)),
        Value::Array(array) if array.iter().all(Value::is_inline_table) => Node::Tables(
            array
                .iter()
                .filter_map(Value::as_inline_table)
                .map(|table| {
                    let line = table.span().map_or(key_line, |span| lines.line(span.start));
                    view_inline_table(lines, table, line)
                })
                .collect(),
        ),
        _ => Node::Value(value),
    }
}

/// What a node is, for messages: "a string", "an array of tables", ….
fn describe(node: &Node<'_>) -> &'static str {
    match node {
        Node::Table(_) => "a table",
        Node::Tables(tables) if tables.is_empty() => "an empty array",
        Node::Tables(_) => "an array of tables",
        Node::Value(Value::String(_)) => "a string",
        Node::Value(Value::Integer(_)) => "an integer",
        Node::Value(Value::Float(_)) => "a float",
        Node::Value(Value::Boolean(_)) => "a boolean",
        Node::Value(Value::Datetime(_)) => "a date or time",
        Node::Value(Value::Array(_)) => "an array",
        Node::Value(Value::InlineTable(_)) => "a table",
    }
}

/// A key as TOML would need it written: bare when it can be, else quoted.
fn display_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    }
}

fn list(keys: &[&str]) -> String {
    match keys {
        [] => String::new(),
        [only] => (*only).to_owned(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// Where each element of the draft was written, index for index, and which of
/// its values were placeholders for values already reported as bad (so that
/// [`Policy::from_draft`]'s problems about them are not reported again).
#[derive(Default)]
struct Places {
    categories: Vec<CategoryPlace>,
    /// False when a category was left without its code (already reported),
    /// so that a rule naming it is not reported again.
    categories_complete: bool,
    /// `[pools]` entries: the line and the key as shown.
    visit_types: Vec<(u64, String)>,
    /// False when an entry of `[pools]` was left out (already reported), so
    /// that a rule naming its pool is not reported again.
    pools_complete: bool,
    versions: Vec<VersionPlace>,
}

struct CategoryPlace {
    code_line: u64,
    code_valid: bool,
    rank_line: u64,
    rank_valid: bool,
}

struct VersionPlace {
    effective_from_line: u64,
    effective_from_valid: bool,
    rules: Vec<RulePlace>,
}

struct RulePlace {
    category_line: u64,
    category_valid: bool,
    /// Each pool entry: the line of its header or key, and the key as shown.
    pools: Vec<(u64, String)>,
}

impl Places {
    /// The problem a [`PolicyProblem`] is, at its line; `None` when it only
    /// follows from a problem already reported.
    fn locate(&self, file: &str, problem: &PolicyProblem) -> Option<Problem> {
        let message = problem.to_string();
        let rule = |version: usize, rule: usize| self.versions.get(version)?.rules.get(rule);
        match *problem {
            PolicyProblem::DuplicateCategoryCode { category, .. }
            | PolicyProblem::EmptyCategoryCode { category } => {
                let place = self.categories.get(category)?;
                place
                    .code_valid
                    .then(|| Problem::at(file, place.code_line, "code", message))
            }
            PolicyProblem::DuplicateRank { category, .. } => {
                let place = self.categories.get(category)?;
                place
                    .rank_valid
                    .then(|| Problem::at(file, place.rank_line, "rank", message))
            }
            PolicyProblem::UndefinedCategory {
                version, rule: index, ..
            } => {
                let place = rule(version, index)?;
                (place.category_valid && self.categories_complete)
                    .then(|| Problem::at(file, place.category_line, "category", message))
            }
            PolicyProblem::DuplicateRule {
                version, rule: index, ..
            } => {
                let place = rule(version, index)?;
                place
                    .category_valid
                    .then(|| Problem::at(file, place.category_line, "category", message))
            }
            PolicyProblem::DuplicateVersion { version, .. } => {
                let place = self.versions.get(version)?;
                place
                    .effective_from_valid
                    .then(|| Problem::at(file, place.effective_from_line, "effective_from", message))
            }
            PolicyProblem::UnknownPool {
                version,
                rule: index,
                pool,
                ..
            } => {
                let (line, key) = rule(version, index)?.pools.get(pool)?;
                self.pools_complete
                    .then(|| Problem::at(file, *line, key, message))
            }
            PolicyProblem::EmptyVisitType { visit_type } | PolicyProblem::EmptyPoolName { visit_type } => {
                let (line, key) = self.visit_types.get(visit_type)?;
                Some(Problem::at(file, *line, key, message))
            }
            PolicyProblem::TooMany { .. } => Some(Problem::whole_file(file, message)),
        }
    }
}

struct PendingCategory {
    code: Option<String>,
    name: Option<String>,
    rank: Option<i64>,
}

struct PendingVersion {
    effective_from: Option<Date>,
    rules: Vec<RuleDraft>,
}

struct Reader<'a> {
    file: &'a str,
    text: &'a str,
    problems: Vec<Problem>,
}

impl<'a> Reader<'a> {
    fn problem(&mut self, line: u64, key: &str, message: impl Into<String>) {
        self.problems.push(Problem::at(self.file, line, key, message));
    }

    fn unknown_key(&mut self, entry: &Entry<'a>, element: &str, allowed: &[&str]) {
        self.problem(
            entry.line,
            &display_key(entry.key),
            format!("unknown key in {element} (allowed: {})", list(allowed)),
        );
    }

    fn missing_key(&mut self, table: &TableView<'a>, key: &str, element: &str) {
        self.problem(
            table.line,
            key,
            format!("missing from this {element}; it is required"),
        );
    }

    fn wrong_type(&mut self, entry: &Entry<'a>, label: &str, expected: &str) {
        self.problem(
            entry.line,
            label,
            format!("must be {expected}, not {}", describe(&entry.node)),
        );
    }

    /// A table or an array of tables written as something else, with how to
    /// write it.
    fn wrong_shape(&mut self, entry: &Entry<'a>, label: &str, expected: &str, how: &str) {
        let actual = describe(&entry.node);
        self.problem(
            entry.line,
            label,
            format!("must be {expected}, not {actual}; {how}"),
        );
    }

    /// The text of a value as written in the file.
    fn raw(&self, value: &Value) -> Option<&'a str> {
        value.span().and_then(|span| self.text.get(span)).map(str::trim)
    }

    fn read(&mut self, root: &TableView<'a>) -> (PolicyDraft, Places) {
        let mut draft = PolicyDraft::default();
        let mut places = Places {
            categories_complete: true,
            pools_complete: true,
            ..Places::default()
        };
        let mut categories = Vec::new();
        let mut versions = Vec::new();
        for entry in &root.entries {
            match entry.key {
                "name" => {
                    draft.name = self
                        .string(entry, "name", "\"Example policy\"")
                        .map(str::to_owned)
                }
                "category" => match &entry.node {
                    Node::Tables(tables) => {
                        for table in tables {
                            categories.push(self.category(table, &mut places));
                        }
                    }
                    _ => {
                        places.categories_complete = false;
                        self.wrong_shape(
                            entry,
                            "category",
                            "an array of tables",
                            "write each as [[category]]",
                        );
                    }
                },
                "pools" => match &entry.node {
                    Node::Table(table) => self.pools(table, &mut draft, &mut places),
                    _ => {
                        places.pools_complete = false;
                        self.wrong_shape(
                            entry,
                            "pools",
                            "a table",
                            "write [pools] with a line visit_type = \"pool\" for each",
                        );
                    }
                },
                "version" => match &entry.node {
                    Node::Tables(tables) => {
                        for table in tables {
                            versions.push(self.version(table, &mut places));
                        }
                    }
                    _ => self.wrong_shape(
                        entry,
                        "version",
                        "an array of tables",
                        "write each as [[version]]",
                    ),
                },
                _ => self.unknown_key(entry, "the policy", TOP_LEVEL_KEYS),
            }
        }
        draft.categories = finish_categories(categories);
        draft.versions = finish_versions(versions);
        (draft, places)
    }

    fn category(&mut self, table: &TableView<'a>, places: &mut Places) -> PendingCategory {
        let element = "[[category]]";
        let mut category = PendingCategory {
            code: None,
            name: None,
            rank: None,
        };
        let mut place = CategoryPlace {
            code_line: table.line,
            code_valid: false,
            rank_line: table.line,
            rank_valid: false,
        };
        let (mut has_code, mut has_rank) = (false, false);
        for entry in &table.entries {
            match entry.key {
                "code" => {
                    has_code = true;
                    place.code_line = entry.line;
                    category.code = self.string(entry, "code", "\"TK\"").map(str::to_owned);
                }
                "name" => category.name = self.string(entry, "name", "\"特困人员\"").map(str::to_owned),
                "rank" => {
                    has_rank = true;
                    place.rank_line = entry.line;
                    category.rank = self.rank(entry);
                }
                _ => self.unknown_key(entry, element, CATEGORY_KEYS),
            }
        }
        if !has_code {
            self.missing_key(table, "code", element);
        }
        if !has_rank {
            self.missing_key(table, "rank", element);
        }
        place.code_valid = category.code.is_some();
        places.categories_complete &= place.code_valid;
        place.rank_valid = category.rank.is_some();
        places.categories.push(place);
        category
    }

    fn pools(&mut self, table: &TableView<'a>, draft: &mut PolicyDraft, places: &mut Places) {
        for entry in &table.entries {
            let key = format!("pools.{}", display_key(entry.key));
            match &entry.node {
                Node::Value(Value::String(pool)) => {
                    draft.pools.push((entry.key.to_owned(), pool.value().clone()));
                    places.visit_types.push((entry.line, key));
                }
                _ => {
                    places.pools_complete = false;
                    self.wrong_type(
                        entry,
                        &key,
                        "the name of a pool as a string such as \"inpatient\"",
                    );
                }
            }
        }
    }

    fn version(&mut self, table: &TableView<'a>, places: &mut Places) -> PendingVersion {
        let element = "[[version]]";
        let mut version = PendingVersion {
            effective_from: None,
            rules: Vec::new(),
        };
        let mut place = VersionPlace {
            effective_from_line: table.line,
            effective_from_valid: false,
            rules: Vec::new(),
        };
        let mut has_effective_from = false;
        for entry in &table.entries {
            match entry.key {
                "effective_from" => {
                    has_effective_from = true;
                    place.effective_from_line = entry.line;
                    version.effective_from = self.date(entry);
                }
                "rule" => match &entry.node {
                    Node::Tables(tables) => {
                        for table in tables {
                            let (rule, rule_place) = self.rule(table);
                            version.rules.push(rule);
                            place.rules.push(rule_place);
                        }
                    }
                    _ => self.wrong_shape(
                        entry,
                        "rule",
                        "an array of tables",
                        "write each as [[version.rule]]",
                    ),
                },
                _ => self.unknown_key(entry, element, VERSION_KEYS),
            }
        }
        if !has_effective_from {
            self.missing_key(table, "effective_from", element);
        }
        place.effective_from_valid = version.effective_from.is_some();
        places.versions.push(place);
        version
    }

    fn rule(&mut self, table: &TableView<'a>) -> (RuleDraft, RulePlace) {
        let element = "[[version.rule]]";
        let mut rule = RuleDraft {
            category: String::new(),
            annual_cap: None,
            pools: Vec::new(),
        };
        let mut place = RulePlace {
            category_line: table.line,
            category_valid: false,
            pools: Vec::new(),
        };
        let mut has_category = false;
        for entry in &table.entries {
            match entry.key {
                "category" => {
                    has_category = true;
                    place.category_line = entry.line;
                    if let Some(code) = self.string(entry, "category", "\"TK\"") {
                        rule.category = code.to_owned();
                        place.category_valid = true;
                    }
                }
                "annual_cap" => rule.annual_cap = self.amount(entry, "annual_cap"),
                "pools" => match &entry.node {
                    Node::Table(pools) => {
                        for pool in &pools.entries {
                            let key = format!("pools.{}", display_key(pool.key));
                            match &pool.node {
                                Node::Table(pool_table) => {
                                    let pool_rule = self.pool_entry(pool_table, pool.key);
                                    rule.pools.push((pool.key.to_owned(), pool_rule));
                                    place.pools.push((pool_table.line, key));
                                }
                                _ => self.wrong_shape(
                                    pool,
                                    &key,
                                    "a table",
                                    &format!(
                                        "write [version.rule.pools.{}] with deductible and ratio",
                                        display_key(pool.key)
                                    ),
                                ),
                            }
                        }
                    }
                    _ => self.wrong_shape(
                        entry,
                        "pools",
                        "a table of pools",
                        "write each pool as [version.rule.pools.NAME]",
                    ),
                },
                _ => self.unknown_key(entry, element, RULE_KEYS),
            }
        }
        if !has_category {
            self.missing_key(table, "category", element);
        }
        (rule, place)
    }

    /// One pool entry of a rule; values already reported as bad are zero.
    fn pool_entry(&mut self, table: &TableView<'a>, name: &str) -> PoolRule {
        let element = format!("[version.rule.pools.{}]", display_key(name));
        let element = element.as_str();
        let mut pool = PoolRule {
            deductible: Fen::ZERO,
            ratio: BasisPoints::ZERO,
            out_of_scope_ratio: BasisPoints::ZERO,
            cap: None,
        };
        let (mut has_deductible, mut has_ratio) = (false, false);
        for entry in &table.entries {
            match entry.key {
                "deductible" => {
                    has_deductible = true;
                    pool.deductible = self.amount(entry, "deductible").unwrap_or(Fen::ZERO);
                }
                "ratio" => {
                    has_ratio = true;
                    pool.ratio = self.ratio(entry, "ratio").unwrap_or(BasisPoints::ZERO);
                }
                "out_of_scope_ratio" => {
                    pool.out_of_scope_ratio = self
                        .ratio(entry, "out_of_scope_ratio")
                        .unwrap_or(BasisPoints::ZERO);
                }
                "cap" => pool.cap = self.amount(entry, "cap"),
                _ => self.unknown_key(entry, element, POOL_ENTRY_KEYS),
            }
        }
        if !has_deductible {
            self.missing_key(table, "deductible", element);
        }
        if !has_ratio {
            self.missing_key(table, "ratio", element);
        }
        pool
    }

    fn string(&mut self, entry: &Entry<'a>, label: &str, example: &str) -> Option<&'a str> {
        match entry.node {
            Node::Value(Value::String(text)) => Some(text.value().as_str()),
            _ => {
                self.wrong_type(entry, label, &format!("a string such as {example}"));
                None
            }
        }
    }

    /// A number where a string belongs: the message says how to write it.
    fn number_as_string(&mut self, entry: &Entry<'a>, value: &Value, label: &str, what: &str, example: &str) {
        let raw = self.raw(value).unwrap_or("");
        let decimal = !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        let suggestion = if decimal { raw } else { example };
        let shown = if raw.is_empty() { "a number" } else { raw };
        self.problem(
            entry.line,
            label,
            format!("{shown} is a number; write {what} as a string, e.g. {label} = \"{suggestion}\""),
        );
    }

    fn amount(&mut self, entry: &Entry<'a>, label: &str) -> Option<Fen> {
        match entry.node {
            Node::Value(Value::String(text)) => match Fen::parse_yuan(text.value()) {
                Ok(amount) => Some(amount),
                Err(error) => {
                    self.problem(entry.line, label, error.to_string());
                    None
                }
            },
            Node::Value(value @ (Value::Integer(_) | Value::Float(_))) => {
                self.number_as_string(entry, value, label, "amounts", "1234.56");
                None
            }
            _ => {
                self.wrong_type(entry, label, "an amount in yuan as a string such as \"1234.56\"");
                None
            }
        }
    }

    fn ratio(&mut self, entry: &Entry<'a>, label: &str) -> Option<BasisPoints> {
        match entry.node {
            Node::Value(Value::String(text)) => match BasisPoints::parse_ratio(text.value()) {
                Ok(ratio) => Some(ratio),
                Err(error) => {
                    self.problem(entry.line, label, error.to_string());
                    None
                }
            },
            Node::Value(value @ (Value::Integer(_) | Value::Float(_))) => {
                self.number_as_string(entry, value, label, "ratios", "0.7");
                None
            }
            _ => {
                self.wrong_type(
                    entry,
                    label,
                    "a ratio between 0 and 1 as a string such as \"0.7\"",
                );
                None
            }
        }
    }

    fn rank(&mut self, entry: &Entry<'a>) -> Option<i64> {
        match entry.node {
            Node::Value(Value::Integer(rank)) => Some(*rank.value()),
            Node::Value(Value::String(text)) if text.value().parse::<i64>().is_ok() => {
                let text = text.value();
                self.problem(
                    entry.line,
                    "rank",
                    format!("{text:?} is a string; write the rank as a whole number, e.g. rank = {text}"),
                );
                None
            }
            _ => {
                self.wrong_type(entry, "rank", "a whole number such as 1");
                None
            }
        }
    }

    fn date(&mut self, entry: &Entry<'a>) -> Option<Date> {
        let label = "effective_from";
        match entry.node {
            Node::Value(Value::String(text)) => match Date::parse(text.value()) {
                Ok(date) => Some(date),
                Err(error) => {
                    self.problem(entry.line, label, error.to_string());
                    None
                }
            },
            Node::Value(value @ Value::Datetime(datetime)) => {
                let datetime = datetime.value();
                match (datetime.date, datetime.time, datetime.offset) {
                    (Some(date), None, None) => {
                        let parsed =
                            Date::from_ymd(i32::from(date.year), u32::from(date.month), u32::from(date.day));
                        if parsed.is_none() {
                            self.problem(entry.line, label, format!("{date} is not a day of the calendar"));
                        }
                        parsed
                    }
                    _ => {
                        let raw = self.raw(value).unwrap_or("this value");
                        self.problem(
                            entry.line,
                            label,
                            format!(
                                "{raw} is not a date alone; write the day only, e.g. {label} = 2024-01-01"
                            ),
                        );
                        None
                    }
                }
            }
            _ => {
                self.wrong_type(entry, label, "a date such as \"2024-01-01\" or 2024-01-01");
                None
            }
        }
    }
}

/// The categories of the draft; a rank already reported as bad gets one no
/// other category has, so that it is not reported again as a duplicate.
fn finish_categories(pending: Vec<PendingCategory>) -> Vec<CategoryDraft> {
    let used: BTreeSet<i64> = pending.iter().filter_map(|category| category.rank).collect();
    let mut spare = (i64::MIN..).filter(|rank| !used.contains(rank));
    pending
        .into_iter()
        .map(|category| CategoryDraft {
            code: category.code.unwrap_or_default(),
            name: category.name,
            rank: category.rank.or_else(|| spare.next()).unwrap_or(i64::MAX),
        })
        .collect()
}

/// The versions of the draft; a date already reported as bad gets one no
/// other version has, so that it is not reported again as a duplicate.
fn finish_versions(pending: Vec<PendingVersion>) -> Vec<VersionDraft> {
    let used: BTreeSet<Date> = pending
        .iter()
        .filter_map(|version| version.effective_from)
        .collect();
    let mut spare = (0..)
        .map_while(Date::from_days_since_epoch)
        .filter(|date| !used.contains(date));
    let fallback = Date::from_days_since_epoch(0);
    pending
        .into_iter()
        .filter_map(|version| {
            let effective_from = version.effective_from.or_else(|| spare.next()).or(fallback)?;
            Some(VersionDraft {
                effective_from,
                rules: version.rules,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// A valid policy; the tests edit single lines so that line numbers stay.
    const BASE: &str = r#"name = "Test policy"

[[category]]
code = "TK"
rank = 1

[[category]]
code = "DB"
name = "低保对象"
rank = 2

[pools]
outpatient = "outpatient"
inpatient = "inpatient"

[[version]]
effective_from = "2024-01-01"

  [[version.rule]]
  category = "TK"
  annual_cap = "150000"
    [version.rule.pools.inpatient]
    deductible = "0"
    ratio = "1"
    out_of_scope_ratio = "0.5"
    cap = "150000"

  [[version.rule]]
  category = "DB"
    [version.rule.pools.outpatient]
    deductible = "100"
    ratio = "0.7"
"#;

    /// Line 32 is the last line of [`BASE`]; this adds a third category.
    const THIRD_CATEGORY: &str = "\n[[category]]\ncode = \"ZC\"\nrank = 3\n";

    /// [`BASE`] with one line (1-based) replaced by another.
    fn with_line(line: usize, replacement: &str) -> String {
        let mut lines: Vec<&str> = BASE.lines().collect();
        assert!(!replacement.contains('\n'), "a replacement must be one line");
        lines[line - 1] = replacement;
        lines.join("\n") + "\n"
    }

    fn with_lines(replacements: &[(usize, &str)]) -> String {
        let mut lines: Vec<&str> = BASE.lines().collect();
        for &(line, replacement) in replacements {
            lines[line - 1] = replacement;
        }
        lines.join("\n") + "\n"
    }

    fn refused(text: &str) -> Problems {
        match parse_policy("policy.toml", text) {
            Ok(policy) => panic!("the policy should be refused, but it loaded: {policy:?}"),
            Err(problems) => problems,
        }
    }

    /// Every problem as (line, key).
    fn places(text: &str) -> Vec<(Option<u64>, Option<String>)> {
        refused(text)
            .kept()
            .iter()
            .map(|problem| (problem.line, problem.column.clone()))
            .collect()
    }

    #[track_caller]
    fn assert_one_problem(text: &str, line: u64, key: &str, fragment: &str) {
        let problems = refused(text);
        assert_eq!(problems.total(), 1, "{problems}");
        let problem = &problems.kept()[0];
        assert_eq!(
            (problem.line, problem.column.as_deref()),
            (Some(line), Some(key)),
            "{problems}"
        );
        assert!(
            problem.message.contains(fragment),
            "{fragment:?} is not in: {problems}"
        );
    }

    fn date(text: &str) -> Date {
        Date::parse(text).unwrap()
    }

    fn example_policy_path() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/example-policy.toml")
    }

    #[test]
    fn the_base_policy_of_these_tests_loads() {
        let policy = parse_policy("policy.toml", BASE).unwrap();
        assert_eq!(policy.name(), Some("Test policy"));
        assert_eq!(policy.categories().len(), 2);
        assert_eq!(policy.categories()[1].name.as_deref(), Some("低保对象"));
        assert_eq!(policy.categories()[0].name, None);
        let version = &policy.versions()[0];
        let tk = policy.category_by_code("TK").unwrap();
        let rule = version.rule(tk).unwrap();
        assert_eq!(rule.annual_cap, Some(Fen::from_fen(15_000_000)));
        let inpatient = policy.pool_of_visit_type("inpatient").unwrap();
        let pool = rule.pool(inpatient).unwrap();
        assert_eq!(pool.ratio, BasisPoints::ONE);
        assert_eq!(pool.out_of_scope_ratio, BasisPoints::new(5000).unwrap());
        assert_eq!(pool.cap, Some(Fen::from_fen(15_000_000)));
        let db = policy.category_by_code("DB").unwrap();
        let outpatient = policy.pool_of_visit_type("outpatient").unwrap();
        let pool = version.rule(db).unwrap().pool(outpatient).unwrap();
        assert_eq!(pool.deductible, Fen::from_fen(10_000));
        assert_eq!(pool.out_of_scope_ratio, BasisPoints::ZERO);
        assert_eq!(pool.cap, None);
    }

    #[test]
    fn the_example_policy_loads_with_its_categories_pools_and_versions() {
        let policy = read_policy_file(&example_policy_path(), "example-policy.toml").unwrap();
        assert_eq!(policy.categories().len(), 5);
        assert_eq!(policy.pool_names(), ["outpatient", "inpatient"]);
        assert_eq!(policy.visit_types().len(), 4);
        assert_eq!(policy.versions().len(), 2);
        let version = policy.version_on(date("2025-06-30")).unwrap();
        assert_eq!(policy.version(version).effective_from, date("2025-01-01"));
        let db = policy.category_by_code("DB").unwrap();
        let outpatient = policy.pool_of_visit_type("outpatient").unwrap();
        let rule = policy.version(version).rule(db).unwrap();
        assert_eq!(
            rule.pool(outpatient).unwrap().cap,
            Some(Fen::parse_yuan("3500").unwrap())
        );
        assert_eq!(
            rule.pool(outpatient).unwrap().ratio,
            BasisPoints::new(7000).unwrap()
        );
        assert_eq!(rule.annual_cap, Some(Fen::parse_yuan("150000").unwrap()));
        let zcx = policy.category_by_code("ZCX").unwrap();
        let inpatient = policy.pool_of_visit_type("chronic").unwrap();
        let first = policy.version_on(date("2024-12-31")).unwrap();
        let pool = policy.version(first).rule(zcx).unwrap().pool(inpatient).unwrap();
        assert_eq!(pool.deductible, Fen::parse_yuan("1000").unwrap());
    }

    #[test]
    fn the_policy_shown_in_formats_md_loads() {
        let text = r#"name = "Example policy"

[[category]]
code = "TK"            # short code used in spells
name = "特困人员"
rank = 1               # lower rank wins when a person holds several categories on one date

[[category]]
code = "DB"
name = "低保对象"
rank = 2

[pools]                # visit type -> pool
outpatient = "outpatient"
chronic = "outpatient"  # 门诊慢特病 draws on the outpatient pool here
inpatient = "inpatient"

[[version]]
effective_from = "2024-01-01"

  [[version.rule]]
  category = "TK"
  annual_cap = "150000"           # optional: across all pools, per person and year

    [version.rule.pools.inpatient]
    deductible = "0"              # per person, year and pool
    ratio = "1"                   # of the base above the deductible, 0..1, at most 4 decimals
    out_of_scope_ratio = "0"      # optional, default 0: of out-of-scope self-pay
    cap = "150000"                # optional: per person, year and pool

    [version.rule.pools.outpatient]
    deductible = "0"
    ratio = "1"
"#;
        let policy = parse_policy("policy.toml", text).unwrap();
        assert_eq!(
            policy.pool_of_visit_type("chronic"),
            policy.pool_of_visit_type("outpatient")
        );
        assert_eq!(policy.versions().len(), 1);
    }

    #[test]
    fn a_leading_byte_order_mark_is_accepted() {
        let text = format!("\u{feff}{BASE}");
        assert_eq!(
            parse_policy("policy.toml", &text).unwrap(),
            parse_policy("policy.toml", BASE).unwrap()
        );

        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        let policy = read_policy_file(file.path(), "policy.toml").unwrap();
        assert_eq!(policy, parse_policy("policy.toml", BASE).unwrap());
    }

    #[test]
    fn lines_are_counted_from_the_first_line_after_a_byte_order_mark() {
        let text = format!("\u{feff}{}", with_line(24, "    ratio = \"1.5\""));
        assert_one_problem(&text, 24, "ratio", "outside 0..1");
    }

    #[test]
    fn a_file_that_is_not_utf8_is_refused_at_the_line_of_the_first_bad_byte() {
        let mut bytes = b"name = \"x\"\n\n[[category]]\nname = \"".to_vec();
        bytes.extend_from_slice(&[0xB5, 0xCD, 0xB1, 0xA3]); // 低保 in GBK
        bytes.extend_from_slice(b"\"\n");
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(&bytes).unwrap();
        let problems = read_policy_file(file.path(), "policy.toml").unwrap_err();
        assert_eq!(problems.total(), 1);
        let problem = &problems.kept()[0];
        assert_eq!((problem.line, problem.column.as_deref()), (Some(4), None));
        assert!(problem.message.contains("not UTF-8"), "{problems}");
        assert!(problem.message.contains("line 4"), "{problems}");
        assert!(
            problems
                .to_string()
                .starts_with("policy.toml:4: is not UTF-8 text"),
            "{problems}"
        );
    }

    #[test]
    fn a_file_that_cannot_be_read_is_refused_as_a_whole() {
        let directory = tempfile::tempdir().unwrap();
        let problems = read_policy_file(&directory.path().join("missing.toml"), "missing.toml").unwrap_err();
        assert_eq!(problems.total(), 1);
        assert_eq!(problems.kept()[0].line, None);
        assert!(
            problems.kept()[0].message.starts_with("cannot be read"),
            "{problems}"
        );
    }

    #[test]
    fn a_problem_is_printed_as_file_line_key_and_message() {
        let problems = refused(&with_line(24, "    ratio = \"1.5\""));
        assert_eq!(
            problems.to_string(),
            "policy.toml:24: ratio: \"1.5\" is outside 0..1\n"
        );
    }

    // Unknown keys, at every level.

    #[test]
    fn an_unknown_top_level_key_is_refused_with_its_line() {
        assert_one_problem(
            &with_line(2, "colour = \"red\""),
            2,
            "colour",
            "unknown key in the policy",
        );
    }

    #[test]
    fn an_unknown_key_in_a_category_is_refused_with_its_line() {
        assert_one_problem(
            &with_line(6, "colour = \"red\""),
            6,
            "colour",
            "unknown key in [[category]]",
        );
    }

    #[test]
    fn an_unknown_key_in_a_version_is_refused_with_its_line() {
        assert_one_problem(
            &with_line(18, "author = \"me\""),
            18,
            "author",
            "unknown key in [[version]]",
        );
    }

    #[test]
    fn an_unknown_key_in_a_rule_is_refused_with_its_line() {
        assert_one_problem(
            &with_line(21, "  annual_kap = \"150000\""),
            21,
            "annual_kap",
            "unknown key in [[version.rule]] (allowed: category, annual_cap and pools)",
        );
    }

    #[test]
    fn an_unknown_key_in_a_pool_entry_is_refused_with_its_line() {
        assert_one_problem(
            &with_line(26, "    kap = \"150000\""),
            26,
            "kap",
            "unknown key in [version.rule.pools.inpatient]",
        );
    }

    #[test]
    fn an_unknown_key_that_needs_quotes_is_shown_quoted() {
        assert_one_problem(
            &with_line(6, "\"two words\" = 1"),
            6,
            "\"two words\"",
            "unknown key",
        );
    }

    #[test]
    fn an_unknown_table_is_refused_at_its_header() {
        let text = format!("{BASE}\n[extras]\nx = 1\n");
        assert_one_problem(&text, 34, "extras", "unknown key in the policy");
    }

    // Duplicates.

    #[test]
    fn a_duplicate_category_code_is_refused_at_the_later_code() {
        let text = format!("{BASE}{}", THIRD_CATEGORY.replace("\"ZC\"", "\"TK\""));
        assert_one_problem(&text, 35, "code", "category code \"TK\" is defined twice");
    }

    #[test]
    fn a_duplicate_rank_is_refused_at_the_later_rank() {
        assert_one_problem(
            &with_line(10, "rank = 1"),
            10,
            "rank",
            "rank 1 is given to two categories",
        );
    }

    #[test]
    fn a_rule_naming_an_undefined_category_is_refused_at_its_category_key() {
        assert_one_problem(
            &with_line(29, "  category = \"XX\""),
            29,
            "category",
            "rule names category \"XX\", which the policy does not define",
        );
    }

    #[test]
    fn two_rules_for_one_category_in_one_version_are_refused_at_the_later_category_key() {
        assert_one_problem(
            &with_line(29, "  category = \"TK\""),
            29,
            "category",
            "a second rule for category \"TK\"",
        );
    }

    #[test]
    fn the_same_category_may_have_a_rule_in_each_version() {
        let text = format!(
            "{BASE}\n[[version]]\neffective_from = \"2025-01-01\"\n[[version.rule]]\ncategory = \"TK\"\n"
        );
        assert_eq!(parse_policy("policy.toml", &text).unwrap().versions().len(), 2);
    }

    #[test]
    fn two_versions_with_the_same_date_are_refused_at_the_later_effective_from() {
        let text = format!("{BASE}\n[[version]]\neffective_from = 2024-01-01\n");
        assert_one_problem(
            &text,
            35,
            "effective_from",
            "two versions take effect on 2024-01-01",
        );
    }

    #[test]
    fn a_pool_not_in_pools_is_refused_at_its_table_header() {
        assert_one_problem(
            &with_line(30, "    [version.rule.pools.dental]"),
            30,
            "pools.dental",
            "pool \"dental\" is not a pool of [pools]",
        );
    }

    #[test]
    fn a_pool_not_in_pools_written_with_dotted_keys_is_refused_at_its_key() {
        let text = with_lines(&[
            (30, "    # no header"),
            (31, "    pools.dental.deductible = \"100\""),
            (32, "    pools.dental.ratio = \"0.7\""),
        ]);
        assert_one_problem(
            &text,
            31,
            "pools.dental",
            "pool \"dental\" is not a pool of [pools]",
        );
    }

    #[test]
    fn a_pool_not_in_pools_written_inline_is_refused_at_its_key() {
        let text = with_lines(&[
            (
                30,
                "    pools = { dental = { deductible = \"100\", ratio = \"0.7\" } }",
            ),
            (31, ""),
            (32, ""),
        ]);
        assert_one_problem(&text, 30, "pools.dental", "is not a pool of [pools]");
    }

    #[test]
    fn a_visit_type_is_a_key_of_pools_not_a_pool_name() {
        // "chronic" maps to a pool, but it is not a pool itself.
        let text = with_lines(&[
            (15, "chronic = \"outpatient\""),
            (30, "    [version.rule.pools.chronic]"),
        ]);
        assert_one_problem(&text, 30, "pools.chronic", "is not a pool of [pools]");
    }

    #[test]
    fn an_empty_category_code_is_refused_at_its_line() {
        let text = format!("{BASE}{}", THIRD_CATEGORY.replace("\"ZC\"", "\"\""));
        assert_one_problem(&text, 35, "code", "must not be empty");
    }

    #[test]
    fn an_empty_pool_name_is_refused_at_its_line() {
        assert_one_problem(
            &with_line(15, "dental = \"\""),
            15,
            "pools.dental",
            "pool name must not be empty",
        );
    }

    // Ratios and amounts.

    #[test]
    fn a_ratio_above_one_is_refused_with_its_line() {
        assert_one_problem(
            &with_line(24, "    ratio = \"1.5\""),
            24,
            "ratio",
            "\"1.5\" is outside 0..1",
        );
    }

    #[test]
    fn a_ratio_with_five_decimals_is_refused_with_its_line() {
        assert_one_problem(
            &with_line(32, "    ratio = \"0.12345\""),
            32,
            "ratio",
            "\"0.12345\" has more than 4 decimals",
        );
    }

    #[test]
    fn a_ratio_with_four_decimals_is_exact() {
        let policy = parse_policy("policy.toml", &with_line(32, "    ratio = \"0.8512\"")).unwrap();
        let db = policy.category_by_code("DB").unwrap();
        let outpatient = policy.pool_of_visit_type("outpatient").unwrap();
        let pool = &policy.versions()[0].rule(db).unwrap().pool(outpatient).unwrap();
        assert_eq!(pool.ratio, BasisPoints::new(8512).unwrap());
    }

    #[test]
    fn a_negative_out_of_scope_ratio_is_refused_with_its_line() {
        assert_one_problem(
            &with_line(25, "    out_of_scope_ratio = \"-0.1\""),
            25,
            "out_of_scope_ratio",
            "\"-0.1\" is not a ratio",
        );
    }

    #[test]
    fn a_malformed_deductible_is_refused_with_its_line() {
        assert_one_problem(
            &with_line(23, "    deductible = \"1,000\""),
            23,
            "deductible",
            "\"1,000\" is not an amount in yuan",
        );
    }

    #[test]
    fn a_cap_with_three_decimals_is_refused_with_its_line() {
        assert_one_problem(
            &with_line(26, "    cap = \"12.345\""),
            26,
            "cap",
            "has more than two decimals",
        );
    }

    #[test]
    fn a_negative_annual_cap_is_refused_with_its_line() {
        assert_one_problem(
            &with_line(21, "  annual_cap = \"-5\""),
            21,
            "annual_cap",
            "\"-5\" is not an amount",
        );
    }

    #[test]
    fn an_empty_amount_is_refused_with_its_line() {
        assert_one_problem(
            &with_line(31, "    deductible = \"\""),
            31,
            "deductible",
            "is empty",
        );
    }

    // Missing keys, at the line of the table header.

    #[test]
    fn a_category_without_a_code_is_refused_at_its_header() {
        let text = format!(
            "{BASE}{}",
            THIRD_CATEGORY.replace("code = \"ZC\"", "name = \"重残\"")
        );
        assert_one_problem(&text, 34, "code", "missing from this [[category]]");
    }

    #[test]
    fn a_category_without_a_rank_is_refused_at_its_header() {
        assert_one_problem(
            &with_line(5, "# no rank"),
            3,
            "rank",
            "missing from this [[category]]",
        );
    }

    #[test]
    fn a_version_without_effective_from_is_refused_at_its_header() {
        assert_one_problem(
            &with_line(17, "# no date"),
            16,
            "effective_from",
            "missing from this [[version]]",
        );
    }

    #[test]
    fn a_rule_without_a_category_is_refused_at_its_header() {
        assert_one_problem(
            &with_line(29, "  # no category"),
            28,
            "category",
            "missing from this [[version.rule]]",
        );
    }

    #[test]
    fn a_pool_entry_without_a_deductible_is_refused_at_its_header() {
        assert_one_problem(
            &with_line(31, "    # no deductible"),
            30,
            "deductible",
            "missing from this [version.rule.pools.outpatient]",
        );
    }

    #[test]
    fn a_pool_entry_without_a_ratio_is_refused_at_its_header() {
        assert_one_problem(
            &with_line(32, "    # no ratio"),
            30,
            "ratio",
            "missing from this [version.rule.pools.outpatient]",
        );
    }

    #[test]
    fn optional_keys_may_be_left_out() {
        let text = with_lines(&[(1, "# no name"), (9, "# no name"), (21, ""), (25, ""), (26, "")]);
        let policy = parse_policy("policy.toml", &text).unwrap();
        assert_eq!(policy.name(), None);
        assert_eq!(policy.categories()[1].name, None);
    }

    // Wrong types.

    #[test]
    fn a_ratio_written_as_a_number_is_refused_with_how_to_write_it() {
        assert_one_problem(
            &with_line(32, "    ratio = 0.7"),
            32,
            "ratio",
            "0.7 is a number; write ratios as a string, e.g. ratio = \"0.7\"",
        );
    }

    #[test]
    fn an_amount_written_as_an_integer_is_refused_with_how_to_write_it() {
        assert_one_problem(
            &with_line(23, "    deductible = 0"),
            23,
            "deductible",
            "0 is a number; write amounts as a string, e.g. deductible = \"0\"",
        );
    }

    #[test]
    fn an_amount_written_as_a_boolean_is_refused() {
        assert_one_problem(&with_line(26, "    cap = false"), 26, "cap", "not a boolean");
    }

    #[test]
    fn a_rank_written_as_a_string_is_refused_with_how_to_write_it() {
        assert_one_problem(
            &with_line(5, "rank = \"1\""),
            5,
            "rank",
            "write the rank as a whole number, e.g. rank = 1",
        );
    }

    #[test]
    fn a_rank_written_as_a_float_is_refused() {
        assert_one_problem(
            &with_line(5, "rank = 1.5"),
            5,
            "rank",
            "must be a whole number such as 1, not a float",
        );
    }

    #[test]
    fn an_effective_from_written_as_a_toml_date_is_accepted() {
        let policy = parse_policy("policy.toml", &with_line(17, "effective_from = 2024-01-01")).unwrap();
        assert_eq!(policy.versions()[0].effective_from, date("2024-01-01"));
    }

    #[test]
    fn an_effective_from_written_as_a_toml_datetime_is_refused() {
        assert_one_problem(
            &with_line(17, "effective_from = 2024-01-01T00:00:00"),
            17,
            "effective_from",
            "2024-01-01T00:00:00 is not a date alone",
        );
    }

    #[test]
    fn an_effective_from_written_as_an_integer_is_refused() {
        assert_one_problem(
            &with_line(17, "effective_from = 20240101"),
            17,
            "effective_from",
            "not an integer",
        );
    }

    #[test]
    fn an_effective_from_that_is_not_a_day_is_refused() {
        assert_one_problem(
            &with_line(17, "effective_from = \"2024-02-30\""),
            17,
            "effective_from",
            "\"2024-02-30\" is not a day of the calendar",
        );
        assert_one_problem(
            &with_line(17, "effective_from = \"2024/01/01\""),
            17,
            "effective_from",
            "is not a date as YYYY-MM-DD",
        );
    }

    #[test]
    fn a_name_that_is_not_a_string_is_refused() {
        assert_one_problem(&with_line(1, "name = 5"), 1, "name", "must be a string");
        assert_one_problem(&with_line(9, "name = [\"低保\"]"), 9, "name", "not an array");
    }

    #[test]
    fn a_code_or_category_that_is_not_a_string_is_refused() {
        // The rule for DB then names no category, which is not reported again.
        let text = with_lines(&[(8, "code = 2"), (29, "  category = 2")]);
        assert_eq!(
            places(&text),
            [
                (Some(8), Some("code".to_owned())),
                (Some(29), Some("category".to_owned()))
            ]
        );
    }

    #[test]
    fn a_visit_type_mapped_to_a_non_string_is_refused() {
        assert_one_problem(
            &with_line(15, "dental = 5"),
            15,
            "pools.dental",
            "must be the name of a pool",
        );
    }

    #[test]
    fn categories_written_as_a_single_table_are_refused() {
        let text = "[category]\ncode = \"TK\"\nrank = 1\n";
        assert_one_problem(
            text,
            1,
            "category",
            "must be an array of tables, not a table; write each as [[category]]",
        );
    }

    #[test]
    fn pools_written_as_an_array_are_refused() {
        let text = "pools = [\"outpatient\"]\n";
        assert_one_problem(text, 1, "pools", "must be a table, not an array; write [pools]");
    }

    #[test]
    fn a_rule_written_as_a_single_table_is_refused() {
        let text = "[[version]]\neffective_from = \"2024-01-01\"\n[version.rule]\ncategory = \"TK\"\n";
        assert_one_problem(text, 3, "rule", "not a table; write each as [[version.rule]]");
    }

    #[test]
    fn a_pool_entry_that_is_not_a_table_is_refused() {
        let text = with_lines(&[(30, "    pools.outpatient = \"0.7\""), (31, ""), (32, "")]);
        assert_one_problem(&text, 30, "pools.outpatient", "must be a table");
    }

    // Syntax.

    #[test]
    fn a_key_written_twice_is_refused_as_invalid_toml_at_the_second() {
        assert_one_problem(&with_line(6, "code = \"TT\""), 6, "code", "is defined twice");
    }

    #[test]
    fn a_table_written_twice_is_refused_as_invalid_toml_at_the_second() {
        let text = format!("{BASE}\n[pools]\n");
        assert_one_problem(&text, 34, "pools", "is defined twice");
    }

    #[test]
    fn broken_toml_is_one_problem_at_the_line_toml_reports() {
        let problems = refused(&with_lines(&[
            (9, "name = \"低保对象"),
            (24, "    ratio = \"1.5\""),
        ]));
        assert_eq!(problems.total(), 1, "{problems}");
        let problem = &problems.kept()[0];
        assert_eq!((problem.line, problem.column.as_deref()), (Some(9), None));
        assert!(
            problem.message.starts_with("not valid TOML (column"),
            "{problems}"
        );
    }

    #[test]
    fn an_invalid_toml_date_is_refused_as_invalid_toml() {
        let problems = refused(&with_line(17, "effective_from = 2024-13-01"));
        assert_eq!(problems.total(), 1, "{problems}");
        assert_eq!(problems.kept()[0].line, Some(17));
        assert!(
            problems.kept()[0].message.contains("not valid TOML (column 18)"),
            "{problems}"
        );
    }

    // Many problems at once, and no echoes.

    #[test]
    fn every_problem_is_reported_in_one_pass_in_file_order() {
        let text = with_lines(&[
            (2, "colour = \"red\""),
            (8, "code = \"TK\""),
            (10, "rank = 1"),
            (17, "effective_from = \"2024-01-32\""),
            (24, "    ratio = \"1.5\""),
            (26, "    kap = \"1\""),
            (29, "  category = \"XX\""),
            (30, "    [version.rule.pools.dental]"),
            (32, "    # no ratio"),
        ]);
        let problems = refused(&text);
        let places: Vec<(Option<u64>, Option<&str>)> = problems
            .kept()
            .iter()
            .map(|problem| (problem.line, problem.column.as_deref()))
            .collect();
        assert_eq!(
            places,
            [
                (Some(2), Some("colour")),
                (Some(8), Some("code")),
                (Some(10), Some("rank")),
                (Some(17), Some("effective_from")),
                (Some(24), Some("ratio")),
                (Some(26), Some("kap")),
                (Some(29), Some("category")),
                (Some(30), Some("ratio")),
                (Some(30), Some("pools.dental")),
            ],
            "{problems}"
        );
    }

    #[test]
    fn bad_ranks_are_not_reported_again_as_duplicates() {
        let text = with_lines(&[(5, "rank = \"x\""), (10, "rank = true")]);
        assert_eq!(
            places(&text),
            [
                (Some(5), Some("rank".to_owned())),
                (Some(10), Some("rank".to_owned()))
            ]
        );
    }

    #[test]
    fn bad_dates_are_not_reported_again_as_duplicates() {
        let text = format!(
            "{}\n[[version]]\neffective_from = 5\n",
            with_line(17, "effective_from = true")
        );
        assert_eq!(
            places(&text),
            [
                (Some(17), Some("effective_from".to_owned())),
                (Some(35), Some("effective_from".to_owned()))
            ]
        );
    }

    #[test]
    fn a_bad_entry_of_pools_does_not_make_its_pool_unknown_in_rules() {
        assert_one_problem(
            &with_line(14, "inpatient = 5"),
            14,
            "pools.inpatient",
            "must be the name of a pool",
        );
    }

    #[test]
    fn a_category_without_a_valid_code_does_not_make_rules_name_an_undefined_category() {
        // DB loses its code; the rule for DB at line 29 is not reported as well.
        assert_one_problem(
            &with_line(8, "code = 2"),
            8,
            "code",
            "must be a string such as \"TK\", not an integer",
        );
        assert_one_problem(
            &with_line(8, "# no code"),
            7,
            "code",
            "missing from this [[category]]",
        );
    }

    #[test]
    fn a_missing_code_does_not_make_other_categories_duplicates() {
        let text = format!(
            "{BASE}{}{}",
            THIRD_CATEGORY.replace("code = \"ZC\"", "# none"),
            THIRD_CATEGORY
                .replace("code = \"ZC\"", "# none")
                .replace("rank = 3", "rank = 4")
        );
        assert_eq!(
            places(&text),
            [
                (Some(34), Some("code".to_owned())),
                (Some(38), Some("code".to_owned()))
            ]
        );
    }

    // Other ways of writing the same tables.

    #[test]
    fn inline_tables_and_arrays_of_inline_tables_are_read_like_table_headers() {
        let text = r#"name = "Test policy"
category = [{ code = "TK", rank = 1 }, { code = "DB", name = "低保对象", rank = 2 }]
pools = { outpatient = "outpatient", inpatient = "inpatient" }

[[version]]
effective_from = "2024-01-01"
rule = [
  { category = "TK", annual_cap = "150000", pools.inpatient = { deductible = "0", ratio = "1", out_of_scope_ratio = "0.5", cap = "150000" } },
  { category = "DB", pools = { outpatient = { deductible = "100", ratio = "0.7" } } },
]
"#;
        assert_eq!(
            parse_policy("policy.toml", text).unwrap(),
            parse_policy("policy.toml", BASE).unwrap()
        );
    }

    #[test]
    fn a_problem_in_an_array_of_inline_tables_names_the_line_of_its_key() {
        let text = "category = [\n  { code = \"TK\", rank = 1 },\n  { code = \"TK\", rank = 2 },\n]\n";
        assert_one_problem(text, 3, "code", "is defined twice");
    }
}
