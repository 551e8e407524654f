"""Workers and leases: registration, heartbeats, leasing, completion and failure.

The worker protocol's side of the Engine (reference_server/engine.py), and the store side of the
built-in pool, which leases jobs of every organisation under its own lessee id.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import asyncpg

from reference_server import job_metrics, queries
from reference_server.backoff import retry_delay
from reference_server.exceptions import Conflict, NotFound
from reference_server.group_commit import CompleteItem, GroupCommit, translate_db_error
from reference_server.job_store import json_text
from reference_server.models import Job, JobStatus, LeasedJob, QueueSettings, Worker

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from uuid import UUID

    from reference_server.notifications import Notifier

Q = queries.load("jobs.sql")

#: The built-in pool's lease outlives the job's own timeout by this much.
BUILTIN_LEASE_MARGIN_SECONDS = 60
#: A long-poll re-checks this often when the listener is down (degraded mode, not the normal path).
DEGRADED_POLL_SECONDS = 0.5


class WorkerLeases:
    """Workers, leases and their settlement (a base of Engine, which sets these attributes)."""

    _pool: asyncpg.Pool
    _completions: GroupCommit[CompleteItem, Job | None] | None
    _stopping: bool
    notifier: Notifier
    lease_seconds_default: int
    heartbeat_interval_seconds: int
    #: The lessee id of this process's built-in pool (no row in `workers`: it serves every org).
    builtin_worker_id: UUID

    async def _job(self, org_id: UUID, job_id: UUID) -> Job:
        row = await self._pool.fetchrow(Q["get_job"], org_id, job_id)
        if row is None:
            raise NotFound("job not found")
        return Job.from_row(row)

    # Workers -----------------------------------------------------------------------------

    async def register_worker(
        self, org_id: UUID, *, name: str, queues: Sequence[str], max_concurrent_jobs: int
    ) -> Worker:
        try:
            row = await self._pool.fetchrow(
                Q["insert_worker"],
                org_id,
                name,
                list(queues),
                max_concurrent_jobs,
                self.heartbeat_interval_seconds,
            )
        except asyncpg.PostgresError as exc:
            raise translate_db_error(exc) from exc
        assert row is not None
        return Worker.from_row(row)

    async def heartbeat(self, org_id: UUID, worker_id: UUID) -> Worker:
        """Mark the worker alive and extend the leases of every job it holds."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(Q["touch_worker"], org_id, worker_id)
            if row is None:
                raise NotFound("worker not found")
            status = await conn.execute(
                Q["extend_leases"], org_id, worker_id, self.lease_seconds_default
            )
        return dataclasses.replace(Worker.from_row(row), active_jobs=int(status.split()[-1]))

    async def list_workers(self, org_id: UUID) -> list[Worker]:
        return [Worker.from_row(r) for r in await self._pool.fetch(Q["list_workers"], org_id)]

    async def lease(
        self,
        org_id: UUID,
        worker_id: UUID,
        *,
        max_jobs: int,
        lease_seconds: int | None = None,
        wait_seconds: float = 0,
    ) -> list[Job]:
        """Lease up to `max_jobs` ready jobs of the worker's queues, highest priority, oldest first.

        With nothing ready, wait up to `wait_seconds` for a notification that work arrived.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, wait_seconds)
        seconds = int(lease_seconds or self.lease_seconds_default)
        max_jobs = max(1, max_jobs)
        # Hot path: one statement. Only when it finds nothing do we look the worker up (to tell
        # "unknown worker" from "nothing ready") and wait for a wake-up on its queues.
        jobs = await self._lease_for(org_id, worker_id, max_jobs, seconds)
        while not jobs:
            row = await self._pool.fetchrow(Q["worker_queues"], org_id, worker_id)
            if row is None:
                raise NotFound("worker not found")
            remaining = deadline - loop.time()
            if self._stopping or remaining <= 0:
                return []
            with self.notifier.watch_queues(row["queue_ids"]) as woken:
                # Look again now that we listen: work that arrived meanwhile is not missed.
                jobs = await self._lease_for(org_id, worker_id, max_jobs, seconds)
                if jobs:
                    break
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return []
                if not self.notifier.listening:
                    remaining = min(remaining, DEGRADED_POLL_SECONDS)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), remaining)
            jobs = await self._lease_for(org_id, worker_id, max_jobs, seconds)
        return jobs

    async def _lease_for(
        self, org_id: UUID, worker_id: UUID, max_jobs: int, seconds: int
    ) -> list[Job]:
        if self._stopping:
            return []
        rows = await self._pool.fetch(Q["lease_for_worker"], org_id, worker_id, max_jobs, seconds)
        return self._leased(rows)

    def _leased(self, rows: Iterable[Any]) -> list[Job]:
        jobs = sorted((Job.from_row(r) for r in rows), key=lambda j: (-j.priority, j.seq))
        for job in jobs:
            if job.started_at is not None:
                waited = (job.started_at - job.scheduled_for).total_seconds()
                job_metrics.wait_duration(job.queue_name).observe(max(0.0, waited))
        return jobs

    async def complete_job(
        self, org_id: UUID, job_id: UUID, *, worker_id: UUID, output: Any = None
    ) -> Job:
        """processing → succeeded, only by the worker holding the lease (else Conflict)."""
        completed: Job | None
        if self._completions is not None:
            item = CompleteItem(org_id, job_id, worker_id, json_text(output))
            completed = await self._completions.run(item)
        else:
            row = await self._pool.fetchrow(
                Q["complete_job"], org_id, job_id, worker_id, json_text(output)
            )
            completed = Job.from_row(row) if row is not None else None
        if completed is None:
            job = await self._job(org_id, job_id)
            raise Conflict(f"job is {job.status} and not leased by worker {worker_id}")
        job = completed
        self._count_finished(job, "succeeded")
        return job

    async def fail_job(
        self,
        org_id: UUID,
        job_id: UUID,
        *,
        worker_id: UUID,
        error_message: str,
        retryable: bool = True,
    ) -> Job:
        """processing → scheduled with backoff, or dead after the last attempt / when final."""
        return await self.fail_leased(
            job_id,
            org_id=org_id,
            worker_id=worker_id,
            error_message=error_message,
            retryable=retryable,
        )

    async def fail_leased(
        self,
        job_id: UUID,
        *,
        org_id: UUID | None,
        worker_id: UUID,
        error_message: str,
        retryable: bool,
    ) -> Job:
        """The fail transition; org_id None only for the built-in pool's own leases."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(Q["lock_job_for_failure"], job_id, org_id)
            if row is None:
                raise NotFound("job not found")
            job = Job.from_row(row)
            if job.status is not JobStatus.PROCESSING or job.worker_id != worker_id:
                raise Conflict(f"job is {job.status} and not leased by worker {worker_id}")
            if retryable and job.attempt_count < job.max_attempts:
                settings = QueueSettings(
                    initial_retry_delay_seconds=row["initial_retry_delay_seconds"],
                    max_retry_delay_seconds=row["max_retry_delay_seconds"],
                    backoff_multiplier=row["backoff_multiplier"],
                )
                delay = retry_delay(job.attempt_count, settings)
                updated = await conn.fetchrow(Q["schedule_retry"], job_id, delay, error_message)
                result = "failed"
            else:
                updated = await conn.fetchrow(Q["mark_dead"], job_id, error_message)
                result = "dead"
        assert updated is not None  # the row is locked by us
        failed = Job.from_row(updated)
        self._count_finished(failed, result)
        return failed

    def _count_finished(self, job: Job, result: str) -> None:
        job_metrics.processed(job.queue_name, job.job_type, result).inc()
        if job.started_at is not None:
            end = job.completed_at or job.updated_at
            job_metrics.processing_duration(job.queue_name, job.job_type).observe(
                max(0.0, (end - job.started_at).total_seconds())
            )

    # The built-in pool's side of the store -------------------------------------------------

    async def run_builtin(
        self, max_jobs: int, run: Callable[[list[LeasedJob]], list[str | None]]
    ) -> list[LeasedJob]:
        """Take ready built-in jobs and settle them in one transaction (see claim_builtin).

        `run` gets the locked jobs and returns, per job, its output JSON (it ran: succeeded) or
        None (leased to the pool, to run as a task). Returns the jobs once committed; when
        this raises, nothing was recorded and the jobs are still pending.
        """
        if self._stopping:
            return []
        async with self._pool.acquire() as conn:
            # BEGIN and the claim's planner setting in one round trip (begin_builtin_claim), so
            # the transaction is ours to end: COMMIT, or ROLLBACK on any error or cancellation.
            try:
                await conn.execute(Q["begin_builtin_claim"])
                rows = await conn.fetch(Q["claim_builtin"], max_jobs)
                jobs = [LeasedJob.from_row(r) for r in rows]
                if jobs:
                    await conn.execute(
                        Q["settle_builtin"],
                        [job.id for job in jobs],
                        run(jobs),
                        self.builtin_worker_id,
                        BUILTIN_LEASE_MARGIN_SECONDS,
                    )
                await conn.execute("COMMIT")
            except BaseException:
                if not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await conn.execute("ROLLBACK")
                raise
        waits: defaultdict[str, list[float]] = defaultdict(list)
        for row in rows:
            waits[row["queue_name"]].append(row["waited_seconds"])
        for queue_name, waited in waits.items():
            job_metrics.observe_all(job_metrics.wait_duration(queue_name), waited)
        return jobs

    async def complete_builtin(self, results: Sequence[tuple[UUID, str]]) -> set[UUID]:
        """Acknowledge many built-in successes in one statement; returns the ids recorded."""
        rows = await self._pool.fetch(
            Q["complete_jobs"],
            [job_id for job_id, _ in results],
            [output for _, output in results],
            self.builtin_worker_id,
        )
        return {r["id"] for r in rows}

    async def fail_builtin(self, job_id: UUID, *, error_message: str, retryable: bool) -> Job:
        """The fail transition for a lease of this process's built-in pool."""
        return await self.fail_leased(
            job_id,
            org_id=None,
            worker_id=self.builtin_worker_id,
            error_message=error_message,
            retryable=retryable,
        )

    async def release_builtin(self, job_ids: Sequence[UUID]) -> int:
        """Hand this process's built-in leases back unfinished (see release_jobs)."""
        return await self.release_jobs(job_ids, self.builtin_worker_id)

    async def release_jobs(self, job_ids: Sequence[UUID], worker_id: UUID) -> int:
        """Hand leases back unfinished (shutdown): pending again, the attempt not counted."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(Q["release_jobs"], list(job_ids), worker_id)
            if rows:
                await conn.fetchval(Q["notify_wake"], [r["wake_key"] for r in rows])
        return len(rows)
