"""The reference server's phases: HTTP submits, built-in and external workers, start latency, RSS.

The server runs as `python -m reference_server serve` (Granian, WORKERS processes), pinned to the
server's cores; it is measured from outside, over HTTP and by reading its database.
"""

from __future__ import annotations

import asyncio
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson

from benchmarks.loadgen import RESULT_PREFIX, LoadResult
from benchmarks.plan import Plan
from benchmarks.processes import BenchError, served
from benchmarks.system import CpuWindow, Placement, RssSampler
from conformance import namedsql

Q = namedsql.load("benchmarks", "sql/engine.sql")
QUEUES = ("bench-submit", "bench-batch", "bench-builtin", "bench-external-each",
          "bench-external-batch", "bench-latency")
NOOP_TYPE = "bench.noop"  # not a built-in type: submitted jobs stay pending, untouched
BUILTIN_TYPE = "test_job"  # a built-in no-op (reference_server/builtin_jobs.py)
EXTERNAL_TYPE = "bench.external"
POLL_SECONDS = 0.25
#: Requests per minute high enough never to refuse the benchmark, while still counting in Redis.
RATE_LIMIT_PER_MINUTE = 1_000_000_000

Load = Callable[..., LoadResult]


@dataclass
class EngineRun:
    """A running reference server and what the phases need to talk to it."""

    base_url: str
    database_url: str
    token: str
    proc: subprocess.Popen[bytes]
    env: dict[str, str]
    log: Path
    cpu_roots: dict[str, list[int]] = field(default_factory=dict)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def server_env(*, database_url: str, redis_url: str, port: int, workers: int) -> dict[str, str]:
    """The reference server's settings for the benchmark: production defaults, plain HTTP."""
    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "APP_ENVIRONMENT": "production",
        "APPLICATION_HOST": "127.0.0.1",
        "APPLICATION_PORT": str(port),
        "BASE_URL": f"https://127.0.0.1:{port}",  # behind a TLS proxy, as the guide deploys it
        "JWT_SECRET": secrets.token_urlsafe(48),
        "JWT_REFRESH_SECRET": secrets.token_urlsafe(48),
        "WORKERS": str(workers),
        "RATE_LIMIT_PER_MINUTE": str(RATE_LIMIT_PER_MINUTE),
    }


@contextmanager
def reference_server(*, env: dict[str, str], inherited: dict[str, str], workdir: Path,
                     placement: Placement) -> Iterator[EngineRun]:
    port = env["APPLICATION_PORT"]
    base_url = f"http://127.0.0.1:{port}"
    log = workdir / "reference-server.log"
    with served(["-m", "reference_server", "serve"], env=inherited | env, log=log,
                ready_url=f"{base_url}/ready", prefix=placement.taskset("server")) as proc:
        token = _account(base_url)
        with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"},
                          timeout=30.0) as client:
            for name in QUEUES:
                _expect(client.post("/api/v1/queues", json={"name": name}), 201, f"queue {name}")
        yield EngineRun(base_url=base_url, database_url=env["DATABASE_URL"], token=token,
                        proc=proc, env=env, log=log)


def _expect(response: httpx.Response, status: int, what: str) -> httpx.Response:
    if response.status_code != status:
        raise BenchError(f"{what}: HTTP {response.status_code} {response.text[:200]}")
    return response


def _account(base_url: str) -> str:
    password = secrets.token_urlsafe(18)
    email = "bench@benchmarks.example.com"
    with httpx.Client(base_url=base_url, timeout=30.0) as client:
        _expect(client.post("/api/v1/auth/register", json={
            "email": email, "password": password, "organization_name": "benchmarks"}),
            201, "register")
        login = _expect(client.post("/api/v1/auth/login",
                                    json={"email": email, "password": password}), 200, "login")
    token: str = login.json()["data"]["access_token"]
    return token


def job(queue: str, job_type: str) -> dict[str, Any]:
    return {"queue_name": queue, "job_type": job_type, "payload": {}}


def batch_body(queue: str, job_type: str, size: int) -> bytes:
    return orjson.dumps({"jobs": [job(queue, job_type)] * size})


def single_body(queue: str = "bench-submit", job_type: str = NOOP_TYPE) -> bytes:
    return orjson.dumps(job(queue, job_type))


def measured(load: Load, window_roots: dict[str, list[int]], *, warmup: float = 0.0,
             **kwargs: Any) -> tuple[LoadResult, dict[str, float]]:
    """A load phase with the CPU share of the server (and PostgreSQL) and the generator.

    `warmup` seconds of the same load go first, unmeasured: pools fill, statements get prepared.
    """
    if warmup > 0:
        load(**(kwargs | {"seconds": warmup}))
    window = CpuWindow(window_roots)
    window.start()
    result = load(**kwargs)
    shares = window.stop()
    if result.ok == 0:
        raise BenchError(f"{kwargs.get('url')}: no request succeeded ({result.errors} errors, "
                         f"{result.detail})")
    shares["generator"] = round(result.generator_cpu_seconds / max(1e-9, result.seconds), 3)
    return result, shares


