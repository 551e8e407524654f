"""CORS: an allowed origin is echoed, a foreign origin gets no Access-Control-Allow-Origin."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from conformance.checks.live.common import Report, target_env
from conformance.checks.live.frontdoor import hop
from conformance.checks.live.http import LiveClient, client_for
from conformance.checks.registry import check

if TYPE_CHECKING:
    import httpx

    from conformance.checks.registry import CheckContext
    from conformance.model import Evidence, Finding

FOREIGN_ORIGIN = "https://evil.example"
PREFLIGHT_PATH = "/api/v1/jobs"
SIMPLE_PATH = "/health"


def allowed_origin(ctx: CheckContext) -> str | None:
    """The origin to try as allowed: --cors-origin, else the first configured one."""
    if ctx.cors_origin:
        return ctx.cors_origin
    configured = [
        o.strip() for o in target_env(ctx).get("CORS_ALLOWED_ORIGINS", "").split(",") if o.strip()
    ]
    return next((o for o in configured if o != "*"), None)


def _evidence(client: LiveClient, simple: httpx.Response,
              preflight: httpx.Response) -> tuple[Evidence, Evidence]:
    """Each exchange with the hop that answered it (the app, or a front door in front of it)."""
    return (client.evidence(simple, f"GET {SIMPLE_PATH} with Origin, answered by {hop(simple)}"),
            client.evidence(preflight, f"CORS preflight, answered by {hop(preflight)}"))


def _exchanges(client: LiveClient, origin: str) -> tuple[httpx.Response, httpx.Response]:
    simple = client.get(SIMPLE_PATH, headers={"Origin": origin})
    preflight = client.request(
        "OPTIONS", PREFLIGHT_PATH,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    return simple, preflight


@check("LIVE-CORS-ALLOWED", needs=("target",))
def cors_allowed(ctx: CheckContext) -> Iterator[Finding]:
    """A configured origin gets Access-Control-Allow-Origin on requests and on the preflight."""
    report = Report(f"{__name__}.cors_allowed")
    origin = allowed_origin(ctx)
    if origin is None:
        yield report.not_applicable(
            "LIVE-CORS-ALLOWED", "no allowed origin known: pass --cors-origin https://app.example"
        )
        return
    with client_for(ctx) as client:
        simple, preflight = _exchanges(client, origin)
        evidence = _evidence(client, simple, preflight)
    problems = []
    for name, response in (("request", simple), ("preflight", preflight)):
        acao = response.headers.get("access-control-allow-origin")
        if acao not in (origin, "*"):
            problems.append(f"{name}: Access-Control-Allow-Origin is {acao!r}")
    methods = preflight.headers.get("access-control-allow-methods", "")
    if preflight.status_code >= 400:
        problems.append(f"preflight answered {preflight.status_code}")
    elif "POST" not in methods.upper() and methods.strip() != "*":
        problems.append(f"preflight allows methods {methods!r}, not POST")
    if problems:
        yield report.failed(
            "LIVE-CORS-ALLOWED", f"{origin} is configured but refused: {'; '.join(problems)}",
            *evidence, expected=f"Access-Control-Allow-Origin: {origin}",
        )
    else:
        yield report.passed(
            "LIVE-CORS-ALLOWED", f"{origin} allowed on request and preflight", *evidence
        )


@check("LIVE-CORS-FOREIGN", needs=("target",))
def cors_foreign(ctx: CheckContext) -> Iterator[Finding]:
    """A foreign origin gets no Access-Control-Allow-Origin, neither on requests nor preflights."""
    report = Report(f"{__name__}.cors_foreign")
    with client_for(ctx) as client:
        simple, preflight = _exchanges(client, FOREIGN_ORIGIN)
        evidence = _evidence(client, simple, preflight)
    granted = [
        f"{name}: {response.headers['access-control-allow-origin']!r}"
        for name, response in (("request", simple), ("preflight", preflight))
        if "access-control-allow-origin" in response.headers
    ]
    if granted:
        yield report.failed(
            "LIVE-CORS-FOREIGN", f"{FOREIGN_ORIGIN} is allowed: {'; '.join(granted)}", *evidence,
            expected="no Access-Control-Allow-Origin", actual="; ".join(granted),
        )
    else:
        yield report.passed(
            "LIVE-CORS-FOREIGN", f"{FOREIGN_ORIGIN} gets no Access-Control-Allow-Origin", *evidence
        )
