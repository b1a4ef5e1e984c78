-- A ledger that grows for years: `events` range-partitioned by `recorded_at`, one partition per
-- finance month (China Standard Time, UTC+8, no daylight saving), and the uniqueness that global
-- unique indexes gave moved to tables that need no partition key (README, "Partitions").
--
-- Why by recorded_at: appends take their time under the ledger head lock as the later of their
-- clock and the previous append's (schema/0008), so time never goes backwards along positions and
-- a month is one contiguous stretch of the chain. A month's bounds in time are known before its
-- first event, so its partition is made ahead, outside the append path; bounds in positions would
-- only be known at the month's first append, which would have to change the previous partition's
-- bound (a DETACH under an exclusive lock) while holding the ledger head.

-- One row per stream: its last version and hash. Every append reads its streams' heads here (the
-- previous hash of each stream's chain, without an index walk over a partitioned table) and moves
-- them in the same transaction, under the ledger head lock, only from the version it read: two
-- appends can never give one stream the same version, whichever months their events land in.
CREATE TABLE stream_heads (
    stream_id text   PRIMARY KEY,
    version   bigint NOT NULL CHECK (version >= 1),
    hash      bytea  NOT NULL CHECK (octet_length(hash) = 32)
);
INSERT INTO stream_heads (stream_id, version, hash)
SELECT DISTINCT ON (stream_id) stream_id, version, hash
  FROM events ORDER BY stream_id, version DESC;
-- A head is moved, never removed: a removed head would let a stream start again at version 1.
CREATE TRIGGER stream_heads_kept
    BEFORE DELETE ON stream_heads
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER stream_heads_no_truncate
    BEFORE TRUNCATE ON stream_heads
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

-- One answer per idempotency key. `key` is the first 16 bytes of SHA-256 over the key's UTF-8
-- text (a fixed-width key: 16 bytes in the row and the index, where the text took 30 to 100), and
-- `position` the event that answered it. The event itself keeps the key's text (its hash covers
-- it). Traffic keys are removed once their event is older than the retention window (README,
-- "Idempotency keys and their retention"); every other key is kept for ever.
CREATE TABLE idempotency_keys (
    key      uuid   PRIMARY KEY,
    position bigint NOT NULL CHECK (position >= 1)
);
INSERT INTO idempotency_keys (key, position)
SELECT encode(substring(sha256(convert_to(idempotency_key, 'UTF8')) FROM 1 FOR 16), 'hex')::uuid,
       position
  FROM events WHERE idempotency_key IS NOT NULL;
-- A key names its answer for as long as it is kept: never another one.
CREATE TRIGGER idempotency_keys_fixed
    BEFORE UPDATE ON idempotency_keys
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();

-- How far the removal of expired traffic keys has gone: every traffic event up to `position` has
-- had its key removed.
CREATE TABLE idempotency_expiry (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    position  bigint  NOT NULL CHECK (position >= 0)
);
INSERT INTO idempotency_expiry (singleton, position) VALUES (true, 0);
CREATE TRIGGER idempotency_expiry_kept
    BEFORE DELETE ON idempotency_expiry
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();

-- The start of the finance month (UTC+8) that `at` falls in.
CREATE FUNCTION ledger_month_start(at timestamptz) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT (date_trunc('month', (at AT TIME ZONE 'UTC') + interval '8 hours')
            - interval '8 hours') AT TIME ZONE 'UTC'
$$;

-- The partitioned ledger, empty, under `name`. Column order puts the fixed-width columns first
-- (no alignment padding between them); `prev_hash` keeps its place in the hash encodings.
CREATE FUNCTION ledger_create_partitioned_events(name text) RETURNS void
    LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
