-- Run by its host (issue 19): the server's admins. The first account becomes admin when it
-- registers (decided in the writer's transaction, so two racing first registrations cannot
-- both be); `natter-server admin grant|revoke` changes it later. On a server that already had
-- users, the oldest live account becomes its admin.
ALTER TABLE users ADD COLUMN admin INTEGER NOT NULL DEFAULT 0;
UPDATE users SET admin = 1 WHERE id = (
    SELECT id FROM users WHERE deleted_at IS NULL ORDER BY created_at, id LIMIT 1
);

-- Registration modes: an account made on an `approval` server waits (`pending`) until an admin
-- approves it; meanwhile it is in no conversation, no list, and cannot sign in.
ALTER TABLE users ADD COLUMN pending INTEGER NOT NULL DEFAULT 0;

-- One-time invite codes made by admins. Only the SHA-256 of a code is stored, like tokens'.
-- Redeeming sets `used_at` (and `used_by`) in the registering write's transaction.
CREATE TABLE invites (
    id         INTEGER PRIMARY KEY,
    hash       BLOB NOT NULL UNIQUE,
    created_by INTEGER NOT NULL REFERENCES users(id),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER,
    used_by    INTEGER REFERENCES users(id),
    revoked    INTEGER NOT NULL DEFAULT 0
);

-- Private rooms: invisible to non-members (no listing, no join by name: the same answer as for a
-- room that does not exist); members add people. Existing rooms stay public.
ALTER TABLE conversations ADD COLUMN private INTEGER NOT NULL DEFAULT 0;

-- Moderation: a room's creator moderates it (admins moderate every room); existing rooms have
-- no creator on record. A user banned from a room cannot join it or be added again.
ALTER TABLE conversations ADD COLUMN created_by INTEGER REFERENCES users(id);
CREATE TABLE room_bans (
    conv_id INTEGER NOT NULL REFERENCES conversations(id),
    user_id INTEGER NOT NULL REFERENCES users(id),
    PRIMARY KEY (conv_id, user_id)
) WITHOUT ROWID;

-- Banned from the server by an admin: the account's sessions were revoked, it cannot sign in.
ALTER TABLE users ADD COLUMN banned INTEGER NOT NULL DEFAULT 0;
