-- Conversation flags (issue 19): `private`, a private room (invite only, invisible to
-- non-members); `moderator`, the user may moderate it (created it, or is an admin). Both as the
-- server last described the conversation; 0 until then (and for DMs).
ALTER TABLE conversations ADD COLUMN private INTEGER NOT NULL DEFAULT 0;
ALTER TABLE conversations ADD COLUMN moderator INTEGER NOT NULL DEFAULT 0;
