-- The notification outbox on PostgreSQL. Each automatic assistance (a
-- decision granting more than 0, in real time or from the insurance feed)
-- and each new recipient of a spells import is written here in the same
-- transaction as what it announces, so that none is lost; a dispatcher
-- hands each to a sender and sets sent_at. The cause of a notification is
-- unique: one per assisted invoice, one per new recipient, enforced by the
-- indexes below.
--
-- attempts counts the times a row was handed to a sender; a failure keeps
-- the error (last_error) and sets next_attempt_unix_ms later and later
-- (exponential backoff). A dispatcher claims the rows it sends (SELECT …
-- FOR UPDATE SKIP LOCKED): it writes its token in claimed_by and moves
-- next_attempt_unix_ms to the end of its lease, so that no other
-- dispatcher (another `jiuzhu serve` on this database) takes them
-- meanwhile; a claim whose lease has passed (its dispatcher stopped) is
-- free again.
-- Numbered 0004: 0003 is another migration; the runner applies each number
-- once, whatever the order they arrive in.

CREATE TABLE outbox (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('assisted', 'new_recipient')),
    person_key BYTEA NOT NULL REFERENCES persons (person_key),
    person_masked TEXT NOT NULL,
    text TEXT NOT NULL,
    -- What it is about: the invoice assisted, or the import that brought
    -- the new recipient.
    invoice_no TEXT REFERENCES invoices (invoice_no),
    import_id BIGINT REFERENCES imports (id),
    created_at TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_unix_ms BIGINT NOT NULL,
    claimed_by TEXT,
    last_error TEXT,
    sent_at TEXT,
    CHECK ((kind = 'assisted') = (invoice_no IS NOT NULL)),
    CHECK ((kind = 'new_recipient') = (import_id IS NOT NULL))
);
CREATE UNIQUE INDEX outbox_assisted_once ON outbox (invoice_no) WHERE kind = 'assisted';
CREATE UNIQUE INDEX outbox_new_recipient_once ON outbox (person_key) WHERE kind = 'new_recipient';
-- The rows not sent yet, in the order they are sent.
CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL;
CREATE INDEX outbox_by_person ON outbox (person_key);
