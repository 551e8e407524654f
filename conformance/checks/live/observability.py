"""Prometheus, Alertmanager and Grafana of any deployment, read through their HTTP APIs (guide 5.1,
6.2). Read-only: GETs of targets, rules, instant queries, status; nothing is written.

The app's scrape target is the one whose series are TaskForge's (taskforge_*), so a deployment's own
job names do not matter; alert rules are recognised by what they read (up == 0, pg_up, the 5xx
share of taskforge_http_*, taskforge_queue_length, node_filesystem_*, certificate expiry series),
not by their names.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import yaml

from conformance.checks.live.common import Report, deployment_input, shorten, target_of
from conformance.checks.live.http import ssl_context
from conformance.checks.registry import check
from conformance.model import Evidence
from conformance.resolve import transport

if TYPE_CHECKING:
    from conformance.checks.registry import CheckContext
    from conformance.model import Finding

TIMEOUT_SECONDS = 10.0
#: How long a target or rule still "unknown" (not scraped or evaluated yet) is waited for: one
#: default scrape interval and a margin.
SETTLE_SECONDS = 25.0
POLL_SECONDS = 1.0
PROMETHEUS_ITEMS = ("OBS-PROMETHEUS-APP-UP", "OBS-DATABASE-MONITORED", "OBS-ALERT-RULES",
                    "OBS-ALERTMANAGER-CONNECTED")
ALERTMANAGER_ITEMS = ("OBS-ALERTMANAGER-RECEIVER",)
GRAFANA_ITEMS = ("OBS-GRAFANA-DATASOURCE", "OBS-GRAFANA-DASHBOARD")
#: Names that resolve nowhere by design (RFC 2606, RFC 6761): a receiver pointing there is silent.
NOWHERE_SUFFIXES = (".invalid", ".example", ".test", ".localhost")
NOWHERE_HOSTS = frozenset({"example.com", "example.org", "example.net", "localhost"})


@dataclass(frozen=True, slots=True)
class Condition:
    name: str
    matches: Callable[[str], bool]


def _reads(*patterns: str) -> Callable[[str], bool]:
    compiled = [re.compile(p) for p in patterns]
    return lambda expr: all(p.search(expr) for p in compiled)


def _any(*tests: Callable[[str], bool]) -> Callable[[str], bool]:
    return lambda expr: any(t(expr) for t in tests)


#: The critical conditions of the issue and guide 6.2, by what a rule for them must read.
CONDITIONS = (
    Condition("app down", _any(_reads(r"(?<![\w:])up\b(\{[^}]*\})?\s*(==|<)\s*[01]\b"),
                               _reads(r"absent\s*\(\s*up\b"))),
    Condition("high error rate", _reads(r"taskforge_http_\w+", r"5\.\.|5xx|\"5")),
    Condition("queue backlog", _reads(r"taskforge_queue_length")),
    Condition("database down", _any(_reads(r"\bpg_up\b"),
                                    _reads(r"(?<![\w:])up\s*\{[^}]*(postgres|pg|db)[^}]*\}"))),
    Condition("disk almost full", _reads(r"node_filesystem_(avail|free)_bytes")),
    Condition("certificate expiry", _reads(
        r"probe_ssl_earliest_cert_expiry|ssl_cert_not_after|x509_cert_not_after"
        r"|ssl_certificate_expiry|cert\w*expir")),
)


class ApiError(RuntimeError):
    def __init__(self, message: str, evidence: Evidence) -> None:
        super().__init__(message)
        self.evidence = evidence


class Api:
    """GETs against one observability service, each kept as evidence (curl, status, excerpt)."""

    def __init__(self, ctx: CheckContext, base_url: str, what: str,
                 headers: dict[str, str] | None = None) -> None:
        target = target_of(ctx)
        self.base_url = base_url.rstrip("/")
        self.what = what
        self._shown_headers = {k: ("Bearer <redacted>" if k.lower() == "authorization" else v)
                               for k, v in (headers or {}).items()}
        verify = ssl_context(target) if urlsplit(base_url).scheme == "https" else True
        self.http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=TIMEOUT_SECONDS,
            transport=transport(target.resolve_map, verify=verify), follow_redirects=False,
        )

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def evidence(self, response: httpx.Response | None, path: str, summary: str = "") -> Evidence:
        header_args = "".join(f" -H '{k}: {v}'" for k, v in self._shown_headers.items())
        return Evidence(
            kind="http", summary=summary or f"{self.what}: GET {path}",
            curl=f"curl -sS{header_args} '{self.base_url}{path}'",
            status_code=response.status_code if response is not None else None,
            output=shorten(response.text, 800) if response is not None else None,
        )

    def get(self, path: str, **params: str) -> tuple[Any, Evidence]:
        """The JSON body of a 200 answer (Prometheus' envelope unwrapped to `data`)."""
        try:
            response = self.http.get(path, params=params or None)
        except httpx.HTTPError as exc:
            raise ApiError(f"{self.what} at {self.base_url} did not answer {path}: "
                           f"{type(exc).__name__}", self.evidence(None, path)) from None
        evidence = self.evidence(response, path + (f"?{response.request.url.query.decode()}"
                                                   if params else ""))
        if response.status_code != 200:
            raise ApiError(f"{self.what} answered {path} with {response.status_code}", evidence)
        try:
            body = response.json()
        except ValueError:
            raise ApiError(f"{self.what} answered {path} with no JSON", evidence) from None
        if isinstance(body, dict) and body.get("status") == "success" and "data" in body:
            return body["data"], evidence
        return body, evidence


# --- Prometheus --------------------------------------------------------------------------------


def _query(api: Api, promql: str) -> tuple[list[dict[str, Any]], Evidence]:
    data, evidence = api.get("/api/v1/query", query=promql)
    result = data.get("result") if isinstance(data, dict) else None
    return (result if isinstance(result, list) else []), evidence


def app_jobs(api: Api) -> tuple[set[str], Evidence]:
    """The scrape jobs whose series are TaskForge's own metrics."""
    series, evidence = _query(api, 'count by (job) ({__name__=~"taskforge_.+"})')
    return {str(s.get("metric", {}).get("job")) for s in series if s.get("metric")}, evidence


def _settled(fetch: Callable[[], tuple[Any, Evidence]], unsettled: Callable[[Any], bool],
             ) -> tuple[Any, Evidence]:
    """Fetch until nothing is 'unknown' any more (first scrape or evaluation), bounded."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        value, evidence = fetch()
        if not unsettled(value) or time.monotonic() >= deadline:
            return value, evidence
        time.sleep(POLL_SECONDS)


def _targets(api: Api) -> tuple[list[dict[str, Any]], Evidence]:
    data, evidence = api.get("/api/v1/targets", state="active")
    active = data.get("activeTargets") if isinstance(data, dict) else None
    return (active if isinstance(active, list) else []), evidence


def _app_targets(api: Api) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[Evidence]]:
    """(the app's targets, all targets, evidence), once no target of the app awaits a scrape."""
    jobs, jobs_evidence = app_jobs(api)

    def fetch() -> tuple[Any, Evidence]:
        return _targets(api)

    def unsettled(targets: list[dict[str, Any]]) -> bool:
        # No target at all: a Prometheus that just started has not read its configuration yet.
        return not targets or any(t.get("health") == "unknown" for t in targets
                   if not jobs or t.get("labels", {}).get("job") in jobs)

    targets, evidence = _settled(fetch, unsettled)
    if not jobs:  # no TaskForge series at all: maybe never scraped yet, or not configured
        jobs, jobs_evidence = app_jobs(api)
    mine = [t for t in targets if t.get("labels", {}).get("job") in jobs]
    if not mine:
        # A configured app target that has never answered has no series: recognise it by name.
        mine = [t for t in targets
                if re.search(r"taskforge|\bapp\b", str(t.get("scrapeUrl", "")) + " "
                             + str(t.get("labels", {}).get("job", "")))]
    return mine, targets, [jobs_evidence, evidence]


def _describe(target: dict[str, Any]) -> str:
    labels = target.get("labels", {})
    error = f" ({target['lastError']})" if target.get("lastError") else ""
    return (f"{labels.get('job')} {target.get('scrapeUrl') or labels.get('instance')}: "
            f"{target.get('health')}{error}")


def _judge_app(report: Report, api: Api) -> Finding:
    mine, targets, evidence = _app_targets(api)
    item = "OBS-PROMETHEUS-APP-UP"
    if not mine:
        jobs = sorted({str(t.get("labels", {}).get("job")) for t in targets})
        return report.failed(
            item, "no Prometheus scrape target serves TaskForge metrics (taskforge_*); jobs: "
            f"{', '.join(jobs) or 'none'}", *evidence,
            expected="a scrape job for the app's metrics endpoint, up", actual="none",
        )
    down = [t for t in mine if t.get("health") != "up"]
    shown = "; ".join(_describe(t) for t in mine)
    if down:
        return report.failed(item, f"the app's scrape target is not up: {shown}", *evidence,
                             expected="health up", actual=shown)
    return report.passed(item, f"Prometheus scrapes the app: {shown}", *evidence)


def _judge_database(report: Report, api: Api) -> Finding:
    item = "OBS-DATABASE-MONITORED"

    def fetch() -> tuple[Any, Evidence]:
        return _query(api, "pg_up")

    series, evidence = _settled(fetch, lambda s: not s)
    if not series:
        return report.failed(
            item, "Prometheus holds no pg_up series: no PostgreSQL exporter is scraped",
            evidence, expected="pg_up = 1 from a scraped postgres-exporter", actual="no series",
        )
    shown = ", ".join(f"{s['metric'].get('job')}/{s['metric'].get('instance')} = {s['value'][1]}"
                      for s in series)
    if any(s["value"][1] != "1" for s in series):
        return report.failed(item, f"the exporter cannot reach PostgreSQL: pg_up {shown}",
                             evidence, expected="pg_up = 1", actual=shown)
    return report.passed(item, f"the PostgreSQL exporter is scraped and reaches the database: "
                               f"pg_up {shown}", evidence)


def _rules(api: Api) -> tuple[list[dict[str, Any]], Evidence]:
    data, evidence = api.get("/api/v1/rules", type="alert")
    groups = data.get("groups") if isinstance(data, dict) else None
    rules = [r for g in (groups if isinstance(groups, list) else []) for r in g.get("rules", [])]
    return rules, evidence


def _judge_rules(report: Report, api: Api) -> Finding:
    item = "OBS-ALERT-RULES"
    rules, evidence = _settled(lambda: _rules(api),
                               lambda rs: not rs or any(r.get("health") == "unknown" for r in rs))
    found: dict[str, list[dict[str, Any]]] = {
        c.name: [r for r in rules if c.matches(str(r.get("query", "")))] for c in CONDITIONS
    }
    missing = [name for name, matched in found.items() if not matched]
    unhealthy = [f"{r.get('name')} ({r.get('health')}: {r.get('lastError') or 'no error'})"
                 for matched in found.values() for r in matched if r.get("health") != "ok"]
    shown = "; ".join(f"{name}: {', '.join(str(r.get('name')) for r in matched) or '-'}"
                      for name, matched in found.items())
    if missing or unhealthy:
        problems = ([f"no rule for {', '.join(missing)}"] if missing else []) + (
            [f"unhealthy: {', '.join(unhealthy)}"] if unhealthy else [])
        return report.failed(item, f"{'; '.join(problems)} ({len(rules)} alert rules loaded)",
                             evidence, expected=", ".join(c.name for c in CONDITIONS),
                             actual=shown)
    return report.passed(item, f"{len(rules)} alert rules loaded and healthy; {shown}", evidence)


def _judge_alertmanagers(report: Report, api: Api) -> Finding:
    item = "OBS-ALERTMANAGER-CONNECTED"
    data, evidence = api.get("/api/v1/alertmanagers")
    active = data.get("activeAlertmanagers") if isinstance(data, dict) else None
    urls = [str(a.get("url")) for a in (active if isinstance(active, list) else [])]
    if not urls:
        return report.failed(item, "Prometheus has no active Alertmanager: alerts reach nobody",
                             evidence, expected="at least one active Alertmanager", actual="none")
    return report.passed(item, f"Prometheus sends alerts to {', '.join(urls)}", evidence)


@check(*PROMETHEUS_ITEMS, needs=("target",))
def prometheus(ctx: CheckContext) -> Iterator[Finding]:
    """Prometheus scrapes the app and the database exporter, loads the rules, has Alertmanager."""
    report = Report(f"{__name__}.prometheus")
    url = deployment_input(ctx, "prometheus_url")
    if url is None:
        why = _absent_reason(ctx, "Prometheus", "--prometheus-url")
        for item in PROMETHEUS_ITEMS:
            yield report.not_applicable(item, why)
        return
    with Api(ctx, url, "Prometheus") as api:
        for judge, item in ((_judge_app, "OBS-PROMETHEUS-APP-UP"),
                            (_judge_database, "OBS-DATABASE-MONITORED"),
                            (_judge_rules, "OBS-ALERT-RULES"),
                            (_judge_alertmanagers, "OBS-ALERTMANAGER-CONNECTED")):
            try:
                yield judge(report, api)
            except ApiError as exc:
                yield report.failed(item, str(exc), exc.evidence)


# --- Alertmanager ------------------------------------------------------------------------------


def _route_receivers(route: dict[str, Any]) -> list[str]:
    names = [str(route["receiver"])] if route.get("receiver") else []
    for child in route.get("routes") or []:
        if isinstance(child, dict):
            names += _route_receivers(child)
    return names


def _destinations(integration: Any) -> list[str]:
    """The URLs and addresses an integration delivers to (url, api_url, to, smarthost...)."""
    found: list[str] = []
    if isinstance(integration, dict):
        for key, value in integration.items():
            if key in ("url", "api_url", "smarthost", "to", "webhook_url") and value:
                found.append(str(value))
            elif isinstance(value, dict | list):
                found += _destinations(value)
    elif isinstance(integration, list):
        for value in integration:
            found += _destinations(value)
    return found


def _nowhere(destination: str) -> bool:
    host = urlsplit(destination).hostname if "//" in destination else (
        destination.rsplit("@", 1)[-1].split(":")[0])
    host = (host or "").lower().rstrip(".")
    return host in NOWHERE_HOSTS or host.endswith(NOWHERE_SUFFIXES)


def receiver_problems(config: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(problems, what each routed receiver delivers to) of an Alertmanager configuration."""
    receivers = {str(r.get("name")): r for r in config.get("receivers") or []
                 if isinstance(r, dict)}
    routed = list(dict.fromkeys(_route_receivers(config.get("route") or {})))
    problems, shown = [], []
    if not routed:
        problems.append("the route names no receiver")
    for name in routed:
        receiver = receivers.get(name)
        integrations = {k: v for k, v in (receiver or {}).items()
                        if k.endswith("_configs") and v}
        destinations = _destinations(list(integrations.values()))
        shown.append(f"{name}: {', '.join(sorted(integrations)) or 'no integration'}"
                     + (f" -> {', '.join(destinations)}" if destinations else ""))
        if receiver is None:
            problems.append(f"receiver {name} is routed to but not defined")
        elif not integrations:
            problems.append(f"receiver {name} has no integration (a black hole)")
        elif destinations and all(_nowhere(d) for d in destinations):
            problems.append(f"receiver {name} delivers only to names that resolve nowhere "
                            f"({', '.join(destinations)})")
    return problems, shown


@check(*ALERTMANAGER_ITEMS, needs=("target",))
def alertmanager(ctx: CheckContext) -> Iterator[Finding]:
    """Alertmanager answers ready and routes to a receiver that delivers somewhere."""
    report = Report(f"{__name__}.alertmanager")
    item = ALERTMANAGER_ITEMS[0]
    url = deployment_input(ctx, "alertmanager_url")
    if url is None:
        yield report.not_applicable(item, _absent_reason(ctx, "Alertmanager", "--alertmanager-url"))
        return
    with Api(ctx, url, "Alertmanager") as api:
        try:
            response = api.http.get("/-/ready")
            ready = api.evidence(response, "/-/ready")
            if response.status_code != 200:
                yield report.failed(item, f"Alertmanager is not ready: /-/ready answered "
                                          f"{response.status_code}", ready)
                return
            status, evidence = api.get("/api/v2/status")
        except ApiError as exc:
            yield report.failed(item, str(exc), exc.evidence)
            return
        except httpx.HTTPError as exc:
            yield report.failed(item, f"Alertmanager at {url} did not answer: "
                                      f"{type(exc).__name__}", api.evidence(None, "/-/ready"))
            return
    original = (status.get("config") or {}).get("original") if isinstance(status, dict) else None
    try:
        config = yaml.safe_load(str(original or "")) or {}
    except yaml.YAMLError:
        config = {}
    if not isinstance(config, dict) or not config:
        yield report.failed(item, "Alertmanager's /api/v2/status shows no configuration",
                            ready, evidence)
        return
    problems, shown = receiver_problems(config)
    if problems:
        yield report.failed(item, f"ready, but {'; '.join(problems)}", ready, evidence,
                            expected="a routed receiver that delivers to a reachable system",
                            actual="; ".join(shown))
        return
    yield report.passed(item, f"ready; alerts go to {'; '.join(shown)}", ready, evidence)


# --- Grafana -----------------------------------------------------------------------------------


#: Grafana's title search is a case-insensitive substring match (GET /api/search?query=).
DASHBOARD_QUERY = "TaskForge"


def _grafana_datasource(report: Report, api: Api) -> Finding:
    item = "OBS-GRAFANA-DATASOURCE"
    sources, listing = api.get("/api/datasources")
    prometheus = [s for s in sources if isinstance(s, dict) and s.get("type") == "prometheus"] \
        if isinstance(sources, list) else []
    if not prometheus:
        return report.failed(item, "Grafana has no Prometheus datasource", listing,
                             expected="a datasource of type prometheus", actual="none")
    healthy, unhealthy, evidence = [], [], [listing]
    for source in prometheus:
        # Grafana answers 200 {"status": "OK"} for a datasource that answers its query, 400
        # {"status": "ERROR", "message": ...} for one that does not: both are a judgement.
        path = f"/api/datasources/uid/{source.get('uid')}/health"
        try:
            response = api.http.get(path)
        except httpx.HTTPError as exc:
            raise ApiError(f"Grafana did not answer {path}: {type(exc).__name__}",
                           api.evidence(None, path)) from None
        evidence.append(api.evidence(response, path))
        if response.status_code in (401, 403):
            raise ApiError(f"Grafana answered {path} with {response.status_code}", evidence[-1])
        try:
            body = response.json()
        except ValueError:
            body = None
        status = str(body.get("status")) if isinstance(body, dict) else "no JSON"
        name = str(source.get("name"))
        if response.status_code == 200 and status.upper() == "OK":
            healthy.append(name)
        else:
            said = body.get("message") if isinstance(body, dict) else None
            unhealthy.append(f"{name}: {response.status_code} {status}"
                             + (f" ({shorten(str(said), 200)})" if said else ""))
    if healthy:
        return report.passed(item, f"Prometheus datasource healthy: {', '.join(healthy)}"
                             + (f" (unhealthy: {'; '.join(unhealthy)})" if unhealthy else ""),
                             *evidence)
    return report.failed(item, f"no Prometheus datasource answers its health check: "
                               f"{'; '.join(unhealthy)}", *evidence,
                         expected="status OK", actual="; ".join(unhealthy))


def _grafana_dashboard(report: Report, api: Api) -> Finding:
    item = "OBS-GRAFANA-DASHBOARD"
    found, evidence = api.get("/api/search", type="dash-db", query=DASHBOARD_QUERY)
    titles = [str(d.get("title")) for d in found if isinstance(d, dict)
              and d.get("type", "dash-db") == "dash-db"] if isinstance(found, list) else []
    if titles:
        return report.passed(item, f"dashboards: {', '.join(titles)}", evidence)
    return report.failed(item, f"no dashboard whose title names {DASHBOARD_QUERY}", evidence,
                         expected=f"a dashboard titled {DASHBOARD_QUERY} ...", actual="none")


@check(*GRAFANA_ITEMS, needs=("target",))
def grafana(ctx: CheckContext) -> Iterator[Finding]:
    """Grafana's Prometheus datasource is healthy and a TaskForge dashboard exists."""
    report = Report(f"{__name__}.grafana")
    url, token = deployment_input(ctx, "grafana_url"), deployment_input(ctx, "grafana_token")
    if url is None or token is None:
        why = _absent_reason(ctx, "Grafana", "--grafana-url and --grafana-token")
        for item in GRAFANA_ITEMS:
            yield report.not_applicable(item, why)
        return
    with Api(ctx, url, "Grafana", headers={"Authorization": f"Bearer {token}"}) as api:
        for item, judge in zip(GRAFANA_ITEMS, (_grafana_datasource, _grafana_dashboard),
                               strict=True):
            try:
                yield judge(report, api)
            except ApiError as exc:
                if exc.evidence.status_code in (401, 403):
                    # The token is the run's input, not the deployment's state: nothing judged.
                    yield report.error(item, f"{exc}: Grafana refused --grafana-token (a "
                                             "service-account token with Viewer's role reads "
                                             "both)", exc.evidence)
                else:
                    yield report.failed(item, str(exc), exc.evidence)


def _absent_reason(ctx: CheckContext, what: str, option: str) -> str:
    target = target_of(ctx)
    if target.provider == "embedded":
        return (f"the embedded stack runs no {what}: `--stack docker` stands the whole "
                f"deployment up, or pass {option} for yours")
    if target.provider == "docker" and what == "Grafana":
        return ("TASKFORGE_GRAFANA_IMAGE is unset: Grafana runs on the docker stack only when it "
                "names an image (none is built from Debian packages); or pass --grafana-url and "
                "--grafana-token")
    if target.provider == "docker" and target.front_door is None:
        return f"the docker stack ran without its deployment: {what} not started; pass {option}"
    return f"no {what} given: pass {option}"
