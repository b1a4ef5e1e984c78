-- Rows appended from now on store no `prev_hash` (README, "Bytes per event"): it is the `hash` of
-- the stream's event before (32 zero bytes for a stream's first), which the ledger holds already,
-- and the row's own hash covers it as before. A verifier computes it along the chain, and every
-- reader that shows it derives it; rows written before keep theirs, and a verifier still compares
-- a stored one with the chain. Dropping NOT NULL changes no row and takes a moment under the
-- table's lock; every partition, and every one made later, follows its parent.
ALTER TABLE events ALTER COLUMN prev_hash DROP NOT NULL;

-- The empty partitioned ledger `migrate-partitions` copies an older ledger into, with the same
-- column.
CREATE OR REPLACE FUNCTION ledger_create_partitioned_events_v4(name text) RETURNS void
    LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
BEGIN
    PERFORM ledger_create_partitioned_events(name);
    EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', name, name || '_hash_version_check');
    EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I CHECK (hash_version BETWEEN 1 AND 4),
                                   ALTER COLUMN hash_version SET DEFAULT 4,
                                   ALTER COLUMN metadata DROP NOT NULL,
                                   ALTER COLUMN prev_hash DROP NOT NULL,
                                   ADD CONSTRAINT %I CHECK (metadata IS NOT NULL OR hash_version >= 4)',
                   name, 'events_hash_version_check', 'events_metadata_check');
END
$$;
REVOKE ALL ON FUNCTION ledger_create_partitioned_events_v4(text) FROM PUBLIC;
