"""Workers and leases: registration, heartbeats, leasing, completion and failure.

The worker protocol's side of the Engine (reference_server/engine.py), and the store side of the
built-in pool, which leases jobs of every organisation under its own lessee id.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import random
import socket
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from uuid import uuid4

import asyncpg

from reference_server import job_metrics, queries
from reference_server.backoff import retry_delay
from reference_server.exceptions import ApiError, Conflict, NotFound
from reference_server.group_commit import CompleteItem, GroupCommit, translate_db_error
from reference_server.job_store import fetch_job, json_text
from reference_server.models import Job, JobStatus, LeasedJob, QueueSettings, Worker

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from uuid import UUID

    from reference_server.notifications import Notifier

Q = queries.load("jobs.sql")

#: The built-in pool leases its waiting jobs this long and renews the leases while they run
#: (builtin_jobs.RENEW_SECONDS): a crashed process's jobs come back within seconds.
BUILTIN_LEASE_SECONDS = 10
#: A long-poll re-checks this often when the listener is down (degraded mode, not the normal path).
DEGRADED_POLL_SECONDS = 0.5
#: Worker identities whose owner this process remembers (bindings never change once made).
WORKER_OWNER_CACHE_SIZE = 10_000
#: Results one acknowledgement may carry (the contract's bound).
MAX_ACK_RESULTS = 100

_random = random.SystemRandom()

log = logging.getLogger(__name__)


def lessee_lock_key(lessee_id: UUID) -> int:
    """The advisory lock key of a lessee: its id's first 64 bits, signed as PostgreSQL wants."""
    return int.from_bytes(lessee_id.bytes[:8], "big", signed=True)


@dataclass(frozen=True, kw_only=True, slots=True)
class Settlement:
    """One result of a worker's batched acknowledgement: succeeded with an output, or failed."""

    job_id: UUID
    succeeded: bool
    output: Any = None
    error_message: str | None = None
    retryable: bool = True


