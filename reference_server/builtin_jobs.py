"""The built-in job types and the pool that runs them inside the server process.

`test_job`, `echo`, `sleep` and `fail` let a deployment be smoke-tested with no external worker.
The pool serves every organisation. Instant jobs run inside the transaction that takes them and
commit as succeeded with it (one row version, one commit per batch); waiting ones (sleep) are leased
by that transaction, run as tasks and are acknowledged together (group commit).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from reference_server import job_metrics
from reference_server.exceptions import Conflict, NotFound

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, Sequence
    from uuid import UUID

    from reference_server.models import LeasedJob
    from reference_server.notifications import Notifier

#: Upper bound of a `sleep` job, whatever its payload says (the job's timeout also applies).
MAX_SLEEP_SECONDS = 300.0
#: An idle runner looks for work this often even without a notification (a safety net only).
IDLE_RECHECK_SECONDS = 5.0
#: ... and this often while the listener is down.
DEGRADED_RECHECK_SECONDS = 0.5
#: Share of the pool's unacknowledged leases one organisation may hold (its sleeps, say): the
#: rest stays for the others. Two batches of 1000 sleeps from one organisation had taken all of
#: it, and another's echo waited 22 s.
FAIR_SHARE = 0.5
#: Share of each claim kept for organisations the last claim did not see.
NEWCOMER_SHARE = 0.1
#: Bound on the final acknowledgement flush at shutdown.
FINAL_FLUSH_TIMEOUT_SECONDS = 10.0
#: How often the pool renews its leases (the store's lease is several times longer).
RENEW_SECONDS = 2.0

log = logging.getLogger(__name__)
#: How long a finished job's acknowledgement is retried while the database is away. A job whose
#: ack never lands runs again after its lease; retrying spares that re-run for short outages.
ACK_RETRY_SECONDS = 60.0
ACK_RETRY_MAX_DELAY = 2.0


async def _retrying(what: str, call: Callable[[], Awaitable[Any]]) -> Any:
    """Run call, retrying with capped exponential backoff until ACK_RETRY_SECONDS have passed.

    Conflict and NotFound are answers, not outages: they are raised at once.
    """
    deadline = time.monotonic() + ACK_RETRY_SECONDS
    delay = 0.1
    while True:
        try:
            return await call()
        except (Conflict, NotFound):
            raise
        except Exception:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("could not %s yet; retrying in %.1fs", what, delay)
            await asyncio.sleep(delay)
            delay = min(ACK_RETRY_MAX_DELAY, delay * 2)


class JobFailed(Exception):
    """A built-in job's own failure; `retryable` False sends it straight to `dead`."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


def run_test_job(payload: Mapping[str, Any]) -> Any:
    return {"ok": True, "job_type": "test_job", "received": dict(payload)}


def run_echo(payload: Mapping[str, Any]) -> Any:
    return dict(payload)


def run_fail(payload: Mapping[str, Any]) -> Any:
    message = payload.get("message", "failed on purpose (job type 'fail')")
    raise JobFailed(str(message), retryable=payload.get("retryable", True) is not False)


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


#: Handlers that return at once run inline, without a task or a timer each: no-op jobs then cost
#: almost nothing beyond their share of the batched lease and acknowledgement.
INSTANT_HANDLERS: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "test_job": run_test_job,
    "echo": run_echo,
    "fail": run_fail,
}
#: Handlers that wait run as tasks, each under its job's timeout_seconds.
WAITING_HANDLERS: dict[str, Callable[[Mapping[str, Any]], Awaitable[Any]]] = {
    "sleep": run_sleep,
}
#: Must match the list in migration 20261128000002 (index predicate and wake-up key).
BUILTIN_JOB_TYPES = frozenset(INSTANT_HANDLERS) | frozenset(WAITING_HANDLERS)


@dataclass(slots=True)
class Outcome:
    job: LeasedJob
    duration: float
    output_json: str | None = None
    error: str | None = None
    retryable: bool = True


