-- Disbursement (拨付) on PostgreSQL.
--
-- bank_accounts: append-only; a person's account is their latest row. The
-- account number is encrypted (AES-256-GCM) and kept masked for screens.
--
-- payables: what is owed to a person, one row per cause: a decision of the
-- insurance feed granting more than 0 (the person paid the whole bill at
-- the counter), or a clearing's top-up. Real-time decisions are not here:
-- the hospital deducted them at its counter.
--
-- payment_batches and payment_lines: a batch holds one line per person (the
-- sum of their payables in it), made by one person and approved by another
-- (maker-checker), exported as the bank payment file and answered by the
-- bank's return file, line by line: paid, or failed with the bank's reason.
-- payment_items ties each payable to the line that pays it; a payable is in
-- at most one live item (its line pending or paid): it is never in two
-- unpaid batches and never paid twice. A failed line's items stop being
-- live, and their payables go into a later batch.

CREATE TABLE bank_accounts (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_key BYTEA NOT NULL REFERENCES persons (person_key),
    holder_name TEXT NOT NULL,
    bank TEXT NOT NULL,
    account_encrypted BYTEA NOT NULL,
    account_masked TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    recorded_by TEXT NOT NULL
);
CREATE INDEX bank_accounts_by_person ON bank_accounts (person_key, id);

CREATE TABLE payables (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_key BYTEA NOT NULL REFERENCES persons (person_key),
    kind TEXT NOT NULL CHECK (kind IN ('decision', 'top_up')),
    reference TEXT NOT NULL,
    amount BIGINT NOT NULL CHECK (amount > 0),
    created_at TEXT NOT NULL,
    UNIQUE (kind, reference)
);

CREATE TABLE payment_batches (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    lines BIGINT NOT NULL,
    total BIGINT NOT NULL,
    approved_at TEXT,
    approved_by TEXT,
    exported_at TEXT,
    returned_at TEXT,
    CHECK (approved_by IS NULL OR approved_by <> created_by)
);

CREATE TABLE payment_lines (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    batch_id BIGINT NOT NULL REFERENCES payment_batches (id),
    person_key BYTEA NOT NULL REFERENCES persons (person_key),
    bank_account_id BIGINT NOT NULL REFERENCES bank_accounts (id),
    amount BIGINT NOT NULL CHECK (amount > 0),
    status TEXT NOT NULL CHECK (status IN ('pending', 'paid', 'failed')),
    reason TEXT,
    answered_at TEXT
);
CREATE INDEX payment_lines_by_batch ON payment_lines (batch_id);

CREATE TABLE payment_items (
    line_id BIGINT NOT NULL REFERENCES payment_lines (id),
    payable_id BIGINT NOT NULL REFERENCES payables (id),
    live BIGINT NOT NULL CHECK (live IN (0, 1)),
    PRIMARY KEY (line_id, payable_id)
);
CREATE UNIQUE INDEX payment_items_live ON payment_items (payable_id) WHERE live = 1;
