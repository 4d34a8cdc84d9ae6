-- `Store::insert_messages` indexes a batch's new messages itself, in one statement, instead of
-- this trigger. FTS5 writes its pending terms out as a new segment at every statement savepoint,
-- and each statement that changes a virtual table (the trigger's insert, once per message) runs
-- in one: a 1,000-message batch made 1,000 one-row segments that FTS5 then merged again, inside
-- the same transaction. One insert per batch makes one segment per batch.
-- The delete trigger stays: deleting is rare (a profile wiped for another user) and must never
-- leave stale index entries behind.
DROP TRIGGER messages_fts_insert;
