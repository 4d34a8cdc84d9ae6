-- The client's local store: one database per server + user profile.
-- Messages are keyed by (conv, seq) so a replay and a live push of the same message never
-- produce two rows; the outbox holds what the user wrote that the server has not acked yet.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE users (
    username     TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    avatar       TEXT NOT NULL
);

CREATE TABLE conversations (
    id              INTEGER PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind IN ('room', 'dm')),
    name            TEXT NOT NULL,
    peer            TEXT,
    member_count    INTEGER NOT NULL DEFAULT 0,
    -- The highest seq the server has told us about (may be above what we hold).
    last_seq        INTEGER NOT NULL DEFAULT 0,
    last_read       INTEGER NOT NULL DEFAULT 0,
    -- 1 while a local read marker has not reached the server yet.
    read_dirty      INTEGER NOT NULL DEFAULT 0,
    -- Unread messages the server counted that we may not hold locally, up to unread_base_seq.
    unread_base     INTEGER NOT NULL DEFAULT 0,
    unread_base_seq INTEGER NOT NULL DEFAULT 0,
    muted           INTEGER NOT NULL DEFAULT 0,
    member          INTEGER NOT NULL DEFAULT 1
);

CREATE TABLE messages (
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
CREATE INDEX messages_time ON messages (time);

CREATE TABLE outbox (
    pos      INTEGER PRIMARY KEY AUTOINCREMENT,
    local_id TEXT NOT NULL UNIQUE,
    conv     INTEGER,
    to_user  TEXT,
    sender   TEXT NOT NULL,
    text     TEXT NOT NULL,
    created  INTEGER NOT NULL,
    state    TEXT NOT NULL CHECK (state IN ('pending', 'failed')),
    error    TEXT
);

-- Trigram tokens find substrings in any script (你好 inside 你好世界, words inside English
-- text); queries shorter than three characters fall back to LIKE (see store.rs).
CREATE VIRTUAL TABLE messages_fts USING fts5 (
    text,
    content = 'messages',
    content_rowid = 'id',
    tokenize = 'trigram'
);

CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts (rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;
