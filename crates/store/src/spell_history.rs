//! Spell history (救助新增): how a department's file of spells becomes new
//! versions of the stored spells, decided in memory before anything is
//! written.
//!
//! # The design
//!
//! Spells are never updated in place: every version a department reported
//! is a row, and a newer version is a new row that the old one points to
//! (`spells.superseded_by`, the only column ever updated). The spells in
//! force are the rows not superseded, the *current* spells; settlement reads
//! only those. Every file imported is a row of `imports` (who sent it, in
//! which file, its SHA-256 digest, who imported it and when, what it
//! changed), and each spell row it brought points at it (`spells.import_id`).
//!
//! # The matching rule
//!
//! A row's source is its `source` column, or the source of the file when
//! that is empty. Each distinct spell of the file is compared, in file
//! order, with the person's current spells of the same category and the
//! same source:
//!
//! - one with identical dates (`valid_from` and `valid_to`): **unchanged**,
//!   nothing is stored;
//! - otherwise every one that overlaps it or has the same `valid_from` is
//!   superseded by it: **changed**. It counts also as **ended** when it
//!   closes a spell that was open, or ends one earlier than it did;
//! - none: **added**.
//!
//! A person who had no spell at all before (from any source) and gets one
//! is a **new recipient**. Two rows of one file for the same person,
//! category and source that overlap refuse the whole file, naming both
//! lines; identical rows are a harmless duplicate, counted once.
//!
//! The same file (same source and digest) imported again changes nothing
//! and is reported as already imported.
//!
//! # Recomputation
//!
//! A stored spell (added or changed) that starts on or before today (for a
//! change, the earlier of its start and the start of what it superseded)
//! may change decisions already taken: a person with a bill stored is
//! marked for recomputation from that date, once per import with the
//! earliest such date (`recompute_marks`), until a clearing takes the mark.
//! A person without any bill has no decision to change (a bill of theirs
//! that comes later is decided with the spells as they are then): not
//! marked.

use std::collections::HashMap;

use rustc_hash::{FxHashMap, FxHashSet};

use jiuzhu_core::{Date, ResidentId};
use jiuzhu_formats::{Problem, Problems, SpellRow};

/// A file of spells to import: who sent it, its name, the digest of its
/// bytes and its rows with their lines.
#[derive(Debug, Clone, Copy)]
pub struct SpellFile<'a> {
    /// The department that sent the file (民政, 残联, …); the source of
    /// every row that does not name its own.
    pub source: &'a str,
    /// The file's name as the user gave it, for the record and problems.
    pub file_name: &'a str,
    /// What the import is recorded under, so that the same file is
    /// imported once: the SHA-256 of the file's bytes ([`SpellFile::new`]),
    /// or, when only some of its rows are imported, of those bytes and
    /// the lines of the rows imported ([`SpellFile::part`]).
    pub digest: [u8; 32],
    pub rows: &'a [SpellRow],
}

impl<'a> SpellFile<'a> {
    /// A file read from `bytes` into `rows`.
    pub fn new(source: &'a str, file_name: &'a str, bytes: &[u8], rows: &'a [SpellRow]) -> SpellFile<'a> {
        use sha2::Digest as _;
        SpellFile {
            source,
            file_name,
            digest: sha2::Sha256::digest(bytes).into(),
            rows,
        }
    }

    /// The rows of a file read from `bytes` that passed their checks when
    /// others did not (`jiuzhu import spells --skip-bad`). Its digest covers
    /// the file's bytes and the lines of `rows`: the same file with the
    /// same rows set aside is imported once, while the same file read
    /// whole later (its rows all good, say, once a policy defines a
    /// category it names) is another import, so that no row is skipped
    /// as already imported when it was not. (A file whose rows all passed
    /// is [`SpellFile::new`], however it was read.)
    pub fn part(source: &'a str, file_name: &'a str, bytes: &[u8], rows: &'a [SpellRow]) -> SpellFile<'a> {
        use sha2::Digest as _;
        let mut hasher = sha2::Sha256::new();
        hasher.update(b"jiuzhu spells: part of a file\0");
        hasher.update(sha2::Sha256::digest(bytes));
        for row in rows {
            hasher.update(row.line.to_be_bytes());
        }
        SpellFile {
            source,
            file_name,
            digest: hasher.finalize().into(),
            rows,
        }
    }
}

/// What importing a file of spells did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpellImport {
    /// The import's record; `None` when nothing was stored (the file had
    /// been imported before).
    pub import_id: Option<i64>,
    /// Rows of the file.
    pub rows: u64,
    /// Spells stored that replace no other.
    pub added: u64,
    /// Spells stored that supersede one or more current spells.
    pub changed: u64,
    /// Spells already stored with the same dates.
    pub unchanged: u64,
    /// Rows identical to an earlier row of the file, counted once.
    pub duplicates: u64,
    /// Persons whose first spell this was (救助新增).
    pub new_persons: u64,
    /// Persons with at least one spell changed.
    pub changed_persons: u64,
    /// Persons with at least one spell ended (closed, or ended earlier).
    pub ended_persons: u64,
    /// Persons marked for recomputation.
    pub marked: u64,
    /// When the same file from the same source was imported before: that
    /// import, and nothing changed.
    pub already_imported: Option<AlreadyImported>,
}

/// The earlier import of the same file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlreadyImported {
    pub import_id: i64,
    pub file_name: String,
    /// RFC 3339, UTC.
    pub imported_at: String,
    pub imported_by: String,
}

