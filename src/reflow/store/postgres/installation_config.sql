-- Headless installation (services/headless.py): the headless installations started for a
-- user and an integration, and each installation's configured values and pinned
-- credentials.

-- name: headless_installation_upsert
INSERT INTO headless_installations
    (id, team_id, user_id, integration_id, workflow_ids, credential_ids, created_at,
     updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (id) DO UPDATE SET
    workflow_ids = excluded.workflow_ids,
    credential_ids = excluded.credential_ids,
    updated_at = excluded.updated_at
WHERE headless_installations.team_id = excluded.team_id;

-- name: headless_installation_get
SELECT * FROM headless_installations WHERE team_id = $1 AND id = $2;

-- name: installation_settings
SELECT id, config, credential_ids FROM installations
WHERE team_id = $1 AND id = ANY($2::text[]) AND deleted_at IS NULL;

-- name: installation_configure
UPDATE installations
SET config = $1, credential_ids = $2, active = CASE WHEN $3 THEN true ELSE active END,
    installed_version = $4, updated_at = $5
WHERE team_id = $6 AND id = $7 AND deleted_at IS NULL;