BEGIN
    EXECUTE format(
        'CREATE TABLE %I (
             position        bigint      NOT NULL CHECK (position >= 1),
             version         bigint      NOT NULL CHECK (version >= 1),
             recorded_at     timestamptz NOT NULL,
             event_version   integer     NOT NULL CHECK (event_version >= 1),
             hash_version    smallint    NOT NULL DEFAULT 3 CHECK (hash_version IN (1, 2, 3)),
             stream_id       text        NOT NULL,
             event_type      text        NOT NULL,
             payload         json        NOT NULL,
             metadata        json        NOT NULL,
             idempotency_key text,
             prev_hash       bytea       NOT NULL CHECK (octet_length(prev_hash) = 32),
             hash            bytea       NOT NULL CHECK (octet_length(hash) = 32),
             ledger_hash     bytea       CHECK (octet_length(ledger_hash) = 32)
         ) PARTITION BY RANGE (recorded_at)', name);
    -- Row triggers are cloned onto every partition; the TRUNCATE trigger is not (PostgreSQL 15),
    -- so ledger_make_partition gives each partition its own.
    EXECUTE format('CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON %I
                    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()', name);
    EXECUTE format('CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON %I
                    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()', name);
    -- The indexes of schema/0005, 0006, 0013 and 0018, on every partition.
    EXECUTE format('CREATE INDEX %I ON %I USING brin (recorded_at)', name || '_recorded_at', name);
    EXECUTE format('CREATE INDEX %I ON %I (stream_id, position)
                    WHERE event_type IN (''OrderCreated'', ''OrderUpgraded'')',
                   name || '_sku_choices', name);
    EXECUTE format('CREATE INDEX %I ON %I (stream_id, position)
                    WHERE event_type IN (''OrderExpiryHeld'', ''OrderExpired'', ''OrderReleased'')',
                   name || '_expiry_notices', name);
    EXECUTE format('CREATE INDEX %I ON %I (position) WHERE event_type = ''OrderExpiryHeld''',
                   name || '_expiry_held', name);
    EXECUTE format('CREATE INDEX %I ON %I (stream_id, position)
                    WHERE event_type = ''OrderCredentialRotated''',
                   name || '_credential_rotations', name);
END
$$;

-- The partition of `parent` for the finance month starting at `month_start`, made unless it
-- exists: named events_pYYYY_MM, bounded by a CHECK as well (so that attaching scans nothing,
-- and a detached partition still says which month it holds), with its own unique indexes on
-- position and on (stream_id, version), its own triggers refusing UPDATE, DELETE and TRUNCATE
-- (PostgreSQL 15 clones no TRUNCATE trigger, and a detached partition loses the cloned row
-- triggers), and the roles' privileges (README, "Database roles"). Attaching takes only a SHARE
-- UPDATE EXCLUSIVE lock on the parent, which appends and reads do not wait for.
CREATE FUNCTION ledger_make_partition(parent text, month_start timestamptz) RETURNS text
    LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
DECLARE
    month_end constant timestamptz := ledger_month_start(month_start + interval '40 days');
    name constant text := 'events_p'
        || to_char((month_start AT TIME ZONE 'UTC') + interval '8 hours', 'YYYY_MM');
BEGIN
    IF month_start <> ledger_month_start(month_start) THEN
        RAISE EXCEPTION '% is not the start of a finance month', month_start;
    END IF;
    IF to_regclass(name) IS NOT NULL THEN
        RETURN name;
    END IF;
    EXECUTE format(
        'CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE
                          INCLUDING COMPRESSION,
                          CONSTRAINT %I CHECK (recorded_at >= %L AND recorded_at < %L))',
        name, parent, name || '_month', month_start, month_end);
    EXECUTE format('CREATE UNIQUE INDEX %I ON %I (position)', name || '_position', name);
    EXECUTE format('CREATE UNIQUE INDEX %I ON %I (stream_id, version)',
                   name || '_stream_version', name);
    EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON %I
                    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()',
                   name || '_append_only', name);
    EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I
                    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()',
                   name || '_no_truncate', name);
    EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                   parent, name, month_start, month_end);
    EXECUTE format('REVOKE ALL ON %I FROM dts_ledger_service, dts_ledger_reader;
                    GRANT SELECT, INSERT ON %I TO dts_ledger_service;
                    GRANT SELECT ON %I TO dts_ledger_reader', name, name, name);
    RETURN name;
END
$$;
REVOKE ALL ON FUNCTION ledger_create_partitioned_events(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ledger_make_partition(text, timestamptz) FROM PUBLIC;

-- The end of the months the ledger has partitions for, contiguously from the head's month
-- ('infinity' while `events` is not partitioned). Every append reads it with its positions, under
-- the ledger head lock, and makes the partitions it needs when its time is past it.
ALTER TABLE ledger_head ADD COLUMN partitions_until timestamptz NOT NULL DEFAULT 'infinity';

-- What the service calls (it may not run DDL itself): the partitions of the month `at` falls in
-- and of the `months_ahead` months after it, made where missing; returns the end of the last.
-- Runs as the owner (SECURITY DEFINER), makes nothing but those months' partitions, and only
-- for a time no later than a day past the database's clock or the ledger's head. It locks the
-- ledger head first (appends call it holding that lock already), which serialises every caller:
-- several processes at the turn of a month make each partition once.
CREATE FUNCTION ledger_ensure_partitions(at timestamptz, months_ahead integer) RETURNS timestamptz
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    month timestamptz := ledger_month_start(at);
    head_at timestamptz;
BEGIN
    IF (SELECT relkind FROM pg_class WHERE oid = 'public.events'::regclass) <> 'p' THEN
        -- A ledger not moved to partitions yet (`dts-ledger migrate-partitions`).
        RETURN 'infinity';
    END IF;
    IF months_ahead NOT BETWEEN 0 AND 12 THEN
        RAISE EXCEPTION 'months_ahead % is not between 0 and 12', months_ahead;
    END IF;
    SELECT recorded_at INTO head_at FROM ledger_head FOR UPDATE;
    IF at > greatest(now(), head_at) + interval '1 day' THEN
        RAISE EXCEPTION 'no partitions are made for % ahead of the clock', at;
    END IF;
    FOR i IN 0 .. months_ahead LOOP
        PERFORM ledger_make_partition('events', month);
        month := ledger_month_start(month + interval '40 days');
    END LOOP;
    -- Months made from one that the coverage already reaches extend it.
    UPDATE ledger_head SET partitions_until = month
     WHERE month > partitions_until
       AND ledger_month_start(at) <= greatest(ledger_month_start(head_at), partitions_until);
    RETURN month;
END
$$;
REVOKE ALL ON FUNCTION ledger_ensure_partitions(timestamptz, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledger_ensure_partitions(timestamptz, integer) TO dts_ledger_service;

-- Moves the partitioned table made under `name` into the place of `events` (dropping the old
-- one, whose rows the caller has copied and checked), with the indexes' and constraints' names.
CREATE FUNCTION ledger_swap_partitioned_events(name text) RETURNS void
    LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
DECLARE
    index record;
BEGIN
    DROP TABLE events;
    EXECUTE format('ALTER TABLE %I RENAME TO events', name);
    FOR index IN SELECT c.relname::text AS relname FROM pg_index i
                   JOIN pg_class c ON c.oid = i.indexrelid
                  WHERE i.indrelid = 'public.events'::regclass LOOP
        EXECUTE format('ALTER INDEX %I RENAME TO %I', index.relname,
                       'events' || substring(index.relname FROM length(name) + 1));
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION ledger_swap_partitioned_events(text) FROM PUBLIC;

-- A new ledger (nothing recorded yet) is partitioned here, with partitions for this month and
-- the next three; a ledger holding events moves with `dts-ledger migrate-partitions`, whose cost
-- grows with it (README, "Moving a ledger to partitions").
DO $$
DECLARE
    month timestamptz := ledger_month_start(now());
BEGIN
    IF NOT EXISTS (SELECT 1 FROM events) THEN
        PERFORM ledger_create_partitioned_events('events_partitioned');
        PERFORM ledger_swap_partitioned_events('events_partitioned');
        FOR i IN 0 .. 3 LOOP
            PERFORM ledger_make_partition('events', month);
            month := ledger_month_start(month + interval '40 days');
        END LOOP;
        UPDATE ledger_head SET partitions_until = month;
    END IF;
END
$$;
