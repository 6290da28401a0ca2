-- End users' credentials for apps (services/credentials.py), and re-encryption under a
-- new key (`reflow credentials rotate-key`): each kind of sealed value is read in
-- batches by key and replaced only if it is still what was read.

-- name: credentials_insert
INSERT INTO credentials (id, team_id, user_id, app, sealed, health, health_reason,
    health_changed_at, expires_at, version, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12);

-- name: credentials_list
SELECT c.*, a.display_name AS app_display_name
FROM credentials AS c LEFT JOIN apps AS a ON a.team_id = c.team_id AND a.name = c.app
WHERE c.team_id = $1 AND c.user_id = $2
ORDER BY c.created_at, c.id;

-- name: credential_apps
SELECT id, user_id, app FROM credentials WHERE team_id = $1 AND id = ANY($2::text[]);

-- name: credentials_delete_of_user
-- A deleted user's secrets go with it (its pending OAuth states too).
DELETE FROM credentials WHERE team_id = $1 AND user_id = $2;

-- name: oauth_states_delete_of_user
DELETE FROM oauth_states WHERE team_id = $1 AND user_id = $2;

-- name: credentials_delete
DELETE FROM credentials WHERE team_id = $1 AND user_id = $2 AND id = $3;

-- name: credentials_of_user_newest_first
SELECT c.*, NULL AS app_display_name FROM credentials AS c
WHERE c.team_id = $1 AND c.user_id = $2
ORDER BY c.created_at DESC, c.id DESC;

-- name: credentials_pinned
SELECT credential_ids FROM installations WHERE team_id = $1 AND id = $2;

-- name: credentials_pin
UPDATE installations SET credential_ids = $1 WHERE team_id = $2 AND id = $3;

-- name: rotate_credentials_batch
SELECT id, sealed FROM credentials WHERE id > $1 ORDER BY id LIMIT $2;

-- name: rotate_credentials_set
UPDATE credentials SET sealed = $1, version = version + 1 WHERE id = $2 AND sealed = $3;

-- name: rotate_error_stream_batch
SELECT id, error_stream_secret FROM teams
WHERE id > $1 AND error_stream_secret IS NOT NULL ORDER BY id LIMIT $2;

-- name: rotate_error_stream_set
UPDATE teams SET error_stream_secret = $1 WHERE id = $2 AND error_stream_secret = $3;

-- name: rotate_triggers_batch
-- Only triggers with sealed parts (sealing.py): most hold none and need no key.
SELECT id, "trigger" FROM executions
WHERE id > $1 AND position('"$sealed"'::bytea in "trigger") > 0 ORDER BY id LIMIT $2;

-- name: rotate_triggers_set
UPDATE executions SET "trigger" = $1 WHERE id = $2 AND "trigger" = $3;

-- name: rotate_installations_batch
-- Configured values of installations with a secret field (services/headless.py).
SELECT id, config FROM installations
WHERE id > $1 AND position('"$sealed"' in config) > 0 ORDER BY id LIMIT $2;

-- name: rotate_installations_set
UPDATE installations SET config = $1 WHERE id = $2 AND config = $3;
