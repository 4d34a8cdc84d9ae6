-- Message ids (the FTS rowids) follow message time, so search reads the trigram index newest
-- first and stops at its limit instead of sorting every match. An id is
-- (time clamped to 0..=2^55-1) << 8 plus the arrival order within that millisecond (see
-- `order_key` in store.rs); history paged in later than newer messages therefore still sorts by
-- time. Existing rows are renumbered the same way; a millisecond holding more than 256 rows (never
-- seen in practice) keeps its overflow in arrival order after everything else rather than
-- failing the migration.

CREATE TABLE messages_new (
    id            INTEGER PRIMARY KEY,
    conv          INTEGER NOT NULL,
    seq           INTEGER NOT NULL,
    server_id     INTEGER NOT NULL,
    sender        TEXT NOT NULL,
    text          TEXT NOT NULL,
    time          INTEGER NOT NULL,
    client_msg_id TEXT NOT NULL,
    UNIQUE (conv, seq)
);

INSERT INTO messages_new (id, conv, seq, server_id, sender, text, time, client_msg_id)
SELECT CASE WHEN slot < 256 THEN (k << 8) + slot END,
       conv, seq, server_id, sender, text, time, client_msg_id
FROM (
    SELECT m.*, max(0, min(time, 36028797018963967)) AS k,
           row_number() OVER (PARTITION BY max(0, min(time, 36028797018963967)) ORDER BY id) - 1
               AS slot
    FROM messages m
)
ORDER BY slot >= 256, k, slot;

-- Dropping the table drops its index and the FTS triggers; both are recreated below.
DROP TABLE messages;
ALTER TABLE messages_new RENAME TO messages;
CREATE INDEX messages_time ON messages (time);

CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts (rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;

-- The index still holds the old ids: rebuild it from the renumbered content table.
INSERT INTO messages_fts (messages_fts) VALUES ('rebuild');
