"""The built-in job types and the pool that runs them inside the server process.

`test_job`, `echo`, `sleep` and `fail` let a deployment be smoke-tested with no external worker.
The pool serves every organisation: it leases built-in jobs in batches, runs them concurrently, and
acknowledges finished ones together (group commit), so no-op jobs cost a fraction of a round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from reference_server import metrics

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping
    from uuid import UUID

    from reference_server.engine import Engine
    from reference_server.models import Job

#: Upper bound of a `sleep` job, whatever its payload says (the job's timeout also applies).
MAX_SLEEP_SECONDS = 300.0
#: An idle runner looks for work this often even without a notification (a safety net only).
IDLE_RECHECK_SECONDS = 5.0
#: ... and this often while the listener is down.
DEGRADED_RECHECK_SECONDS = 0.5
#: Bound on the final acknowledgement flush at shutdown.
FINAL_FLUSH_TIMEOUT_SECONDS = 10.0

log = logging.getLogger(__name__)


class JobFailed(Exception):
    """A built-in job's own failure; `retryable` False sends it straight to `dead`."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


async def run_test_job(payload: Mapping[str, Any]) -> Any:
    return {"ok": True, "job_type": "test_job", "received": dict(payload)}


async def run_echo(payload: Mapping[str, Any]) -> Any:
    return dict(payload)


async def run_sleep(payload: Mapping[str, Any]) -> Any:
    seconds = payload.get("seconds", 1)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not math.isfinite(
        seconds
    ):
        raise JobFailed("payload.seconds must be a number", retryable=False)
    if not 0 <= seconds <= MAX_SLEEP_SECONDS:
        raise JobFailed(f"payload.seconds must be within 0..{MAX_SLEEP_SECONDS:g}", retryable=False)
    await asyncio.sleep(seconds)
    return {"ok": True, "slept_seconds": seconds}


async def run_fail(payload: Mapping[str, Any]) -> Any:
    message = payload.get("message", "failed on purpose (job type 'fail')")
    raise JobFailed(str(message), retryable=payload.get("retryable", True) is not False)


HANDLERS: dict[str, Callable[[Mapping[str, Any]], Awaitable[Any]]] = {
    "test_job": run_test_job,
    "echo": run_echo,
    "sleep": run_sleep,
    "fail": run_fail,
}
#: Must match the list in migration 20261128000002 (index predicate and wake-up key).
BUILTIN_JOB_TYPES = frozenset(HANDLERS)


@dataclass(slots=True)
class Outcome:
    job: Job
    duration: float
    output_json: str | None = None
    error: str | None = None
    retryable: bool = True


async def execute(job: Job) -> Outcome:
    """Run one built-in job under its timeout; any failure becomes an Outcome, not a raise."""
    started = time.perf_counter()

    def failed(message: str, retryable: bool) -> Outcome:
        return Outcome(job, time.perf_counter() - started, error=message, retryable=retryable)

    handler = HANDLERS.get(job.job_type)
    if handler is None:
        return failed(f"no built-in handler for job type {job.job_type!r}", False)
    try:
        output = await asyncio.wait_for(handler(job.payload), timeout=job.timeout_seconds)
        output_json = orjson.dumps(output).decode()
    except TimeoutError:
        return failed(f"timed out after {job.timeout_seconds} s", True)
    except JobFailed as exc:
        return failed(str(exc), exc.retryable)
    except TypeError as exc:  # output that is not JSON
        return failed(f"output is not JSON: {exc}", False)
    except Exception as exc:
        return failed(f"{type(exc).__name__}: {exc}", True)
    return Outcome(job, time.perf_counter() - started, output_json=output_json)


