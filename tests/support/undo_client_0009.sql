-- Test aid: takes a client store back to before migration 9 (attachments), for tests that
-- rewind a store to an older schema version.
ALTER TABLE messages DROP COLUMN attachments;
ALTER TABLE users DROP COLUMN avatar_image;
ALTER TABLE outbox DROP COLUMN files;
