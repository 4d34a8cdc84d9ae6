-- The seq up to which a conversation is known to be held without gaps since the last finished
-- resume. The next `sync` starts from the first gap above it rather than from the highest seq
-- held, so a resume cut short (live messages stored, part of the replay not) is repaired.
ALTER TABLE conversations ADD COLUMN synced_seq INTEGER NOT NULL DEFAULT 0;
