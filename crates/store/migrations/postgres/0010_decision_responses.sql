-- A decision's settlement response (the JSON answer given to the hospital,
-- kept so that a repeated request gets the first answer again) moves to a
-- table of its own. It was most of a decision's row (600 to 1,000 bytes of
-- about 1,100), and every reading of decisions by year, person or id (the
-- clearing, the dashboard, the feeds shared back) paid for it. A reversal
-- has no response of its own: its answer is the decision's, marked
-- reversed.

CREATE TABLE decision_responses (
    decision_id BIGINT PRIMARY KEY REFERENCES decisions (id),
    response TEXT NOT NULL
);

INSERT INTO decision_responses (decision_id, response)
SELECT id, response FROM decisions WHERE kind = 'decision' ORDER BY id;

ALTER TABLE decisions DROP COLUMN response;
