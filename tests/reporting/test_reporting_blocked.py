"""The `blocked` status: it gates the verdict like `error` and every report shows it, with its
cause, apart from failures (a blocked item was never tried, it is not a proven hole)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from reporting_factories import BLOCKED_MESSAGE, item, run_result

from conformance.model import (
    ExitStatus,
    Finding,
    ItemResult,
    Severity,
    Status,
    Verdict,
    fold_status,
)
from conformance.reporting import markdown, results, sarif, write_reports
from conformance.verdicts import fold_items


def blocked_item(severity: Severity = Severity.BLOCKER) -> ItemResult:
    return item("LIVE-AUTH-ALG-NONE", Status.BLOCKED, severity=severity, section="10.2",
                blocked_by="LIVE-TLS-CHAIN", message=BLOCKED_MESSAGE)


def test_a_blocked_blocker_is_not_ready_and_a_blocked_minor_item_is_not_a_blocker() -> None:
    stopped = run_result([item("ENV-LOG-LEVEL", Status.PASSED), blocked_item()])
    assert stopped.verdict is Verdict.NOT_READY
    assert stopped.exit_status is ExitStatus.BLOCKED
    assert [i.entry.id for i in stopped.blockers()] == ["LIVE-AUTH-ALG-NONE"]
    assert stopped.counts()["blocked"] == 1
    minor = run_result([blocked_item(Severity.MINOR)])
    assert minor.verdict is Verdict.READY
    md = markdown.render(minor)
    assert "### Other failures (1)" in md
    assert "`blocked` **LIVE-AUTH-ALG-NONE**" in md
    assert "blocked by LIVE-TLS-CHAIN" in md


def test_a_proven_failure_outranks_blocked_and_blocked_outranks_passed() -> None:
    def finding(status: Status) -> Finding:
        return Finding(item_id="X", status=status, check="c")

    assert fold_status([finding(Status.PASSED), finding(Status.BLOCKED)]) is Status.BLOCKED
    assert fold_status([finding(Status.FAILED), finding(Status.BLOCKED)]) is Status.FAILED


def test_readiness_md_lists_the_blocked_item_with_its_status_and_cause() -> None:
    md = markdown.render(run_result([blocked_item()]))
    section = md.split("### Blockers (1)")[1]
    assert "- **LIVE-AUTH-ALG-NONE** `blocked` " in section
    assert f"  - finding: blocked by LIVE-TLS-CHAIN: {BLOCKED_MESSAGE}" in section
    assert "crashed" not in md


def test_junit_sarif_and_results_json_show_blocked_distinctly(tmp_path: Path) -> None:
    run_dir = write_reports(run_result([blocked_item()]), tmp_path)
    case = ET.parse(run_dir / "junit.xml").getroot().find(".//testcase")  # noqa: S314 - ours
    assert case is not None
    error = case.find("error")
    assert error is not None and error.get("type") == "blocked"
    assert (error.get("message") or "").startswith("blocked by LIVE-TLS-CHAIN")

    [found] = json.loads(sarif.render(run_result([blocked_item()])))["runs"][0]["results"]
    assert (found["kind"], found["level"]) == ("open", "none")
    assert found["properties"]["status"] == "blocked"

    document = json.loads((run_dir / "results.json").read_text())
    results.validate(document)
    [record] = document["items"]
    assert record["status"] == "blocked"
    assert record["findings"][0]["blocked_by"] == "LIVE-TLS-CHAIN"
    assert document["counts"]["blocked"] == 1
    again = results.load(run_dir / "results.json")
    assert again.items[0].findings[0].blocked_by == "LIVE-TLS-CHAIN"


def test_a_waiver_can_accept_a_blocked_item_as_it_can_an_error() -> None:
    from reporting_factories import entry, waiver_for

    finding = Finding(item_id="LIVE-AUTH-ALG-NONE", status=Status.BLOCKED, check="c",
                      blocked_by="LIVE-TLS-CHAIN")
    [folded] = fold_items([entry("LIVE-AUTH-ALG-NONE")], {"LIVE-AUTH-ALG-NONE": [finding]},
                          checked_ids={"LIVE-AUTH-ALG-NONE"},
                          waivers=[waiver_for("LIVE-AUTH-ALG-NONE")])
    assert folded.status is Status.WAIVED


def test_readiness_md_gives_a_cause_once_and_no_fix_for_an_item_never_tried() -> None:
    second = item("LIVE-AUTH-GARBAGE", Status.BLOCKED, severity=Severity.BLOCKER, section="10.2",
                  blocked_by="LIVE-TLS-CHAIN", message=BLOCKED_MESSAGE)
    md = markdown.render(run_result([blocked_item(), second]))
    assert md.count(BLOCKED_MESSAGE) == 1
    assert "- **LIVE-AUTH-GARBAGE** `blocked` " in md
    assert "blocked by LIVE-TLS-CHAIN (not judged; the reason is given above)" in md
    assert "fix:" not in md
