//! JSON bodies of the departments' feeds API (`POST /api/v1/feeds/spells`
//! and `POST /api/v1/feeds/invoices`): the rows of a `spells.csv` or an
//! `invoices.csv` (`formats.md`) as JSON objects with the columns' names as
//! keys and every value a JSON string in the format of the CSV.
//!
//! ```json
//! {
//!   "file_name": "民政-2024-06.json",
//!   "rows": [
//!     {"person_id": "110105196001010017", "category": "DB", "valid_from": "2024-01-01",
//!      "valid_to": "", "source": "民政"},
//!     {"person_id": "11010519600101005X", "category": "DSR", "valid_from": "2024-02-01"}
//!   ]
//! }
//! ```
//!
//! `file_name` is optional (what the import is recorded as); `rows` is
//! required, in file order. A spells row takes `person_id`, `category`,
//! `valid_from` (required) and `valid_to`, `source` (optional: missing,
//! `null` or `""` is empty). An invoices row is exactly the body of a
//! settlement request ([`crate::json`]). Within a row a key given twice or
//! not a column is refused, as in a settlement request.
//!
//! Every row is checked as the CSV reader checks its record. The readers
//! are lenient, as [`crate::Partitioned`] reading is: they return every
//! good row and every problem of the other rows, each a [`Problem`] whose
//! `line` is the row's 1-based position in `rows` and whose `column` is the
//! key at fault, so that a caller that adds checks of its own can report
//! all problems together (and store nothing when there is any). Only a body
//! that is not such an object at all is an `Err`, refused as a whole with
//! where the JSON parser stopped.

use jiuzhu_core::{Date, Policy, ResidentId, Spell, SpellError};
use serde::de::{DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::invoices::{unknown_visit_type, InvoiceRecord};
use crate::json::{parse_settlement_request, FieldErrors, JsonValue, Skipped, MAX_UNKNOWN_FIELDS_REPORTED};
use crate::problem::{Problem, Problems};
use crate::spells::{unknown_category, SpellRow};

/// The keys of a spells row, in the order of `formats.md`.
pub const SPELL_FIELDS: [&str; 5] = ["person_id", "category", "valid_from", "valid_to", "source"];

const PERSON_ID: usize = 0;
const CATEGORY: usize = 1;
const VALID_FROM: usize = 2;
const VALID_TO: usize = 3;
const SOURCE: usize = 4;

/// The rows of a JSON body read leniently: every good row with its
/// position as its line, and every problem of the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonRows<T> {
    /// The body's `file_name`, when it has one.
    pub file_name: Option<String>,
    /// The rows that passed every check, in order.
    pub rows: Vec<T>,
    /// Every problem of the other rows, each naming its row (as `line`)
    /// and key (as `column`), in order.
    pub problems: Problems,
}

/// The body's top level.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body<'a> {
    #[serde(default)]
    file_name: Option<String>,
    #[serde(borrow)]
    rows: Vec<&'a RawValue>,
}

const EXPECTED_BODY: &str = "a JSON object with `rows` (an array of row objects) and optionally `file_name`";

/// The body's top level, or why it is not one: one entry, with the line
/// and column where the JSON parser stopped.
fn body(body: &[u8]) -> Result<Body<'_>, FieldErrors> {
    serde_json::from_slice(body).map_err(|error| FieldErrors::malformed_as(&error, EXPECTED_BODY))
}

/// Reads and checks a JSON body of spells rows; `file` names it in
/// problems. With a policy, every category must be one of its codes.
pub fn read_spell_rows_json(
    file: &str,
    bytes: &[u8],
    policy: Option<&Policy>,
) -> Result<JsonRows<SpellRow>, FieldErrors> {
    let body = body(bytes)?;
    let mut problems = Problems::new();
    let mut rows = Vec::with_capacity(body.rows.len());
    for (index, raw) in body.rows.iter().enumerate() {
        let line = index as u64 + 1;
        match spell_of(file, line, raw, policy) {
            Ok(spell) => rows.push(SpellRow { line, spell }),
            Err(found) => {
                for problem in found {
                    problems.push(problem);
                }
            }
        }
    }
    Ok(JsonRows {
        file_name: body.file_name,
        rows,
        problems,
    })
}

