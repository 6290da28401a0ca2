-- The log search (GET /logs): a page, a capped count, and the clauses a search is made of
-- (store/log_search.py joins clauses with AND/OR; {where}, {order}, {dir} and {first}
-- are filled from fixed lists, every value is a parameter). The indexes of migration 0009
-- lead with team_id, then a column, then (created_at, id), so each filter or order below
-- has one that returns rows already in order; PostgreSQL's statistics pick among them.

-- name: log_search_page
-- The page's ids (read from the index when it holds the keys), then their rows and names.
SELECT x.id, x.workflow_id, x.installation_id, x.user_id, x.version, x.status, x.mode,
       x.created_at, x.started_at, x.stopped_at, u.username, u.full_name,
       w.name AS workflow_name, i.id AS integration_id,
       coalesce(i.name, w.integration) AS integration_name, i.icon AS integration_icon
FROM (SELECT e.id, e.status, e.user_id, e.created_at
      FROM executions e
      WHERE e.team_id = ? AND {where}
      ORDER BY {order} LIMIT ? OFFSET ?) AS e
JOIN executions x ON x.id = e.id
LEFT JOIN users u ON u.id = x.user_id
LEFT JOIN workflows w ON w.id = x.workflow_id
LEFT JOIN integrations i ON i.team_id = w.team_id AND i.name = w.integration
ORDER BY {order};

