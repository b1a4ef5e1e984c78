-- The marketplace's current protocol revision names an order by `orderNumber` and deprecates
-- `orderId`; a callback may carry either or both. An order's details are kept under whichever it
-- named: at least one of the two, and one row per package and order.
ALTER TABLE order_details
    DROP CONSTRAINT order_details_pkey,
    ALTER COLUMN order_id DROP NOT NULL,
    ADD COLUMN order_number text,
    ADD CONSTRAINT order_details_names_its_order
        CHECK (order_id IS NOT NULL OR order_number IS NOT NULL);
CREATE UNIQUE INDEX order_details_by_order
    ON order_details (instance_id, coalesce(order_number, ''), coalesce(order_id, ''));

-- Expiry notices held while a package's `expiresAt` was ahead (`OrderExpiryHeld`), and the
-- expiries and releases that settle them. A package's stream is mostly traffic: this partial index
-- holds only those few events, so finding whether a package has a notice still held, and listing
-- every held notice for operators, never reads traffic, and traffic appends pay only the predicate.
CREATE INDEX events_expiry_notices ON events (stream_id, position)
    WHERE event_type IN ('OrderExpiryHeld', 'OrderExpired', 'OrderReleased');
CREATE INDEX events_expiry_held ON events (position) WHERE event_type = 'OrderExpiryHeld';

-- Reconciliation: every marketplace callback the service answered with `instanceId "0"` or
-- `success: false` after its token held, kept until a later call of the same action for the same
-- instance (or `orderBizId`) succeeds, so that operators see a paid order not yet provisioned long
-- before the marketplace gives up retrying it. Not a fact of any account, so not in the ledger:
-- a row is updated as retries arrive, keeps when it was resolved, and is reopened by a later
-- refusal of the same action for the same subject (one row per pair, so the table stays small).
CREATE TABLE marketplace_refusals (
    action        text        NOT NULL,
    -- The `instanceId` (`orderBizId` for createInstance) as received, made printable; '' when
    -- the callback carried none.
    subject       text        NOT NULL,
    reason        text        NOT NULL,
    status        smallint    NOT NULL,
    message       text        NOT NULL,
    first_at      timestamptz NOT NULL,
    last_at       timestamptz NOT NULL,
    calls         bigint      NOT NULL CHECK (calls > 0),
    resolved_at   timestamptz,
    PRIMARY KEY (action, subject)
);
CREATE INDEX marketplace_refusals_unresolved ON marketplace_refusals (first_at)
    WHERE resolved_at IS NULL;
