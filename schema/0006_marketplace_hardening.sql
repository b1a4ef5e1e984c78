-- Optional order details that fail their checks never refuse an order: they are kept as received
-- (truncated to their limit) and flagged here. `template` is kept only when invalid; a valid one
-- is part of the order's event. Erasure blanks it with the other free-form values.
ALTER TABLE order_details
    ADD COLUMN template       text,
    ADD COLUMN invalid_params text[] NOT NULL DEFAULT '{}';

-- Renewing or expanding a package whose SKU was removed from the catalog reads the SKU's name and
-- currency from the event that put the package on it (its purchase or its last upgrade). A
-- package's stream is mostly traffic: this partial index holds only those few events, so finding
-- the last one costs the same however much traffic the package has, and appends of traffic pay
-- only the predicate.
CREATE INDEX events_sku_choices ON events (stream_id, position)
    WHERE event_type IN ('OrderCreated', 'OrderUpgraded');
