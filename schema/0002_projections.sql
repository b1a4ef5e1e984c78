-- Projections: the ledger folded into current balances and task states. Written in the same
-- transaction as the events they follow from, by the same fold `replay` uses (invariant I4).

CREATE TABLE packages (
    instance_id     text        PRIMARY KEY,
    jd_pin          text        NOT NULL,
    sku_id          text        NOT NULL,
    sku_bytes       bigint      NOT NULL CHECK (sku_bytes >= 0),
    unit_price      numeric     NOT NULL,
    units           integer     NOT NULL CHECK (units >= 1),
    status          text        NOT NULL CHECK (status IN ('active', 'expired', 'released')),
    bytes_granted   bigint      NOT NULL CHECK (bytes_granted >= 0),
    bytes_consumed  bigint      NOT NULL CHECK (bytes_consumed >= 0),
    bytes_forfeited bigint      NOT NULL CHECK (bytes_forfeited >= 0),
    bytes_remaining bigint      NOT NULL CHECK (bytes_remaining >= 0),
    bytes_overage   bigint      NOT NULL CHECK (bytes_overage >= 0),
    expires_at      timestamptz,
    warned_percents smallint[]  NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    -- Invariant I3, enforced by the database as well as by the fold.
    CONSTRAINT packages_conservation CHECK (
        bytes_granted::numeric - bytes_consumed - bytes_forfeited
            = bytes_remaining::numeric - bytes_overage
        AND (bytes_remaining = 0 OR bytes_overage = 0)
    )
);

CREATE INDEX packages_by_jd_pin ON packages (jd_pin);
-- The expiry sweeper looks for active packages whose time has come.
CREATE INDEX packages_expiring ON packages (expires_at) WHERE status = 'active';

CREATE TABLE tasks (
    task_id        text        PRIMARY KEY,
    instance_id    text        NOT NULL REFERENCES packages (instance_id),
    state          text        NOT NULL CHECK (state IN ('running', 'stopped', 'destroyed')),
    stop_reason    text        CHECK ((state = 'stopped') = (stop_reason IS NOT NULL)),
    bytes_consumed bigint      NOT NULL CHECK (bytes_consumed >= 0),
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    destroyed_at   timestamptz
);

CREATE INDEX tasks_by_instance ON tasks (instance_id);