/// Reads and checks a JSON body of invoices rows, each as the settlement
/// API checks its body, and its visit type one of `known_visit_types`.
pub fn read_invoice_records_json(
    file: &str,
    bytes: &[u8],
    known_visit_types: &[String],
) -> Result<JsonRows<InvoiceRecord>, FieldErrors> {
    let body = body(bytes)?;
    let mut problems = Problems::new();
    let mut records = Vec::with_capacity(body.rows.len());
    let visit_type_problem = |visit_type: &str| {
        (!known_visit_types.iter().any(|known| known == visit_type))
            .then(|| unknown_visit_type(visit_type, known_visit_types))
    };
    for (index, raw) in body.rows.iter().enumerate() {
        let line = index as u64 + 1;
        match parse_settlement_request(raw.get().as_bytes()) {
            Ok(invoice) => match visit_type_problem(&invoice.visit_type) {
                None => records.push(InvoiceRecord { line, invoice }),
                Some(message) => problems.push(Problem::at(file, line, "visit_type", message)),
            },
            Err(errors) => {
                let mut visit_type_named = false;
                for error in errors.errors() {
                    visit_type_named |= error.field.as_deref() == Some("visit_type");
                    problems.push(Problem {
                        file: file.to_owned(),
                        line: Some(line),
                        column: error.field.clone(),
                        message: error.message.clone(),
                    });
                }
                // The row's other problems do not hide an unknown visit type.
                if !visit_type_named {
                    if let Some(message) = visit_type_of(raw).as_deref().and_then(visit_type_problem) {
                        problems.push(Problem::at(file, line, "visit_type", message));
                    }
                }
            }
        }
    }
    Ok(JsonRows {
        file_name: body.file_name,
        rows: records,
        problems,
    })
}

/// A row's `visit_type`, when it is a string (for a row refused for other
/// fields).
fn visit_type_of(raw: &RawValue) -> Option<String> {
    #[derive(Deserialize)]
    struct VisitType {
        visit_type: Option<String>,
    }
    serde_json::from_str::<VisitType>(raw.get()).ok()?.visit_type
}

/// One spells row, checked as the CSV reader checks a record.
fn spell_of(file: &str, line: u64, raw: &RawValue, policy: Option<&Policy>) -> Result<Spell, Vec<Problem>> {
    let problem = |column: usize, message: String| Problem::at(file, line, SPELL_FIELDS[column], message);
    let text = raw.get();
    if !text.starts_with('{') {
        let kind = match text.as_bytes().first() {
            Some(b'"') => "a JSON string",
            Some(b'[') => "a JSON array",
            Some(b'n') => "null",
            Some(b't' | b'f') => "a JSON boolean",
            _ => "a JSON number",
        };
        return Err(vec![Problem::at_line(
            file,
            line,
            format!("is {kind}; expected a JSON object of spell fields"),
        )]);
    }
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let mut fields = FieldsSeed(&SPELL_FIELDS)
        .deserialize(&mut deserializer)
        .map_err(|error| vec![Problem::at_line(file, line, error.to_string())])?;

    let mut problems: Vec<Problem> = Vec::new();
    let mut required = |index: usize, fields: &mut Fields| -> Option<String> {
        match fields.take(index) {
            Ok(Some(text)) => Some(text),
            Ok(None) => {
                problems.push(problem(index, "is missing".to_owned()));
                None
            }
            Err(message) => {
                problems.push(problem(index, message));
                None
            }
        }
    };
    let person = required(PERSON_ID, &mut fields);
    let category = required(CATEGORY, &mut fields);
    let valid_from = required(VALID_FROM, &mut fields);
    let mut optional = |index: usize, fields: &mut Fields| -> Result<Option<String>, ()> {
        match fields.take(index) {
            Ok(text) => Ok(text.filter(|text| !text.is_empty())),
            Err(message) => {
                problems.push(problem(index, message));
                Err(())
            }
        }
    };
    let valid_to = optional(VALID_TO, &mut fields);
    let source = optional(SOURCE, &mut fields);

    let person = person.and_then(|text| {
        ResidentId::parse(&text)
            .map_err(|error| problems.push(problem(PERSON_ID, error.to_string())))
            .ok()
    });
    let category = category.and_then(|category| {
        if category.is_empty() {
            problems.push(problem(CATEGORY, "is empty; expected a category code".to_owned()));
            return None;
        }
        if let Some(policy) = policy {
            if policy.category_by_code(&category).is_none() {
                problems.push(problem(CATEGORY, unknown_category(&category, policy)));
                return None;
            }
        }
        Some(category)
    });
    let valid_from = valid_from.and_then(|text| {
        Date::parse(&text)
            .map_err(|error| problems.push(problem(VALID_FROM, error.to_string())))
            .ok()
    });
    let valid_to = match valid_to {
        Ok(Some(text)) => Date::parse(&text)
            .map(Some)
            .map_err(|error| problems.push(problem(VALID_TO, error.to_string())))
            .ok(),
        Ok(None) => Some(None),
        Err(()) => None,
    };
    for key in &fields.unknown {
        problems.push(Problem::at(
            file,
            line,
            key,
            format!("is not a spell field; the fields are {}", SPELL_FIELDS.join(", ")),
        ));
    }
    let unreported = fields.unknown_count - fields.unknown.len();
    if unreported > 0 {
        problems.push(Problem::at_line(
            file,
            line,
            format!("… and {unreported} more keys that are not spell fields"),
        ));
    }
    let (Some(person), Some(category), Some(valid_from), Some(valid_to), Ok(source)) =
        (person, category, valid_from, valid_to, source)
    else {
        return Err(problems);
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    Spell::new(person, category, valid_from, valid_to, source).map_err(|error| {
        let column = match error {
            SpellError::EndsBeforeStart { .. } => VALID_TO,
            SpellError::EmptyCategory => CATEGORY,
        };
        vec![problem(column, error.to_string())]
    })
}

/// The keys of one row object, key by key: a repeated key is noted, not
/// silently overwritten; values of unknown keys are skipped unread.
struct Fields {
    values: Vec<Option<JsonValue>>,
    repeated: Vec<bool>,
    unknown: Vec<String>,
    unknown_count: usize,
}

impl Fields {
    /// The value of field `index`: `Ok(None)` when missing or `null`, the
    /// text of a string, or what is wrong with it.
    fn take(&mut self, index: usize) -> Result<Option<String>, String> {
        if self.repeated[index] {
            return Err("is given more than once; give each field once".to_owned());
        }
        match self.values[index].take() {
            None | Some(JsonValue::Null) => Ok(None),
            Some(JsonValue::String(text)) => Ok(Some(text)),
            Some(other) => Err(format!("is {}; expected a JSON string", other.describe())),
        }
    }
}

struct FieldsSeed(&'static [&'static str]);

