-- Uploads under way (issue 17). A reservation holds an upload's declared bytes against its
-- uploader's quota from before its body is read until it is recorded in `files` (in the same
-- transaction) or fails, so two concurrent uploads cannot both pass the quota. Once the bytes
-- are hashed it names their blob and thumbnail (`blob`, `thumb_blob`): a sweep of unattached
-- uploads never deletes a blob an upload under way is about to use. A node that died
-- mid-upload leaves its row until the sweep removes it, after the grace period.
CREATE TABLE upload_reservations (
    id          TEXT PRIMARY KEY,
    uploader_id INTEGER NOT NULL REFERENCES users(id),
    size        INTEGER NOT NULL,
    blob        TEXT,
    thumb_blob  TEXT,
    created_at  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX upload_reservations_by_uploader ON upload_reservations (uploader_id);
-- Blobs a sweep found unreferenced, on their way out of the blob store: an upload that needs
-- one of them waits until it is gone (then stores it again). A sweep that died half way is
-- finished by the next one.
CREATE TABLE doomed_blobs (
    blob TEXT PRIMARY KEY
) WITHOUT ROWID;
-- The sweep finds old unattached uploads and asks whether anything still names a blob.
CREATE INDEX files_by_created ON files (created_at);
CREATE INDEX files_by_blob ON files (blob);
CREATE INDEX files_by_thumb_blob ON files (thumb_blob) WHERE thumb_blob IS NOT NULL;
