"""The job engine: the job state machine on PostgreSQL, leasing, retries and background work.

PostgreSQL is the source of truth. `Engine` is the API the HTTP layer calls; it is put together
from one module per concept: `job_store` (jobs and queues), `leases` (workers, leases and their
settlement), `reaper` (expired leases, due jobs, retention) and `ids`, and it starts the wake-up
listener (`notifications`), the reaper and the built-in pool (`builtin_jobs`). Never imports Quart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any
from uuid import uuid4

import asyncpg

from reference_server.builtin_jobs import RENEW_SECONDS, BuiltinPool
from reference_server.dbpool import database_unavailable
from reference_server.group_commit import (
    CompleteItem,
    GroupCommit,
    SubmitItem,
    complete_writer,
    submit_writer,
)
from reference_server.job_store import JobStore
from reference_server.leases import BUILTIN_LEASE_SECONDS, WorkerLeases
from reference_server.notifications import Notifier
from reference_server.reaper import Maintenance

if TYPE_CHECKING:
    from reference_server.config import Settings
    from reference_server.models import Job

#: Jobs one built-in runner takes per transaction (at most; a claim takes what is ready). Each
#: transaction costs four round trips and a commit whatever its size, about 2.7 ms of the
#: server's CPU on a busy machine: per 1000 no-op jobs, Python 14.7 ms at 100, 10.5 at 250 (same
#: runs), and 16.4 at 250 against 10.9 at 500 (other runs, busier); PostgreSQL 27.9 / 21.9 and
#: 34.9 / 28.3 ms. Runners times this bounds the leases the pool holds unacknowledged (sleep
#: jobs in flight), and a batch's payloads are in memory together.
BUILTIN_BATCH_SIZE = 500

log = logging.getLogger(__name__)


class Engine(JobStore, WorkerLeases, Maintenance):
    """All job, queue and worker operations, each scoped to an organisation."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        lease_seconds_default: int = 30,
        builtin_workers: int = 4,
        builtin_batch_size: int = BUILTIN_BATCH_SIZE,
        builtin_lease_seconds: int = BUILTIN_LEASE_SECONDS,
        builtin_renew_seconds: float = RENEW_SECONDS,
        reaper_interval_seconds: float = 1.0,
        retention_interval_seconds: float = 600.0,
        heartbeat_interval_seconds: int = 10,
        group_commit: bool = True,
    ) -> None:
        self._pool = pool
        self._submits: GroupCommit[SubmitItem, Job] | None = None
        self._completions: GroupCommit[CompleteItem, Job | None] | None = None
        if group_commit:
            # A hung database fails the queued writes with the stuck one, not one by one.
            self._submits = GroupCommit(submit_writer(pool), fails_queue=database_unavailable)
            self._completions = GroupCommit(
                complete_writer(pool), fails_queue=database_unavailable
            )
        self.lease_seconds_default = lease_seconds_default
        self.heartbeat_interval_seconds = heartbeat_interval_seconds
        self.reaper_interval_seconds = reaper_interval_seconds
        self.retention_interval_seconds = retention_interval_seconds
        self.notifier = Notifier(pool)
        self.builtin_worker_id = uuid4()
        self.builtin_lease_seconds = builtin_lease_seconds
        self._worker_owners = {}
        self._owner_lookups = {}
        self.builtin: BuiltinPool | None = None
        if builtin_workers > 0:
            self.builtin = BuiltinPool(
                self,
                self.notifier,
                runners=builtin_workers,
                batch_size=builtin_batch_size,
                renew_seconds=builtin_renew_seconds,
            )
            self.notifier.on_connect(self.hold_lessee_lock)
        self._stopping = False
        self._reaper_wake = asyncio.Event()
        self._reaper_task: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, pool: asyncpg.Pool, settings: Settings, **options: Any) -> Engine:
        return cls(pool, builtin_workers=settings.BUILTIN_WORKERS, **options)

    async def start(self) -> None:
        """Listen for wake-ups, release the leases of gone processes, start the reaper and the
        built-in pool (registered as a lessee, its lock held on the LISTEN connection)."""
        self._stopping = False
        await self.notifier.start()
        try:
            if self.builtin is not None:
                await self.register_lessee()
            # At once: jobs a crashed process held run again now, not when their leases end.
            await self.release_gone_lessees()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            log.warning("could not look for gone lessees at start-up; the reaper will",
                        exc_info=True)
        if self._reaper_task is None:
            self._reaper_wake.clear()
            self._reaper_task = asyncio.create_task(self._reaper(), name="taskforge-reaper")
        if self.builtin is not None:
            self.builtin.start()

    async def stop(self, grace_seconds: float = 30.0) -> None:
        """Stop leasing, let in-flight built-in jobs finish within the grace, release the rest."""
        self._stopping = True
        self.notifier.wake_all()
        if self.builtin is not None:
            await self.builtin.stop(grace_seconds)
            try:
                await self.drop_lessee()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                log.warning("could not drop this process's lessee row; others will", exc_info=True)
        if self._reaper_task is not None:
            self._reaper_wake.set()
            self._reaper_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper_task
            self._reaper_task = None
        await self.notifier.stop()

    @property
    def stopping(self) -> bool:
        return self._stopping
