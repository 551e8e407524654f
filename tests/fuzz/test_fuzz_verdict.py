"""--fuzz-results judges the API-FUZZ-* items: failures gate the verdict and readiness.md shows
each with its status and finding; a run cut short proves nothing; no file, nothing judged."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from fuzz_verdict_support import fuzz_suite, statuses, verdict_of

from conformance import cli
from conformance.checks.fuzz import ITEMS, fuzz_run
from conformance.checks.registry import CheckContext
from conformance.fuzz.results import item_id
from conformance.fuzz.runner import CHECKS
from conformance.model import Status


def results(**changes: Any) -> dict[str, Any]:
    checks = []
    for name in CHECKS:
        checks.append({"check": name, "item_id": item_id(name), "status": "passed",
                       "checked": 40, "failed": 0, "failures": []})
    data: dict[str, Any] = {
        "schema_version": 1, "target": "https://127.0.0.1:8443", "provider": "embedded",
        "seed": 20261128, "max_examples_per_operation": 5, "schemathesis_exit_code": 0,
        "timed_out": False, "complete": True, "status": "passed", "checks": checks,
        "totals": {"failures": 0},
    }
    data.update(changes)
    return data


def fail(data: dict[str, Any], check: str, status_code: int = 500) -> dict[str, Any]:
    record = next(r for r in data["checks"] if r["check"] == check)
    record.update(status="failed", failed=3, failures=[{
        "operation": "POST /api/v1/jobs", "code": "ST101", "title": "Server error", "count": 3,
        "examples": [{"curl": "curl -X POST https://127.0.0.1:8443/api/v1/jobs --data-raw '{'",
                      "status_code": status_code, "message": "Traceback (most recent call last)"}],
    }])
    data["totals"]["failures"] += 3
    data["status"] = "failed"
    return data


def write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "fuzz" / "fuzz-results.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_a_clean_fuzz_run_passes_every_item_and_is_ready(tmp_path: Path) -> None:
    code, out, document, _ = verdict_of(write(tmp_path, results()), tmp_path / "reports")
    assert code == 0, out
    assert set(statuses(document).values()) == {"passed"}
    assert document["verdict"] == "READY"


def test_fuzz_failures_reach_the_verdict_and_the_readiness_report(tmp_path: Path) -> None:
    data = fail(fail(results(), "ignored_auth", 200), "not_a_server_error")
    code, out, document, readiness = verdict_of(write(tmp_path, data), tmp_path / "reports")
    assert code == 1, out
    assert document["verdict"] == "NOT READY"
    found = statuses(document)
    assert found["API-FUZZ-IGNORED-AUTH"] == found["API-FUZZ-NOT-A-SERVER-ERROR"] == "failed"
    # Each gating item with its status and its finding, not its title alone.
    blockers = readiness.split("### Blockers (1)")[1].split("###")[0]
    assert "- **API-FUZZ-IGNORED-AUTH** `failed` " in blockers
    assert "  - finding: 40 responses checked, 3 failed" in blockers
    others = readiness.split("### Other failures (1)")[1]
    assert "`failed` **API-FUZZ-NOT-A-SERVER-ERROR**" in others
    assert "3 failure(s)" in others
    [item] = [i for i in document["items"] if i["id"] == "API-FUZZ-NOT-A-SERVER-ERROR"]
    assert any(e["curl"] and "/api/v1/jobs" in e["curl"] for e in item["evidence"])


def test_a_fuzz_run_cut_short_proves_no_pass(tmp_path: Path) -> None:
    data = fail(results(timed_out=True, complete=False, schemathesis_exit_code=None),
                "not_a_server_error")
    findings = {f.item_id: f for f in fuzz_run(CheckContext(fuzz_results=write(tmp_path, data)))}
    assert findings["API-FUZZ-NOT-A-SERVER-ERROR"].status is Status.FAILED  # still proven
    assert findings["API-FUZZ-IGNORED-AUTH"].status is Status.ERROR
    assert "stopped by its timeout" in findings["API-FUZZ-IGNORED-AUTH"].message


def test_without_results_nothing_is_judged_and_a_check_that_never_applied_is_not_passed(
    tmp_path: Path
) -> None:
    none = {f.status for f in fuzz_run(CheckContext())}
    assert none == {Status.NOT_APPLICABLE}
    data = results()
    next(r for r in data["checks"] if r["check"] == "use_after_free")["status"] = "skipped"
    findings = {f.item_id: f.status for f in fuzz_run(CheckContext(fuzz_results=write(tmp_path,
                                                                                      data)))}
    assert findings["API-FUZZ-USE-AFTER-FREE"] is Status.NOT_APPLICABLE
    assert set(findings) == set(ITEMS)


@pytest.mark.parametrize("text", ["{not json", '{"checks": 3}'])
def test_unreadable_results_are_errors_not_passes(tmp_path: Path, text: str) -> None:
    path = tmp_path / "fuzz-results.json"
    path.write_text(text, encoding="utf-8")
    assert {f.status for f in fuzz_run(CheckContext(fuzz_results=path))} == {Status.ERROR}


def test_a_missing_results_file_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["run", "--fuzz-results", str(tmp_path / "nope.json")], suite=fuzz_suite(),
                    out=io.StringIO())
    assert code == 2
    assert capsys.readouterr().err.strip().endswith("nope.json: no such file")
