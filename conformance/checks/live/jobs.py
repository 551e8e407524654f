"""The guide's 5.2 smoke sequence (health, metrics, one job submitted and run) and its audit row.

The one write this kit makes on a foreign deployment is this job: queue `default`, type `test_job`,
tagged in its payload with the run id so that an operator can find and delete it. Unlike
`conformance.smoke.run_smoke` (which stands a stack up), this never registers an account: it uses
--token/--api-key or the target's admin login, and reports each step as its own item.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

import psycopg

from conformance.checks.live.common import (
    Report,
    database_url_of,
    metrics_path,
    run_id,
)
from conformance.checks.live.http import (
    LiveClient,
    auth_headers,
    client_for,
    credential_or_findings,
    payload_of,
)
from conformance.checks.live.metrics import public_refusal, scrape
from conformance.checks.live.queries import query
from conformance.checks.registry import check
from conformance.smoke import GUIDE_JOB

if TYPE_CHECKING:
    from conformance.checks.registry import CheckContext
    from conformance.model import Evidence, Finding

JOB_POLL_SECONDS = 30.0
JOB_POLL_INTERVAL_SECONDS = 0.25
AUDIT_POLL_SECONDS = 5.0
TERMINAL_FAILURES = frozenset({"failed", "dead", "cancelled"})
SMOKE_ITEMS = ("LIVE-SMOKE-HEALTH", "LIVE-SMOKE-METRICS", "LIVE-SMOKE-JOB", "LIVE-JOB-COMPLETES")


def smoke_job_body(ctx: CheckContext) -> dict[str, Any]:
    """The guide's sample job (as the smoke sequence sends it), tagged with the run id."""
    payload = dict(cast("dict[str, Any]", GUIDE_JOB["payload"]), conformance_run=run_id(ctx))
    return {**GUIDE_JOB, "payload": payload}


def wait_for_job(client: LiveClient, job_id: str, headers: dict[str, str]) -> tuple[str, Evidence]:
    """Poll the job until it ends, bounded in time; (last status, evidence)."""
    deadline = time.monotonic() + JOB_POLL_SECONDS
    while True:
        response = client.get(f"/api/v1/jobs/{job_id}", headers=headers)
        job = payload_of(response)
        status = str(job.get("status")) if isinstance(job, dict) else f"HTTP {response.status_code}"
        if status == "succeeded" or status in TERMINAL_FAILURES or time.monotonic() > deadline:
            return status, client.evidence(response, f"GET /api/v1/jobs/{job_id}")
        if response.status_code != 200:
            return status, client.evidence(response, f"GET /api/v1/jobs/{job_id}")
        time.sleep(JOB_POLL_INTERVAL_SECONDS)


@check(*SMOKE_ITEMS, "LIVE-AUDIT-LOG", needs=("target",))
def smoke(ctx: CheckContext) -> Iterator[Finding]:
    """GET /health, GET metrics, POST the sample job; it completes; an audit row records it."""
    report = Report(f"{__name__}.smoke")
    path = metrics_path(ctx)
    with client_for(ctx) as client:
        health = client.get("/health")
        evidence = client.evidence(health, "curl https://your-domain.com/health")
        if health.status_code == 200:
            yield report.passed("LIVE-SMOKE-HEALTH", "GET /health: 200", evidence)
        else:
            yield report.failed(
                "LIVE-SMOKE-HEALTH", f"GET /health: {health.status_code}", evidence,
                expected="200", actual=str(health.status_code),
            )
        metrics, how = scrape(ctx, client)
        evidence = client.evidence(metrics, f"curl https://your-domain.com{path}")
        if metrics.status_code == 200:
            yield report.passed("LIVE-SMOKE-METRICS", f"GET metrics {how}: 200", evidence)
        elif (refusal := public_refusal(ctx, metrics)) == "refused":
            yield report.passed(
                "LIVE-SMOKE-METRICS", f"the public URL refuses {path} ({metrics.status_code}), "
                "as the guide's front door does; give --metrics-url to scrape where Prometheus "
                "does", evidence)
        elif refusal == "unknown":
            yield report.not_applicable(
                "LIVE-SMOKE-METRICS", f"{path} answers 404 publicly: refused or disabled, the "
                "kit cannot tell; give --metrics-url")
        else:
            yield report.failed(
                "LIVE-SMOKE-METRICS", f"GET {path}: {metrics.status_code}", evidence,
                expected="200", actual=str(metrics.status_code),
            )
        headers = yield from credential_or_findings(
            report, ("LIVE-SMOKE-JOB", "LIVE-JOB-COMPLETES", "LIVE-AUDIT-LOG"),
            "no credential: give --token or --api-key", lambda: auth_headers(ctx, client),
        )
        if headers is None:
            return
        submitted = client.post("/api/v1/jobs", json=smoke_job_body(ctx), headers=headers)
        evidence = client.evidence(submitted, "POST /api/v1/jobs (the guide's sample job)")
        job = payload_of(submitted)
        job_id = str(job["id"]) if isinstance(job, dict) and job.get("id") else None
        if submitted.status_code not in (200, 201) or job_id is None:
            yield report.failed(
                "LIVE-SMOKE-JOB", f"POST /api/v1/jobs: {submitted.status_code}", evidence,
                expected="201 with the job", actual=str(submitted.status_code),
            )
            yield report.skipped("LIVE-JOB-COMPLETES", "no job was submitted")
            yield report.skipped("LIVE-AUDIT-LOG", "no job was submitted")
            return
        yield report.passed(
            "LIVE-SMOKE-JOB", f"job {job_id} accepted ({submitted.status_code})", evidence
        )
        status, poll_evidence = wait_for_job(client, job_id, headers)
    if status == "succeeded":
        yield report.passed("LIVE-JOB-COMPLETES", f"job {job_id} succeeded", poll_evidence)
    else:
        yield report.failed(
            "LIVE-JOB-COMPLETES",
            f"job {job_id} is {status} after at most {JOB_POLL_SECONDS:.0f}s", poll_evidence,
            expected="succeeded", actual=status,
        )
    yield audit_finding(ctx, report, job_id)


def audit_finding(ctx: CheckContext, report: Report, job_id: str) -> Finding:
    """The audit log holds the job's submission (polled briefly: it may be written late)."""
    database_url = database_url_of(ctx)
    if database_url is None:
        return report.not_applicable("LIVE-AUDIT-LOG", "no database URL: give --database-url")
    deadline = time.monotonic() + AUDIT_POLL_SECONDS
    with psycopg.connect(database_url, autocommit=True, connect_timeout=5) as conn:
        present = conn.execute(query("table_exists"), {"name": "audit_log"}).fetchone()
        if not present or not present[0]:
            return report.failed(
                "LIVE-AUDIT-LOG", "the database has no audit_log table",
                expected="an audit_log table", actual="none",
            )
        rows = 0
        while time.monotonic() < deadline:
            row = conn.execute(query("audit_rows_for_target"), {"target": job_id}).fetchone()
            rows = int(row[0]) if row else 0
            if rows:
                break
            time.sleep(0.2)
    if rows:
        return report.passed("LIVE-AUDIT-LOG", f"audit_log records the POST of job {job_id}")
    return report.failed(
        "LIVE-AUDIT-LOG", f"no audit_log row for the POST of job {job_id}",
        expected="one row with target = the job id", actual="0 rows",
    )