/// A person whose decisions may have to be recomputed from `since` on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRecomputation {
    /// The person's blind index (the key of every table of the person).
    pub person_key: Vec<u8>,
    pub masked_id: String,
    /// The earliest service date that may be affected, over all the
    /// person's uncleared marks.
    pub since: Date,
}

/// One version of a spell as stored, current or superseded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSpell {
    pub id: i64,
    pub category: String,
    pub valid_from: Date,
    pub valid_to: Option<Date>,
    pub source: String,
    /// RFC 3339, UTC.
    pub recorded_at: String,
    /// The newer version that replaced this one; `None` while current.
    pub superseded_by: Option<i64>,
    /// The import that brought it (`None` for spells stored before imports
    /// were recorded).
    pub import_id: Option<i64>,
    pub file_name: Option<String>,
}

/// One distinct spell of a file, under the source it is stored with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Incoming<'a> {
    pub line: u64,
    pub person: ResidentId,
    pub category: &'a str,
    pub source: &'a str,
    pub valid_from: Date,
    pub valid_to: Option<Date>,
}

/// The spells of a file, each once, in file order, and how many rows were
/// duplicates; or, when rows of one person, category and source overlap,
/// a problem for each naming both lines.
pub(crate) fn distinct_spells<'a>(file: &SpellFile<'a>) -> Result<(Vec<Incoming<'a>>, u64), Problems> {
    let incoming: Vec<Incoming<'a>> = file
        .rows
        .iter()
        .map(|row| Incoming {
            line: row.line,
            person: row.spell.person(),
            category: row.spell.category(),
            source: row.spell.source().unwrap_or(file.source),
            valid_from: row.spell.valid_from(),
            valid_to: row.spell.valid_to(),
        })
        .collect();
    // The rows in the order of their group (person, category, source),
    // each group's rows by dates, then line: one sort, no map.
    let mut order: Vec<usize> = (0..incoming.len()).collect();
    order.sort_unstable_by_key(|&index| {
        let spell = &incoming[index];
        (
            spell.person,
            spell.category,
            spell.source,
            spell.valid_from,
            spell.valid_to,
            spell.line,
        )
    });
    let mut duplicate = vec![false; incoming.len()];
    let mut found: Vec<Problem> = Vec::new();
    for members in order.chunk_by(|&one, &other| {
        let (one, other) = (&incoming[one], &incoming[other]);
        (one.person, one.category, one.source) == (other.person, other.category, other.source)
    }) {
        // The row that reaches furthest among those that start earlier.
        let mut reach: Option<usize> = None;
        let mut previous: Option<usize> = None;
        for &index in members {
            let spell = &incoming[index];
            if let Some(before) = previous {
                let other = &incoming[before];
                if (other.valid_from, other.valid_to) == (spell.valid_from, spell.valid_to) {
                    duplicate[index] = true;
                    continue;
                }
            }
            previous = Some(index);
            if let Some(earlier) = reach {
                let other = &incoming[earlier];
                if overlap(other.valid_from, other.valid_to, spell.valid_from, spell.valid_to) {
                    found.push(overlap_problem(file.file_name, spell, other));
                }
                if ends_later(spell.valid_to, other.valid_to) {
                    reach = Some(index);
                }
            } else {
                reach = Some(index);
            }
        }
    }
    if !found.is_empty() {
        found.sort_by_key(|problem| problem.line);
        let mut problems = Problems::new();
        for problem in found {
            problems.push(problem);
        }
        return Err(problems);
    }
    let duplicates = duplicate.iter().filter(|&&duplicate| duplicate).count() as u64;
    let distinct = incoming
        .into_iter()
        .zip(duplicate)
        .filter_map(|(spell, duplicate)| (!duplicate).then_some(spell))
        .collect();
    Ok((distinct, duplicates))
}

