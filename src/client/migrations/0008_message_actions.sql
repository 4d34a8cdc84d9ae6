-- Message actions (issue 18). Edits, deletes and reactions are events with their own seq: they
-- are rows here too (`action` set, `text` empty), so the resume's gap detection counts them,
-- but pages, previews, search and unread counts skip them. What they do is applied to their
-- target: an edit replaces its text (and search entry) and sets `edited` (server time of the
-- edit) and `edit_seq` (the edit's seq, so an older edit paged in later does not win); a delete
-- empties its text, removes its search entry and sets `deleted` (a tombstone). A reply names
-- the seq it answers in `reply_to`. `mentions_me`: the text mentions this profile's user
-- (names::mentions), for the mention badge; messages stored before this migration count as not.
ALTER TABLE messages ADD COLUMN reply_to INTEGER;
ALTER TABLE messages ADD COLUMN action TEXT;
ALTER TABLE messages ADD COLUMN edited INTEGER;
ALTER TABLE messages ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN edit_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN mentions_me INTEGER NOT NULL DEFAULT 0;

-- Reactions, keyed like the server's (target, sender, emoji): `present` as of the event `seq`
-- that last set it. A row for a target not held yet waits for it.
CREATE TABLE reactions (
    conv    INTEGER NOT NULL,
    target  INTEGER NOT NULL,
    sender  TEXT NOT NULL,
    emoji   TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    present INTEGER NOT NULL,
    PRIMARY KEY (conv, target, sender, emoji)
) WITHOUT ROWID;

-- Outbox entries for replies and actions: `action` is the protocol's Action as JSON.
ALTER TABLE outbox ADD COLUMN reply_to INTEGER;
ALTER TABLE outbox ADD COLUMN action TEXT;
