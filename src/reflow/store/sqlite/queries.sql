-- name: count_teams
SELECT count(*) FROM teams;

-- name: insert_team
INSERT INTO teams (id, name, created_at, log_retention_s) VALUES (?, ?, ?, ?);

-- name: get_team
SELECT id, name, created_at, log_retention_s FROM teams WHERE id = ?;

-- name: schema_version
SELECT version_num FROM alembic_version;

-- name: list_teams
SELECT id, name, created_at, log_retention_s FROM teams ORDER BY created_at, id;

-- name: get_team_env
SELECT env FROM teams WHERE id = ?;

-- name: set_team_env
UPDATE teams SET env = ? WHERE id = ?;

-- name: insert_api_key
INSERT INTO api_keys (id, team_id, name, prefix, hash, created_at) VALUES (?, ?, ?, ?, ?, ?);

-- name: find_api_key
SELECT id, team_id, name, prefix, created_at, revoked_at FROM api_keys
WHERE hash = ? AND revoked_at IS NULL;

-- name: list_api_keys
SELECT id, team_id, name, prefix, created_at, revoked_at FROM api_keys
WHERE team_id = ? ORDER BY created_at, id;

-- name: revoke_api_key
UPDATE api_keys SET revoked_at = ? WHERE team_id = ? AND (id = ? OR prefix = ?) AND revoked_at IS NULL;

-- name: insert_user
INSERT INTO users (id, team_id, username, full_name, created_at) VALUES (?, ?, ?, ?, ?);

-- name: get_user
SELECT id, team_id, username, full_name, created_at FROM users
WHERE team_id = ? AND (id = ? OR username = ?) AND deleted_at IS NULL
ORDER BY id = ? DESC LIMIT 1;

