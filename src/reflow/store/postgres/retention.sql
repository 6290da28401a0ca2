-- Retention (services/retention.py, docs/operations.md "Retention"). Each purge query
-- selects ids only (never a payload), on an index, finished executions only, locked
-- SKIP LOCKED so nodes purging at once take different rows; the ids are then deleted with
-- their steps and keys (delete_*_of_many in queries.sql).

-- name: retention_set_team
UPDATE teams SET log_retention_s = $1 WHERE id = $2;

-- name: retention_set_workflow
UPDATE workflows SET retention_s = $1, retention_keep = $2, retention_keep_steps = $3,
       retention_steps_cursor = CASE WHEN $4 = 'failed' THEN retention_steps_cursor END
WHERE team_id = $5 AND id = $6;

-- name: retention_teams
SELECT id, log_retention_s FROM teams ORDER BY id;

-- name: retention_workflows
SELECT team_id, id, retention_s, retention_keep, retention_keep_steps, retention_steps_cursor
FROM workflows
WHERE retention_s IS NOT NULL OR retention_keep IS NOT NULL
   OR retention_keep_steps IS NOT NULL
ORDER BY team_id, id;

-- name: retention_team_batch
SELECT id FROM executions
WHERE team_id = $1 AND stopped_at < $2 AND status IN ('succeeded', 'failed', 'cancelled')
  AND workflow_id <> ALL($3::text[])
ORDER BY stopped_at LIMIT $4
FOR UPDATE SKIP LOCKED;

-- name: retention_team_count
SELECT count(*) FROM executions
WHERE team_id = $1 AND stopped_at < $2 AND status IN ('succeeded', 'failed', 'cancelled')
  AND workflow_id <> ALL($3::text[]);

-- name: retention_workflow_batch
SELECT id FROM executions
WHERE team_id = $1 AND workflow_id = $2 AND created_at < $3 AND stopped_at < $4
  AND status IN ('succeeded', 'failed', 'cancelled')
ORDER BY created_at LIMIT $5
FOR UPDATE SKIP LOCKED;

-- name: retention_workflow_count
SELECT count(*) FROM executions
WHERE team_id = $1 AND workflow_id = $2 AND created_at < $3 AND stopped_at < $4
  AND status IN ('succeeded', 'failed', 'cancelled');

-- name: retention_keep_boundary
SELECT created_at, id FROM executions
WHERE team_id = $1 AND workflow_id = $2
ORDER BY created_at DESC, id DESC LIMIT 1 OFFSET $3;

-- name: retention_excess_batch
SELECT id FROM executions
WHERE team_id = $1 AND workflow_id = $2 AND (created_at, id) < ($3, $4)
  AND status IN ('succeeded', 'failed', 'cancelled')
ORDER BY created_at LIMIT $5
FOR UPDATE SKIP LOCKED;

-- name: retention_excess_count
SELECT count(*) FROM executions
WHERE team_id = $1 AND workflow_id = $2 AND (created_at, id) < ($3, $4)
  AND status IN ('succeeded', 'failed', 'cancelled');

-- name: retention_steps_batch
SELECT id, stopped_at FROM executions AS e
WHERE team_id = $1 AND stopped_at >= $2 AND stopped_at < $3 AND workflow_id = $4
  AND status = 'succeeded'
  AND EXISTS (SELECT 1 FROM steps WHERE steps.execution_id = e.id)
ORDER BY stopped_at LIMIT $5;

-- name: retention_steps_cursor
UPDATE workflows SET retention_steps_cursor = $1 WHERE team_id = $2 AND id = $3;

-- name: retention_steps_count
SELECT count(*) FROM executions AS e
WHERE team_id = $1 AND stopped_at >= $2 AND stopped_at < $3 AND workflow_id = $4
  AND status = 'succeeded'
  AND EXISTS (SELECT 1 FROM steps WHERE steps.execution_id = e.id);
