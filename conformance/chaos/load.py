"""Load for the scenarios: concurrent HTTP submitters in a thread of their own, and a worker client.

The submitters keep going through outages (a refused connection or a 503 is recorded and retried
after a short pause with a new job), so the ledger sees exactly what a client of the service sees.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from conformance.chaos.ledger import NO_ANSWER, Ledger

#: A client's pause after no answer or a 503, so a dead server is not spun against.
BACKOFF_SECONDS = 0.1
REQUEST_TIMEOUT_SECONDS = 10.0


@dataclass
class Load:
    """`concurrency` submitters posting jobs until `target` are accepted, stop() or the deadline."""

    base_url: str
    token: str
    ledger: Ledger
    job: Callable[[int], dict[str, Any]]  # the request body of the n-th job
    target: int
    concurrency: int = 16
    max_seconds: float = 300.0
    per_second: float | None = None  # a pace for all submitters together, None: as fast as served
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _counter: itertools.count[int] = field(default_factory=itertools.count)
    submitted: int = 0
    error: BaseException | None = None

    def start(self) -> Load:
        self._thread = threading.Thread(target=self._main, name="chaos-load", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self.join(timeout)

    def join(self, timeout: float) -> bool:
        """Wait for the load to end by itself; True when it has."""
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # reported by the scenario, not lost in a thread
            self.error = exc

    async def _run(self) -> None:
        limits = httpx.Limits(max_connections=self.concurrency,
                              max_keepalive_connections=self.concurrency)
        headers = {"Authorization": f"Bearer {self.token}"}
        deadline = time.monotonic() + self.max_seconds
        async with httpx.AsyncClient(base_url=self.base_url, headers=headers, limits=limits,
                                     timeout=REQUEST_TIMEOUT_SECONDS) as client:
            await asyncio.gather(*(self._submitter(client, deadline)
                                   for _ in range(self.concurrency)))

    def _done(self, deadline: float) -> bool:
        return (self._stop.is_set() or self.ledger.accepted_count >= self.target
                or time.monotonic() >= deadline)

    async def _submitter(self, client: httpx.AsyncClient, deadline: float) -> None:
        interval = self.concurrency / self.per_second if self.per_second else 0.0
        while not self._done(deadline):
            n = next(self._counter)
            self.submitted += 1
            started = time.monotonic()
            status = await submit_one(client, self.ledger, self.job(n))
            if status == NO_ANSWER or status >= 500:
                await asyncio.sleep(BACKOFF_SECONDS)
            elif interval:
                await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))


async def submit_one(client: httpx.AsyncClient, ledger: Ledger, body: dict[str, Any]) -> int:
    """POST one job; record the answer (and the id on a 2xx); the status, NO_ANSWER for none."""
    try:
        response = await client.post("/api/v1/jobs", json=body)
    except httpx.HTTPError:
        ledger.record("submit", NO_ANSWER)
        return NO_ANSWER
    job_id: str | None = None
    if 200 <= response.status_code < 300:
        job_id = str(response.json()["data"]["id"])
    ledger.record("submit", response.status_code, job_id=job_id,
                  retry_after="retry-after" in response.headers, body=response.text)
    return response.status_code


@dataclass
class WorkerClient:
    """The HTTP worker protocol (register, lease, complete), synchronously, for one worker."""

    base_url: str
    token: str
    ledger: Ledger | None = None
    worker_id: str | None = None
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.base_url, timeout=REQUEST_TIMEOUT_SECONDS,
                                   headers={"Authorization": f"Bearer {self.token}"})

    def close(self) -> None:
        self.client.close()

    def _post(self, what: str, path: str, body: dict[str, Any]) -> httpx.Response | None:
        try:
            response = self.client.post(path, json=body)
        except httpx.HTTPError:
            if self.ledger is not None:
                self.ledger.record(what, NO_ANSWER)
            return None
        if self.ledger is not None:
            self.ledger.record(what, response.status_code, body=response.text,
                               retry_after="retry-after" in response.headers)
        return response

    def register(self, name: str, queues: list[str], max_concurrent_jobs: int) -> str:
        response = self._post("register", "/api/v1/workers", {
            "name": name, "queues": queues, "max_concurrent_jobs": max_concurrent_jobs})
        if response is None or response.status_code != 201:
            code = response.status_code if response is not None else NO_ANSWER
            raise RuntimeError(f"worker registration answered {code}")
        self.worker_id = str(response.json()["data"]["id"])
        return self.worker_id

    def lease(self, max_jobs: int, *, lease_seconds: int | None = None,
              wait_seconds: float = 0) -> list[dict[str, Any]] | None:
        """The leased jobs; None when the service did not answer with a 2xx."""
        body: dict[str, Any] = {"max_jobs": max_jobs, "wait_seconds": wait_seconds}
        if lease_seconds is not None:
            body["lease_seconds"] = lease_seconds
        response = self._post("lease", f"/api/v1/workers/{self.worker_id}/lease", body)
        if response is None or not 200 <= response.status_code < 300:
            return None
        jobs: list[dict[str, Any]] = response.json()["data"]["jobs"]
        return jobs

    def complete(self, job_id: str, output: dict[str, Any]) -> int:
        response = self._post("complete", f"/api/v1/jobs/{job_id}/complete",
                              {"worker_id": self.worker_id, "output": output})
        return response.status_code if response is not None else NO_ANSWER


def submit_batch(base_url: str, token: str, ledger: Ledger, bodies: list[dict[str, Any]]) -> None:
    """Submit jobs in batches of up to 1000 (set-up, not load); every id into the ledger."""
    with httpx.Client(base_url=base_url, timeout=60.0,
                      headers={"Authorization": f"Bearer {token}"}) as client:
        for start in range(0, len(bodies), 1000):
            response = client.post("/api/v1/jobs/batch", json={"jobs": bodies[start:start + 1000]})
            ledger.record("batch", response.status_code, body=response.text)
            if response.status_code != 201:
                raise RuntimeError(f"batch submit answered {response.status_code}")
            ledger.accept([str(i) for i in response.json()["data"]["ids"]])
