-- Apps a team's users connect (services/apps.py).

-- name: apps_upsert
INSERT INTO apps (id, team_id, name, display_name, auth_kind, icon, definition, digest,
    created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (team_id, name) DO UPDATE SET
    display_name = excluded.display_name,
    auth_kind = excluded.auth_kind,
    icon = excluded.icon,
    definition = excluded.definition,
    digest = excluded.digest,
    updated_at = excluded.updated_at
RETURNING *;

-- name: apps_get
SELECT * FROM apps WHERE team_id = ? AND name = ?;

-- name: apps_list
SELECT * FROM apps WHERE team_id = ? ORDER BY name;
