-- The team error stream (a URL and a sealed signing secret on the team's row) and its
-- outbox: one row per failed execution of a team that streams errors, delivered by the
-- "error stream" periodic job (services/error_stream.py).

-- name: error_stream_get
SELECT error_stream_url, error_stream_secret FROM teams WHERE id = ?;

-- name: error_stream_set
UPDATE teams SET error_stream_url = ?, error_stream_secret = ?, error_stream_retry_at = NULL
WHERE id = ?;

-- name: error_stream_clear
UPDATE teams SET error_stream_url = NULL, error_stream_secret = NULL,
    error_stream_retry_at = NULL
WHERE id = ?;

-- name: error_stream_pause
-- The team's receiver is down: its notifications wait until ?1 (the latest such time).
UPDATE teams SET error_stream_retry_at = max(coalesce(error_stream_retry_at, 0), ?1)
WHERE id = ?2;

-- name: error_outbox_delete_team
DELETE FROM error_outbox WHERE team_id = ?;

-- name: error_outbox_insert
-- A statement of the transaction that commits a failed execution: it inserts only when
-- the team streams errors, and only once per execution.
INSERT INTO error_outbox
    (execution_id, team_id, workflow_id, installation_id, user_id, version, mode, error,
     started_at, stopped_at, state, attempts, next_attempt_at)
SELECT ?1, id, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'pending', 0, ?9
FROM teams WHERE id = ?10 AND error_stream_url IS NOT NULL
ON CONFLICT (execution_id) DO NOTHING;

-- name: error_outbox_claim
-- Fair: each team's oldest due first, at most ?4 of a team, ?3 in all, none of a team
-- whose receiver is paused; a claimed row is due again at ?2 (when the process
-- delivering it died). ?1 is now.
UPDATE error_outbox SET attempts = attempts + 1, next_attempt_at = ?2, last_attempt_at = ?1
WHERE execution_id IN (
    SELECT execution_id FROM (
        SELECT o.execution_id, o.next_attempt_at,
               row_number() OVER (PARTITION BY o.team_id
                                  ORDER BY o.next_attempt_at, o.execution_id) AS turn
        FROM error_outbox AS o JOIN teams AS t ON t.id = o.team_id
        WHERE o.state = 'pending' AND o.next_attempt_at <= ?1
          AND (t.error_stream_retry_at IS NULL OR t.error_stream_retry_at <= ?1)
    )
    WHERE turn <= ?4
    ORDER BY turn, next_attempt_at LIMIT ?3
)
RETURNING execution_id;

-- name: error_outbox_claimed
SELECT o.*, t.error_stream_url, t.error_stream_secret
FROM error_outbox AS o LEFT JOIN teams AS t ON t.id = o.team_id
WHERE o.execution_id IN (SELECT value FROM json_each(?))
ORDER BY o.next_attempt_at, o.execution_id;

-- name: error_outbox_delivered
UPDATE error_outbox SET state = 'delivered', finished_at = ?, last_error = NULL
WHERE execution_id = ?;

-- name: error_outbox_retry
UPDATE error_outbox SET next_attempt_at = ?, last_error = ?
WHERE execution_id = ? AND state = 'pending';

-- name: error_outbox_dead
UPDATE error_outbox SET state = 'dead', finished_at = ?, last_error = ?
WHERE execution_id = ?;

-- name: error_outbox_drop
DELETE FROM error_outbox WHERE execution_id = ?;

-- name: error_outbox_purge
DELETE FROM error_outbox WHERE execution_id IN (
    SELECT execution_id FROM error_outbox
    WHERE finished_at < ? AND state IN ('delivered', 'dead')
    LIMIT ?
);

-- name: error_outbox_stats
SELECT coalesce(sum(state = 'pending'), 0) AS pending,
       coalesce(sum(state = 'delivered'), 0) AS delivered,
       coalesce(sum(state = 'dead'), 0) AS dead,
       max(CASE WHEN state = 'delivered' THEN finished_at END) AS last_delivered_at
FROM error_outbox WHERE team_id = ?;

-- name: error_outbox_last_failure
-- The latest failed attempt of a notification not delivered (yet).
SELECT execution_id, last_error, last_attempt_at FROM error_outbox
WHERE team_id = ? AND state <> 'delivered' AND last_error IS NOT NULL
ORDER BY last_attempt_at DESC LIMIT 1;