def _failure(job: LeasedJob, started: float, exc: BaseException) -> Outcome:
    duration = time.perf_counter() - started
    if isinstance(exc, TimeoutError):
        message, retryable = f"timed out after {job.timeout_seconds} s", True
    elif isinstance(exc, JobFailed):
        message, retryable = str(exc), exc.retryable
    elif isinstance(exc, TypeError):  # output that is not JSON
        message, retryable = f"output is not JSON: {exc}", False
    else:
        message, retryable = f"{type(exc).__name__}: {exc}", True
    return Outcome(job, duration, error=message, retryable=retryable)


def execute_instant(job: LeasedJob) -> Outcome | None:
    """Run a job of an instant type; None when its type waits (use `execute`)."""
    handler = INSTANT_HANDLERS.get(job.job_type)
    if handler is None:
        return None
    started = time.perf_counter()
    try:
        output_json = orjson.dumps(handler(job.payload)).decode()
    except Exception as exc:
        return _failure(job, started, exc)
    return Outcome(job, time.perf_counter() - started, output_json=output_json)


async def execute(job: LeasedJob) -> Outcome:
    """Run one built-in job under its timeout; any failure becomes an Outcome, not a raise."""
    instant = execute_instant(job)
    if instant is not None:
        return instant
    started = time.perf_counter()
    handler = WAITING_HANDLERS.get(job.job_type)
    if handler is None:
        error = f"no built-in handler for job type {job.job_type!r}"
        return Outcome(job, 0.0, error=error, retryable=False)
    try:
        output = await asyncio.wait_for(handler(job.payload), timeout=job.timeout_seconds)
        output_json = orjson.dumps(output).decode()
    except Exception as exc:
        return _failure(job, started, exc)
    return Outcome(job, time.perf_counter() - started, output_json=output_json)


def _run_instant(jobs: list[LeasedJob], *, settled: list[Outcome | None]) -> list[str | None]:
    """Inside the lease transaction: instant jobs run now and commit as succeeded with it; the rest
    (waiting types, failures to record) get None and are leased as usual."""
    settled.clear()
    settled.extend(execute_instant(job) for job in jobs)
    return [o.output_json if o is not None and o.error is None else None for o in settled]


def _count_successes(outcomes: list[Outcome]) -> None:
    durations: defaultdict[tuple[str, str], list[float]] = defaultdict(list)
    for o in outcomes:
        durations[(o.job.queue_name, o.job.job_type)].append(o.duration)
    for (queue, job_type), values in durations.items():
        job_metrics.processed(queue, job_type, "succeeded").inc(len(values))
        job_metrics.observe_all(job_metrics.processing_duration(queue, job_type), values)


class BuiltinStore(Protocol):
    """What the pool needs of the job store (the Engine is one), under the pool's own lessee id."""

    async def run_builtin(
        self,
        max_jobs: int,
        run: Callable[[list[LeasedJob]], list[str | None]],
        *,
        per_organization: int | None = None,
        skip: Sequence[UUID] = (),
    ) -> list[LeasedJob]:
        """Take ready jobs in one transaction, organisations in turn (at most `per_organization`
        each, none of `skip`); `run` gives, per job, its output (it ran and succeeded) or None
        (leased to run later)."""
        ...

    async def complete_builtin(self, results: Sequence[tuple[UUID, str]]) -> set[UUID]:
        """Record many successes (job id, output JSON); the ids still leased, now succeeded."""
        ...

    async def fail_builtin(self, job_id: UUID, *, error_message: str, retryable: bool) -> object:
        """Record a failure (Conflict or NotFound when the lease was lost meanwhile)."""
        ...

    async def release_builtin(self, job_ids: Sequence[UUID]) -> int:
        """Hand unfinished leases back (shutdown)."""
        ...

    async def renew_builtin(self) -> int:
        """Renew every lease the pool holds (short leases, renewed while their jobs run)."""
        ...


