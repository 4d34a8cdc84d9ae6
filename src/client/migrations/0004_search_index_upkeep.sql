-- Keeps the search index cheap to open cold (see `Store::compact_search_index` in store.rs).
--
-- messages_time: no query reads it since 0003 made message ids follow time (pages go by
-- (conv, seq), search by id); it cost 21 MiB of a 1,000,000-message store and an index write
-- per message.
DROP INDEX IF EXISTS messages_time;

-- Merge the FTS index into one segment. A cold first search reads each query trigram's doclist
-- head in every segment; a store filled in many transactions has about ten segments, and their
-- ~150 random page reads were most of a 15-60 ms first search when the file was not in the OS
-- page cache. New writes are merged again by `Store::insert_messages` as the index grows.
INSERT INTO messages_fts (messages_fts) VALUES ('optimize');

-- The size the index had when last merged: the next merge waits for a quarter of it in new rows.
INSERT OR REPLACE INTO meta (key, value) SELECT 'fts_compacted_rows', count(*) FROM messages;
