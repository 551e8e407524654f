"""From findings to a run result: which catalogue items a run covers, and how they end up.

Pure functions shared by the pytest plugin and the command line: selecting items by phase and
severity, folding each item's findings, then applying attestations and waivers.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from conformance.attestations import lapses_on
from conformance.model import (
    Attestation,
    CatalogueEntry,
    Finding,
    ItemResult,
    Kind,
    Phase,
    Severity,
    Status,
    Waiver,
    fold_status,
)
from conformance.waivers import split_waivers
from conformance.yamlrecords import ConfigError

#: Severities from the most to the least serious; `--severity X` keeps X and everything above it.
SEVERITY_ORDER = (Severity.BLOCKER, Severity.MAJOR, Severity.MINOR, Severity.INFO)

#: Statuses a waiver can turn into `waived`.
WAIVABLE = frozenset({Status.FAILED, Status.ERROR, Status.BLOCKED, Status.UNATTESTED})


def parse_phase(text: str) -> Phase:
    """A phase from the command line: `pre-deploy` and `pre_deploy` both work."""
    normal = text.strip().lower().replace("_", "-")
    try:
        return Phase(normal)
    except ValueError:
        known = ", ".join(p.value for p in Phase)
        raise ConfigError(f"unknown phase '{text}' (expected one of: {known})") from None


def parse_severity(text: str) -> Severity:
    try:
        return Severity(text.strip().lower())
    except ValueError:
        known = ", ".join(s.value for s in Severity)
        raise ConfigError(f"unknown severity '{text}' (expected one of: {known})") from None


def phase_marker(phase: Phase) -> str:
    """The pytest marker of a phase (`pre-deploy` → `pre_deploy`)."""
    return phase.value.replace("-", "_")


@dataclass(frozen=True, kw_only=True, slots=True)
class Selection:
    """Which catalogue items a run covers: by phase (none given: all) and minimum severity."""

    phases: frozenset[Phase] = frozenset()
    min_severity: Severity | None = None

    def covers(self, entry: CatalogueEntry) -> bool:
        if self.phases and entry.phase not in self.phases:
            return False
        if self.min_severity is None:
            return True
        return SEVERITY_ORDER.index(entry.severity) <= SEVERITY_ORDER.index(self.min_severity)

    def entries(self, catalogue: Iterable[CatalogueEntry]) -> list[CatalogueEntry]:
        return [e for e in catalogue if self.covers(e)]


@dataclass(kw_only=True)
class Outcome:
    """What one run gathered before folding: the findings per item and which checks ran."""

    findings: dict[str, list[Finding]] = field(default_factory=dict)

    def add(self, found: Iterable[Finding]) -> None:
        for finding in found:
            self.findings.setdefault(finding.item_id, []).append(finding)


def fold_items(
    entries: Iterable[CatalogueEntry],
    findings: Mapping[str, Collection[Finding]],
    *,
    checked_ids: Collection[str],
    waivers: Iterable[Waiver] = (),
    attestations: Iterable[Attestation] = (),
    today: date | None = None,
) -> tuple[ItemResult, ...]:
    """One result per entry: worst finding, attestation for attested items, then waivers.

    `checked_ids` are the items some registered check speaks for; an automated item outside it
    has no check and is reported as skipped, which the catalogue meta-test forbids.
    """
    today = today or datetime.now(UTC).date()
    active, expired = split_waivers(waivers, today)
    attested = {a.item_id: a for a in attestations}
    results: list[ItemResult] = []
    for entry in entries:
        item_findings = list(findings.get(entry.id, ()))
        attestation = attested.get(entry.id)
        last = lapses_on(attestation, entry.phase) if attestation is not None else None
        lapsed = last is not None and today > last
        if entry.kind is Kind.ATTESTED and entry.id not in checked_ids:
            if attestation is not None and lapsed:
                item_findings.append(Finding(
                    item_id=entry.id, status=Status.UNATTESTED, check="attestations",
                    message=f"the attestation by {attestation.by} on "
                            f"{attestation.on.isoformat()} lapsed after {last} (a "
                            f"{entry.phase.value} item; "
                            f"grace {attestation.grace_days or 0} days): attest it again",
                ))
            elif attestation is not None:
                item_findings.append(Finding(
                    item_id=entry.id, status=Status.PASSED, check="attestations",
                    message=f"attested by {attestation.by} on {attestation.on.isoformat()}: "
                            f"{attestation.evidence}",
                ))
            else:
                item_findings.append(Finding(
                    item_id=entry.id, status=Status.UNATTESTED, check="attestations",
                    message="no attestation in the attestations file",
                ))
        elif not item_findings:
            reason = ("not run in this session" if entry.id in checked_ids
                      else "no check is registered for this item")
            item_findings.append(Finding(
                item_id=entry.id, status=Status.SKIPPED, check="runner", message=reason))
        status = fold_status(item_findings)
        waiver: Waiver | None = None
        if entry.id in active and status in WAIVABLE:
            waiver = active[entry.id]
            status = Status.WAIVED
        elif entry.id in expired:
            gone = expired[entry.id]
            waiver = gone
            item_findings.append(Finding(
                item_id=entry.id, status=status, check="waivers",
                message=f"waiver expired on {gone.expires.isoformat()} (owner: {gone.owner}); "
                        "it no longer applies",
            ))
        results.append(ItemResult(
            entry=entry, status=status, findings=tuple(item_findings), waiver=waiver,
            attestation=attestation,
        ))
    return tuple(results)


def expired_waivers(items: Iterable[ItemResult], today: date | None = None) -> list[ItemResult]:
    """Items carrying a waiver that has expired (reported so someone renews or fixes)."""
    today = today or datetime.now(UTC).date()
    return [i for i in items if i.waiver is not None and today > i.waiver.expires]


def new_run_id(now: datetime) -> str:
    """Sortable and unique enough for reports/<run-id>/ (two runs in one second differ)."""
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"


def git_commit(directory: Path) -> str | None:
    """The commit the suite runs from, when it runs from a git checkout."""
    try:
        done = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and commit else None
