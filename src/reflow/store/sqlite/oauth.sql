-- OAuth connections (services/oauth.py): the connect flow's single-use states, one token
-- refresh at a time per credential (a lease on its row, claimed by a conditional UPDATE;
-- the new values written only under that lease and the version read), credential events,
-- the team's redirect URL, and the credential notifications of the error stream's outbox.

-- name: oauth_state_insert
INSERT INTO oauth_states (state_hash, team_id, user_id, app, created_at, expires_at)
VALUES (?, ?, ?, ?, ?, ?);

-- name: oauth_state_take
-- Single use: whoever deletes the row has it.
DELETE FROM oauth_states WHERE state_hash = ?
RETURNING team_id, user_id, app, expires_at;

-- name: oauth_state_purge
DELETE FROM oauth_states WHERE state_hash IN (
    SELECT state_hash FROM oauth_states WHERE expires_at < ? LIMIT ?
);

-- name: oauth_redirect_get
SELECT oauth_redirect_url FROM teams WHERE id = ?;

-- name: oauth_redirect_set
UPDATE teams SET oauth_redirect_url = ? WHERE id = ?;

-- name: oauth_credential_get
SELECT c.*, a.display_name AS app_display_name
FROM credentials AS c LEFT JOIN apps AS a ON a.team_id = c.team_id AND a.name = c.app
WHERE c.team_id = ? AND c.id = ?;

-- name: oauth_credential_reconnect
-- The connect flow's new tokens replace the credential's values: healthy again.
UPDATE credentials SET sealed = ?1, expires_at = ?2, version = version + 1, updated_at = ?3,
    health = 'ok', health_reason = NULL,
    health_changed_at = CASE WHEN health = 'ok' THEN health_changed_at ELSE ?3 END,
    refresh_owner = NULL, refresh_until = NULL, refresh_blocked_until = NULL,
    refresh_failures = 0
WHERE team_id = ?4 AND id = ?5;

-- name: oauth_refresh_claim
-- The lease to refresh: free (or lapsed), the version as read, no cool-down running.
UPDATE credentials SET refresh_owner = ?1, refresh_until = ?2
WHERE id = ?3 AND version = ?4 AND (refresh_until IS NULL OR refresh_until < ?5)
  AND coalesce(refresh_blocked_until, 0) <= ?5;

-- name: oauth_refreshed
-- The new access token and the (rotated) refresh token, in one write.
UPDATE credentials SET sealed = ?1, expires_at = ?2, version = version + 1, updated_at = ?3,
    health = 'ok', health_reason = NULL,
    health_changed_at = CASE WHEN health = 'ok' THEN health_changed_at ELSE ?3 END,
    refresh_owner = NULL, refresh_until = NULL, refresh_blocked_until = NULL,
    refresh_failures = 0
WHERE id = ?4 AND version = ?5 AND refresh_owner = ?6;

-- name: oauth_refresh_refused
UPDATE credentials SET health = 'needs_reconnect', health_reason = ?1,
    health_changed_at = CASE WHEN health = 'needs_reconnect' THEN health_changed_at
                             ELSE ?2 END,
    version = version + 1, updated_at = ?2, refresh_owner = NULL, refresh_until = NULL,
    refresh_blocked_until = ?3, refresh_failures = refresh_failures + 1
WHERE id = ?4 AND version = ?5 AND refresh_owner = ?6;

-- name: oauth_refresh_release
-- A refresh that failed for a passing reason: the lease freed, none tried before the time given.
UPDATE credentials SET refresh_owner = NULL, refresh_until = NULL, refresh_blocked_until = ?1
WHERE id = ?2 AND refresh_owner = ?3;

-- name: credential_event_insert
INSERT INTO credential_events (id, team_id, credential_id, user_id, app, kind, message,
    created_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?);

-- name: credential_events_list
SELECT * FROM credential_events
WHERE team_id = ?1 AND (?2 IS NULL OR user_id = ?2)
ORDER BY created_at DESC, id DESC LIMIT ?3;

-- name: credential_outbox_insert
-- A credential notification rides the error stream's outbox, when the team streams.
INSERT INTO error_outbox
    (execution_id, team_id, workflow_id, installation_id, user_id, version, mode, error,
     started_at, stopped_at, state, attempts, next_attempt_at, kind, payload)
SELECT ?1, id, '', '', ?2, 0, '', NULL, NULL, ?3, 'pending', 0, ?3, ?4, ?5
FROM teams WHERE id = ?6 AND error_stream_url IS NOT NULL;
