"""Group commit of concurrent single-job submits: one INSERT and one commit for many requests.

The first submit on an idle engine is written at once (no added latency); submits that arrive
while a write is in flight ride on the next one. Each caller still gets its own job or error.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncpg
import orjson

from reference_server import queries
from reference_server.exceptions import NotFound, ValidationFailed
from reference_server.models import Job

if TYPE_CHECKING:
    from uuid import UUID

    from reference_server.models import JobSpec

Q = queries.load("jobs.sql")

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Item:
    org_id: UUID
    spec: JobSpec
    future: asyncio.Future[Job]


def _settle(item: _Item, *, job: Job | None = None, error: BaseException | None = None) -> None:
    if item.future.done():  # the caller went away (cancelled)
        return
    if error is not None:
        item.future.set_exception(error)
    else:
        item.future.set_result(job)  # type: ignore[arg-type]


class SubmitGroup:
    """Batches submits without idempotency keys; at most `max_writers` INSERTs in flight."""

    def __init__(self, pool: asyncpg.Pool, *, max_batch: int = 500, max_writers: int = 2) -> None:
        self._pool = pool
        self._max_batch = max_batch
        self._max_writers = max_writers
        self._pending: list[_Item] = []
        self._writers = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, org_id: UUID, spec: JobSpec) -> Job:
        loop = asyncio.get_running_loop()
        item = _Item(org_id, spec, loop.create_future())
        self._pending.append(item)
        if self._writers < self._max_writers:
            self._writers += 1
            task = loop.create_task(self._write_pending(), name="taskforge-submit-group")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await item.future

    async def _write_pending(self) -> None:
        try:
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                await self._write(batch)
        finally:
            self._writers -= 1

    async def _write(self, batch: list[_Item]) -> None:
        try:
            rows = await self._pool.fetch(
                Q["insert_jobs_grouped"],
                [i.org_id for i in batch],
                [i.spec.queue_name for i in batch],
                [i.spec.job_type for i in batch],
                [orjson.dumps(i.spec.payload).decode() for i in batch],
                [i.spec.priority for i in batch],
                [i.spec.max_attempts for i in batch],
                [i.spec.timeout_seconds for i in batch],
                [i.spec.scheduled_for for i in batch],
            )
        except Exception as exc:
            if len(batch) > 1:
                # One bad item spoils the statement for all: write each alone to find it.
                for item in batch:
                    await self._write([item])
                return
            _settle(batch[0], error=translate_db_error(exc))
            return
        found = {(r["organization_id"], r["queue_name"]) for r in rows}
        ordered = iter(sorted(rows, key=lambda r: r["seq"]))
        for item in batch:
            if (item.org_id, item.spec.queue_name) in found:
                _settle(item, job=Job.from_row(next(ordered)))
            else:
                _settle(item, error=NotFound(f"queue {item.spec.queue_name!r} not found"))
        # Every row was handed out: the join kept exactly the items whose queue exists.
        assert next(ordered, None) is None


def translate_db_error(exc: Exception) -> Exception:
    """Constraint violations are the client's doing (bounds the HTTP layer also checks)."""
    if isinstance(exc, asyncpg.ForeignKeyViolationError):
        return NotFound("the queue was deleted meanwhile")
    if isinstance(exc, asyncpg.CheckViolationError | asyncpg.NumericValueOutOfRangeError):
        return ValidationFailed("a value is out of range", details=[str(exc)])
    return exc
