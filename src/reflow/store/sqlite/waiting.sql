-- Waiting executions (a `delay` block suspended them): no lease owner, their wake time in
-- lease_expires, on ix_executions_waiting (migration 0016). Queued again when due.

-- name: wake_waiting
-- The due ones, soonest first, at most ?2; ?1 is now.
UPDATE executions SET status = 'queued', lease_expires = NULL
WHERE id IN (SELECT id FROM executions INDEXED BY ix_executions_waiting
             WHERE status = 'waiting' AND lease_expires <= ?1
             ORDER BY lease_expires LIMIT ?2);

-- name: next_wake
SELECT min(lease_expires) FROM executions INDEXED BY ix_executions_waiting
WHERE status = 'waiting';

-- name: waiting_count
SELECT count(*) FROM executions INDEXED BY ix_executions_waiting WHERE status = 'waiting';

-- name: cancel_waiting
-- A waiting execution is cancelled at once: nothing runs it until it is due.
UPDATE executions SET status = 'cancelled', stopped_at = ?, error = ?,
    lease_owner = NULL, lease_expires = NULL
WHERE team_id = ? AND id = ? AND status = 'waiting';
