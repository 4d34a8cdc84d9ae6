-- Names compare by `fold_key` (NFKC with full case folding, so "ＡＬＩＣＥ", "Alice" and "alice"
-- are one name) and a new name may not share the `skeleton` (Unicode TR39 confusable skeleton
-- of the key, so Cyrillic "аlice" looks like "alice") of an existing one: see src/names.rs.
-- SQL cannot compute either, so `store::fill_name_keys` fills them for the rows already here, in
-- this migration's transaction. Rows from before that collide under the new rules are all kept
-- (no unique index on fold_key): a lookup picks the exact spelling, else the oldest.
-- `name_key` stays unique as it was; later rows store their fold_key in it.

ALTER TABLE users ADD COLUMN fold_key TEXT;
ALTER TABLE users ADD COLUMN skeleton TEXT;
ALTER TABLE conversations ADD COLUMN fold_key TEXT;
ALTER TABLE conversations ADD COLUMN skeleton TEXT;

CREATE INDEX users_by_fold_key ON users (fold_key);
CREATE INDEX users_by_skeleton ON users (skeleton);
CREATE INDEX rooms_by_fold_key ON conversations (fold_key) WHERE kind = 'room';
CREATE INDEX rooms_by_skeleton ON conversations (skeleton) WHERE kind = 'room';
