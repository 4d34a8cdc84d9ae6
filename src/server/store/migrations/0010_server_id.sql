-- The server's stable id (issue 19): made once, when this migration runs, and never changed, so
-- clients recognise the server at any address (their profiles are keyed by it). 32 lowercase hex
-- characters from 16 random bytes; the CHECK keeps the table at one row.
CREATE TABLE server_identity (
    only_row INTEGER PRIMARY KEY CHECK (only_row = 1),
    id       TEXT NOT NULL
);
INSERT INTO server_identity (only_row, id) VALUES (1, lower(hex(randomblob(16))));
