"""Failures: backoff schedule, retry to scheduled, dead after the last attempt, cancel/retry."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from uuid import UUID

import asyncpg
import pytest
from engine_support import db_now, spec

from reference_server.backoff import base_delay, delay_bounds, retry_delay
from reference_server.engine import Engine
from reference_server.exceptions import Conflict
from reference_server.models import JobStatus, QueueSettings, Worker

DEFAULTS = QueueSettings()


@pytest.fixture
def engine(pool: asyncpg.Pool) -> Engine:
    return Engine(pool, builtin_workers=0)


@pytest.fixture
async def worker(engine: Engine, org: UUID) -> Worker:
    return await engine.register_worker(org, name="w", queues=["default"], max_concurrent_jobs=5)


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 256.0), (10, 300.0), (60, 300.0), (5000, 300.0)],
)
def test_contract_default_schedule(attempt: int, expected: float) -> None:
    """delay = min(300, 1 * 2^(attempt-1)) with the contract's defaults."""
    assert base_delay(attempt, DEFAULTS) == expected


def test_jitter_is_ten_percent_either_way() -> None:
    settings = QueueSettings(initial_retry_delay_seconds=10, backoff_multiplier=3)
    assert retry_delay(2, settings, jitter=-1) == pytest.approx(27.0)
    assert retry_delay(2, settings, jitter=1) == pytest.approx(33.0)
    assert retry_delay(2, settings, jitter=0) == pytest.approx(30.0)
    draws = {retry_delay(2, settings) for _ in range(200)}
    assert all(27.0 <= d <= 33.0 for d in draws)
    assert len(draws) > 1  # the jitter really varies


def test_floor_of_one_second() -> None:
    tiny = QueueSettings(initial_retry_delay_seconds=0.1)
    assert retry_delay(1, tiny, jitter=-1) == 1.0
    assert delay_bounds(1, tiny) == (1.0, 1.0)
    assert retry_delay(1, DEFAULTS, jitter=-1) == 1.0  # 0.9 s floored


async def test_retryable_failure_is_scheduled_with_backoff(
    engine: Engine, org: UUID, worker: Worker, pool: asyncpg.Pool
) -> None:
    settings = {"initial_retry_delay_seconds": 10, "backoff_multiplier": 3, "max_attempts": 5}
    await engine.create_queue(org, name="slow", settings=settings)
    worker = await engine.register_worker(org, name="w2", queues=["slow"], max_concurrent_jobs=1)
    job, _ = await engine.submit(org, spec(queue="slow"))
    queue_settings = (await engine.get_queue(org, "slow")).settings

    for attempt in (1, 2, 3):
        [leased] = await engine.lease(org, worker.id, max_jobs=1)
        assert leased.attempt_count == attempt
        before = await db_now(pool)
        failed = await engine.fail_job(
            org, job.id, worker_id=worker.id, error_message=f"boom {attempt}"
        )
        after = await db_now(pool)
        low, high = delay_bounds(attempt, queue_settings)
        assert (low, high) == pytest.approx((9 * 3 ** (attempt - 1), 11 * 3 ** (attempt - 1)))
        assert failed.status is JobStatus.SCHEDULED
        assert failed.error_message == f"boom {attempt}"
        assert failed.worker_id is None and failed.lease_expires_at is None
        assert before + timedelta(seconds=low) <= failed.scheduled_for
        assert failed.scheduled_for <= after + timedelta(seconds=high)
        # Let time pass for the next attempt.
        await pool.execute("UPDATE jobs SET scheduled_for = now() WHERE id = $1", job.id)


async def test_dead_after_max_attempts(
    engine: Engine, org: UUID, worker: Worker, pool: asyncpg.Pool
) -> None:
    job, _ = await engine.submit(org, spec(max_attempts=2))

    [_] = await engine.lease(org, worker.id, max_jobs=1)
    first = await engine.fail_job(org, job.id, worker_id=worker.id, error_message="one")
    assert first.status is JobStatus.SCHEDULED
    await pool.execute("UPDATE jobs SET scheduled_for = now() WHERE id = $1", job.id)
    [again] = await engine.lease(org, worker.id, max_jobs=1)
    assert again.attempt_count == 2
    last = await engine.fail_job(org, job.id, worker_id=worker.id, error_message="two")

    assert last.status is JobStatus.DEAD
    assert last.error_message == "two"
    assert last.completed_at is not None
    assert await engine.lease(org, worker.id, max_jobs=1) == []


async def test_non_retryable_failure_is_dead_at_once(
    engine: Engine, org: UUID, worker: Worker
) -> None:
    job, _ = await engine.submit(org, spec(max_attempts=5))
    await engine.lease(org, worker.id, max_jobs=1)

    dead = await engine.fail_job(
        org, job.id, worker_id=worker.id, error_message="bad input", retryable=False
    )

    assert dead.status is JobStatus.DEAD
    assert dead.attempt_count == 1


