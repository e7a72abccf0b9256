-- Jiuzhu's store on SQLite. Every table that holds a person's data carries
-- person_key (the HMAC blind index of the resident ID), so that it can be
-- sharded by person. Money is integer fen; dates are YYYY-MM-DD text.
-- History is append-only: rows of spells, decisions and the audit log are
-- never updated in place, but for the link that marks a spell superseded.

CREATE TABLE persons (
    person_key BLOB PRIMARY KEY NOT NULL,
    resident_id_encrypted BLOB NOT NULL,
    resident_id_masked TEXT NOT NULL,
    created_at TEXT NOT NULL
) STRICT;

CREATE TABLE spells (
    id INTEGER PRIMARY KEY,
    person_key BLOB NOT NULL REFERENCES persons (person_key),
    category TEXT NOT NULL,
    valid_from TEXT NOT NULL,
    valid_to TEXT,
    source TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    superseded_by INTEGER REFERENCES spells (id)
) STRICT;
CREATE INDEX spells_by_person ON spells (person_key);

CREATE TABLE policies (
    id INTEGER PRIMARY KEY,
    digest BLOB NOT NULL UNIQUE,
    name TEXT,
    source TEXT NOT NULL,
    loaded_at TEXT NOT NULL,
    loaded_by TEXT NOT NULL
) STRICT;

CREATE TABLE invoices (
    invoice_no TEXT PRIMARY KEY NOT NULL,
    person_key BLOB NOT NULL REFERENCES persons (person_key),
    hospital TEXT NOT NULL,
    visit_type TEXT NOT NULL,
    service_date TEXT NOT NULL,
    settled_at TEXT NOT NULL,
    settled_unix_seconds INTEGER NOT NULL,
    settled_attoseconds INTEGER NOT NULL,
    settled_finer_digits TEXT,
    total INTEGER NOT NULL,
    fund_paid INTEGER NOT NULL,
    in_scope_self_pay INTEGER NOT NULL,
    out_of_scope_self_pay INTEGER NOT NULL,
    request_digest BLOB NOT NULL,
    channel TEXT NOT NULL,
    received_at TEXT NOT NULL
) STRICT;
CREATE INDEX invoices_by_person ON invoices (person_key);

CREATE TABLE decisions (
    id INTEGER PRIMARY KEY,
    invoice_no TEXT NOT NULL REFERENCES invoices (invoice_no),
    person_key BLOB NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('decision', 'reversal')),
    policy_id INTEGER NOT NULL REFERENCES policies (id),
    year INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    category TEXT,
    pool TEXT,
    policy_version TEXT,
    base INTEGER NOT NULL,
    deductible_applied INTEGER NOT NULL,
    eligible INTEGER NOT NULL,
    amount INTEGER NOT NULL,
    response TEXT NOT NULL,
    decided_at TEXT NOT NULL,
    decided_by TEXT NOT NULL
) STRICT;
-- One decision per invoice number, and at most one reversal of it.
CREATE UNIQUE INDEX decisions_once ON decisions (invoice_no, kind);
CREATE INDEX decisions_by_person ON decisions (person_key);

CREATE TABLE counters (
    person_key BLOB NOT NULL,
    year INTEGER NOT NULL,
    pool TEXT NOT NULL,
    deductible_used INTEGER NOT NULL,
    granted INTEGER NOT NULL,
    PRIMARY KEY (person_key, year, pool)
) STRICT;

CREATE TABLE api_keys (
    id INTEGER PRIMARY KEY,
    hospital TEXT NOT NULL,
    key_hash BLOB NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    revoked_at TEXT
) STRICT;

CREATE TABLE audit_log (
    sequence INTEGER PRIMARY KEY NOT NULL,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    details TEXT NOT NULL,
    hash BLOB NOT NULL
) STRICT;
