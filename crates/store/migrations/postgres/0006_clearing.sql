-- Periodic clearing (定期清算) on PostgreSQL. Each clearing run is one row of
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
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    period TEXT NOT NULL,
    year BIGINT NOT NULL,
    policy_id BIGINT NOT NULL REFERENCES policies (id),
    started_at TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    run_by TEXT NOT NULL,
    report TEXT NOT NULL
);

CREATE TABLE clearing_lines (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    clearing_id BIGINT NOT NULL REFERENCES clearings (id),
    person_key BYTEA NOT NULL REFERENCES persons (person_key),
    year BIGINT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('top_up', 'recovery')),
    amount BIGINT NOT NULL CHECK (amount > 0),
    granted BIGINT NOT NULL,
    recomputed BIGINT NOT NULL,
    invoices TEXT NOT NULL,
    created_at TEXT NOT NULL,
    CHECK ((kind = 'top_up') = (recomputed > granted)),
    CHECK (amount = abs(recomputed - granted))
);
CREATE INDEX clearing_lines_by_person ON clearing_lines (person_key, year);
CREATE INDEX clearing_lines_by_year ON clearing_lines (year);

CREATE TABLE clearing_invoices (
    invoice_no TEXT NOT NULL REFERENCES invoices (invoice_no),
    clearing_id BIGINT NOT NULL REFERENCES clearings (id),
    person_key BYTEA NOT NULL,
    year BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    pool TEXT,
    deductible_applied BIGINT NOT NULL,
    amount BIGINT NOT NULL,
    previous_amount BIGINT NOT NULL,
    PRIMARY KEY (invoice_no, clearing_id)
);
CREATE INDEX clearing_invoices_by_year ON clearing_invoices (year);
