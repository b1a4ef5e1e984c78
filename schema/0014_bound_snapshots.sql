-- Snapshots bound to the checkpoint that signs them. Until now a snapshot was trusted as stored:
-- no signature covered its rows, and nothing stopped a second row for the same package. Now a
-- checkpoint stored with a snapshot (signature version 2) signs the digest of the snapshot's rows
-- (README, "Signed checkpoints"), and the snapshot is stored under that checkpoint's key.
--
-- Snapshots written before this migration carry no checkpoint key: no signature covers them, so
-- the audits never use them again. They stay as they are (append-only), and so do their rows,
-- which is why the keys below leave rows without a checkpoint key out.

-- NULL: a version 1 checkpoint, which vouches for the ledger hash only.
ALTER TABLE checkpoints
    ADD COLUMN snapshot_digest bytea CHECK (octet_length(snapshot_digest) = 32);

ALTER TABLE snapshot_packages DROP CONSTRAINT snapshot_packages_snapshot_position_fkey;
ALTER TABLE snapshot_tasks DROP CONSTRAINT snapshot_tasks_snapshot_position_fkey;
ALTER TABLE snapshots DROP CONSTRAINT snapshots_pkey;

-- One snapshot per checkpoint, named by the checkpoint's key (position, key_id, signed_at). The
-- checkpoint is appended first, in the same transaction, so no one can store another snapshot
-- under its key before it; a snapshot at a checkpoint that signed none is never read.
-- NULLS NOT DISTINCT keeps the older snapshots one per position, as they were.
ALTER TABLE snapshots
    ADD COLUMN key_id text,
    ADD COLUMN signed_at timestamptz,
    ADD CONSTRAINT snapshots_keyed CHECK ((key_id IS NULL) = (signed_at IS NULL)),
    ADD CONSTRAINT snapshots_checkpoint_key UNIQUE NULLS NOT DISTINCT (position, key_id, signed_at),
    ADD CONSTRAINT snapshots_checkpoint FOREIGN KEY (position, key_id, signed_at)
        REFERENCES checkpoints (position, key_id, signed_at);

-- Each row names its snapshot by the same key, and a snapshot holds one row per package and one
-- per task: a second row for the same id is refused (rows of older snapshots, without a key, are
-- not checked, as NULLs are distinct).
ALTER TABLE snapshot_packages
    ADD COLUMN snapshot_key_id text,
    ADD COLUMN snapshot_signed_at timestamptz,
    ADD CONSTRAINT snapshot_packages_snapshot
        FOREIGN KEY (snapshot_position, snapshot_key_id, snapshot_signed_at)
        REFERENCES snapshots (position, key_id, signed_at);
ALTER TABLE snapshot_tasks
    ADD COLUMN snapshot_key_id text,
    ADD COLUMN snapshot_signed_at timestamptz,
    ADD CONSTRAINT snapshot_tasks_snapshot
        FOREIGN KEY (snapshot_position, snapshot_key_id, snapshot_signed_at)
        REFERENCES snapshots (position, key_id, signed_at);
CREATE UNIQUE INDEX snapshot_packages_one_per_package
    ON snapshot_packages (snapshot_position, snapshot_key_id, snapshot_signed_at, instance_id);
CREATE UNIQUE INDEX snapshot_tasks_one_per_task
    ON snapshot_tasks (snapshot_position, snapshot_key_id, snapshot_signed_at, task_id);
-- The keys above lead with the position: the indexes on it alone are redundant.
DROP INDEX snapshot_packages_position;
DROP INDEX snapshot_tasks_position;
