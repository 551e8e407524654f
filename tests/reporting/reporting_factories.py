"""Run results built by hand for the reporting tests: catalogue entries, findings, waivers."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from conformance.model import (
    Attestation,
    CatalogueEntry,
    Evidence,
    Finding,
    ItemResult,
    Kind,
    Phase,
    RunInfo,
    RunResult,
    Severity,
    Status,
    Waiver,
)

SECRET_TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9.c2VjcmV0LXNpZ25hdHVyZQ"
DB_PASSWORD = "hunter2-db-pass"
ENV_SECRET = "s3cr3t-value-from-env-file"
BLOCKED_MESSAGE = ("not judged: the certificate of https://127.0.0.1:8443 does not verify "
                   "(self-signed certificate in certificate chain)")


def entry(
    item_id: str,
    *,
    section: str = "3.1",
    severity: Severity = Severity.MAJOR,
    phase: Phase = Phase.STATIC,
    kind: Kind = Kind.AUTOMATED,
    title: str | None = None,
) -> CatalogueEntry:
    return CatalogueEntry(
        id=item_id,
        section=section,
        guide_text=f"Teks panduan untuk {item_id} (bahasa Indonesia).",
        title=title or f"Title of {item_id}",
        phase=phase,
        severity=severity,
        kind=kind,
        rationale=f"Why {item_id} matters.",
        remediation=f"Fix {item_id} like this.",
        attestation="signed runbook link" if kind is Kind.ATTESTED else None,
    )


def item(
    item_id: str,
    status: Status,
    *,
    evidence: tuple[Evidence, ...] = (),
    expected: str | None = None,
    actual: str | None = None,
    waiver: Waiver | None = None,
    attestation: Attestation | None = None,
    blocked_by: str | None = None,
    message: str | None = None,
    **entry_options: Any,
) -> ItemResult:
    findings = (
        ()
        if status is Status.UNATTESTED
        else (
            Finding(
                item_id=item_id,
                status=Status.FAILED if status is Status.WAIVED else status,
                check=f"conformance.checks.fake.check_{item_id.lower().replace('-', '_')}",
                message=message or f"{item_id} is {status.value}",
                expected=expected,
                actual=actual,
                evidence=evidence,
                duration_seconds=0.25,
                blocked_by=blocked_by,
            ),
        )
    )
    return ItemResult(
        entry=entry(item_id, **entry_options),
        status=status,
        findings=findings,
        waiver=waiver,
        attestation=attestation,
    )


def waiver_for(item_id: str, *, days: int = 30) -> Waiver:
    return Waiver(
        item_id=item_id,
        justification="TLS terminates at the load balancer",
        owner="ops@example.test",
        expires=date.today() + timedelta(days=days),
    )


def run_result(
    items: list[ItemResult], *, run_id: str = "run-1", require_attestations: bool = False
) -> RunResult:
    started = datetime(2026, 11, 28, 20, 0, 0, tzinfo=UTC)
    return RunResult(
        run=RunInfo(
            run_id=run_id,
            suite_version="0.1.0",
            git_commit="0123456789abcdef0123456789abcdef01234567",
            target="https://127.0.0.1:8443",
            provider="embedded",
            started_at=started,
            finished_at=started + timedelta(seconds=42),
            options={"stack": "embedded", "env_file": "compose/.env.example"},
            require_attestations=require_attestations,
        ),
        items=tuple(items),
    )


def mixed_items() -> list[ItemResult]:
    """One item per status, across sections out of guide order, with every kind of evidence."""
    http = Evidence(
        kind="http",
        summary="health endpoint answered without TLS",
        curl=(
            f"curl -sS -H 'Authorization: Bearer {SECRET_TOKEN}' "
            f"'https://admin:{DB_PASSWORD}@127.0.0.1:8443/health'"
        ),
        status_code=200,
        headers={"Content-Type": "application/json", "Set-Cookie": "session=abc123secret"},
    )
    file_line = Evidence(kind="file", summary="JWT secret too short", file="compose/.env", line=12)
    command = Evidence(
        kind="command",
        command="cat /etc/taskforge/.env",
        output=f"JWT_SECRET={ENV_SECRET}\nLOG_LEVEL=info",
    )
    return [
        item("NET-HTTPS-ONLY", Status.FAILED, section="10.2", severity=Severity.BLOCKER,
             phase=Phase.POST_DEPLOY, evidence=(http,), expected="HTTPS only",
             actual="plain HTTP answered 200"),
        item("ENV-JWT-SECRET-STRENGTH", Status.FAILED, section="3.1", severity=Severity.MAJOR,
             evidence=(file_line,), expected="at least 32 characters", actual="16 characters"),
        item("HOST-ENV-PERMS", Status.ERROR, section="4.1", phase=Phase.PRE_DEPLOY,
             evidence=(command,)),
        item("ENV-LOG-LEVEL", Status.PASSED, section="3.1"),
        item("ENV-DB-POOL", Status.PASSED, section="3.1", severity=Severity.MINOR),
        item("TLS-CERT-PINNED", Status.WAIVED, section="3.2", severity=Severity.BLOCKER,
             waiver=waiver_for("TLS-CERT-PINNED"), evidence=(file_line,)),
        item("OPS-ONCALL", Status.UNATTESTED, section="4.1", kind=Kind.ATTESTED,
             phase=Phase.PRE_DEPLOY),
        item("OPS-TEAM-INFORMED", Status.PASSED, section="4.1", kind=Kind.ATTESTED,
             attestation=Attestation(item_id="OPS-TEAM-INFORMED", by="rina", on=date(2026, 11, 1),
                                     evidence="MEET-42 minutes")),
        item("MON-ALERTS", Status.NOT_APPLICABLE, section="6", phase=Phase.PRODUCTION),
        item("BACKUP-DAILY", Status.SKIPPED, section="7.1", phase=Phase.DAILY,
             severity=Severity.INFO),
        item("LIVE-AUTH-ALG-NONE", Status.BLOCKED, section="10.2", severity=Severity.BLOCKER,
             phase=Phase.POST_DEPLOY, blocked_by="LIVE-TLS-CHAIN",
             message=BLOCKED_MESSAGE),
    ]

