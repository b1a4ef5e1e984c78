-- Order credentials can be rotated (`OrderCredentialRotated`): an authCode is derived from the
-- server's secret, the package and its credential's generation, which is the highest generation
-- among the package's rotations. A package rotates its credential a handful of times at most
-- among its traffic, so a partial index finds them without reading the stream.
CREATE INDEX events_credential_rotations ON events (stream_id, position)
    WHERE event_type = 'OrderCredentialRotated';

-- The package whose credential (or login-free link) opened a console session: a rotation of
-- that credential ends the sessions it opened, in every process. Sessions opened before this
-- column existed name no package; they end by their own lifetime.
ALTER TABLE console_sessions ADD COLUMN signed_in_with text;
CREATE INDEX console_sessions_by_package ON console_sessions (signed_in_with)
    WHERE signed_in_with IS NOT NULL;
