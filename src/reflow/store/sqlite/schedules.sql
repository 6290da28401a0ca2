-- Schedule triggers (src/reflow/scheduler.py): each installation's schedule state, and
-- the claims that make a due time fire once.

-- name: schedule_installations_updated_max
-- The latest installation update, on ix_installations_updated.
SELECT max(updated_at) FROM installations;

-- name: schedule_changed_installations
-- Installations changed at or after a time whose state is missing or was computed from
-- another change; on ix_installations_updated.
SELECT i.id, i.team_id, i.workflow_id, i.user_id, i.installed_version, i.active,
       i.installed_at, i.updated_at,
       s.installation_id AS s_installation_id, s.installation_updated_at AS s_updated_at,
       s.version AS s_version, s.cron AS s_cron, s.timezone AS s_timezone,
       s.missed AS s_missed, s.next_due_at AS s_next_due_at
FROM installations AS i
LEFT JOIN schedule_states AS s ON s.installation_id = i.id
WHERE i.updated_at >= ?
  AND (s.installation_id IS NULL OR s.installation_updated_at <> i.updated_at)
ORDER BY i.updated_at, i.id
LIMIT ?;

-- name: schedule_state_save
-- A state computed from the same installation change is kept: another scheduler wrote
-- it, and may have moved its next due time since.
INSERT INTO schedule_states (installation_id, team_id, installation_updated_at, version,
                             cron, timezone, missed, next_due_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (installation_id) DO UPDATE SET
    team_id = excluded.team_id,
    installation_updated_at = excluded.installation_updated_at,
    version = excluded.version,
    cron = excluded.cron,
    timezone = excluded.timezone,
    missed = excluded.missed,
    next_due_at = excluded.next_due_at
WHERE schedule_states.installation_updated_at <> excluded.installation_updated_at;

-- name: schedule_due
-- On ix_schedule_states_due (partial: only rows with a due time).
SELECT s.installation_id AS s_installation_id, s.team_id AS s_team_id,
       s.installation_updated_at AS s_updated_at, s.version AS s_version, s.cron AS s_cron,
       s.timezone AS s_timezone, s.missed AS s_missed, s.next_due_at AS s_next_due_at,
       i.id, i.team_id, i.workflow_id, i.user_id, i.installed_version, i.active,
       i.installed_at, i.updated_at, u.deleted_at AS user_deleted_at
FROM schedule_states AS s
LEFT JOIN installations AS i ON i.id = s.installation_id
LEFT JOIN users AS u ON u.id = i.user_id
WHERE s.next_due_at IS NOT NULL AND s.next_due_at <= ?
ORDER BY s.next_due_at
LIMIT ?;

-- name: schedule_move
-- Only from the due time this scheduler saw: a second scheduler moving it too finds no row.
UPDATE schedule_states SET next_due_at = ?
WHERE installation_id = ? AND next_due_at = ? AND installation_updated_at = ?;

-- name: schedule_move_active
-- schedule_move, and only while the installation is as seen, active, of a live user.
UPDATE schedule_states SET next_due_at = ?
WHERE installation_id = ? AND next_due_at = ? AND installation_updated_at = ?
  AND EXISTS (
    SELECT 1 FROM installations AS i JOIN users AS u ON u.id = i.user_id
    WHERE i.id = schedule_states.installation_id AND i.active
      AND i.updated_at = schedule_states.installation_updated_at AND u.deleted_at IS NULL);

-- name: schedule_claim
INSERT INTO schedule_claims (installation_id, due_at, execution_id, fired_at)
VALUES (?, ?, ?, ?)
ON CONFLICT (installation_id, due_at) DO NOTHING;

-- name: schedule_list
SELECT s.installation_id, s.cron, s.timezone, s.missed, s.next_due_at,
       w.id AS workflow_id, w.name AS workflow_name, u.id AS user_id, u.username,
       (SELECT max(c.due_at) FROM schedule_claims AS c
        WHERE c.installation_id = s.installation_id) AS last_fired_at
FROM schedule_states AS s
JOIN installations AS i ON i.id = s.installation_id
JOIN workflows AS w ON w.id = i.workflow_id
JOIN users AS u ON u.id = i.user_id
WHERE s.team_id = ? AND s.next_due_at IS NOT NULL AND s.cron IS NOT NULL
ORDER BY s.next_due_at, w.name, u.username;

-- name: schedule_claims_prune
-- On ix_schedule_claims_due, a batch at a time.
DELETE FROM schedule_claims WHERE (installation_id, due_at) IN (
    SELECT installation_id, due_at FROM schedule_claims WHERE due_at < ? ORDER BY due_at
    LIMIT ?);
