"""Through a front that changes only what the contract lets vary, a run finds nothing new.

`variant_front.py` (Hypercorn, TLS) answers 200 for 201, 403 PERM_001 for an object id the caller
cannot see, its own Server header, and refuses the metrics publicly while serving them on a
plain-HTTP port given as --metrics-url. The same checks run against the reference server directly
and through the front; the front may not add a failure or an error.
"""

from __future__ import annotations

import contextlib
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from live_support import LiveServer, ServerFactory, explain, run_checks, statuses, stop_process

from conformance.checks.registry import CheckContext
from conformance.model import Status
from conformance.stack import Target
from reference_server.devservices import free_port

FRONT = Path(__file__).with_name("variant_front.py")
CHECKS = (
    "health.health", "health.ready", "tls.certificate", "metrics.metrics",
    "metrics.public_metrics", "headers.security_headers", "cors.cors_foreign",
    "auth.auth_battery", "auth.jwt_secret", "hygiene.error_hygiene", "hygiene.exposure",
    "tenancy.tenant_isolation", "resilience.date_range", "resilience.login_lockout",
    "jobs.smoke",
)


@contextlib.contextmanager
def front(server: LiveServer, tls: tuple[Path, Path, Path]) -> Iterator[tuple[str, str]]:
    """(public base URL, metrics URL) of a variant front before the server."""
    ca, chain, key = tls
    port, metrics_port = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, str(FRONT), server.target.base_url, str(ca), str(chain), str(key),
         str(port), str(metrics_port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
    )
    base_url = f"https://127.0.0.1:{port}"
    try:
        verify = ssl.create_default_context(cafile=str(ca))
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{base_url}/ready", verify=verify, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "front did not start"
            time.sleep(0.1)
        yield base_url, f"http://127.0.0.1:{metrics_port}/metrics"
    finally:
        stop_process(process, timeout=10)


def foreign_context(server: LiveServer, base_url: str, **fields: object) -> CheckContext:
    """The run a user would make against this deployment: login, writes allowed, its secret."""
    reference = server.target
    target = Target(base_url=base_url, provider="external", is_reference=False,
                    ca_bundle=reference.ca_bundle)
    return CheckContext(
        target=target, email=reference.admin_email, password=reference.admin_password,
        allow_writes=True, jwt_secret=reference.env["JWT_SECRET"], run_id="variant-front",
        **fields,  # type: ignore[arg-type]
    )


def test_the_contracts_variants_add_no_failure(
    server_factory: ServerFactory, tls_files: tuple[Path, Path, Path]
) -> None:
    with server_factory() as server:
        direct = statuses(run_checks(foreign_context(server, server.target.base_url), *CHECKS))
    with server_factory() as server, front(server, tls_files) as (base_url, metrics_url):
        findings = run_checks(foreign_context(server, base_url, metrics_url=metrics_url), *CHECKS)
    through = statuses(findings)
    bad = {Status.FAILED, Status.ERROR}
    new = {i: s for i, s in through.items() if s in bad and direct.get(i) not in bad}
    assert not new, explain(findings)
    # The front does vary what it says it does: the variants were met, not bypassed.
    assert through["LIVE-METRICS-PUBLIC"] is Status.PASSED, explain(findings)
    assert through["LIVE-METRICS-NAMES"] is Status.PASSED, explain(findings)
    assert through["LIVE-TENANT-JOB-READ"] is Status.PASSED, explain(findings)
    assert any("403" in (e.output or "") or e.status_code == 403 for f in findings
               if f.item_id == "LIVE-TENANT-JOB-READ" for e in f.evidence)
    # 200 instead of 201 on create: the smoke job was accepted as created.
    assert through["LIVE-SMOKE-JOB"] is Status.PASSED, explain(findings)
    smoke = next(f for f in findings if f.item_id == "LIVE-SMOKE-JOB")
    assert [e.status_code for e in smoke.evidence] == [200], smoke.evidence
    # The front's own Server header was read, and a banner without a version is no finding.
    assert through["LIVE-BANNER-VERSION"] is Status.PASSED, explain(findings)
    banner = next(f for f in findings if f.item_id == "LIVE-BANNER-VERSION")
    assert "server: edge" in banner.message, banner.message
