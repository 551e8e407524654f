"""The harder faults: PostgreSQL crashing or hanging under load, a client retrying a submit whose
answer it lost, a burst larger than the server's pools. Each promise has its bound; like the
scenarios of `scenarios.py`, a broken promise is a line in `problems`, never a raise.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import signal
import socket
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import psycopg

from conformance.chaos import SCENARIO_IDS
from conformance.chaos.ledger import NO_ANSWER, QUERIES, Ledger
from conformance.chaos.load import REQUEST_TIMEOUT_SECONDS, Load
from conformance.chaos.scenarios import (
    ScenarioResult,
    Sizes,
    _drain,
    _load_error,
    _wait_for,
    echo_job,
)
from conformance.chaos.stack import ChaosError, ChaosStack
from conformance.stack.embedded import DATABASE

#: Seconds within which submits succeed again once a crashed PostgreSQL accepts connections.
DB_CRASH_RECOVERY_BOUND_SECONDS = 5.0
#: While PostgreSQL hangs, or the pool is exhausted, every request is answered within this (503
#: with Retry-After, or a 2xx), not held until the database answers again. The server bounds the
#: wait for a pooled connection and each statement at 3 s (reference_server/dbpool.py): 6 s,
#: and 2 s for the rollback and a shared machine. Measured on 2 cores during a 10 s SIGSTOP:
#: reads 3.3-7.0 s; a request held until SIGCONT (10 s) breaks it. Well under the hang.
ANSWER_BOUND_SECONDS = 8.0
DB_HANG_ANSWER_BOUND_SECONDS = ANSWER_BOUND_SECONDS
#: ... and submits succeed again within this once it runs again.
DB_HANG_RECOVERY_BOUND_SECONDS = 5.0
#: Seconds between the probes sent while PostgreSQL hangs (a submit and a read each time).
DB_HANG_PROBE_INTERVAL_SECONDS = 0.25
#: Every burst request answered within this, 2xx or 503 (429) with Retry-After.
BURST_ANSWER_BOUND_SECONDS = ANSWER_BOUND_SECONDS
#: The burst scenario's server: one database connection per process (WORKERS=2: two in all).
BURST_POOL_SIZE = 1

#: Called with what a scenario observed, before it is judged: the tests break a promise there
#: (delete an accepted job, add a duplicate) to show the judgement catches it.
Tamper = Callable[[ChaosStack, Ledger], None]


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


def database_crash(stack: ChaosStack, sizes: Sizes, *,
                   before_judging: Tamper | None = None) -> ScenarioResult:
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
    if before_judging is not None:
        before_judging(stack, ledger)
    _drain(stack, result, ledger, sizes.drain_timeout_seconds)
    missing_retry = ledger.count_503_without_retry_after()
    if missing_retry:
        result.problems.append(f"{missing_retry} 503 answer(s) without Retry-After")
    result.bound(None if first is None else first - up_at, DB_CRASH_RECOVERY_BOUND_SECONDS,
                 "submits succeeded again after PostgreSQL's crash recovery")
    return result


# 9. PostgreSQL hang -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Probe:
    """One request sent while PostgreSQL hung, and how it was answered."""

    what: str  # "submit" or "read"
    sent_at: float  # time.monotonic()
    status: int  # NO_ANSWER for none within the client's timeout
    seconds: float
    retry_after: bool
    data: Any


def _probe(base_url: str, token: str, what: str, sent_at: float, timeout: float) -> Probe:
    """A submit or a read, on a connection of its own, timed from when it was due."""
    if what == "submit":
        status, _s, retry_after, data = _submit_timed(
            base_url, token, echo_job("database-hang")(0), timeout=timeout)
    else:
        try:
            response = httpx.get(base_url + "/api/v1/jobs", params={"limit": 1}, timeout=timeout,
                                 headers={"Authorization": f"Bearer {token}"})
            status, retry_after, data = (response.status_code,
                                         "retry-after" in response.headers, None)
        except httpx.HTTPError:
            status, retry_after, data = NO_ANSWER, False, None
    return Probe(what, sent_at, status, time.monotonic() - sent_at, retry_after, data)


def database_hang(stack: ChaosStack, sizes: Sizes, *,
                  before_judging: Tamper | None = None) -> ScenarioResult:
    """PostgreSQL stopped with SIGSTOP (its sockets stay open, nothing answers) under load, then
    SIGCONT: every request sent during the hang is answered (503 with Retry-After, or a 2xx)
    within ANSWER_BOUND_SECONDS, none held until SIGCONT; submits succeed within 5 s of it."""
    result = ScenarioResult(id=SCENARIO_IDS["database-hang"], name="database hang")
    ledger = Ledger()
    assert stack.token is not None and stack.pg is not None
    if sizes.db_hang_seconds < DB_HANG_ANSWER_BOUND_SECONDS + 1:
        raise ChaosError(f"a {sizes.db_hang_seconds:g} s hang cannot show an answer bound of "
                         f"{DB_HANG_ANSWER_BOUND_SECONDS:g} s")
    token = stack.token
    load = Load(stack.base_url, token, ledger, echo_job("database-hang"),
                target=10**9, concurrency=sizes.load_concurrency, max_seconds=120,
                per_second=100).start()
    rounds = int(sizes.db_hang_seconds / DB_HANG_PROBE_INTERVAL_SECONDS) + 2
    futures: list[concurrent.futures.Future[Probe]] = []
    # A thread per probe: a probe that waits for a free thread would hide its wait.
    with concurrent.futures.ThreadPoolExecutor(max_workers=2 * rounds) as pool:
        try:
            if not _wait_for(lambda: ledger.accepted_count >= 50, 30):
                raise ChaosError("the load did not start")
            stack.pg.signal_group(signal.SIGSTOP)
            hung_at = time.monotonic()
            try:
                for _ in range(rounds):
                    if time.monotonic() - hung_at >= sizes.db_hang_seconds:
                        break
                    for what in ("submit", "read"):
                        futures.append(pool.submit(
                            _probe, stack.base_url, token, what, time.monotonic(),
                            DB_HANG_ANSWER_BOUND_SECONDS * 3))
                    time.sleep(DB_HANG_PROBE_INTERVAL_SECONDS)
                time.sleep(max(0.0, sizes.db_hang_seconds - (time.monotonic() - hung_at)))
            finally:
                stack.pg.signal_group(signal.SIGCONT)
            up_at = time.monotonic()
            _wait_for(lambda: ledger.first_success_after(up_at, "submit") is not None, 30)
            time.sleep(1.0)
        finally:
            load.stop()
        probes = [f.result() for f in futures]
    _load_error(result, load)
    for probe in probes:
        job_id = (str(probe.data["data"]["id"])
                  if probe.what == "submit" and 200 <= probe.status < 300 and probe.data else None)
        ledger.record(f"probe-{probe.what}", probe.status, retry_after=probe.retry_after,
                      job_id=job_id,
                      body=orjson.dumps(probe.data).decode() if probe.data is not None else "")
    bound = DB_HANG_ANSWER_BOUND_SECONDS
    slow = [p for p in probes if p.status == NO_ANSWER or p.seconds > bound]
    # Sent early enough to be answered within the bound before SIGCONT, answered only after it.
    held = [p for p in probes
            if p.sent_at + bound < up_at and p.sent_at + p.seconds >= up_at]
    codes = Counter(f"{p.what} {p.status}" for p in probes)
    unanswered_load = ledger.statuses(hung_at, up_at, "submit").get(NO_ANSWER, 0)
    result.figures.update({
        "hang_seconds": round(up_at - hung_at, 2),
        "answer_bound_seconds": bound,
        "probes_during_hang": len(probes),
        "probe_answers": dict(codes),
        "probe_slowest_seconds": round(max((p.seconds for p in probes), default=0.0), 2),
        "probe_slowest_seconds_by_kind": {
            what: round(max((p.seconds for p in probes if p.what == what), default=0.0), 2)
            for what in ("submit", "read")},
        "probes_held_until_sigcont": len(held),
        "submit_answers_during_hang": dict(ledger.statuses(hung_at, up_at, "submit")),
    })
    if before_judging is not None:
        before_judging(stack, ledger)
    _drain(stack, result, ledger, sizes.drain_timeout_seconds)
    if slow:
        slowest = max(slow, key=lambda p: p.seconds)
        result.problems.append(
            f"{len(slow)} of {len(probes)} request(s) during the hang not answered within "
            f"{bound:g} s (slowest: {slowest.what} sent {slowest.sent_at - hung_at:.1f} s into "
            f"the hang, {slowest.seconds:.1f} s): they piled up")
    if held:
        result.problems.append(f"{len(held)} request(s) sent during the hang were held until "
                               f"SIGCONT, e.g. a {held[0].what}")
    if unanswered_load:
        result.problems.append(f"{unanswered_load} load submit(s) during the hang got no answer "
                               f"within their {REQUEST_TIMEOUT_SECONDS:g} s timeout")
    if not any(p.status == 503 for p in probes):
        result.problems.append(f"no request during the hang was answered 503: {dict(codes)}")
    odd = {c: n for c, n in codes.items()
           if not c.endswith(" 503") and not 200 <= int(c.split()[1]) < 300}
    if odd:
        result.problems.append(f"requests during the hang answered {odd}, not 503 or 2xx")
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


def submit_retry(stack: ChaosStack, sizes: Sizes, *,
                 before_judging: Tamper | None = None) -> ScenarioResult:
    """A client sends a submit with an idempotency_key, drops the connection before the answer
    and sends it again: exactly one job per key, the one the retry was answered with."""
    result = ScenarioResult(id=SCENARIO_IDS["submit-retry"], name="submit retried after a drop")
    ledger = Ledger()
    assert stack.token is not None
    token = stack.token
    run = uuid.uuid4().hex[:12]
    delays = (0.0, 0.0005, 0.002, 0.01, 0.05)
    answered: dict[int, str] = {}
    statuses: dict[int, int] = {}
    with httpx.Client(base_url=stack.base_url, timeout=30.0,
                      headers={"Authorization": f"Bearer {token}"}) as client:
        for n in range(sizes.retry_keys):
            body = echo_job("submit-retry", idempotency_key=f"chaos-retry-{run}-{n}")(n)
            body["payload"]["run"] = run
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
                answered[n] = job_id
    if before_judging is not None:
        before_judging(stack, ledger)
    # By the payload's n, not by key: a server that ignored the key made two jobs without it.
    with psycopg.connect(stack.database_url, connect_timeout=10) as conn:
        rows = conn.execute(QUERIES["retry_jobs"], {"run": run}).fetchall()
    stored: dict[int, list[str]] = {}
    for n, job_id, _key in rows:
        stored.setdefault(int(n), []).append(str(job_id))
    twice = sorted(n for n, ids in stored.items() if len(ids) > 1)
    wrong = sorted(n for n, job_id in answered.items() if stored.get(n) != [job_id])
    result.figures.update({"keys": sizes.retry_keys, "retry_answers": statuses,
                           "keys_stored": len(stored), "keys_stored_twice": len(twice)})
    _drain(stack, result, ledger, sizes.drain_timeout_seconds)
    if len(answered) != sizes.retry_keys:
        result.problems.append(
            f"{sizes.retry_keys - len(answered)} retried submit(s) not answered 2xx: {statuses}")
    if twice:
        result.problems.append(f"{len(twice)} idempotency key(s) made more than one job, "
                               f"e.g. chaos-retry-{run}-{twice[0]}: {stored[twice[0]]}")
    if wrong:
        result.problems.append(f"{len(wrong)} retry answer(s) named another job than the one "
                               f"stored, e.g. chaos-retry-{run}-{wrong[0]}")
    return result


# 11. A burst larger than the pool --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BurstAnswer:
    status: int  # NO_ANSWER for none within the client's timeout
    seconds: float
    retry_after: bool
    job_id: str | None


async def _burst(base_url: str, token: str, bodies: list[dict[str, Any]]) -> list[BurstAnswer]:
    """Every body POSTed at once, each on a connection of its own (threads with a client each
    spend their start-up on the client's CPU and arrive one by one)."""
    limits = httpx.Limits(max_connections=len(bodies), max_keepalive_connections=len(bodies))

    async def one(client: httpx.AsyncClient, body: dict[str, Any]) -> BurstAnswer:
        started = time.monotonic()
        try:
            response = await client.post("/api/v1/jobs", json=body)
        except httpx.HTTPError:
            return BurstAnswer(NO_ANSWER, time.monotonic() - started, False, None)
        seconds = time.monotonic() - started
        job_id = (str(response.json()["data"]["id"])
                  if 200 <= response.status_code < 300 else None)
        return BurstAnswer(response.status_code, seconds, "retry-after" in response.headers,
                           job_id)

    async with httpx.AsyncClient(base_url=base_url, limits=limits,
                                 timeout=BURST_ANSWER_BOUND_SECONDS * 3,
                                 headers={"Authorization": f"Bearer {token}"}) as client:
        return list(await asyncio.gather(*(one(client, body) for body in bodies)))


def _slow_commits(stack: ChaosStack, delay_ms: int) -> None:
    """Each commit of the server's database waits delay_ms (commit_delay, as a slow disk's
    fsync would; commit_siblings 0: even with no other transaction open). 0: the defaults.
    New sessions only: the server is restarted after."""
    assert stack.pg is not None
    with psycopg.connect(stack.pg.url, autocommit=True, connect_timeout=10) as conn:
        if delay_ms:
            conn.execute(f"ALTER DATABASE {DATABASE} SET commit_delay = {int(delay_ms) * 1000}")
            conn.execute(f"ALTER DATABASE {DATABASE} SET commit_siblings = 0")
        else:
            conn.execute(f"ALTER DATABASE {DATABASE} RESET commit_delay")
            conn.execute(f"ALTER DATABASE {DATABASE} RESET commit_siblings")


def pool_burst(stack: ChaosStack, sizes: Sizes, *,
               before_judging: Tamper | None = None) -> ScenarioResult:
    """More concurrent submits than the pool can serve within the server's wait for a
    connection: each is answered within its bound, 2xx or 503 (429) with Retry-After; every 2xx
    job is there once with its audit row; a burst that drew no 503 tested nothing (an error)."""
    result = ScenarioResult(id=SCENARIO_IDS["pool-burst"], name="burst larger than the pool")
    ledger = Ledger()
    run = uuid.uuid4().hex[:12]
    bodies = []
    for n in range(sizes.burst_requests):
        # A key of its own: each submit is its own transaction (job and audit row), holding
        # a pooled connection to its commit; keyless ones ride on a shared group commit.
        body = echo_job("pool-burst", idempotency_key=f"chaos-burst-{run}-{n}")(n)
        body["payload"]["run"] = run
        bodies.append(body)
    _slow_commits(stack, sizes.burst_commit_delay_ms)
    try:
        unclean = stack.restart_server({"POOL_SIZE": str(BURST_POOL_SIZE)})
        if unclean:
            result.problems.append(unclean)
        assert stack.token is not None
        started = time.monotonic()
        answers = asyncio.run(_burst(stack.base_url, stack.token, bodies))
        elapsed = time.monotonic() - started
    finally:
        _slow_commits(stack, 0)
    unclean = stack.restart_server()
    if unclean:
        result.problems.append(unclean)
    for answer in answers:
        ledger.record("submit", answer.status, retry_after=answer.retry_after,
                      job_id=answer.job_id)
    if before_judging is not None:
        before_judging(stack, ledger)
    with psycopg.connect(stack.database_url, connect_timeout=10) as conn:
        rows = conn.execute(QUERIES["burst_jobs"], {"run": run}).fetchall()
    stored: dict[int, list[tuple[str, int]]] = {}
    for n, job_id, audit_rows in rows:
        stored.setdefault(int(n), []).append((str(job_id), int(audit_rows)))
    codes = Counter(a.status for a in answers)
    refused = {c: k for c, k in codes.items() if not 200 <= c < 300}
    slowest = max((a.seconds for a in answers), default=0.0)
    result.figures.update({
        "requests": sizes.burst_requests, "pool_size": BURST_POOL_SIZE,
        "processes": stack.workers, "commit_delay_ms": sizes.burst_commit_delay_ms,
        "answers": dict(codes), "slowest_seconds": round(slowest, 2),
        "slowest_2xx_seconds": round(max(
            (a.seconds for a in answers if 200 <= a.status < 300), default=0.0), 2),
        "answer_bound_seconds": BURST_ANSWER_BOUND_SECONDS, "elapsed_seconds": round(elapsed, 2),
    })
    _drain(stack, result, ledger, sizes.drain_timeout_seconds)
    if not codes.get(503) and not codes.get(429):
        # Every request served: the burst was not larger than the pool, so nothing was tested.
        result.error = (f"precondition failed: the burst of {sizes.burst_requests} never "
                        f"exhausted the pool (answers {dict(codes)}, no 503)")
    slow = [a for a in answers if a.status == NO_ANSWER or a.seconds > BURST_ANSWER_BOUND_SECONDS]
    if slow:
        result.problems.append(
            f"{len(slow)} burst request(s) not answered within {BURST_ANSWER_BOUND_SECONDS:g} s "
            f"(slowest {slowest:.1f} s): they hung")
    odd = {c: k for c, k in refused.items() if c not in (429, 503, NO_ANSWER)}
    if odd:
        result.problems.append(f"burst requests answered {odd}, not 2xx, 503 or 429")
    bare = sum(1 for a in answers if a.status in (429, 503) and not a.retry_after)
    if bare:
        result.problems.append(f"{bare} refusal(s) (503/429) without Retry-After")
    for n, answer in enumerate(answers):
        if answer.job_id is None:
            continue
        jobs = stored.get(n, [])
        if [job_id for job_id, _ in jobs] != [answer.job_id]:
            result.problems.append(f"burst submit {n} answered {answer.status} with job "
                                   f"{answer.job_id}, stored: {[j for j, _ in jobs]}")
        elif jobs[0][1] != 1:
            result.problems.append(f"burst job {answer.job_id} has {jobs[0][1]} audit row(s), "
                                   f"not 1: half-written")
    written_refused = sorted(n for n, a in enumerate(answers) if a.job_id is None and n in stored)
    if written_refused:
        result.problems.append(f"{len(written_refused)} burst submit(s) refused but written, "
                               f"e.g. {written_refused[0]}: {answers[written_refused[0]].status}")
    return result
