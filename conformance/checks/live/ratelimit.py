"""Rate limiting, by a bounded burst: a 429 with Retry-After must arrive, or credible headers.

The burst is at most twice the advertised X-RateLimit-Limit, never more than MAX_PROBE_REQUESTS and
never longer than MAX_PROBE_SECONDS, so the probe is safe against someone's production.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from conformance.checks.live.common import Report
from conformance.checks.live.http import (
    LoginError,
    auth_headers,
    client_for,
    retry_after_seconds,
)
from conformance.checks.registry import check

if TYPE_CHECKING:
    import httpx

    from conformance.checks.registry import CheckContext
    from conformance.model import Finding

PROBE_PATH = "/api/v1/auth/validate"
MAX_PROBE_REQUESTS = 300
MAX_PROBE_SECONDS = 20.0


def _int_header(response: httpx.Response, name: str) -> int | None:
    value = response.headers.get(name, "").strip()
    return int(value) if value.isdigit() else None


@check("LIVE-RATE-LIMIT", needs=("target",), last=True)
def rate_limit(ctx: CheckContext) -> Iterator[Finding]:
    """A bounded burst meets a 429 with Retry-After (or credible rate-limit headers)."""
    report = Report(f"{__name__}.rate_limit")
    with client_for(ctx) as client:
        try:
            headers = auth_headers(ctx, client)
        except LoginError as exc:
            yield report.error("LIVE-RATE-LIMIT", str(exc), exc.evidence)
            return
        if headers is None:
            yield report.not_applicable(
                "LIVE-RATE-LIMIT", "no credential: give --token or --api-key for the probe"
            )
            return
        first = client.get(PROBE_PATH, headers=headers, retry_429=False)
        limit = _int_header(first, "x-ratelimit-limit")
        budget = min(2 * limit, MAX_PROBE_REQUESTS) if limit else MAX_PROBE_REQUESTS
        remaining = _int_header(first, "x-ratelimit-remaining")
        remaining_seen = [remaining] if remaining is not None else []
        last = first
        sent = 1
        deadline = time.monotonic() + MAX_PROBE_SECONDS
        while last.status_code != 429 and sent < budget and time.monotonic() < deadline:
            last = client.get(PROBE_PATH, headers=headers, retry_429=False)
            sent += 1
            remaining = _int_header(last, "x-ratelimit-remaining")
            if remaining is not None:
                remaining_seen.append(remaining)
        evidence = client.evidence(last, f"request {sent} of a burst of at most {budget}")
    if last.status_code == 429:
        retry_after = last.headers.get("retry-after")
        if retry_after_seconds(retry_after) is None:
            yield report.failed(
                "LIVE-RATE-LIMIT", f"429 after {sent} requests, but without a usable Retry-After",
                evidence, expected="429 with Retry-After", actual=f"Retry-After: {retry_after!r}",
            )
        else:
            yield report.passed(
                "LIVE-RATE-LIMIT",
                f"429 with Retry-After {retry_after} after {sent} requests (limit {limit})",
                evidence,
            )
        return
    decreasing = len(remaining_seen) >= 2 and remaining_seen[-1] < remaining_seen[0]
    if limit and decreasing and remaining_seen[-1] > 0:
        # The limit is above what we may send: accept the advertised budget, counting down.
        yield report.passed(
            "LIVE-RATE-LIMIT",
            f"advertised limit {limit} is above the probe's cap ({sent} requests sent): "
            "accepted on its headers, X-RateLimit-Remaining went "
            f"{remaining_seen[0]} -> {remaining_seen[-1]}",
            evidence,
        )
        return
    yield report.failed(
        "LIVE-RATE-LIMIT",
        f"no 429 after {sent} requests and no counting-down X-RateLimit headers",
        evidence, expected="429 with Retry-After, or X-RateLimit-Limit/Remaining",
        actual=f"last status {last.status_code}, limit header {limit}",
    )