-- name: get_user_any
-- Live or deleted, by id only (a deleted user's username may belong to a new user).
SELECT id, team_id, username, full_name, created_at FROM users WHERE team_id = ? AND id = ?;

-- name: list_users
SELECT id, team_id, username, full_name, created_at FROM users
WHERE team_id = ? AND deleted_at IS NULL ORDER BY created_at, id;

-- name: list_users_of_workflow
SELECT u.id, u.team_id, u.username, u.full_name, u.created_at
FROM users u JOIN installations i ON i.user_id = u.id
WHERE u.team_id = ? AND i.workflow_id = ? AND u.deleted_at IS NULL AND i.deleted_at IS NULL
ORDER BY u.created_at, u.id;

-- name: taken_usernames
SELECT username FROM users
WHERE team_id = ? AND deleted_at IS NULL AND username IN (SELECT value FROM json_each(?));

-- name: update_user
UPDATE users SET username = ?, full_name = ?
WHERE team_id = ? AND id = ? AND deleted_at IS NULL;

-- name: delete_user
UPDATE users SET deleted_at = ? WHERE team_id = ? AND id = ? AND deleted_at IS NULL;

-- name: deactivate_user_installations
UPDATE installations SET active = 0, updated_at = ?
WHERE team_id = ? AND user_id = ? AND active;

-- name: unfinished_of_user
SELECT count(*) FROM executions
WHERE team_id = ? AND user_id = ? AND status IN ('queued', 'running', 'waiting');

-- name: delete_steps_of_user
DELETE FROM steps WHERE execution_id IN (
    SELECT id FROM executions WHERE team_id = ? AND user_id = ?
      AND status IN ('succeeded', 'failed', 'cancelled'));

-- name: delete_idempotency_keys_of_user
DELETE FROM idempotency_keys WHERE execution_id IN (
    SELECT id FROM executions WHERE team_id = ? AND user_id = ?
      AND status IN ('succeeded', 'failed', 'cancelled'));

-- name: delete_executions_of_user
DELETE FROM executions WHERE team_id = ? AND user_id = ?
  AND status IN ('succeeded', 'failed', 'cancelled');

-- name: insert_workflow
INSERT INTO workflows (id, team_id, name, integration, latest_version, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?);

-- name: get_workflow
SELECT id, team_id, name, integration, latest_version, created_at, updated_at FROM workflows
WHERE team_id = ? AND (id = ? OR name = ?)
ORDER BY id = ? DESC LIMIT 1;

-- name: list_workflows
SELECT id, team_id, name, integration, latest_version, created_at, updated_at FROM workflows
WHERE team_id = ? ORDER BY name, id;

-- name: bump_workflow_version
UPDATE workflows SET latest_version = latest_version + 1, updated_at = ?, name = ?, integration = ?
WHERE team_id = ? AND id = ?
RETURNING latest_version;

-- name: insert_version
INSERT INTO workflow_versions (workflow_id, version, definition, digest, created_at)
VALUES (?, ?, ?, ?, ?);

-- name: get_version
SELECT v.workflow_id, v.version, v.definition, v.digest, v.created_at
FROM workflow_versions v JOIN workflows w ON w.id = v.workflow_id
WHERE w.team_id = ? AND v.workflow_id = ? AND v.version = ?;

-- name: list_versions
SELECT v.workflow_id, v.version, v.definition, v.digest, v.created_at
FROM workflow_versions v JOIN workflows w ON w.id = v.workflow_id
WHERE w.team_id = ? AND v.workflow_id = ? ORDER BY v.version;

-- name: get_installation
SELECT id, team_id, workflow_id, user_id, installed_version, active, installed_at, updated_at
FROM installations WHERE team_id = ? AND workflow_id = ? AND user_id = ?
  AND deleted_at IS NULL;

-- name: get_installation_by_id
SELECT id, team_id, workflow_id, user_id, installed_version, active, installed_at, updated_at
FROM installations WHERE team_id = ? AND id = ? AND deleted_at IS NULL;

-- name: get_installations
SELECT id, team_id, workflow_id, user_id, installed_version, active, installed_at, updated_at
FROM installations
WHERE team_id = ? AND id IN (SELECT value FROM json_each(?)) AND deleted_at IS NULL;

-- name: list_installations
SELECT id, team_id, workflow_id, user_id, installed_version, active, installed_at, updated_at
FROM installations
WHERE team_id = ? AND (? IS NULL OR user_id = ?) AND (? IS NULL OR workflow_id = ?)
  AND deleted_at IS NULL
ORDER BY installed_at, id;

-- name: upsert_installation
INSERT INTO installations
    (id, team_id, workflow_id, user_id, installed_version, active, installed_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET
    installed_version = excluded.installed_version,
    active = excluded.active,
    updated_at = excluded.updated_at;

-- name: insert_execution
INSERT INTO executions
    (id, team_id, workflow_id, installation_id, user_id, version, mode, trigger, status,
     created_at, started_at, stopped_at, output, response_status, error, rerun_of,
     lease_owner, lease_expires, resumes)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?);

-- name: update_execution
-- Fenced: only the lease's owner writes (a row count of 0 is LeaseLost).
UPDATE executions SET status = ?, started_at = ?, stopped_at = ?, output = ?,
    response_status = ?, error = ?, lease_owner = ?, lease_expires = ?, resumes = ?
WHERE id = ? AND lease_owner = ?;

-- name: cancel_queued
UPDATE executions SET status = 'cancelled', stopped_at = ?, error = ?,
    lease_owner = NULL, lease_expires = NULL
WHERE team_id = ? AND id = ? AND status = 'queued';

-- name: request_cancel
UPDATE executions SET cancel_requested = 1
WHERE team_id = ? AND id = ? AND status IN ('running', 'waiting');

-- name: cancel_requests
SELECT id FROM executions
WHERE id IN (SELECT value FROM json_each(?)) AND cancel_requested = 1;

-- name: insert_step
INSERT INTO steps
    (execution_id, seq, block_id, status, attempts, started_at, stopped_at, input, output,
     error, reused, truncated, item)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
-- A waiting delay's step is written again, under its seq, when the delay resumes.
ON CONFLICT (execution_id, seq) DO UPDATE SET
    status = excluded.status, attempts = excluded.attempts,
    stopped_at = excluded.stopped_at, output = excluded.output, error = excluded.error;

-- name: claimable_executions
-- Fair and bounded (docs/architecture.md "Claims"): up to ?2 installations with claimable
-- work, in installation order from the one after ?3 (the store's round-robin cursor),
-- wrapping around; each one's oldest first (turn 1), then, when fewer installations than
-- ?2 have work, each one's next (turn 2, 3...). Every step is one seek in
-- ix_executions_claim, which also says whether an entry is claimable (status and lease),
-- so a claim reads about 3 x ?2 index entries whatever the queue's depth. The recursive
-- turns are a priority queue on (turn, pos) that stops at ?2 rows. ?1 is now.
WITH RECURSIVE
claimable AS NOT MATERIALIZED (
    SELECT installation_id, id FROM executions INDEXED BY ix_executions_claim
    WHERE status IN ('queued', 'running')
      AND (status = 'queued' OR lease_expires IS NULL OR lease_expires < ?1)
),
after_cursor(installation_id, pos) AS (
    SELECT (SELECT installation_id FROM claimable WHERE installation_id > ?3
            ORDER BY installation_id, id LIMIT 1), 1
    UNION ALL
    SELECT (SELECT c.installation_id FROM claimable AS c
            WHERE c.installation_id > a.installation_id
            ORDER BY c.installation_id, c.id LIMIT 1), a.pos + 1
    FROM after_cursor AS a WHERE a.installation_id IS NOT NULL AND a.pos < ?2
),
from_start(installation_id, pos) AS (
    SELECT (SELECT installation_id FROM claimable WHERE installation_id <= ?3
            ORDER BY installation_id, id LIMIT 1),
           (SELECT count(installation_id) FROM after_cursor) + 1
    UNION ALL
    SELECT (SELECT c.installation_id FROM claimable AS c
            WHERE c.installation_id > s.installation_id AND c.installation_id <= ?3
            ORDER BY c.installation_id, c.id LIMIT 1), s.pos + 1
    FROM from_start AS s WHERE s.installation_id IS NOT NULL AND s.pos < ?2
),
ring(installation_id, pos) AS (
    SELECT installation_id, pos FROM after_cursor WHERE installation_id IS NOT NULL
    UNION ALL
    SELECT installation_id, pos FROM from_start WHERE installation_id IS NOT NULL
),
turns(installation_id, id, turn, pos) AS (
    SELECT r.installation_id,
           (SELECT c.id FROM claimable AS c WHERE c.installation_id = r.installation_id
            ORDER BY c.id LIMIT 1), 1, r.pos
    FROM ring AS r
    UNION ALL
    SELECT t.installation_id, e.id, t.turn + 1, t.pos
    FROM turns AS t JOIN executions AS e ON e.id = (
        SELECT c.id FROM claimable AS c WHERE c.installation_id = t.installation_id
          AND c.id > t.id ORDER BY c.id LIMIT 1)
    ORDER BY 3, 4 LIMIT ?2
)
SELECT installation_id, id FROM turns ORDER BY turn, pos;

-- name: claim_execution
-- A running execution whose lease lapsed was abandoned by a dead process: count the resume
-- (one whose lease was released, lease_owner NULL, was stopped gracefully: no resume).
UPDATE executions SET status = 'running', lease_owner = ?, lease_expires = ?,
    started_at = coalesce(started_at, ?),
    resumes = resumes + (status = 'running' AND lease_owner IS NOT NULL)
WHERE id = ? AND status IN ('queued', 'running')
  AND (status = 'queued' OR lease_expires IS NULL OR lease_expires < ?);

-- name: queue_depth
-- The index's own condition repeated: SQLite uses a partial index only when the query
-- implies it, and does not derive that from status = 'queued' alone.
SELECT count(*) FROM executions
WHERE status IN ('queued', 'running') AND status = 'queued';

-- name: renew_leases
UPDATE executions SET lease_expires = ?
WHERE id IN (SELECT value FROM json_each(?)) AND lease_owner = ?
RETURNING id;

-- name: expire_leases
-- At the runner's start: whoever holds a lease is dead; claimable now, counted as resumed.
UPDATE executions SET lease_expires = 0
WHERE status IN ('queued', 'running') AND lease_owner IS NOT NULL;

-- name: expire_rerun_job_leases
-- The same for bulk rerun jobs: the new runner takes a dead one's job at once.
UPDATE rerun_jobs SET lease_expires = 0
WHERE status IN ('queued', 'running') AND lease_owner IS NOT NULL;

-- name: release_leases
UPDATE executions SET lease_owner = NULL, lease_expires = NULL
WHERE id IN (SELECT value FROM json_each(?)) AND lease_owner = ?
  AND status IN ('running', 'waiting');

-- name: insert_first_team
INSERT INTO teams (id, name, created_at, log_retention_s)
SELECT ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM teams);

-- name: get_execution
SELECT * FROM executions WHERE team_id = ? AND id = ?;

-- name: get_executions
-- By id (CROSS JOIN keeps that order): the planner would rather scan the team's index.
SELECT e.* FROM json_each(?2) AS ids CROSS JOIN executions AS e ON e.id = ids.value
WHERE e.team_id = ?1;

-- name: get_execution_any_team
SELECT * FROM executions WHERE id = ?;

-- name: execution_status
SELECT status FROM executions WHERE team_id = ? AND id = ?;

-- name: steps_of
SELECT execution_id, seq, block_id, status, attempts, started_at, stopped_at, input, output,
       error, reused, truncated, item
FROM steps WHERE execution_id = ? ORDER BY seq;

-- name: reruns_of
SELECT id FROM executions WHERE rerun_of = ? ORDER BY id;

-- name: purge_batch
SELECT id FROM executions
WHERE stopped_at < ? AND status IN ('succeeded', 'failed', 'cancelled')
ORDER BY stopped_at LIMIT ?;

-- name: list_by_workflow_desc
-- On ix_executions_team_workflow (team_id, workflow_id, created_at, id).
SELECT * FROM executions
WHERE workflow_id = ? AND team_id = ? AND (? = 0 OR status = 'failed')
ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?;

-- name: list_by_workflow_asc
SELECT * FROM executions
WHERE workflow_id = ? AND team_id = ? AND (? = 0 OR status = 'failed')
ORDER BY created_at ASC, id ASC LIMIT ? OFFSET ?;

-- name: list_by_installation_desc
SELECT * FROM executions
WHERE installation_id = ? AND team_id = ? AND (? = 0 OR status = 'failed')
ORDER BY id DESC LIMIT ? OFFSET ?;

-- name: list_by_installation_asc
SELECT * FROM executions
WHERE installation_id = ? AND team_id = ? AND (? = 0 OR status = 'failed')
ORDER BY id ASC LIMIT ? OFFSET ?;

-- name: steps_of_many
SELECT execution_id, seq, block_id, status, attempts, started_at, stopped_at, input, output,
       error, reused, truncated, item
FROM steps WHERE execution_id IN (SELECT value FROM json_each(?))
ORDER BY execution_id, seq;

-- name: reruns_of_many
SELECT rerun_of, id FROM executions
WHERE rerun_of IN (SELECT value FROM json_each(?)) ORDER BY id;

-- name: delete_steps_of_many
DELETE FROM steps WHERE execution_id IN (SELECT value FROM json_each(?));

-- name: delete_executions_many
DELETE FROM executions WHERE id IN (SELECT value FROM json_each(?));

-- name: insert_idempotency_key
INSERT INTO idempotency_keys (team_id, key, execution_id, created_at) VALUES (?, ?, ?, ?);

-- name: find_idempotency_key
SELECT execution_id FROM idempotency_keys WHERE team_id = ? AND key = ?;

-- name: delete_idempotency_keys_of_many
DELETE FROM idempotency_keys WHERE execution_id IN (SELECT value FROM json_each(?));

-- name: workflow_activity
SELECT count(*) AS runs,
       coalesce(sum(e.status = 'failed'), 0) AS errors,
       coalesce(sum((SELECT count(*) FROM steps s
                     WHERE s.execution_id = e.id AND s.reused = 0
                       AND s.block_id IN (SELECT value FROM json_each(?)))), 0) AS actions
FROM executions e
WHERE e.team_id = ? AND e.workflow_id = ? AND (? IS NULL OR e.installation_id = ?);
