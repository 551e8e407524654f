"""results.sarif (SARIF 2.1.0): findings with file and line for code hosts; waivers as suppressions.

Rules are the catalogue entries of the run. Results are the items that need attention (failed,
errored, unattested, waived); passed and not-applicable items are rules without results.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote

from conformance.model import Evidence, ItemResult, RunResult, Severity, Status
from conformance.reporting import evidence as ev
from conformance.reporting import view

FILENAME = "results.sarif"
SARIF_VERSION = "2.1.0"
SARIF_SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
TOOL_NAME = "taskforge-conformance"

#: SARIF has three levels of concern; a blocker and a major both stop a careful reviewer.
LEVELS = {
    Severity.BLOCKER: "error",
    Severity.MAJOR: "error",
    Severity.MINOR: "warning",
    Severity.INFO: "note",
}
#: SARIF result kinds of the statuses that are not plain failures.
KINDS = {Status.UNATTESTED: "review", Status.BLOCKED: "open"}


def _uri(path: str) -> str:
    """A URI reference for a file path: relative paths stay relative (code hosts resolve them)."""
    posix = path.replace("\\", "/")
    if posix.startswith("/"):
        return PurePosixPath(posix).as_uri()
    return quote(posix.removeprefix("./"), safe="/:@!$&'()*+,;=-._~")


def _utc(moment: datetime) -> str:
    aware = moment if moment.tzinfo else moment.astimezone()
    return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _location(piece: Evidence) -> dict[str, Any]:
    # Always a region: a finding about the file as a whole points at its first line.
    physical: dict[str, Any] = {
        "artifactLocation": {"uri": _uri(piece.file or "")},
        "region": {"startLine": piece.line or 1},
    }
    return {"physicalLocation": physical}


def _rule(item: ItemResult) -> dict[str, Any]:
    entry = item.entry
    return {
        "id": entry.id,
        "shortDescription": {"text": entry.title},
        "fullDescription": {"text": entry.rationale or entry.title},
        "help": {"text": entry.remediation or "See the deployment guide, section " + entry.section},
        "defaultConfiguration": {"level": LEVELS[entry.severity]},
        "properties": {
            "severity": entry.severity.value,
            "phase": entry.phase.value,
            "kind": entry.kind.value,
            "guideSection": entry.section,
            "guideText": entry.guide_text,
            "tags": [f"guide-{entry.section}", entry.severity.value, entry.phase.value],
        },
    }


def _message(item: ItemResult) -> str:
    parts = [f"{item.entry.id} ({item.status.value}): {item.entry.title}."]
    if view.finding_text(item):
        parts.append(view.finding_text(item))
    if view.expected(item) is not None:
        parts.append(f"Expected: {view.expected(item)}.")
    if view.actual(item) is not None:
        parts.append(f"Actual: {view.actual(item)}.")
    return " ".join(parts)


def _result(item: ItemResult, rule_index: int) -> dict[str, Any]:
    files = [piece for piece in view.evidence(item) if piece.file]
    level = LEVELS[item.entry.severity]
    record: dict[str, Any] = {
        "ruleId": item.entry.id,
        "ruleIndex": rule_index,
        # blocked: the tool could not tell pass from fail (SARIF "open"), not a proven fault.
        "kind": KINDS.get(item.status, "fail"),
        "level": level if KINDS.get(item.status, "fail") == "fail" else "none",
        "message": {"text": _message(item)},
        "properties": {
            "status": item.status.value,
            "guideSection": item.entry.section,
            "evidence": [ev.describe(piece) for piece in view.evidence(item) if not piece.file],
        },
    }
    if files:
        record["locations"] = [_location(piece) for piece in files]
    if item.status is Status.WAIVED:
        suppression: dict[str, Any] = {"kind": "external", "status": "accepted"}
        if item.waiver is not None:
            suppression["justification"] = item.waiver.justification
            suppression["properties"] = {
                "owner": item.waiver.owner,
                "expires": item.waiver.expires.isoformat(),
            }
        record["suppressions"] = [suppression]
    return record


def to_document(result: RunResult) -> dict[str, Any]:
    run = result.run
    rules = [_rule(item) for item in result.items]
    index = {item.entry.id: n for n, item in enumerate(result.items)}
    concerns = {Status.FAILED, Status.ERROR, Status.BLOCKED, Status.UNATTESTED, Status.WAIVED}
    results = [_result(i, index[i.entry.id]) for i in result.items if i.status in concerns]
    driver: dict[str, Any] = {
        "name": TOOL_NAME,
        "version": run.suite_version,
        "rules": rules,
    }
    sarif_run: dict[str, Any] = {
        "tool": {"driver": driver},
        "automationDetails": {"id": f"{TOOL_NAME}/{run.run_id}"},
        "invocations": [
            {
                "executionSuccessful": not any(i.status in (Status.ERROR, Status.BLOCKED)
                                               for i in result.items),
                "startTimeUtc": _utc(run.started_at),
                "endTimeUtc": _utc(run.finished_at),
            }
        ],
        "results": results,
        "properties": {
            "verdict": result.verdict.value,
            "gitCommit": run.git_commit,
            "target": run.target,
            "provider": run.provider,
        },
    }
    return {"$schema": SARIF_SCHEMA_URI, "version": SARIF_VERSION, "runs": [sarif_run]}


def render(result: RunResult) -> str:
    return json.dumps(to_document(result), indent=2, ensure_ascii=False) + "\n"
