-- Test aid: takes a client store back to before migration 10 (conversation flags), for tests
-- that rewind a store to an older schema version.
ALTER TABLE conversations DROP COLUMN private;
ALTER TABLE conversations DROP COLUMN moderator;
