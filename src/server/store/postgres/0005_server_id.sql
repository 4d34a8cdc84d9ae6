-- The server's stable id (issue 19): made once, when this migration runs (under the migration
-- lock, so every node of a cluster reads the same one), and never changed; clients key their
-- profiles by it. 32 lowercase hex characters from a random UUID (gen_random_uuid, PostgreSQL
-- 13+); the CHECK keeps the table at one row.
CREATE TABLE server_identity (
    only_row INTEGER PRIMARY KEY CHECK (only_row = 1),
    id       TEXT NOT NULL
);
INSERT INTO server_identity (only_row, id) VALUES (1, replace(gen_random_uuid()::text, '-', ''));
