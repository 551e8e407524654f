"""Locust users for a TaskForge deployment: submitters, pollers, external workers, health probes.

The runner (loadtests/runner.py) passes everything through the environment, so that the master and
every worker process import the same configuration:
TASKFORGE_API_KEY, TASKFORGE_CA_BUNDLE, TASKFORGE_LOAD_MIX (JSON weights), TASKFORGE_LOAD_STAGES
(JSON list of stages), TASKFORGE_LOAD_QUEUE (the queue external workers serve).
"""

from __future__ import annotations

import json
import os
import random
import ssl
import uuid
from collections import deque
from typing import Any

from locust import LoadTestShape, between, task
from locust.contrib.fasthttp import FastHttpUser

API = "/api/v1"
MIX: dict[str, int] = json.loads(os.environ.get("TASKFORGE_LOAD_MIX", "{}")) or {
    "submitter": 4, "poller": 3, "worker": 2, "health": 1,
}
STAGES: list[dict[str, float]] = json.loads(os.environ.get("TASKFORGE_LOAD_STAGES", "[]"))
EXTERNAL_QUEUE = os.environ.get("TASKFORGE_LOAD_QUEUE", "load")
#: Job ids this process submitted, for the pollers; bounded so a soak does not grow it.
RECENT_JOBS: deque[str] = deque(maxlen=5000)


def _ssl_context() -> ssl.SSLContext:
    cafile = os.environ.get("TASKFORGE_CA_BUNDLE") or None
    return ssl.create_default_context(cafile=cafile)


class TaskForgeUser(FastHttpUser):
    abstract = True
    insecure = False
    ssl_context_factory = staticmethod(_ssl_context)
    wait_time = between(0.05, 0.2)
    default_headers = {  # noqa: RUF012 - locust reads this class attribute
        "Authorization": f"Bearer {os.environ.get('TASKFORGE_API_KEY', '')}",
        "Content-Type": "application/json",
    }

    def post_json(self, path: str, body: dict[str, Any], name: str) -> Any:
        with self.client.post(path, data=json.dumps(body), name=name, catch_response=True) as resp:
            if resp.status_code not in (200, 201):
                resp.failure(f"{resp.status_code}: {(resp.text or '')[:120]}")
                return None
            resp.success()
            return resp.json().get("data")


class SubmitterUser(TaskForgeUser):
    """Submits jobs: built-in ones the server runs itself, and ones for the external workers."""

    weight = MIX.get("submitter", 0)

    @task(3)
    def submit_builtin(self) -> None:
        data = self.post_json(
            f"{API}/jobs",
            {"queue_name": "default", "job_type": "echo", "payload": {"n": random.random()},
             "priority": random.randint(0, 9)},
            name="POST /api/v1/jobs",
        )
        if data:
            RECENT_JOBS.append(data["id"])

    @task(1)
    def submit_external(self) -> None:
        data = self.post_json(
            f"{API}/jobs",
            {"queue_name": EXTERNAL_QUEUE, "job_type": "load_external", "payload": {"n": 1},
             "priority": 5},
            name="POST /api/v1/jobs",
        )
        if data:
            RECENT_JOBS.append(data["id"])


class PollerUser(TaskForgeUser):
    """Reads job status the way a client waiting on its job does."""

    weight = MIX.get("poller", 0)

    @task(4)
    def get_job(self) -> None:
        if not RECENT_JOBS:
            return
        job_id = random.choice(RECENT_JOBS)
        self.client.get(f"{API}/jobs/{job_id}", name="GET /api/v1/jobs/{id}")

    @task(1)
    def list_jobs(self) -> None:
        self.client.get(f"{API}/jobs?limit=20", name="GET /api/v1/jobs")


class WorkerUser(TaskForgeUser):
    """An external worker speaking the worker protocol: register, lease, ack, heartbeat."""

    weight = MIX.get("worker", 0)
    worker_id: str | None = None

    def on_start(self) -> None:
        data = self.post_json(
            f"{API}/workers",
            {"name": f"load-{uuid.uuid4().hex[:8]}", "queues": [EXTERNAL_QUEUE],
             "max_concurrent_jobs": 10},
            name="POST /api/v1/workers",
        )
        self.worker_id = data["id"] if data else None

    @task(10)
    def lease_and_ack(self) -> None:
        if self.worker_id is None:
            return
        data = self.post_json(
            f"{API}/workers/{self.worker_id}/lease",
            {"max_jobs": 10, "wait_seconds": 1},
            name="POST /api/v1/workers/{id}/lease",
        )
        jobs = (data or {}).get("jobs", [])
        if jobs:
            # One batched acknowledgement per lease, as a worker at speed would send.
            self.post_json(
                f"{API}/workers/{self.worker_id}/ack",
                {"results": [{"job_id": job["id"], "status": "succeeded", "output": {"ok": True}}
                             for job in jobs]},
                name="POST /api/v1/workers/{id}/ack",
            )

    @task(1)
    def heartbeat(self) -> None:
        if self.worker_id is not None:
            self.post_json(
                f"{API}/workers/{self.worker_id}/heartbeat", {},
                name="POST /api/v1/workers/{id}/heartbeat",
            )


class HealthUser(TaskForgeUser):
    """A load balancer's health probe."""

    weight = MIX.get("health", 0)
    wait_time = between(0.5, 1.0)

    @task
    def health(self) -> None:
        self.client.get("/health", name="GET /health")


class ProfileShape(LoadTestShape):
    """Ramp, steady, spike and soak stages from the profile; stops after the last stage."""

    def tick(self) -> tuple[int, float] | None:
        elapsed: float = self.get_run_time()  # type: ignore[no-untyped-call]
        for stage in STAGES:
            if elapsed < stage["until"]:
                return int(stage["users"]), float(stage["spawn_rate"])
        return None


# Locust picks every non-abstract User subclass; drop the kinds the profile weights at zero.
for _kind, _cls in (("submitter", SubmitterUser), ("poller", PollerUser),
                    ("worker", WorkerUser), ("health", HealthUser)):
    if not MIX.get(_kind):
        _cls.abstract = True
del _kind, _cls  # a module-level alias would make Locust see a User class twice
