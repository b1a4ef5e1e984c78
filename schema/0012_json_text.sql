-- events.payload and events.metadata become `json`, which keeps the text byte for byte (`jsonb`
-- keeps a parsed form and writes it back with its own key order and spacing). Appends store the
-- canonical JSON their hash covers, hashed with version 3 (`hash_version` 3), so `verify` hashes
-- the stored text as it is and `replay` parses it once, and PostgreSQL hands the text out without
-- converting it.
--
-- Rows written before keep their hash versions 1 and 2, which cover the canonical JSON of the
-- value: their text is now jsonb's rendering of it, and verification writes it canonically again,
-- as before. Nothing a hash covers changes here.
ALTER TABLE events
    ALTER COLUMN payload TYPE json USING payload::text::json,
    ALTER COLUMN metadata TYPE json USING metadata::text::json,
    DROP CONSTRAINT events_hash_version_check,
    ADD CONSTRAINT events_hash_version_check CHECK (hash_version IN (1, 2, 3)),
    ALTER COLUMN hash_version SET DEFAULT 3;
