-- A user who deleted their account (the server's `user_updated` with `deleted`): kept, so their
-- messages still name them, and shown as a deleted user.
ALTER TABLE users ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;
