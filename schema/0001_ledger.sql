-- The ledger: one row per fact, appended, never updated or deleted (invariant I1).
--
-- position     global order; gapless and commit-ordered because every append takes the single
--              ledger_head row lock until it commits (invariant I7).
-- stream_id    the aggregate the fact belongs to: 'package-<instanceId>' or 'task-<taskId>'.
-- version      1, 2, 3 ... within the stream.
-- event_type   a name from the public catalog (OrderCreated, TrafficConsumed, ...).
-- event_version the payload shape version of that type.
-- payload      the fact, self-contained (bytes, prices, ids), camelCase keys.
-- metadata     request id, source and actor of the command that produced it.
-- idempotency_key  set on the event that answers an external input; a retry finds it here.
-- prev_hash    the hash of the previous event of the stream (32 zero bytes for version 1).
-- hash         SHA-256 over prev_hash and the canonical encoding of this row (invariant I6).
CREATE TABLE events (
    position        bigint      PRIMARY KEY CHECK (position >= 1),
    stream_id       text        NOT NULL,
    version         bigint      NOT NULL CHECK (version >= 1),
    event_type      text        NOT NULL,
    event_version   integer     NOT NULL CHECK (event_version >= 1),
    payload         jsonb       NOT NULL,
    metadata        jsonb       NOT NULL,
    recorded_at     timestamptz NOT NULL,
    idempotency_key text        UNIQUE,
    prev_hash       bytea       NOT NULL CHECK (octet_length(prev_hash) = 32),
    hash            bytea       NOT NULL CHECK (octet_length(hash) = 32),
    UNIQUE (stream_id, version)
);

-- The last position handed out. Appending transactions lock this row from the moment they take
-- positions until they commit, so positions become visible in order and without gaps.
CREATE TABLE ledger_head (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    position  bigint  NOT NULL CHECK (position >= 0)
);
INSERT INTO ledger_head (singleton, position) VALUES (true, 0);

CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the ledger is append-only: % on % is refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'LG001';
END
$$;

CREATE TRIGGER events_append_only
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

CREATE FUNCTION ledger_head_forward_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.position < OLD.position THEN
        RAISE EXCEPTION 'ledger_head may only move forward (% -> %)', OLD.position, NEW.position
            USING ERRCODE = 'LG001';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER ledger_head_forward_only
    BEFORE UPDATE ON ledger_head
    FOR EACH ROW EXECUTE FUNCTION ledger_head_forward_only();
CREATE TRIGGER ledger_head_kept
    BEFORE DELETE ON ledger_head
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_head_no_truncate
    BEFORE TRUNCATE ON ledger_head
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
