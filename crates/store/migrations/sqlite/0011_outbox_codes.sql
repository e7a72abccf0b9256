-- One-time codes go through the outbox: every code made (a resident's
-- login, a change of their details) is one notification to the phone on
-- record, written in the transaction that stores the code's hash.
--
-- A code is a secret: its message and phone are kept only sealed
-- (`sealed`: AES-256-GCM under the store's data key, never in clear), and
-- the sealed message is blanked as soon as it is sent or its code expires.
-- `code_id` names the code (one notification per code, ever);
-- `expires_unix_ms` is when the code expires: a notification not sent by
-- then is never sent, and `expired_at` records that it was given up. A
-- code's row has neither text nor facts.
--
-- SQLite cannot change a CHECK constraint: the table is rebuilt, its ids
-- and every column kept, and its indexes made again.

CREATE TABLE outbox_with_codes (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('assisted', 'new_recipient', 'login_code', 'details_code')),
    person_key BLOB NOT NULL REFERENCES persons (person_key),
    person_masked TEXT NOT NULL,
    text TEXT,
    facts TEXT,
    -- What it is about: the invoice assisted, the import that brought the
    -- new recipient, or the code.
    invoice_no TEXT REFERENCES invoices (invoice_no),
    import_id INTEGER REFERENCES imports (id),
    code_id INTEGER REFERENCES login_codes (id),
    sealed BLOB,
    expires_unix_ms INTEGER,
    expired_at TEXT,
    created_at TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_unix_ms INTEGER NOT NULL,
    claimed_by TEXT,
    last_error TEXT,
    sent_at TEXT,
    CHECK ((kind = 'assisted') = (invoice_no IS NOT NULL)),
    CHECK ((kind = 'new_recipient') = (import_id IS NOT NULL)),
    CHECK ((kind IN ('login_code', 'details_code')) = (code_id IS NOT NULL)),
    CHECK ((kind IN ('login_code', 'details_code')) = (expires_unix_ms IS NOT NULL)),
    CHECK (code_id IS NOT NULL OR ((text IS NULL) <> (facts IS NULL))),
    CHECK (code_id IS NULL OR (text IS NULL AND facts IS NULL)),
    CHECK (sealed IS NULL OR code_id IS NOT NULL)
) STRICT;
INSERT INTO outbox_with_codes
    (id, kind, person_key, person_masked, text, facts, invoice_no, import_id, created_at,
     attempts, next_attempt_unix_ms, claimed_by, last_error, sent_at)
SELECT id, kind, person_key, person_masked, text, facts, invoice_no, import_id, created_at,
       attempts, next_attempt_unix_ms, claimed_by, last_error, sent_at
FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_with_codes RENAME TO outbox;
CREATE UNIQUE INDEX outbox_assisted_once ON outbox (invoice_no) WHERE kind = 'assisted';
CREATE UNIQUE INDEX outbox_new_recipient_once ON outbox (person_key) WHERE kind = 'new_recipient';
CREATE UNIQUE INDEX outbox_code_once ON outbox (code_id) WHERE code_id IS NOT NULL;
-- The rows not sent yet, in the order they are sent.
CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL;
-- The codes not sent yet: sent before anything else, given up once expired.
CREATE INDEX outbox_codes_unsent ON outbox (id) WHERE code_id IS NOT NULL AND sent_at IS NULL AND expired_at IS NULL;
