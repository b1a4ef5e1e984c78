-- Closed months archived to files and dropped from `events` (invariant I12; README "Archives of
-- closed months"). Written only by `dts-ledger archive --drop`, as the owner, in the transaction
-- that drops the month: what was dropped, the archive that holds it (its file name and SHA-256)
-- and where the chain stood, so that audits know which archive they need and the incremental
-- ones (`verify --since-checkpoint`, `replay --since-snapshot`) need none. Append-only.
--
-- month              YYYY-MM, cut in China Standard Time (the finance month).
-- first_position …   the month's positions, first to last.
-- ledger_hash_before the ledger-wide hash before its first event (32 zero bytes before position 1).
-- ledger_hash_last   the ledger-wide hash at its last event.
-- last_recorded_at   the time of its last event; last_hash_version its hash encoding.
-- file_name          the archive's file name; file_sha256 SHA-256 of the whole file.
-- checkpoint         the signed checkpoint line the archive carries at its last event.
CREATE TABLE archived_months (
    month              text        PRIMARY KEY CHECK (month ~ '^[0-9]{4}-[0-9]{2}$'),
    first_position     bigint      NOT NULL UNIQUE CHECK (first_position >= 1),
    last_position      bigint      NOT NULL UNIQUE CHECK (last_position >= first_position),
    events             bigint      NOT NULL CHECK (events = last_position - first_position + 1),
    ledger_hash_before bytea       NOT NULL CHECK (octet_length(ledger_hash_before) = 32),
    ledger_hash_last   bytea       NOT NULL CHECK (octet_length(ledger_hash_last) = 32),
    last_recorded_at   timestamptz NOT NULL,
    last_hash_version  smallint    NOT NULL,
    file_name          text        NOT NULL CHECK (file_name ~ '^ledger-[0-9]{4}-[0-9]{2}\.jsonl\.zst$'),
    file_sha256        bytea       NOT NULL CHECK (octet_length(file_sha256) = 32),
    checkpoint         text        NOT NULL,
    dropped_at         timestamptz NOT NULL DEFAULT now(),
    dropped_by         text        NOT NULL DEFAULT current_user
);

-- Each stream's head as of a dropped month's last event, for the streams whose head then was in
-- that month: an audit that starts after it (from a checkpoint) links the stream's next event to
-- this hash without the archive.
CREATE TABLE archived_stream_heads (
    month     text   NOT NULL REFERENCES archived_months (month),
    stream_id text   NOT NULL,
    version   bigint NOT NULL CHECK (version >= 1),
    hash      bytea  NOT NULL CHECK (octet_length(hash) = 32),
    position  bigint NOT NULL,
    PRIMARY KEY (stream_id, version)
);

CREATE TRIGGER archived_months_append_only
    BEFORE UPDATE OR DELETE ON archived_months
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER archived_months_no_truncate
    BEFORE TRUNCATE ON archived_months
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER archived_stream_heads_append_only
    BEFORE UPDATE OR DELETE ON archived_stream_heads
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER archived_stream_heads_no_truncate
    BEFORE TRUNCATE ON archived_stream_heads
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
