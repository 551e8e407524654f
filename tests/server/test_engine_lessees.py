"""Crash recovery of the built-in pool: short leases renewed while jobs run, and the leases of a
process that is gone released at once (lessee rows, advisory locks), never a live one's."""

from __future__ import annotations

import asyncio
import time
from uuid import UUID, uuid4

import asyncpg
from engine_support import spec, wait_for_status

from reference_server.engine import Engine
from reference_server.leases import lessee_lock_key
from reference_server.models import JobStatus


async def held_by(pool: asyncpg.Pool, org: UUID, lessee: UUID, *, seen_seconds_ago: float,
                  count: int = 2) -> list[UUID]:
    """A lessee row as another process would leave it, holding `count` long leases."""
    await pool.execute(
        "INSERT INTO engine_lessees (id, lock_key, hostname, pid, last_seen_at)"
        " VALUES ($1, $2, 'elsewhere', 1, now() - make_interval(secs => $3))",
        lessee, lessee_lock_key(lessee), seen_seconds_ago,
    )
    engine = Engine(pool, builtin_workers=0)
    ids = [(await engine.submit(org, spec(payload={"n": n})))[0].id for n in range(count)]
    await pool.execute(
        "UPDATE jobs SET status = 'processing', worker_id = $1, attempt_count = 1,"
        " started_at = now(), lease_seconds = 3600,"
        " lease_expires_at = now() + interval '1 hour' WHERE id = ANY ($2::uuid[])",
        lessee, ids,
    )
    return ids


async def statuses(pool: asyncpg.Pool, ids: list[UUID]) -> list[str]:
    rows = await pool.fetch("SELECT status FROM jobs WHERE id = ANY ($1::uuid[]) ORDER BY id", ids)
    return [r["status"] for r in rows]


async def test_a_gone_processs_leases_are_released_at_start_up(
    pool: asyncpg.Pool, org: UUID
) -> None:
    gone = uuid4()
    ids = await held_by(pool, org, gone, seen_seconds_ago=30)
    engine = Engine(pool, builtin_workers=1, reaper_interval_seconds=3600)
    await engine.start()
    try:
        # No reaper tick has run (an hour apart) and the leases had an hour left: start() did it.
        after = await statuses(pool, ids)
        rows = await pool.fetch(
            "SELECT attempt_count, error_message, worker_id FROM jobs WHERE id = ANY ($1::uuid[])",
            ids)
        lessees = {r["id"] for r in await pool.fetch("SELECT id FROM engine_lessees")}
    finally:
        await engine.stop(0)
    assert after == ["pending", "pending"]
    assert {(r["attempt_count"], r["error_message"], r["worker_id"]) for r in rows} == {
        (1, "lease holder gone", None)}
    assert lessees == {engine.builtin_worker_id}  # the gone row dropped, this process's added
    assert await pool.fetchval("SELECT count(*) FROM engine_lessees") == 0  # dropped at stop


async def test_a_live_processs_leases_are_left_alone(
    pool: asyncpg.Pool, org: UUID, database_url: str
) -> None:
    """Alive is: its lock held (even if its renewal is late), or its renewal recent (even if its
    lock is momentarily free, as after a database restart)."""
    locked, recent = uuid4(), uuid4()
    locked_ids = await held_by(pool, org, locked, seen_seconds_ago=30)
    recent_ids = await held_by(pool, org, recent, seen_seconds_ago=0)
    holder = await asyncpg.connect(database_url)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", lessee_lock_key(locked))
        engine = Engine(pool, builtin_workers=0, reaper_interval_seconds=0.05)
        await engine.start()
        try:
            await asyncio.sleep(0.5)  # several reaper ticks
            assert await engine.release_gone_lessees() == 0
            still = await statuses(pool, locked_ids + recent_ids)
        finally:
            await engine.stop(0)
        assert still == ["processing"] * 4
    finally:
        await holder.close()
    # Its lock gone with its connection, the locked one is released on the next look.
    engine = Engine(pool, builtin_workers=0)
    assert await engine.release_gone_lessees() == 2
    assert await statuses(pool, locked_ids) == ["pending", "pending"]


async def test_a_running_job_keeps_its_short_lease_renewed(pool: asyncpg.Pool, org: UUID) -> None:
    """A sleep job outlasting its 1 s lease, reaper ticking every 0.05 s, runs once."""
    engine = Engine(pool, builtin_workers=1, builtin_lease_seconds=1, builtin_renew_seconds=0.2,
                    reaper_interval_seconds=0.05)
    await engine.start()
    try:
        job, _ = await engine.submit(org, spec("sleep", payload={"seconds": 2.5}))
        leased = await wait_for_status(engine, org, job.id, JobStatus.PROCESSING)
        assert leased.lease_expires_at is not None and leased.started_at is not None
        assert (leased.lease_expires_at - leased.started_at).total_seconds() <= 1.5
        done = await wait_for_status(engine, org, job.id, JobStatus.SUCCEEDED)
    finally:
        await engine.stop(0)
    assert done.attempt_count == 1, done.error_message
    assert done.error_message is None


async def test_after_a_stall_leases_are_renewed_before_any_is_taken_back(
    pool: asyncpg.Pool, org: UUID
) -> None:
    """The process (or its database) away for longer than a lease, and its renewals slow to come
    back: the reaper waits for them instead of handing the running job to someone else."""
    engine = Engine(pool, builtin_workers=1, builtin_lease_seconds=8, builtin_renew_seconds=0.5,
                    reaper_interval_seconds=0.05)
    renew = engine.renew_builtin

    async def slow_renew() -> int:
        await asyncio.sleep(0.3)  # a database still catching up
        return await renew()

    engine.renew_builtin = slow_renew  # type: ignore[method-assign]
    await engine.start()
    try:
        job, _ = await engine.submit(org, spec("sleep", payload={"seconds": 12}))
        await wait_for_status(engine, org, job.id, JobStatus.PROCESSING)
        time.sleep(9.0)  # a stall of the event loop: nothing of ours runs meanwhile
        done = await wait_for_status(engine, org, job.id, JobStatus.SUCCEEDED)
    finally:
        await engine.stop(0)
    assert done.attempt_count == 1, done.error_message
