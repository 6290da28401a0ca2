-- Bulk rerun jobs (services/reruns.py, docs/api.md "Bulk rerun").

-- name: reruns_sources
-- A team's finished executions of one status in [since, until), oldest first (the
-- status index leads: team, status, created_at, id, workflow_id, user_id).
SELECT e.id, e.workflow_id, e.user_id, e.created_at, e.error
FROM executions AS e
WHERE e.team_id = $1 AND e.status = $2 AND e.created_at >= $3 AND e.created_at < $4
  AND ($5::text IS NULL OR e.workflow_id = $5::text)
  AND ($6::text IS NULL OR e.user_id = $6::text)
  AND ($7::text IS NULL OR strpos(lower(convert_from(e.error, 'UTF8')::jsonb ->> 'message'),
                                  lower($7::text)) > 0)
  AND ($8::text IS NULL OR convert_from(e.error, 'UTF8')::jsonb ->> 'blockId' = $8::text)
ORDER BY e.created_at, e.id
LIMIT $9;

-- name: reruns_sources_count
SELECT count(*) FROM (
  SELECT 1 FROM executions AS e
  WHERE e.team_id = $1 AND e.status = $2 AND e.created_at >= $3 AND e.created_at < $4
    AND ($5::text IS NULL OR e.workflow_id = $5::text)
    AND ($6::text IS NULL OR e.user_id = $6::text)
    AND ($7::text IS NULL OR strpos(lower(convert_from(e.error, 'UTF8')::jsonb ->> 'message'),
                                    lower($7::text)) > 0)
    AND ($8::text IS NULL OR convert_from(e.error, 'UTF8')::jsonb ->> 'blockId' = $8::text)
  LIMIT $9
) AS matching;

-- name: reruns_job_insert
INSERT INTO rerun_jobs (id, team_id, status, filter, options, total, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7);

-- name: reruns_item_insert
INSERT INTO rerun_job_items (job_id, execution_id, seq, state)
SELECT $1, ids.id, ids.seq - 1, 'pending'
FROM unnest($2::text[]) WITH ORDINALITY AS ids(id, seq);

-- name: reruns_job_get
SELECT * FROM rerun_jobs WHERE team_id = $1 AND id = $2;

-- name: reruns_job_list
SELECT * FROM rerun_jobs
WHERE team_id = $1 AND ($2::text IS NULL OR id < $2::text)
ORDER BY id DESC LIMIT $3;

-- name: reruns_job_claim
-- The job this owner holds, else the oldest unfinished one whose lease lapsed or that no
-- one holds (SKIP LOCKED: concurrent runners take different jobs); its lease renewed.
UPDATE rerun_jobs SET status = 'running', lease_owner = $1, lease_expires = $2,
    started_at = coalesce(started_at, $3)
WHERE id = (
  SELECT id FROM rerun_jobs
  WHERE status IN ('queued', 'running')
    AND (lease_owner IS NULL OR lease_owner = $1 OR lease_expires <= $3)
  ORDER BY CASE WHEN lease_owner = $1 THEN 0 ELSE 1 END, id
  LIMIT 1
  FOR UPDATE SKIP LOCKED
)
RETURNING *;

-- name: reruns_items_pending
-- The next pending items, each with the execution this job already made for it (its
-- idempotency key is stored in the same transaction as that execution).
SELECT i.execution_id, k.execution_id AS made
FROM rerun_job_items AS i
LEFT JOIN idempotency_keys AS k ON k.team_id = $2 AND k.key = $3 || i.execution_id
WHERE i.job_id = $1 AND i.state = 'pending'
ORDER BY i.seq
LIMIT $4;

-- name: reruns_job_lock
-- The job's row first, as a cancel takes it (its UPDATE) before the items: recording
-- results in the other order deadlocked against a cancel.
SELECT 1 FROM rerun_jobs WHERE id = $1 FOR UPDATE;

-- name: reruns_item_finish
UPDATE rerun_job_items AS i SET state = r.state, new_execution_id = r.new_id, error = r.error
FROM unnest($2::text[], $3::text[], $4::text[], $5::text[])
    AS r(execution_id, state, new_id, error)
WHERE i.job_id = $1 AND i.execution_id = r.execution_id;

-- name: reruns_job_recount
UPDATE rerun_jobs AS j SET done = c.done, failed = c.failed, cancelled = c.cancelled
FROM (
  SELECT count(*) FILTER (WHERE state = 'done') AS done,
         count(*) FILTER (WHERE state = 'failed') AS failed,
         count(*) FILTER (WHERE state = 'cancelled') AS cancelled
  FROM rerun_job_items WHERE job_id = $1
) AS c
WHERE j.id = $1;

-- name: reruns_job_complete
-- Every item ended: the job is done (a cancelled one stays cancelled) and held by no one.
UPDATE rerun_jobs SET status = CASE WHEN status = 'cancelled' THEN 'cancelled' ELSE 'done' END,
    finished_at = coalesce(finished_at, $2), lease_owner = NULL, lease_expires = NULL
WHERE id = $1 AND done + failed + cancelled >= total
RETURNING status;

-- name: reruns_job_cancel
UPDATE rerun_jobs SET status = 'cancelled', finished_at = $1, lease_owner = NULL,
    lease_expires = NULL
WHERE team_id = $2 AND id = $3 AND status IN ('queued', 'running');

-- name: reruns_items_cancel
UPDATE rerun_job_items SET state = 'cancelled' WHERE job_id = $1 AND state = 'pending';

-- name: reruns_results
SELECT i.execution_id, i.seq, i.state, i.new_execution_id, i.error, n.status
FROM rerun_job_items AS i
JOIN rerun_jobs AS j ON j.id = i.job_id
LEFT JOIN executions AS n ON n.id = i.new_execution_id
WHERE j.team_id = $1 AND i.job_id = $2 AND i.seq >= $3
ORDER BY i.seq
LIMIT $4;

-- name: reruns_release
UPDATE rerun_jobs SET lease_owner = NULL, lease_expires = NULL
WHERE lease_owner = $1 AND status IN ('queued', 'running');

-- name: reruns_purge
-- A batch of jobs finished before the cutoff, with their items (one at a time across
-- processes: SKIP LOCKED).
WITH batch AS (
  SELECT id FROM rerun_jobs WHERE finished_at < $1 ORDER BY finished_at LIMIT $2
  FOR UPDATE SKIP LOCKED
), items AS (
  DELETE FROM rerun_job_items WHERE job_id IN (SELECT id FROM batch)
)
DELETE FROM rerun_jobs WHERE id IN (SELECT id FROM batch);

-- name: reruns_job_get_any
-- A job by id alone: for its runner, which holds it by a claim, not by a team.
SELECT * FROM rerun_jobs WHERE id = $1;
