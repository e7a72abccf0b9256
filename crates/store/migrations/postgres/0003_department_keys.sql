-- Department data sharing on PostgreSQL. A department (民政, 残联, …, or
-- 医保结算, the insurance settlement system) pushes its files through the
-- API and pulls back the decisions about the persons it reported, with an
-- API key of its own. As for hospitals, a key is kept only as its SHA-256
-- hash; a revoked key (revoked_at set) opens nothing.

CREATE TABLE department_keys (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    department TEXT NOT NULL,
    key_hash BYTEA NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE INDEX department_keys_by_department ON department_keys (department);
