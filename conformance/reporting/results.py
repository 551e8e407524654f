"""results.json: the run as versioned JSON (results.schema.json), and back into a RunResult.

Every other report can be re-rendered from this file, and `diff` compares two of them.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

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
    to_jsonable,
)
from conformance.reporting import view

#: Bump the minor for added optional fields, the major for anything a reader of 1.x would misread.
SCHEMA_VERSION = "1.0"
SCHEMA_PATH = Path(__file__).with_name("results.schema.json")
FILENAME = "results.json"


class ReportError(ValueError):
    """A results file that cannot be read back; the message is one line for the user."""


@cache
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return loaded


def _evidence(e: Evidence) -> dict[str, Any]:
    record: dict[str, Any] = to_jsonable(e)
    return record


def _finding(f: Finding) -> dict[str, Any]:
    return {
        "check": f.check,
        "status": f.status.value,
        "message": f.message,
        "expected": f.expected,
        "actual": f.actual,
        "evidence": [_evidence(e) for e in f.evidence],
        "duration_seconds": f.duration_seconds,
        "host": f.host,
        "blocked_by": f.blocked_by,
    }


def _item(result: RunResult, item: ItemResult) -> dict[str, Any]:
    entry = item.entry
    return {
        "id": entry.id,
        "title": entry.title,
        "section": entry.section,
        "guide_text": entry.guide_text,
        "status": item.status.value,
        "severity": entry.severity.value,
        "phase": entry.phase.value,
        "kind": entry.kind.value,
        "blocker": view.is_blocker(result, item),
        "rationale": entry.rationale,
        "remediation": entry.remediation,
        "attestation_rule": entry.attestation,
        "message": view.message(item),
        "expected": view.expected(item),
        "actual": view.actual(item),
        "evidence": [_evidence(e) for e in view.evidence(item)],
        "duration_seconds": item.duration_seconds,
        "findings": [_finding(f) for f in item.findings],
        "waiver": None if item.waiver is None else to_jsonable(item.waiver),
        "attestation": None if item.attestation is None else to_jsonable(item.attestation),
    }


def timestamp(moment: datetime) -> str:
    """ISO 8601 with an offset; a naive time is taken as local time (what now() gives)."""
    return (moment if moment.tzinfo else moment.astimezone()).isoformat()


def to_document(result: RunResult) -> dict[str, Any]:
    """The results.json document for a run (evidence is expected to be redacted already)."""
    run = result.run
    return {
        "schema_version": SCHEMA_VERSION,
        "run": {
            "run_id": run.run_id,
            "suite_version": run.suite_version,
            "git_commit": run.git_commit,
            "target": run.target,
            "provider": run.provider,
            "started_at": timestamp(run.started_at),
            "finished_at": timestamp(run.finished_at),
            "duration_seconds": (run.finished_at - run.started_at).total_seconds(),
            "options": json.loads(json.dumps(to_jsonable(run.options), default=str)),
            "require_attestations": run.require_attestations,
        },
        "verdict": result.verdict.value,
        "exit_status": int(result.exit_status),
        "counts": result.counts(),
        "blockers": [item.entry.id for item in result.blockers()],
        "items": [_item(result, item) for item in result.items],
    }


def render(result: RunResult) -> str:
    return json.dumps(to_document(result), indent=2, ensure_ascii=False) + "\n"


def validate(document: Any) -> None:
    """Raise ReportError (one line) when the document does not follow results.schema.json."""
    validator = jsonschema.Draft202012Validator(schema())
    error = jsonschema.exceptions.best_match(validator.iter_errors(document))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top)"
        raise ReportError(f"{FILENAME} does not follow schema {SCHEMA_VERSION}: {where}: "
                          f"{error.message.splitlines()[0][:200]}")


def _read_evidence(record: dict[str, Any]) -> Evidence:
    return Evidence(
        kind=record["kind"],
        summary=record.get("summary", ""),
        curl=record.get("curl"),
        status_code=record.get("status_code"),
        headers=dict(record.get("headers") or {}),
        file=record.get("file"),
        line=record.get("line"),
        command=record.get("command"),
        output=record.get("output"),
    )


def _read_item(record: dict[str, Any]) -> ItemResult:
    entry = CatalogueEntry(
        id=record["id"],
        section=record["section"],
        guide_text=record["guide_text"],
        title=record["title"],
        phase=Phase(record["phase"]),
        severity=Severity(record["severity"]),
        kind=Kind(record["kind"]),
        rationale=record.get("rationale", ""),
        remediation=record.get("remediation", ""),
        attestation=record.get("attestation_rule"),
    )
    findings = tuple(
        Finding(
            item_id=entry.id,
            status=Status(f["status"]),
            check=f["check"],
            message=f.get("message", ""),
            expected=f.get("expected"),
            actual=f.get("actual"),
            evidence=tuple(_read_evidence(e) for e in f.get("evidence", [])),
            duration_seconds=float(f.get("duration_seconds", 0.0)),
            host=f.get("host"),
            blocked_by=f.get("blocked_by"),
        )
        for f in record.get("findings", [])
    )
    waiver = record.get("waiver")
    attestation = record.get("attestation")
    return ItemResult(
        entry=entry,
        status=Status(record["status"]),
        findings=findings,
        waiver=None
        if waiver is None
        else Waiver(
            item_id=waiver["item_id"],
            justification=waiver["justification"],
            owner=waiver["owner"],
            expires=date.fromisoformat(waiver["expires"]),
        ),
        attestation=None
        if attestation is None
        else Attestation(
            item_id=attestation["item_id"],
            by=attestation["by"],
            on=date.fromisoformat(attestation["on"]),
            evidence=attestation["evidence"],
            grace_days=attestation.get("grace_days"),
        ),
    )


def from_document(document: Any) -> RunResult:
    """A RunResult from a parsed results.json; ReportError when it is not one we can read."""
    if not isinstance(document, dict):
        raise ReportError(f"{FILENAME} is not a JSON object")
    version = str(document.get("schema_version", ""))
    if version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
        raise ReportError(
            f"{FILENAME} has schema_version {version or '(none)'}; this kit reads {SCHEMA_VERSION}"
        )
    validate(document)
    run = document["run"]
    try:
        info = RunInfo(
            run_id=run["run_id"],
            suite_version=run["suite_version"],
            git_commit=run.get("git_commit"),
            target=run.get("target"),
            provider=run.get("provider"),
            started_at=datetime.fromisoformat(run["started_at"]),
            finished_at=datetime.fromisoformat(run["finished_at"]),
            options=dict(run.get("options") or {}),
            require_attestations=bool(run.get("require_attestations", False)),
        )
        items = tuple(_read_item(record) for record in document["items"])
    except ValueError as exc:  # a date or enum value the schema's patterns let through
        raise ReportError(f"{FILENAME}: {str(exc).splitlines()[0]}") from None
    return RunResult(run=info, items=items)


def load(path: Path) -> RunResult:
    """Read results.json (or a run directory holding one) back into a RunResult."""
    file = path / FILENAME if path.is_dir() else path
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReportError(f"{file}: no such file") from None
    except OSError as exc:
        raise ReportError(f"{file}: {exc.strerror}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportError(f"{file}: not JSON ({exc.msg} at line {exc.lineno})") from None
    try:
        return from_document(document)
    except ReportError as exc:
        raise ReportError(f"{file}: {exc}") from None