/// The problem of two overlapping rows, at the later line, naming the
/// earlier. The person is named masked.
fn overlap_problem(file: &str, one: &Incoming<'_>, other: &Incoming<'_>) -> Problem {
    let (later, earlier) = if one.line > other.line {
        (one, other)
    } else {
        (other, one)
    };
    Problem::at(
        file,
        later.line,
        "valid_from",
        format!(
            "{} overlaps {} on line {} for the same person ({}), category {} and source {}; \
             a source reports one period per category for each day: merge the two rows or \
             correct their dates",
            period(later.valid_from, later.valid_to),
            period(earlier.valid_from, earlier.valid_to),
            earlier.line,
            later.person.masked(),
            later.category,
            later.source
        ),
    )
}

fn period(from: Date, to: Option<Date>) -> String {
    match to {
        Some(to) => format!("{from} to {to}"),
        None => format!("{from} onwards"),
    }
}

/// Whether two periods (last days inclusive, `None` open) share a day.
fn overlap(a_from: Date, a_to: Option<Date>, b_from: Date, b_to: Option<Date>) -> bool {
    a_to.is_none_or(|a_to| b_from <= a_to) && b_to.is_none_or(|b_to| a_from <= b_to)
}

/// Whether a period ending on `one` ends after one ending on `other`.
fn ends_later(one: Option<Date>, other: Option<Date>) -> bool {
    match (one, other) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(one), Some(other)) => one > other,
    }
}

/// A current (not superseded) stored spell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Current {
    pub id: i64,
    pub category: String,
    pub source: String,
    pub valid_from: Date,
    pub valid_to: Option<Date>,
}

/// What an import will store, decided against the current spells.
#[derive(Debug, Default)]
pub(crate) struct Plan<'s, 'a> {
    /// Spells to store, in file order, each with the ids it supersedes.
    pub stored: Vec<(&'s Incoming<'a>, Vec<i64>)>,
    /// One mark per person: from which date to recompute.
    pub marks: Vec<(ResidentId, Date)>,
    /// The counts (without rows, duplicates and the import's id).
    pub report: SpellImport,
}

