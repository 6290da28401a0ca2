-- PostgreSQL statements of PostgresStore ($n parameters, arrays where SQLite uses json_each).
-- Hints are sent with pg_notify in the transaction that makes them true, so a listener
-- never hears of a change it cannot read yet.

-- name: count_teams
SELECT count(*) FROM teams;

-- name: insert_team
INSERT INTO teams (id, name, created_at, log_retention_s) VALUES ($1, $2, $3, $4);

-- name: get_team
SELECT id, name, created_at, log_retention_s FROM teams WHERE id = $1;

-- name: lock_bootstrap
-- Serializes processes bootstrapping one new database (held until the commit).
SELECT pg_advisory_xact_lock(7365628741925771265);

-- name: insert_first_team
INSERT INTO teams (id, name, created_at, log_retention_s)
SELECT $1, $2, $3, $4 WHERE NOT EXISTS (SELECT 1 FROM teams);

-- name: schema_version
SELECT version_num FROM alembic_version;

-- name: list_teams
SELECT id, name, created_at, log_retention_s FROM teams ORDER BY created_at, id;

-- name: get_team_env
SELECT env FROM teams WHERE id = $1;

-- name: set_team_env
UPDATE teams SET env = $1 WHERE id = $2;

-- name: insert_api_key
INSERT INTO api_keys (id, team_id, name, prefix, hash, created_at)
VALUES ($1, $2, $3, $4, $5, $6);

-- name: find_api_key
SELECT id, team_id, name, prefix, created_at, revoked_at FROM api_keys
WHERE hash = $1 AND revoked_at IS NULL;

-- name: list_api_keys
SELECT id, team_id, name, prefix, created_at, revoked_at FROM api_keys
WHERE team_id = $1 ORDER BY created_at, id;

-- name: revoke_api_key
-- One statement: the revocation and its hint commit together (one row per revoked key).
WITH revoked AS (
    UPDATE api_keys SET revoked_at = $1
    WHERE team_id = $2 AND (id = $3 OR prefix = $3) AND revoked_at IS NULL
    RETURNING hash
)
SELECT pg_notify('reflow_revoked', hash) FROM revoked;

-- name: insert_user
INSERT INTO users (id, team_id, username, full_name, created_at) VALUES ($1, $2, $3, $4, $5);

-- name: get_user
SELECT id, team_id, username, full_name, created_at FROM users
WHERE team_id = $1 AND (id = $2 OR username = $2) AND deleted_at IS NULL
ORDER BY id = $2 DESC LIMIT 1;

