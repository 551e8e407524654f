"""The raw PostgreSQL limits: single-row INSERT commits, COPY, and a batched SKIP LOCKED loop."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

from conformance import namedsql

Q = namedsql.load("benchmarks", "sql/limits.sql")
NOOP_PAYLOAD = "{}"
JOB_TYPE = "noop"
QUEUE = "default"
#: settle_builtin's lease margin over the job's timeout (the engine passes 60).
LEASE_MARGIN_SECONDS = 60


@dataclass(frozen=True)
class Rate:
    count: int
    seconds: float
    truncated: bool = False  # the time bound ended the phase before its count

    @property
    def per_second(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0


async def insert_commits(dsn: str, *, concurrency: int, seconds: float, max_rows: int) -> Rate:
    """Single-row INSERTs, each its own commit, from `concurrency` connections, for `seconds`."""
    pool = await asyncpg.create_pool(dsn, min_size=concurrency, max_size=concurrency)
    try:
        await pool.execute(Q["create_insert_table"])
        done = 0
        deadline = time.perf_counter() + seconds

        async def loop() -> None:
            nonlocal done
            async with pool.acquire() as conn:
                stmt = await conn.prepare(Q["insert_one"])
                while time.perf_counter() < deadline and done < max_rows:
                    await stmt.fetch(JOB_TYPE, NOOP_PAYLOAD)
                    done += 1

        started = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(concurrency)))
        return Rate(done, time.perf_counter() - started, truncated=done < max_rows)
    finally:
        await pool.close()


async def copy_rows(dsn: str, *, rows: int) -> Rate:
    """COPY `rows` rows in one copy_records_to_table call (one transaction)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(Q["create_copy_table"])
        records = [(QUEUE, JOB_TYPE, NOOP_PAYLOAD)] * rows
        started = time.perf_counter()
        await conn.copy_records_to_table(
            "bench_copy", records=records, columns=["queue_name", "job_type", "payload"]
        )
        return Rate(rows, time.perf_counter() - started)
    finally:
        await conn.close()


async def batched_lease_loop(
    dsn: str, *, jobs: int, batch: int, loops: int, seconds: float
) -> Rate:
    """`loops` connections lease `batch` ready rows (SKIP LOCKED) and complete them, until none.

    Lease and completion commit separately, as a worker's do; the rows are in place beforehand.
    """
    setup = await asyncpg.connect(dsn)
    try:
        await setup.execute(Q["create_queue_table"])
        await setup.execute(Q["fill_queue"], jobs)
        await setup.execute("ANALYZE bench_queue")
    finally:
        await setup.close()
    workers = iter(range(loops))

    async def prepare(conn: asyncpg.Connection) -> Step:
        worker = next(workers)
        lease = await conn.prepare(Q["lease_batch"])
        complete = await conn.prepare(Q["complete_batch"])

        async def step() -> int:
            rows = await lease.fetch(batch, worker)
            if rows:
                await complete.fetch([r["id"] for r in rows], worker)
            return len(rows)

        return step

    return await _timed_loops(dsn, loops=loops, seconds=seconds, jobs=jobs, prepare=prepare)


async def engine_sql_loop(
    dsn: str, *, jobs: int, batch: int, loops: int, seconds: float
) -> Rate:
    """The batched loop again, with the statements the reference server's built-in pool runs on
    its migrated schema: what the schema and SQL cost, without the engine's Python.

    As the pool does for instant jobs: begin_builtin_claim, claim_builtin (lock a batch), then
    settle_builtin (succeeded, with an output) and COMMIT, one transaction per batch.
    """
    engine_sql = namedsql.load("benchmarks", "sql/engine.sql")
    server_sql = namedsql.load("reference_server", "sql/jobs.sql")
    setup = await asyncpg.connect(dsn)
    try:
        org = await setup.fetchval(engine_sql["seed_organization"])
        queue = await setup.fetchval(engine_sql["seed_queue"], org)
        await setup.execute(engine_sql["seed_builtin_jobs"], org, queue, jobs)
        await setup.execute("ANALYZE jobs")
    finally:
        await setup.close()
    worker = uuid.uuid4()
    output = '{"ok": true}'

    async def prepare(conn: asyncpg.Connection) -> Step:
        claim = await conn.prepare(server_sql["claim_builtin"])
        settle = await conn.prepare(server_sql["settle_builtin"])

        async def step() -> int:
            await conn.execute(server_sql["begin_builtin_claim"])
            rows = await claim.fetch(batch, batch, [], uuid.UUID(int=0))  # one organisation
            if rows:
                ids = [r["id"] for r in rows]
                await settle.fetch(ids, [output] * len(rows), worker, LEASE_MARGIN_SECONDS)
            await conn.execute("COMMIT")
            return len(rows)

        return step

    return await _timed_loops(dsn, loops=loops, seconds=seconds, jobs=jobs, prepare=prepare)


#: One batch of a loop: how many jobs it leased and completed (0: the queue is empty).
Step = Callable[[], Awaitable[int]]


async def _timed_loops(dsn: str, *, loops: int, seconds: float, jobs: int,
                       prepare: Callable[[asyncpg.Connection], Awaitable[Step]]) -> Rate:
    """`loops` connections each run their prepared step until the queue is empty or `seconds`
    have passed; the jobs done per second of the whole."""
    pool = await asyncpg.create_pool(dsn, min_size=loops, max_size=loops)
    try:
        done = 0
        deadline = time.perf_counter() + seconds

        async def loop() -> None:
            nonlocal done
            async with pool.acquire() as conn:
                step = await prepare(conn)
                while time.perf_counter() < deadline:
                    count = await step()
                    if not count:
                        return
                    done += count

        started = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(loops)))
        return Rate(done, time.perf_counter() - started, truncated=done < jobs)
    finally:
        await pool.close()
