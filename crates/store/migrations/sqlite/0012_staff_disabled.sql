-- A member of staff can be disabled and enabled again from the console or
-- the command line. disabled_at (already there, respected by sessions and
-- API tokens) says since when; disabled_by and disabled_reason say by whom
-- and why. Enabling clears all three; the audit log keeps the history.

ALTER TABLE staff_users ADD COLUMN disabled_by TEXT;
ALTER TABLE staff_users ADD COLUMN disabled_reason TEXT;
