-- Traffic events of version 2 store their payload with one-letter keys and leave out what says
-- nothing (README, "The ledger": `action` continue, `bytesOverage` 0, absent options); version 1
-- rows spell every key out. These read a field of either version, so that the service's queries
-- and finance's read both alike: `SELECT sum(traffic_bytes(payload)) FROM events WHERE event_type
-- = 'TrafficConsumed'`. Plain SQL expressions, which PostgreSQL inlines into the query (no call per
-- row, and no `SET search_path`, which would prevent it); `payload` of a traffic event only.
CREATE FUNCTION traffic_bytes(payload json) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(payload->>'b', payload->>'bytes')::bigint
$$;
CREATE FUNCTION traffic_task_id(payload json) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(payload->>'t', payload->>'taskId')
$$;
CREATE FUNCTION traffic_bytes_overage(payload json) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(payload->>'o', payload->>'bytesOverage', '0')::bigint
$$;
CREATE FUNCTION traffic_bytes_remaining(payload json) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(payload->>'l', payload->>'bytesRemaining')::bigint
$$;
CREATE FUNCTION traffic_report_id(payload json) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(payload->>'r', payload->>'reportId')
$$;
-- The answer the report was given: 'continue' or 'stop'.
CREATE FUNCTION traffic_action(payload json) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(payload->>'a', payload->>'action', 'continue')
$$;
