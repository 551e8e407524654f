"""Maintenance: the reaper returns expired leases, promotes due jobs and purges old ones.

A base of the Engine (reference_server/engine.py), run as one background task per process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from functools import partial
from typing import TYPE_CHECKING

import asyncpg

from reference_server import job_metrics, queries
from reference_server.job_store import LONG_STATEMENT_SECONDS
from reference_server.models import JobStatus

if TYPE_CHECKING:
    from collections.abc import Callable
    from uuid import UUID

Q = queries.load("jobs.sql")

log = logging.getLogger(__name__)

#: Rows handled per statement by the reaper and the promoter, so one pass never holds many locks.
MAINTENANCE_BATCH = 1000
#: Bound on the reaper's passes per tick when a backlog of expired leases builds up.
MAINTENANCE_MAX_PASSES = 20
#: A lessee whose lock is free and whose renewal (every builtin_jobs.RENEW_SECONDS) is this overdue
#: is gone. The delay spares a live process that lost its LISTEN connection for a moment (a
#: database restart) and has not locked again yet: it still renews.
LESSEE_GONE_AFTER_SECONDS = 5.0
#: A tick this much later than due means the database or this process was away...
REAPER_GAP_SECONDS = 2.0
#: ... and leases are taken back only this long after it is back (renewals and acks first).
RECOVERY_GRACE_SECONDS = 5.0


def _fresh(loop: asyncio.AbstractEventLoop, started: float) -> bool:
    """This reaper pass has not been held up (the process or its database away)."""
    return loop.time() - started <= REAPER_GAP_SECONDS


class Maintenance:
    """The reaper's passes and its loop (a base of Engine, which sets these attributes)."""

    _pool: asyncpg.Pool
    _stopping: bool
    builtin_worker_id: UUID
    _reaper_wake: asyncio.Event
    reaper_interval_seconds: float
    retention_interval_seconds: float

    async def reap_expired_leases(self, fresh: Callable[[], bool] | None = None) -> int:
        """Expired leases back to pending (an attempt spent) or dead; returns how many.

        `fresh`, when given, is asked right before each statement goes out (nothing awaits in
        between): False means this process was away meanwhile, and nothing more is reaped now.
        """
        total = 0
        for _ in range(MAINTENANCE_MAX_PASSES):
            async with self._pool.acquire() as conn:
                if fresh is not None and not fresh():
                    break
                # One statement (its NOTIFYs included), so no await comes between the check
                # above and the statement: the lease holders had their chance to renew.
                rows = await conn.fetch(Q["reap_expired_leases"], MAINTENANCE_BATCH)
            for r in rows:
                if r["status"] == JobStatus.DEAD:
                    job_metrics.processed(r["queue_name"], r["job_type"], "dead").inc()
            total += len(rows)
            if len(rows) < MAINTENANCE_BATCH:
                break
        return total

    async def release_gone_lessees(
        self, gone_after_seconds: float = LESSEE_GONE_AFTER_SECONDS
    ) -> int:
        """Leases held by built-in pools whose process is gone: pending again at once (the
        attempt counts, as when a lease runs out) or dead; returns how many jobs."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                Q["release_gone_lessees"], self.builtin_worker_id, gone_after_seconds
            )
            wake = [r["wake_key"] for r in rows if r["status"] == JobStatus.PENDING]
            if wake:
                await conn.fetchval(Q["notify_wake"], wake)
        for r in rows:
            if r["status"] == JobStatus.DEAD:
                job_metrics.processed(r["queue_name"], r["job_type"], "dead").inc()
        if rows:
            log.info("released %d leases of built-in pools whose process is gone", len(rows))
        return len(rows)

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
            status = await self._pool.execute(
                Q["purge_expired_jobs"], MAINTENANCE_BATCH, timeout=LONG_STATEMENT_SECONDS
            )
            deleted = int(status.split()[-1])
            total += deleted
            if deleted < MAINTENANCE_BATCH:
                break
        return total

    async def _reaper(self) -> None:
        loop = asyncio.get_running_loop()
        next_purge = loop.time()
        last_ok = loop.time()
        reap_from = loop.time()
        while not self._stopping:
            started = loop.time()
            if started - last_ok > self.reaper_interval_seconds + REAPER_GAP_SECONDS:
                # The database (or this process) was away: leases could not be renewed nor work
                # acknowledged meanwhile. Give their holders a moment to catch up before taking
                # anything back (one of them may be a live server whose lock is not back yet).
                reap_from = started + RECOVERY_GRACE_SECONDS
            try:
                if started >= reap_from:
                    await self.release_gone_lessees()
                    await self.reap_expired_leases(fresh=partial(_fresh, loop, started))
                    if loop.time() - started > REAPER_GAP_SECONDS:
                        reap_from = loop.time() + RECOVERY_GRACE_SECONDS  # stalled mid-pass
                await self.promote_due_jobs()
                if loop.time() >= next_purge:
                    next_purge = loop.time() + self.retention_interval_seconds
                    await self.purge_expired_jobs()
                last_ok = loop.time()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("lease reaper pass failed; trying again next tick", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reaper_wake.wait(), self.reaper_interval_seconds)
