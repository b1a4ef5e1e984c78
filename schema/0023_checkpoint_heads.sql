-- Each stream's head as the newest checkpoint that saw it move left it (README, "Signed
-- checkpoints"): its version there, that event's hash and position. The service's checkpointer
-- writes them in the transaction that stores the checkpoint, from the check it has just made of
-- every event up to it, so that `verify --since-checkpoint` starts each stream that moved since
-- from one lookup in this small table, instead of a search of every monthly partition's index,
-- which on a ledger larger than memory goes to disk once per stream.
--
-- It is a copy of facts the ledger holds, never one of its own: a row is used only for the exact
-- version the stream's first event after the checkpoint follows, and at or before the checkpoint;
-- a stream without one (a checkpoint made by `dts-ledger checkpoint`, a ledger checked before this
-- table) is looked up in the events as before. A row moves only forward.
CREATE TABLE checkpoint_heads (
    stream_id text   PRIMARY KEY,
    version   bigint NOT NULL CHECK (version >= 1),
    hash      bytea  NOT NULL CHECK (octet_length(hash) = 32),
    position  bigint NOT NULL CHECK (position >= 1)
);