impl<'de> DeserializeSeed<'de> for FieldsSeed {
    type Value = Fields;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Fields, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FieldsSeed {
    type Value = Fields;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a JSON object of row fields")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
        let names = self.0;
        let mut fields = Fields {
            values: names.iter().map(|_| None).collect(),
            repeated: vec![false; names.len()],
            unknown: Vec::new(),
            unknown_count: 0,
        };
        while let Some(key) = map.next_key::<String>()? {
            match names.iter().position(|name| *name == key) {
                Some(index) if fields.values[index].is_some() => {
                    fields.repeated[index] = true;
                    map.next_value::<Skipped>()?;
                }
                Some(index) => fields.values[index] = Some(map.next_value::<JsonValue>()?),
                None => {
                    map.next_value::<Skipped>()?;
                    if !fields.unknown.contains(&key) {
                        fields.unknown_count += 1;
                        if fields.unknown.len() < MAX_UNKNOWN_FIELDS_REPORTED {
                            fields.unknown.push(key);
                        }
                    }
                }
            }
        }
        Ok(fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiuzhu_core::{CategoryDraft, PolicyDraft};

    const ID: &str = "11010519491231002X";

    fn policy() -> Policy {
        let category = |code: &str, rank| CategoryDraft {
            code: code.into(),
            name: None,
            rank,
        };
        Policy::from_draft(PolicyDraft {
            name: None,
            categories: vec![category("TK", 1), category("DB", 2)],
            pools: vec![("outpatient".into(), "outpatient".into())],
            versions: vec![],
        })
        .unwrap()
    }

    fn spell_problems(body: &str) -> Vec<String> {
        let policy = policy();
        let read = read_spell_rows_json("body", body.as_bytes(), Some(&policy)).unwrap();
        read.problems.kept().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn rows_read_into_spells_with_their_positions_as_lines() {
        let body = format!(
            "{{\"file_name\":\"a.json\",\"rows\":[\
             {{\"person_id\":\"{ID}\",\"category\":\"TK\",\"valid_from\":\"2024-01-01\",\"valid_to\":\"2024-06-30\",\"source\":\"民政\"}},\
             {{\"valid_from\":\"2024-02-01\",\"category\":\"DB\",\"person_id\":\"{}\",\"valid_to\":null,\"source\":\"\"}}]}}",
            ID.to_lowercase()
        );
        let policy = policy();
        let read = read_spell_rows_json("body", body.as_bytes(), Some(&policy)).unwrap();
        assert!(read.problems.is_empty(), "{}", read.problems);
        assert_eq!(read.file_name.as_deref(), Some("a.json"));
        assert_eq!(read.rows.len(), 2);
        assert_eq!(read.rows[0].line, 1);
        assert_eq!(read.rows[0].spell.source(), Some("民政"));
        assert_eq!(read.rows[1].line, 2);
        assert_eq!(read.rows[1].spell.valid_to(), None);
        assert_eq!(read.rows[1].spell.source(), None);
        assert_eq!(read.rows[1].spell.person().to_string(), ID);
    }

    #[test]
    fn every_problem_of_every_row_is_named_by_row_and_key() {
        let body = format!(
            "{{\"rows\":[\
             {{\"person_id\":\"{ID}\",\"category\":\"TK\",\"valid_from\":\"2024-01-01\"}},\
             {{\"person_id\":\"110105194912310021\",\"category\":\"XX\",\"valid_from\":\"2024-13-01\",\"note\":1}},\
             {{\"person_id\":\"{ID}\",\"category\":\"DB\",\"valid_from\":\"2024-03-01\",\"valid_to\":\"2024-02-01\"}},\
             {{\"person_id\":\"{ID}\",\"category\":\"DB\",\"category\":\"TK\",\"valid_from\":20240101}},\
             \"{ID}\"]}}"
        );
        let policy = policy();
        let read = read_spell_rows_json("body", body.as_bytes(), Some(&policy)).unwrap();
        let good: Vec<u64> = read.rows.iter().map(|row| row.line).collect();
        assert_eq!(good, [1]);
        let problems = spell_problems(&body);
        assert_eq!(problems.len(), 8, "{problems:#?}");
        assert!(problems[0].starts_with("body:2: person_id: "), "{problems:#?}");
        assert!(
            problems[1].starts_with("body:2: category: \"XX\" is not a category"),
            "{problems:#?}"
        );
        assert!(problems[2].starts_with("body:2: valid_from: "), "{problems:#?}");
        assert!(
            problems[3].starts_with("body:2: note: is not a spell field"),
            "{problems:#?}"
        );
        assert!(problems[4].starts_with("body:3: valid_to: "), "{problems:#?}");
        assert_eq!(
            problems[5],
            "body:4: category: is given more than once; give each field once"
        );
        assert_eq!(
            problems[6],
            "body:4: valid_from: is a JSON number; expected a JSON string"
        );
        assert_eq!(
            problems[7],
            "body:5: is a JSON string; expected a JSON object of spell fields"
        );
    }

    #[test]
    fn a_body_that_is_not_the_object_is_refused_whole_with_its_place() {
        for body in [
            "[]",
            "{\"rows\": 3}",
            "{\"rows\": [], \"extra\": 1}",
            "{\"rows\": [",
            "",
        ] {
            let errors = read_spell_rows_json("body", body.as_bytes(), None).unwrap_err();
            assert!(errors.is_malformed_body(), "{body}: {errors}");
        }
    }

    #[test]
    fn a_row_nested_too_deep_is_a_problem_of_its_row_not_a_crash() {
        let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
        let body = format!("{{\"rows\":[{{\"person_id\":{deep}}}, {deep}]}}");
        let problems = spell_problems(&body);
        assert!(problems[0].starts_with("body:1: "), "{problems:?}");
        assert!(
            problems.last().unwrap().starts_with("body:2: is a JSON array"),
            "{problems:?}"
        );
        let known = vec!["outpatient".to_owned()];
        let read = read_invoice_records_json("body", body.as_bytes(), &known).unwrap();
        assert!(read.rows.is_empty());
        assert_eq!(read.problems.total(), 2, "{}", read.problems);
    }

    #[test]
    fn invoice_rows_are_checked_as_settlement_requests_and_against_the_visit_types() {
        let row = |number: &str, visit_type: &str, total: &str| {
            format!(
                "{{\"invoice_no\":\"{number}\",\"person_id\":\"{ID}\",\"hospital\":\"H001\",\
                 \"visit_type\":\"{visit_type}\",\"service_date\":\"2024-03-05\",\
                 \"settled_at\":\"2024-03-06T10:22:31+08:00\",\"total\":\"{total}\",\"fund_paid\":\"600\",\
                 \"in_scope_self_pay\":\"300\",\"out_of_scope_self_pay\":\"100\"}}"
            )
        };
        let known = vec!["outpatient".to_owned()];
        let good = format!(
            "{{\"rows\":[{},{}]}}",
            row("A1", "outpatient", "1000"),
            row("A2", "outpatient", "1000.00")
        );
        let read = read_invoice_records_json("body", good.as_bytes(), &known).unwrap();
        assert!(read.problems.is_empty(), "{}", read.problems);
        assert_eq!(read.file_name, None);
        let lines: Vec<u64> = read.rows.iter().map(|record| record.line).collect();
        assert_eq!(lines, [1, 2]);
        assert_eq!(read.rows[1].invoice.invoice_no.as_str(), "A2");
        let bad = format!(
            "{{\"rows\":[{},{},{}]}}",
            row("A1", "outpatient", "1000"),
            row("A2", "dental", "1000"),
            row("A3", "dental", "999")
        );
        let read = read_invoice_records_json("body", bad.as_bytes(), &known).unwrap();
        assert_eq!(read.rows.len(), 1);
        let problems: Vec<String> = read.problems.kept().iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 3, "{problems:#?}");
        assert!(problems[0].starts_with("body:2: visit_type: \"dental\" is not a known visit type"));
        assert!(problems[1].starts_with("body:3: total: "), "{problems:#?}");
        assert!(problems[2].starts_with("body:3: visit_type: "), "{problems:#?}");
    }
}
