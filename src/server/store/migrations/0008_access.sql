-- Run by its host (issue 19): the server's admins. The first account becomes admin when it
-- registers (decided in the writer's transaction, so two racing first registrations cannot
-- both be); `natter-server admin grant|revoke` changes it later. On a server that already had
-- users, the oldest live account becomes its admin.
ALTER TABLE users ADD COLUMN admin INTEGER NOT NULL DEFAULT 0;
UPDATE users SET admin = 1 WHERE id = (
    SELECT id FROM users WHERE deleted_at IS NULL ORDER BY created_at, id LIMIT 1
);
