"""The peers: PgQueuer and procrastinate enqueue and work no-op jobs on their own database.

`python -m benchmarks.peers pgqueuer|procrastinate --dsn URL --jobs N --seconds S` prints one JSON
line: enqueue and work rates. Each runs in its own process, pinned where the server runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from datetime import timedelta
from typing import Any

import asyncpg

from benchmarks.exits import ExitStatus

RESULT_PREFIX = "BENCH_JSON "
#: PgQueuer's documented fast path: batched enqueue and dequeue batches of this size.
PGQUEUER_ENQUEUE_BATCH = 1000
PGQUEUER_BATCH_SIZE = 100
#: procrastinate: concurrent defers, a worker of this concurrency (its async guidance).
PROCRASTINATE_DEFER_CONCURRENCY = 32
PROCRASTINATE_WORKER_CONCURRENCY = 10
POLL_SECONDS = 0.02


async def _wait_until(predicate: Any, deadline: float) -> bool:
    while time.perf_counter() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(POLL_SECONDS)
    return False


async def pgqueuer(dsn: str, jobs: int, seconds: float) -> dict[str, Any]:
    from pgqueuer import AsyncpgDriver, QueueManager
    from pgqueuer.domain.types import QueueExecutionMode
    from pgqueuer.models import Job
    from pgqueuer.queries import Queries

    conn = await asyncpg.connect(dsn)
    try:
        queries = Queries(AsyncpgDriver(conn))
        await queries.install()
        started = time.perf_counter()
        for offset in range(0, jobs, PGQUEUER_ENQUEUE_BATCH):
            n = min(PGQUEUER_ENQUEUE_BATCH, jobs - offset)
            await queries.enqueue(["noop"] * n, [None] * n, [0] * n)
        enqueue_seconds = time.perf_counter() - started
    finally:
        await conn.close()

    worked = 0
    worker_conn = await asyncpg.connect(dsn)
    qm = QueueManager(Queries(AsyncpgDriver(worker_conn)))

    @qm.entrypoint("noop")
    async def noop(job: Job) -> None:
        nonlocal worked
        worked += 1

    started = time.perf_counter()
    truncated = False
    try:
        await asyncio.wait_for(
            qm.run(batch_size=PGQUEUER_BATCH_SIZE, mode=QueueExecutionMode.drain,
                   dequeue_timeout=timedelta(seconds=1)),
            seconds,
        )
    except TimeoutError:
        truncated = True
    work_seconds = time.perf_counter() - started
    if not worker_conn.is_closed():
        await worker_conn.close()
    return {
        "enqueued": jobs, "enqueue_seconds": enqueue_seconds, "worked": worked,
        "work_seconds": work_seconds, "truncated": truncated or worked < jobs,
        "settings": {"enqueue_batch": PGQUEUER_ENQUEUE_BATCH, "batch_size": PGQUEUER_BATCH_SIZE,
                     "mode": "drain"},
    }


async def procrastinate(dsn: str, jobs: int, seconds: float) -> dict[str, Any]:
    import procrastinate as pc

    app = pc.App(connector=pc.PsycopgConnector(conninfo=dsn, min_size=4, max_size=40))
    worked = 0

    @app.task(name="noop")
    async def noop() -> None:
        nonlocal worked
        worked += 1

    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        deferred = 0
        started = time.perf_counter()
        deadline = started + seconds

        async def defer() -> None:
            # Stops at the deadline rather than being cancelled mid-defer (its pool would close).
            nonlocal deferred
            while deferred < jobs and time.perf_counter() < deadline:
                deferred += 1
                await noop.defer_async()

        await asyncio.gather(*(defer() for _ in range(PROCRASTINATE_DEFER_CONCURRENCY)))
        enqueue_seconds = time.perf_counter() - started

        started = time.perf_counter()
        truncated = False
        try:
            await asyncio.wait_for(
                app.run_worker_async(concurrency=PROCRASTINATE_WORKER_CONCURRENCY, wait=False,
                                     install_signal_handlers=False),
                seconds,
            )
        except TimeoutError:
            truncated = True
        work_seconds = time.perf_counter() - started
    return {
        "enqueued": deferred, "enqueue_seconds": enqueue_seconds, "worked": worked,
        "work_seconds": work_seconds, "truncated": truncated or worked < jobs,
        "settings": {"defer_concurrency": PROCRASTINATE_DEFER_CONCURRENCY,
                     "worker_concurrency": PROCRASTINATE_WORKER_CONCURRENCY, "wait": False},
    }


PEERS = {"pgqueuer": pgqueuer, "procrastinate": procrastinate}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peers")
    parser.add_argument("peer", choices=sorted(PEERS))
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--jobs", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=60.0, help="bound of each half")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        result = asyncio.run(PEERS[args.peer](args.dsn, args.jobs, args.seconds))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        print(f"error: {args.peer}: {type(exc).__name__}: {exc}"[:300], file=sys.stderr)
        return ExitStatus.UNAVAILABLE
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return ExitStatus.OK


if __name__ == "__main__":
    sys.exit(main())
