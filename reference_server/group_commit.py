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
from reference_server.audit import AuditEntry
from reference_server.dbpool import database_unavailable
from reference_server.exceptions import NotFound, ValidationFailed
from reference_server.models import Job, utc_in_range

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from uuid import UUID

    from reference_server.models import JobSpec

Q = queries.load("jobs.sql")
SUBMITS = queries.load("submits.sql")

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
    """Collects items; `write` handles a batch and settles each Pending; few writes in flight.

    A write that raises settles its batch's unsettled items with the error. When `fails_queue`
    says the error is one every write would meet now (the database hung or its pool exhausted),
    the items queued meanwhile get it too: each would otherwise wait for a writer, then out its
    own timeouts, so a request behind a stuck writer waited several bounds instead of one.
    """

    def __init__(
        self,
        write: Callable[[list[Pending[ItemT, ResultT]]], Awaitable[None]],
        *,
        max_batch: int = 500,
        max_writers: int = 2,
        fails_queue: Callable[[BaseException], bool] | None = None,
    ) -> None:
        self._write = write
        self._max_batch = max_batch
        self._max_writers = max_writers
        self._fails_queue = fails_queue
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
                    if self._fails_queue is not None and self._fails_queue(exc):
                        batch += self._pending
                        self._pending = []
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
        outcomes = await insert_submits(pool, [p.item for p in batch])
        for pending, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, Job):
                pending.resolve(outcome)
            else:
                pending.reject(outcome)

    return write


async def insert_submits(pool: asyncpg.Pool, items: list[SubmitItem]) -> list[Job | Exception]:
    """Each item's new job, or why it has none (NotFound for an unknown queue), in order.

    Each item settles once: its job is stored and returned, or nothing of it is stored and its
    error returned. The statement and the reading of its rows run in one transaction, so a
    failure in either rolls back every item and the items may be written again one by one to
    find the bad one; a failed COMMIT may have committed, so its items are never written again.
    When the database is unavailable (hung, down, its pool exhausted) nothing is retried: the
    error is raised for the whole group at once, 503 for each, without a wait per item.
    """
    outcomes: list[Job | Exception | None] = [None] * len(items)
    todo: list[int] = []
    for n, item in enumerate(items):
        problem = _out_of_range(item)
        if problem is not None:  # refused alone, before the statement it would spoil
            outcomes[n] = problem
        else:
            todo.append(n)
    if todo:
        written = await _insert_together(pool, [items[n] for n in todo])
        for n, outcome in zip(todo, written, strict=True):
            outcomes[n] = outcome
    return [o if o is not None else RuntimeError("submit left unsettled") for o in outcomes]


async def _insert_together(pool: asyncpg.Pool, items: list[SubmitItem]) -> list[Job | Exception]:
    written = False  # the statement and its rows are done: a failure now is the COMMIT's
    try:
        async with pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(SUBMITS["insert_jobs_with_audit"], _submit_document(items))
            outcomes = _outcomes(items, rows)
            written = True
    except Exception as exc:
        if database_unavailable(exc):
            # Before the COMMIT nothing is stored; after it, it may be: either way no item is
            # written again, and each alone would only wait for the database again.
            raise
        if written:  # it may have committed: settle all with the error
            return [exc for _ in items]
        if len(items) == 1:
            return [translate_db_error(exc)]
    else:
        return outcomes
    # Nothing of the statement was kept: one bad item spoils it for all, so write each alone.
    return [(await _insert_together(pool, [item]))[0] for item in items]


def _outcomes(items: list[SubmitItem], rows: list[asyncpg.Record]) -> list[Job | Exception]:
    by_item = {row["n"]: row for row in rows}
    outcomes: list[Job | Exception] = []
    for n, item in enumerate(items):
        row = by_item.get(n)
        if row is not None:
            outcomes.append(Job.from_row(row))
        else:  # the join found no such queue
            outcomes.append(NotFound(f"queue {item.spec.queue_name!r} not found"))
    return outcomes


def _out_of_range(item: SubmitItem) -> ValidationFailed | None:
    """The HTTP layer refuses these already; a time that cannot be read back must never be
    stored, whoever the caller."""
    when = item.spec.scheduled_for
    if when is None:
        return None
    try:
        utc_in_range(when)
    except ValueError as exc:
        detail = {"field": "scheduled_for", "message": str(exc)}
        return ValidationFailed("scheduled_for is out of range", details=[detail])
    return None


def _submit_document(batch: list[SubmitItem]) -> str:
    """The batch as insert_jobs_with_audit's one JSON parameter (n: the item's index)."""
    items = []
    for n, item in enumerate(batch):
        spec, audit = item.spec, item.audit
        entry: dict[str, Any] = {
            "n": n,
            "organization_id": str(item.org_id),  # asyncpg's UUID is not orjson's
            "queue_name": spec.queue_name,
            "job_type": spec.job_type,
            "payload": spec.payload,
            "priority": spec.priority,
            "max_attempts": spec.max_attempts,
            "timeout_seconds": spec.timeout_seconds,
            "scheduled_for": spec.scheduled_for,
        }
        if audit is not None:
            entry["actor"] = audit.actor
            entry["action"] = audit.action
            entry["source_ip"] = audit.source_ip
            entry["request_id"] = audit.request_id
        items.append(entry)
    return orjson.dumps(items).decode()


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
