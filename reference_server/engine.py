"""The job engine: the job state machine on PostgreSQL, leasing, retries and background work.

PostgreSQL is the source of truth. Dequeue is `FOR UPDATE SKIP LOCKED` over a partial index of ready
jobs; waiting lessees wake on LISTEN/NOTIFY; a reaper returns expired leases and promotes due
scheduled jobs; a built-in pool runs the built-in job types. Never imports Quart.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any, Final
from uuid import UUID, uuid4

import asyncpg
import orjson
from asyncpg.pgproto.pgproto import UUID as FastUUID

from reference_server import job_metrics, queries
from reference_server.audit import AuditEntry, insert_audits, with_outcome
from reference_server.backoff import retry_delay
from reference_server.builtin_jobs import BuiltinPool, observe_all
from reference_server.exceptions import Conflict, NotFound, ValidationFailed
from reference_server.group_commit import (
    CompleteItem,
    GroupCommit,
    SubmitItem,
    complete_writer,
    insert_submits,
    submit_writer,
    translate_db_error,
)
from reference_server.models import (
    Job,
    JobFields,
    JobSpec,
    JobStatus,
    LeasedJob,
    Queue,
    QueueSettings,
    Worker,
)
from reference_server.notifications import Notifier

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

    from reference_server.config import Settings

Q = queries.load("jobs.sql")

log = logging.getLogger(__name__)

#: Rows handled per statement by the reaper and the promoter, so one pass never holds many locks.
MAINTENANCE_BATCH = 1000
#: Bound on the reaper's passes per tick when a backlog of expired leases builds up.
MAINTENANCE_MAX_PASSES = 20
#: The built-in pool's lease outlives the job's own timeout by this much.
BUILTIN_LEASE_MARGIN_SECONDS = 60
#: A long-poll re-checks this often when the listener is down (degraded mode, not the normal path).
DEGRADED_POLL_SECONDS = 0.5
#: Jobs one built-in runner takes per transaction (at most; a claim takes what is ready). Each
#: transaction costs four round trips and a commit whatever its size, about 2.7 ms of the
#: server's CPU on a busy machine: per 1000 no-op jobs, Python 14.7 ms at 100, 10.5 at 250 (same
#: runs), and 16.4 at 250 against 10.9 at 500 (other runs, busier); PostgreSQL 27.9 / 21.9 and
#: 34.9 / 28.3 ms. Runners times this bounds the leases the pool holds unacknowledged (sleep
#: jobs in flight), and a batch's payloads are in memory together.
BUILTIN_BATCH_SIZE = 500


#: The columns a COPY batch sets; the rest take their defaults.
COPY_COLUMNS: Final = (
    "id",
    "organization_id",
    "queue_id",
    "queue_name",
    "job_type",
    "payload",
    "priority",
    "status",
    "max_attempts",
    "timeout_seconds",
)


def _new_ids(count: int) -> list[UUID]:
    """Time-ordered job ids, as the taskforge_uuidv7() column default makes them: 48 bits of Unix
    milliseconds, version 7, then random bits from one read of the OS's random source.

    New ids land at the right edge of the primary-key index instead of on random pages. They are
    asyncpg's own UUID type (a uuid.UUID, the type every id read back has), which is about ten
    times cheaper than uuid.UUID to make and to print.
    """
    prefix = (time.time_ns() // 1_000_000).to_bytes(6, "big")
    tail = bytearray(os.urandom(10 * count))
    tail[0::10] = bytes((b & 0x0F) | 0x70 for b in tail[0::10])  # version 7
    tail[2::10] = bytes((b & 0x3F) | 0x80 for b in tail[2::10])  # RFC 4122 variant
    raw = bytes(tail)
    return [FastUUID(prefix + raw[n : n + 10]) for n in range(0, 10 * count, 10)]


class _Unset:
    """Marks an argument the caller did not give (distinct from None, which clears a value)."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset()


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def _insert_job_args(org_id: UUID, spec: JobFields) -> tuple[Any, ...]:
    """The parameters of the insert_job query, in its order, for single and batch inserts."""
    return (
        org_id,
        spec.queue_name,
        spec.job_type,
        _json_text(spec.payload),
        spec.priority,
        spec.scheduled_for,
        spec.max_attempts,
        spec.timeout_seconds,
        spec.idempotency_key,
    )


