-- Applications (救助申请), smart acceptance (智能受理) and review (救助审核)
-- on SQLite, with the staff who review them.
--
-- staff_users: who works in the bureau, in which roles (reviewer,
-- approver, auditor, admin; space-separated) and with which password for
-- the web pages (Argon2id, PHC string; none until set); staff_tokens: their API
-- tokens, kept only as SHA-256 hashes.
--
-- commitment_letters: the versions of the commitment letter (告知承诺书),
-- the newest the current one; commitment_signatures: who signed which
-- version, the SHA-256 of the text they saw, when and through which
-- channel. Both append-only.
--
-- applications: one submission; state is where it stands now, and
-- application_events keeps every change of state with who and when
-- (append-only). application_bills: its bills as entered, with an optional
-- scan; a bill is pending until decided, or excluded (it cannot be decided:
-- already decided, applied for, repeated, amounts that do not add up) or
-- rejected with its application. A pending or decided bill's number is in
-- no other pending or decided bill (application_bills_live).
-- application_checks: every check of smart acceptance and its result, per
-- bill. recovery_reviews: see below.

CREATE TABLE staff_users (
    name TEXT PRIMARY KEY NOT NULL,
    roles TEXT NOT NULL,
    password_hash TEXT,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    disabled_at TEXT
) STRICT;

CREATE TABLE staff_tokens (
    token_hash BLOB PRIMARY KEY NOT NULL,
    name TEXT NOT NULL REFERENCES staff_users (name),
    created_at TEXT NOT NULL,
    revoked_at TEXT
) STRICT;

CREATE TABLE commitment_letters (
    id INTEGER PRIMARY KEY,
    version TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL,
    body_sha256 BLOB NOT NULL UNIQUE,
    published_at TEXT NOT NULL,
    published_by TEXT NOT NULL
) STRICT;

CREATE TABLE commitment_signatures (
    id INTEGER PRIMARY KEY,
    person_key BLOB NOT NULL REFERENCES persons (person_key),
    letter_id INTEGER NOT NULL REFERENCES commitment_letters (id),
    body_sha256 BLOB NOT NULL,
    channel TEXT NOT NULL CHECK (channel IN ('web', 'phone', 'counter')),
    signed_at TEXT NOT NULL,
    recorded_by TEXT NOT NULL
) STRICT;
CREATE INDEX commitment_signatures_by_person ON commitment_signatures (person_key, letter_id);

CREATE TABLE applications (
    id INTEGER PRIMARY KEY,
    person_key BLOB NOT NULL REFERENCES persons (person_key),
    signature_id INTEGER NOT NULL REFERENCES commitment_signatures (id),
    channel TEXT NOT NULL CHECK (channel IN ('web', 'phone', 'counter')),
    entered_by TEXT NOT NULL,
    submitted_at TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('needs_review', 'approved', 'rejected', 'decided', 'paid')),
    request_sha256 BLOB NOT NULL
) STRICT;
CREATE INDEX applications_by_person ON applications (person_key, id);
CREATE INDEX applications_by_state ON applications (state, id);

CREATE TABLE application_events (
    id INTEGER PRIMARY KEY,
    application_id INTEGER NOT NULL REFERENCES applications (id),
    state TEXT NOT NULL CHECK (state IN ('submitted', 'accepted', 'needs_review', 'approved', 'rejected', 'decided', 'paid')),
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    reason TEXT
) STRICT;
CREATE INDEX application_events_by_application ON application_events (application_id, id);

CREATE TABLE application_bills (
    application_id INTEGER NOT NULL REFERENCES applications (id),
    line INTEGER NOT NULL,
    invoice_no TEXT NOT NULL,
    hospital TEXT NOT NULL,
    visit_type TEXT NOT NULL,
    service_date TEXT NOT NULL,
    settled_at TEXT NOT NULL,
    total INTEGER NOT NULL,
    fund_paid INTEGER NOT NULL,
    in_scope_self_pay INTEGER NOT NULL,
    out_of_scope_self_pay INTEGER NOT NULL,
    scan_media_type TEXT,
    scan BLOB,
    scan_sha256 BLOB,
    status TEXT NOT NULL CHECK (status IN ('pending', 'decided', 'excluded', 'rejected')),
    PRIMARY KEY (application_id, line)
) STRICT;
CREATE UNIQUE INDEX application_bills_live ON application_bills (invoice_no) WHERE status IN ('pending', 'decided');
CREATE INDEX application_bills_by_invoice ON application_bills (invoice_no);

CREATE TABLE application_checks (
    application_id INTEGER NOT NULL REFERENCES applications (id),
    line INTEGER NOT NULL,
    name TEXT NOT NULL,
    passed INTEGER NOT NULL CHECK (passed IN (0, 1)),
    detail TEXT NOT NULL,
    PRIMARY KEY (application_id, line, name)
) STRICT;


-- recovery_reviews: what a reviewer decided of a clearing's recovery line
-- (追回): to recover it from the person, or to waive it, with a reason;
-- then, for one recovered, that the person repaid it. Append-only; one
-- verdict per line, and a repayment only of a line to recover.
CREATE TABLE recovery_reviews (
    id INTEGER PRIMARY KEY,
    line_id INTEGER NOT NULL REFERENCES clearing_lines (id),
    verdict TEXT NOT NULL CHECK (verdict IN ('recover', 'waive', 'repaid')),
    reason TEXT NOT NULL,
    at TEXT NOT NULL,
    actor TEXT NOT NULL
) STRICT;
CREATE UNIQUE INDEX recovery_reviews_once ON recovery_reviews (line_id, (verdict = 'repaid'));

-- web_sessions: the sessions of the web pages, kept only as the SHA-256 of
-- their token (the cookie holds the token); each with its CSRF token, its
-- subject (a member of staff's name, or a citizen's blind index in hex) and
-- when it ends.
CREATE TABLE web_sessions (
    token_hash BLOB PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('staff', 'citizen')),
    subject TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_unix INTEGER NOT NULL,
    ended_at TEXT
) STRICT;

-- contacts: a person's mobile phone, append-only (the newest is theirs),
-- encrypted, masked for screens, and found by its blind index.
-- login_codes: the one-time codes of citizens' logins, kept only as their
-- SHA-256, each for a few minutes and a few tries.
CREATE TABLE contacts (
    id INTEGER PRIMARY KEY,
    person_key BLOB NOT NULL REFERENCES persons (person_key),
    phone_encrypted BLOB NOT NULL,
    phone_masked TEXT NOT NULL,
    phone_index BLOB NOT NULL,
    recorded_at TEXT NOT NULL,
    recorded_by TEXT NOT NULL
) STRICT;
CREATE INDEX contacts_by_person ON contacts (person_key, id);

CREATE TABLE login_codes (
    id INTEGER PRIMARY KEY,
    person_key BLOB NOT NULL REFERENCES persons (person_key),
    code_hash BLOB NOT NULL,
    expires_unix INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    used_at TEXT,
    created_at TEXT NOT NULL
) STRICT;
CREATE INDEX login_codes_by_person ON login_codes (person_key, id);
