-- The customer console: what several `serve` processes must agree on about sign-ins.

-- Console sessions. Only a hash of the session id is kept, so a copy of this table opens nothing.
CREATE TABLE console_sessions (
    id_hash    bytea       PRIMARY KEY,
    jd_pin     text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX console_sessions_expiring ON console_sessions (expires_at);

-- The nonces of sign-in tickets already exchanged: a ticket opens one session, once.
CREATE TABLE console_tickets_used (
    nonce      text        PRIMARY KEY,
    expires_at timestamptz NOT NULL
);
CREATE INDEX console_tickets_used_expiring ON console_tickets_used (expires_at);

-- Failed credential sign-ins, counted per client address and per instance in a fixed window.
CREATE TABLE console_login_failures (
    key               text        PRIMARY KEY,
    window_started_at timestamptz NOT NULL,
    failures          integer     NOT NULL CHECK (failures >= 0)
);
CREATE INDEX console_login_failures_by_window ON console_login_failures (window_started_at);

-- A package's statement lists its grants (purchase, renewals, upgrades, expansions) over its
-- whole life. Grants are a handful per package among its traffic events, so a partial index finds
-- them without reading the stream; traffic appends do not match it and pay nothing for it.
CREATE INDEX events_grants_by_stream ON events (stream_id, version)
    WHERE event_type IN ('OrderCreated', 'OrderRenewed', 'OrderUpgraded', 'OrderDilated');
