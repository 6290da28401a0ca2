"""PostgreSQL store: log search (GET /logs; store/log_search.py composes the SQL)."""

from __future__ import annotations

from reflow.store.log_search import LogPage, LogSearch, LogSearchSql, entry_of, numbered
from reflow.store.postgres._base import Q, _PostgresBase


class LogSearchMixin(_PostgresBase):
    """Log search (GET /logs; store/log_search.py composes the SQL)."""

    _log_search = LogSearchSql(Q, list)

    async def search_logs(self, search: LogSearch) -> LogPage:
        """A page of matching executions and their count (up to the cap), read on one
        connection."""
        page, count = self._log_search.page(search), self._log_search.count(search)
        async with self._connection("log search") as conn:
            found = await conn.fetch(numbered(page.sql), *page.params)
            total = await conn.fetchval(numbered(count.sql), *count.params)
        return LogPage([entry_of(r) for r in found], int(total))

    async def match_user_ids(self, team_id: str, text: str, limit: int) -> list[str]:
        """Users whose id, username or full name contains the text."""
        found = await self._fetch("log_search_match_users", team_id, text, limit)
        return [r["id"] for r in found]

    async def explain_log_search(self, search: LogSearch) -> list[str]:
        """EXPLAIN of the page and the count."""
        plans = []
        async with self._connection("explain log search") as conn:
            for statement in self._log_search.plan(search):
                found = await conn.fetch(f"EXPLAIN {numbered(statement.sql)}",
                                         *statement.params)
                plans.append("\n".join(r[0] for r in found))
        return plans
