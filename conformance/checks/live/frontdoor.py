"""The front door (NGINX or another proxy) as the public sees it (guide 5.1, 6.1).

The app's metrics must answer where Prometheus scrapes them (--metrics-url) and be refused at
the public URL; and the answers the front door gives by itself (the refused metrics path, a bad
Host) must carry the security headers, which only headers configured in the proxy can do. Each
finding says which hop answered: the app (its JSON envelope) or the front door (its own page).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.parser import text_string_to_metric_families

from conformance.checks.live.common import Report, deployment_input, metrics_path, target_of
from conformance.checks.live.http import client_for, metrics_client
from conformance.checks.registry import check

if TYPE_CHECKING:
    import httpx

    from conformance.checks.registry import CheckContext
    from conformance.model import Finding

#: Header -> what it is called in findings.
SECURITY_HEADERS = {
    "strict-transport-security": "HSTS",
    "content-security-policy": "CSP",
    "x-content-type-options": "X-Content-Type-Options",
    "x-frame-options": "X-Frame-Options",
    "referrer-policy": "Referrer-Policy",
}
#: Server header words of reverse proxies: an answer naming one and not in the app's JSON is the
#: proxy's own.
PROXIES = ("nginx", "apache", "caddy", "envoy", "haproxy", "traefik", "cloudflare", "openresty")


def hop(response: httpx.Response, *, authenticated: bool = False) -> str:
    """Who answered: the app (a JSON body, as the contract's every answer) or the front door.

    A proxy may answer in the API's envelope too (compose/nginx's own 429 and 503): on a request
    that carried a credential, a JSON answer without X-RateLimit-Limit, which the contract puts on
    every authenticated answer of the app, and with a proxy's Server header is the proxy's own.
    """
    server = response.headers.get("server", "")
    if "json" in response.headers.get("content-type", ""):
        if (authenticated and "x-ratelimit-limit" not in response.headers
                and any(name in server.lower() for name in PROXIES)):
            return (f"the front door ({server}, in the API's envelope, without the X-RateLimit-* "
                    "headers of the app's authenticated answers)")
        return f"the app (JSON answer{', through ' + server if server else ''})"
    if not response.content:
        # No body to tell by (a 204 preflight, a 304): what Server names relayed it or made it.
        return f"{server or 'a server without a Server header'} (no body: relayed or its own)"
    return f"the front door ({server or 'no Server header'}, its own page)"


def _front_doors_own(response: httpx.Response, front_door: str | None) -> bool:
    if "json" in response.headers.get("content-type", ""):
        return False
    server = response.headers.get("server", "").lower()
    return bool(front_door) or any(name in server for name in PROXIES)


def _no_front_door(ctx: CheckContext) -> str | None:
    target = target_of(ctx)
    if target.provider == "embedded":
        return ("the embedded stack serves the app without a front door (NGINX): "
                "`--stack docker` stands the reference deployment up behind NGINX")
    if target.provider == "docker" and target.front_door is None:
        return "the docker stack ran without its deployment (no NGINX)"
    return None


def _is_metrics(response: httpx.Response) -> bool:
    if response.status_code != 200:
        return False
    try:
        return any(True for _ in text_string_to_metric_families(response.text))
    except (ValueError, TypeError):
        return False


@check("FRONTDOOR-METRICS-PRIVATE", needs=("target",))
def metrics_private(ctx: CheckContext) -> Iterator[Finding]:
    """--metrics-url serves Prometheus text; the public URL refuses the same path."""
    report = Report(f"{__name__}.metrics_private")
    item = "FRONTDOOR-METRICS-PRIVATE"
    no_door = _no_front_door(ctx)
    if no_door is not None:
        yield report.not_applicable(item, no_door)
        return
    if deployment_input(ctx, "metrics_url") is None:
        yield report.not_applicable(
            item, "pass --metrics-url with the address Prometheus scrapes the app at: without "
                  "it the public URL is the only address known, and it should refuse metrics")
        return
    scraper, path, where = metrics_client(ctx)
    with scraper:
        scraped = scraper.get(path)
        scraped_evidence = scraper.evidence(scraped, f"GET {path} at {where}")
    public_path = metrics_path(ctx)
    with client_for(ctx) as client:
        public = client.get(public_path)
        public_evidence = client.evidence(
            public, f"GET {public_path} at the public URL: answered by {hop(public)}")
    if not _is_metrics(scraped):
        yield report.failed(
            item, f"{where} answered {scraped.status_code} without Prometheus text",
            scraped_evidence, public_evidence, expected="200 with Prometheus text",
            actual=str(scraped.status_code),
        )
    elif _is_metrics(public):
        yield report.failed(
            item, f"the public URL serves the metrics too ({public_path}: 200, answered by "
                  f"{hop(public)}): anyone reads every tenant's queue names and job types",
            scraped_evidence, public_evidence, expected="401, 403 or 404 at the public URL",
            actual="200 with metrics",
        )
    else:
        yield report.passed(
            item, f"metrics answer at {where}; the public URL refuses {public_path} with "
                  f"{public.status_code} (answered by {hop(public)})",
            scraped_evidence, public_evidence,
        )


@check("FRONTDOOR-HEADERS", needs=("target",))
def front_door_headers(ctx: CheckContext) -> Iterator[Finding]:
    """Answers the front door gives by itself carry every security header."""
    report = Report(f"{__name__}.front_door_headers")
    item = "FRONTDOOR-HEADERS"
    no_door = _no_front_door(ctx)
    if no_door is not None:
        yield report.not_applicable(item, no_door)
        return
    target = target_of(ctx)
    own, evidence = [], []
    with client_for(ctx) as client:
        # Read-only probes the proxy answers itself in a typical set-up: the metrics path it
        # refuses, and a request whose Host header is malformed.
        for path, headers in ((metrics_path(ctx), {}), ("/health", {"Host": "bad..host"})):
            response = client.get(path, headers=headers, retry_429=False)
            who = hop(response)
            evidence.append(client.evidence(response, f"GET {path} "
                                            f"{'(bad Host) ' if headers else ''}answered by {who}"))
            if _front_doors_own(response, target.front_door):
                own.append((path, response))
    if not own:
        yield report.not_applicable(
            item, "every probed answer came from the app, so the front door's own headers "
                  "cannot be told from the app's (judged by LIVE-HEADER-* instead)")
        return
    missing = sorted({SECURITY_HEADERS[name] for _, response in own
                      for name in SECURITY_HEADERS if name not in response.headers})
    answers = ", ".join(f"{path} {response.status_code}" for path, response in own)
    if missing:
        yield report.failed(
            item, f"the front door's own answers ({answers}) lack {', '.join(missing)}",
            *evidence, expected=", ".join(SECURITY_HEADERS.values()),
            actual=f"missing {', '.join(missing)}",
        )
    else:
        yield report.passed(
            item, f"the front door's own answers ({answers}) carry all "
                  f"{len(SECURITY_HEADERS)} security headers", *evidence,
        )
