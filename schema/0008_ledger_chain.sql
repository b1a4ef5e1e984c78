-- Time runs forward along the ledger, and one chain links every event to the one before it in
-- position order (invariant I6).
--
-- ledger_head.recorded_at  the time given to the last append. Appends stamp their events under
--              the head lock with max(their clock, this), so recorded_at never goes backwards in
--              position order, whatever the clocks of several lanes or processes say.
-- ledger_head.ledger_hash  the ledger-wide hash of the last event (32 zero bytes while empty).
-- events.hash_version  which encoding `hash` uses: 1 (rows written before this migration; does
--              not cover idempotency_key) or 2 (covers it). The hash itself starts with a domain
--              tag naming its version, so changing this column only makes the row fail verify.
-- events.ledger_hash  SHA-256(tag ‖ ledger_hash of the previous position ‖ hash); NULL on
--              version 1 rows, for which verify derives it (they were written before it existed).
ALTER TABLE ledger_head
    ADD COLUMN recorded_at timestamptz NOT NULL DEFAULT 'epoch',
    ADD COLUMN ledger_hash bytea NOT NULL DEFAULT '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea
        CHECK (octet_length(ledger_hash) = 32);

-- Existing rows keep version 1 (a column added with a default is not rewritten, so the
-- append-only trigger is not involved); new rows are written as version 2.
ALTER TABLE events
    ADD COLUMN hash_version smallint NOT NULL DEFAULT 1 CHECK (hash_version IN (1, 2)),
    ADD COLUMN ledger_hash bytea CHECK (octet_length(ledger_hash) = 32);
ALTER TABLE events ALTER COLUMN hash_version SET DEFAULT 2;

-- The head starts where the existing ledger ends: its latest time and its ledger-wide hash,
-- chained over the rows already there exactly as verify derives it.
DO $$
DECLARE
    tag   constant bytea := convert_to('dts-ledger/ledger/v1', 'UTF8') || '\x00'::bytea;
    chain bytea := '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
    event record;
BEGIN
    FOR event IN SELECT hash FROM events ORDER BY position LOOP
        chain := sha256(tag || chain || event.hash);
    END LOOP;
    UPDATE ledger_head
       SET ledger_hash = chain,
           recorded_at = coalesce((SELECT max(recorded_at) FROM events), 'epoch');
END
$$;

CREATE OR REPLACE FUNCTION ledger_head_forward_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.position < OLD.position THEN
        RAISE EXCEPTION 'ledger_head may only move forward (% -> %)', OLD.position, NEW.position
            USING ERRCODE = 'LG001';
    END IF;
    IF NEW.recorded_at < OLD.recorded_at THEN
        RAISE EXCEPTION 'ledger_head time may only move forward (% -> %)', OLD.recorded_at,
            NEW.recorded_at USING ERRCODE = 'LG001';
    END IF;
    RETURN NEW;
END
$$;
