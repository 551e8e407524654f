"""Background work: long-poll wake-ups, lease reaper, heartbeats, the built-in pool, shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from uuid import UUID

import asyncpg
import pytest
from engine_support import WAIT_LIMIT_SECONDS, db_now, make_org, spec, wait_for_status
from prometheus_client import REGISTRY

from reference_server.engine import Engine
from reference_server.models import JobStatus, LeasedJob


@pytest.fixture
async def engine(pool: asyncpg.Pool) -> AsyncIterator[Engine]:
    """A started engine without built-in runners and with a brisk reaper."""
    engine = Engine(pool, builtin_workers=0, reaper_interval_seconds=0.1)
    await engine.start()
    yield engine
    await engine.stop(0)


@pytest.fixture
async def builtin_engine(pool: asyncpg.Pool) -> AsyncIterator[Engine]:
    engine = Engine(pool, builtin_workers=2, builtin_batch_size=8, reaper_interval_seconds=0.1)
    await engine.start()
    yield engine
    await engine.stop(0)


def sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def until(predicate: object, what: str) -> None:
    """Bounded wait for a condition of the test's own making."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_LIMIT_SECONDS
    while not predicate():  # type: ignore[operator]
        if loop.time() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.02)


async def test_long_poll_wakes_on_submit(engine: Engine, org: UUID) -> None:
    worker = await engine.register_worker(org, name="w", queues=["default"], max_concurrent_jobs=1)
    queue = await engine.get_queue(org, "default")
    assert engine.notifier.listening
    received_before = engine.notifier.received

    # A minute-long poll: finishing well inside the bound below means the NOTIFY woke it.
    lease = asyncio.create_task(engine.lease(org, worker.id, max_jobs=1, wait_seconds=60))
    await until(lambda: engine.notifier.waiting(queue.id) == 1, "the lessee waits")
    job, _ = await engine.submit(org, spec())
    leased = await asyncio.wait_for(lease, WAIT_LIMIT_SECONDS)

    assert [j.id for j in leased] == [job.id]
    assert engine.notifier.received > received_before


async def test_long_poll_wakes_when_a_paused_queue_resumes(engine: Engine, org: UUID) -> None:
    worker = await engine.register_worker(org, name="w", queues=["default"], max_concurrent_jobs=1)
    queue = await engine.pause_queue(org, "default")
    job, _ = await engine.submit(org, spec())

    lease = asyncio.create_task(engine.lease(org, worker.id, max_jobs=1, wait_seconds=60))
    await until(lambda: engine.notifier.waiting(queue.id) == 1, "the lessee waits")
    await engine.resume_queue(org, "default")

    assert [j.id for j in await asyncio.wait_for(lease, WAIT_LIMIT_SECONDS)] == [job.id]


async def test_long_poll_returns_empty_at_its_deadline(engine: Engine, org: UUID) -> None:
    worker = await engine.register_worker(org, name="w", queues=["default"], max_concurrent_jobs=1)
    assert await engine.lease(org, worker.id, max_jobs=1, wait_seconds=0.2) == []


async def test_expired_lease_returns_to_pending_after_worker_vanishes(
    engine: Engine, org: UUID
) -> None:
    job, _ = await engine.submit(org, spec(max_attempts=3))
    worker = await engine.register_worker(org, name="w", queues=["default"], max_concurrent_jobs=1)
    await engine.lease(org, worker.id, max_jobs=1, lease_seconds=1)
    # The worker now vanishes: no heartbeat, no complete.

    back = await wait_for_status(engine, org, job.id, JobStatus.PENDING)

    assert back.attempt_count == 1  # the lost attempt counts
    assert back.worker_id is None and back.lease_expires_at is None
    assert back.error_message == "lease expired"
    successor = await engine.register_worker(
        org, name="w2", queues=["default"], max_concurrent_jobs=1
    )
    [again] = await engine.lease(org, successor.id, max_jobs=1)
    assert again.id == job.id and again.attempt_count == 2


async def test_expired_lease_of_the_last_attempt_is_dead(engine: Engine, org: UUID) -> None:
    job, _ = await engine.submit(org, spec(max_attempts=1))
    worker = await engine.register_worker(org, name="w", queues=["default"], max_concurrent_jobs=1)
    await engine.lease(org, worker.id, max_jobs=1, lease_seconds=1)

    dead = await wait_for_status(engine, org, job.id, JobStatus.DEAD)

    assert dead.attempt_count == 1 and dead.completed_at is not None


async def test_heartbeat_extends_the_workers_leases(
    engine: Engine, org: UUID, pool: asyncpg.Pool
) -> None:
    worker = await engine.register_worker(org, name="w", queues=["default"], max_concurrent_jobs=2)
    for _ in range(2):
        await engine.submit(org, spec())
    leased = await engine.lease(org, worker.id, max_jobs=2, lease_seconds=600)
    # Pretend the leases are about to run out.
    await pool.execute("UPDATE jobs SET lease_expires_at = now() + interval '1 second'")
    before = await db_now(pool)

    beat = await engine.heartbeat(org, worker.id)

    assert beat.active_jobs == 2 and beat.status == "online"
    for job in leased:
        renewed = await engine.get_job(org, job.id)
        assert renewed.lease_expires_at is not None
        assert renewed.lease_expires_at >= before + timedelta(seconds=599)


