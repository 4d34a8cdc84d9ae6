-- Attachments (issue 17). `messages.attachments`: the files a message carries, the protocol's
-- Attachment records as a JSON array in the order sent; NULL when none (and for a deleted
-- message). `users.avatar_image`: the id of the user's profile picture, NULL when none.
-- `outbox.files`: a message's files still to send, a JSON array of {"path", "attachment"}: the
-- local path chosen, and the server's record once uploaded (so an upload is never repeated
-- after a restart); NULL for an entry without files.
ALTER TABLE messages ADD COLUMN attachments TEXT;
ALTER TABLE users ADD COLUMN avatar_image TEXT;
ALTER TABLE outbox ADD COLUMN files TEXT;
