-- Unread counts without scanning the unread messages: seq is gapless, so a member has
-- (last_seq - last_read) messages after their marker, less their own, which this index counts
-- by reading only the member's own messages. Before it, each connect counted every unread
-- message row by row: a user 20,000 messages behind cost milliseconds of the read pool, and a
-- reconnect storm of such users took tens of seconds.
CREATE INDEX messages_by_sender ON messages (conv_id, sender_id, seq);
