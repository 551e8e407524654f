"""Load items are judged from a load run's verdict.json, and link its report."""

from __future__ import annotations

import json
from pathlib import Path

from conformance.checks.load import load_run
from conformance.checks.registry import CheckContext
from conformance.model import Status


def verdict(tmp_path: Path, *, breached: bool = False, saturated: bool = False,
            exhausted: int = 0) -> Path:
    path = tmp_path / "verdict.json"
    path.write_text(json.dumps({
        "profile": "smoke", "verdict": "FAILED" if breached else "PASSED",
        "thresholds": [
            {"threshold": "POST /api/v1/jobs p95 < 500 ms", "actual": "900 ms",
             "passed": not breached},
            {"threshold": "pool_exhaustion <= 0", "actual": str(exhausted),
             "passed": exhausted == 0},
        ],
        "generator": {"processes": 2, "cpu_mean_percent": 40, "cpu_max_percent": 95 if saturated
                      else 50, "saturated": saturated, "exit_code": 0},
        "static_sizing": [], "plots": [str(tmp_path / "latency-over-time.png")],
    }))
    return path


def statuses(path: Path | None) -> dict[str, Status]:
    ctx = CheckContext(load_results=path)
    return {f.item_id: f.status for f in load_run(ctx)}


def test_a_clean_run_passes_every_item_and_links_the_plots(tmp_path: Path) -> None:
    path = verdict(tmp_path)
    assert set(statuses(path).values()) == {Status.PASSED}
    finding = next(iter(load_run(CheckContext(load_results=path))))
    assert any(e.file and e.file.endswith("load-report.md") for e in finding.evidence)
    assert any(e.file and e.file.endswith(".png") for e in finding.evidence)


def test_each_problem_fails_its_own_item(tmp_path: Path) -> None:
    assert statuses(verdict(tmp_path, breached=True))["LOAD-THRESHOLDS"] is Status.FAILED
    assert statuses(verdict(tmp_path, breached=True))["LOAD-POOL-EXHAUSTION"] is Status.PASSED
    assert statuses(verdict(tmp_path, exhausted=3))["LOAD-POOL-EXHAUSTION"] is Status.FAILED
    assert statuses(verdict(tmp_path, saturated=True))["LOAD-GENERATOR-HEADROOM"] is Status.FAILED


def test_without_a_load_run_the_items_are_not_applicable(tmp_path: Path) -> None:
    assert set(statuses(None).values()) == {Status.NOT_APPLICABLE}


def test_a_file_that_is_not_a_verdict_is_an_error(tmp_path: Path) -> None:
    bad = tmp_path / "x.json"
    bad.write_text("{}")
    assert set(statuses(bad).values()) == {Status.ERROR}
