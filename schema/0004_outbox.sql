-- Webhook outbox: ledger positions of events announced to the DTS control plane (stops,
-- resumptions, low-balance warnings, expiries, releases). Rows are written in the same
-- transaction as their events, so nothing announced is ever lost or announced without being
-- recorded; the dispatcher delivers them at least once and records each attempt.
CREATE TABLE outbox (
    position        bigint      PRIMARY KEY,
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    last_error      text
);

CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE delivered_at IS NULL;

-- Projection rows are updated on every batch of traffic; free space on their pages lets those
-- updates stay on the page (HOT) without touching the indexes.
ALTER TABLE packages SET (fillfactor = 70);
ALTER TABLE tasks SET (fillfactor = 70);