-- name: log_search_page_completed
-- Unfinished executions (no stopped_at: few, on the index's NULL end) by creation, and
-- finished ones by stopped_at, each half cut at offset + limit, then the page of the two.
SELECT x.id, x.workflow_id, x.installation_id, x.user_id, x.version, x.status, x.mode,
       x.created_at, x.started_at, x.stopped_at, u.username, u.full_name,
       w.name AS workflow_name, i.id AS integration_id,
       coalesce(i.name, w.integration) AS integration_name, i.icon AS integration_icon
FROM (SELECT * FROM (SELECT e.id, e.stopped_at, e.created_at, 0 AS part
                     FROM executions e
                     WHERE e.team_id = ? AND e.stopped_at IS NULL AND {where}
                     ORDER BY e.created_at {dir}, e.id {dir} LIMIT ?) AS unfinished
      UNION ALL
      SELECT * FROM (SELECT e.id, e.stopped_at, e.created_at, 1 AS part
                     FROM executions e
                     WHERE e.team_id = ? AND e.stopped_at IS NOT NULL AND {where}
                     ORDER BY e.stopped_at {dir}, e.created_at {dir}, e.id {dir} LIMIT ?)
                    AS finished
      ORDER BY part {first}, stopped_at {dir}, created_at {dir}, id {dir}
      LIMIT ? OFFSET ?) AS e
JOIN executions x ON x.id = e.id
LEFT JOIN users u ON u.id = x.user_id
LEFT JOIN workflows w ON w.id = x.workflow_id
LEFT JOIN integrations i ON i.team_id = w.team_id AND i.name = w.integration
ORDER BY e.part {first}, e.stopped_at {dir}, e.created_at {dir}, e.id {dir};

-- name: log_search_count
SELECT count(*) FROM (SELECT 1 FROM executions e WHERE e.team_id = ? AND {where} LIMIT ?)
    AS matching;

-- name: log_search_match_users
-- Users (deleted ones too: their logs are kept) whose id, username or full name holds the
-- text (lower case), up to a limit.
-- (A statement of its own: its placeholders are numbered.)
SELECT u.id FROM users u
WHERE u.team_id = $1 AND (strpos(lower(u.id), $2) > 0 OR strpos(lower(u.username), $2) > 0
                          OR strpos(lower(coalesce(u.full_name, '')), $2) > 0)
LIMIT $3;

-- name: log_search_where_status_eq
e.status = ?

-- name: log_search_where_status_in
e.status = ANY(?::text[])

-- name: log_search_where_id_eq
e.id = ?

-- name: log_search_where_id_ne
e.id <> ?

-- name: log_search_where_after_execution
(e.created_at, e.id) > (?, ?)

-- name: log_search_where_before_execution
(e.created_at, e.id) < (?, ?)

-- name: log_search_where_created_within
e.created_at >= ? AND e.created_at < ?

-- name: log_search_where_created_outside
e.created_at < ? OR e.created_at >= ?

-- name: log_search_where_created_from
e.created_at >= ?

-- name: log_search_where_created_before
e.created_at < ?

-- name: log_search_where_user_eq
e.user_id = ?

-- name: log_search_where_user_ne
e.user_id <> ?

-- name: log_search_where_user_in
e.user_id = ANY(?::text[])

-- name: log_search_where_user_not_in
NOT (e.user_id = ANY(?::text[]))

-- name: log_search_where_user_matches
-- Parameters: the team, then the text (lower case); as the next three, the same shape.
e.user_id IN (SELECT u.id FROM (SELECT ?::text AS team, ?::text AS t) AS n
              JOIN users u ON u.team_id = n.team
              WHERE strpos(lower(u.id), n.t) > 0 OR strpos(lower(u.username), n.t) > 0
                 OR strpos(lower(coalesce(u.full_name, '')), n.t) > 0)

-- name: log_search_where_user_not_matches
e.user_id NOT IN (SELECT u.id FROM (SELECT ?::text AS team, ?::text AS t) AS n
                  JOIN users u ON u.team_id = n.team
                  WHERE strpos(lower(u.id), n.t) > 0 OR strpos(lower(u.username), n.t) > 0
                     OR strpos(lower(coalesce(u.full_name, '')), n.t) > 0)

-- name: log_search_where_workflow_eq
e.workflow_id = ?

-- name: log_search_where_workflow_ne
e.workflow_id <> ?

-- name: log_search_where_workflow_matches
e.workflow_id IN (SELECT w.id FROM (SELECT ?::text AS team, ?::text AS t) AS n
                  JOIN workflows w ON w.team_id = n.team
                  WHERE strpos(lower(w.id), n.t) > 0 OR strpos(lower(w.name), n.t) > 0)

-- name: log_search_where_workflow_not_matches
e.workflow_id NOT IN (SELECT w.id FROM (SELECT ?::text AS team, ?::text AS t) AS n
                      JOIN workflows w ON w.team_id = n.team
                      WHERE strpos(lower(w.id), n.t) > 0 OR strpos(lower(w.name), n.t) > 0)

-- name: log_search_where_installation_eq
e.installation_id = ?

-- name: log_search_where_integration_eq
-- A workflow's integration is the one its definition names (integrations.name).
e.workflow_id IN (SELECT w.id FROM (SELECT ?::text AS team, ?::text AS v) AS n
                  JOIN workflows w ON w.team_id = n.team
                  LEFT JOIN integrations i ON i.team_id = w.team_id
                                          AND i.name = w.integration
                  WHERE w.integration = n.v OR i.id = n.v)

-- name: log_search_where_integration_ne
e.workflow_id NOT IN (SELECT w.id FROM (SELECT ?::text AS team, ?::text AS v) AS n
                      JOIN workflows w ON w.team_id = n.team
                      LEFT JOIN integrations i ON i.team_id = w.team_id
                                              AND i.name = w.integration
                      WHERE w.integration = n.v OR i.id = n.v)

-- name: log_search_where_integration_matches
e.workflow_id IN (SELECT w.id FROM (SELECT ?::text AS team, ?::text AS t) AS n
                  JOIN workflows w ON w.team_id = n.team
                  LEFT JOIN integrations i ON i.team_id = w.team_id
                                          AND i.name = w.integration
                  WHERE strpos(lower(w.integration), n.t) > 0 OR strpos(lower(i.id), n.t) > 0)

-- name: log_search_where_integration_not_matches
e.workflow_id NOT IN (SELECT w.id FROM (SELECT ?::text AS team, ?::text AS t) AS n
                      JOIN workflows w ON w.team_id = n.team
                      LEFT JOIN integrations i ON i.team_id = w.team_id
                                              AND i.name = w.integration
                      WHERE strpos(lower(w.integration), n.t) > 0
                         OR strpos(lower(i.id), n.t) > 0)

-- name: log_search_where_version_eq
e.version = ?

-- name: log_search_where_version_ne
e.version <> ?

-- name: log_search_where_version_gt
e.version > ?

-- name: log_search_where_version_lt
e.version < ?
