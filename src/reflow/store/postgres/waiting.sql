-- Waiting executions (a `delay` block suspended them): no lease owner, their wake time in
-- lease_expires, on ix_executions_waiting (migration 0016). Queued again when due.

-- name: wake_waiting
-- The due ones, soonest first, at most $2 ($1 is now); SKIP LOCKED so two processes'
-- wake jobs take different rows. Workers are told in the same transaction.
WITH due AS (
    SELECT id FROM executions WHERE status = 'waiting' AND lease_expires <= $1
    ORDER BY lease_expires LIMIT $2
    FOR UPDATE SKIP LOCKED
), woken AS (
    UPDATE executions AS e SET status = 'queued', lease_expires = NULL
    FROM due WHERE e.id = due.id AND e.status = 'waiting'
    RETURNING e.id
)
SELECT count(*) AS woken, CASE WHEN count(*) > 0
    THEN pg_notify('reflow_queued', '') END AS hint FROM woken;

-- name: next_wake
SELECT min(lease_expires) FROM executions WHERE status = 'waiting';

-- name: waiting_count
SELECT count(*) FROM executions WHERE status = 'waiting';

-- name: cancel_waiting
-- A waiting execution is cancelled at once: nothing runs it until it is due.
WITH cancelled AS (
    UPDATE executions SET status = 'cancelled', stopped_at = $1, error = $2,
        lease_owner = NULL, lease_expires = NULL
    WHERE team_id = $3 AND id = $4 AND status = 'waiting'
    RETURNING id
)
SELECT pg_notify('reflow_finished', id) FROM cancelled;
