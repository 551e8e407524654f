"""The first seven fault scenarios (faults.py has the harder ones), each a function over a running
ChaosStack that returns its figures.

A scenario never raises for a broken promise: it lists the broken promises in `problems`, so one
failing scenario does not hide the others. `ChaosError` means the scenario could not be staged.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

from conformance.chaos import SCENARIO_IDS
from conformance.chaos.ledger import (
    NO_ANSWER,
    QUERIES,
    Accounting,
    Ledger,
    account,
    job_states,
    processing_ids,
    wait_terminal,
)
from conformance.chaos.load import Load, WorkerClient, submit_batch
from conformance.chaos.stack import ChaosError, ChaosStack

QUEUE = "default"
#: A job type no built-in runner takes: only the scenario's own HTTP workers lease it.
EXTERNAL_JOB_TYPE = "chaos.external"
#: Seconds within which the API must serve again once PostgreSQL is back (guide's promise).
DB_RECOVERY_BOUND_SECONDS = 5.0
#: Seconds within which /health must say ok again once Redis is back.
REDIS_RECOVERY_BOUND_SECONDS = 10.0
#: Seconds for a restarted server to answer /ready.
RESTART_BOUND_SECONDS = 30.0
#: Job timeout of crash-scenario jobs (their sleepers take half of it).
CRASH_JOB_TIMEOUT_SECONDS = 1
#: Seconds after the restart within which every job accepted before a crash must have finished,
#: those the dead processes held included (issue 14: crash recovery in seconds, not when the
#: leases run out). The reference releases a gone process's leases at start-up.
CRASH_RECOVERY_BOUND_SECONDS = 10.0


@dataclass(frozen=True, kw_only=True)
class Sizes:
    """Counts and durations of one run: `full()` for `nox -s chaos`, `quick()` for the tests."""

    crash_jobs: int
    load_concurrency: int
    dead_worker_jobs: int
    dead_worker_lease_seconds: int
    db_outage_seconds: float
    redis_outage_seconds: float
    shutdown_sleep_jobs: int
    shutdown_sleep_seconds: float
    backup_jobs: int
    drain_timeout_seconds: float
    log_cases: tuple[str, ...] = ("disk full", "a directory", "under a regular file")
    #: Quick PostgreSQL restarts (a failover's blink) before the long outage: each one cuts the
    #: connections of the requests in flight.
    db_blips: int = 3
    #: Every n-th crash-scenario job sleeps a little, so the crash finds jobs in flight (they must
    #: run again within CRASH_RECOVERY_BOUND_SECONDS of the restart); None: echo only.
    crash_sleep_every: int | None = 20
    #: Also restart the server with RATE_LIMIT_FAILURE_MODE=closed and stop Redis again.
    redis_closed_mode: bool = True
    #: The harder faults (faults.py): PostgreSQL down after its SIGKILL, PostgreSQL stopped
    #: (SIGSTOP), idempotency keys retried after a dropped connection, burst size.
    db_crash_down_seconds: float = 1.0
    db_hang_seconds: float = 10.0
    retry_keys: int = 100
    #: Concurrent submits of the burst, and how long each commit of the database waits meanwhile
    #: (a slow disk): 1 connection per process then serves about 1000/delay submits a second.
    burst_requests: int = 160
    burst_commit_delay_ms: int = 100

    @classmethod
    def full(cls) -> Sizes:
        return cls(crash_jobs=10_000, load_concurrency=16, dead_worker_jobs=50,
                   dead_worker_lease_seconds=3, db_outage_seconds=10.0, redis_outage_seconds=5.0,
                   shutdown_sleep_jobs=200, shutdown_sleep_seconds=2.0, backup_jobs=2000,
                   drain_timeout_seconds=180.0)

    @classmethod
    def quick(cls) -> Sizes:
        return cls(crash_jobs=300, load_concurrency=8, dead_worker_jobs=10,
                   dead_worker_lease_seconds=2, db_outage_seconds=3.0, redis_outage_seconds=2.0,
                   shutdown_sleep_jobs=30, shutdown_sleep_seconds=1.0, backup_jobs=200,
                   drain_timeout_seconds=45.0, log_cases=("disk full",), db_blips=3,
                   redis_closed_mode=False, crash_sleep_every=10, db_hang_seconds=10.0,
                   retry_keys=25, burst_requests=120)


@dataclass(kw_only=True)
class ScenarioResult:
    """The figures of one scenario; `problems` lists every broken promise, one line each."""

    id: str  # the catalogue item, e.g. CHAOS-PROCESS-CRASH
    name: str
    accepted: int = 0
    completed: int = 0
    lost: int = 0
    stuck: int = 0
    re_executed: int = 0
    http_500: int = 0
    recovery_seconds: float | None = None
    recovery_bound_seconds: float | None = None
    duration_seconds: float = 0.0
    figures: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    error: str | None = None  # the scenario could not be staged

    @property
    def ok(self) -> bool:
        return not self.problems and self.error is None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, with `ok` and rounded seconds (the form chaos.json holds)."""
        data = dataclasses.asdict(self)
        data["ok"] = self.ok
        for key in ("recovery_seconds", "recovery_bound_seconds"):
            if isinstance(data[key], float):
                data[key] = round(data[key], 2)
        return data

    def take(self, books: Accounting) -> None:
        self.accepted = books.accepted
        self.completed = books.completed
        self.lost = len(books.lost)
        self.stuck = len(books.stuck)
        self.re_executed = len(books.re_executed)
        self.figures["by_status"] = books.by_status
        if books.lost:
            self.problems.append(f"{len(books.lost)} accepted job(s) lost, e.g. {books.lost[0]}")
        if books.stuck:
            self.problems.append(
                f"{len(books.stuck)} accepted job(s) not finished in time, e.g. {books.stuck[0]}")

    def bound(self, seconds: float | None, limit: float, what: str) -> None:
        self.recovery_seconds = seconds
        self.recovery_bound_seconds = limit
        if seconds is None or seconds > limit:
            shown = "never" if seconds is None else f"after {seconds:.1f}s"
            self.problems.append(f"{what} {shown}, bound {limit:.0f}s")