def single_submit(run: EngineRun, load: Load, roots: dict[str, list[int]], plan: Plan,
                  ) -> tuple[LoadResult, dict[str, float]]:
    return measured(load, roots, warmup=plan.warmup_seconds,
                    url=f"{run.base_url}/api/v1/jobs", method="POST",
                    body=single_body(), headers=run.auth,
                    connections=plan.http_connections, seconds=plan.http_seconds)


@dataclass
class Paired:
    """Alternating rounds of a limit and the engine on the same load: each round's ratio is
    taken a few seconds apart, so a shared machine's drifting speed cancels out."""

    limit: LoadResult
    engine: LoadResult
    limit_shares: dict[str, float]
    engine_shares: dict[str, float]
    ratios: list[float]

    @property
    def median_ratio(self) -> float:
        return statistics.median(self.ratios)


def paired_rounds(load: Load, *, rounds: int, seconds: float, limit_url: str,
                  limit_roots: dict[str, list[int]], engine_url: str,
                  engine_roots: dict[str, list[int]], engine_headers: dict[str, str],
                  body: bytes, connections: int) -> Paired:
    """`rounds` x (the limit for `seconds`, then the engine for `seconds`), summed per side."""
    results: dict[str, list[tuple[LoadResult, dict[str, float]]]] = {"limit": [], "engine": []}
    ratios = []
    for _ in range(rounds):
        for side, url, roots, headers in (("limit", limit_url, limit_roots, {}),
                                          ("engine", engine_url, engine_roots, engine_headers)):
            results[side].append(measured(load, roots, url=url, method="POST", body=body,
                                          headers=headers, connections=connections,
                                          seconds=seconds))
        ratios.append(results["engine"][-1][0].rate / max(1e-9, results["limit"][-1][0].rate))
    (limit, limit_shares), (engine, engine_shares) = (_merged(results["limit"]),
                                                      _merged(results["engine"]))
    return Paired(limit, engine, limit_shares, engine_shares, ratios)


def _merged(parts: list[tuple[LoadResult, dict[str, float]]],
            ) -> tuple[LoadResult, dict[str, float]]:
    """Rounds as one result: counts and times summed, percentiles and shares the rounds' median."""
    first = parts[0][0]
    keys = {k for r, _ in parts for k in r.latency_ms}
    latency = {k: round(statistics.median(r.latency_ms.get(k, 0.0) for r, _ in parts), 3)
               for k in sorted(keys)}
    merged = LoadResult(tool=first.tool, ok=sum(r.ok for r, _ in parts),
                        errors=sum(r.errors for r, _ in parts),
                        seconds=sum(r.seconds for r, _ in parts), latency_ms=latency,
                        generator_cpu_seconds=sum(r.generator_cpu_seconds for r, _ in parts),
                        detail={**first.detail, "rounds": len(parts)})
    roles = {k for _, sh in parts for k in sh}
    shares = {k: round(statistics.median(sh.get(k, 0.0) for _, sh in parts), 3) for k in roles}
    return merged, shares


def batch_submit(run: EngineRun, load: Load, roots: dict[str, list[int]], plan: Plan,
                 ) -> tuple[LoadResult, dict[str, float]]:
    return measured(load, roots, warmup=plan.warmup_seconds,
                    url=f"{run.base_url}/api/v1/jobs/batch", method="POST",
                    body=batch_body("bench-batch", NOOP_TYPE, plan.batch_size), headers=run.auth,
                    connections=plan.batch_connections, seconds=plan.http_seconds)


def _submit_jobs(run: EngineRun, queue: str, job_type: str, count: int, size: int) -> None:
    with httpx.Client(base_url=run.base_url, headers=run.auth, timeout=60.0) as client:
        left = count
        while left > 0:
            n = min(size, left)
            _expect(client.post("/api/v1/jobs/batch", content=batch_body(queue, job_type, n),
                                headers={"Content-Type": "application/json"}), 201, "batch")
            left -= n


async def _wait_worked(dsn: str, queue: str, count: int, timeout: float) -> tuple[int, float]:
    """Wait (bounded) until the queue has nothing unfinished; (succeeded, seconds worked)."""
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + timeout
        queue_id = await conn.fetchval(Q["queue_id"], queue)
        while time.monotonic() < deadline:
            if await conn.fetchval(Q["unfinished_in_queue"], queue_id) == 0:
                break
            await asyncio.sleep(POLL_SECONDS)
        row = await conn.fetchrow(Q["worked_in_queue"], queue)
    finally:
        await conn.close()
    assert row is not None
    return int(row["succeeded"]), float(row["seconds"] or 0.0)