class BuiltinPool:
    """`runners` lease loops of up to `batch_size` jobs each, and one acknowledgement flusher."""

    def __init__(self, engine: Engine, *, runners: int, batch_size: int) -> None:
        self._engine = engine
        self._runners = max(1, runners)
        self._batch_size = max(1, batch_size)
        self._runner_tasks: list[asyncio.Task[None]] = []
        self._flusher_task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._closing = False
        self._results: list[Outcome] = []
        self._results_ready = asyncio.Event()
        self._in_flight: dict[UUID, Job] = {}

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def start(self) -> None:
        if self._runner_tasks:
            return
        self._stopping.clear()
        self._closing = False
        self._flusher_task = asyncio.create_task(self._flusher(), name="taskforge-builtin-acks")
        self._runner_tasks = [
            asyncio.create_task(self._runner(), name=f"taskforge-builtin-{n}")
            for n in range(self._runners)
        ]

    async def stop(self, grace_seconds: float) -> None:
        """Stop leasing; let in-flight jobs finish within the grace; hand the rest back."""
        if not self._runner_tasks:
            return
        self._stopping.set()
        self._engine.notifier.wake_all()
        _done, unfinished = await asyncio.wait(self._runner_tasks, timeout=max(0.0, grace_seconds))
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*self._runner_tasks, return_exceptions=True)
        self._runner_tasks = []
        self._closing = True
        self._results_ready.set()
        if self._flusher_task is not None:
            try:
                await asyncio.wait_for(self._flusher_task, FINAL_FLUSH_TIMEOUT_SECONDS)
            except (TimeoutError, asyncio.CancelledError):
                log.warning("built-in acknowledgements did not flush in time")
            self._flusher_task = None
        if self._in_flight:
            ids = list(self._in_flight)
            self._in_flight.clear()
            try:
                await self._engine.release_jobs(ids, self._engine.builtin_worker_id)
            except Exception:
                log.exception("could not release %d built-in leases; the reaper will", len(ids))

    async def _runner(self) -> None:
        wake = asyncio.Event()
        with self._engine.notifier.watch_builtin(wake):
            while not self._stopping.is_set():
                wake.clear()
                try:
                    jobs = await self._engine.lease_builtin(self._batch_size)
                except Exception:
                    log.warning("built-in lease failed; retrying", exc_info=True)
                    jobs = []
                if self._stopping.is_set() and not jobs:
                    return
                if not jobs:
                    recheck = (
                        IDLE_RECHECK_SECONDS
                        if self._engine.notifier.listening
                        else DEGRADED_RECHECK_SECONDS
                    )
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), recheck)
                    continue
                for job in jobs:
                    self._in_flight[job.id] = job
                await asyncio.gather(*(self._run(job) for job in jobs))

    async def _run(self, job: Job) -> None:
        outcome = await execute(job)
        self._results.append(outcome)
        self._results_ready.set()
        del self._in_flight[job.id]

    async def _flusher(self) -> None:
        while True:
            await self._results_ready.wait()
            self._results_ready.clear()
            batch, self._results = self._results, []
            if batch:
                await self._flush(batch)
            if self._closing and not self._results:
                return

    async def _flush(self, batch: list[Outcome]) -> None:
        engine = self._engine
        succeeded = [o for o in batch if o.error is None]
        if succeeded:
            try:
                acked = await engine.complete_builtin(
                    [(o.job.id, o.output_json or "null") for o in succeeded]
                )
            except Exception:
                log.exception("could not acknowledge %d built-in jobs", len(succeeded))
                acked = set()
            counts: Counter[tuple[str, str]] = Counter()
            for o in succeeded:
                if o.job.id in acked:
                    counts[(o.job.queue_name, o.job.job_type)] += 1
                    histogram = metrics.JOB_PROCESSING_DURATION
                    histogram.labels(o.job.queue_name, o.job.job_type).observe(o.duration)
            for (queue, job_type), n in counts.items():
                metrics.JOB_PROCESSED.labels(queue, job_type, "succeeded").inc(n)
        for o in batch:
            if o.error is None:
                continue
            try:
                await engine.fail_leased(
                    o.job.id,
                    org_id=None,
                    worker_id=engine.builtin_worker_id,
                    error_message=o.error,
                    retryable=o.retryable,
                )
            except Exception:
                log.exception("could not record the failure of built-in job %s", o.job.id)
