-- The outbox is written with every assisted bill and every new recipient,
-- and read only in the order it is sent (outbox_unsent): an index of its
-- rows by person cost a write in a random place of the index for each of
-- them and served no query. A person's notifications, when a page shows
-- them, are few and found through the person's decisions.
DROP INDEX outbox_by_person;
