"""The Prometheus endpoint: it answers, parses as exposition format, has the contract's names."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import httpx
from prometheus_client.parser import text_string_to_metric_families

from conformance.checks.live.common import (
    Report,
    deployment_input,
    known_setting,
    may_write,
    metrics_path,
    target_of,
)
from conformance.checks.live.http import (
    READ_TIMEOUT_SECONDS,
    USER_AGENT,
    LiveClient,
    LoginError,
    auth_headers,
    client_for,
    payload_of,
)
from conformance.checks.registry import check

if TYPE_CHECKING:
    from conformance.checks.registry import CheckContext
    from conformance.model import Finding

#: The metric names of the API contract ("Metrics"); counters carry `_total` on the wire.
CONTRACT_METRICS = (
    "taskforge_job_submitted_total",
    "taskforge_job_processed_total",
    "taskforge_job_processing_duration_seconds",
    "taskforge_job_wait_duration_seconds",
    "taskforge_queue_length",
    "taskforge_worker_active_count",
    "taskforge_http_request_duration_seconds",
    "taskforge_db_pool_connections",
    "taskforge_redis_up",
)
METRICS_ITEMS = ("LIVE-METRICS", "LIVE-METRICS-PROMETHEUS", "LIVE-METRICS-NAMES")


def exposed_names(text: str) -> set[str]:
    """Every family and sample name in an exposition (families without samples count too)."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        if family.type == "counter":
            names.add(family.name + "_total")  # the parser strips the suffix from counters
        names.update(sample.name for sample in family.samples)
    return names


#: Labels whose values a tenant chooses: a public exposition carrying them leaks tenants' data.
#: (job_type is judged by the planted marker only: built-in types such as test_job are shared.)
TENANT_LABELS = frozenset({"queue", "organization", "organization_id", "org", "tenant"})
#: Values that name no tenant: the queue every organisation gets, and folded buckets.
SHARED_VALUES = frozenset({"", "default", "other", "_other", "__other__"})
REFUSED = (401, 403, 404)
PUBLIC_ITEMS = ("LIVE-METRICS-PUBLIC", "LIVE-METRICS-TENANT-DATA")


def is_exposition(response: httpx.Response) -> bool:
    """A 200 whose body parses as Prometheus text with at least one family."""
    if response.status_code != 200:
        return False
    try:
        return bool(exposed_names(response.text))
    except ValueError:
        return False


def tenant_values(text: str) -> set[str]:
    """`label=value` of every sample label that names a tenant's object."""
    found: set[str] = set()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            for label, value in sample.labels.items():
                if label in TENANT_LABELS and value not in SHARED_VALUES:
                    found.add(f"{label}={value}")
    return found


def scrape(ctx: CheckContext, client: LiveClient) -> tuple[httpx.Response, str]:
    """GET the metrics as Prometheus would: at --metrics-url when given, else the metrics path
    of the public URL, anonymously and then with the run's credential; (response, how)."""
    metrics_url = deployment_input(ctx, "metrics_url")  # given, or the deployment's own
    if metrics_url:
        with httpx.Client(verify=client.target.verify, timeout=READ_TIMEOUT_SECONDS,
                          headers={"User-Agent": USER_AGENT}) as direct:
            return direct.get(metrics_url), f"at --metrics-url {metrics_url}"
    path = metrics_path(ctx)
    response = client.get(path)
    if response.status_code in (401, 403):
        try:
            headers = auth_headers(ctx, client)
        except LoginError:
            headers = None  # the refused login is the finding of the items that log in
        if headers:
            return client.get(path, headers=headers), f"at {path} with a credential"
    return response, f"at {path} anonymously"


def public_refusal(ctx: CheckContext, response: httpx.Response) -> str | None:
    """How to read a public answer that is not the metrics: "refused" (401/403, or a 404 from a
    foreign target whose metrics are known to be on), "unknown" (404, settings unknown), else
    None (a failure: the metrics are off, or the answer is no refusal)."""
    if deployment_input(ctx, "metrics_url") or response.status_code not in REFUSED:
        return None
    enabled = known_setting(ctx, "METRICS_ENABLED")
    if enabled is not None and enabled.strip().lower() in {"false", "0", "no", "off"}:
        return None
    if response.status_code in (401, 403):
        return "refused"
    if enabled is None:
        return "unknown"
    return None if target_of(ctx).is_reference else "refused"


@check(*METRICS_ITEMS, needs=("target",))
def metrics(ctx: CheckContext) -> Iterator[Finding]:
    """The metrics answer 200 in Prometheus text format with the contract's names, where
    Prometheus scrapes them (--metrics-url), else on the public URL."""
    report = Report(f"{__name__}.metrics")
    path = metrics_path(ctx)
    with client_for(ctx) as client:
        response, how = scrape(ctx, client)
        evidence = client.evidence(response, f"GET metrics {how}")
    refusal = public_refusal(ctx, response)
    if refusal == "refused":
        # The guide's front door refuses the metrics publicly; Prometheus scrapes elsewhere.
        message = (f"the public URL refuses anonymous scrapes of {path} "
                   f"({response.status_code}); give --metrics-url, the address Prometheus "
                   "scrapes, to judge the scrape itself")
        yield report.passed("LIVE-METRICS", message, evidence)
        yield report.passed("LIVE-METRICS-PROMETHEUS", message, evidence)
        yield report.not_applicable(
            "LIVE-METRICS-NAMES", f"no exposition seen: {path} is refused publicly; give "
            "--metrics-url, the address Prometheus scrapes")
        return
    if refusal == "unknown":
        for item in METRICS_ITEMS:
            yield report.not_applicable(
                item, f"{path} answers 404 over the public URL: refused there or disabled, the "
                "kit cannot tell; give --metrics-url, the address Prometheus scrapes")
        return
    if response.status_code != 200:
        for item in METRICS_ITEMS:
            yield report.failed(
                item, f"metrics {how} answered {response.status_code}", evidence,
                expected="200 with Prometheus text", actual=str(response.status_code),
            )
        return
    try:
        names = exposed_names(response.text)
    except ValueError as exc:
        for item in METRICS_ITEMS:
            yield report.failed(
                item, f"metrics {how} are not in Prometheus text format: {exc}", evidence,
            )
        return
    yield report.passed(
        "LIVE-METRICS", f"metrics answer {how}: {len(names)} names parsed", evidence
    )
    yield report.passed(
        "LIVE-METRICS-PROMETHEUS", f"metrics scrape {how} in Prometheus text format", evidence
    )
    missing = [name for name in CONTRACT_METRICS if name not in names]
    if missing:
        yield report.failed(
            "LIVE-METRICS-NAMES", f"missing contract metrics: {', '.join(missing)}", evidence,
            expected=", ".join(CONTRACT_METRICS), actual=f"missing {', '.join(missing)}",
        )
    else:
        yield report.passed(
            "LIVE-METRICS-NAMES", f"all {len(CONTRACT_METRICS)} contract metrics exposed", evidence
        )


