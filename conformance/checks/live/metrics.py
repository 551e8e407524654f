"""The Prometheus endpoint: it answers, parses as exposition format, has the contract's names."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.parser import text_string_to_metric_families

from conformance.checks.live.common import Report, metrics_path
from conformance.checks.live.http import LiveClient, auth_headers, client_for
from conformance.checks.registry import check

if TYPE_CHECKING:
    import httpx

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


def scrape(ctx: CheckContext, client: LiveClient) -> tuple[httpx.Response, bool]:
    """GET the metrics path as Prometheus would: anonymously, else with the run's credential."""
    path = metrics_path(ctx)
    response = client.get(path)
    if response.status_code in (401, 403):
        headers = auth_headers(ctx, client)
        if headers:
            return client.get(path, headers=headers), True
    return response, False


@check(*METRICS_ITEMS, needs=("target",))
def metrics(ctx: CheckContext) -> Iterator[Finding]:
    """The metrics endpoint answers 200 in Prometheus text format with the contract's names."""
    report = Report(f"{__name__}.metrics")
    path = metrics_path(ctx)
    with client_for(ctx) as client:
        response, authenticated = scrape(ctx, client)
        evidence = client.evidence(response, f"GET {path}")
    if response.status_code != 200:
        for item in METRICS_ITEMS:
            yield report.failed(
                item, f"{path} answered {response.status_code}", evidence,
                expected="200 with Prometheus text", actual=str(response.status_code),
            )
        return
    try:
        names = exposed_names(response.text)
    except ValueError as exc:
        for item in METRICS_ITEMS:
            yield report.failed(
                item, f"{path} is not in Prometheus text format: {exc}", evidence,
            )
        return
    how = "with a credential" if authenticated else "anonymously"
    yield report.passed(
        "LIVE-METRICS", f"{path} answers {how}: {len(names)} names parsed", evidence
    )
    yield report.passed(
        "LIVE-METRICS-PROMETHEUS", f"{path} scrapes {how} in Prometheus text format", evidence
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
