"""Maintenance: the reaper returns expired leases, promotes due jobs and purges old ones.

A base of the Engine (reference_server/engine.py), run as one background task per process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg

from reference_server import job_metrics, queries
from reference_server.models import JobStatus

Q = queries.load("jobs.sql")

log = logging.getLogger(__name__)

#: Rows handled per statement by the reaper and the promoter, so one pass never holds many locks.
MAINTENANCE_BATCH = 1000
#: Bound on the reaper's passes per tick when a backlog of expired leases builds up.
MAINTENANCE_MAX_PASSES = 20


class Maintenance:
    """The reaper's passes and its loop (a base of Engine, which sets these attributes)."""

    _pool: asyncpg.Pool
    _stopping: bool
    _reaper_wake: asyncio.Event
    reaper_interval_seconds: float
    retention_interval_seconds: float

    async def reap_expired_leases(self) -> int:
        """Expired leases back to pending (an attempt spent) or dead; returns how many."""
        total = 0
        for _ in range(MAINTENANCE_MAX_PASSES):
            async with self._pool.acquire() as conn, conn.transaction():
                rows = await conn.fetch(Q["reap_expired_leases"], MAINTENANCE_BATCH)
                wake = [r["wake_key"] for r in rows if r["status"] == JobStatus.PENDING]
                if wake:
                    await conn.fetchval(Q["notify_wake"], wake)
            for r in rows:
                if r["status"] == JobStatus.DEAD:
                    job_metrics.processed(r["queue_name"], r["job_type"], "dead").inc()
            total += len(rows)
            if len(rows) < MAINTENANCE_BATCH:
                break
        return total

    async def promote_due_jobs(self) -> int:
        """Scheduled jobs now due become pending and wake their lessees; returns how many."""
        total = 0
        for _ in range(MAINTENANCE_MAX_PASSES):
            async with self._pool.acquire() as conn, conn.transaction():
                rows = await conn.fetch(Q["promote_due_jobs"], MAINTENANCE_BATCH)
                if rows:
                    await conn.fetchval(Q["notify_wake"], [r["wake_key"] for r in rows])
            total += len(rows)
            if len(rows) < MAINTENANCE_BATCH:
                break
        return total

    async def purge_expired_jobs(self) -> int:
        """Delete finished jobs past their queue's retention_days; returns how many."""
        total = 0
        for _ in range(MAINTENANCE_MAX_PASSES):
            status = await self._pool.execute(Q["purge_expired_jobs"], MAINTENANCE_BATCH)
            deleted = int(status.split()[-1])
            total += deleted
            if deleted < MAINTENANCE_BATCH:
                break
        return total

    async def _reaper(self) -> None:
        loop = asyncio.get_running_loop()
        next_purge = loop.time()
        while not self._stopping:
            try:
                await self.reap_expired_leases()
                await self.promote_due_jobs()
                if loop.time() >= next_purge:
                    next_purge = loop.time() + self.retention_interval_seconds
                    await self.purge_expired_jobs()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("lease reaper pass failed; trying again next tick", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reaper_wake.wait(), self.reaper_interval_seconds)
