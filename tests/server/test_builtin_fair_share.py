"""The built-in pool serves every organisation: one organisation's flood does not hold the others
back by more than a claim cycle."""

from __future__ import annotations

import asyncio

import asyncpg
from engine_support import make_org, spec, wait_for_status

from reference_server.engine import Engine
from reference_server.models import JobStatus

SLEEP_SECONDS = 3.0


async def test_a_flood_of_sleeps_does_not_delay_another_organisations_echo(
    pool: asyncpg.Pool,
) -> None:
    flooder, other = await make_org(pool, "flooder"), await make_org(pool, "other")
    engine = Engine(pool, builtin_workers=2, builtin_batch_size=50, reaper_interval_seconds=0.5)
    await engine.start()
    try:
        for _ in range(2):  # the audit's two batches, scaled to this pool (capacity 100)
            await engine.submit_batch(
                flooder, [spec("sleep", payload={"seconds": SLEEP_SECONDS})] * 200
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while await pool.fetchval("SELECT count(*) FROM jobs WHERE status = 'processing'") < 50:
            assert loop.time() < deadline, "the flood was never taken"
            await asyncio.sleep(0.05)
        started = loop.time()
        echo, _ = await engine.submit(other, spec("echo", payload={"n": 1}))
        await wait_for_status(engine, other, echo.id, JobStatus.SUCCEEDED)
        waited = loop.time() - started
        held = await pool.fetchval(
            "SELECT count(*) FROM jobs WHERE status = 'processing' AND organization_id = $1",
            flooder,
        )
    finally:
        await engine.stop(grace_seconds=0)
    assert waited < SLEEP_SECONDS / 2, f"the echo waited {waited:.2f} s behind the flood"
    # Never the whole pool (capacity 100): passed over once it holds half (FAIR_SHARE), past
    # that only by what the two runners' first claims took at once (45 each).
    assert held <= 90