-- name: get_user_any
-- Live or deleted, by id only (a deleted user's username may belong to a new user).
SELECT id, team_id, username, full_name, created_at FROM users WHERE team_id = $1 AND id = $2;

-- name: list_users
SELECT id, team_id, username, full_name, created_at FROM users
WHERE team_id = $1 AND deleted_at IS NULL ORDER BY created_at, id;

-- name: list_users_of_workflow
SELECT u.id, u.team_id, u.username, u.full_name, u.created_at
FROM users u JOIN installations i ON i.user_id = u.id
WHERE u.team_id = $1 AND i.workflow_id = $2 AND u.deleted_at IS NULL AND i.deleted_at IS NULL
ORDER BY u.created_at, u.id;

-- name: taken_usernames
SELECT username FROM users
WHERE team_id = $1 AND deleted_at IS NULL AND username = ANY($2::text[]);

-- name: update_user
UPDATE users SET username = $1, full_name = $2
WHERE team_id = $3 AND id = $4 AND deleted_at IS NULL;

-- name: delete_user
UPDATE users SET deleted_at = $1 WHERE team_id = $2 AND id = $3 AND deleted_at IS NULL;

-- name: deactivate_user_installations
UPDATE installations SET active = false, updated_at = $1
WHERE team_id = $2 AND user_id = $3 AND active;

-- name: unfinished_of_user
SELECT count(*) FROM executions
WHERE team_id = $1 AND user_id = $2 AND status IN ('queued', 'running', 'waiting');

-- name: finished_of_user
-- Locked: a concurrent purge or delete of the same rows waits, then finds them gone.
SELECT id FROM executions WHERE team_id = $1 AND user_id = $2
  AND status IN ('succeeded', 'failed', 'cancelled')
FOR UPDATE;

-- name: insert_workflow
INSERT INTO workflows (id, team_id, name, integration, latest_version, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7);

-- name: get_workflow
SELECT id, team_id, name, integration, latest_version, created_at, updated_at FROM workflows
WHERE team_id = $1 AND (id = $2 OR name = $2)
ORDER BY id = $2 DESC LIMIT 1;

-- name: list_workflows
SELECT id, team_id, name, integration, latest_version, created_at, updated_at FROM workflows
WHERE team_id = $1 ORDER BY name, id;

-- name: bump_workflow_version
UPDATE workflows SET latest_version = latest_version + 1, updated_at = $1, name = $2,
    integration = $3
WHERE team_id = $4 AND id = $5
RETURNING latest_version;

-- name: insert_version
INSERT INTO workflow_versions (workflow_id, version, definition, digest, created_at)
VALUES ($1, $2, $3, $4, $5);

-- name: get_version
SELECT v.workflow_id, v.version, v.definition, v.digest, v.created_at
FROM workflow_versions v JOIN workflows w ON w.id = v.workflow_id
WHERE w.team_id = $1 AND v.workflow_id = $2 AND v.version = $3;

-- name: list_versions
SELECT v.workflow_id, v.version, v.definition, v.digest, v.created_at
FROM workflow_versions v JOIN workflows w ON w.id = v.workflow_id
WHERE w.team_id = $1 AND v.workflow_id = $2 ORDER BY v.version;

-- name: get_installation
SELECT id, team_id, workflow_id, user_id, installed_version, active, installed_at, updated_at
FROM installations WHERE team_id = $1 AND workflow_id = $2 AND user_id = $3
  AND deleted_at IS NULL;

-- name: get_installation_by_id
SELECT id, team_id, workflow_id, user_id, installed_version, active, installed_at, updated_at
FROM installations WHERE team_id = $1 AND id = $2 AND deleted_at IS NULL;

-- name: get_installations
SELECT id, team_id, workflow_id, user_id, installed_version, active, installed_at, updated_at
FROM installations WHERE team_id = $1 AND id = ANY($2::text[]) AND deleted_at IS NULL;

-- name: list_installations
SELECT id, team_id, workflow_id, user_id, installed_version, active, installed_at, updated_at
FROM installations
WHERE team_id = $1 AND ($2::text IS NULL OR user_id = $2)
  AND ($3::text IS NULL OR workflow_id = $3) AND deleted_at IS NULL
ORDER BY installed_at, id;

-- name: upsert_installation
INSERT INTO installations
    (id, team_id, workflow_id, user_id, installed_version, active, installed_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (id) DO UPDATE SET
    installed_version = excluded.installed_version,
    active = excluded.active,
    updated_at = excluded.updated_at;

-- name: insert_execution
INSERT INTO executions
    (id, team_id, workflow_id, installation_id, user_id, version, mode, trigger, status,
     created_at, started_at, stopped_at, output, response_status, error, rerun_of,
     lease_owner, lease_expires, resumes)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19);

-- name: update_execution
-- Fenced: only the lease's owner writes (a row count of 0 is LeaseLost).
UPDATE executions SET status = $1, started_at = $2, stopped_at = $3, output = $4,
    response_status = $5, error = $6, lease_owner = $7, lease_expires = $8, resumes = $9
WHERE id = $10 AND lease_owner = $11;

-- name: update_executions_fenced
-- update_execution for a whole group commit in one round trip: the ids it returns are the
-- writes whose owner still held the lease (the others are LeaseLost). Ids are distinct.
UPDATE executions AS e SET status = u.status, started_at = u.started_at,
    stopped_at = u.stopped_at, output = u.output, response_status = u.response_status,
    error = u.error, lease_owner = u.lease_owner, lease_expires = u.lease_expires,
    resumes = u.resumes
FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bytea[], $5::integer[], $6::bytea[],
            $7::text[], $8::bigint[], $9::integer[], $10::text[], $11::text[])
    AS u(status, started_at, stopped_at, output, response_status, error, lease_owner,
         lease_expires, resumes, id, owner)
WHERE e.id = u.id AND e.lease_owner = u.owner
RETURNING e.id;

-- name: notify_queued
SELECT pg_notify('reflow_queued', '');

-- name: notify_finished
SELECT pg_notify('reflow_finished', id) FROM unnest($1::text[]) AS id;

-- name: cancel_queued
-- A queued execution is cancelled at once: it is finished, so say so.
WITH cancelled AS (
    UPDATE executions SET status = 'cancelled', stopped_at = $1, error = $2,
        lease_owner = NULL, lease_expires = NULL
    WHERE team_id = $3 AND id = $4 AND status = 'queued'
    RETURNING id
)
SELECT pg_notify('reflow_finished', id) FROM cancelled;

