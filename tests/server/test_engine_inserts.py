"""Every insert path keeps what the foreign keys and the insert trigger used to guarantee.

jobs has no foreign keys and no insert trigger (migration 20261128000009): each insert statement
locks the queues it names FOR KEY SHARE and notifies for its pending jobs itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import pytest
from engine_support import WAIT_LIMIT_SECONDS, make_org, spec

from reference_server import queries
from reference_server.engine import Engine
from reference_server.exceptions import NotFound

Q = queries.load("jobs.sql")

Submit = Callable[[Engine, UUID, str, str], Awaitable[Any]]


def _past() -> datetime:
    return datetime.now(UTC) - timedelta(seconds=5)


def _future() -> datetime:
    return datetime.now(UTC) + timedelta(hours=1)


#: Each way a job enters the table (engine.py): group commit, insert_job, COPY, INSERT .. unnest.
PATHS: dict[str, Submit] = {
    "single, group commit": lambda e, o, q, t: e.submit(o, spec(job_type=t, queue=q)),
    "single, idempotency key": lambda e, o, q, t: e.submit(
        o, spec(job_type=t, queue=q, idempotency_key="k1")
    ),
    "batch, COPY": lambda e, o, q, t: e.submit_batch(o, [spec(job_type=t, queue=q)] * 3),
    "batch, INSERT": lambda e, o, q, t: e.submit_batch(
        o, [spec(job_type=t, queue=q, scheduled_for=_past())] * 3
    ),
}


async def _until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_LIMIT_SECONDS
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("path", list(PATHS))
async def test_a_submit_racing_a_queue_deletion_leaves_no_orphan(
    pool: asyncpg.Pool, path: str
) -> None:
    org = await make_org(pool)
    engine = Engine(pool, builtin_workers=0)
    queue = await engine.create_queue(org, name="doomed")
    async with pool.acquire() as deleter:
        # delete_queue's steps, its transaction held open while the submit starts.
        transaction = deleter.transaction()
        await transaction.start()
        await deleter.fetchrow(Q["lock_queue"], org, "doomed")
        await deleter.execute(Q["delete_queue_jobs"], queue.id)
        await deleter.execute(Q["delete_queue"], queue.id)
        submit = asyncio.create_task(PATHS[path](engine, org, "doomed", "external_job"))

        async def submit_waits_for_the_queue_lock() -> bool:
            waiting = await pool.fetchval("SELECT count(*) FROM pg_locks WHERE NOT granted")
            return bool(waiting)

        await _until(submit_waits_for_the_queue_lock, "the submit waits for the deletion")
        await transaction.commit()

    with pytest.raises(NotFound):
        await asyncio.wait_for(submit, WAIT_LIMIT_SECONDS)
    orphans = await pool.fetchval("SELECT count(*) FROM jobs WHERE queue_id = $1", queue.id)
    assert orphans == 0


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize(("job_type", "suffix"), [("external_job", ""), ("test_job", ":b")])
async def test_every_insert_path_notifies_its_queue(
    pool: asyncpg.Pool, path: str, job_type: str, suffix: str
) -> None:
    org = await make_org(pool)
    engine = Engine(pool, builtin_workers=0)
    queue = await engine.get_queue(org, "default")
    received: list[str] = []

    def heard(*args: Any) -> None:
        received.append(args[3])

    async with pool.acquire() as listener:
        await listener.add_listener("taskforge_jobs", heard)
        await PATHS[path](engine, org, "default", job_type)

        async def notified() -> bool:
            return f"{queue.id}{suffix}" in received

        await _until(notified, "a notification for the queue")
        await listener.remove_listener("taskforge_jobs", heard)

    assert set(received) == {f"{queue.id}{suffix}"}


async def test_ids_are_time_ordered_on_every_insert_path(pool: asyncpg.Pool) -> None:
    org = await make_org(pool)
    engine = Engine(pool, builtin_workers=0)
    single, _ = await engine.submit(org, spec())
    copied = await engine.submit_batch(org, [spec()] * 2)
    inserted = await engine.submit_batch(org, [spec(scheduled_for=_future())])

    ids = [single.id, *copied, *inserted]
    assert {i.version for i in ids} == {7}
    # The first 48 bits are the milliseconds of the submit: later submits sort after earlier ones.
    assert sorted([single.id, copied[0], inserted[0]], key=lambda i: i.bytes[:6]) == [
        single.id,
        copied[0],
        inserted[0],
    ]
