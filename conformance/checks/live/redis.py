"""Redis behind the deployment: reachable, version 6+, and not evicting queue data."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import redis as redis_py

from conformance.checks.live.common import Report, redis_url_of
from conformance.checks.registry import check

if TYPE_CHECKING:
    from conformance.checks.registry import CheckContext
    from conformance.model import Finding

TIMEOUT_SECONDS = 5.0
MIN_REDIS_MAJOR = 6  # guide 2.1: Redis 6+
REDIS_ITEMS = ("LIVE-REDIS", "LIVE-REDIS-VERSION", "LIVE-REDIS-EVICTION")


@check(*REDIS_ITEMS, needs=("target",))
def redis_server(ctx: CheckContext) -> Iterator[Finding]:
    """PING answers PONG; Redis 6+; maxmemory-policy noeviction (queue data must not be evicted)."""
    report = Report(f"{__name__}.redis_server")
    url = redis_url_of(ctx)
    if url is None:
        for item in REDIS_ITEMS:
            yield report.not_applicable(item, "no Redis URL: give --redis-url")
        return
    client = redis_py.Redis.from_url(
        url, socket_timeout=TIMEOUT_SECONDS, socket_connect_timeout=TIMEOUT_SECONDS
    )
    try:
        try:
            pong = client.ping()
            info = client.info("server")
        except redis_py.RedisError as exc:
            for item in REDIS_ITEMS:
                yield report.failed(item, f"Redis did not answer: {exc}")
            return
        yield report.passed("LIVE-REDIS", f"PING answered {'PONG' if pong else pong!r}")
        version = str(info.get("redis_version", "0"))
        major = int(version.split(".")[0]) if version.split(".")[0].isdigit() else 0
        if major >= MIN_REDIS_MAJOR:
            yield report.passed("LIVE-REDIS-VERSION", f"Redis {version}")
        else:
            yield report.failed(
                "LIVE-REDIS-VERSION", f"Redis {version} is older than {MIN_REDIS_MAJOR}",
                expected=f">= {MIN_REDIS_MAJOR}", actual=version,
            )
        try:
            policy = str(client.config_get("maxmemory-policy").get("maxmemory-policy", ""))
        except redis_py.ResponseError as exc:
            # Managed Redis services often disable CONFIG; that is no evidence either way.
            yield report.skipped("LIVE-REDIS-EVICTION", f"CONFIG GET refused: {exc}")
            return
        if policy == "noeviction":
            yield report.passed("LIVE-REDIS-EVICTION", "maxmemory-policy noeviction")
        else:
            yield report.failed(
                "LIVE-REDIS-EVICTION",
                f"maxmemory-policy {policy}: Redis may evict queue data under memory pressure",
                expected="noeviction", actual=policy,
            )
    finally:
        client.close()
