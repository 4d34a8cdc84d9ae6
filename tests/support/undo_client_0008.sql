-- Test aid: takes a client store back to before migration 8 (message actions), for tests that
-- rewind a store to an older schema version.
ALTER TABLE messages DROP COLUMN reply_to;
ALTER TABLE messages DROP COLUMN action;
ALTER TABLE messages DROP COLUMN edited;
ALTER TABLE messages DROP COLUMN deleted;
ALTER TABLE messages DROP COLUMN edit_seq;
ALTER TABLE messages DROP COLUMN mentions_me;
DROP TABLE reactions;
ALTER TABLE outbox DROP COLUMN reply_to;
ALTER TABLE outbox DROP COLUMN action;
