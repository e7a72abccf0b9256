-- A notification is stored by its facts, not its words: `facts` holds the
-- values its message is made of (a JSON array of strings: for an assisted
-- bill the hospital, invoice number, service date and amount in yuan; for
-- a new recipient the category's name and the date from which), and the
-- text is written from them, by its kind, when it is sent. The words of a
-- message were most of what an import wrote to the outbox (about 270 bytes
-- a row against about 50 for the facts). Rows written before keep their
-- text; a row has one or the other.
--
-- SQLite cannot drop a NOT NULL constraint: the table is rebuilt, its ids
-- and every column kept, and its indexes made again.

CREATE TABLE outbox_with_facts (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('assisted', 'new_recipient')),
    person_key BLOB NOT NULL REFERENCES persons (person_key),
    person_masked TEXT NOT NULL,
    text TEXT,
    facts TEXT,
    -- What it is about: the invoice assisted, or the import that brought
    -- the new recipient.
    invoice_no TEXT REFERENCES invoices (invoice_no),
    import_id INTEGER REFERENCES imports (id),
    created_at TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_unix_ms INTEGER NOT NULL,
    claimed_by TEXT,
    last_error TEXT,
    sent_at TEXT,
    CHECK ((kind = 'assisted') = (invoice_no IS NOT NULL)),
    CHECK ((kind = 'new_recipient') = (import_id IS NOT NULL)),
    CHECK ((text IS NULL) <> (facts IS NULL))
) STRICT;
INSERT INTO outbox_with_facts
    (id, kind, person_key, person_masked, text, facts, invoice_no, import_id, created_at,
     attempts, next_attempt_unix_ms, claimed_by, last_error, sent_at)
SELECT id, kind, person_key, person_masked, text, NULL, invoice_no, import_id, created_at,
       attempts, next_attempt_unix_ms, claimed_by, last_error, sent_at
FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_with_facts RENAME TO outbox;
CREATE UNIQUE INDEX outbox_assisted_once ON outbox (invoice_no) WHERE kind = 'assisted';
CREATE UNIQUE INDEX outbox_new_recipient_once ON outbox (person_key) WHERE kind = 'new_recipient';
-- The rows not sent yet, in the order they are sent.
CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL;
