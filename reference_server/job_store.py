"""The job and queue store: submits, reads, cancel and retry, queues and their settings.

One half of the Engine (reference_server/engine.py); every operation is scoped to an organisation.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any, Final

import asyncpg
import orjson

from reference_server import job_metrics, queries
from reference_server.audit import AuditEntry, insert_audits, with_outcome
from reference_server.exceptions import Conflict, NotFound, ValidationFailed
from reference_server.group_commit import (
    GroupCommit,
    SubmitItem,
    insert_submits,
    translate_db_error,
)
from reference_server.ids import new_job_ids
from reference_server.models import Job, JobFields, JobSpec, JobStatus, Queue, QueueSettings
from reference_server.observability import get_logger

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence
    from uuid import UUID

Q = queries.load("jobs.sql")
log = get_logger(__name__)
#: Statements that may touch many rows get this instead of the pool's few seconds.
LONG_STATEMENT_SECONDS = 60.0

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


class _Unset:
    """Marks an argument the caller did not give (distinct from None, which clears a value)."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset()


def json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def _insert_job_args(org_id: UUID, spec: JobFields) -> tuple[Any, ...]:
    """The parameters of the insert_job query, in its order, for single and batch inserts."""
    return (
        org_id,
        spec.queue_name,
        spec.job_type,
        json_text(spec.payload),
        spec.priority,
        spec.scheduled_for,
        spec.max_attempts,
        spec.timeout_seconds,
        spec.idempotency_key,
    )


async def fetch_job(pool: asyncpg.Pool, org_id: UUID, job_id: UUID) -> Job:
    """The organisation's job, or NotFound (the lease transitions explain refusals with it)."""
    row = await pool.fetchrow(Q["get_job"], org_id, job_id)
    if row is None:
        raise NotFound("job not found")
    return Job.from_row(row)


def _settings_args(settings: QueueSettings) -> tuple[Any, ...]:
    """A queue's settings as the insert_queue and update_queue queries take them ($5-$10)."""
    return (
        settings.max_attempts,
        settings.timeout_seconds,
        float(settings.initial_retry_delay_seconds),
        float(settings.max_retry_delay_seconds),
        float(settings.backoff_multiplier),
        settings.retention_days,
    )


def _count_submitted(job: Job) -> None:
    """Count a committed job. Its row and its audit row (201) are stored by now: a failure here
    must not become the caller's answer (a 500 over a stored job invites a second copy)."""
    try:
        job_metrics.submitted(job.queue_name, job.job_type).inc()
    except Exception as exc:
        log.error("submitted job not counted", error=type(exc).__name__, job_id=str(job.id))


class JobStore:
    """Jobs and queues on PostgreSQL (a base of Engine, which opens the pool and group commit)."""

    _pool: asyncpg.Pool
    _submits: GroupCommit[SubmitItem, Job] | None

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
            _count_submitted(job)
            return job, True
        async with self._pool.acquire() as conn, conn.transaction():
            try:
                row = await conn.fetchrow(Q["insert_job"], *_insert_job_args(org_id, spec))
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
            _count_submitted(found)
        return found, created

    async def submit_each(self, items: Sequence[SubmitItem]) -> list[Job | Exception]:
        """Single submits (no idempotency keys) that the caller batched itself, in one statement:
        each item's job, its audit row committed with it, or the error it met, in order."""
        if any(item.spec.idempotency_key is not None for item in items):
            raise ValueError("submit_each takes no idempotency keys (use submit)")
        outcomes = await insert_submits(self._pool, list(items))
        for outcome in outcomes:
            if isinstance(outcome, Job):
                _count_submitted(outcome)
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
        ids = new_job_ids(len(specs))

        def records() -> Iterator[tuple[Any, ...]]:
            for job_id, spec in zip(ids, specs, strict=True):
                queue = queues[spec.queue_name]
                yield (
                    job_id,
                    org_id,
                    queue["id"],
                    spec.queue_name,
                    spec.job_type,
                    json_text(spec.payload),
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
            [json_text(s.payload) for s in specs],
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
        return await fetch_job(self._pool, org_id, job_id)

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
            *_settings_args(merged),
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
                    *_settings_args(merged),
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
            # A queue's finished jobs may be many: longer than the pool's statement bound.
            await conn.execute(Q["delete_queue_jobs"], row["id"], timeout=LONG_STATEMENT_SECONDS)
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
