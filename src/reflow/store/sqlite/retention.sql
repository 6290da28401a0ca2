-- Retention (services/retention.py, docs/operations.md "Retention"). Each purge query
-- selects ids only (never a payload), on an index, finished executions only; the ids are
-- then deleted with their steps and keys (delete_*_of_many in queries.sql).

-- name: retention_set_team
UPDATE teams SET log_retention_s = ? WHERE id = ?;

-- name: retention_set_workflow
UPDATE workflows SET retention_s = ?, retention_keep = ?, retention_keep_steps = ?,
       retention_steps_cursor = CASE WHEN ? = 'failed' THEN retention_steps_cursor END
WHERE team_id = ? AND id = ?;

-- name: retention_teams
SELECT id, log_retention_s FROM teams ORDER BY id;

-- name: retention_workflows
SELECT team_id, id, retention_s, retention_keep, retention_keep_steps, retention_steps_cursor
FROM workflows
WHERE retention_s IS NOT NULL OR retention_keep IS NOT NULL
   OR retention_keep_steps IS NOT NULL
ORDER BY team_id, id;

-- name: retention_team_batch
-- The team's finished executions stopped before the cutoff, but those of workflows with
-- a window of their own (a JSON list): in completion order, on (team_id, stopped_at, ...).
SELECT id FROM executions INDEXED BY ix_executions_team_stopped
WHERE team_id = ? AND stopped_at < ? AND status IN ('succeeded', 'failed', 'cancelled')
  AND workflow_id NOT IN (SELECT value FROM json_each(?))
ORDER BY stopped_at LIMIT ?;

-- name: retention_team_count
SELECT count(*) FROM executions INDEXED BY ix_executions_team_stopped
WHERE team_id = ? AND stopped_at < ? AND status IN ('succeeded', 'failed', 'cancelled')
  AND workflow_id NOT IN (SELECT value FROM json_each(?));

-- name: retention_workflow_batch
-- Created before the cutoff too (it stopped after it was created): the walk stays on
-- (team_id, workflow_id, created_at, ...) and ends at the cutoff.
SELECT id FROM executions INDEXED BY ix_executions_team_workflow
WHERE team_id = ? AND workflow_id = ? AND created_at < ? AND stopped_at < ?
  AND status IN ('succeeded', 'failed', 'cancelled')
ORDER BY created_at LIMIT ?;

-- name: retention_workflow_count
SELECT count(*) FROM executions INDEXED BY ix_executions_team_workflow
WHERE team_id = ? AND workflow_id = ? AND created_at < ? AND stopped_at < ?
  AND status IN ('succeeded', 'failed', 'cancelled');

-- name: retention_keep_boundary
-- The oldest execution the count keeps (the keep-th newest); older finished ones go.
SELECT created_at, id FROM executions INDEXED BY ix_executions_team_workflow
WHERE team_id = ? AND workflow_id = ?
ORDER BY created_at DESC, id DESC LIMIT 1 OFFSET ?;

-- name: retention_excess_batch
SELECT id FROM executions INDEXED BY ix_executions_team_workflow
WHERE team_id = ? AND workflow_id = ? AND (created_at, id) < (?, ?)
  AND status IN ('succeeded', 'failed', 'cancelled')
ORDER BY created_at LIMIT ?;

-- name: retention_excess_count
SELECT count(*) FROM executions INDEXED BY ix_executions_team_workflow
WHERE team_id = ? AND workflow_id = ? AND (created_at, id) < (?, ?)
  AND status IN ('succeeded', 'failed', 'cancelled');

-- name: retention_steps_batch
-- Succeeded executions of the workflow stopped in [since, until) that still have steps,
-- in completion order: (id, stopped_at).
SELECT id, stopped_at FROM executions AS e INDEXED BY ix_executions_team_stopped
WHERE team_id = ? AND stopped_at >= ? AND stopped_at < ? AND workflow_id = ?
  AND status = 'succeeded'
  AND EXISTS (SELECT 1 FROM steps WHERE steps.execution_id = e.id)
ORDER BY stopped_at LIMIT ?;

-- name: retention_steps_cursor
UPDATE workflows SET retention_steps_cursor = ? WHERE team_id = ? AND id = ?;

-- name: retention_steps_count
SELECT count(*) FROM executions AS e INDEXED BY ix_executions_team_stopped
WHERE team_id = ? AND stopped_at >= ? AND stopped_at < ? AND workflow_id = ?
  AND status = 'succeeded'
  AND EXISTS (SELECT 1 FROM steps WHERE steps.execution_id = e.id);
