"""The deployment guide's 5.2 smoke sequence against a target, over TLS with the target's CA.

GET /health, GET the metrics (parsed as Prometheus text), log in (registering an account first
when the target has no admin account), submit the guide's test job and wait for it to succeed.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from conformance.stack import Target

JOB_TIMEOUT_SECONDS = 30.0
POLL_SECONDS = 0.2
REQUEST_TIMEOUT_SECONDS = 10.0
#: The job body of the guide's 5.2 curl command, word for word.
GUIDE_JOB = {
    "queue_name": "default",
    "job_type": "test_job",
    "payload": {"test": "data"},
    "priority": 5,
}
FINAL_FAILURES = ("dead", "cancelled")


class SmokeError(AssertionError):
    """A step of the smoke sequence failed; `step` names it."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"smoke step {step}: {message}")
        self.step = step


@dataclass
class SmokeResult:
    """What the sequence saw, step by step."""

    health: dict[str, Any] = field(default_factory=dict)
    metric_families: list[str] = field(default_factory=list)
    job_id: str = ""
    job: dict[str, Any] = field(default_factory=dict)
    steps: list[str] = field(default_factory=list)


def _data(response: httpx.Response, step: str, expected: int) -> Any:
    if response.status_code != expected:
        raise SmokeError(step, f"{response.request.method} {response.request.url.path} answered "
                               f"{response.status_code}, expected {expected}: "
                               f"{response.text[:200]}")
    try:
        body = response.json()
    except ValueError:
        raise SmokeError(step, "the answer is not JSON") from None
    # The contract wraps answers in {"success", "data"}; /health answers bare.
    return body.get("data", body) if isinstance(body, dict) else body


def _credentials(client: httpx.Client, target: Target, result: SmokeResult) -> tuple[str, str]:
    if target.admin_email and target.admin_password:
        return target.admin_email, target.admin_password
    email = f"smoke-{secrets.token_hex(6)}@conformance.example.com"
    password = secrets.token_urlsafe(18)
    _data(client.post("/api/v1/auth/register", json={
        "email": email, "password": password, "organization_name": "conformance smoke",
    }), "register", 201)
    result.steps.append("register")
    return email, password


def run_smoke(
    target: Target,
    *,
    job_timeout: float = JOB_TIMEOUT_SECONDS,
    metrics_path: str | None = None,
) -> SmokeResult:
    """Run the sequence; raise SmokeError at the first step that fails."""
    from prometheus_client.parser import text_string_to_metric_families

    result = SmokeResult()
    path = metrics_path or target.env.get("METRICS_ENDPOINT", "/metrics")
    with httpx.Client(base_url=target.base_url, verify=target.verify,
                      timeout=httpx.Timeout(REQUEST_TIMEOUT_SECONDS)) as client:
        result.health = _data(client.get("/health"), "health", 200)
        result.steps.append("health")

        metrics = client.get(path)
        if metrics.status_code != 200:
            raise SmokeError("metrics", f"GET {path} answered {metrics.status_code}")
        try:
            result.metric_families = [f.name for f in text_string_to_metric_families(metrics.text)]
        except (ValueError, TypeError) as exc:
            raise SmokeError("metrics", f"not Prometheus text: {exc}") from None
        if not result.metric_families:
            raise SmokeError("metrics", f"GET {path} holds no metric family")
        result.steps.append("metrics")

        email, password = _credentials(client, target, result)
        token = _data(client.post("/api/v1/auth/login", json={
            "email": email, "password": password,
        }), "login", 200).get("access_token")
        if not token:
            raise SmokeError("login", "no access_token in the answer")
        client.headers["Authorization"] = f"Bearer {token}"
        result.steps.append("login")

        job = _data(client.post("/api/v1/jobs", json=GUIDE_JOB), "submit", 201)
        result.job_id = str(job.get("id", ""))
        if not result.job_id:
            raise SmokeError("submit", "the created job has no id")
        result.steps.append("submit")

        deadline = time.monotonic() + job_timeout
        while True:
            job = _data(client.get(f"/api/v1/jobs/{result.job_id}"), "run", 200)
            status = job.get("status")
            if status == "succeeded":
                break
            if status in FINAL_FAILURES:
                raise SmokeError("run", f"the job ended {status}: {job.get('error_message')}")
            if time.monotonic() >= deadline:
                raise SmokeError("run", f"the job is still {status} after {job_timeout:.0f}s")
            time.sleep(POLL_SECONDS)
        result.job = job
        result.steps.append("run")
    return result
