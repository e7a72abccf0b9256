-- A clearing stores each invoice whose decision it changed, and reads back
-- those of its year. The rows are kept in the order of their year and
-- invoice number, the table's own key: a clearing's rows go into one
-- B-tree, in the order it writes them, and it reads its year as one range
-- of it (no index to keep beside the table, no table row to look up for
-- each index entry). The reversal of a bill finds its latest row by its
-- year and number.
--
-- An invoice row here names an invoice the clearing read from `invoices`,
-- which keeps every invoice it is given and deletes none: the reference is
-- not checked again for each row written.

CREATE TABLE clearing_invoices_new (
    year INTEGER NOT NULL,
    invoice_no TEXT NOT NULL,
    clearing_id INTEGER NOT NULL REFERENCES clearings (id),
    person_key BLOB NOT NULL,
    outcome TEXT NOT NULL,
    pool TEXT,
    deductible_applied INTEGER NOT NULL,
    amount INTEGER NOT NULL,
    previous_amount INTEGER NOT NULL,
    PRIMARY KEY (year, invoice_no, clearing_id)
) STRICT, WITHOUT ROWID;

INSERT INTO clearing_invoices_new (year, invoice_no, clearing_id, person_key, outcome, pool,
    deductible_applied, amount, previous_amount)
SELECT year, invoice_no, clearing_id, person_key, outcome, pool, deductible_applied, amount, previous_amount
FROM clearing_invoices;

DROP TABLE clearing_invoices;
ALTER TABLE clearing_invoices_new RENAME TO clearing_invoices;