/// Decides, for each distinct spell in file order, whether it is unchanged,
/// changed or added against `current` (the current spells of each person
/// of the file), and which persons to mark for recomputation: those with a
/// stored spell starting on or before `today`.
pub(crate) fn plan<'s, 'a, S: std::hash::BuildHasher>(
    incoming: &'s [Incoming<'a>],
    current: &HashMap<ResidentId, Vec<Current>, S>,
    today: Date,
) -> Plan<'s, 'a> {
    let mut plan = Plan::default();
    // Spells superseded so far by this import: no longer current.
    let mut superseded: FxHashSet<i64> = FxHashSet::default();
    let mut new_persons: FxHashSet<ResidentId> = FxHashSet::default();
    let mut changed_persons: FxHashSet<ResidentId> = FxHashSet::default();
    let mut ended_persons: FxHashSet<ResidentId> = FxHashSet::default();
    let mut marks: FxHashMap<ResidentId, Date> = FxHashMap::default();
    for spell in incoming {
        let stored = current.get(&spell.person).map(Vec::as_slice).unwrap_or_default();
        if stored.is_empty() {
            new_persons.insert(spell.person);
        }
        let same: Vec<&Current> = stored
            .iter()
            .filter(|old| {
                old.category == spell.category && old.source == spell.source && !superseded.contains(&old.id)
            })
            .collect();
        if same
            .iter()
            .any(|old| (old.valid_from, old.valid_to) == (spell.valid_from, spell.valid_to))
        {
            plan.report.unchanged += 1;
            continue;
        }
        let replaced: Vec<&Current> = same
            .into_iter()
            .filter(|old| {
                old.valid_from == spell.valid_from
                    || overlap(old.valid_from, old.valid_to, spell.valid_from, spell.valid_to)
            })
            .collect();
        let mut start = spell.valid_from;
        if replaced.is_empty() {
            plan.report.added += 1;
        } else {
            plan.report.changed += 1;
            changed_persons.insert(spell.person);
            if replaced
                .iter()
                .any(|old| ends_later(old.valid_to, spell.valid_to))
            {
                ended_persons.insert(spell.person);
            }
            for old in &replaced {
                superseded.insert(old.id);
                start = start.min(old.valid_from);
            }
        }
        if start <= today {
            let since = marks.entry(spell.person).or_insert(start);
            *since = (*since).min(start);
        }
        plan.stored
            .push((spell, replaced.iter().map(|old| old.id).collect()));
    }
    plan.report.new_persons = new_persons.len() as u64;
    plan.report.changed_persons = changed_persons.len() as u64;
    plan.report.ended_persons = ended_persons.len() as u64;
    plan.report.marked = marks.len() as u64;
    let mut marks: Vec<(ResidentId, Date)> = marks.into_iter().collect();
    marks.sort();
    plan.marks = marks;
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiuzhu_core::Spell;

    const ID: &str = "110105196001010017";
    const OTHER_ID: &str = "110105196001010025";

    fn date(text: &str) -> Date {
        Date::parse(text).unwrap()
    }

    fn row(
        line: u64,
        id: &str,
        category: &str,
        from: &str,
        to: Option<&str>,
        source: Option<&str>,
    ) -> SpellRow {
        let person = ResidentId::parse(id).unwrap();
        SpellRow {
            line,
            spell: Spell::new(
                person,
                category,
                date(from),
                to.map(date),
                source.map(str::to_owned),
            )
            .unwrap(),
        }
    }

    fn file(rows: &[SpellRow]) -> SpellFile<'_> {
        SpellFile::new("民政", "spells.csv", b"bytes", rows)
    }

    fn current(id: i64, category: &str, source: &str, from: &str, to: Option<&str>) -> Current {
        Current {
            id,
            category: category.into(),
            source: source.into(),
            valid_from: date(from),
            valid_to: to.map(date),
        }
    }

    #[test]
    fn overlapping_rows_of_one_person_category_and_source_are_refused_naming_both_lines() {
        let rows = [
            row(2, ID, "DB", "2024-01-01", Some("2024-06-30"), None),
            row(3, OTHER_ID, "DB", "2024-01-01", None, None),
            row(4, ID, "DB", "2024-06-30", None, Some("民政")),
        ];
        let problems = distinct_spells(&file(&rows)).unwrap_err();
        assert_eq!(problems.total(), 1);
        let text = problems.to_string();
        assert!(
            text.starts_with(
                "spells.csv:4: valid_from: 2024-06-30 onwards overlaps 2024-01-01 to 2024-06-30 on line 2"
            ),
            "{text}"
        );
        assert!(!text.contains(ID), "{text}");
    }

    #[test]
    fn a_part_of_a_file_is_recorded_apart_from_the_whole_file_and_from_other_parts() {
        let bytes = b"the file";
        let rows = [
            row(2, ID, "DB", "2024-01-01", None, None),
            row(3, OTHER_ID, "DB", "2024-01-01", None, None),
        ];
        let whole = SpellFile::new("民政", "s.csv", bytes, &rows);
        let part = SpellFile::part("民政", "s.csv", bytes, &rows[..1]);
        assert_ne!(part.digest, whole.digest);
        assert_eq!(
            SpellFile::part("民政", "other.csv", bytes, &rows[..1]).digest,
            part.digest
        );
        assert_ne!(
            SpellFile::part("民政", "s.csv", bytes, &rows[1..]).digest,
            part.digest
        );
        assert_ne!(
            SpellFile::part("民政", "s.csv", b"another file", &rows[..1]).digest,
            part.digest
        );
    }

    #[test]
    fn rows_of_another_source_or_category_or_that_only_touch_do_not_overlap() {
        let rows = [
            row(2, ID, "DB", "2024-01-01", Some("2024-06-30"), None),
            row(3, ID, "DB", "2024-03-01", None, Some("残联")),
            row(4, ID, "TK", "2024-03-01", None, None),
            row(5, ID, "DB", "2024-07-01", None, None),
        ];
        let (distinct, duplicates) = distinct_spells(&file(&rows)).unwrap();
        assert_eq!((distinct.len(), duplicates), (4, 0));
        assert_eq!(distinct[1].source, "残联");
        assert_eq!(distinct[2].source, "民政");
    }

    #[test]
    fn identical_rows_are_one_spell_and_a_row_inside_a_longer_one_is_still_found() {
        let rows = [
            row(2, ID, "DB", "2024-01-01", None, None),
            row(3, ID, "DB", "2024-01-01", None, Some("民政")),
        ];
        let (distinct, duplicates) = distinct_spells(&file(&rows)).unwrap();
        assert_eq!((distinct.len(), duplicates), (1, 1));
        assert_eq!(distinct[0].line, 2);
        let rows = [
            row(2, ID, "DB", "2024-01-01", Some("2024-12-31"), None),
            row(3, ID, "DB", "2024-02-01", Some("2024-02-28"), None),
            row(4, ID, "DB", "2024-05-01", Some("2024-05-31"), None),
        ];
        let problems = distinct_spells(&file(&rows)).unwrap_err();
        let lines: Vec<Option<u64>> = problems.kept().iter().map(|problem| problem.line).collect();
        assert_eq!(lines, vec![Some(3), Some(4)]);
        assert!(problems.kept()[1].message.contains("on line 2"));
    }

    #[test]
    fn a_spell_is_unchanged_changed_ended_or_added_against_the_current_ones() {
        let rows = [
            row(2, ID, "DB", "2023-01-01", None, None),
            row(3, ID, "TK", "2023-01-01", Some("2023-06-30"), None),
            row(4, ID, "ZC", "2999-01-01", None, None),
            row(5, OTHER_ID, "DB", "2024-02-01", None, None),
        ];
        let (distinct, _) = distinct_spells(&file(&rows)).unwrap();
        let person = ResidentId::parse(ID).unwrap();
        let other = ResidentId::parse(OTHER_ID).unwrap();
        let stored = HashMap::from([
            (
                person,
                vec![
                    current(1, "DB", "民政", "2023-01-01", None),
                    current(2, "TK", "民政", "2023-01-01", None),
                    current(3, "TK", "残联", "2023-01-01", None),
                ],
            ),
            (other, vec![current(4, "DB", "民政", "2024-01-01", None)]),
        ]);
        let plan = plan(&distinct, &stored, date("2025-01-01"));
        let report = &plan.report;
        assert_eq!((report.unchanged, report.changed, report.added), (1, 2, 1));
        assert_eq!(
            (
                report.new_persons,
                report.changed_persons,
                report.ended_persons,
                report.marked
            ),
            (0, 2, 1, 2)
        );
        let stored: Vec<(u64, Vec<i64>)> = plan
            .stored
            .iter()
            .map(|(spell, ids)| (spell.line, ids.clone()))
            .collect();
        assert_eq!(stored, vec![(3, vec![2]), (4, vec![]), (5, vec![4])]);
        // A start corrected later: marked from the earlier, old start.
        assert_eq!(
            plan.marks,
            vec![(person, date("2023-01-01")), (other, date("2024-01-01"))]
        );
    }

    #[test]
    fn a_person_with_no_spell_is_new_and_a_future_spell_marks_nobody() {
        let rows = [
            row(2, ID, "DB", "2999-01-01", None, None),
            row(3, ID, "TK", "2999-06-01", None, None),
        ];
        let (distinct, _) = distinct_spells(&file(&rows)).unwrap();
        let plan = plan(&distinct, &HashMap::new(), date("2025-01-01"));
        assert_eq!(
            (plan.report.added, plan.report.new_persons, plan.report.marked),
            (2, 1, 0)
        );
        assert!(plan.marks.is_empty());
    }

    #[test]
    fn two_rows_of_a_file_split_one_stored_spell_the_first_supersedes_it() {
        let rows = [
            row(2, ID, "DB", "2024-01-01", Some("2024-03-31"), None),
            row(3, ID, "DB", "2024-06-01", None, None),
        ];
        let (distinct, _) = distinct_spells(&file(&rows)).unwrap();
        let person = ResidentId::parse(ID).unwrap();
        let stored = HashMap::from([(person, vec![current(7, "DB", "民政", "2024-01-01", None)])]);
        let plan = plan(&distinct, &stored, date("2025-01-01"));
        assert_eq!(
            (plan.report.changed, plan.report.added, plan.report.ended_persons),
            (1, 1, 1)
        );
        assert_eq!(plan.stored[0].1, vec![7]);
        assert!(plan.stored[1].1.is_empty());
        assert_eq!(plan.marks, vec![(person, date("2024-01-01"))]);
    }
}
