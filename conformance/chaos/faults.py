"""The harder faults: PostgreSQL crashing or hanging under load, a client retrying a submit whose
answer it lost, a burst larger than the server's pools. Each promise has its bound; like the
scenarios of `scenarios.py`, a broken promise is a line in `problems`, never a raise.
"""

from __future__ import annotations

import concurrent.futures
import signal
import socket
import time
import uuid
from typing import Any

import httpx
import orjson
import psycopg

from conformance.chaos import SCENARIO_IDS
from conformance.chaos.ledger import NO_ANSWER, QUERIES, Ledger
from conformance.chaos.load import Load
from conformance.chaos.scenarios import (
    QUEUE,
    ScenarioResult,
    Sizes,
    _drain,
    _load_error,
    _wait_for,
    echo_job,
)
from conformance.chaos.stack import ChaosError, ChaosStack

#: Seconds within which submits succeed again once a crashed PostgreSQL accepts connections.
DB_CRASH_RECOVERY_BOUND_SECONDS = 5.0
#: While PostgreSQL hangs, every request is answered within this (503, not a pile-up): a
#: request may wait for a pooled connection and then for its statement, each bounded ...
DB_HANG_ANSWER_BOUND_SECONDS = 15.0
#: ... and submits succeed again within this once it runs again.
DB_HANG_RECOVERY_BOUND_SECONDS = 5.0
#: Every burst request answered within this, 2xx or 503 with Retry-After.
BURST_ANSWER_BOUND_SECONDS = 15.0
#: The burst scenario's server: this few database connections per process, this many processes.
BURST_POOL_SIZE = 2
BURST_JOBS_PER_REQUEST = 100


def _submit_timed(base_url: str, token: str, body: dict[str, Any], path: str = "/api/v1/jobs",
                  timeout: float = 60.0) -> tuple[int, float, bool, Any]:
    """One POST on a connection of its own: (status, seconds, Retry-After given, JSON or None)."""
    started = time.monotonic()
    try:
        response = httpx.post(base_url + path, json=body, timeout=timeout,
                              headers={"Authorization": f"Bearer {token}"})
    except httpx.HTTPError:
        return NO_ANSWER, time.monotonic() - started, False, None
    seconds = time.monotonic() - started
    try:
        data = response.json()
    except ValueError:
        data = None
    return response.status_code, seconds, "retry-after" in response.headers, data


# 8. PostgreSQL crash ----------------------------------------------------------------------------


def database_crash(stack: ChaosStack, sizes: Sizes) -> ScenarioResult:
    """PostgreSQL SIGKILLed (postmaster and backends) under load, then started again: every job
    answered 2xx is there after its crash recovery (commit durability); back within 5 s."""
    result = ScenarioResult(id=SCENARIO_IDS["database-crash"], name="database crash")
    ledger = Ledger()
    assert stack.token is not None and stack.pg is not None
    load = Load(stack.base_url, stack.token, ledger, echo_job("database-crash"),
                target=10**9, concurrency=sizes.load_concurrency, max_seconds=120).start()
    try:
        if not _wait_for(lambda: ledger.accepted_count >= 100, 30):
            raise ChaosError("the load did not start")
        accepted_before = ledger.accepted_count
        stack.pg.signal_group(signal.SIGKILL)
        killed_at = time.monotonic()
        time.sleep(sizes.db_crash_down_seconds)
        started_at = time.monotonic()
        stack.pg.resume()  # crash recovery: WAL replay
        up_at = time.monotonic()
        _wait_for(lambda: ledger.first_success_after(up_at, "submit") is not None, 30)
        time.sleep(1.0)
    finally:
        load.stop()
    _load_error(result, load)
    first = ledger.first_success_after(up_at, "submit")
    result.figures.update({
        "accepted_before_kill": accepted_before,
        "down_seconds": round(started_at - killed_at, 2),
        "postgres_recovery_seconds": round(up_at - started_at, 2),
        "submit_answers_while_down": dict(ledger.statuses(killed_at, up_at, "submit")),
    })
    _drain(stack, result, ledger, sizes.drain_timeout_seconds)
    missing_retry = ledger.count_503_without_retry_after()
    if missing_retry:
        result.problems.append(f"{missing_retry} 503 answer(s) without Retry-After")
    result.bound(None if first is None else first - up_at, DB_CRASH_RECOVERY_BOUND_SECONDS,
                 "submits succeeded again after PostgreSQL's crash recovery")
    return result


# 9. PostgreSQL hang -----------------------------------------------------------------------------


