"""Query plans the engine's hot paths rely on, whatever the state of the table's statistics."""

from __future__ import annotations

import uuid

import asyncpg
from engine_support import make_org, spec

from reference_server import queries
from reference_server.engine import Engine

Q = queries.load("jobs.sql")


async def _claim_plan(conn: asyncpg.Connection, begin: str) -> str:
    """The claim's plan inside a transaction opened by `begin`."""
    await conn.execute(begin)
    try:
        explain = await conn.prepare("EXPLAIN " + Q["claim_builtin"])
        return "\n".join(r[0] for r in await explain.fetch(100, 100, [], uuid.uuid4()))
    finally:
        await conn.execute("ROLLBACK")


async def test_builtin_claim_walks_the_ready_index_on_a_never_analysed_table(
    pool: asyncpg.Pool,
) -> None:
    # 10k rows of each: with fewer the planner happened to pick the index scan anyway.
    org = await make_org(pool)
    engine = Engine(pool, builtin_workers=0)
    await engine.submit_batch(org, [spec(job_type="bench.noop")] * 10000)
    await engine.submit_batch(org, [spec(job_type="test_job")] * 10000)
    async with pool.acquire() as conn:
        analysed = await conn.fetchval(
            "SELECT coalesce(last_analyze, last_autoanalyze) FROM pg_stat_user_tables"
            " WHERE relname = 'jobs'"
        )
        assert analysed is None  # the case this guards: statistics from before the rows came
        plan = await _claim_plan(conn, Q["begin_builtin_claim"])

    assert "Index Scan using jobs_builtin_ready_org_idx" in plan, plan
    assert "Sort" not in plan, plan
    # The skip-scan over organisations too: another index walks past their finished jobs.
    assert "jobs_org_created_idx" not in plan, plan
