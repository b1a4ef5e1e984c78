-- Customer details that arrive with marketplace orders: personal data (mobile, email) and
-- free-form JSON (extraInfo, additionInfo). Kept out of the immutable ledger so they can be erased
-- on request; erasure blanks the values and records when.
CREATE TABLE order_details (
    -- Deferred: the details are written before the package row, in the same transaction.
    instance_id   text        NOT NULL REFERENCES packages (instance_id) DEFERRABLE INITIALLY DEFERRED,
    order_id      text        NOT NULL,
    mobile        text,
    email         text,
    extra_info    text,
    addition_info text,
    recorded_at   timestamptz NOT NULL,
    erased_at     timestamptz,
    PRIMARY KEY (instance_id, order_id)
);
