-- Known devices: a successful sign-in hands the client a device token; a later sign-in of the
-- same user presenting it is exempt from the sign-in limits (see docs/protocol.md, "Sign-in
-- limits"). Only the SHA-256 of a device token is stored, as for session tokens.
CREATE TABLE devices (
    hash       BLOB PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id),
    created_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX devices_by_user ON devices(user_id, created_at);