async def test_retry_of_a_dead_job_resets_attempts(
    engine: Engine, org: UUID, worker: Worker
) -> None:
    job, _ = await engine.submit(org, spec(max_attempts=1))
    await engine.lease(org, worker.id, max_jobs=1)
    await engine.fail_job(org, job.id, worker_id=worker.id, error_message="x")

    retried = await engine.retry_job(org, job.id)

    assert retried.status is JobStatus.PENDING
    assert retried.attempt_count == 0
    assert retried.completed_at is None and retried.error_message is None
    [leased] = await engine.lease(org, worker.id, max_jobs=1)
    assert leased.id == job.id and leased.attempt_count == 1


async def test_retry_of_a_failed_job_is_allowed(
    engine: Engine, org: UUID, pool: asyncpg.Pool
) -> None:
    job, _ = await engine.submit(org, spec())
    await pool.execute("UPDATE jobs SET status = 'failed', attempt_count = 2 WHERE id = $1", job.id)

    retried = await engine.retry_job(org, job.id)

    assert retried.status is JobStatus.PENDING and retried.attempt_count == 0


async def test_retry_is_refused_unless_failed_or_dead(
    engine: Engine, org: UUID, pool: asyncpg.Pool
) -> None:
    for status in ("pending", "scheduled", "processing", "succeeded", "cancelled"):
        job, _ = await engine.submit(org, spec())
        await pool.execute("UPDATE jobs SET status = $2 WHERE id = $1", job.id, status)

        with pytest.raises(Conflict):
            await engine.retry_job(org, job.id)
        assert (await engine.get_job(org, job.id)).status == status


async def test_cancel_from_pending_or_scheduled(
    engine: Engine, org: UUID, pool: asyncpg.Pool
) -> None:
    for status in ("pending", "scheduled"):
        job, _ = await engine.submit(org, spec())
        await pool.execute("UPDATE jobs SET status = $2 WHERE id = $1", job.id, status)

        cancelled = await engine.cancel_job(org, job.id)

        assert cancelled.status is JobStatus.CANCELLED
        assert cancelled.completed_at is not None


async def test_cancel_is_refused_from_other_states(
    engine: Engine, org: UUID, pool: asyncpg.Pool
) -> None:
    for status in ("processing", "succeeded", "failed", "dead", "cancelled"):
        job, _ = await engine.submit(org, spec())
        await pool.execute("UPDATE jobs SET status = $2 WHERE id = $1", job.id, status)

        with pytest.raises(Conflict):
            await engine.cancel_job(org, job.id)
        assert (await engine.get_job(org, job.id)).status == status


async def test_cancelled_job_is_never_leased(engine: Engine, org: UUID, worker: Worker) -> None:
    job, _ = await engine.submit(org, spec())
    await engine.cancel_job(org, job.id)
    assert await engine.lease(org, worker.id, max_jobs=1) == []


async def test_complete_and_fail_only_by_the_lease_holder(
    engine: Engine, org: UUID, worker: Worker
) -> None:
    job, _ = await engine.submit(org, spec())
    other = await engine.register_worker(org, name="o", queues=["default"], max_concurrent_jobs=1)
    with pytest.raises(Conflict):
        await engine.complete_job(org, job.id, worker_id=worker.id)  # not leased yet
    await engine.lease(org, worker.id, max_jobs=1)

    with pytest.raises(Conflict):
        await engine.complete_job(org, job.id, worker_id=other.id, output={"x": 1})
    with pytest.raises(Conflict):
        await engine.fail_job(org, job.id, worker_id=other.id, error_message="not mine")

    done = await engine.complete_job(org, job.id, worker_id=worker.id, output={"x": 1})
    assert done.status is JobStatus.SUCCEEDED
    assert done.output == {"x": 1}
    assert done.completed_at is not None
    with pytest.raises(Conflict):
        await engine.complete_job(org, job.id, worker_id=worker.id)  # twice


async def test_concurrent_completions_each_get_their_own_answer(
    engine: Engine, org: UUID, worker: Worker, pool: asyncpg.Pool
) -> None:
    """Group commit of completions: only the lease holder wins, once per job."""
    other = await engine.register_worker(org, name="o", queues=["default"], max_concurrent_jobs=1)
    worker = await engine.register_worker(
        org, name="big", queues=["default"], max_concurrent_jobs=10
    )
    for n in range(10):
        await engine.submit(org, spec(payload={"n": n}))
    jobs = await engine.lease(org, worker.id, max_jobs=10)
    assert len(jobs) == 10
    calls = []
    for job in jobs:
        calls.append(engine.complete_job(org, job.id, worker_id=other.id, output={"by": "o"}))
        calls.append(engine.complete_job(org, job.id, worker_id=worker.id, output=job.payload))
        calls.append(engine.complete_job(org, job.id, worker_id=worker.id, output={"twice": 1}))

    results = await asyncio.gather(*calls, return_exceptions=True)

    for n, job in enumerate(jobs):
        by_other, by_holder, repeated = results[3 * n : 3 * n + 3]
        assert isinstance(by_other, Conflict)
        assert not isinstance(by_holder, BaseException)
        assert by_holder.status is JobStatus.SUCCEEDED and by_holder.output == job.payload
        assert isinstance(repeated, Conflict)
    assert await pool.fetchval("SELECT count(*) FROM jobs WHERE status = 'succeeded'") == 10
