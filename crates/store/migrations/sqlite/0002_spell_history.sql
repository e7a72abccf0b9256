-- Spell history on SQLite. Each file of spells imported is
-- recorded (imports): who sent it (source), in which file, its SHA-256
-- digest, who imported it and when, and the report of what it changed; each
-- spell row stored since points at the import that brought it. A spell is
-- never changed in place: a new version is a new row, and the old row's
-- superseded_by names it. A person whose spells changed in the past is
-- marked for recomputation (recompute_marks) from the earliest service date
-- that may be affected, until a clearing takes the mark (cleared_at).
-- imports.kind is 'spells' for now; other kinds of file may follow.

CREATE TABLE imports (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    source TEXT NOT NULL,
    file_name TEXT NOT NULL,
    digest BLOB NOT NULL,
    rows INTEGER NOT NULL,
    imported_at TEXT NOT NULL,
    imported_by TEXT NOT NULL,
    report TEXT NOT NULL
) STRICT;
-- The same file from the same source is imported once.
CREATE UNIQUE INDEX imports_once ON imports (kind, source, digest);

ALTER TABLE spells ADD COLUMN import_id INTEGER REFERENCES imports (id);

CREATE TABLE recompute_marks (
    id INTEGER PRIMARY KEY,
    person_key BLOB NOT NULL REFERENCES persons (person_key),
    since TEXT NOT NULL,
    import_id INTEGER NOT NULL REFERENCES imports (id),
    marked_at TEXT NOT NULL,
    cleared_at TEXT
) STRICT;
CREATE INDEX recompute_marks_by_person ON recompute_marks (person_key);
CREATE INDEX recompute_marks_pending ON recompute_marks (person_key) WHERE cleared_at IS NULL;
