"""SQLite store: bulk rerun jobs (reruns.sql; services/reruns.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from reflow.domain.reruns import (
    ItemResult,
    PendingItem,
    RerunFilter,
    RerunItem,
    RerunJob,
    RerunSource,
)
from reflow.store import rows
from reflow.store.sqlite._base import Q, _SqliteBase


class RerunsMixin(_SqliteBase):
    """Bulk rerun jobs (reruns.sql; services/reruns.py)."""

    @staticmethod
    def _selection(team_id: str, f: RerunFilter, limit: int) -> tuple[Any, ...]:
        return (team_id, f.status.value, f.since, f.until, f.workflow_id, f.user_id, f.error,
                f.block_id, limit)

    async def rerun_sources(
        self, team_id: str, selection: RerunFilter, limit: int
    ) -> list[RerunSource]:
        """The executions the filter selects, oldest first."""
        found = self._all("reruns_sources", self._selection(team_id, selection, limit))
        return [rows.rerun_source_of(r) for r in found]

    async def count_rerun_sources(self, team_id: str, selection: RerunFilter, cap: int) -> int:
        """How many executions the filter selects, up to ``cap``."""
        row = self._one("reruns_sources_count", self._selection(team_id, selection, cap))
        return int(row[0]) if row else 0

    async def create_rerun_job(self, job: RerunJob, execution_ids: Sequence[str]) -> None:
        """Insert the job and its items in one transaction."""
        with self._transaction() as db:
            db.execute(Q["reruns_job_insert"], rows.rerun_job_params(job))
            db.executemany(Q["reruns_item_insert"],
                           [(job.id, e, seq) for seq, e in enumerate(execution_ids)])

    async def get_rerun_job(self, team_id: str, job_id: str) -> RerunJob | None:
        """One of the team's jobs."""
        row = self._one("reruns_job_get", (team_id, job_id))
        return rows.rerun_job_of(row) if row else None

    async def list_rerun_jobs(
        self, team_id: str, before: str | None, limit: int
    ) -> list[RerunJob]:
        """The team's jobs, newest first."""
        return [rows.rerun_job_of(r)
                for r in self._all("reruns_job_list", (team_id, before, limit))]

    async def rerun_job_results(
        self, team_id: str, job_id: str, offset: int, limit: int
    ) -> list[RerunItem]:
        """A page of the job's items."""
        return [rows.rerun_item_of(r)
                for r in self._all("reruns_results", (team_id, job_id, offset, limit))]

    async def claim_rerun_job(self, owner: str, now: int, lease_until: int) -> RerunJob | None:
        """Lease a job (one process runs jobs on a SQLite file: no lock to skip)."""
        with self._transaction() as db:
            found = db.execute(Q["reruns_job_claim"], (owner, lease_until, now)).fetchall()
        return rows.rerun_job_of(found[0]) if found else None

    async def pending_rerun_items(
        self, job: RerunJob, key_prefix: str, limit: int
    ) -> list[PendingItem]:
        """The job's next pending items."""
        found = self._all("reruns_items_pending",
                          (job.id, job.team_id, f"{key_prefix}{job.id}:", limit))
        return [PendingItem(r[0], r[1]) for r in found]

    async def finish_rerun_items(
        self, job_id: str, results: Sequence[ItemResult], now: int
    ) -> RerunJob | None:
        """Record results, recount, end the job when nothing is pending."""
        with self._transaction() as db:
            db.executemany(Q["reruns_item_finish"], [
                (r.state.value, r.new_execution_id, r.error, job_id, r.execution_id)
                for r in results])
            db.execute(Q["reruns_job_recount"], (job_id,))
            db.execute(Q["reruns_job_complete"], (job_id, now)).fetchall()
            row = db.execute(Q["reruns_job_get_any"], (job_id,)).fetchone()
        return rows.rerun_job_of(row) if row else None

    async def cancel_rerun_job(self, team_id: str, job_id: str, now: int) -> RerunJob | None:
        """Cancel the job's pending items and the job."""
        with self._transaction() as db:
            row = db.execute(Q["reruns_job_get"], (team_id, job_id)).fetchone()
            if row is None:
                return None
            if db.execute(Q["reruns_job_cancel"], (now, team_id, job_id)).rowcount:
                db.execute(Q["reruns_items_cancel"], (job_id,))
                db.execute(Q["reruns_job_recount"], (job_id,))
            row = db.execute(Q["reruns_job_get"], (team_id, job_id)).fetchone()
        return rows.rerun_job_of(row)

    async def release_rerun_jobs(self, owner: str) -> int:
        """Give back the owner's job leases."""
        with self._transaction() as db:
            return db.execute(Q["reruns_release"], (owner,)).rowcount

    async def purge_rerun_jobs(self, finished_before: int, limit: int) -> int:
        """Delete a batch of ended jobs with their items."""
        ids = [r[0] for r in self._all("reruns_purge_batch", (finished_before, limit))]
        if ids:
            encoded = orjson.dumps(ids)
            self._write([("reruns_purge_items", (encoded,)), ("reruns_purge_jobs", (encoded,))])
        return len(ids)
