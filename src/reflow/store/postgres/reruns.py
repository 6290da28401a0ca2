"""PostgreSQL store: bulk rerun jobs (reruns.sql; services/reruns.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reflow.domain.reruns import (
    ItemResult,
    PendingItem,
    RerunFilter,
    RerunItem,
    RerunJob,
    RerunSource,
)
from reflow.store import rows
from reflow.store.postgres._base import Q, _clean, _count, _has_nul, _PostgresBase


class RerunsMixin(_PostgresBase):
    """Bulk rerun jobs (reruns.sql; services/reruns.py)."""

    @staticmethod
    def _selection(team_id: str, f: RerunFilter, limit: int) -> tuple[Any, ...]:
        return (team_id, f.status.value, f.since, f.until, f.workflow_id, f.user_id,
                None if f.error is None else _clean(f.error), f.block_id, limit)

    async def rerun_sources(
        self, team_id: str, selection: RerunFilter, limit: int
    ) -> list[RerunSource]:
        """The executions the filter selects, oldest first."""
        found = await self._fetch("reruns_sources", *self._selection(team_id, selection, limit))
        return [rows.rerun_source_of(r) for r in found]

    async def count_rerun_sources(self, team_id: str, selection: RerunFilter, cap: int) -> int:
        """How many executions the filter selects, up to ``cap``."""
        row = await self._fetchrow("reruns_sources_count",
                                   *self._selection(team_id, selection, cap))
        return 0 if row is None else int(row[0])

    async def create_rerun_job(self, job: RerunJob, execution_ids: Sequence[str]) -> None:
        """Insert the job and its items in one transaction."""
        async with self._connection("reruns_job_insert") as conn, conn.transaction():
            await conn.execute(Q["reruns_job_insert"], *rows.rerun_job_params(job))
            await conn.execute(Q["reruns_item_insert"], job.id, list(execution_ids))

    async def get_rerun_job(self, team_id: str, job_id: str) -> RerunJob | None:
        """One of the team's jobs."""
        row = await self._fetchrow("reruns_job_get", team_id, job_id)
        return rows.rerun_job_of(row) if row else None

    async def list_rerun_jobs(
        self, team_id: str, before: str | None, limit: int
    ) -> list[RerunJob]:
        """The team's jobs, newest first."""
        return [rows.rerun_job_of(r)
                for r in await self._fetch("reruns_job_list", team_id, before, limit)]

    async def rerun_job_results(
        self, team_id: str, job_id: str, offset: int, limit: int
    ) -> list[RerunItem]:
        """A page of the job's items."""
        return [rows.rerun_item_of(r)
                for r in await self._fetch("reruns_results", team_id, job_id, offset, limit)]

    async def claim_rerun_job(self, owner: str, now: int, lease_until: int) -> RerunJob | None:
        """Lease a job (SKIP LOCKED: concurrent runners take different jobs)."""
        async with self._connection("reruns_job_claim") as conn:
            row = await conn.fetchrow(Q["reruns_job_claim"], owner, lease_until, now)
        return rows.rerun_job_of(row) if row else None

    async def pending_rerun_items(
        self, job: RerunJob, key_prefix: str, limit: int
    ) -> list[PendingItem]:
        """The job's next pending items."""
        found = await self._fetch("reruns_items_pending", job.id, job.team_id,
                                  f"{key_prefix}{job.id}:", limit)
        return [PendingItem(r[0], r[1]) for r in found]

    async def finish_rerun_items(
        self, job_id: str, results: Sequence[ItemResult], now: int
    ) -> RerunJob | None:
        """Record results, recount, end the job when nothing is pending."""
        async with self._connection("reruns_item_finish") as conn, conn.transaction():
            await conn.execute(Q["reruns_job_lock"], job_id)
            await conn.execute(
                Q["reruns_item_finish"], job_id, [r.execution_id for r in results],
                [r.state.value for r in results], [r.new_execution_id for r in results],
                [None if r.error is None else _clean(r.error) for r in results])
            await conn.execute(Q["reruns_job_recount"], job_id)
            await conn.fetch(Q["reruns_job_complete"], job_id, now)
            row = await conn.fetchrow(Q["reruns_job_get_any"], job_id)
        return rows.rerun_job_of(row) if row else None

    async def cancel_rerun_job(self, team_id: str, job_id: str, now: int) -> RerunJob | None:
        """Cancel the job's pending items and the job."""
        if _has_nul((job_id,)):
            return None
        async with self._connection("reruns_job_cancel") as conn, conn.transaction():
            if _count(await conn.execute(Q["reruns_job_cancel"], now, team_id, job_id)):
                await conn.execute(Q["reruns_items_cancel"], job_id)
                await conn.execute(Q["reruns_job_recount"], job_id)
            row = await conn.fetchrow(Q["reruns_job_get"], team_id, job_id)
        return rows.rerun_job_of(row) if row else None

    async def release_rerun_jobs(self, owner: str) -> int:
        """Give back the owner's job leases."""
        return await self._execute("reruns_release", owner)

    async def purge_rerun_jobs(self, finished_before: int, limit: int) -> int:
        """Delete a batch of ended jobs with their items."""
        return await self._execute("reruns_purge", finished_before, limit)