def database_hang(stack: ChaosStack, sizes: Sizes) -> ScenarioResult:
    """PostgreSQL stopped with SIGSTOP (its sockets stay open, nothing answers) under load, then
    SIGCONT: requests are answered 503 within their bound instead of piling up; back within 5 s."""
    result = ScenarioResult(id=SCENARIO_IDS["database-hang"], name="database hang")
    ledger = Ledger()
    assert stack.token is not None and stack.pg is not None
    token = stack.token
    load = Load(stack.base_url, token, ledger, echo_job("database-hang"),
                target=10**9, concurrency=sizes.load_concurrency, max_seconds=120,
                per_second=100).start()
    probes: list[concurrent.futures.Future[tuple[int, float, bool, Any]]] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        try:
            if not _wait_for(lambda: ledger.accepted_count >= 50, 30):
                raise ChaosError("the load did not start")
            stack.pg.signal_group(signal.SIGSTOP)
            hung_at = time.monotonic()
            try:
                while time.monotonic() - hung_at < sizes.db_hang_seconds:
                    probes.append(pool.submit(
                        _submit_timed, stack.base_url, token, echo_job("database-hang")(0),
                        "/api/v1/jobs", DB_HANG_ANSWER_BOUND_SECONDS * 3))
                    time.sleep(0.25)
            finally:
                stack.pg.signal_group(signal.SIGCONT)
            up_at = time.monotonic()
            _wait_for(lambda: ledger.first_success_after(up_at, "submit") is not None, 30)
            time.sleep(1.0)
        finally:
            load.stop()
        answers = [p.result() for p in probes]
    _load_error(result, load)
    for status, _seconds, retry_after, data in answers:
        job_id = str(data["data"]["id"]) if 200 <= status < 300 and data else None
        ledger.record("probe", status, retry_after=retry_after, job_id=job_id,
                      body=orjson.dumps(data).decode() if data is not None else "")
    slow = [s for _st, s, _r, _d in answers if s > DB_HANG_ANSWER_BOUND_SECONDS]
    codes: dict[int, int] = {}
    for status, *_ in answers:
        codes[status] = codes.get(status, 0) + 1
    result.figures.update({
        "hang_seconds": round(up_at - hung_at, 2),
        "probes_during_hang": len(answers),
        "probe_answers": codes,
        "probe_slowest_seconds": round(max((s for _st, s, _r, _d in answers), default=0.0), 2),
        "submit_answers_during_hang": dict(ledger.statuses(hung_at, up_at, "submit")),
    })
    _drain(stack, result, ledger, sizes.drain_timeout_seconds)
    if slow:
        result.problems.append(
            f"{len(slow)} of {len(answers)} request(s) during the hang took longer than "
            f"{DB_HANG_ANSWER_BOUND_SECONDS:.0f} s (slowest {max(slow):.1f} s): they piled up")
    if not codes.get(503):
        result.problems.append(f"no request during the hang was answered 503: {codes}")
    odd = {c: n for c, n in codes.items() if c not in (503,) and not 200 <= c < 300}
    if odd:
        result.problems.append(f"requests during the hang answered {odd}, not 503")
    missing_retry = ledger.count_503_without_retry_after()
    if missing_retry:
        result.problems.append(f"{missing_retry} 503 answer(s) without Retry-After")
    first = ledger.first_success_after(up_at, "submit")
    result.bound(None if first is None else first - up_at, DB_HANG_RECOVERY_BOUND_SECONDS,
                 "submits succeeded again after SIGCONT")
    return result


# 10. A submit retried after its answer was lost -------------------------------------------------


