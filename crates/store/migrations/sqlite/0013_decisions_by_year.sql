-- A clearing reads the decisions of one year, and the reversals of that
-- year, from decisions of every year. Two partial indexes let it read just
-- its own: the decisions of each year in the order they were made, with
-- the columns the clearing compares (so that it reads the index alone, a
-- fraction of the table's rows), and the reversals of each year (few: the
-- clearing's look-up of reversed bills paid out starts from them, not from
-- every payable). A new decision's entry goes at the end of its year's.

CREATE INDEX decisions_of_year ON decisions (year, id, invoice_no, outcome, pool, deductible_applied, amount)
    WHERE kind = 'decision';
CREATE INDEX reversals_of_year ON decisions (year, invoice_no) WHERE kind = 'reversal';
