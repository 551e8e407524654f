"""--allow-writes means what it says: against a deployment that is not the reference stack, and
without the flag, every registered live check together writes nothing but the one tagged smoke
job (the bounded rate-limit probe reads). Counted by method at a recording target in front of a
real reference server, so each check meets real answers and goes as far as it would in the field.
"""

from __future__ import annotations

import json
import ssl

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


def test_without_allow_writes_only_the_smoke_job_is_written(
    server_factory: ServerFactory,
) -> None:
    live = (s for s in registered_checks() if s.name.startswith("conformance.checks.live."))
    specs = sorted(live, key=lambda s: s.last)  # the plugin's order: the rate-limit burst last
    assert len(specs) >= 20
    with server_factory() as server:
        reference = server.target
        assert reference.ca_bundle is not None and reference.admin_email is not None
        verify = ssl.create_default_context(cafile=str(reference.ca_bundle))
        with recording_proxy(reference.base_url, verify) as (url, recorder):
            foreign = Target(base_url=url, provider="external", is_reference=False)
            ctx = CheckContext(target=foreign, email=reference.admin_email,
                               password=reference.admin_password, run_id=RUN_ID)
            findings = [f for spec in specs for f in spec.run(ctx)]
            exchanges = recorder.snapshot()

    crashed = [f for f in findings if "the check crashed" in f.message]
    assert not crashed, crashed
    assert any(f.status is Status.PASSED for f in findings)
    writes = [e for e in exchanges if e.method not in SAFE]
    sessions = [e for e in writes if e.path in SESSION_PATHS]
    for login in (e for e in sessions if e.path == "/api/v1/auth/login"):
        # Only the run's own account, with its own password: no guessing, no lock-out.
        sent = json.loads(login.body)
        assert (sent["email"], sent["password"]) == (reference.admin_email,
                                                     reference.admin_password)
    others = [e for e in writes if e.path not in SESSION_PATHS]
    accepted = [e for e in others if e.status < 400]
    # One accepted write: the smoke job, tagged with the run ID.
    assert [(e.method, e.path) for e in accepted] == [("POST", SMOKE_PATH)], describe(writes)
    assert RUN_ID in accepted[0].body.decode()
    # Whatever else was sent with a writing method is a refused probe of the smoke endpoint
    # (malformed, mistyped or oversized bodies), never a write to another path.
    assert {(e.method, e.path) for e in others} == {("POST", SMOKE_PATH)}, describe(writes)
    assert len(others) <= 5, describe(writes)