def _environment(ctx: CheckContext) -> str | None:
    value = known_setting(ctx, "APP_ENVIRONMENT")
    return value.strip().lower() if value else None


def _plant_marker(
    client: LiveClient, headers: dict[str, str]
) -> tuple[str | None, str | None]:
    """A job of a unique type, due tomorrow (so nothing runs it): (job id, job type)."""
    job_type = f"conformance_marker_{secrets.token_hex(6)}"
    due = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    response = client.post("/api/v1/jobs", headers=headers, json={
        "queue_name": "default", "job_type": job_type, "payload": {}, "scheduled_for": due,
    })
    job = payload_of(response)
    if response.status_code in (200, 201) and isinstance(job, dict) and job.get("id"):
        return str(job["id"]), job_type
    return None, None


@check(*PUBLIC_ITEMS, needs=("target",))
def public_metrics(ctx: CheckContext) -> Iterator[Finding]:
    """In production the public URL serves no metrics to anonymous callers, and whatever it
    serves names no tenant's queues or job types."""
    report = Report(f"{__name__}.public_metrics")
    path = metrics_path(ctx)
    target = target_of(ctx)
    environment = _environment(ctx)
    if target.is_reference and target.provider == "embedded":
        # Its one URL is also where a scraper on the machine reads the metrics (the reference
        # server serves them to loopback and private networks): there is no public URL to judge.
        for item in PUBLIC_ITEMS:
            yield report.not_applicable(
                item, "the embedded reference stack has no front door: its one URL is the "
                "app's own, on loopback; the docker stack and --target-url are judged")
        return
    with client_for(ctx) as client:
        marker_id = marker_type = None
        headers = None
        if may_write(ctx):
            try:
                headers = auth_headers(ctx, client)
            except LoginError:
                headers = None
            if headers:
                marker_id, marker_type = _plant_marker(client, headers)
        try:
            response = client.get(path)
            evidence = client.evidence(response, f"GET {path} anonymously, over the public URL")
        finally:
            if marker_id and headers:
                client.post(f"/api/v1/jobs/{marker_id}/cancel", headers=headers)
    served = is_exposition(response)
    if response.status_code >= 500:
        # An error neither refuses the path nor serves it: whether anyone may read the metrics
        # there is unknown until the server answers (a passed item here would claim it).
        why = (f"GET {path} over the public URL answered {response.status_code}, which shows "
               "neither a refusal nor the metrics: find the cause in the server's log (or the "
               "front door's) and run again")
        for item in PUBLIC_ITEMS:
            yield report.not_applicable(item, why)
        return
    if environment is not None and environment != "production":
        yield report.not_applicable(
            "LIVE-METRICS-PUBLIC", f"APP_ENVIRONMENT is {environment}: judged in production")
    elif served:
        yield report.failed(
            "LIVE-METRICS-PUBLIC", f"anyone can read {path} over the public URL "
            f"({len(response.content)} bytes of metrics)", evidence,
            expected="401, 403 or 404 without credentials", actual="200 with metrics")
    else:
        yield report.passed(
            "LIVE-METRICS-PUBLIC", f"{path} over the public URL: {response.status_code} "
            "without credentials", evidence)
    if not served:
        yield report.passed(
            "LIVE-METRICS-TENANT-DATA", f"no metrics served anonymously over the public URL "
            f"({response.status_code})", evidence)
        return
    if marker_type:
        if marker_type in response.text:
            yield report.failed(
                "LIVE-METRICS-TENANT-DATA", f"the public metrics name the job type "
                f"{marker_type!r} the kit just submitted: every tenant's names are public",
                evidence, expected="no tenant's queue names or job types",
                actual=f"{marker_type} listed")
            return
        yield report.passed(
            "LIVE-METRICS-TENANT-DATA", f"a job type the kit submitted ({marker_type}) is not "
            "in the public metrics", evidence)
        return
    leaked = sorted(tenant_values(response.text))
    if leaked:
        yield report.failed(
            "LIVE-METRICS-TENANT-DATA", f"the public metrics name tenants' objects: "
            f"{', '.join(leaked[:8])}{' ...' if len(leaked) > 8 else ''}", evidence,
            expected="no tenant's queue names or job types", actual=leaked[0])
    else:
        yield report.passed(
            "LIVE-METRICS-TENANT-DATA", "the public metrics carry no queue, job-type or "
            "organisation label naming a tenant's object", evidence)