-- name: request_cancel
UPDATE executions SET cancel_requested = true
WHERE team_id = $1 AND id = $2 AND status IN ('running', 'waiting');

-- name: cancel_requests
SELECT id FROM executions WHERE id = ANY($1::text[]) AND cancel_requested;

-- name: insert_step
INSERT INTO steps
    (execution_id, seq, block_id, status, attempts, started_at, stopped_at, input, output,
     error, reused, truncated, item)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
-- A waiting delay's step is written again, under its seq, when the delay resumes.
ON CONFLICT (execution_id, seq) DO UPDATE SET
    status = excluded.status, attempts = excluded.attempts,
    stopped_at = excluded.stopped_at, output = excluded.output, error = excluded.error;

-- name: claim_generic_plan
-- In the claim's transaction: planning the claim costs about as much as running it
-- (0.8 ms), and with rows in the table PostgreSQL keeps planning it afresh for each call
-- instead of settling on the prepared statement's generic plan. Every step is a seek of
-- one index by construction, so the parameters' values cannot make a better plan (a
-- claim of 8 at 100,000 queued: 1.8 ms instead of 3.0).
SET LOCAL plan_cache_mode = force_generic_plan;

-- name: claim_executions
-- Fair and bounded (docs/architecture.md "Claims"): installations with claimable work in
-- installation order from the one after $5 (the store's round-robin cursor), wrapping
-- around; each one's oldest first (turn 1), then, when fewer installations have work,
-- each one's next (turn 2, 3...). Every step is one seek in ix_executions_claim (a loose
-- index scan), so a claim reads a few entries per candidate whatever the queue's depth;
-- each turn carries how many candidates the turns before found, and the walk stops at
-- 4 x limit. Of those candidates, the first limit not locked by another claimer are
-- taken, so concurrent claimers take different executions instead of queueing behind one
-- another. The UPDATE checks again that each is claimable: a row another claimer
-- committed meanwhile is re-read and left.
-- $1 owner, $2 lease until, $3 now, $4 limit, $5 cursor.
WITH RECURSIVE claimable AS NOT MATERIALIZED (
    SELECT installation_id, id FROM executions
    WHERE status IN ('queued', 'running')
      AND (status = 'queued' OR lease_expires IS NULL OR lease_expires < $3)
), after_cursor AS (
    (SELECT installation_id, id, 1 AS pos FROM claimable WHERE installation_id > $5
     ORDER BY installation_id, id LIMIT 1)
    UNION ALL
    SELECT n.installation_id, n.id, a.pos + 1 FROM after_cursor AS a CROSS JOIN LATERAL (
        SELECT c.installation_id, c.id FROM claimable AS c
        WHERE c.installation_id > a.installation_id
        ORDER BY c.installation_id, c.id LIMIT 1) AS n
    WHERE a.pos < $4 * 4
), from_start AS (
    (SELECT installation_id, id, (SELECT count(*) FROM after_cursor)::int + 1 AS pos
     FROM claimable WHERE installation_id <= $5
     ORDER BY installation_id, id LIMIT 1)
    UNION ALL
    SELECT n.installation_id, n.id, s.pos + 1 FROM from_start AS s CROSS JOIN LATERAL (
        SELECT c.installation_id, c.id FROM claimable AS c
        WHERE c.installation_id > s.installation_id AND c.installation_id <= $5
        ORDER BY c.installation_id, c.id LIMIT 1) AS n
    WHERE s.pos < $4 * 4
), turns AS (
    SELECT installation_id, id, 1 AS turn, pos, 0::bigint AS before, count(*) OVER () AS here
    FROM (SELECT * FROM after_cursor UNION ALL SELECT * FROM from_start) AS ring
    UNION ALL
    SELECT t.installation_id, n.id, t.turn + 1, t.pos, t.before + t.here, count(*) OVER ()
    FROM turns AS t CROSS JOIN LATERAL (
        SELECT c.id FROM claimable AS c
        WHERE c.installation_id = t.installation_id AND c.id > t.id
        ORDER BY c.id LIMIT 1) AS n
    WHERE t.before + t.here < $4 * 4
), candidates AS (
    SELECT id, turn, pos FROM turns ORDER BY turn, pos LIMIT $4 * 4
), locked AS (
    SELECT e.id, c.turn, c.pos FROM executions AS e JOIN candidates AS c ON c.id = e.id
    ORDER BY c.turn, c.pos LIMIT $4
    FOR UPDATE OF e SKIP LOCKED
), claimed AS (
    UPDATE executions AS e SET status = 'running', lease_owner = $1, lease_expires = $2,
        started_at = coalesce(e.started_at, $3),
        -- A running execution whose lease lapsed was abandoned by a dead process (one
        -- whose lease was released, lease_owner NULL, was stopped gracefully: no resume).
        resumes = e.resumes + (e.status = 'running' AND e.lease_owner IS NOT NULL)::int
    FROM locked AS l
    WHERE e.id = l.id AND e.status IN ('queued', 'running')
      AND (e.status = 'queued' OR e.lease_expires IS NULL OR e.lease_expires < $3)
    RETURNING e.*, l.turn, l.pos
)
SELECT * FROM claimed ORDER BY turn, pos;