def builtin_workers(run: EngineRun, plan: Plan, roots: dict[str, list[int]],
                    ) -> tuple[int, float, dict[str, float]]:
    """Built-in no-op jobs submitted to a paused queue, then worked after resuming it."""
    with httpx.Client(base_url=run.base_url, headers=run.auth, timeout=30.0) as client:
        _expect(client.post("/api/v1/queues/bench-builtin/pause"), 200, "pause")
        _submit_jobs(run, "bench-builtin", BUILTIN_TYPE, plan.builtin_jobs, 1000)
        window = CpuWindow(roots)
        window.start()
        _expect(client.post("/api/v1/queues/bench-builtin/resume"), 200, "resume")
    done, seconds = asyncio.run(_wait_worked(run.database_url, "bench-builtin", plan.builtin_jobs,
                                             plan.phase_timeout_seconds))
    return done, seconds, window.stop()


def external_workers(run: EngineRun, plan: Plan, placement: Placement,
                     roots: dict[str, list[int]], *, ack: str = "each",
                     ) -> tuple[int, float, dict[str, Any]]:
    """Worker processes lease (max_jobs) and settle the jobs over HTTP, until none is left:
    `ack` "each" completes job by job, "batch" acknowledges each lease in one request."""
    queue = f"bench-external-{ack}"
    _submit_jobs(run, queue, EXTERNAL_TYPE, plan.external_jobs, 1000)
    with httpx.Client(base_url=run.base_url, headers=run.auth, timeout=30.0) as client:
        ids = [_expect(client.post("/api/v1/workers", json={
            "name": f"bench-{ack}-{n}", "queues": [queue], "max_concurrent_jobs": 1000}),
            201, "register worker").json()["data"]["id"] for n in range(plan.external_workers)]
    window = CpuWindow(roots)
    window.start()
    clients_started = time.perf_counter()
    procs = [subprocess.Popen(
        [*placement.taskset("generator"), sys.executable, "-m", "benchmarks.loadgen", "worker",
         "--base-url", run.base_url, "--token", run.token, "--worker-id", worker_id,
         "--max-jobs", str(plan.external_max_jobs), "--connections",
         str(plan.external_connections), "--seconds", str(plan.external_seconds),
         "--ack", ack],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for worker_id in ids]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=plan.external_seconds + 60)
        found = [ln for ln in out.splitlines() if ln.startswith(RESULT_PREFIX)]
        if proc.returncode != 0 or not found:
            raise BenchError(f"external worker failed: {err.strip()[-200:]}")
        results.append(orjson.loads(found[-1].removeprefix(RESULT_PREFIX)))
    clients_wall = max(1e-9, time.perf_counter() - clients_started)
    shares = window.stop()
    # The clients have stopped: what they completed is in; leases they held stay unfinished.
    done, seconds = asyncio.run(_wait_worked(run.database_url, queue, plan.external_jobs, 0.0))
    # The clients' own CPU (each reports its process time; they have exited, so the window
    # cannot read it), as a share of one core: the clients must cost less than the server for
    # the figure to measure the server.
    client_cpu = sum(r.get("cpu_seconds", 0.0) for r in results)
    client_share = round(client_cpu / clients_wall, 3)
    detail = {"cpu": {**shares, "worker_clients": client_share},
              "errors": sum(r["errors"] for r in results),
              "completed_by_clients": sum(r["completed"] for r in results),
              "worker_clients_cpu_seconds": round(client_cpu, 3),
              "worker_clients_cpu_share": client_share,
              "worker_clients_faster_than_server": client_share < shares.get("server", 0.0)}
    return done, seconds, detail


def start_latency(run: EngineRun, load: Load, roots: dict[str, list[int]], plan: Plan,
                  rate: float) -> tuple[LoadResult, dict[str, float], dict[str, float]]:
    """Built-in no-op jobs submitted one by one at `rate`; created_at → started_at from the DB."""
    result, shares = measured(
        load, roots, url=f"{run.base_url}/api/v1/jobs", method="POST",
        body=single_body("bench-latency", BUILTIN_TYPE), headers=run.auth,
        connections=plan.latency_connections, seconds=plan.latency_seconds, rate=rate)

    async def read() -> dict[str, float]:
        await _wait_worked(run.database_url, "bench-latency", 0, 30.0)
        conn = await asyncpg.connect(run.database_url)
        try:
            row = await conn.fetchrow(Q["start_latency_in_queue"], "bench-latency")
        finally:
            await conn.close()
        assert row is not None
        return {k: float(row[k] or 0.0) for k in ("started", "p50", "p95", "p99", "max")}

    return result, shares, asyncio.run(read())


def rss(run: EngineRun) -> RssSampler:
    return RssSampler(run.proc.pid)
