"""A reference server misconfigured one way at a time: the matching live check fails, no other."""

from __future__ import annotations

import pytest
from live_support import ALLOWED_ORIGIN, ServerFactory, explain, run_checks, statuses

from conformance.model import Status
from reference_server.devservices import EmbeddedRedis

#: Cheap checks run against every misconfigured server; the rate-limit probe last.
CHECKS = (
    "health.health", "headers.security_headers", "cors.cors_allowed", "cors.cors_foreign",
    "metrics.metrics", "logs.log_lines", "auth.jwt_secret", "ratelimit.rate_limit",
)
#: The guide's own example value: long enough, but public.
GUIDE_JWT_SECRET = "your_super_secret_jwt_key_here_must_be_at_least_32_chars_long"


@pytest.mark.parametrize(
    ("setting", "value", "failing"),
    [
        pytest.param(
            "CORS_ALLOWED_ORIGINS", "*", {"LIVE-CORS-FOREIGN"}, id="wildcard-cors",
        ),
        pytest.param("SECURITY_HSTS", "false", {"LIVE-HEADER-HSTS"}, id="no-hsts"),
        pytest.param("RATE_LIMIT_ENABLED", "false", {"LIVE-RATE-LIMIT"}, id="no-rate-limit"),
        pytest.param("LOG_FORMAT", "text", {"LIVE-LOG-JSON"}, id="text-logs"),
        pytest.param(
            "METRICS_ENABLED", "false",
            {"LIVE-METRICS", "LIVE-METRICS-PROMETHEUS", "LIVE-METRICS-NAMES"}, id="no-metrics",
        ),
        pytest.param("JWT_SECRET", GUIDE_JWT_SECRET, {"LIVE-JWT-SECRET"}, id="weak-jwt-secret"),
    ],
)
def test_only_the_matching_check_fails(
    server_factory: ServerFactory, setting: str, value: str, failing: set[str]
) -> None:
    with server_factory(**{setting: value}) as server:
        ctx = server.context(run_id="live-tests", cors_origin=ALLOWED_ORIGIN)
        findings = run_checks(ctx, *CHECKS)
    result = statuses(findings)
    assert {item for item, s in result.items() if s is Status.FAILED} == failing, explain(findings)
    others = {item: s for item, s in result.items() if item not in failing}
    assert set(others.values()) == {Status.PASSED}, explain(findings)


def test_redis_down_fails_health_and_redis_but_not_readiness(
    server_factory: ServerFactory,
) -> None:
    """The contract: Redis down alone is `degraded` (200), and the server stays ready."""
    own_redis = EmbeddedRedis().start()
    try:
        with server_factory(REDIS_URL=own_redis.url) as server:
            own_redis.stop()
            findings = run_checks(
                server.context(redis_url=own_redis.url), "health.health", "health.ready",
                "redis.redis_server",
            )
    finally:
        own_redis.stop()
    result = statuses(findings)
    assert {item for item, s in result.items() if s is Status.FAILED} == {
        "LIVE-HEALTH", "LIVE-HEALTH-MONITOR", "LIVE-HEALTH-CHECKS",
        "LIVE-REDIS", "LIVE-REDIS-VERSION", "LIVE-REDIS-EVICTION",
    }, explain(findings)
    assert result["LIVE-READY"] is Status.PASSED
