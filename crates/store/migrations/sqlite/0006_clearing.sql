-- Periodic clearing (定期清算) on SQLite. Each clearing run is one row of
-- clearings, with the period it was run for, the year it recomputed, the
-- policy it used and its report. A person-year whose recomputed total
-- differs from what was granted so far gets one clearing line: a top-up
-- (补发, to pay) or a recovery (追回, to review), its amount positive and
-- its kind giving the sign. What was granted so far is the amounts of the
-- decisions not reversed plus the lines of earlier clearings, so a
-- difference found once is never found again.
--
-- clearing_invoices keeps, append-only, each invoice whose decision a
-- clearing changed (amount, deductible applied, outcome): an invoice's
-- amount now is that of its latest row, or its decision's if it has none.
-- The counters of a cleared person-year are set to the recomputed values.

CREATE TABLE clearings (
    id INTEGER PRIMARY KEY,
    period TEXT NOT NULL,
    year INTEGER NOT NULL,
    policy_id INTEGER NOT NULL REFERENCES policies (id),
    started_at TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    run_by TEXT NOT NULL,
    report TEXT NOT NULL
) STRICT;

CREATE TABLE clearing_lines (
    id INTEGER PRIMARY KEY,
    clearing_id INTEGER NOT NULL REFERENCES clearings (id),
    person_key BLOB NOT NULL REFERENCES persons (person_key),
    year INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('top_up', 'recovery')),
    amount INTEGER NOT NULL CHECK (amount > 0),
    granted INTEGER NOT NULL,
    recomputed INTEGER NOT NULL,
    invoices TEXT NOT NULL,
    created_at TEXT NOT NULL,
    CHECK ((kind = 'top_up') = (recomputed > granted)),
    CHECK (amount = abs(recomputed - granted))
) STRICT;
CREATE INDEX clearing_lines_by_person ON clearing_lines (person_key, year);
CREATE INDEX clearing_lines_by_year ON clearing_lines (year);

CREATE TABLE clearing_invoices (
    invoice_no TEXT NOT NULL REFERENCES invoices (invoice_no),
    clearing_id INTEGER NOT NULL REFERENCES clearings (id),
    person_key BLOB NOT NULL,
    year INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    pool TEXT,
    deductible_applied INTEGER NOT NULL,
    amount INTEGER NOT NULL,
    previous_amount INTEGER NOT NULL,
    PRIMARY KEY (invoice_no, clearing_id)
) STRICT;
CREATE INDEX clearing_invoices_by_year ON clearing_invoices (year);
