-- Headless installation (services/headless.py): the headless installations started for a
-- user and an integration, and each installation's configured values and pinned
-- credentials.

-- name: headless_installation_upsert
INSERT INTO headless_installations
    (id, team_id, user_id, integration_id, workflow_ids, credential_ids, created_at,
     updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET
    workflow_ids = excluded.workflow_ids,
    credential_ids = excluded.credential_ids,
    updated_at = excluded.updated_at
WHERE headless_installations.team_id = excluded.team_id;

-- name: headless_installation_get
SELECT * FROM headless_installations WHERE team_id = ? AND id = ?;

-- name: installation_settings
SELECT id, config, credential_ids FROM installations
WHERE team_id = ? AND id IN (SELECT value FROM json_each(?)) AND deleted_at IS NULL;

-- name: installation_configure
UPDATE installations
SET config = ?, credential_ids = ?, active = CASE WHEN ? THEN 1 ELSE active END,
    installed_version = ?, updated_at = ?
WHERE team_id = ? AND id = ? AND deleted_at IS NULL;
