"""Group commit: concurrent single-job writes (submit, complete) share one statement and commit.

The first request on an idle engine is written at once (no added latency); requests that arrive
while a write is in flight ride on the next one. Each caller still gets its own result or error.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import asyncpg
import orjson

from reference_server import queries
from reference_server.audit import AuditEntry, insert_audits, with_outcome
from reference_server.exceptions import NotFound, ValidationFailed
from reference_server.models import Job

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from uuid import UUID

    from reference_server.models import JobSpec

Q = queries.load("jobs.sql")

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")


def translate_db_error(exc: Exception) -> Exception:
    """Constraint violations are the client's doing (bounds the HTTP layer also checks)."""
    if isinstance(exc, asyncpg.ForeignKeyViolationError):
        return NotFound("the queue was deleted meanwhile")
    if isinstance(exc, asyncpg.CheckViolationError | asyncpg.NumericValueOutOfRangeError):
        return ValidationFailed("a value is out of range", details=[str(exc)])
    return exc


@dataclass(slots=True)
class Pending(Generic[ItemT, ResultT]):
    item: ItemT
    future: asyncio.Future[ResultT]

    def resolve(self, result: ResultT) -> None:
        if not self.future.done():  # done: the caller went away (cancelled)
            self.future.set_result(result)

    def reject(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)


class GroupCommit(Generic[ItemT, ResultT]):
    """Collects items; `write` handles a batch and settles each Pending; few writes in flight."""

    def __init__(
        self,
        write: Callable[[list[Pending[ItemT, ResultT]]], Awaitable[None]],
        *,
        max_batch: int = 500,
        max_writers: int = 2,
    ) -> None:
        self._write = write
        self._max_batch = max_batch
        self._max_writers = max_writers
        self._pending: list[Pending[ItemT, ResultT]] = []
        self._writers = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, item: ItemT) -> ResultT:
        loop = asyncio.get_running_loop()
        pending: Pending[ItemT, ResultT] = Pending(item, loop.create_future())
        self._pending.append(pending)
        if self._writers < self._max_writers:
            self._writers += 1
            task = loop.create_task(self._drain(), name="taskforge-group-commit")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await pending.future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                try:
                    await self._write(batch)
                except Exception as exc:
                    for pending in batch:
                        pending.reject(exc)
                else:
                    for pending in batch:  # a write that forgot one must not hang its caller
                        pending.reject(RuntimeError("group commit left an item unsettled"))
        finally:
            self._writers -= 1


@dataclass(frozen=True, slots=True)
class SubmitItem:
    org_id: UUID
    spec: JobSpec
    #: The request's audit row, written in the job's transaction (target and status filled in).
    audit: AuditEntry | None = None


@dataclass(frozen=True, slots=True)
class CompleteItem:
    org_id: UUID
    job_id: UUID
    worker_id: UUID
    output_json: str


def submit_writer(
    pool: asyncpg.Pool,
) -> Callable[[list[Pending[SubmitItem, Job]]], Awaitable[None]]:
    """Insert a batch of submits (any organisations) in one statement."""

    async def write(batch: list[Pending[SubmitItem, Job]]) -> None:
        items = [p.item for p in batch]
        args = (
            [i.org_id for i in items],
            [i.spec.queue_name for i in items],
            [i.spec.job_type for i in items],
            [orjson.dumps(i.spec.payload).decode() for i in items],
            [i.spec.priority for i in items],
            [i.spec.max_attempts for i in items],
            [i.spec.timeout_seconds for i in items],
            [i.spec.scheduled_for for i in items],
        )
        try:
            if any(i.audit is not None for i in items):
                # One commit for the jobs and their audit rows: no job without its row, and one
                # wait for the disk per request instead of two.
                async with pool.acquire() as conn, conn.transaction():
                    rows = await conn.fetch(Q["insert_jobs_grouped"], *args)
                    settled = _match(batch, rows)
                    audits = [
                        with_outcome(p.item.audit, target=str(job.id), status_code=201)
                        for p, job in settled
                        if p.item.audit is not None and isinstance(job, Job)
                    ]
                    if audits:
                        await insert_audits(conn, audits)
            else:
                settled = _match(batch, await pool.fetch(Q["insert_jobs_grouped"], *args))
        except Exception as exc:
            if len(batch) == 1:
                batch[0].reject(translate_db_error(exc))
                return
            # One bad item spoils the statement for all: write each alone to find it.
            for pending in batch:
                await write([pending])
            return
        for pending, outcome in settled:
            if isinstance(outcome, Job):
                pending.resolve(outcome)
            else:
                pending.reject(outcome)

    return write


def _match(
    batch: list[Pending[SubmitItem, Job]], rows: list[asyncpg.Record]
) -> list[tuple[Pending[SubmitItem, Job], Job | NotFound]]:
    """Each item's job, or NotFound for an item whose queue the join did not find.

    The join keeps exactly the items whose queue exists, in the items' order (by seq).
    """
    found = {(r["organization_id"], r["queue_name"]) for r in rows}
    ordered = iter(sorted(rows, key=lambda r: r["seq"]))
    out: list[tuple[Pending[SubmitItem, Job], Job | NotFound]] = []
    for pending in batch:
        item = pending.item
        if (item.org_id, item.spec.queue_name) in found:
            out.append((pending, Job.from_row(next(ordered))))
        else:
            out.append((pending, NotFound(f"queue {item.spec.queue_name!r} not found")))
    return out


def complete_writer(
    pool: asyncpg.Pool,
) -> Callable[[list[Pending[CompleteItem, Job | None]]], Awaitable[None]]:
    """Acknowledge a batch of completions in one statement; None for a job not leased as claimed."""

    async def write(batch: list[Pending[CompleteItem, Job | None]]) -> None:
        items = [p.item for p in batch]
        rows = await pool.fetch(
            Q["complete_jobs_grouped"],
            [i.org_id for i in items],
            [i.job_id for i in items],
            [i.worker_id for i in items],
            [i.output_json for i in items],
        )
        done: dict[tuple[Any, Any], Any] = {(r["id"], r["worker_id"]): r for r in rows}
        for pending in batch:
            # pop: of two identical requests only the first succeeds, as if they came in turn.
            row = done.pop((pending.item.job_id, pending.item.worker_id), None)
            pending.resolve(Job.from_row(row) if row is not None else None)

    return write
