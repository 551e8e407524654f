"""The security headers every response should carry (guide 6.1, and SECURITY_* of 3.1)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

from conformance.checks.live.common import Report
from conformance.checks.live.http import client_for
from conformance.checks.registry import check

if TYPE_CHECKING:
    from conformance.checks.registry import CheckContext
    from conformance.model import Finding

#: One year: what the HSTS preload list asks for (and browsers' own recommendation).
HSTS_MIN_MAX_AGE = 31536000
SAFE_REFERRER_POLICIES = frozenset({
    "no-referrer", "same-origin", "strict-origin", "strict-origin-when-cross-origin", "origin",
    "origin-when-cross-origin",
})
HEADER_ITEMS = (
    "LIVE-HEADER-HSTS", "LIVE-HEADER-CSP", "LIVE-HEADER-NOSNIFF", "LIVE-HEADER-FRAME",
    "LIVE-HEADER-REFERRER",
)


def hsts_problem(value: str | None) -> str | None:
    if not value:
        return "no Strict-Transport-Security header"
    match = re.search(r"max-age\s*=\s*\"?(\d+)", value, re.IGNORECASE)
    if not match:
        return f"Strict-Transport-Security without max-age: {value!r}"
    if int(match.group(1)) < HSTS_MIN_MAX_AGE:
        return f"max-age {match.group(1)} is under {HSTS_MIN_MAX_AGE}"
    return None


def csp_problem(value: str | None) -> str | None:
    if not value:
        return "no Content-Security-Policy header"
    unsafe = [k for k in ("'unsafe-inline'", "'unsafe-eval'") if k in value.lower()]
    return f"Content-Security-Policy allows {', '.join(unsafe)}" if unsafe else None


def frame_problem(frame_options: str | None, csp: str | None) -> str | None:
    if frame_options and frame_options.strip().upper() == "DENY":
        return None
    if csp and re.search(r"frame-ancestors\s+'none'", csp, re.IGNORECASE):
        return None
    if frame_options:
        return (
            f"X-Frame-Options is {frame_options!r}, not DENY, "
            "and CSP has no frame-ancestors 'none'"
        )
    return "neither X-Frame-Options: DENY nor CSP frame-ancestors 'none'"


def referrer_problem(value: str | None) -> str | None:
    if not value:
        return "no Referrer-Policy header"
    # Several comma-separated policies: the browser uses the last one it knows.
    last = value.split(",")[-1].strip().lower()
    return None if last in SAFE_REFERRER_POLICIES else f"Referrer-Policy {value!r} leaks URLs"


@check(*HEADER_ITEMS, needs=("target",))
def security_headers(ctx: CheckContext) -> Iterator[Finding]:
    """HSTS (max-age >= 1 year), CSP without unsafe-*, nosniff, no framing, Referrer-Policy."""
    report = Report(f"{__name__}.security_headers")
    with client_for(ctx) as client:
        response = client.get("/health")
        evidence = client.evidence(response, "GET /health: response headers")
    headers = response.headers
    nosniff = headers.get("x-content-type-options")
    problems = {
        "LIVE-HEADER-HSTS": hsts_problem(headers.get("strict-transport-security")),
        "LIVE-HEADER-CSP": csp_problem(headers.get("content-security-policy")),
        "LIVE-HEADER-NOSNIFF": None if (nosniff or "").strip().lower() == "nosniff"
        else f"X-Content-Type-Options is {nosniff!r}, not nosniff",
        "LIVE-HEADER-FRAME": frame_problem(
            headers.get("x-frame-options"), headers.get("content-security-policy")
        ),
        "LIVE-HEADER-REFERRER": referrer_problem(headers.get("referrer-policy")),
    }
    for item, problem in problems.items():
        if problem:
            yield report.failed(item, problem, evidence)
        else:
            yield report.passed(item, "present and strict", evidence)
