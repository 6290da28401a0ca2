-- The team error stream (a URL and a sealed signing secret on the team's row) and its
-- outbox: one row per failed execution of a team that streams errors, delivered by the
-- "error stream" periodic job (services/error_stream.py).

-- name: error_stream_get
SELECT error_stream_url, error_stream_secret FROM teams WHERE id = $1;

-- name: error_stream_set
UPDATE teams SET error_stream_url = $1, error_stream_secret = $2, error_stream_retry_at = NULL
WHERE id = $3;

-- name: error_stream_clear
UPDATE teams SET error_stream_url = NULL, error_stream_secret = NULL,
    error_stream_retry_at = NULL
WHERE id = $1;

-- name: error_stream_pause
-- The team's receiver is down: its notifications wait until $1 (the latest such time).
UPDATE teams SET error_stream_retry_at = greatest(coalesce(error_stream_retry_at, 0), $1)
WHERE id = $2;

-- name: error_outbox_delete_team
DELETE FROM error_outbox WHERE team_id = $1;

-- name: error_outbox_insert
-- A statement of the transaction that commits a failed execution: it inserts only when
-- the team streams errors, and only once per execution.
INSERT INTO error_outbox
    (execution_id, team_id, workflow_id, installation_id, user_id, version, mode, error,
     started_at, stopped_at, state, attempts, next_attempt_at)
SELECT $1::text, id, $2::text, $3::text, $4::text, $5::integer, $6::text, $7::bytea,
       $8::bigint, $9::bigint, 'pending', 0, $9::bigint
FROM teams WHERE id = $10 AND error_stream_url IS NOT NULL
ON CONFLICT (execution_id) DO NOTHING;

-- name: error_outbox_claim
-- Fair: each team's oldest due first, at most $4 of a team, $3 in all, none of a team
-- whose receiver is paused; rows another process holds are skipped (SKIP LOCKED), and
-- the UPDATE checks again that each is due (one another claimer committed meanwhile is
-- left). A claimed row is due again at $2 (when the process delivering it died). $1 is now.
WITH ranked AS (
    SELECT o.execution_id, o.next_attempt_at,
           row_number() OVER (PARTITION BY o.team_id
                              ORDER BY o.next_attempt_at, o.execution_id) AS turn
    FROM error_outbox AS o JOIN teams AS t ON t.id = o.team_id
    WHERE o.state = 'pending' AND o.next_attempt_at <= $1
      AND (t.error_stream_retry_at IS NULL OR t.error_stream_retry_at <= $1)
), locked AS (
    SELECT o.execution_id FROM error_outbox AS o JOIN ranked AS r USING (execution_id)
    WHERE r.turn <= $4
    ORDER BY r.turn, r.next_attempt_at LIMIT $3
    FOR UPDATE OF o SKIP LOCKED
)
UPDATE error_outbox AS o
SET attempts = o.attempts + 1, next_attempt_at = $2, last_attempt_at = $1
FROM locked AS l, teams AS t
WHERE o.execution_id = l.execution_id AND t.id = o.team_id
  AND o.state = 'pending' AND o.next_attempt_at <= $1
RETURNING o.*, t.error_stream_url, t.error_stream_secret;

-- name: error_outbox_delivered
UPDATE error_outbox SET state = 'delivered', finished_at = $1, last_error = NULL
WHERE execution_id = $2;

-- name: error_outbox_retry
UPDATE error_outbox SET next_attempt_at = $1, last_error = $2
WHERE execution_id = $3 AND state = 'pending';

-- name: error_outbox_dead
UPDATE error_outbox SET state = 'dead', finished_at = $1, last_error = $2
WHERE execution_id = $3;

-- name: error_outbox_drop
DELETE FROM error_outbox WHERE execution_id = $1;

-- name: error_outbox_purge
-- Rows another node is purging are skipped, so nodes purging at once take different ones.
DELETE FROM error_outbox WHERE execution_id IN (
    SELECT execution_id FROM error_outbox
    WHERE finished_at < $1 AND state IN ('delivered', 'dead')
    LIMIT $2
    FOR UPDATE SKIP LOCKED
);

-- name: error_outbox_stats
SELECT count(*) FILTER (WHERE state = 'pending') AS pending,
       count(*) FILTER (WHERE state = 'delivered') AS delivered,
       count(*) FILTER (WHERE state = 'dead') AS dead,
       max(finished_at) FILTER (WHERE state = 'delivered') AS last_delivered_at
FROM error_outbox WHERE team_id = $1;

-- name: error_outbox_last_failure
-- The latest failed attempt of a notification not delivered (yet).
SELECT execution_id, last_error, last_attempt_at FROM error_outbox
WHERE team_id = $1 AND state <> 'delivered' AND last_error IS NOT NULL
ORDER BY last_attempt_at DESC LIMIT 1;
