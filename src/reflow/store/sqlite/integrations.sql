-- Integrations, and users' installations deleted (W6) and revived.

-- name: integrations_upsert
INSERT INTO integrations (id, team_id, name, app, description, icon, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (team_id, name) DO UPDATE SET
    app = excluded.app,
    description = excluded.description,
    icon = excluded.icon,
    updated_at = excluded.updated_at
RETURNING id, team_id, name, app, description, icon, created_at, updated_at;

-- name: integrations_insert_default
INSERT INTO integrations (id, team_id, name, app, description, icon, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (team_id, name) DO NOTHING;

-- name: integrations_get
SELECT id, team_id, name, app, description, icon, created_at, updated_at FROM integrations
WHERE team_id = ? AND (id = ? OR name = ?)
ORDER BY id = ? DESC LIMIT 1;

-- name: integrations_list
SELECT id, team_id, name, app, description, icon, created_at, updated_at FROM integrations
WHERE team_id = ? ORDER BY name, id;

-- name: integrations_install
-- A new installation, or the deleted one of the same workflow and user revived (its id
-- kept); nothing when a live one exists (the caller reads that one).
INSERT INTO installations
    (id, team_id, workflow_id, user_id, installed_version, active, installed_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (workflow_id, user_id) DO UPDATE SET
    installed_version = excluded.installed_version,
    active = excluded.active,
    installed_at = excluded.installed_at,
    updated_at = excluded.updated_at,
    deleted_at = NULL
WHERE installations.deleted_at IS NOT NULL
RETURNING id, team_id, workflow_id, user_id, installed_version, active, installed_at,
    updated_at;

-- name: integrations_unfinished_of_installation
SELECT count(*) FROM executions
WHERE team_id = ? AND installation_id = ? AND status IN ('queued', 'running', 'waiting');

-- name: integrations_delete_installation
UPDATE installations SET active = 0, deleted_at = ?, updated_at = ?
WHERE team_id = ? AND id = ? AND deleted_at IS NULL;

-- name: integrations_get_deleted_installation
SELECT id, team_id, workflow_id, user_id, installed_version, active, installed_at, updated_at
FROM installations
WHERE team_id = ? AND deleted_at IS NOT NULL
  AND (id = ? OR (workflow_id = ? AND user_id = ?));