async def test_builtin_test_job_succeeds_without_external_worker(
    builtin_engine: Engine, org: UUID
) -> None:
    """The guide's 5.2 smoke job."""
    labels = {"queue": "default", "job_type": "test_job"}
    submitted_before = sample("taskforge_job_submitted_total", labels)
    processed_before = sample("taskforge_job_processed_total", {**labels, "result": "succeeded"})
    job, _ = await builtin_engine.submit(
        org, spec(job_type="test_job", payload={"test": "data"}, priority=5)
    )

    done = await wait_for_status(builtin_engine, org, job.id, JobStatus.SUCCEEDED)
    await until(
        lambda: (
            sample("taskforge_job_processed_total", {**labels, "result": "succeeded"})
            == processed_before + 1
        ),
        "the processed counter counts it",
    )
    assert sample("taskforge_job_submitted_total", labels) == submitted_before + 1
    assert sample("taskforge_job_processing_duration_seconds_count", labels) >= 1
    assert sample("taskforge_job_wait_duration_seconds_count", {"queue": "default"}) >= 1

    assert done.output["ok"] is True
    assert done.attempt_count == 1
    assert done.worker_id == builtin_engine.builtin_worker_id
    assert done.completed_at is not None


async def test_builtin_pool_serves_every_organisation_and_only_builtin_types(
    builtin_engine: Engine, org: UUID, pool: asyncpg.Pool
) -> None:
    other = await make_org(pool, "globex")
    external, _ = await builtin_engine.submit(org, spec(job_type="resize_image"))
    mine, _ = await builtin_engine.submit(org, spec(job_type="echo", payload={"a": 1}))
    theirs, _ = await builtin_engine.submit(other, spec(job_type="echo", payload={"b": 2}))

    assert (await wait_for_status(builtin_engine, org, mine.id, JobStatus.SUCCEEDED)).output == {
        "a": 1
    }
    done = await wait_for_status(builtin_engine, other, theirs.id, JobStatus.SUCCEEDED)
    assert done.output == {"b": 2}
    assert (await builtin_engine.get_job(org, external.id)).status is JobStatus.PENDING


async def test_builtin_many_jobs_all_succeed(builtin_engine: Engine, org: UUID) -> None:
    ids = await builtin_engine.submit_batch(
        org, [spec(job_type="test_job", payload={"n": n}) for n in range(200)]
    )
    await wait_for_status(builtin_engine, org, ids[-1], JobStatus.SUCCEEDED)
    await until_count(builtin_engine, org, 200)


async def until_count(engine: Engine, org: UUID, expected: int) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_LIMIT_SECONDS
    while (await engine.list_jobs(org, status=JobStatus.SUCCEEDED, limit=1))[1] < expected:
        if loop.time() > deadline:
            raise AssertionError(f"fewer than {expected} jobs succeeded")
        await asyncio.sleep(0.05)


async def test_builtin_fail_job_retries_then_dies(builtin_engine: Engine, org: UUID) -> None:
    job, _ = await builtin_engine.submit(org, spec(job_type="fail", max_attempts=2))

    dead = await wait_for_status(builtin_engine, org, job.id, JobStatus.DEAD)

    assert dead.attempt_count == 2
    assert "failed on purpose" in (dead.error_message or "")


async def test_builtin_job_over_its_timeout_fails(builtin_engine: Engine, org: UUID) -> None:
    job, _ = await builtin_engine.submit(
        org, spec(job_type="sleep", payload={"seconds": 120}, timeout_seconds=1, max_attempts=1)
    )

    dead = await wait_for_status(builtin_engine, org, job.id, JobStatus.DEAD)

    assert "timed out" in (dead.error_message or "")


async def test_stop_releases_unfinished_builtin_jobs_without_counting_an_attempt(
    pool: asyncpg.Pool, org: UUID
) -> None:
    engine = Engine(pool, builtin_workers=1)
    await engine.start()
    try:
        job, _ = await engine.submit(org, spec(job_type="sleep", payload={"seconds": 120}))
        await wait_for_status(engine, org, job.id, JobStatus.PROCESSING)
    finally:
        await engine.stop(0)

    released = await engine.get_job(org, job.id)
    assert released.status is JobStatus.PENDING
    assert released.attempt_count == 0
    assert released.worker_id is None


async def test_stop_lets_in_flight_jobs_finish_within_the_grace(
    pool: asyncpg.Pool, org: UUID
) -> None:
    engine = Engine(pool, builtin_workers=1)
    await engine.start()
    try:
        job, _ = await engine.submit(org, spec(job_type="sleep", payload={"seconds": 0.5}))
        await wait_for_status(engine, org, job.id, JobStatus.PROCESSING)
    finally:
        await engine.stop(WAIT_LIMIT_SECONDS)

    assert (await engine.get_job(org, job.id)).status is JobStatus.SUCCEEDED


