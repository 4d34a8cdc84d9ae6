-- Message actions (issue 18): replies, edits, deletes and reactions are rows of `messages`
-- with their own seq. A reply names the seq it answers (`reply_to`); an action names its
-- `target` seq and its kind ('edit', 'delete', 'react' adds the `emoji` reaction, 'unreact'
-- takes it back). An edit also rewrites the target's text and sets `edited_at`; a delete
-- empties the text of the target and of its edits and sets `deleted_at`.
ALTER TABLE messages ADD COLUMN reply_to BIGINT;
ALTER TABLE messages ADD COLUMN action TEXT CHECK (action IN ('edit', 'delete', 'react', 'unreact'));
ALTER TABLE messages ADD COLUMN target BIGINT;
ALTER TABLE messages ADD COLUMN emoji TEXT;
ALTER TABLE messages ADD COLUMN edited_at BIGINT;
ALTER TABLE messages ADD COLUMN deleted_at BIGINT;
-- Actions are never unread: the unread count subtracts them after the marker.
CREATE INDEX messages_actions ON messages (conv_id, seq) WHERE action IS NOT NULL;
-- A delete finds the edits of its target.
CREATE INDEX messages_edits ON messages (conv_id, target) WHERE action = 'edit';
