-- Webhook delivery in ledger order, with dead letters, leases instead of row locks, and pruning.
--
-- `subject` is the event's stream: entries of one subject are delivered one at a time, oldest
-- first, and an undelivered entry (pending or dead) holds back every later one of its subject.
-- A dispatcher claims an entry by setting `locked_until` in a statement of its own and delivers
-- after that commit, so no row lock or transaction is held during an HTTP call; a claim whose
-- process died runs out and the entry is taken again. `first_attempt_at` starts the age bound;
-- `dead_at` marks an entry given up on, until an operator retries it.
ALTER TABLE outbox
    ADD COLUMN subject          text,
    ADD COLUMN first_attempt_at timestamptz,
    ADD COLUMN locked_until     timestamptz,
    ADD COLUMN dead_at          timestamptz;

UPDATE outbox o SET subject = e.stream_id FROM events e WHERE e.position = o.position;
ALTER TABLE outbox ALTER COLUMN subject SET NOT NULL;

-- Claims and listings walk the undelivered entries in position order, never the delivered ones
-- kept for the retention period.
DROP INDEX outbox_due;
CREATE INDEX outbox_undelivered ON outbox (position) WHERE delivered_at IS NULL;
-- "Is there an earlier undelivered entry of this subject?", asked for every candidate head.
CREATE INDEX outbox_subject ON outbox (subject, position) WHERE delivered_at IS NULL;
-- Pruning finds delivered entries past the retention by age.
CREATE INDEX outbox_delivered ON outbox (delivered_at) WHERE delivered_at IS NOT NULL;
