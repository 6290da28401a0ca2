"""SQLite store: log search (GET /logs; store/log_search.py composes the SQL)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson

from reflow.errors import StoreError
from reflow.store.log_search import LogPage, LogSearch, LogSearchSql, entry_of
from reflow.store.sqlite._base import Q, _SqliteBase


class LogSearchMixin(_SqliteBase):
    """Log search (GET /logs; store/log_search.py composes the SQL)."""

    _log_search = LogSearchSql(Q, lambda values: orjson.dumps(list(values)).decode(),
                               hints=True)

    def _read_sql(self, sql: str, params: Sequence[Any]) -> list[sqlite3.Row]:
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            raise StoreError(f"log search failed: {exc}") from exc

    async def search_logs(self, search: LogSearch) -> LogPage:
        """A page of matching executions and their count (up to the cap)."""
        page, count = self._log_search.page(search), self._log_search.count(search)
        entries = [entry_of(r) for r in self._read_sql(page.sql, page.params)]
        (total,) = self._read_sql(count.sql, count.params)[0]
        return LogPage(entries, int(total))

    async def match_user_ids(self, team_id: str, text: str, limit: int) -> list[str]:
        """Users whose id, username or full name contains the text."""
        return [r[0] for r in self._all("log_search_match_users", (team_id, text, limit))]

    async def explain_log_search(self, search: LogSearch) -> list[str]:
        """EXPLAIN QUERY PLAN of the page and the count."""
        plans = []
        for statement in self._log_search.plan(search):
            depth: dict[int, int] = {0: -1}
            lines = []
            # Rows: (id, parent, unused, detail); a step is indented under its parent.
            for node, parent, _, detail in self._read_sql(f"EXPLAIN QUERY PLAN {statement.sql}",
                                                          statement.params):
                depth[node] = depth.get(parent, -1) + 1
                lines.append("  " * depth[node] + str(detail))
            plans.append("\n".join(lines))
        return plans
