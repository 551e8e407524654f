"""--allow-writes means what it says: against a deployment that is not the reference stack, and
without the flag, every registered live check together writes nothing but the one tagged smoke
job (the bounded rate-limit probe reads). Counted by method at a recording target in front of a
real reference server, so each check meets real answers and goes as far as it would in the field.
"""

from __future__ import annotations

import json
import ssl
from typing import Any

import httpx
import pytest
from live_support import ServerFactory
from recording_proxy import Exchange, recording_proxy

from conformance.checks.all import registered_checks
from conformance.checks.registry import CheckContext
from conformance.model import Status
from conformance.stack import Target

SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
SMOKE_PATH = "/api/v1/jobs"
#: Credential exchanges with the run's own account: a session, not data.
SESSION_PATHS = frozenset({"/api/v1/auth/login", "/api/v1/auth/refresh"})
RUN_ID = "writes-test-run"


def describe(exchanges: list[Exchange]) -> str:
    return "\n".join(f"{e.method} {e.path} -> {e.status}" for e in exchanges)


def second_account(base_url: str, verify: ssl.SSLContext) -> tuple[str, str]:
    """An account in another organisation, registered directly (not through the recorder)."""
    email, password = "second-org@example.test", "another long enough password"
    with httpx.Client(base_url=base_url, verify=verify, timeout=10) as client:
        answer = client.post("/api/v1/auth/register", json={
            "email": email, "password": password, "organization_name": "second organisation"})
        assert answer.status_code == 201, answer.text
    return email, password


@pytest.mark.parametrize("inputs", ["credentials", "every identity input"])
def test_without_allow_writes_only_the_smoke_job_is_written(
    server_factory: ServerFactory, inputs: str
) -> None:
    """With only the run's credentials, and with a second organisation and the server's JWT
    secret given too (the tenant and auth batteries then go as far as they can read-only)."""
    live = (s for s in registered_checks() if s.name.startswith("conformance.checks.live."))
    specs = sorted(live, key=lambda s: s.last)  # the plugin's order: the rate-limit burst last
    assert len(specs) >= 20
    with server_factory() as server:
        reference = server.target
        assert reference.ca_bundle is not None and reference.admin_email is not None
        verify = ssl.create_default_context(cafile=str(reference.ca_bundle))
        with recording_proxy(reference.base_url, verify) as (url, recorder):
            foreign = Target(base_url=url, provider="external", is_reference=False)
            extra: dict[str, Any] = {}
            if inputs == "every identity input":
                second_email, second_password = second_account(reference.base_url, verify)
                extra = {"second_email": second_email, "second_password": second_password,
                         "jwt_secret": reference.env["JWT_SECRET"]}
            ctx = CheckContext(target=foreign, email=reference.admin_email,
                               password=reference.admin_password, run_id=RUN_ID, **extra)
            findings = [f for spec in specs for f in spec.run(ctx)]
            exchanges = recorder.snapshot()

    crashed = [f for f in findings if "the check crashed" in f.message]
    assert not crashed, crashed
    assert any(f.status is Status.PASSED for f in findings)
    writes = [e for e in exchanges if e.method not in SAFE]
    sessions = [e for e in writes if e.path in SESSION_PATHS]
    given = {(reference.admin_email, reference.admin_password),
             (ctx.second_email, ctx.second_password)}
    for login in (e for e in sessions if e.path == "/api/v1/auth/login"):
        # Only the accounts given, with their own passwords: no guessing, no lock-out.
        sent = json.loads(login.body)
        assert (sent["email"], sent["password"]) in given
    others = [e for e in writes if e.path not in SESSION_PATHS]
    accepted = [e for e in others if e.status < 400]
    # One accepted write: the smoke job, tagged with the run ID.
    assert [(e.method, e.path) for e in accepted] == [("POST", SMOKE_PATH)], describe(writes)
    assert RUN_ID in accepted[0].body.decode()
    # Whatever else was sent with a writing method is a refused probe of the smoke endpoint
    # (malformed, mistyped or oversized bodies), never a write to another path.
    assert {(e.method, e.path) for e in others} == {("POST", SMOKE_PATH)}, describe(writes)
    assert len(others) <= 5, describe(writes)
    # ... and one no server could store even if it accepted it: not JSON, or for no queue.
    for probe in others:
        if probe is not accepted[0]:
            assert not storable(probe.body), probe.body[:200]


def storable(body: bytes) -> bool:
    try:
        job = json.loads(body)
    except ValueError:
        return False
    queue = job.get("queue_name", "") if isinstance(job, dict) else ""
    return not str(queue).startswith("conformance-no-such-queue-")
