-- Each month's index for reading a stream, on a fixed-width key (README, "Bytes per event"):
-- `(ledger_stream_key(stream_id), version)` instead of `(stream_id, version)`. Its entries are 24
-- bytes where the text's were 32, and, being fixed-width and narrow, they let PostgreSQL split a
-- full page after the newest entry of a stream that appends at its end, which leaves the page
-- behind full (nbtree's "split after new item"), where a text key splits it in half and that half
-- stays half empty, as every stream appends at its own place. A key is not a stream: two streams
-- may share one, so every query names the stream as well (`ledger_stream_key(stream_id) =
-- ledger_stream_key($1) AND stream_id = $1`). One version per stream was never this index's to
-- keep: `stream_heads` keeps it, checked and moved by every append (schema/0019); the index is
-- not unique, so two streams sharing a key never stop each other.
CREATE FUNCTION ledger_stream_key(stream_id text) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN hashtextextended(stream_id, 0);

CREATE OR REPLACE FUNCTION ledger_make_partition(parent text, month_start timestamptz) RETURNS text
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
    EXECUTE format('CREATE INDEX %I ON %I (ledger_stream_key(stream_id), version)',
                   name || '_stream_key', name);
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
REVOKE ALL ON FUNCTION ledger_make_partition(text, timestamptz) FROM PUBLIC;

-- The months made ahead and still empty take the new index now. A month holding events keeps
-- its `(stream_id, version)` index (building another on it would hold appends to it for as long
-- as that takes); the queries name both the key and the stream, so each month is read through
-- whichever index it has.
DO $$
DECLARE
    month record;
    empty boolean;
BEGIN
    FOR month IN SELECT c.relname::text AS name FROM pg_inherits i
                   JOIN pg_class c ON c.oid = i.inhrelid
                  WHERE i.inhparent = to_regclass('public.events')
                    AND to_regclass('public.' || c.relname || '_stream_version') IS NOT NULL LOOP
        EXECUTE format('SELECT NOT EXISTS (SELECT 1 FROM %I)', month.name) INTO empty;
        IF empty THEN
            EXECUTE format('DROP INDEX %I', month.name || '_stream_version');
            EXECUTE format('CREATE INDEX %I ON %I (ledger_stream_key(stream_id), version)',
                           month.name || '_stream_key', month.name);
        END IF;
    END LOOP;
END
$$;
