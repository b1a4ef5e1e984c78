-- Signed checkpoints (invariant I9): a key kept outside the database vouches for the ledger-wide
-- hash at a position. Appended, never updated or deleted, like the ledger; copies go to the
-- webhook receivers so that they also live outside the database.
--
-- position     the ledger head when it was signed (0: the empty ledger).
-- ledger_hash  the ledger-wide hash at that position.
-- signed_at    when it was signed (microseconds).
-- key_id       the first 8 bytes of SHA-256(public key), hex: which key signed.
-- signature    Ed25519 over the canonical checkpoint bytes (README, "Signed checkpoints").
CREATE TABLE checkpoints (
    position    bigint      NOT NULL CHECK (position >= 0),
    ledger_hash bytea       NOT NULL CHECK (octet_length(ledger_hash) = 32),
    signed_at   timestamptz NOT NULL,
    key_id      text        NOT NULL CHECK (key_id ~ '^[0-9a-f]{16}$'),
    signature   bytea       NOT NULL CHECK (octet_length(signature) = 64),
    PRIMARY KEY (position, key_id, signed_at)
);

CREATE TRIGGER checkpoints_append_only
    BEFORE UPDATE OR DELETE ON checkpoints
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER checkpoints_no_truncate
    BEFORE TRUNCATE ON checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

-- Projection snapshots: the packages and tasks folded from the ledger up to a checkpoint,
-- stored with the checkpoint's position and ledger hash, so that `replay --since-snapshot` folds
-- only what follows. Written by `dts-ledger checkpoint --snapshot`; append-only.
CREATE TABLE snapshots (
    position    bigint      PRIMARY KEY CHECK (position >= 0),
    ledger_hash bytea       NOT NULL CHECK (octet_length(ledger_hash) = 32),
    taken_at    timestamptz NOT NULL
);
CREATE TABLE snapshot_packages (
    snapshot_position bigint NOT NULL REFERENCES snapshots (position),
    LIKE packages
);
CREATE TABLE snapshot_tasks (
    snapshot_position bigint NOT NULL REFERENCES snapshots (position),
    LIKE tasks
);
CREATE INDEX snapshot_packages_position ON snapshot_packages (snapshot_position);
CREATE INDEX snapshot_tasks_position ON snapshot_tasks (snapshot_position);

CREATE TRIGGER snapshots_append_only
    BEFORE UPDATE OR DELETE ON snapshots
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER snapshots_no_truncate
    BEFORE TRUNCATE ON snapshots
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER snapshot_packages_append_only
    BEFORE UPDATE OR DELETE ON snapshot_packages
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER snapshot_packages_no_truncate
    BEFORE TRUNCATE ON snapshot_packages
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER snapshot_tasks_append_only
    BEFORE UPDATE OR DELETE ON snapshot_tasks
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER snapshot_tasks_no_truncate
    BEFORE TRUNCATE ON snapshot_tasks
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
