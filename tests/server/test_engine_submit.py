"""Submitting: idempotency keys, batches all or nothing, tenant isolation, listing, queues."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import asyncpg
import pytest
from engine_support import make_org, spec, submit_audit

from reference_server.engine import Engine
from reference_server.exceptions import Conflict, NotFound, ValidationFailed
from reference_server.group_commit import SubmitItem
from reference_server.models import Job, JobStatus


@pytest.fixture
def engine(pool: asyncpg.Pool) -> Engine:
    return Engine(pool, builtin_workers=0)


async def count_jobs(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM jobs"))


async def test_submit_applies_queue_defaults(engine: Engine, org: UUID) -> None:
    await engine.create_queue(org, name="q", settings={"max_attempts": 7, "timeout_seconds": 42})

    job, created = await engine.submit(org, spec(queue="q", payload={"a": [1, 2]}, priority=4))

    assert created
    assert job.status is JobStatus.PENDING
    assert (job.max_attempts, job.timeout_seconds, job.attempt_count) == (7, 42, 0)
    assert job.payload == {"a": [1, 2]}
    assert job.to_api()["queue_name"] == "q"
    assert job.to_api()["id"] == str(job.id)
    assert job.to_api()["created_at"].endswith("Z")


async def test_unknown_queue_is_not_found(engine: Engine, org: UUID) -> None:
    with pytest.raises(NotFound):
        await engine.submit(org, spec(queue="nope"))


async def test_same_idempotency_key_returns_the_existing_job(engine: Engine, org: UUID) -> None:
    first, created = await engine.submit(org, spec(idempotency_key="k-1", payload={"v": 1}))
    again, created_again = await engine.submit(org, spec(idempotency_key="k-1", payload={"v": 2}))

    assert created and not created_again
    assert again.id == first.id
    assert again.payload == {"v": 1}


async def test_idempotency_key_is_per_organisation(
    engine: Engine, org: UUID, pool: asyncpg.Pool
) -> None:
    other = await make_org(pool, "globex")
    mine, _ = await engine.submit(org, spec(idempotency_key="shared"))
    theirs, created = await engine.submit(other, spec(idempotency_key="shared"))

    assert created and theirs.id != mine.id


async def test_concurrent_submits_with_one_key_create_one_job(
    engine: Engine, org: UUID, pool: asyncpg.Pool
) -> None:
    results = await asyncio.gather(
        *(engine.submit(org, spec(idempotency_key="race", payload={"n": n})) for n in range(12))
    )

    assert sum(created for _, created in results) == 1
    assert len({job.id for job, _ in results}) == 1
    assert await count_jobs(pool) == 1


async def test_batch_inserts_all_in_order(engine: Engine, org: UUID, pool: asyncpg.Pool) -> None:
    await engine.create_queue(org, name="other")
    specs = [spec(queue="other" if n % 3 else "default", payload={"n": n}) for n in range(50)]

    ids = await engine.submit_batch(org, specs)

    assert len(ids) == 50 and len(set(ids)) == 50
    for n in (0, 1, 25, 49):
        job = await engine.get_job(org, ids[n])
        assert job.payload == {"n": n}
        assert job.queue_name == specs[n].queue_name
    assert await count_jobs(pool) == 50


async def test_batch_rows_match_single_submits_and_keep_fifo_order(
    engine: Engine, org: UUID, pool: asyncpg.Pool
) -> None:
    """Jobs due now go in by COPY, others by INSERT: both store what a single submit stores."""
    await engine.create_queue(org, name="slow", settings={"max_attempts": 7, "timeout_seconds": 9})
    due_now = [spec(queue="slow", payload={"n": n}, priority=n % 2) for n in range(5)]
    due_now.append(spec(queue="slow", max_attempts=2, timeout_seconds=60))
    later = [spec(queue="slow", scheduled_for=datetime.now(UTC) + timedelta(hours=1))]

    copied = await engine.submit_batch(org, due_now)
    inserted = await engine.submit_batch(org, later)
    single, _ = await engine.submit(org, spec(queue="slow"))

    jobs = [await engine.get_job(org, job_id) for job_id in copied]
    assert [job.payload for job in jobs[:5]] == [{"n": n} for n in range(5)]
    assert [job.priority for job in jobs[:5]] == [0, 1, 0, 1, 0]
    assert [job.seq for job in jobs] == sorted(job.seq for job in jobs)
    for job in jobs[:5]:
        assert job.status is JobStatus.PENDING
        assert (job.max_attempts, job.timeout_seconds) == (7, 9)
        assert job.created_at == job.scheduled_for  # both the transaction's now(), as in INSERT
        assert job.attempt_count == 0 and job.worker_id is None
    assert (jobs[5].max_attempts, jobs[5].timeout_seconds) == (2, 60)
    assert jobs[0].id.version == 7  # time-ordered (engine._new_ids)
    scheduled = await engine.get_job(org, inserted[0])
    assert scheduled.status is JobStatus.SCHEDULED
    assert (scheduled.max_attempts, single.max_attempts) == (7, 7)
    assert await count_jobs(pool) == 8


async def test_batch_with_an_unknown_queue_inserts_nothing(
    engine: Engine, org: UUID, pool: asyncpg.Pool
) -> None:
    specs = [spec(payload={"n": n}) for n in range(10)] + [spec(queue="missing")]

    with pytest.raises(NotFound):
        await engine.submit_batch(org, specs)
    assert await count_jobs(pool) == 0


async def test_batch_with_a_bad_value_inserts_nothing(
    engine: Engine, org: UUID, pool: asyncpg.Pool
) -> None:
    specs = [spec(payload={"n": n}) for n in range(10)] + [spec(priority=42)]

    with pytest.raises(ValidationFailed):
        await engine.submit_batch(org, specs)
    assert await count_jobs(pool) == 0


async def test_batch_with_idempotency_keys_is_all_or_nothing(
    engine: Engine, org: UUID, pool: asyncpg.Pool
) -> None:
    existing, _ = await engine.submit(org, spec(idempotency_key="a"))
    ids = await engine.submit_batch(org, [spec(idempotency_key="a"), spec(idempotency_key="b")])
    assert ids[0] == existing.id and ids[1] != existing.id
    assert await count_jobs(pool) == 2

    with pytest.raises(NotFound):
        await engine.submit_batch(org, [spec(idempotency_key="c"), spec(queue="missing")])
    assert await count_jobs(pool) == 2


async def test_another_organisations_job_is_not_found(
    engine: Engine, org: UUID, pool: asyncpg.Pool
) -> None:
    other = await make_org(pool, "globex")
    job, _ = await engine.submit(org, spec())
    their_worker = await engine.register_worker(
        other, name="w", queues=["default"], max_concurrent_jobs=5
    )

    for call in (
        engine.get_job(other, job.id),
        engine.cancel_job(other, job.id),
        engine.retry_job(other, job.id),
        engine.complete_job(other, job.id, worker_id=their_worker.id),
        engine.fail_job(other, job.id, worker_id=their_worker.id, error_message="x"),
    ):
        with pytest.raises(NotFound):
            await call
    assert await engine.list_jobs(other) == ([], 0)
    assert await engine.lease(other, their_worker.id, max_jobs=5) == []
    assert (await engine.get_job(org, job.id)).status is JobStatus.PENDING


async def test_another_organisations_worker_and_queue_are_not_found(
    engine: Engine, org: UUID, pool: asyncpg.Pool
) -> None:
    other = await make_org(pool, "globex")
    worker = await engine.register_worker(org, name="w", queues=["default"], max_concurrent_jobs=1)
    await engine.create_queue(org, name="private")

    with pytest.raises(NotFound):
        await engine.lease(other, worker.id, max_jobs=1)
    with pytest.raises(NotFound):
        await engine.heartbeat(other, worker.id)
    with pytest.raises(NotFound):
        await engine.get_queue(other, "private")
    with pytest.raises(NotFound):
        await engine.submit(other, spec(queue="private"))
    assert [q.name for q in await engine.list_queues(other)] == ["default"]
    assert await engine.list_workers(other) == []


async def test_list_jobs_filters_and_pages(engine: Engine, org: UUID) -> None:
    await engine.create_queue(org, name="q2")
    for n in range(7):
        await engine.submit(org, spec(job_type="a" if n % 2 else "b", payload={"n": n}))
    await engine.submit(org, spec(queue="q2"))
    cancelled, _ = await engine.submit(org, spec(queue="q2"))
    await engine.cancel_job(org, cancelled.id)

    page1, total = await engine.list_jobs(org, queue_name="default", limit=3)
    page3, _ = await engine.list_jobs(org, queue_name="default", limit=3, page=3)
    assert total == 7
    assert [j.payload["n"] for j in page1] == [6, 5, 4]  # newest first
    assert [j.payload["n"] for j in page3] == [0]
    assert (await engine.list_jobs(org, job_type="a"))[1] == 3
    only_cancelled, n_cancelled = await engine.list_jobs(org, status=JobStatus.CANCELLED)
    assert n_cancelled == 1 and only_cancelled[0].id == cancelled.id
    assert (await engine.list_jobs(org, queue_name="q2", status="pending"))[1] == 1


async def test_queue_crud(engine: Engine, org: UUID) -> None:
    created = await engine.create_queue(
        org, name="mail", description="outgoing", priority=3, settings={"max_attempts": 4}
    )
    assert created.settings.max_attempts == 4 and created.settings.timeout_seconds == 300
    with pytest.raises(Conflict):
        await engine.create_queue(org, name="mail")

    updated = await engine.update_queue(org, "mail", settings={"backoff_multiplier": 3.0})
    assert updated.settings.backoff_multiplier == 3.0
    assert updated.settings.max_attempts == 4  # untouched keys stay
    assert updated.description == "outgoing" and updated.priority == 3
    cleared = await engine.update_queue(org, "mail", description=None, priority=7)
    assert cleared.description is None and cleared.priority == 7
    assert cleared.to_api()["settings"]["backoff_multiplier"] == 3.0

    assert {q.name for q in await engine.list_queues(org)} == {"default", "mail"}
    await engine.delete_queue(org, "mail")
    with pytest.raises(NotFound):
        await engine.get_queue(org, "mail")
    with pytest.raises(NotFound):
        await engine.delete_queue(org, "mail")


async def test_queue_with_unfinished_jobs_cannot_be_deleted(engine: Engine, org: UUID) -> None:
    await engine.create_queue(org, name="busy")
    job, _ = await engine.submit(org, spec(queue="busy"))
    with pytest.raises(Conflict):
        await engine.delete_queue(org, "busy")

    await engine.cancel_job(org, job.id)
    await engine.delete_queue(org, "busy")  # finished jobs go with it
    with pytest.raises(NotFound):
        await engine.get_job(org, job.id)


async def test_queue_stats(engine: Engine, org: UUID) -> None:
    worker = await engine.register_worker(org, name="w", queues=["default"], max_concurrent_jobs=5)
    for _ in range(4):
        await engine.submit(org, spec())
    [a, _b] = await engine.lease(org, worker.id, max_jobs=2)
    await engine.complete_job(org, a.id, worker_id=worker.id)

    stats = await engine.queue_stats(org, "default")

    assert stats["counts"]["pending"] == 2
    assert stats["counts"]["processing"] == 1
    assert stats["counts"]["succeeded"] == 1
    assert stats["counts"]["dead"] == 0
    assert stats["total"] == 4
    assert stats["oldest_pending_age_seconds"] >= 0
    assert stats["throughput_per_minute"] == 1.0


async def test_workers_listed_with_active_jobs(engine: Engine, org: UUID) -> None:
    worker = await engine.register_worker(org, name="w", queues=["default"], max_concurrent_jobs=5)
    await engine.submit(org, spec())
    await engine.lease(org, worker.id, max_jobs=5)

    [listed] = await engine.list_workers(org)

    assert listed.id == worker.id
    assert listed.active_jobs == 1
    assert listed.status == "online"
    assert listed.to_api()["heartbeat_interval_seconds"] == 10


async def test_unknown_worker_is_not_found(engine: Engine, org: UUID) -> None:
    with pytest.raises(NotFound):
        await engine.lease(org, uuid4(), max_jobs=1)


async def test_concurrent_submits_each_get_their_own_result(
    engine: Engine, org: UUID, pool: asyncpg.Pool
) -> None:
    """Group commit: many callers, one statement, yet every caller gets its own job or error."""
    other = await make_org(pool, "globex")
    calls = []
    for n in range(60):
        if n % 10 == 3:
            calls.append(engine.submit(org, spec(queue="missing", payload={"n": n})))
        elif n % 10 == 7:
            calls.append(engine.submit(org, spec(priority=99, payload={"n": n})))
        else:
            calls.append(engine.submit(org if n % 2 else other, spec(payload={"n": n})))

    results = await asyncio.gather(*calls, return_exceptions=True)

    for n, result in enumerate(results):
        if n % 10 == 3:
            assert isinstance(result, NotFound), (n, result)
        elif n % 10 == 7:
            assert isinstance(result, ValidationFailed), (n, result)
        else:
            assert not isinstance(result, BaseException), (n, result)
            job, created = result
            assert created and job.payload == {"n": n}
            assert job.organization_id == (org if n % 2 else other)
    assert await count_jobs(pool) == 48


async def test_concurrent_submits_with_unknown_queues_mixed_in(
    engine: Engine, org: UUID, pool: asyncpg.Pool
) -> None:
    names = ["default" if n % 4 else "missing" for n in range(40)]

    results = await asyncio.gather(
        *(engine.submit(org, spec(queue=name, payload={"n": n})) for n, name in enumerate(names)),
        return_exceptions=True,
    )

    for n, result in enumerate(results):
        if names[n] == "missing":
            assert isinstance(result, NotFound), (n, result)
        else:
            assert not isinstance(result, BaseException), (n, result)
            assert result[0].payload == {"n": n}
    ids = [r[0].id for r in results if not isinstance(r, BaseException)]
    stored = await pool.fetch("SELECT id FROM jobs ORDER BY seq")
    assert [r["id"] for r in stored] == ids  # FIFO follows the callers' order


async def test_finished_jobs_leave_after_the_queues_retention(
    engine: Engine, org: UUID, pool: asyncpg.Pool
) -> None:
    await engine.create_queue(org, name="short", settings={"retention_days": 2})
    old_done, _ = await engine.submit(org, spec(queue="short"))
    recent_done, _ = await engine.submit(org, spec(queue="short"))
    old_pending, _ = await engine.submit(org, spec(queue="short"))
    long_kept, _ = await engine.submit(org, spec(queue="default"))  # retention 30 days
    for job in (old_done, recent_done, long_kept):
        await engine.cancel_job(org, job.id)
    await pool.execute(
        "UPDATE jobs SET completed_at = now() - interval '3 days', created_at = now() - interval"
        " '3 days' WHERE id = ANY($1::uuid[])",
        [old_done.id, old_pending.id, long_kept.id],
    )

    assert await engine.purge_expired_jobs() == 1

    with pytest.raises(NotFound):
        await engine.get_job(org, old_done.id)
    for kept in (recent_done, old_pending, long_kept):
        await engine.get_job(org, kept.id)


async def test_submit_each_settles_every_item_in_order_with_its_audit_row(
    engine: Engine, org: UUID, pool: asyncpg.Pool
) -> None:
    items = [
        SubmitItem(org, spec(payload={"n": 0}), submit_audit(org, 0)),
        SubmitItem(org, spec(queue="missing", payload={"n": 1}), submit_audit(org, 1)),
        SubmitItem(org, spec(payload={"n": 2}), None),
        SubmitItem(org, spec(payload={"n": 3}), submit_audit(org, 3)),
    ]
    outcomes = await engine.submit_each(items)

    assert [type(o).__name__ for o in outcomes] == ["Job", "NotFound", "Job", "Job"]
    jobs = [o for o in outcomes if isinstance(o, Job)]
    assert [j.payload for j in jobs] == [{"n": 0}, {"n": 2}, {"n": 3}]
    rows = await pool.fetch("SELECT request_id, target, status_code FROM audit_log ORDER BY id")
    assert [(r["request_id"], r["target"], r["status_code"]) for r in rows] == [
        ("r0", str(jobs[0].id), 201),
        ("r3", str(jobs[2].id), 201),
    ]
    with pytest.raises(ValueError, match="idempotency"):
        await engine.submit_each([SubmitItem(org, spec(idempotency_key="k"), None)])
