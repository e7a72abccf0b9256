-- Jiuzhu's store on PostgreSQL. Every table that holds a person's data carries
-- person_key (the HMAC blind index of the resident ID), so that it can be
-- sharded by person. Money is integer fen; dates are YYYY-MM-DD text.
-- History is append-only: rows of spells, decisions and the audit log are
-- never updated in place, but for the link that marks a spell superseded.

CREATE TABLE persons (
    person_key BYTEA PRIMARY KEY NOT NULL,
    resident_id_encrypted BYTEA NOT NULL,
    resident_id_masked TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE spells (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_key BYTEA NOT NULL REFERENCES persons (person_key),
    category TEXT NOT NULL,
    valid_from TEXT NOT NULL,
    valid_to TEXT,
    source TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    superseded_by BIGINT REFERENCES spells (id)
);
CREATE INDEX spells_by_person ON spells (person_key);

CREATE TABLE policies (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    digest BYTEA NOT NULL UNIQUE,
    name TEXT,
    source TEXT NOT NULL,
    loaded_at TEXT NOT NULL,
    loaded_by TEXT NOT NULL
);

CREATE TABLE invoices (
    invoice_no TEXT PRIMARY KEY NOT NULL,
    person_key BYTEA NOT NULL REFERENCES persons (person_key),
    hospital TEXT NOT NULL,
    visit_type TEXT NOT NULL,
    service_date TEXT NOT NULL,
    settled_at TEXT NOT NULL,
    settled_unix_seconds BIGINT NOT NULL,
    settled_attoseconds BIGINT NOT NULL,
    settled_finer_digits TEXT,
    total BIGINT NOT NULL,
    fund_paid BIGINT NOT NULL,
    in_scope_self_pay BIGINT NOT NULL,
    out_of_scope_self_pay BIGINT NOT NULL,
    request_digest BYTEA NOT NULL,
    channel TEXT NOT NULL,
    received_at TEXT NOT NULL
);
CREATE INDEX invoices_by_person ON invoices (person_key);

CREATE TABLE decisions (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    invoice_no TEXT NOT NULL REFERENCES invoices (invoice_no),
    person_key BYTEA NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('decision', 'reversal')),
    policy_id BIGINT NOT NULL REFERENCES policies (id),
    year BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    category TEXT,
    pool TEXT,
    policy_version TEXT,
    base BIGINT NOT NULL,
    deductible_applied BIGINT NOT NULL,
    eligible BIGINT NOT NULL,
    amount BIGINT NOT NULL,
    response TEXT NOT NULL,
    decided_at TEXT NOT NULL,
    decided_by TEXT NOT NULL
);
-- One decision per invoice number, and at most one reversal of it.
CREATE UNIQUE INDEX decisions_once ON decisions (invoice_no, kind);
CREATE INDEX decisions_by_person ON decisions (person_key);

CREATE TABLE counters (
    person_key BYTEA NOT NULL,
    year BIGINT NOT NULL,
    pool TEXT NOT NULL,
    deductible_used BIGINT NOT NULL,
    granted BIGINT NOT NULL,
    PRIMARY KEY (person_key, year, pool)
);

CREATE TABLE api_keys (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    hospital TEXT NOT NULL,
    key_hash BYTEA NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);

CREATE TABLE audit_log (
    sequence BIGINT PRIMARY KEY NOT NULL,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    details TEXT NOT NULL,
    hash BYTEA NOT NULL
);
