"""Reachability through BASE_URL, and the operations endpoints /health and /ready."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx

from conformance.checks.live.common import LOOPBACK_HOSTS, Report, target_env, target_of
from conformance.checks.live.http import client_for, host_of, payload_of
from conformance.checks.registry import check

if TYPE_CHECKING:
    from conformance.checks.registry import CheckContext
    from conformance.model import Finding

#: What a dependency probe in /health may say when it is fine.
HEALTHY_VALUES = frozenset({"ok", "up", "healthy", "pass", "true", "current"})
DEPENDENCIES = ("database", "redis", "migrations")


def _healthy(value: Any) -> bool:
    if isinstance(value, dict):
        # e.g. {"status": "ok"} or, for migrations, {"applied_version": ..., "current": true}
        value = value.get("status", value.get("ok", value.get("current")))
    return value is True or str(value).lower() in HEALTHY_VALUES


@check("LIVE-REACHABLE", needs=("target",))
def reachable(ctx: CheckContext) -> Iterator[Finding]:
    """The configured base URL answers /health (and BASE_URL too, when it names the same host)."""
    report = Report(f"{__name__}.reachable")
    target = target_of(ctx)
    urls = [target.base_url.rstrip("/")]
    configured = target_env(ctx).get("BASE_URL", "").rstrip("/")
    skipped_note = ""
    if configured and configured not in urls:
        # Only the user's target host and loopback are ever contacted.
        if host_of(configured) in {host_of(target.base_url)} | LOOPBACK_HOSTS:
            urls.append(configured)
        else:
            skipped_note = f"; BASE_URL {configured} names another host and was not contacted"
    for url in urls:
        with client_for(ctx) as client:
            try:
                response = client.http.get(url + "/health")
            except httpx.HTTPError as exc:
                yield report.failed(
                    "LIVE-REACHABLE", f"{url} did not answer: {exc}",
                    expected="HTTP 200 from /health", actual=type(exc).__name__,
                )
                return
            if response.status_code != 200:
                yield report.failed(
                    "LIVE-REACHABLE", f"{url}/health answered {response.status_code}",
                    client.evidence(response), expected="200", actual=str(response.status_code),
                )
                return
    yield report.passed("LIVE-REACHABLE", f"{', '.join(urls)} answered /health{skipped_note}")


@check("LIVE-HEALTH", "LIVE-HEALTH-CHECKS", "LIVE-HEALTH-MONITOR", needs=("target",))
def health(ctx: CheckContext) -> Iterator[Finding]:
    """/health answers 200 with status ok and reports database, redis and migrations."""
    report = Report(f"{__name__}.health")
    with client_for(ctx) as client:
        response = client.get("/health")
        evidence = client.evidence(response, "GET /health")
    body = payload_of(response)
    status = body.get("status") if isinstance(body, dict) else None
    if response.status_code == 200 and status == "ok":
        message = "/health: 200, status ok"
        yield report.passed("LIVE-HEALTH", message, evidence)
        yield report.passed("LIVE-HEALTH-MONITOR", message, evidence)
    else:
        actual = f"HTTP {response.status_code}, status {status!r}"
        for item in ("LIVE-HEALTH", "LIVE-HEALTH-MONITOR"):
            yield report.failed(
                item, f"/health is not healthy: {actual}", evidence,
                expected="HTTP 200, status ok", actual=actual,
            )
    checks = body.get("checks") if isinstance(body, dict) else None
    if not isinstance(checks, dict):
        yield report.failed(
            "LIVE-HEALTH-CHECKS", "/health reports no per-dependency checks", evidence,
            expected=f"checks: {{{', '.join(DEPENDENCIES)}}}", actual=str(checks),
        )
        return
    missing = [name for name in DEPENDENCIES if name not in checks]
    unhealthy = [name for name in DEPENDENCIES if name in checks and not _healthy(checks[name])]
    if missing or unhealthy:
        yield report.failed(
            "LIVE-HEALTH-CHECKS",
            f"/health checks: missing {missing or 'none'}, unhealthy {unhealthy or 'none'}",
            evidence, expected=f"{', '.join(DEPENDENCIES)} all ok", actual=str(checks),
        )
    else:
        yield report.passed(
            "LIVE-HEALTH-CHECKS", f"/health checks {', '.join(DEPENDENCIES)}: all ok", evidence
        )


@check("LIVE-READY", needs=("target",))
def ready(ctx: CheckContext) -> Iterator[Finding]:
    """/ready answers 200: the deployment can serve traffic."""
    report = Report(f"{__name__}.ready")
    with client_for(ctx) as client:
        response = client.get("/ready")
        evidence = client.evidence(response, "GET /ready")
    if response.status_code == 200:
        yield report.passed("LIVE-READY", "/ready: 200", evidence)
    else:
        yield report.failed(
            "LIVE-READY", f"/ready answered {response.status_code}", evidence,
            expected="200", actual=str(response.status_code),
        )
