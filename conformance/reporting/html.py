"""readiness.html: one self-contained page (inline CSS and JS), grouped by guide section."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from conformance.model import ItemResult, Phase, RunResult, Severity, Status, Verdict
from conformance.reporting import evidence as ev
from conformance.reporting import view

FILENAME = "readiness.html"
TEMPLATE = "readiness.html.j2"
TEMPLATES = Path(__file__).with_name("templates")


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _evidence(result_item: ItemResult) -> list[dict[str, Any]]:
    return [
        {
            "kind": piece.kind,
            "summary": piece.summary,
            "curl": piece.curl,
            "status_code": piece.status_code,
            "headers": sorted(piece.headers.items()),
            "location": ev.location(piece),
            "command": piece.command,
            "output": piece.output,
        }
        for piece in view.evidence(result_item)
    ]


def _item(result: RunResult, item: ItemResult) -> dict[str, Any]:
    entry = item.entry
    return {
        "id": entry.id,
        "title": entry.title,
        "guide_text": entry.guide_text,
        "status": item.status.value,
        "status_label": item.status.value.replace("_", " "),
        "severity": entry.severity.value,
        "phase": entry.phase.value,
        "kind": entry.kind.value,
        "blocker": view.is_blocker(result, item),
        "rationale": entry.rationale,
        "remediation": entry.remediation,
        "attestation_rule": entry.attestation,
        "message": view.message(item),
        "finding": view.finding_text(item),
        "blocked_by": view.blocked_by(item),
        "expected": view.expected(item),
        "actual": view.actual(item),
        "evidence": _evidence(item),
        "checks": [(f.check, f.status.value, f.message) for f in item.findings],
        "waiver": item.waiver,
        "attestation": item.attestation,
        "duration": f"{item.duration_seconds:.2f}",
    }


def context(result: RunResult) -> dict[str, Any]:
    """What the template shows; filters offer only the values present in the run."""
    counts = result.counts()
    titles = view.section_titles()
    present = {
        "status": [s.value for s in Status if counts[s.value]],
        "phase": [p.value for p in Phase if any(i.entry.phase is p for i in result.items)],
        "severity": [
            s.value for s in Severity if any(i.entry.severity is s for i in result.items)
        ],
    }
    return {
        "run": result.run,
        "verdict": result.verdict.value,
        "verdict_class": result.verdict.value.lower().replace(" ", "-"),
        "exit_status": int(result.exit_status),
        "counts": [(s.value, s.value.replace("_", " "), counts[s.value]) for s in Status],
        "total": len(result.items),
        "blockers": [_item(result, item) for item in result.blockers()],
        "attention": [s.value for s in view.ATTENTION],
        # A NOT READY page opens on what needs attention; the others on every item.
        "initial_view": "attention" if result.verdict is Verdict.NOT_READY else "all",
        "filters": present,
        "sections": [
            (section, titles.get(section, ""), [_item(result, item) for item in items])
            for section, items in view.by_section(result.items)
        ],
    }


def render(result: RunResult) -> str:
    return _environment().get_template(TEMPLATE).render(**context(result))
