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
