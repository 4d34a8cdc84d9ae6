-- Each node reads the admins every 2 s (`access_sql::ADMINS`, the operator's grants and
-- revocations reach open sockets that way). A partial index holds only the admins' rows, so
-- that read costs the handful of admins, not a scan of every user.
CREATE INDEX users_admins ON users (id) WHERE admin;
