-- Webhook URLs (services/webhooks.py): one token per installation.

-- name: webhook_token_insert
INSERT INTO webhook_tokens (installation_id, team_id, token, created_at)
SELECT id, team_id, ?, ? FROM installations WHERE team_id = ? AND id = ?
ON CONFLICT (installation_id) DO NOTHING;

-- name: webhook_token_of
SELECT token FROM webhook_tokens WHERE team_id = ? AND installation_id = ?;

-- name: webhook_token_rotate
INSERT INTO webhook_tokens (installation_id, team_id, token, created_at)
SELECT id, team_id, ?, ? FROM installations WHERE team_id = ? AND id = ?
ON CONFLICT (installation_id) DO UPDATE SET token = excluded.token,
    created_at = excluded.created_at;

-- name: webhook_find
SELECT i.*, u.deleted_at AS user_deleted_at
FROM webhook_tokens AS w
JOIN installations AS i ON i.id = w.installation_id
JOIN users AS u ON u.id = i.user_id
WHERE w.token = ?;
