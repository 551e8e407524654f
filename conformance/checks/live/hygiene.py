"""Error and exposure hygiene: refusals come in the contract's error envelope and give nothing away.

None of these probes writes: every body sent to `POST /api/v1/jobs` names a queue that does not
exist and a priority out of range, so even a server that ignored what is being probed (the JSON
syntax, the content type, the size) could not store it.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from conformance.checks.live.common import Report, known_setting
from conformance.checks.live.http import (
    LiveClient,
    LoginError,
    auth_headers,
    client_for,
    credential_or_findings,
)
from conformance.checks.registry import check

if TYPE_CHECKING:
    import httpx

    from conformance.checks.registry import CheckContext
    from conformance.model import Evidence, Finding

DEFAULT_BODY_LIMIT = 1024 * 1024  # the contract's default (PAYLOAD_TOO_LARGE)
OVERSIZE_MARGIN = 64 * 1024
ERROR_ITEMS = ("LIVE-ERROR-MALFORMED-JSON", "LIVE-ERROR-MEDIA-TYPE", "LIVE-ERROR-OVERSIZED")
#: What a body must not show: stack traces, source paths, exception class names, panics.
INTERNALS = (
    ("a Python traceback", re.compile(r"Traceback \(most recent call last\)")),
    ("a stack frame", re.compile(r"File \"[^\"]+\", line \d+|\bat [\w$.]+\([\w$.]+:\d+\)")),
    ("a source file path", re.compile(
        r"(?:/[\w.@+-]+)+\.(?:py|rs|go|js|ts|java|rb|php)\b|site-packages|dist-packages")),
    ("an exception name", re.compile(r"\b[A-Z][A-Za-z0-9]*(?:Error|Exception)\b")),
    ("a panic message", re.compile(r"panicked at|goroutine \d+ \[")),
)
VERSION = re.compile(r"\d+\.\d+|/\s*v?\d")
BANNER_HEADERS = ("server", "x-powered-by", "x-aspnet-version", "x-aspnetmvc-version",
                  "x-generator")


def leaks(text: str) -> list[str]:
    """What of INTERNALS the text shows, as "<what>: <excerpt>"."""
    found = []
    for what, pattern in INTERNALS:
        match = pattern.search(text)
        if match:
            found.append(f"{what}: {match.group(0)[:80]!r}")
    return found


def envelope_problem(response: httpx.Response) -> str | None:
    """Why the body is not the contract's error envelope, or None when it is."""
    try:
        body = response.json()
    except ValueError:
        kind = response.headers.get("content-type", "no content type")
        return f"the body is not JSON ({kind})"
    if not isinstance(body, dict) or body.get("success") is not False:
        return "the body has no `success: false`"
    error = body.get("error")
    if not isinstance(error, dict) or not error.get("code") or not error.get("message"):
        return "the body has no `error` object with `code` and `message`"
    return None


def undeliverable_job(**extra: Any) -> dict[str, Any]:
    """A job body no server may store: an unknown queue and a priority out of range."""
    return {
        "queue_name": f"conformance-no-such-queue-{secrets.token_hex(6)}",
        "job_type": "conformance_probe", "payload": {}, "priority": 99, **extra,
    }


def judge_error(
    report: Report, client: LiveClient, item: str, what: str, response: httpx.Response,
    expected: tuple[int, ...],
) -> Finding:
    evidence: Evidence = client.evidence(response, what)
    problems = []
    if response.status_code not in expected:
        problems.append(f"answered {response.status_code}")
    envelope = envelope_problem(response)
    if envelope:
        problems.append(envelope)
    problems += [f"the body shows {leak}" for leak in leaks(response.text)]
    wanted = " or ".join(str(s) for s in expected)
    if problems:
        return report.failed(
            item, f"{what}: {'; '.join(problems)}", evidence,
            expected=f"{wanted} in the error envelope, no internals",
            actual=str(response.status_code),
        )
    return report.passed(item, f"{what}: {response.status_code} in the error envelope", evidence)


