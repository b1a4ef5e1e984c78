-- The console's sign-ins, made single-use and bounded in time.

-- The `verify` links (login-free sign-in) already used: a signed link signs in once, whichever
-- process it reaches. Only a digest of what the link signs is kept, never its token; a row is
-- kept until its link is refused by its age anyway.
CREATE TABLE console_links_used (
    digest     bytea       PRIMARY KEY,
    expires_at timestamptz NOT NULL
);
CREATE INDEX console_links_used_expiring ON console_links_used (expires_at);

-- A session also ends at an absolute time, `[console] session_max_s` after it opened, however
-- busy it is. Sessions open when this runs end when their sliding expiry does.
ALTER TABLE console_sessions ADD COLUMN ends_at timestamptz;
UPDATE console_sessions SET ends_at = expires_at;
ALTER TABLE console_sessions ALTER COLUMN ends_at SET NOT NULL;
