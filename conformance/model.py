"""The vocabulary of a conformance run: catalogue entries, findings, item results, verdicts.

Checks produce findings about catalogue items; a run folds them into one result per item and a
verdict. Reporting renders a `RunResult`; nothing here knows about pytest or HTTP.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import IntEnum, StrEnum
from typing import Any


class Phase(StrEnum):
    STATIC = "static"
    PRE_DEPLOY = "pre-deploy"
    POST_DEPLOY = "post-deploy"
    PRODUCTION = "production"
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"


class Severity(StrEnum):
    BLOCKER = "blocker"
    MAJOR = "major"
    MINOR = "minor"
    INFO = "info"


class Kind(StrEnum):
    AUTOMATED = "automated"
    ATTESTED = "attested"


class Status(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    WAIVED = "waived"
    UNATTESTED = "unattested"
    SKIPPED = "skipped"
    NOT_APPLICABLE = "not_applicable"
    ERROR = "error"
    #: Not judged because something it depends on failed first: the target's certificate does not
    #: verify (blocked by LIVE-TLS-CHAIN) or the target stopped answering (by reachability).
    #: Gates the verdict like error; Finding.blocked_by names the cause.
    BLOCKED = "blocked"


#: When several findings speak about one item, the item takes the worst of them.
STATUS_RANK: dict[Status, int] = {
    Status.NOT_APPLICABLE: 0,
    Status.SKIPPED: 1,
    Status.PASSED: 2,
    Status.WAIVED: 3,
    Status.UNATTESTED: 4,
    Status.BLOCKED: 5,  # a proven failure says more than "could not be tried"
    Status.FAILED: 6,
    Status.ERROR: 7,
}

#: What Finding.blocked_by says when the target stopped answering during the run.
REACHABILITY = "reachability"


class Verdict(StrEnum):
    READY = "READY"
    READY_WITH_WAIVERS = "READY WITH WAIVERS"
    NOT_READY = "NOT READY"


class ExitStatus(IntEnum):
    """Exit statuses of `python -m conformance run` (documented in the README)."""

    READY = 0
    BLOCKED = 1  # a blocking item failed (or is unattested when attestations are required)
    USAGE = 2  # bad option, malformed waiver/attestation/catalogue file
    UNREACHABLE = 3  # the target did not answer
    INTERRUPTED = 130  # Ctrl-C: the shell's 128 + SIGINT, after the stack is cleaned up


@dataclass(frozen=True, kw_only=True, slots=True)
class CatalogueEntry:
    """One checklist item or verifiable statement of the deployment guide."""

    id: str  # stable, e.g. "ENV-JWT-SECRET-STRENGTH"
    section: str  # guide section, e.g. "3.1"
    guide_text: str  # the item's own words, in the guide's language
    title: str  # English title
    phase: Phase
    severity: Severity
    kind: Kind
    rationale: str
    remediation: str
    attestation: str | None = None  # for attested items: what evidence attests it


@dataclass(frozen=True, kw_only=True, slots=True)
class Evidence:
    """What a finding rests on: an HTTP exchange, a place in a file, or a command's output."""

    kind: str  # "http" | "file" | "command" | "text"
    summary: str = ""
    curl: str | None = None  # reproducer, secrets redacted
    status_code: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    file: str | None = None
    line: int | None = None
    command: str | None = None
    output: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Waiver:
    item_id: str
    justification: str
    owner: str
    expires: date


@dataclass(frozen=True, kw_only=True, slots=True)
class Attestation:
    item_id: str
    by: str
    on: date
    evidence: str  # a link or a document reference
    grace_days: int | None = None  # for daily/weekly/monthly items: days past the period it holds


@dataclass(frozen=True, kw_only=True, slots=True)
class Finding:
    """The outcome of one check about one catalogue item."""

    item_id: str
    status: Status
    check: str  # the check's name (pytest node id)
    message: str = ""
    expected: str | None = None
    actual: str | None = None
    evidence: tuple[Evidence, ...] = ()
    duration_seconds: float = 0.0
    host: str | None = None  # the host a host check judged (a testinfra spec), else None
    blocked_by: str | None = None  # status blocked: the item (LIVE-TLS-CHAIN) or "reachability"


@dataclass(frozen=True, kw_only=True, slots=True)
class ItemResult:
    entry: CatalogueEntry
    status: Status
    findings: tuple[Finding, ...] = ()
    waiver: Waiver | None = None
    attestation: Attestation | None = None

    @property
    def blocking(self) -> bool:
        return self.entry.severity is Severity.BLOCKER

    @property
    def duration_seconds(self) -> float:
        return sum(f.duration_seconds for f in self.findings)


@dataclass(frozen=True, kw_only=True, slots=True)
class RunInfo:
    run_id: str
    suite_version: str
    git_commit: str | None
    target: str | None
    provider: str | None
    started_at: datetime
    finished_at: datetime
    options: dict[str, Any] = field(default_factory=dict)
    require_attestations: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class RunResult:
    run: RunInfo
    items: tuple[ItemResult, ...]

    def counts(self) -> dict[str, int]:
        counts = {status.value: 0 for status in Status}
        for item in self.items:
            counts[item.status.value] += 1
        return counts

    def blockers(self) -> list[ItemResult]:
        """Items that stop the release: blocking and failed, errored, blocked, or unattested if
        attestations are required."""
        stopping = {Status.FAILED, Status.ERROR, Status.BLOCKED}
        if self.run.require_attestations:
            stopping.add(Status.UNATTESTED)
        return [i for i in self.items if i.blocking and i.status in stopping]

    @property
    def verdict(self) -> Verdict:
        if self.blockers():
            return Verdict.NOT_READY
        if any(i.status is Status.WAIVED for i in self.items):
            return Verdict.READY_WITH_WAIVERS
        return Verdict.READY

    @property
    def exit_status(self) -> ExitStatus:
        return ExitStatus.BLOCKED if self.verdict is Verdict.NOT_READY else ExitStatus.READY


def fold_status(findings: tuple[Finding, ...] | list[Finding]) -> Status:
    """The item's status from its findings: the worst one wins."""
    if not findings:
        return Status.SKIPPED
    return max((f.status for f in findings), key=STATUS_RANK.__getitem__)


def to_jsonable(value: Any) -> Any:
    """Dataclasses, enums and dates as plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, StrEnum | IntEnum):
        return value.value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return value
