-- A notification is stored by its facts, not its words: `facts` holds the
-- values its message is made of (a JSON array of strings: for an assisted
-- bill the hospital, invoice number, service date and amount in yuan; for
-- a new recipient the category's name and the date from which), and the
-- text is written from them, by its kind, when it is sent. The words of a
-- message were most of what an import wrote to the outbox (about 270 bytes
-- a row against about 50 for the facts). Rows written before keep their
-- text; a row has one or the other.

ALTER TABLE outbox ALTER COLUMN text DROP NOT NULL;
ALTER TABLE outbox ADD COLUMN facts TEXT;
ALTER TABLE outbox ADD CONSTRAINT outbox_text_or_facts CHECK ((text IS NULL) <> (facts IS NULL));