@dataclass(frozen=True, slots=True)
class AckOutcome:
    """What an acknowledgement settled, in the order given, and what it refused and why."""

    accepted: list[UUID] = field(default_factory=list)
    rejected: list[tuple[UUID, ApiError]] = field(default_factory=list)


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
    builtin_lease_seconds: int
    #: worker id -> (organisation, credential) of the workers this process has looked up.
    _worker_owners: dict[UUID, tuple[UUID, str | None]]
    _owner_lookups: dict[UUID, asyncio.Future[tuple[UUID, str | None] | None]]

    async def _check_worker(
        self, org_id: UUID, worker_id: UUID, credential: str | None, *, unknown_ok: bool = False
    ) -> None:
        """NotFound unless the worker exists in this organisation, bound to this credential.

        `unknown_ok`: an id no worker has passes (complete and fail then answer Conflict, as a
        worker that does not hold the lease gets); another credential's worker never does.
        """
        owner = self._worker_owners.get(worker_id)
        if owner is None:
            # Concurrent calls for one worker share one look-up and resume in the order they
            # came, so their writes reach the group commit in that order too.
            lookup = self._owner_lookups.get(worker_id)
            if lookup is None:
                lookup = asyncio.ensure_future(self._look_up_owner(worker_id))
                self._owner_lookups[worker_id] = lookup
                lookup.add_done_callback(lambda _: self._owner_lookups.pop(worker_id, None))
            owner = await asyncio.shield(lookup)
            if owner is None:
                if unknown_ok:
                    return
                raise NotFound("worker not found")
        if owner != (org_id, credential):
            raise NotFound("worker not found")

    async def _look_up_owner(self, worker_id: UUID) -> tuple[UUID, str | None] | None:
        row = await self._pool.fetchrow(Q["worker_owner"], worker_id)
        if row is None:
            return None  # not cached: the id may be registered later (it is random, though)
        owner: tuple[UUID, str | None] = (row["organization_id"], row["registered_by"])
        if len(self._worker_owners) >= WORKER_OWNER_CACHE_SIZE:
            self._worker_owners.clear()
        self._worker_owners[worker_id] = owner
        return owner

    # Workers -----------------------------------------------------------------------------

    async def register_worker(
        self,
        org_id: UUID,
        *,
        name: str,
        queues: Sequence[str],
        max_concurrent_jobs: int,
        credential: str | None = None,
    ) -> Worker:
        """A new worker identity, bound to `credential` (the caller's Principal.actor).

        Every later call for this worker must name the same credential, or finds no worker. None
        binds it to callers inside the server that name none (tests, tools), never to HTTP callers.
        """
        try:
            row = await self._pool.fetchrow(
                Q["insert_worker"],
                org_id,
                name,
                list(queues),
                max_concurrent_jobs,
                self.heartbeat_interval_seconds,
                credential,
            )
        except asyncpg.PostgresError as exc:
            raise translate_db_error(exc) from exc
        assert row is not None
        return Worker.from_row(row)

    async def heartbeat(
        self, org_id: UUID, worker_id: UUID, *, credential: str | None = None
    ) -> Worker:
        """Mark the worker alive and extend the leases of every job it holds."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(Q["touch_worker"], org_id, worker_id, credential)
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
        credential: str | None = None,
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
        jobs = await self._lease_for(org_id, worker_id, max_jobs, seconds, credential)
        while not jobs:
            row = await self._pool.fetchrow(Q["worker_queues"], org_id, worker_id, credential)
            if row is None:
                raise NotFound("worker not found")
            remaining = deadline - loop.time()
            if self._stopping or remaining <= 0:
                return []
            with self.notifier.watch_queues(row["queue_ids"]) as woken:
                # Look again now that we listen: work that arrived meanwhile is not missed.
                jobs = await self._lease_for(org_id, worker_id, max_jobs, seconds, credential)
                if jobs:
                    break
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return []
                if not self.notifier.listening:
                    remaining = min(remaining, DEGRADED_POLL_SECONDS)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), remaining)
            jobs = await self._lease_for(org_id, worker_id, max_jobs, seconds, credential)
        return jobs

    async def _lease_for(
        self, org_id: UUID, worker_id: UUID, max_jobs: int, seconds: int, credential: str | None
    ) -> list[Job]:
        if self._stopping:
            return []
        rows = await self._pool.fetch(
            Q["lease_for_worker"], org_id, worker_id, max_jobs, seconds, credential
        )
        return self._leased(rows)

    def _leased(self, rows: Iterable[Any]) -> list[Job]:
        jobs = sorted((Job.from_row(r) for r in rows), key=lambda j: (-j.priority, j.seq))
        for job in jobs:
            if job.started_at is not None:
                waited = (job.started_at - job.scheduled_for).total_seconds()
                job_metrics.wait_duration(job.queue_name).observe(max(0.0, waited))
        return jobs

    async def complete_job(
        self,
        org_id: UUID,
        job_id: UUID,
        *,
        worker_id: UUID,
        output: Any = None,
        credential: str | None = None,
    ) -> Job:
        """processing → succeeded, only by the worker holding the lease (else Conflict)."""
        await self._check_worker(org_id, worker_id, credential, unknown_ok=True)
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
            job = await fetch_job(self._pool, org_id, job_id)
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
        credential: str | None = None,
    ) -> Job:
        """processing → scheduled with backoff, or dead after the last attempt / when final."""
        await self._check_worker(org_id, worker_id, credential, unknown_ok=True)
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

    async def ack(
        self,
        org_id: UUID,
        worker_id: UUID,
        results: Sequence[Settlement],
        *,
        credential: str | None = None,
    ) -> AckOutcome:
        """Settle many of the worker's leases in one statement, each result judged on its own.

        A result is refused with Conflict when this worker does not hold the job's lease (or it
        is settled already, or named twice here), with NotFound when no such job is in the
        organisation. The worker itself must be the caller's (NotFound for the whole call).
        """
        if not 1 <= len(results) <= MAX_ACK_RESULTS:
            raise ValueError(f"an acknowledgement carries 1 to {MAX_ACK_RESULTS} results")
        await self._check_worker(org_id, worker_id, credential)
        seen: set[UUID] = set()
        unique: list[Settlement] = []
        for result in results:
            if result.job_id not in seen:
                seen.add(result.job_id)
                unique.append(result)
        rows = await self._pool.fetch(
            Q["ack_jobs"],
            org_id,
            worker_id,
            [r.job_id for r in unique],
            [r.succeeded for r in unique],
            [json_text(r.output) if r.succeeded else None for r in unique],
            [None if r.succeeded else r.error_message for r in unique],
            [r.retryable for r in unique],
            [_random.uniform(-1.0, 1.0) for _ in unique],
        )
        judged: dict[UUID, ApiError | None] = {}
        for row in rows:
            settled = row["settled_status"]
            if settled is not None:
                judged[row["id"]] = None
                self._count_settled(row, "failed" if settled == "scheduled" else settled)
            elif row["found_status"] is None:
                judged[row["id"]] = NotFound("job not found")
            else:
                judged[row["id"]] = Conflict(
                    f"job is {row['found_status']} and not leased by worker {worker_id}"
                )
        outcome = AckOutcome()
        for result in results:
            error = judged.pop(result.job_id, Conflict("job named twice in one acknowledgement"))
            if error is None:
                outcome.accepted.append(result.job_id)
            else:
                outcome.rejected.append((result.job_id, error))
        return outcome

    def _count_settled(self, row: Any, result: str) -> None:
        job_metrics.processed(row["queue_name"], row["job_type"], result).inc()
        if row["started_at"] is not None:
            end = row["completed_at"] or row["updated_at"]
            job_metrics.processing_duration(row["queue_name"], row["job_type"]).observe(
                max(0.0, (end - row["started_at"]).total_seconds())
            )

    def _count_finished(self, job: Job, result: str) -> None:
        job_metrics.processed(job.queue_name, job.job_type, result).inc()
        if job.started_at is not None:
            end = job.completed_at or job.updated_at
            job_metrics.processing_duration(job.queue_name, job.job_type).observe(
                max(0.0, (end - job.started_at).total_seconds())
            )

    # The built-in pool's side of the store -------------------------------------------------

    async def run_builtin(
        self,
        max_jobs: int,
        run: Callable[[list[LeasedJob]], list[str | None]],
        *,
        per_organization: int | None = None,
        skip: Sequence[UUID] = (),
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
                # Organisations take turns from a random point (fair share, see claim_builtin).
                rows = await conn.fetch(
                    Q["claim_builtin"], max_jobs, per_organization or max_jobs, list(skip), uuid4()
                )
                jobs = [LeasedJob.from_row(r) for r in rows]
                if jobs:
                    await conn.execute(
                        Q["settle_builtin"],
                        [job.id for job in jobs],
                        run(jobs),
                        self.builtin_worker_id,
                        self.builtin_lease_seconds,
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

    async def renew_builtin(self) -> int:
        """The built-in pool's heartbeat: renew its lessee row and every lease it holds.

        Returns how many leases were renewed. A row found gone (judged gone while this process
        could not renew: its leases were released then) is registered again.
        """
        row = await self._pool.fetchrow(
            Q["renew_builtin_leases"], self.builtin_worker_id, self.builtin_lease_seconds
        )
        assert row is not None  # an aggregate row
        if not row["registered"]:
            log.warning("this process's built-in lessee row was gone; registering it again")
            await self.register_lessee()
        return int(row["renewed"])

    async def register_lessee(self) -> None:
        """Record this process's built-in pool as a lessee (see migration 20261201000002)."""
        await self._pool.execute(
            Q["register_lessee"],
            self.builtin_worker_id,
            lessee_lock_key(self.builtin_worker_id),
            socket.gethostname(),
            os.getpid(),
        )

    async def hold_lessee_lock(self, conn: asyncpg.Connection) -> None:
        """On the LISTEN connection, for as long as it lives: this lessee's process is alive."""
        await conn.execute(Q["lock_lessee"], lessee_lock_key(self.builtin_worker_id))

    async def drop_lessee(self) -> None:
        await self._pool.execute(Q["drop_lessee"], self.builtin_worker_id)

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