def echo_job(tag: str, **extra: Any) -> Callable[[int], dict[str, Any]]:
    def body(n: int) -> dict[str, Any]:
        return {"queue_name": QUEUE, "job_type": "echo", "payload": {"chaos": tag, "n": n},
                **extra}
    return body


def _drain(
    stack: ChaosStack, result: ScenarioResult, ledger: Ledger, timeout: float
) -> float | None:
    """Wait until every accepted job is terminal; account for them in the result."""
    ids = ledger.ids()
    waited = wait_terminal(stack.database_url, ids, timeout) if ids else 0.0
    result.take(account(stack.database_url, ids))
    result.http_500 = ledger.count_500()
    if result.http_500:
        result.problems.append(
            f"{result.http_500} answer(s) 5xx other than 503, e.g. {ledger.server_errors[:1]}")
    return waited


def _wait_for(condition: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


def _load_error(result: ScenarioResult, load: Load) -> None:
    if load.error is not None:
        result.problems.append(f"the load generator failed: {type(load.error).__name__}")


def ensure_server(stack: ChaosStack) -> None:
    """Leave the stack serving for the next scenario, whatever this one did to it."""
    assert stack.pg is not None and stack.redis is not None
    if not stack.pg.running:
        stack.pg.resume()
    if not stack.redis.running:
        stack.redis.resume()
    if stack.server is None or not stack.server.alive():
        stack.kill_server()
        stack.start_server()


# 1. Process crash ---------------------------------------------------------------------------


def process_crash(stack: ChaosStack, sizes: Sizes) -> ScenarioResult:
    """SIGKILL every server process while jobs are submitted and worked; restart; count."""
    result = ScenarioResult(id=SCENARIO_IDS["process-crash"], name="process crash")
    ledger = Ledger()
    assert stack.token is not None and stack.server is not None
    echo = echo_job("crash", timeout_seconds=CRASH_JOB_TIMEOUT_SECONDS)
    every = sizes.crash_sleep_every

    def job(n: int) -> dict[str, Any]:
        body = echo(n)
        if every and n % every == 0:
            body["job_type"] = "sleep"
            body["payload"]["seconds"] = CRASH_JOB_TIMEOUT_SECONDS / 2
        return body

    load = Load(stack.base_url, stack.token, ledger, job,
                target=sizes.crash_jobs, concurrency=sizes.load_concurrency).start()
    try:
        if not _wait_for(lambda: ledger.accepted_count >= sizes.crash_jobs // 2, 300):
            raise ChaosError("the load did not reach half its jobs")
        pids_alive_before = stack.server.group_alive()
        killed_at = time.monotonic()
        stack.kill_server()
        accepted_at_kill = ledger.accepted_count
        in_flight = processing_ids(stack.database_url)
        if stack.server.group_alive():
            result.problems.append("a server process survived SIGKILL of its group")
        stack.start_server(wait=False)
        ready = _wait_ready_within(stack, RESTART_BOUND_SECONDS)
        restarted_after = time.monotonic() - killed_at
        # Recovery: every job accepted before the crash finished (those it interrupted ran
        # again: the restarted server released the dead processes' leases).
        before_kill = ledger.accepted_before(killed_at)
        patience = max(sizes.drain_timeout_seconds, CRASH_RECOVERY_BOUND_SECONDS + 30)
        caught_up = wait_terminal(stack.database_url, before_kill, patience)
        recovered = None if caught_up is None else time.monotonic() - killed_at
        load.join(600)
    finally:
        load.stop()
    _load_error(result, load)
    _drain(stack, result, ledger, sizes.drain_timeout_seconds)
    result.bound(recovered, CRASH_RECOVERY_BOUND_SECONDS + restarted_after,
                 "every job accepted before the crash finished")
    ids = ledger.ids()
    states = job_states(stack.database_url, ids)
    rerun = {i for i, s in states.items() if s.attempt_count > 1}
    garbled = sorted(i for i, s in states.items() if s.status == "succeeded" and not (
        isinstance(s.output, dict)
        and (s.output.get("chaos") == "crash" or "slept_seconds" in s.output)))
    if garbled:
        result.problems.append(
            f"{len(garbled)} succeeded job(s) without their echoed payload, e.g. {garbled[0]}")
    unexpected = sorted(rerun - in_flight)
    if unexpected:
        result.problems.append(
            f"{len(unexpected)} job(s) ran again although not in flight at the crash, "
            f"e.g. {unexpected[0]}")
    result.figures.update({
        "group_alive_before_kill": pids_alive_before,
        "accepted_at_kill": accepted_at_kill,
        "in_flight_at_kill": len(in_flight),
        "restart_ready_seconds": round(ready, 2) if ready is not None else None,
        "accepted_before_kill": len(before_kill),
        "submit_answers": dict(ledger.statuses(what="submit")),
    })
    if ready is None:
        result.problems.append(
            f"the restarted server was not ready within {RESTART_BOUND_SECONDS}s")
    return result


def _wait_ready_within(stack: ChaosStack, timeout: float) -> float | None:
    try:
        return stack.wait_ready(timeout)
    except ChaosError:
        return None


# 2. Worker death ----------------------------------------------------------------------------


def worker_death(stack: ChaosStack, sizes: Sizes) -> ScenarioResult:
    """A worker leases jobs and dies; they come back after the lease and finish elsewhere."""
    result = ScenarioResult(id=SCENARIO_IDS["worker-death"], name="worker death")
    ledger = Ledger()
    assert stack.token is not None
    count, lease_seconds = sizes.dead_worker_jobs, sizes.dead_worker_lease_seconds
    bodies = [{"queue_name": QUEUE, "job_type": EXTERNAL_JOB_TYPE, "max_attempts": 3,
               "payload": {"chaos": "worker-death", "n": n}} for n in range(count)]
    submit_batch(stack.base_url, stack.token, ledger, bodies)
    ours = set(ledger.ids())
    dying = WorkerClient(stack.base_url, stack.token, ledger)
    heir = WorkerClient(stack.base_url, stack.token, ledger)
    try:
        dying.register("chaos-dying", [QUEUE], count)
        heir.register("chaos-heir", [QUEUE], count)
        leased = dying.lease(count, lease_seconds=lease_seconds) or []
        leased_at = time.monotonic()
        mine = {str(j["id"]) for j in leased} & ours
        result.figures["leased_by_dying_worker"] = len(mine)
        if len(mine) != count:
            raise ChaosError(f"the dying worker leased {len(mine)} of {count} jobs")
        # The worker now stops: no heartbeat, no completion. Nobody else may get them early.
        early = heir.lease(count, wait_seconds=0) or []
        early_ours = [j for j in early if str(j["id"]) in ours]
        if early_ours:
            result.problems.append(
                f"{len(early_ours)} job(s) leased again before the lease ran out")
        completed: dict[str, int] = {}
        first_back: float | None = None
        deadline = leased_at + lease_seconds + 30
        while len(completed) < count and time.monotonic() < deadline:
            batch = heir.lease(count, lease_seconds=60, wait_seconds=2) or []
            for job in batch:
                job_id = str(job["id"])
                if job_id not in ours:
                    continue
                first_back = first_back or time.monotonic()
                completed[job_id] = heir.complete(job_id, {"by": "heir"})
    finally:
        dying.close()
        heir.close()
    result.figures["returned_after_seconds"] = (
        round(first_back - leased_at, 2) if first_back is not None else None)
    bad_completions = [s for s in completed.values() if s != 200]
    if bad_completions:
        result.problems.append(
            f"{len(bad_completions)} completion(s) refused: {bad_completions[:3]}")
    _drain(stack, result, ledger, 30)
    states = job_states(stack.database_url, sorted(ours))
    wrong = {i: s.attempt_count for i, s in states.items() if s.attempt_count != 2}
    result.figures["attempt_counts"] = sorted({s.attempt_count for s in states.values()})
    if wrong:
        job_id, attempts = next(iter(wrong.items()))
        result.problems.append(
            f"{len(wrong)} job(s) with attempt_count other than 2, e.g. {job_id}: {attempts}")
    returned = None if first_back is None else first_back - leased_at
    result.bound(returned, lease_seconds + 5.0, "the dead worker's jobs leased again")
    return result


# 3. PostgreSQL outage -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Health:
    code: int
    status: str | None
    detail: str  # the checks /health reported, or why there was no answer
    checks: dict[str, Any] = field(default_factory=dict)

    @property
    def pair(self) -> tuple[int, str | None]:
        return self.code, self.status

    def back(self, component: str) -> bool:
        """The component a scenario broke is reported ok again, and the service is not down.

        Not `status == "ok"`: that also needs the migrations current, which a migration file
        added to a working tree during a run would spoil without any fault of the service.
        """
        return self.code == 200 and self.status != "down" and self.checks.get(component) == "ok"


def _probe_health(client: httpx.Client, ledger: Ledger) -> Health:
    try:
        response = client.get("/health")
    except httpx.HTTPError as exc:
        ledger.record("health", NO_ANSWER)
        return Health(NO_ANSWER, None, type(exc).__name__)
    ledger.record("health", response.status_code, retry_after="retry-after" in response.headers,
                  body=response.text)
    try:
        body = response.json()
    except ValueError:
        return Health(response.status_code, None, response.text[:200])
    checks = body.get("checks")
    return Health(response.status_code, str(body.get("status")),
                  json.dumps(checks, sort_keys=True)[:300],
                  checks if isinstance(checks, dict) else {})


def _serving_again(ledger: Ledger, since: float) -> Callable[[], bool]:
    return lambda: ledger.first_success_after(since, "submit") is not None


def database_outage(stack: ChaosStack, sizes: Sizes) -> ScenarioResult:
    """PostgreSQL stopped under load: 503 with Retry-After, never 500; back within 5 s."""
    result = ScenarioResult(id=SCENARIO_IDS["database-outage"], name="database outage")
    ledger = Ledger()
    assert stack.token is not None and stack.pg is not None
    load = Load(stack.base_url, stack.token, ledger, echo_job("database-outage"),
                target=10**9, concurrency=sizes.load_concurrency, max_seconds=120,
                per_second=200).start()
    health_during: list[tuple[int, str | None]] = []
    last_health: Health | None = None
    with httpx.Client(base_url=stack.base_url, timeout=10.0) as client:
        try:
            if not _wait_for(lambda: ledger.accepted_count >= 50, 30):
                raise ChaosError("the load did not start")
            for _ in range(sizes.db_blips):
                stack.pg.pause()
                time.sleep(0.3)
                stack.pg.resume()
                _wait_for(_serving_again(ledger, time.monotonic()), 10)
            # Jobs that start before the outage and finish during it: their completion cannot
            # be written then, and must be once the database is back.
            sleepers = _start_sleepers(stack, ledger, sizes.db_outage_seconds / 3)
            stack.pg.pause()
            down_at = time.monotonic()
            while time.monotonic() - down_at < sizes.db_outage_seconds:
                health_during.append(_probe_health(client, ledger).pair)
                time.sleep(0.25)
            up_started = time.monotonic()
            stack.pg.resume()
            up_at = time.monotonic()
            health_ok_at: float | None = None
            while time.monotonic() - up_at < 30:
                last_health = _probe_health(client, ledger)
                if last_health.back("database"):
                    health_ok_at = time.monotonic()
                    break
                time.sleep(0.1)
            _wait_for(lambda: ledger.first_success_after(up_at, "submit") is not None, 30)
            time.sleep(1.0)
        finally:
            load.stop()
    _load_error(result, load)
    during = ledger.statuses(down_at, up_started, "submit")
    result.figures.update({
        "outage_seconds": round(up_started - down_at, 2),
        "restarts_before_outage": sizes.db_blips,
        "submit_answers_during_outage": dict(during),
        "health_during_outage": sorted({f"{c} {s}" for c, s in health_during}),
        "health_ok_after_seconds": (
            round(health_ok_at - up_at, 2) if health_ok_at is not None else None),
        "postgres_restart_seconds": round(up_at - up_started, 2),
        "last_health_after": last_health.detail if last_health is not None else None,
    })
    missing_retry = ledger.count_503_without_retry_after()
    if missing_retry:
        result.problems.append(f"{missing_retry} 503 answer(s) without Retry-After")
    unexpected = {c: n for c, n in during.items() if c not in (503, NO_ANSWER) and c >= 300}
    if unexpected:
        result.problems.append(f"submits during the outage answered {unexpected}, not 503")
    if during.get(503, 0) == 0:
        result.problems.append("no submit was answered 503 during the outage")
    not_down = [f"{c} {s}" for c, s in health_during if (c, s) != (503, "down")]
    if not_down:
        result.problems.append(f"/health during the outage answered {sorted(set(not_down))}")
    first = ledger.first_success_after(up_at, "submit")
    serving = None if first is None else first - up_at
    if health_ok_at is None:
        result.problems.append(
            "/health did not report the database ok within 30 s of its return")
    result.bound(serving, DB_RECOVERY_BOUND_SECONDS, "submits succeeded again")
    # Work done during the outage is recorded once the database is back, not redone a lease later.
    recorded = wait_terminal(stack.database_url, sorted(sleepers), SLEEPERS_RECORDED_SECONDS)
    states = job_states(stack.database_url, sorted(sleepers))
    unrecorded = sorted(i for i, s in states.items() if s.status != "succeeded")
    result.figures["finishing_during_outage"] = len(sleepers)
    result.figures["recorded_after_seconds"] = round(recorded, 2) if recorded is not None else None
    if unrecorded:
        result.problems.append(
            f"{len(unrecorded)} of {len(sleepers)} job(s) that finished during the outage are "
            f"still {states[unrecorded[0]].status} {SLEEPERS_RECORDED_SECONDS:.0f} s after it, "
            f"e.g. {unrecorded[0]}")
    _drain(stack, result, ledger, sizes.drain_timeout_seconds)
    after = job_states(stack.database_url, sorted(sleepers))
    rerun = sorted(i for i, s in after.items() if s.attempt_count > 1)
    if rerun:
        result.problems.append(
            f"{len(rerun)} job(s) that finished during the outage ran again, e.g. {rerun[0]}")
    return result


SLEEPERS = 20
#: Seconds after the database's return within which work finished during the outage is recorded.
SLEEPERS_RECORDED_SECONDS = 30.0


def _start_sleepers(stack: ChaosStack, ledger: Ledger, seconds: float) -> set[str]:
    """Submit sleep jobs and wait until some run; their ids (also in the ledger)."""
    assert stack.token is not None
    own = Ledger()
    submit_batch(stack.base_url, stack.token, own, [
        {"queue_name": QUEUE, "job_type": "sleep", "timeout_seconds": 60,
         "payload": {"seconds": seconds, "chaos": "database-outage"}} for _ in range(SLEEPERS)])
    ids = set(own.ids())
    ledger.accept(sorted(ids))
    if not _wait_for(lambda: bool(processing_ids(stack.database_url) & ids), 10):
        raise ChaosError("no sleep job started before the outage")
    return ids


# 4. Redis outage ----------------------------------------------------------------------------


def redis_outage(stack: ChaosStack, sizes: Sizes) -> ScenarioResult:
    """Redis stopped under load: submits and leases go on, /health degraded, limiter open."""
    result = ScenarioResult(id=SCENARIO_IDS["redis-outage"], name="redis outage")
    ledger = Ledger()
    assert stack.token is not None and stack.redis is not None
    load = Load(stack.base_url, stack.token, ledger, echo_job("redis-outage"),
                target=10**9, concurrency=sizes.load_concurrency, max_seconds=120,
                per_second=200).start()
    worker = WorkerClient(stack.base_url, stack.token, ledger)
    health_during: list[tuple[int, str | None]] = []
    last_health: Health | None = None
    leased_during = completed_during = 0
    external = Ledger()
    try:
        worker.register("chaos-redis", [QUEUE], 100)
        if not _wait_for(lambda: ledger.accepted_count >= 50, 30):
            raise ChaosError("the load did not start")
        stack.redis.pause()
        down_at = time.monotonic()
        with httpx.Client(base_url=stack.base_url, timeout=10.0) as client:
            while time.monotonic() - down_at < sizes.redis_outage_seconds:
                health_during.append(_probe_health(client, ledger).pair)
                submit_batch(stack.base_url, stack.token, external, [
                    {"queue_name": QUEUE, "job_type": EXTERNAL_JOB_TYPE,
                     "payload": {"chaos": "redis-outage"}}])
                for job in worker.lease(10) or []:
                    leased_during += 1
                    if worker.complete(str(job["id"]), {"ok": True}) == 200:
                        completed_during += 1
                time.sleep(0.2)
            up_at = time.monotonic()
            stack.redis.resume()
            health_ok_at: float | None = None
            while time.monotonic() - up_at < 30:
                last_health = _probe_health(client, ledger)
                if last_health.back("redis"):
                    health_ok_at = time.monotonic()
                    break
                time.sleep(0.1)
            limiter_back_at = _wait_rate_limit_headers(client, stack.token, up_at + 30)
        time.sleep(0.5)
    finally:
        load.stop()
        worker.close()
    _load_error(result, load)
    during = ledger.statuses(down_at, up_at, "submit")
    result.figures.update({
        "submit_answers_during_outage": dict(during),
        "health_during_outage": sorted({f"{c} {s}" for c, s in health_during}),
        "external_jobs_submitted_during_outage": external.accepted_count,
        "leased_during_outage": leased_during,
        "completed_during_outage": completed_during,
        "last_health_after": last_health.detail if last_health is not None else None,
        "rate_limit_back_after_seconds": (
            round(limiter_back_at - up_at, 2) if limiter_back_at is not None else None),
    })
    refused = {c: n for c, n in during.items() if not 200 <= c < 300}
    if refused:
        result.problems.append(f"submits during the outage answered {refused} (limiter fails open)")
    if during.total() == 0:
        result.problems.append("no submit was made during the outage")
    if leased_during == 0 or completed_during != leased_during:
        result.problems.append(
            f"leases during the outage: {leased_during} leased, {completed_during} completed")
    not_degraded = [f"{c} {s}" for c, s in health_during if (c, s) != (200, "degraded")]
    if not_degraded:
        result.problems.append(f"/health during the outage answered {sorted(set(not_degraded))}")
    if limiter_back_at is None:
        result.problems.append("no rate-limit headers within 30 s of Redis' return")
    healthy = None if health_ok_at is None else health_ok_at - up_at
    if limiter_back_at is not None and healthy is not None:
        healthy = max(healthy, limiter_back_at - up_at)
    result.bound(healthy, REDIS_RECOVERY_BOUND_SECONDS, "/health ok and rate limits back")
    for job_id in external.ids():
        ledger.accept([job_id])
    if sizes.redis_closed_mode:
        result.problems.extend(_closed_mode_refuses(stack, ledger, result.figures))
    _drain(stack, result, ledger, sizes.drain_timeout_seconds)
    return result


def _closed_mode_refuses(stack: ChaosStack, ledger: Ledger, figures: dict[str, Any]) -> list[str]:
    """RATE_LIMIT_FAILURE_MODE=closed: with Redis down the API refuses with 503 + Retry-After."""
    assert stack.redis is not None and stack.token is not None
    problems: list[str] = []
    unclean = stack.restart_server({"RATE_LIMIT_FAILURE_MODE": "closed"})
    if unclean:
        problems.append(unclean)
    answers: list[str] = []
    stack.redis.pause()
    try:
        with httpx.Client(base_url=stack.base_url, timeout=10.0,
                          headers={"Authorization": f"Bearer {stack.token}"}) as client:
            for n in range(5):
                try:
                    response = client.post("/api/v1/jobs", json=echo_job("redis-closed")(n))
                except httpx.HTTPError as exc:
                    answers.append(type(exc).__name__)
                    continue
                job_id = str(response.json()["data"]["id"]) if response.is_success else None
                ledger.record("submit-closed", response.status_code, job_id=job_id,
                              retry_after="retry-after" in response.headers, body=response.text)
                answers.append(f"{response.status_code}"
                               + (" Retry-After" if "retry-after" in response.headers else ""))
    finally:
        stack.redis.resume()
    figures["closed_mode_answers_during_outage"] = sorted(set(answers))
    if set(answers) != {"503 Retry-After"}:
        problems.append(f"closed failure mode answered {sorted(set(answers))}, not 503 Retry-After")
    unclean = stack.restart_server()
    if unclean:
        problems.append(unclean)
    return problems


def _wait_rate_limit_headers(client: httpx.Client, token: str, deadline: float) -> float | None:
    """When an authenticated request carries rate-limit headers again (the limiter is back)."""
    while time.monotonic() < deadline:
        try:
            response = client.get("/api/v1/jobs", params={"limit": 1},
                                  headers={"Authorization": f"Bearer {token}"})
        except httpx.HTTPError:
            response = None
        if response is not None and "x-ratelimit-limit" in response.headers:
            return time.monotonic()
        time.sleep(0.1)
    return None


# 5. Graceful shutdown -----------------------------------------------------------------------


def graceful_shutdown(stack: ChaosStack, sizes: Sizes) -> ScenarioResult:
    """SIGTERM under load: in-flight jobs finish within the grace, exit 0, nothing lost."""
    result = ScenarioResult(id=SCENARIO_IDS["graceful-shutdown"], name="graceful shutdown")
    ledger = Ledger()
    assert stack.token is not None and stack.server is not None
    grace = float(stack.settings()["SHUTDOWN_GRACE_SECONDS"])
    bodies = [{"queue_name": QUEUE, "job_type": "sleep", "timeout_seconds": 60,
               "payload": {"seconds": sizes.shutdown_sleep_seconds, "chaos": "shutdown", "n": n}}
              for n in range(sizes.shutdown_sleep_jobs)]
    load = Load(stack.base_url, stack.token, ledger, echo_job("shutdown"),
                target=10**9, concurrency=sizes.load_concurrency, max_seconds=120,
                per_second=200).start()
    try:
        submit_batch(stack.base_url, stack.token, ledger, bodies)
        sleepers = set(ledger.ids())
        if not _wait_for(lambda: len(processing_ids(stack.database_url) & sleepers) > 0, 30):
            raise ChaosError("no sleep job started")
        # Only this scenario's jobs: an earlier scenario may have left jobs stuck in processing.
        in_flight = processing_ids(stack.database_url) & set(ledger.ids())
        term_at = time.monotonic()
        status = stack.terminate_server(grace + 20)
        stopped_after = time.monotonic() - term_at
    finally:
        load.stop()
    _load_error(result, load)
    lingering = stack.server.group_alive()
    states = job_states(stack.database_url, sorted(in_flight))
    unfinished = sorted(i for i, s in states.items() if s.status != "succeeded")
    result.figures.update({
        "exit_status": status,
        "stopped_after_seconds": round(stopped_after, 2),
        "grace_seconds": grace,
        "in_flight_at_sigterm": len(in_flight),
        "in_flight_finished": len(in_flight) - len(unfinished),
    })
    if status != 0:
        result.problems.append(f"exit status {status} after SIGTERM, expected 0")
    if lingering:
        result.problems.append("server processes were left after the main process exited")
    if unfinished:
        result.problems.append(
            f"{len(unfinished)} job(s) in flight at SIGTERM not finished by the shutdown, "
            f"e.g. {unfinished[0]}: {states[unfinished[0]].status}")
    result.bound(stopped_after, grace + 5, "the server stopped")
    stack.kill_server()
    stack.start_server()
    _drain(stack, result, ledger, sizes.drain_timeout_seconds)
    reruns = [i for i in in_flight if i in states and states[i].attempt_count > 1]
    if reruns:
        result.problems.append(f"{len(reruns)} in-flight job(s) ran twice")
    result.problems.extend(_sigterm_during_startup(stack, grace, result.figures))
    return result


def _sigterm_during_startup(stack: ChaosStack, grace: float, figures: dict[str, Any]) -> list[str]:
    """SIGTERM once every server process was spawned, while they start (a deploy that stops a
    fresh container): graceful all the same, exit 0 within the grace period."""
    stack.terminate_server(grace + 20)
    stack.kill_server()
    server = stack.start_server(wait=False)
    spawned = f'"Spawning worker-{stack.workers} '.encode()
    if not _wait_for(lambda: spawned in server.stdout.read_bytes(), 60):
        raise ChaosError("the server did not spawn its processes")
    started = stack.workers_started()
    term_at = time.monotonic()
    status = stack.terminate_server(grace + 20)
    took = time.monotonic() - term_at
    figures["sigterm_during_startup"] = {
        "processes_started": started, "processes": stack.workers, "exit_status": status,
        "stopped_after_seconds": round(took, 2)}
    problems = []
    if status != 0 or took > grace + 5:
        shown = "no exit" if status is None else f"exit status {status}"
        problems.append(f"SIGTERM during start-up ({started} of {stack.workers} processes "
                        f"started, all spawned): {shown} after {took:.1f}s (grace {grace:g}s)")
    stack.kill_server()
    stack.start_server()
    return problems


# 6. Log file unwritable ---------------------------------------------------------------------


def _serves_with_log_file(stack: ChaosStack, log_file: str, ledger: Ledger) -> list[str]:
    """Restart the server with LOG_FILE_PATH=log_file; what went wrong (nothing: [])."""
    problems: list[str] = []
    try:
        unclean = stack.restart_server({"LOG_FILE_PATH": log_file, "LOG_LEVEL": "info"})
    except ChaosError as exc:
        return [f"LOG_FILE_PATH={log_file}: the server did not start ({exc})"]
    if unclean:
        problems.append(unclean)
    server = stack.server
    assert server is not None
    assert stack.token is not None
    with httpx.Client(base_url=stack.base_url, timeout=10.0,
                      headers={"Authorization": f"Bearer {stack.token}"}) as client:
        for n in range(5):
            body = echo_job("log-file")(n)
            try:
                response = client.post("/api/v1/jobs", json=body)
            except httpx.HTTPError as exc:
                problems.append(f"LOG_FILE_PATH={log_file}: submit failed ({type(exc).__name__})")
                break
            job_id = str(response.json()["data"]["id"]) if response.status_code == 201 else None
            ledger.record("submit", response.status_code, job_id=job_id, body=response.text)
            if response.status_code != 201:
                problems.append(f"LOG_FILE_PATH={log_file}: submit answered {response.status_code}")
    if not _wait_for(lambda: b'"request"' in server.stdout.read_bytes(), 10, 0.2):
        problems.append(f"LOG_FILE_PATH={log_file}: no request log line on stdout")
    return problems


def log_file_unwritable(stack: ChaosStack, sizes: Sizes) -> ScenarioResult:
    """LOG_FILE_PATH on a full disk, a directory, or under a file: serving and stdout go on."""
    result = ScenarioResult(id=SCENARIO_IDS["log-unwritable"], name="log file unwritable")
    ledger = Ledger()
    started = time.monotonic()
    blocker = stack.root / "not-a-directory"
    blocker.write_text("a file where the log directory should be\n")
    as_directory = stack.root / "log-is-a-directory"
    as_directory.mkdir(exist_ok=True)
    cases = {"disk full": "/dev/full", "a directory": str(as_directory),
             "under a regular file": str(blocker / "server.log")}
    served = []
    for label, path in cases.items():
        if label not in sizes.log_cases:
            continue
        problems = _serves_with_log_file(stack, path, ledger)
        result.problems.extend(problems)
        if not problems:
            served.append(label)
    result.figures["served_with_log_file"] = served
    unclean = stack.restart_server()
    if unclean:
        result.problems.append(unclean)
    _drain(stack, result, ledger, 60)
    result.recovery_seconds = round(time.monotonic() - started, 2)
    return result


# 7. Backup and restore ----------------------------------------------------------------------


def _run_tool(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)


def backup_restore(stack: ChaosStack, sizes: Sizes) -> ScenarioResult:
    """pg_dump under load, pg_restore into a fresh database: every job accepted before is there."""
    from reference_server.devservices import postgres_bin_dir

    result = ScenarioResult(id=SCENARIO_IDS["backup-restore"], name="backup and restore")
    ledger = Ledger()
    assert stack.token is not None and stack.pg is not None
    bin_dir = postgres_bin_dir()
    work = Path(tempfile.mkdtemp(prefix="taskforge-chaos-dump-"))
    dump = work / "taskforge.dump"
    restored_db = f"taskforge_restore_{int(time.time())}"
    load = Load(stack.base_url, stack.token, ledger, echo_job("backup"),
                target=sizes.backup_jobs, concurrency=sizes.load_concurrency,
                max_seconds=300).start()
    try:
        if not _wait_for(lambda: ledger.accepted_count >= sizes.backup_jobs // 2, 120):
            raise ChaosError("the load did not reach half its jobs")
        dump_started = time.monotonic()
        before = ledger.accepted_before(dump_started)
        dumped = _run_tool([str(bin_dir / "pg_dump"), "-Fc", "-f", str(dump),
                            "-d", stack.database_url])
        dump_seconds = time.monotonic() - dump_started
        load.join(300)
    finally:
        load.stop()
    _load_error(result, load)
    try:
        if dumped.returncode != 0:
            result.problems.append(f"pg_dump failed: {dumped.stderr.strip()[-200:]}")
            return result
        with psycopg.connect(stack.pg.url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE DATABASE "{restored_db}"')  # our own generated name
        restore_started = time.monotonic()
        restored_url = stack.pg.url_for(restored_db)
        restored = _run_tool([str(bin_dir / "pg_restore"), "--no-owner", "--exit-on-error",
                              "-d", restored_url, str(dump)])
        restore_seconds = time.monotonic() - restore_started
        if restored.returncode != 0:
            result.problems.append(f"pg_restore failed: {restored.stderr.strip()[-200:]}")
            return result
        with psycopg.connect(restored_url, connect_timeout=10) as conn:
            present = {row[0] for row in conn.execute(QUERIES["existing_ids"], {"ids": before})}
        missing = sorted(set(before) - present)
        result.figures.update({
            "accepted_before_dump": len(before),
            "in_restored_database": len(present),
            "missing_from_restore": len(missing),
            "dump_seconds": round(dump_seconds, 2),
            "restore_seconds": round(restore_seconds, 2),
            "dump_bytes": dump.stat().st_size,
        })
        if missing:
            result.problems.append(
                f"{len(missing)} job(s) accepted before the dump are not in the restore, "
                f"e.g. {missing[0]}")
        result.recovery_seconds = round(restore_seconds, 2)
        _drain(stack, result, ledger, sizes.drain_timeout_seconds)
        result.lost += len(missing)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        with psycopg.connect(stack.pg.url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{restored_db}" WITH (FORCE)')
    return result
