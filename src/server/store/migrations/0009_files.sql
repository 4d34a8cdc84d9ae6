-- Uploaded files (issue 17). Each upload is a row with its own id, even of bytes uploaded
-- before: the bytes themselves are kept once, in the blob store, under their SHA-256 (`blob`;
-- `thumb_blob` for an image's thumbnail). Name and media type were made safe and sniffed by the
-- server; width and height are an image's.
CREATE TABLE files (
    id          TEXT PRIMARY KEY,
    uploader_id INTEGER NOT NULL REFERENCES users(id),
    blob        TEXT NOT NULL,
    name        TEXT NOT NULL,
    media_type  TEXT NOT NULL,
    size        INTEGER NOT NULL,
    width       INTEGER,
    height      INTEGER,
    thumb_blob  TEXT,
    thumb_type  TEXT,
    created_at  INTEGER NOT NULL
) WITHOUT ROWID;
-- The quota sums a user's uploads.
CREATE INDEX files_by_uploader ON files (uploader_id);
-- The files a message carries, in order. Who may download a file: its uploader and the members
-- of a conversation a message carrying it was posted in (`message_files_by_file`).
CREATE TABLE message_files (
    conv_id  INTEGER NOT NULL,
    seq      INTEGER NOT NULL,
    position INTEGER NOT NULL,
    file_id  TEXT NOT NULL REFERENCES files(id),
    PRIMARY KEY (conv_id, seq, position)
) WITHOUT ROWID;
CREATE INDEX message_files_by_file ON message_files (file_id);
-- A profile picture (`POST /api/account/avatar`): the blob of the square image, served to any
-- signed-in user at /api/avatars/{blob} while it is someone's current picture.
ALTER TABLE users ADD COLUMN avatar_image TEXT;
CREATE INDEX users_by_avatar_image ON users (avatar_image) WHERE avatar_image IS NOT NULL;
