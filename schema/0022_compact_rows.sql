-- Hash version 4 (README, "The hash encodings, byte by byte" and "Bytes per event"): rows store no
-- idempotency key (the event catalog derives it from the type and payload, which the hash covers),
-- their ledger-wide hash only on the last event of each append, and their metadata only where it
-- differs from the event before in the same append (the first event of an append always stores
-- it; a NULL is the metadata of the nearest earlier event storing one). Nothing stored changes; the
-- check on `hash_version` admits 4, added NOT VALID: the rows written before hold 1 to 3, and
-- validating them would read the whole ledger under a lock. Every new partition gets the check
-- from its parent (ledger_make_partition copies it) and so does a ledger moved by
-- `migrate-partitions`.
DO $$
DECLARE
    found record;
BEGIN
    FOR found IN SELECT conname::text AS name FROM pg_constraint
                  WHERE conrelid = 'public.events'::regclass AND contype = 'c'
                    AND pg_get_constraintdef(oid) LIKE '%hash_version%' LOOP
        EXECUTE format('ALTER TABLE events DROP CONSTRAINT %I', found.name);
    END LOOP;
END
$$;
ALTER TABLE events
    ADD CONSTRAINT events_hash_version_check CHECK (hash_version BETWEEN 1 AND 4) NOT VALID,
    ALTER COLUMN hash_version SET DEFAULT 4,
    ALTER COLUMN metadata DROP NOT NULL,
    ADD CONSTRAINT events_metadata_check CHECK (metadata IS NOT NULL OR hash_version >= 4) NOT VALID;

-- The empty partitioned ledger `migrate-partitions` copies an older ledger into, with the same
-- check.
CREATE OR REPLACE FUNCTION ledger_create_partitioned_events_v4(name text) RETURNS void
    LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
BEGIN
    PERFORM ledger_create_partitioned_events(name);
    EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', name, name || '_hash_version_check');
    EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I CHECK (hash_version BETWEEN 1 AND 4),
                                   ALTER COLUMN hash_version SET DEFAULT 4,
                                   ALTER COLUMN metadata DROP NOT NULL,
                                   ADD CONSTRAINT %I CHECK (metadata IS NOT NULL OR hash_version >= 4)',
                   name, 'events_hash_version_check', 'events_metadata_check');
END
$$;
REVOKE ALL ON FUNCTION ledger_create_partitioned_events_v4(text) FROM PUBLIC;
