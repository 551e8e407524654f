"""Every live check passes against a correctly configured reference server."""

from __future__ import annotations

from live_support import ServerFactory, explain, run_checks, statuses

from conformance.model import Status

#: Every live check, the rate-limit probe last: it spends the client's budget on purpose.
ALL_CHECKS = (
    "health.reachable", "health.health", "health.ready", "tls.certificate", "tls.protocols",
    "metrics.metrics", "headers.security_headers", "cors.cors_allowed", "cors.cors_foreign",
    "auth.auth_battery", "auth.jwt_secret", "jobs.smoke", "logs.log_lines", "database.database",
    "database.performance", "database.port_closed", "redis.redis_server",
    "backup.backup_restore", "ratelimit.rate_limit",
)


def test_every_live_check_passes_on_a_good_server(server_factory: ServerFactory) -> None:
    with server_factory() as server:
        findings = run_checks(server.context(), *ALL_CHECKS)
    result = statuses(findings)
    not_passed = {item: s for item, s in result.items() if s is not Status.PASSED}
    assert not not_passed, explain(findings)
    assert len(result) >= 40
