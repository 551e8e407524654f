"""Every live check passes against a correctly configured reference server."""

from __future__ import annotations

import ssl

import httpx
import psycopg
from live_support import ServerFactory, explain, run_checks, statuses

from conformance.checks.live.backup import BACKUP_ITEMS
from conformance.checks.live.metrics import PUBLIC_ITEMS
from conformance.checks.live.tenancy import TENANCY_ITEMS
from conformance.checks.registry import CheckContext
from conformance.model import Status
from conformance.stack import Target

#: Every live check, the rate-limit probe last: it spends the client's budget on purpose.
ALL_CHECKS = (
    "health.reachable", "health.health", "health.ready", "tls.certificate", "tls.protocols",
    "metrics.metrics", "headers.security_headers", "cors.cors_allowed", "cors.cors_foreign",
    "auth.auth_battery", "auth.jwt_secret", "hygiene.error_hygiene", "hygiene.exposure",
    "hygiene.request_id", "tenancy.tenant_isolation", "resilience.date_range",
    "resilience.value_range", "resilience.login_lockout", "metrics.public_metrics",
    "jobs.smoke", "logs.log_lines",
    "database.database", "database.performance", "database.port_closed", "redis.redis_server",
    "backup.backup_restore", "ratelimit.rate_limit", "resilience.slow_clients",
)


def test_every_live_check_passes_on_a_good_server(server_factory: ServerFactory) -> None:
    with server_factory() as server:
        findings = run_checks(server.context(), *ALL_CHECKS)
    result = statuses(findings)
    # No front door on the embedded stack: its metrics' exposure is judged through one (see
    # test_live_variant_front.py), not on the app's own loopback URL.
    assert {result.pop(i) for i in PUBLIC_ITEMS} == {Status.NOT_APPLICABLE}, explain(findings)
    not_passed = {item: s for item, s in result.items() if s is not Status.PASSED}
    assert not not_passed, explain(findings)
    assert len(result) >= 40


def test_a_foreign_target_gets_only_the_smoke_job_and_the_probe(
    server_factory: ServerFactory,
) -> None:
    """Seen as someone else's deployment (a token, no settings), the suite writes one tagged job."""
    with server_factory() as server:
        reference = server.target
        with httpx.Client(verify=ssl.create_default_context(cafile=str(reference.ca_bundle)),
                          base_url=reference.base_url) as client:
            login = client.post("/api/v1/auth/login", json={
                "email": reference.admin_email, "password": reference.admin_password,
            })
        token = login.json()["data"]["access_token"]
        foreign = Target(
            base_url=reference.base_url, provider="external", is_reference=False,
            ca_bundle=reference.ca_bundle, database_url=reference.database_url,
            redis_url=reference.redis_url, log_file=reference.log_file,
        )
        with psycopg.connect(str(reference.database_url), autocommit=True) as conn:
            audit_before = conn.execute("SELECT max(id) FROM audit_log").fetchone()
            databases_before = conn.execute("SELECT count(*) FROM pg_database").fetchone()
        findings = run_checks(
            CheckContext(target=foreign, token=token, run_id="foreign-run"), *ALL_CHECKS
        )
        with psycopg.connect(str(reference.database_url), autocommit=True) as conn:
            # Refused probes (malformed, oversized bodies) are audited too; only successes changed
            # anything.
            actions = conn.execute(
                "SELECT action FROM audit_log WHERE id > %s AND status_code < 300", audit_before
            ).fetchall()
            jobs = conn.execute("SELECT payload FROM jobs").fetchall()
            databases_after = conn.execute("SELECT count(*) FROM pg_database").fetchone()
    result = statuses(findings)
    # Seen from outside, its settings unknown, the server is judged as production, where its
    # metrics (served to anyone in staging, as this one runs) would be public.
    assert result.pop("LIVE-METRICS-PUBLIC") is Status.FAILED, explain(findings)
    assert {s for s in result.values()} <= {Status.PASSED, Status.NOT_APPLICABLE, Status.SKIPPED}
    assert {i for i, s in result.items() if s is not Status.PASSED} == {
        "LIVE-AUTH-REFRESH-AS-ACCESS",  # no login credentials: no refresh token
        "LIVE-AUTH-EXPIRED", "LIVE-AUTH-ALG-PINNED",  # the server's JWT secret is unknown
        "LIVE-CORS-ALLOWED",  # no settings: the allowed origin is unknown
        *BACKUP_ITEMS,  # the restore drill runs on the reference stack only
        *TENANCY_ITEMS,  # no second organisation given, and no writes allowed to make one
        # They write when the server is broken, or load it: not without --allow-writes/-load.
        "LIVE-DATE-RANGE", "LIVE-VALUE-RANGE", "LIVE-LOGIN-LOCKOUT", "LIVE-SLOW-CLIENTS",
    }, explain(findings)
    assert actions == [("POST /api/v1/jobs",)]
    assert jobs == [({"test": "data", "conformance_run": "foreign-run"},)]
    assert databases_after == databases_before


def test_a_limit_above_the_safe_cap_is_reached_when_load_is_allowed(
    server_factory: ServerFactory,
) -> None:
    """2 x 1000 is over the 300-request cap; load is allowed on the reference: the 429 is seen."""
    with server_factory(RATE_LIMIT_PER_MINUTE="1000") as server:
        findings = run_checks(server.context(), "ratelimit.rate_limit")
    assert [f.status for f in findings] == [Status.PASSED], explain(findings)
    assert "429 with Retry-After" in findings[0].message
