-- Natter server schema, version 1.
-- Names are unique case-insensitively through `name_key` (the lowercased name), so "Alice" and
-- "alice" cannot both exist; the display form keeps the case the user chose.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    username      TEXT NOT NULL,
    name_key      TEXT NOT NULL UNIQUE,
    display_name  TEXT NOT NULL,
    avatar        TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at    INTEGER NOT NULL
);

-- Only the SHA-256 of a token is stored.
CREATE TABLE tokens (
    hash       BLOB PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked    INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- Rooms and direct messages share one id space. A DM has `dm_key` = "<low user id>:<high user id>".
CREATE TABLE conversations (
    id         INTEGER PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('room', 'dm')),
    name       TEXT,
    name_key   TEXT UNIQUE,
    dm_key     TEXT UNIQUE,
    last_seq   INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);

CREATE TABLE members (
    conv_id   INTEGER NOT NULL REFERENCES conversations(id),
    user_id   INTEGER NOT NULL REFERENCES users(id),
    last_read INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (conv_id, user_id)
) WITHOUT ROWID;
CREATE INDEX members_by_user ON members(user_id);

-- seq is gapless per conversation (assigned from conversations.last_seq in the same transaction);
-- (sender_id, client_msg_id) makes a retried send return the original message.
CREATE TABLE messages (
    id            INTEGER PRIMARY KEY,
    conv_id       INTEGER NOT NULL REFERENCES conversations(id),
    seq           INTEGER NOT NULL,
    sender_id     INTEGER NOT NULL REFERENCES users(id),
    text          TEXT NOT NULL,
    time          INTEGER NOT NULL,
    client_msg_id TEXT NOT NULL,
    UNIQUE (conv_id, seq),
    UNIQUE (sender_id, client_msg_id)
);

INSERT INTO conversations (kind, name, name_key, created_at) VALUES ('room', 'general', 'general', 0);
