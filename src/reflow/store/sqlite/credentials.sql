-- End users' credentials for apps (services/credentials.py), and re-encryption under a
-- new key (`reflow credentials rotate-key`): each kind of sealed value is read in
-- batches by key and replaced only if it is still what was read.

-- name: credentials_insert
INSERT INTO credentials (id, team_id, user_id, app, sealed, health, health_reason,
    health_changed_at, expires_at, version, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?);

-- name: credentials_list
SELECT c.*, a.display_name AS app_display_name
FROM credentials AS c LEFT JOIN apps AS a ON a.team_id = c.team_id AND a.name = c.app
WHERE c.team_id = ? AND c.user_id = ?
ORDER BY c.created_at, c.id;

-- name: credential_apps
SELECT id, user_id, app FROM credentials
WHERE team_id = ? AND id IN (SELECT value FROM json_each(?));

-- name: credentials_delete_of_user
-- A deleted user's secrets go with it (its pending OAuth states too).
DELETE FROM credentials WHERE team_id = ? AND user_id = ?;

-- name: oauth_states_delete_of_user
DELETE FROM oauth_states WHERE team_id = ? AND user_id = ?;

-- name: credentials_delete
DELETE FROM credentials WHERE team_id = ? AND user_id = ? AND id = ?;

-- name: credentials_of_user_newest_first
SELECT c.*, NULL AS app_display_name FROM credentials AS c
WHERE c.team_id = ? AND c.user_id = ?
ORDER BY c.created_at DESC, c.id DESC;

-- name: credentials_pinned
SELECT credential_ids FROM installations WHERE team_id = ? AND id = ?;

-- name: credentials_pin
UPDATE installations SET credential_ids = ? WHERE team_id = ? AND id = ?;

-- name: rotate_credentials_batch
SELECT id, sealed FROM credentials WHERE id > ? ORDER BY id LIMIT ?;

-- name: rotate_credentials_set
UPDATE credentials SET sealed = ?, version = version + 1 WHERE id = ? AND sealed = ?;

-- name: rotate_error_stream_batch
SELECT id, error_stream_secret FROM teams
WHERE id > ? AND error_stream_secret IS NOT NULL ORDER BY id LIMIT ?;

-- name: rotate_error_stream_set
UPDATE teams SET error_stream_secret = ? WHERE id = ? AND error_stream_secret = ?;

-- name: rotate_triggers_batch
-- Only triggers with sealed parts (sealing.py): most hold none and need no key.
SELECT id, "trigger" FROM executions
WHERE id > ? AND instr(CAST("trigger" AS TEXT), '"$sealed"') > 0 ORDER BY id LIMIT ?;

-- name: rotate_triggers_set
UPDATE executions SET "trigger" = ? WHERE id = ? AND "trigger" = ?;

-- name: rotate_installations_batch
-- Configured values of installations with a secret field (services/headless.py).
SELECT id, config FROM installations
WHERE id > ? AND instr(config, '"$sealed"') > 0 ORDER BY id LIMIT ?;

-- name: rotate_installations_set
UPDATE installations SET config = ? WHERE id = ? AND config = ?;
