"""Dequeue order: priority first, FIFO within a priority; scheduled jobs; paused queues."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import asyncpg
import pytest
from engine_support import db_now, spec

from reference_server.engine import Engine
from reference_server.models import JobStatus


@pytest.fixture
def engine(pool: asyncpg.Pool) -> Engine:
    return Engine(pool, builtin_workers=0)


async def test_higher_priority_first_and_fifo_within_a_priority(engine: Engine, org: UUID) -> None:
    submitted = []
    for n, priority in enumerate([0, 5, 9, 5, 0, 9, 5]):
        job, _ = await engine.submit(org, spec(priority=priority, payload={"n": n}))
        submitted.append(job)
    worker = await engine.register_worker(org, name="w", queues=["default"], max_concurrent_jobs=10)

    order = []
    for _ in range(len(submitted)):
        # One at a time, so the order is the engine's, not a sort of one batch.
        [job] = await engine.lease(org, worker.id, max_jobs=1)
        order.append(job.payload["n"])

    assert order == [2, 5, 1, 3, 6, 0, 4]
    assert await engine.lease(org, worker.id, max_jobs=1) == []


async def test_a_batch_lease_comes_back_in_dequeue_order(engine: Engine, org: UUID) -> None:
    for n, priority in enumerate([1, 3, 1, 3]):
        await engine.submit(org, spec(priority=priority, payload={"n": n}))
    worker = await engine.register_worker(org, name="w", queues=["default"], max_concurrent_jobs=10)

    jobs = await engine.lease(org, worker.id, max_jobs=10)

    assert [j.payload["n"] for j in jobs] == [1, 3, 0, 2]


async def test_lease_marks_the_job_processing_for_the_worker(
    engine: Engine, org: UUID, pool: asyncpg.Pool
) -> None:
    submitted, _ = await engine.submit(org, spec())
    worker = await engine.register_worker(org, name="w", queues=["default"], max_concurrent_jobs=1)
    before = await db_now(pool)

    [job] = await engine.lease(org, worker.id, max_jobs=5, lease_seconds=120)

    assert job.id == submitted.id
    assert job.status is JobStatus.PROCESSING
    assert job.worker_id == worker.id
    assert job.attempt_count == 1
    assert job.lease_expires_at is not None
    assert job.lease_expires_at >= before + timedelta(seconds=119)
    assert (await engine.get_job(org, job.id)).status is JobStatus.PROCESSING


async def test_future_job_is_scheduled_and_not_leased_until_due(
    engine: Engine, org: UUID, pool: asyncpg.Pool
) -> None:
    later = await db_now(pool) + timedelta(hours=1)
    job, _ = await engine.submit(org, spec(scheduled_for=later))
    worker = await engine.register_worker(org, name="w", queues=["default"], max_concurrent_jobs=1)

    assert job.status is JobStatus.SCHEDULED
    assert job.scheduled_for == later
    assert await engine.lease(org, worker.id, max_jobs=1) == []
    assert await engine.promote_due_jobs() == 0

    # Time passes: the job falls due.
    await pool.execute(
        "UPDATE jobs SET scheduled_for = now() - interval '1 second' WHERE id = $1", job.id
    )
    assert await engine.promote_due_jobs() == 1
    assert (await engine.get_job(org, job.id)).status is JobStatus.PENDING
    [leased] = await engine.lease(org, worker.id, max_jobs=1)
    assert leased.id == job.id


async def test_due_scheduled_job_is_leasable_before_promotion(
    engine: Engine, org: UUID, pool: asyncpg.Pool
) -> None:
    job, _ = await engine.submit(org, spec(scheduled_for=await db_now(pool) + timedelta(hours=1)))
    await pool.execute(
        "UPDATE jobs SET scheduled_for = now() - interval '1 second' WHERE id = $1", job.id
    )
    worker = await engine.register_worker(org, name="w", queues=["default"], max_concurrent_jobs=1)

    [leased] = await engine.lease(org, worker.id, max_jobs=1)

    assert leased.id == job.id


async def test_past_scheduled_for_is_pending(engine: Engine, org: UUID, pool: asyncpg.Pool) -> None:
    job, _ = await engine.submit(org, spec(scheduled_for=await db_now(pool) - timedelta(minutes=5)))
    assert job.status is JobStatus.PENDING


async def test_paused_queue_accepts_jobs_but_leases_none(engine: Engine, org: UUID) -> None:
    await engine.create_queue(org, name="reports")
    worker = await engine.register_worker(
        org, name="w", queues=["reports", "default"], max_concurrent_jobs=5
    )
    paused = await engine.pause_queue(org, "reports")
    held, _ = await engine.submit(org, spec(queue="reports", priority=9))
    other, _ = await engine.submit(org, spec(queue="default", priority=0))

    assert paused.paused
    assert [j.id for j in await engine.lease(org, worker.id, max_jobs=5)] == [other.id]

    resumed = await engine.resume_queue(org, "reports")
    assert not resumed.paused
    assert [j.id for j in await engine.lease(org, worker.id, max_jobs=5)] == [held.id]


async def test_worker_leases_only_from_its_own_queues(engine: Engine, org: UUID) -> None:
    await engine.create_queue(org, name="emails")
    mine, _ = await engine.submit(org, spec(queue="emails"))
    await engine.submit(org, spec(queue="default", priority=9))
    worker = await engine.register_worker(org, name="w", queues=["emails"], max_concurrent_jobs=5)

    assert [j.id for j in await engine.lease(org, worker.id, max_jobs=5)] == [mine.id]


async def test_worker_never_holds_more_than_max_concurrent_jobs(engine: Engine, org: UUID) -> None:
    for _ in range(5):
        await engine.submit(org, spec())
    worker = await engine.register_worker(org, name="w", queues=["default"], max_concurrent_jobs=2)

    first = await engine.lease(org, worker.id, max_jobs=5)
    assert len(first) == 2
    assert await engine.lease(org, worker.id, max_jobs=5) == []
    await engine.complete_job(org, first[0].id, worker_id=worker.id)
    assert len(await engine.lease(org, worker.id, max_jobs=5)) == 1


async def test_worker_of_several_queues_gets_the_best_job_of_all(
    engine: Engine, org: UUID
) -> None:
    await engine.create_queue(org, name="second")
    plan = [("default", 1), ("second", 7), ("default", 7), ("second", 1), ("default", 4)]
    for n, (queue, priority) in enumerate(plan):
        await engine.submit(org, spec(queue=queue, priority=priority, payload={"n": n}))
    worker = await engine.register_worker(
        org, name="w", queues=["default", "second"], max_concurrent_jobs=10
    )

    first_two = await engine.lease(org, worker.id, max_jobs=2)
    rest = [(await engine.lease(org, worker.id, max_jobs=1))[0] for _ in range(3)]

    assert [j.payload["n"] for j in first_two + rest] == [1, 2, 4, 0, 3]
