-- A clearing stores each invoice whose decision it changed, and reads back
-- those of its year. The table's key leads with the year: a clearing reads
-- its year as one range of it, and the index by year alone goes. The
-- reversal of a bill finds its latest row by its year and number.
--
-- An invoice row here names an invoice the clearing read from `invoices`,
-- which keeps every invoice it is given and deletes none: the reference is
-- not checked again for each row written.

ALTER TABLE clearing_invoices DROP CONSTRAINT clearing_invoices_pkey;
ALTER TABLE clearing_invoices DROP CONSTRAINT clearing_invoices_invoice_no_fkey;
DROP INDEX clearing_invoices_by_year;
ALTER TABLE clearing_invoices ADD PRIMARY KEY (year, invoice_no, clearing_id);