@check(*ERROR_ITEMS, needs=("target",))
def error_hygiene(ctx: CheckContext) -> Iterator[Finding]:
    """Malformed JSON, non-JSON and oversized bodies get 400/415/413 envelopes, no internals."""
    report = Report(f"{__name__}.error_hygiene")
    with client_for(ctx) as client:
        headers = yield from credential_or_findings(
            report, ERROR_ITEMS, "no credential: without one the server refuses before it reads "
            "the body; give --token, --api-key or --email/--password",
            lambda: auth_headers(ctx, client),
        )
        if headers is None:
            return
        json_headers = {**headers, "Content-Type": "application/json"}
        truncated = json.dumps(undeliverable_job())[:-20]
        response = client.post("/api/v1/jobs", content=truncated, headers=json_headers)
        yield judge_error(report, client, "LIVE-ERROR-MALFORMED-JSON",
                          "POST /api/v1/jobs with truncated JSON", response, (400,))
        response = client.post(
            "/api/v1/jobs", content=json.dumps(undeliverable_job()),
            headers={**headers, "Content-Type": "text/plain"},
        )
        yield judge_error(report, client, "LIVE-ERROR-MEDIA-TYPE",
                          "POST /api/v1/jobs as text/plain", response, (415,))
        limit = known_setting(ctx, "MAX_BODY_BYTES")
        size = (int(limit) if limit and limit.isdigit() else DEFAULT_BODY_LIMIT) + OVERSIZE_MARGIN
        padded = json.dumps(undeliverable_job(payload={"padding": "x" * size}))
        response = client.post("/api/v1/jobs", content=padded, headers=json_headers)
        yield judge_error(report, client, "LIVE-ERROR-OVERSIZED",
                          f"POST /api/v1/jobs with a {len(padded)}-byte body", response, (413,))


@check("LIVE-ERROR-NOT-FOUND", "LIVE-BANNER-VERSION", needs=("target",))
def exposure(ctx: CheckContext) -> Iterator[Finding]:
    """An unknown route gets the 404 envelope; Server and X-Powered-By name no version."""
    report = Report(f"{__name__}.exposure")
    with client_for(ctx) as client:
        try:
            headers = auth_headers(ctx, client) or {}
        except LoginError:
            headers = {}
        path = f"/api/v1/conformance-no-such-route-{secrets.token_hex(4)}"
        unknown = client.get(path, headers=headers)
        health = client.get("/health")
        root = client.get(f"/conformance-no-such-page-{secrets.token_hex(4)}")
    if unknown.status_code == 401 and not headers:
        yield report.not_applicable(
            "LIVE-ERROR-NOT-FOUND", f"GET {path} needs a credential before it is routed: give "
            "--token, --api-key or --email/--password",
        )
    else:
        yield judge_error(report, client, "LIVE-ERROR-NOT-FOUND", f"GET {path} (no such route)",
                          unknown, (404,))
    banners: list[str] = []
    for response in (health, unknown, root):
        for name in BANNER_HEADERS:
            value = response.headers.get(name)
            if value and VERSION.search(value):
                banners.append(f"{name}: {value} (GET {response.request.url.path})")
    evidence = client.evidence(health, "GET /health: response headers")
    if banners:
        yield report.failed(
            "LIVE-BANNER-VERSION", f"a product version is announced: {'; '.join(banners)}",
            evidence, expected="Server/X-Powered-By without a version (or absent)",
            actual=banners[0],
        )
    else:
        shown = ", ".join(f"{n}: {health.headers[n]}" for n in BANNER_HEADERS
                          if n in health.headers) or "no banner headers"
        yield report.passed(
            "LIVE-BANNER-VERSION", f"no version in the banners of 3 responses ({shown})", evidence,
        )


@check("LIVE-REQUEST-ID", needs=("target",))
def request_id(ctx: CheckContext) -> Iterator[Finding]:
    """Every response carries X-Request-ID, the client's own echoed when it sent one."""
    report = Report(f"{__name__}.request_id")
    sent = f"conformance-{secrets.token_hex(8)}"
    with client_for(ctx) as client:
        echoed = client.get("/health", headers={"X-Request-ID": sent})
        fresh = client.get("/health")
    evidence = [client.evidence(echoed, f"GET /health with X-Request-ID {sent}"),
                client.evidence(fresh, "GET /health without X-Request-ID")]
    problems = []
    back = echoed.headers.get("x-request-id")
    if back != sent:
        problems.append(f"our X-Request-ID {sent} came back as {back!r}")
    if not fresh.headers.get("x-request-id"):
        problems.append("a response to a request without one carries no X-Request-ID")
    if problems:
        yield report.failed("LIVE-REQUEST-ID", "; ".join(problems), *evidence,
                            expected=f"X-Request-ID: {sent}, and one on every response",
                            actual=problems[0])
    else:
        yield report.passed("LIVE-REQUEST-ID", "X-Request-ID echoed, and present without one "
                            f"({fresh.headers.get('x-request-id')})", *evidence)
