-- Run by its host (issue 19): the server's admins. The first account becomes admin when it
-- registers (under an advisory lock, so two racing first registrations on any nodes cannot
-- both be); `natter-server admin grant|revoke` changes it later. On a server that already had
-- users, the oldest live account becomes its admin.
ALTER TABLE users ADD COLUMN admin BOOLEAN NOT NULL DEFAULT false;
UPDATE users SET admin = true WHERE id = (
    SELECT id FROM users WHERE deleted_at IS NULL ORDER BY created_at, id LIMIT 1
);