async def test_listener_reconnects_after_losing_its_connection(
    engine: Engine, org: UUID, pool: asyncpg.Pool
) -> None:
    worker = await engine.register_worker(org, name="w", queues=["default"], max_concurrent_jobs=1)
    queue = await engine.get_queue(org, "default")
    killed = await pool.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE query LIKE 'LISTEN%' AND datname = current_database()"
    )
    assert killed == 1
    await until(lambda: not engine.notifier.listening, "the listener notices")
    await until(lambda: engine.notifier.listening, "the listener is back")

    lease = asyncio.create_task(engine.lease(org, worker.id, max_jobs=1, wait_seconds=60))
    await until(lambda: engine.notifier.waiting(queue.id) == 1, "the lessee waits")
    job, _ = await engine.submit(org, spec())

    assert [j.id for j in await asyncio.wait_for(lease, WAIT_LIMIT_SECONDS)] == [job.id]


async def test_stop_ends_waiting_long_polls(pool: asyncpg.Pool, org: UUID) -> None:
    engine = Engine(pool, builtin_workers=0)
    await engine.start()
    worker = await engine.register_worker(org, name="w", queues=["default"], max_concurrent_jobs=1)
    queue = await engine.get_queue(org, "default")
    lease = asyncio.create_task(engine.lease(org, worker.id, max_jobs=1, wait_seconds=60))
    await until(lambda: engine.notifier.waiting(queue.id) == 1, "the lessee waits")

    await engine.stop(0)

    assert await asyncio.wait_for(lease, WAIT_LIMIT_SECONDS) == []


async def test_builtin_pool_leaves_paused_queues_alone(
    builtin_engine: Engine, org: UUID, pool: asyncpg.Pool
) -> None:
    await builtin_engine.pause_queue(org, "default")
    await builtin_engine.create_queue(org, name="open")
    held, _ = await builtin_engine.submit(org, spec(job_type="test_job"))
    marker, _ = await builtin_engine.submit(org, spec(job_type="test_job", queue="open"))

    # Submitted after `held`, run by the same pool: when it is done, `held` was passed over.
    await wait_for_status(builtin_engine, org, marker.id, JobStatus.SUCCEEDED)
    assert (await builtin_engine.get_job(org, held.id)).status is JobStatus.PENDING

    await builtin_engine.resume_queue(org, "default")
    await wait_for_status(builtin_engine, org, held.id, JobStatus.SUCCEEDED)


async def test_scheduled_builtin_job_runs_once_due(
    builtin_engine: Engine, org: UUID, pool: asyncpg.Pool
) -> None:
    due = await db_now(pool) + timedelta(seconds=1)
    job, _ = await builtin_engine.submit(
        org, spec(job_type="echo", payload={"x": 1}, scheduled_for=due)
    )
    assert job.status is JobStatus.SCHEDULED

    done = await wait_for_status(builtin_engine, org, job.id, JobStatus.SUCCEEDED)

    assert done.started_at is not None and done.started_at >= due


async def test_run_builtin_settles_ran_jobs_and_leases_the_rest_in_one_transaction(
    engine: Engine, org: UUID
) -> None:
    ran, _ = await engine.submit(org, spec(job_type="echo", payload={"n": 1}))
    later, _ = await engine.submit(org, spec(job_type="sleep", payload={"seconds": 1}))
    seen: list[str] = []

    def run(jobs: list[LeasedJob]) -> list[str | None]:
        seen.extend(job.job_type for job in jobs)
        return ['{"n": 1}' if job.id == ran.id else None for job in jobs]

    taken = await engine.run_builtin(10, run)

    assert {job.id for job in taken} == {ran.id, later.id}
    assert sorted(seen) == ["echo", "sleep"]
    done = await engine.get_job(org, ran.id)
    assert done.status is JobStatus.SUCCEEDED
    assert done.output == {"n": 1}
    assert done.attempt_count == 1
    assert done.started_at is not None and done.completed_at is not None
    assert done.completed_at >= done.started_at
    assert done.lease_expires_at is None
    leased = await engine.get_job(org, later.id)
    assert leased.status is JobStatus.PROCESSING
    assert leased.worker_id == engine.builtin_worker_id
    assert leased.attempt_count == 1
    assert leased.lease_expires_at is not None


async def test_run_builtin_error_leaves_the_jobs_pending_and_unattempted(
    engine: Engine, org: UUID
) -> None:
    job, _ = await engine.submit(org, spec(job_type="test_job"))

    def run(jobs: list[LeasedJob]) -> list[str | None]:
        raise RuntimeError("the server died mid-batch")

    with pytest.raises(RuntimeError):
        await engine.run_builtin(10, run)

    untouched = await engine.get_job(org, job.id)
    assert untouched.status is JobStatus.PENDING
    assert untouched.attempt_count == 0
    assert untouched.worker_id is None
    # Taken again, as if never taken.
    assert [j.id for j in await engine.run_builtin(10, lambda jobs: ["{}"] * len(jobs))] == [job.id]