-- name: queue_depth
SELECT count(*) FROM executions WHERE status = 'queued';

-- name: release_leases
UPDATE executions SET lease_owner = NULL, lease_expires = NULL
WHERE id = ANY($1::text[]) AND lease_owner = $2 AND status IN ('running', 'waiting');

-- name: renew_leases
UPDATE executions SET lease_expires = $1
WHERE id = ANY($2::text[]) AND lease_owner = $3
RETURNING id;

-- name: get_execution
SELECT * FROM executions WHERE team_id = $1 AND id = $2;

-- name: get_executions
SELECT * FROM executions WHERE team_id = $1 AND id = ANY($2::text[]);

-- name: execution_status
SELECT status FROM executions WHERE team_id = $1 AND id = $2;

-- name: purge_batch
-- SKIP LOCKED: two nodes purging at once take different batches.
SELECT id FROM executions
WHERE stopped_at < $1 AND status IN ('succeeded', 'failed', 'cancelled')
ORDER BY stopped_at LIMIT $2
FOR UPDATE SKIP LOCKED;

-- name: list_by_workflow_desc
-- On ix_executions_team_workflow (team_id, workflow_id, created_at, id).
SELECT * FROM executions
WHERE workflow_id = $1 AND team_id = $2 AND (NOT $3::boolean OR status = 'failed')
ORDER BY created_at DESC, id DESC LIMIT $4 OFFSET $5;

-- name: list_by_workflow_asc
SELECT * FROM executions
WHERE workflow_id = $1 AND team_id = $2 AND (NOT $3::boolean OR status = 'failed')
ORDER BY created_at ASC, id ASC LIMIT $4 OFFSET $5;

-- name: list_by_installation_desc
SELECT * FROM executions
WHERE installation_id = $1 AND team_id = $2 AND (NOT $3::boolean OR status = 'failed')
ORDER BY id DESC LIMIT $4 OFFSET $5;

-- name: list_by_installation_asc
SELECT * FROM executions
WHERE installation_id = $1 AND team_id = $2 AND (NOT $3::boolean OR status = 'failed')
ORDER BY id ASC LIMIT $4 OFFSET $5;

-- name: steps_of_many
SELECT execution_id, seq, block_id, status, attempts, started_at, stopped_at, input, output,
       error, reused, truncated, item
FROM steps WHERE execution_id = ANY($1::text[])
ORDER BY execution_id, seq;

-- name: reruns_of_many
SELECT rerun_of, id FROM executions WHERE rerun_of = ANY($1::text[]) ORDER BY id;

-- name: delete_steps_of_many
DELETE FROM steps WHERE execution_id = ANY($1::text[]);

-- name: delete_executions_many
DELETE FROM executions WHERE id = ANY($1::text[]);

-- name: insert_idempotency_key
INSERT INTO idempotency_keys (team_id, key, execution_id, created_at) VALUES ($1, $2, $3, $4);

-- name: find_idempotency_key
SELECT execution_id FROM idempotency_keys WHERE team_id = $1 AND key = $2;

-- name: delete_idempotency_keys_of_many
DELETE FROM idempotency_keys WHERE execution_id = ANY($1::text[]);

-- name: workflow_activity
SELECT count(*) AS runs,
       count(*) FILTER (WHERE e.status = 'failed') AS errors,
       coalesce(sum((SELECT count(*) FROM steps s
                     WHERE s.execution_id = e.id AND NOT s.reused
                       AND s.block_id = ANY($1::text[]))), 0)::bigint AS actions
FROM executions e
WHERE e.team_id = $2 AND e.workflow_id = $3
  AND ($4::text IS NULL OR e.installation_id = $4::text);
