"""junit.xml: one testcase per catalogue item, so CI systems show the checklist as tests."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from conformance.model import ItemResult, RunResult, Status
from conformance.reporting import evidence as ev
from conformance.reporting import view

FILENAME = "junit.xml"
SUITE_NAME = "taskforge-conformance"


#: Characters XML 1.0 cannot carry at all (terminal escapes in command output are common).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(text: str) -> str:
    return _NOT_XML.sub("\N{REPLACEMENT CHARACTER}", text)


def _details(item: ItemResult) -> str:
    lines = []
    if view.message(item):
        lines.append(view.message(item))
    if view.expected(item) is not None:
        lines.append(f"expected: {view.expected(item)}")
    if view.actual(item) is not None:
        lines.append(f"actual: {view.actual(item)}")
    for piece in view.evidence(item):
        lines.append(ev.describe(piece))
    if item.entry.remediation:
        lines.append(f"remediation: {item.entry.remediation}")
    return _xml_text("\n".join(lines))


def _one_line(text: str, limit: int = 300) -> str:
    first = text.strip().splitlines()[0] if text.strip() else ""
    return _xml_text(first if len(first) <= limit else first[: limit - 3] + "...")


def _outcome(result: RunResult, item: ItemResult, case: ET.Element) -> str | None:
    """Add the failure/error/skipped child; return which JUnit counter it bumps."""
    status = item.status
    if status is Status.FAILED or (status is Status.UNATTESTED and view.is_blocker(result, item)):
        summary = view.actual(item) or view.message(item) or status.value
        failure = ET.SubElement(
            case, "failure", message=_one_line(f"{status.value}: {summary}"), type=status.value
        )
        failure.text = _details(item)
        return "failures"
    if status in (Status.ERROR, Status.BLOCKED):
        # blocked gates like error: the item could not be judged, which is not a pass.
        text = view.finding_text(item) if status is Status.BLOCKED else view.message(item)
        error = ET.SubElement(
            case, "error", message=_one_line(text or "check error"), type=status.value
        )
        error.text = _details(item)
        return "errors"
    if status is Status.WAIVED and item.waiver is not None:
        reason = (
            f"waived until {item.waiver.expires.isoformat()} by {item.waiver.owner}: "
            f"{item.waiver.justification}"
        )
    elif status is Status.UNATTESTED:
        reason = f"unattested: {item.entry.attestation or 'no attestation on file'}"
    elif status in (Status.WAIVED, Status.SKIPPED, Status.NOT_APPLICABLE):
        reason = f"{status.value}: {view.message(item) or 'no reason given'}"
    else:
        return None
    skipped = ET.SubElement(case, "skipped", message=_one_line(reason))
    skipped.text = _xml_text(reason)
    return "skipped"


def render(result: RunResult) -> str:
    counters = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    suite = ET.Element("testsuite", name=SUITE_NAME)
    properties = ET.SubElement(suite, "properties")
    run = result.run
    for name, value in (
        ("run_id", run.run_id),
        ("suite_version", run.suite_version),
        ("git_commit", run.git_commit or ""),
        ("target", run.target or ""),
        ("provider", run.provider or ""),
        ("verdict", result.verdict.value),
    ):
        ET.SubElement(properties, "property", name=name, value=_xml_text(value))
    for item in result.items:
        entry = item.entry
        case = ET.SubElement(
            suite,
            "testcase",
            classname=entry.section,
            name=_xml_text(f"{entry.id} {entry.title}"),
            time=f"{item.duration_seconds:.3f}",
        )
        props = ET.SubElement(case, "properties")
        for name, value in (
            ("guide_section", entry.section),
            ("severity", entry.severity.value),
            ("phase", entry.phase.value),
            ("kind", entry.kind.value),
            ("status", item.status.value),
        ):
            ET.SubElement(props, "property", name=name, value=_xml_text(value))
        counters["tests"] += 1
        bumped = _outcome(result, item, case)
        if bumped:
            counters[bumped] += 1
    duration = (run.finished_at - run.started_at).total_seconds()
    suite.set("timestamp", run.started_at.isoformat())
    suite.set("time", f"{duration:.3f}")
    for name, count in counters.items():
        suite.set(name, str(count))
    root = ET.Element("testsuites", name=SUITE_NAME, time=f"{duration:.3f}")
    for name, count in counters.items():
        root.set(name, str(count))
    root.append(suite)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