def _send_and_drop(base_url: str, token: str, body: bytes, after_seconds: float) -> None:
    """Write a whole POST /api/v1/jobs, then close the socket before reading any answer."""
    parts = httpx.URL(base_url)
    request = (
        f"POST /api/v1/jobs HTTP/1.1\r\nHost: {parts.host}:{parts.port}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    with socket.create_connection((parts.host, parts.port or 80), timeout=10) as sock:
        sock.sendall(request)
        if after_seconds:
            time.sleep(after_seconds)
        # RST rather than FIN: the answer is thrown away as a client that died would.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")


def submit_retry(stack: ChaosStack, sizes: Sizes) -> ScenarioResult:
    """A client sends a submit with an idempotency_key, drops the connection before the answer
    and sends it again: exactly one job per key, the one the retry was answered with."""
    result = ScenarioResult(id=SCENARIO_IDS["submit-retry"], name="submit retried after a drop")
    ledger = Ledger()
    assert stack.token is not None
    token = stack.token
    run = uuid.uuid4().hex[:12]
    delays = (0.0, 0.0005, 0.002, 0.01, 0.05)
    answered: dict[str, str] = {}
    statuses: dict[int, int] = {}
    with httpx.Client(base_url=stack.base_url, timeout=30.0,
                      headers={"Authorization": f"Bearer {token}"}) as client:
        for n in range(sizes.retry_keys):
            key = f"chaos-retry-{run}-{n}"
            body = echo_job("submit-retry", idempotency_key=key)(n)
            _send_and_drop(stack.base_url, token, orjson.dumps(body), delays[n % len(delays)])
            try:
                response = client.post("/api/v1/jobs", json=body)
            except httpx.HTTPError:
                ledger.record("submit", NO_ANSWER)
                continue
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            job_id = (str(response.json()["data"]["id"])
                      if 200 <= response.status_code < 300 else None)
            ledger.record("submit", response.status_code, job_id=job_id, body=response.text,
                          retry_after="retry-after" in response.headers)
            if job_id is not None:
                answered[key] = job_id
    with psycopg.connect(stack.database_url, connect_timeout=10) as conn:
        rows = conn.execute(QUERIES["jobs_by_idempotency_prefix"],
                            {"prefix": f"chaos-retry-{run}-%"}).fetchall()
    stored: dict[str, list[str]] = {}
    for key, job_id in rows:
        stored.setdefault(key, []).append(str(job_id))
    twice = sorted(k for k, ids in stored.items() if len(ids) > 1)
    wrong = sorted(k for k, job_id in answered.items() if stored.get(k) != [job_id])
    result.figures.update({"keys": sizes.retry_keys, "retry_answers": statuses,
                           "keys_stored": len(stored), "keys_stored_twice": len(twice)})
    _drain(stack, result, ledger, sizes.drain_timeout_seconds)
    if len(answered) != sizes.retry_keys:
        result.problems.append(
            f"{sizes.retry_keys - len(answered)} retried submit(s) not answered 2xx: {statuses}")
    if twice:
        result.problems.append(f"{len(twice)} idempotency key(s) made more than one job, "
                               f"e.g. {twice[0]}: {stored[twice[0]]}")
    if wrong:
        result.problems.append(f"{len(wrong)} retry answer(s) named another job than the one "
                               f"stored, e.g. {wrong[0]}")
    return result


# 11. A burst larger than the pools --------------------------------------------------------------


def pool_burst(stack: ChaosStack, sizes: Sizes) -> ScenarioResult:
    """Many more concurrent batch submits than the server has database connections: each is
    answered, 201 or 503 with Retry-After, within its bound; no batch is half-written."""
    result = ScenarioResult(id=SCENARIO_IDS["pool-burst"], name="burst larger than the pool")
    ledger = Ledger()
    stack.restart_server({"POOL_SIZE": str(BURST_POOL_SIZE)})
    assert stack.token is not None
    token = stack.token
    run = uuid.uuid4().hex[:12]

    def batch(n: int) -> dict[str, Any]:
        return {"jobs": [{"queue_name": QUEUE, "job_type": "echo",
                          "payload": {"chaos": "pool-burst", "run": run, "n": n, "i": i}}
                         for i in range(BURST_JOBS_PER_REQUEST)]}

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=sizes.burst_requests) as pool:
        futures = [pool.submit(_submit_timed, stack.base_url, token, batch(n),
                               "/api/v1/jobs/batch", BURST_ANSWER_BOUND_SECONDS * 2)
                   for n in range(sizes.burst_requests)]
        answers = [f.result() for f in futures]
    elapsed = time.monotonic() - started
    codes: dict[int, int] = {}
    accepted_batches = 0
    for n, (status, _seconds, retry_after, data) in enumerate(answers):
        codes[status] = codes.get(status, 0) + 1
        ledger.record("batch", status, retry_after=retry_after,
                      body=orjson.dumps(data).decode() if data is not None else "")
        if status == 201 and data:
            ids = [str(i) for i in data["data"]["ids"]]
            if len(ids) != BURST_JOBS_PER_REQUEST:
                result.problems.append(f"batch {n} answered 201 with {len(ids)} ids")
            ledger.accept(ids)
            accepted_batches += 1
    with psycopg.connect(stack.database_url, connect_timeout=10) as conn:
        rows = conn.execute(QUERIES["burst_batches"], {"run": run}).fetchall()
    written = {int(n): int(count) for n, count in rows}
    half = sorted(n for n, count in written.items() if count != BURST_JOBS_PER_REQUEST)
    refused_but_written = sorted(n for n, (status, *_rest) in enumerate(answers)
                                 if status != 201 and n in written)
    slowest = max((s for _st, s, _r, _d in answers), default=0.0)
    result.figures.update({"requests": sizes.burst_requests, "pool_size": BURST_POOL_SIZE,
                           "answers": codes, "slowest_seconds": round(slowest, 2),
                           "elapsed_seconds": round(elapsed, 2),
                           "accepted_batches": accepted_batches})
    _drain(stack, result, ledger, sizes.drain_timeout_seconds)
    if half:
        result.problems.append(f"{len(half)} batch(es) half-written, e.g. batch {half[0]}: "
                               f"{written[half[0]]} of {BURST_JOBS_PER_REQUEST} jobs")
    if refused_but_written:
        result.problems.append(f"{len(refused_but_written)} batch(es) refused but written, "
                               f"e.g. batch {refused_but_written[0]}")
    odd = {c: n for c, n in codes.items() if c not in (201, 503)}
    if odd:
        result.problems.append(f"burst requests answered {odd}, not 201 or 503")
    missing_retry = ledger.count_503_without_retry_after()
    if missing_retry:
        result.problems.append(f"{missing_retry} 503 answer(s) without Retry-After")
    if slowest > BURST_ANSWER_BOUND_SECONDS:
        result.problems.append(f"a burst request took {slowest:.1f} s, bound "
                               f"{BURST_ANSWER_BOUND_SECONDS:.0f} s (it hung)")
    stack.restart_server()
    return result
