-- Attention settings (issue 20), per user and synced to their devices through `hello` and
-- pushes. A conversation's notification level other than 'all' (no row is 'all'); a level
-- stays when its user leaves the conversation, so rejoining keeps it.
CREATE TABLE notify_levels (
    user_id INTEGER NOT NULL REFERENCES users(id),
    conv_id INTEGER NOT NULL REFERENCES conversations(id),
    level   TEXT NOT NULL CHECK (level IN ('mentions', 'nothing')),
    PRIMARY KEY (user_id, conv_id)
) WITHOUT ROWID;

-- Do not disturb: a row while it is set; `until` in ms since the epoch (UTC), NULL for
-- "until turned off". A row whose time has passed is off (clients and hello treat it so).
CREATE TABLE dnd (
    user_id INTEGER PRIMARY KEY REFERENCES users(id),
    until   INTEGER
);
