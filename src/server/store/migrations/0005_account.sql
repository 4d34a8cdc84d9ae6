-- Your account (docs/protocol.md, "Your account"): sessions carry the label their sign-in sent
-- (or its User-Agent), for the session list; a deleted account keeps its row, so its messages
-- keep their sender and its username stays reserved, but `deleted_at` marks it: it cannot sign
-- in, is not listed among users and cannot be written to.
ALTER TABLE tokens ADD COLUMN label TEXT;
ALTER TABLE users ADD COLUMN deleted_at INTEGER;