class Engine:
    """All job, queue and worker operations, each scoped to an organisation."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        lease_seconds_default: int = 30,
        builtin_workers: int = 4,
        builtin_batch_size: int = BUILTIN_BATCH_SIZE,
        reaper_interval_seconds: float = 1.0,
        retention_interval_seconds: float = 600.0,
        heartbeat_interval_seconds: int = 10,
        group_commit: bool = True,
    ) -> None:
        self._pool = pool
        self._submits: GroupCommit[SubmitItem, Job] | None = None
        self._completions: GroupCommit[CompleteItem, Job | None] | None = None
        if group_commit:
            self._submits = GroupCommit(submit_writer(pool))
            self._completions = GroupCommit(complete_writer(pool))
        self.lease_seconds_default = lease_seconds_default
        self.heartbeat_interval_seconds = heartbeat_interval_seconds
        self.reaper_interval_seconds = reaper_interval_seconds
        self.retention_interval_seconds = retention_interval_seconds
        self.notifier = Notifier(pool)
        #: The lessee id of this process's built-in pool (no row in `workers`: it serves every org).
        self.builtin_worker_id = uuid4()
        self.builtin: BuiltinPool | None = (
            BuiltinPool(self, runners=builtin_workers, batch_size=builtin_batch_size)
            if builtin_workers > 0
            else None
        )
        self._stopping = False
        self._reaper_wake = asyncio.Event()
        self._reaper_task: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, pool: asyncpg.Pool, settings: Settings, **options: Any) -> Engine:
        return cls(pool, builtin_workers=settings.BUILTIN_WORKERS, **options)

    # Lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen for wake-ups, start the reaper and the built-in pool."""
        self._stopping = False
        await self.notifier.start()
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

    async def ping_database(self, timeout: float) -> bool:
        """True when the database answers within `timeout` seconds."""
        try:
            async with asyncio.timeout(timeout):
                async with self._pool.acquire() as conn:
                    return bool(await conn.fetchval(Q["ping"]) == 1)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return False

    # Jobs --------------------------------------------------------------------------------

    async def submit(
        self, org_id: UUID, spec: JobSpec, *, audit: AuditEntry | None = None
    ) -> tuple[Job, bool]:
        """Insert one job; with a known idempotency key return the existing job and False.

        `audit`, when given, is committed with the job (its target and status filled in: 201,
        or 200 for an idempotent repeat); a failed submit writes none.
        """
        if spec.idempotency_key is None and self._submits is not None:
            job = await self._submits.run(SubmitItem(org_id, spec, audit))
            job_metrics.submitted(job.queue_name, job.job_type).inc()
            return job, True
        async with self._pool.acquire() as conn, conn.transaction():
            try:
                row = await conn.fetchrow(Q["insert_job"], *_insert_job_args(org_id, spec))
            except asyncpg.ForeignKeyViolationError:
                # The queue was deleted between our read of it and the insert.
                raise NotFound(f"queue {spec.queue_name!r} not found") from None
            except asyncpg.PostgresError as exc:
                raise translate_db_error(exc) from exc
            found: Job | None = None
            created = True
            if row is not None:
                found = Job.from_row(row)
            elif spec.idempotency_key is not None:
                existing = await conn.fetchrow(
                    Q["job_by_idempotency_key"], org_id, spec.idempotency_key
                )
                if existing is not None:
                    found, created = Job.from_row(existing), False
            if found is None:
                raise NotFound(f"queue {spec.queue_name!r} not found")
            if audit is not None:
                status = 201 if created else 200
                await insert_audits(
                    conn, [with_outcome(audit, target=str(found.id), status_code=status)]
                )
        if created:
            job_metrics.submitted(found.queue_name, found.job_type).inc()
        return found, created

    async def submit_each(self, items: Sequence[SubmitItem]) -> list[Job | Exception]:
        """Single submits (no idempotency keys) that the caller batched itself, in one statement:
        each item's job, its audit row committed with it, or the error it met, in order."""
        if any(item.spec.idempotency_key is not None for item in items):
            raise ValueError("submit_each takes no idempotency keys (use submit)")
        outcomes = await insert_submits(self._pool, list(items))
        for outcome in outcomes:
            if isinstance(outcome, Job):
                job_metrics.submitted(outcome.queue_name, outcome.job_type).inc()
        return outcomes

    async def submit_batch(self, org_id: UUID, specs: Sequence[JobFields]) -> list[UUID]:
        """Insert all jobs in one transaction, or none (unknown queue → NotFound)."""
        if not specs:
            return []
        async with self._pool.acquire() as conn:
            try:
                async with conn.transaction():
                    if any(s.idempotency_key is not None for s in specs):
                        return await self._submit_each(conn, org_id, specs)
                    if all(s.scheduled_for is None for s in specs):
                        return await self._submit_copy(conn, org_id, specs)
                    return await self._submit_together(conn, org_id, specs)
            except asyncpg.ForeignKeyViolationError:
                raise NotFound("a queue of the batch was deleted meanwhile") from None
            except asyncpg.PostgresError as exc:
                raise translate_db_error(exc) from exc

    async def _submit_copy(
        self, conn: asyncpg.Connection, org_id: UUID, specs: Sequence[JobFields]
    ) -> list[UUID]:
        """Jobs due now: COPY, with ids made here and queue defaults read once per queue.

        COPY skips the executor's per-row work of INSERT .. SELECT (the unnest, the join, the
        RETURNING); the status is `pending` and the times are the database's defaults, as the
        INSERT would set them. lock_queues_for_batch locks the queues until the commit (jobs has
        no foreign keys) and queues the wake-ups the commit sends.
        """
        counts = Counter((s.queue_name, s.job_type) for s in specs)
        names = sorted({name for name, _ in counts})
        pairs = list(counts)
        rows = await conn.fetch(
            Q["lock_queues_for_batch"],
            org_id,
            names,
            [name for name, _ in pairs],
            [job_type for _, job_type in pairs],
        )
        queues = {r["name"]: r for r in rows}
        missing = [name for name in names if name not in queues]
        if missing:
            raise NotFound(f"queue {missing[0]!r} not found", details={"queues": missing})
        ids = _new_ids(len(specs))

        def records() -> Iterator[tuple[Any, ...]]:
            for job_id, spec in zip(ids, specs, strict=True):
                queue = queues[spec.queue_name]
                yield (
                    job_id,
                    org_id,
                    queue["id"],
                    spec.queue_name,
                    spec.job_type,
                    _json_text(spec.payload),
                    spec.priority,
                    "pending",
                    queue["max_attempts"] if spec.max_attempts is None else spec.max_attempts,
                    (
                        queue["timeout_seconds"]
                        if spec.timeout_seconds is None
                        else spec.timeout_seconds
                    ),
                )

        # Rows from a generator, not a list: each is encoded and dropped before the next is made,
        # so a batch holds 1000 fewer tuples for the garbage collector to count and walk.
        await conn.copy_records_to_table("jobs", records=records(), columns=COPY_COLUMNS)
        for (queue_name, job_type), n in counts.items():
            job_metrics.submitted(queue_name, job_type).inc(n)
        return ids

    async def _submit_together(
        self, conn: asyncpg.Connection, org_id: UUID, specs: Sequence[JobFields]
    ) -> list[UUID]:
        rows = await conn.fetch(
            Q["insert_jobs"],
            org_id,
            [s.queue_name for s in specs],
            [s.job_type for s in specs],
            [_json_text(s.payload) for s in specs],
            [s.priority for s in specs],
            [s.max_attempts for s in specs],
            [s.timeout_seconds for s in specs],
            [s.scheduled_for for s in specs],
        )
        if len(rows) != len(specs):
            known = {r["queue_name"] for r in rows}
            missing = sorted({s.queue_name for s in specs} - known)
            raise NotFound(f"queue {missing[0]!r} not found", details={"queues": missing})
        counts = Counter((r["queue_name"], r["job_type"]) for r in rows)
        for (queue, job_type), n in counts.items():
            job_metrics.submitted(queue, job_type).inc(n)
        # Identity values follow the insertion order, which follows the items' order.
        return [r["id"] for r in sorted(rows, key=lambda r: r["seq"])]

    async def _submit_each(
        self, conn: asyncpg.Connection, org_id: UUID, specs: Sequence[JobFields]
    ) -> list[UUID]:
        ids: list[UUID] = []
        created: Counter[tuple[str, str]] = Counter()
        for spec in specs:
            row = await conn.fetchrow(Q["insert_job"], *_insert_job_args(org_id, spec))
            if row is not None:
                created[(row["queue_name"], row["job_type"])] += 1
            elif spec.idempotency_key is not None:
                row = await conn.fetchrow(Q["job_by_idempotency_key"], org_id, spec.idempotency_key)
            if row is None:
                raise NotFound(f"queue {spec.queue_name!r} not found")
            ids.append(row["id"])
        for (queue, job_type), n in created.items():
            job_metrics.submitted(queue, job_type).inc(n)
        return ids

    async def get_job(self, org_id: UUID, job_id: UUID) -> Job:
        row = await self._pool.fetchrow(Q["get_job"], org_id, job_id)
        if row is None:
            raise NotFound("job not found")
        return Job.from_row(row)

    async def list_jobs(
        self,
        org_id: UUID,
        *,
        queue_name: str | None = None,
        status: JobStatus | str | None = None,
        job_type: str | None = None,
        page: int = 1,
        limit: int = 20,
    ) -> tuple[list[Job], int]:
        """One page of the organisation's jobs, newest first, and the total matching."""
        page, limit = max(1, page), max(1, limit)
        try:
            status_text = JobStatus(status).value if status is not None else None
        except ValueError:
            raise ValidationFailed(
                f"unknown status {status!r}", details=[{"field": "status"}]
            ) from None
        filters = (org_id, queue_name, status_text, job_type)
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(Q["list_jobs"], *filters, limit, (page - 1) * limit)
            total = await conn.fetchval(Q["count_jobs"], *filters)
        return [Job.from_row(r) for r in rows], int(total)

    async def cancel_job(self, org_id: UUID, job_id: UUID) -> Job:
        """pending or scheduled → cancelled; any other state is a Conflict."""
        row = await self._pool.fetchrow(Q["cancel_job"], org_id, job_id)
        if row is None:
            job = await self.get_job(org_id, job_id)
            raise Conflict(f"a {job.status} job cannot be cancelled")
        return Job.from_row(row)

    async def retry_job(self, org_id: UUID, job_id: UUID) -> Job:
        """failed or dead → pending with attempts reset; any other state is a Conflict."""
        row = await self._pool.fetchrow(Q["retry_job"], org_id, job_id)
        if row is None:
            job = await self.get_job(org_id, job_id)
            raise Conflict(f"a {job.status} job cannot be retried")
        return Job.from_row(row)

    # Queues ------------------------------------------------------------------------------

    async def create_queue(
        self,
        org_id: UUID,
        *,
        name: str,
        description: str | None = None,
        priority: int = 0,
        settings: Mapping[str, Any] | None = None,
        conn: asyncpg.Connection | None = None,
    ) -> Queue:
        """A new queue; Conflict when the organisation already has one of that name."""
        try:
            merged = QueueSettings().merged(settings)
        except ValueError as exc:
            raise ValidationFailed(str(exc)) from None
        args = (
            org_id,
            name,
            description,
            priority,
            merged.max_attempts,
            merged.timeout_seconds,
            float(merged.initial_retry_delay_seconds),
            float(merged.max_retry_delay_seconds),
            float(merged.backoff_multiplier),
            merged.retention_days,
        )
        try:
            if conn is not None:
                row = await conn.fetchrow(Q["insert_queue"], *args)
            else:
                row = await self._pool.fetchrow(Q["insert_queue"], *args)
        except asyncpg.PostgresError as exc:
            raise translate_db_error(exc) from exc
        if row is None:
            raise Conflict(f"queue {name!r} already exists")
        return Queue.from_row(row)

    async def create_default_queue(
        self, org_id: UUID, conn: asyncpg.Connection | None = None
    ) -> Queue:
        """The queue `default` every new organisation gets (inside the caller's transaction)."""
        try:
            return await self.create_queue(
                org_id, name="default", description="Default queue", conn=conn
            )
        except Conflict:
            row = await (conn or self._pool).fetchrow(Q["get_queue"], org_id, "default")
            assert row is not None  # it conflicted, so it exists (rows are never deleted here)
            return Queue.from_row(row)

    async def list_queues(self, org_id: UUID) -> list[Queue]:
        return [Queue.from_row(r) for r in await self._pool.fetch(Q["list_queues"], org_id)]

    async def get_queue(self, org_id: UUID, name: str) -> Queue:
        row = await self._pool.fetchrow(Q["get_queue"], org_id, name)
        if row is None:
            raise NotFound(f"queue {name!r} not found")
        return Queue.from_row(row)

    async def update_queue(
        self,
        org_id: UUID,
        name: str,
        *,
        description: str | _Unset | None = UNSET,
        priority: int | _Unset = UNSET,
        settings: Mapping[str, Any] | _Unset | None = UNSET,
    ) -> Queue:
        """Change the given fields; settings merge key by key into the current ones."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(Q["lock_queue"], org_id, name)
            if row is None:
                raise NotFound(f"queue {name!r} not found")
            current = Queue.from_row(row)
            try:
                merged = current.settings.merged(None if isinstance(settings, _Unset) else settings)
            except ValueError as exc:
                raise ValidationFailed(str(exc)) from None
            try:
                updated = await conn.fetchrow(
                    Q["update_queue"],
                    org_id,
                    name,
                    current.description if isinstance(description, _Unset) else description,
                    current.priority if isinstance(priority, _Unset) else priority,
                    merged.max_attempts,
                    merged.timeout_seconds,
                    float(merged.initial_retry_delay_seconds),
                    float(merged.max_retry_delay_seconds),
                    float(merged.backoff_multiplier),
                    merged.retention_days,
                )
            except asyncpg.PostgresError as exc:
                raise translate_db_error(exc) from exc
        return Queue.from_row(updated)

    async def delete_queue(self, org_id: UUID, name: str) -> None:
        """Delete a queue and its finished jobs; Conflict while it holds unfinished jobs."""
        async with self._pool.acquire() as conn, conn.transaction():
            # The row lock makes concurrent submits to this queue wait for us (their FK check).
            row = await conn.fetchrow(Q["lock_queue"], org_id, name)
            if row is None:
                raise NotFound(f"queue {name!r} not found")
            if await conn.fetchval(Q["queue_has_unfinished_jobs"], row["id"]):
                raise Conflict(f"queue {name!r} still holds unfinished jobs")
            await conn.execute(Q["delete_queue_jobs"], row["id"])
            await conn.execute(Q["delete_queue"], row["id"])

    async def queue_stats(self, org_id: UUID, name: str) -> dict[str, Any]:
        """Counts by status, age of the oldest ready job, jobs succeeded in the last minute."""
        queue = await self.get_queue(org_id, name)
        row = await self._pool.fetchrow(Q["queue_stats"], queue.id)
        assert row is not None  # an aggregate always yields a row
        found = orjson.loads(row["counts"])
        counts = {status.value: int(found.get(status.value, 0)) for status in JobStatus}
        oldest = row["oldest_pending_age_seconds"]
        return {
            "queue_name": queue.name,
            "paused": queue.paused,
            "counts": counts,
            "total": sum(counts.values()),
            "oldest_pending_age_seconds": max(0.0, float(oldest)) if oldest is not None else None,
            "throughput_per_minute": float(row["succeeded_last_minute"]),
        }

    async def pause_queue(self, org_id: UUID, name: str) -> Queue:
        """A paused queue accepts jobs but leases none."""
        row = await self._pool.fetchrow(Q["set_queue_paused"], org_id, name, True)
        if row is None:
            raise NotFound(f"queue {name!r} not found")
        return Queue.from_row(row)

    async def resume_queue(self, org_id: UUID, name: str) -> Queue:
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(Q["set_queue_paused"], org_id, name, False)
            if row is None:
                raise NotFound(f"queue {name!r} not found")
            queue_id = str(row["id"])
            # Its ready jobs may have waited for this: wake lessees of every kind.
            await conn.fetchval(Q["notify_wake"], [queue_id, queue_id + ":b"])
        return Queue.from_row(row)

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
            item = CompleteItem(org_id, job_id, worker_id, _json_text(output))
            completed = await self._completions.run(item)
        else:
            row = await self._pool.fetchrow(
                Q["complete_job"], org_id, job_id, worker_id, _json_text(output)
            )
            completed = Job.from_row(row) if row is not None else None
        if completed is None:
            job = await self.get_job(org_id, job_id)
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

    async def lease_builtin(self, max_jobs: int) -> list[LeasedJob]:
        """Lease built-in jobs of any organisation for this process's pool."""
        if self._stopping:
            return []
        rows = await self._pool.fetch(
            Q["lease_builtin"], max_jobs, self.builtin_worker_id, BUILTIN_LEASE_MARGIN_SECONDS
        )
        for row in rows:
            job_metrics.wait_duration(row["queue_name"]).observe(row["waited_seconds"])
        return [LeasedJob.from_row(r) for r in rows]

    async def run_builtin(
        self, max_jobs: int, run: Callable[[list[LeasedJob]], list[str | None]]
    ) -> list[LeasedJob]:
        """Take ready built-in jobs and settle them in one transaction (see claim_builtin).

        `run` gets the locked jobs and returns, per job, its output JSON (it ran: succeeded) or
        None (leased to the pool as `lease_builtin` would). Returns the jobs once committed; when
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
            observe_all(job_metrics.wait_duration(queue_name), waited)
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

    async def release_jobs(self, job_ids: Sequence[UUID], worker_id: UUID) -> int:
        """Hand leases back unfinished (shutdown): pending again, the attempt not counted."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(Q["release_jobs"], list(job_ids), worker_id)
            if rows:
                await conn.fetchval(Q["notify_wake"], [r["wake_key"] for r in rows])
        return len(rows)

    # Maintenance -------------------------------------------------------------------------

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
