-- Finance cuts the ledger by time (monthly reports, exports up to a date). Appends keep
-- recorded_at in step with position, which is what a BRIN index needs: a few pages for the whole
-- ledger, nearly free to maintain on the hot path.
CREATE INDEX events_recorded_at ON events USING brin (recorded_at);
