-- Notification levels (issue 20) are synced through the server. The per-device `muted` flag of
-- earlier versions becomes level 'nothing' here at once; the flag stays set until the
-- connection has pushed that level to the server (it clears the flag when the server answers),
-- after which the server's levels are the truth. Do not disturb is kept in `meta` ('dnd').
ALTER TABLE conversations ADD COLUMN level TEXT NOT NULL DEFAULT 'all'
    CHECK (level IN ('all', 'mentions', 'nothing'));
UPDATE conversations SET level = 'nothing' WHERE muted = 1;