class BuiltinPool:
    """`runners` lease loops of up to `batch_size` jobs each, and one acknowledgement flusher.

    Instant jobs run inline in the runner; waiting ones (sleep) run as tasks so a long job never
    holds a runner. At most runners * batch_size leases are unacknowledged at once (backpressure).
    """

    def __init__(
        self,
        store: BuiltinStore,
        notifier: Notifier,
        *,
        runners: int,
        batch_size: int,
        renew_seconds: float = RENEW_SECONDS,
    ) -> None:
        self._store = store
        self._renew_seconds = renew_seconds
        self._notifier = notifier
        self._runners = max(1, runners)
        self._batch_size = max(1, batch_size)
        self._capacity = self._runners * self._batch_size
        self._runner_tasks: list[asyncio.Task[None]] = []
        self._job_tasks: set[asyncio.Task[None]] = set()
        self._flusher_task: asyncio.Task[None] | None = None
        self._renewer_task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._closing = False
        self._results: list[Outcome] = []
        self._results_ready = asyncio.Event()
        self._capacity_freed = asyncio.Event()
        #: Leased and not yet acknowledged (running, or finished and waiting for the flusher).
        self._unacked = 0
        #: ... per organisation, and how many one may hold (FAIR_SHARE).
        self._held: Counter[Any] = Counter()
        self._share = max(1, int(self._capacity * FAIR_SHARE))
        #: Organisations in the last claim: each claim splits itself among that many and more.
        self._seen_last = 1
        #: What the claims in flight may still give one organisation.
        self._claiming = 0
        #: Waiting jobs still running: what a shutdown hands back when the grace runs out.
        self._in_flight: dict[UUID, LeasedJob] = {}
        #: Runners waiting for work, each woken alone: one notification, one lease query.
        self._idle: deque[asyncio.Event] = deque()
        #: Work was announced while no runner was idle: the next to go idle looks again first.
        self._missed_wake = False
        self._subscription: contextlib.ExitStack | None = None

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def start(self) -> None:
        if self._runner_tasks:
            return
        self._stopping.clear()
        self._closing = False
        self._subscription = contextlib.ExitStack()
        self._subscription.enter_context(self._notifier.on_builtin_work(self.wake_one))
        self._flusher_task = asyncio.create_task(self._flusher(), name="taskforge-builtin-acks")
        self._renewer_task = asyncio.create_task(self._renewer(), name="taskforge-builtin-renew")
        self._runner_tasks = [
            asyncio.create_task(self._runner(), name=f"taskforge-builtin-{n}")
            for n in range(self._runners)
        ]

    async def stop(self, grace_seconds: float) -> None:
        """Stop leasing; let in-flight jobs finish within the grace; hand the rest back."""
        if not self._runner_tasks:
            return
        self._stopping.set()
        self._capacity_freed.set()
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None
        self._wake_all()
        await asyncio.gather(*self._runner_tasks, return_exceptions=True)
        self._runner_tasks = []
        if self._job_tasks:
            _done, unfinished = await asyncio.wait(
                set(self._job_tasks), timeout=max(0.0, grace_seconds)
            )
            for task in unfinished:
                task.cancel()
            await asyncio.gather(*unfinished, return_exceptions=True)
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
                await self._store.release_builtin(ids)
            except Exception:
                log.exception("could not release %d built-in leases; the reaper will", len(ids))
        if self._renewer_task is not None:
            self._renewer_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer_task
            self._renewer_task = None
        self._unacked = 0
        self._held.clear()

    async def _renewer(self) -> None:
        """The pool's heartbeat, until stop() has handed back what it held."""
        while True:
            await asyncio.sleep(self._renew_seconds)
            try:
                await self._store.renew_builtin()
            except Exception:
                log.warning("could not renew the built-in leases; trying again", exc_info=True)

    def _recheck_seconds(self) -> float:
        return IDLE_RECHECK_SECONDS if self._notifier.listening else DEGRADED_RECHECK_SECONDS

    def wake_one(self) -> None:
        """Work is ready: wake one idle runner (it brings a colleague if it finds a full batch)."""
        while self._idle:
            event = self._idle.popleft()
            if not event.is_set():
                event.set()
                return
        self._missed_wake = True

    def _wake_all(self) -> None:
        while self._idle:
            self._idle.popleft().set()
        self._missed_wake = True

    async def _runner(self) -> None:
        while not self._stopping.is_set():
            free = min(self._batch_size, self._capacity - self._unacked)
            if free <= 0:
                self._capacity_freed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._capacity_freed.wait(), self._recheck_seconds())
                continue
            settled: list[Outcome | None] = []
            kept = max(1, int(free * NEWCOMER_SHARE)) if free > 1 else 0
            each = max(1, (free - kept) // self._seen_last)
            # While leases are held (sleeps), no organisation past its share, counting what claims
            # in flight may still give it (runners claim at once): the pool never fills up with
            # one's leases. Instant jobs hold none: their claims stay whole.
            full: list[Any] = []
            if self._held:
                full = [o for o, n in self._held.items() if n + self._claiming >= self._share]
                most = max(
                    (n for n in self._held.values() if n + self._claiming < self._share),
                    default=0,
                )
                each = max(1, min(each, self._share - most - self._claiming))
            self._claiming += each
            try:
                jobs = await self._store.run_builtin(
                    free,
                    partial(_run_instant, settled=settled),
                    per_organization=each,
                    skip=full,
                )
            except Exception:
                log.warning("built-in lease failed; retrying", exc_info=True)
                jobs = []
            finally:
                self._claiming -= each
            if not jobs:
                if self._stopping.is_set():
                    return
                await self._idle_until_woken()
                continue
            self._seen_last = max(1, len({job.organization_id for job in jobs}))
            if len(jobs) == free:
                self.wake_one()  # likely more ready: let another runner lease alongside
            succeeded: list[Outcome] = []
            for job, outcome in zip(jobs, settled, strict=True):
                if outcome is None:
                    self._unacked += 1
                    self._held[job.organization_id] += 1
                    self._in_flight[job.id] = job
                    task = asyncio.create_task(self._run(job), name=f"taskforge-job-{job.id}")
                    self._job_tasks.add(task)
                    task.add_done_callback(self._job_tasks.discard)
                elif outcome.error is None:
                    succeeded.append(outcome)
                else:
                    self._unacked += 1
                    self._held[job.organization_id] += 1
                    self._results.append(outcome)
                    self._results_ready.set()
            _count_successes(succeeded)

    async def _idle_until_woken(self) -> None:
        if self._missed_wake:
            self._missed_wake = False
            return
        event = asyncio.Event()
        self._idle.append(event)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), self._recheck_seconds())
        finally:
            with contextlib.suppress(ValueError):
                self._idle.remove(event)

    async def _run(self, job: LeasedJob) -> None:
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
                try:
                    await self._flush(batch)
                finally:
                    self._unacked = max(0, self._unacked - len(batch))
                    for outcome in batch:
                        self._held[outcome.job.organization_id] -= 1
                    self._held = +self._held  # drops the organisations at zero
                    self._capacity_freed.set()
            if self._closing and not self._results:
                return

    async def _flush(self, batch: list[Outcome]) -> None:
        store = self._store
        succeeded = [o for o in batch if o.error is None]
        if succeeded:
            try:
                acked = await _retrying(
                    f"acknowledge {len(succeeded)} built-in jobs",
                    partial(store.complete_builtin,
                            [(o.job.id, o.output_json or "null") for o in succeeded]),
                )
            except Exception:
                log.exception("could not acknowledge %d built-in jobs", len(succeeded))
                acked = set()
            _count_successes([o for o in succeeded if o.job.id in acked])
        for o in batch:
            if o.error is None:
                continue
            try:
                await _retrying(
                    f"record the failure of built-in job {o.job.id}",
                    partial(store.fail_builtin, o.job.id, error_message=o.error,
                            retryable=o.retryable),
                )
            except (Conflict, NotFound):
                # The lease ran out meanwhile and the reaper already moved the job on.
                log.warning("built-in job %s was no longer leased to this pool", o.job.id)
            except Exception:
                log.exception("could not record the failure of built-in job %s", o.job.id)
