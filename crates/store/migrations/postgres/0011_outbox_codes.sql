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

ALTER TABLE outbox DROP CONSTRAINT outbox_kind_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_kind_check
    CHECK (kind IN ('assisted', 'new_recipient', 'login_code', 'details_code'));
ALTER TABLE outbox ADD COLUMN code_id BIGINT REFERENCES login_codes (id);
ALTER TABLE outbox ADD COLUMN sealed BYTEA;
ALTER TABLE outbox ADD COLUMN expires_unix_ms BIGINT;
ALTER TABLE outbox ADD COLUMN expired_at TEXT;
ALTER TABLE outbox DROP CONSTRAINT outbox_text_or_facts;
ALTER TABLE outbox ADD CONSTRAINT outbox_text_or_facts
    CHECK (code_id IS NOT NULL OR ((text IS NULL) <> (facts IS NULL)));
ALTER TABLE outbox ADD CONSTRAINT outbox_code_has_no_words
    CHECK (code_id IS NULL OR (text IS NULL AND facts IS NULL));
ALTER TABLE outbox ADD CONSTRAINT outbox_code_kind
    CHECK ((kind IN ('login_code', 'details_code')) = (code_id IS NOT NULL));
ALTER TABLE outbox ADD CONSTRAINT outbox_code_expires
    CHECK ((kind IN ('login_code', 'details_code')) = (expires_unix_ms IS NOT NULL));
ALTER TABLE outbox ADD CONSTRAINT outbox_sealed_is_a_code
    CHECK (sealed IS NULL OR code_id IS NOT NULL);
CREATE UNIQUE INDEX outbox_code_once ON outbox (code_id) WHERE code_id IS NOT NULL;
-- The codes not sent yet: sent before anything else, given up once expired.
CREATE INDEX outbox_codes_unsent ON outbox (id) WHERE code_id IS NOT NULL AND sent_at IS NULL AND expired_at IS NULL;
