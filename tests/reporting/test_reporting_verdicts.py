"""Verdicts and exit statuses as the reports state them; readiness.md leads with the blockers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from reporting_factories import item, mixed_items, run_result, waiver_for

from conformance.model import ExitStatus, ItemResult, Kind, Severity, Status, Verdict
from conformance.reporting import markdown, write_reports
from conformance.verdicts import fold_items


def _forced_blocker(status: Status = Status.FAILED, **options: Any) -> ItemResult:
    return item(
        "ENV-APP-ENV-PRODUCTION",
        status,
        severity=Severity.BLOCKER,
        expected="APP_ENVIRONMENT=production",
        actual="APP_ENVIRONMENT=development",
        **options,
    )


def _healthy() -> list[ItemResult]:
    return [
        item("ENV-LOG-LEVEL", Status.PASSED),
        item("ENV-DB-POOL", Status.FAILED, severity=Severity.MINOR, actual="pool of 2"),
        item("MON-ALERTS", Status.NOT_APPLICABLE, section="6"),
    ]


def test_a_forced_blocker_gives_not_ready_exit_1_and_heads_the_markdown(tmp_path: Path) -> None:
    result = run_result([*_healthy(), _forced_blocker()])

    run_dir = write_reports(result, tmp_path)

    assert result.verdict is Verdict.NOT_READY
    assert result.exit_status is ExitStatus.BLOCKED
    document = json.loads((run_dir / "results.json").read_text())
    assert document["verdict"] == "NOT READY"
    assert document["exit_status"] == 1
    assert document["blockers"] == ["ENV-APP-ENV-PRODUCTION"]
    md = (run_dir / "readiness.md").read_text()
    assert md.splitlines()[0] == "## TaskForge deploy readiness: ❌ **NOT READY**"
    first_item = next(line for line in md.splitlines() if line.startswith("- "))
    assert first_item.startswith("- **ENV-APP-ENV-PRODUCTION** ")
    assert md.index("### Blockers (1)") < md.index("### Other failures (1)")
    assert "actual: APP_ENVIRONMENT=development" in md
    assert "fix: Fix ENV-APP-ENV-PRODUCTION like this." in md
    assert "NOT READY" in (run_dir / "readiness.html").read_text()


def test_a_valid_waiver_gives_ready_with_waivers_and_exit_0(tmp_path: Path) -> None:
    waived = _forced_blocker(Status.WAIVED, waiver=waiver_for("ENV-APP-ENV-PRODUCTION"))
    result = run_result([*_healthy(), waived])

    run_dir = write_reports(result, tmp_path)

    assert result.verdict is Verdict.READY_WITH_WAIVERS
    assert result.exit_status is ExitStatus.READY
    document = json.loads((run_dir / "results.json").read_text())
    assert (document["verdict"], document["exit_status"]) == ("READY WITH WAIVERS", 0)
    record = next(i for i in document["items"] if i["id"] == "ENV-APP-ENV-PRODUCTION")
    assert record["waiver"]["owner"] == "ops@example.test"
    md = (run_dir / "readiness.md").read_text()
    assert "READY WITH WAIVERS" in md.splitlines()[0]
    assert "### Blockers" not in md
    assert "### Waived (1)" in md


def test_only_passing_items_read_ready() -> None:
    result = run_result([item("ENV-LOG-LEVEL", Status.PASSED)])

    md = markdown.render(result)

    assert result.verdict is Verdict.READY
    assert md.splitlines()[0] == "## TaskForge deploy readiness: ✅ **READY**"
    assert "No failures." in md


def test_an_unattested_blocker_stops_the_release_only_when_attestations_are_required() -> None:
    unattested = item(
        "OPS-ONCALL", Status.UNATTESTED, severity=Severity.BLOCKER, kind=Kind.ATTESTED
    )

    relaxed = run_result([unattested])
    strict = run_result([unattested], require_attestations=True)

    assert relaxed.verdict is Verdict.READY
    assert strict.verdict is Verdict.NOT_READY
    assert "- **OPS-ONCALL** " in markdown.render(strict).split("### Blockers (1)")[1]


def test_markdown_stays_short_with_hundreds_of_failures() -> None:
    many = [
        item(f"ITEM-{n:03}", Status.FAILED, severity=Severity.BLOCKER, actual="x" * 1000)
        for n in range(400)
    ]

    md = markdown.render(run_result(many))

    assert len(md) <= markdown.MAX_CHARS
    assert "### Blockers (400)" in md
    assert "and 375 more" in md
    assert md.rstrip().endswith("(evidence, remediation, every item).")


def test_mixed_run_markdown_lists_blocker_then_error_then_failed_then_unattested() -> None:
    md = markdown.render(run_result(mixed_items()))

    order = [md.index(i) for i in ("NET-HTTPS-ONLY", "HOST-ENV-PERMS",
                                   "ENV-JWT-SECRET-STRENGTH", "OPS-ONCALL", "TLS-CERT-PINNED")]
    assert order == sorted(order)
    assert "ENV-LOG-LEVEL" not in md  # passed items stay out of the comment


@pytest.mark.parametrize(
    ("waiver_days", "verdict", "exit_status"),
    [(None, "NOT READY", 1), (30, "READY WITH WAIVERS", 0), (-1, "NOT READY", 1)],
)
def test_waivers_applied_by_the_runner_reach_the_reports(
    tmp_path: Path, waiver_days: int | None, verdict: str, exit_status: int
) -> None:
    """A forced blocker, then a valid waiver for it, then an expired one (verdicts.fold_items)."""
    blocker = _forced_blocker()
    passed = item("ENV-LOG-LEVEL", Status.PASSED)
    waivers = [] if waiver_days is None else [waiver_for(blocker.entry.id, days=waiver_days)]
    items = fold_items(
        [blocker.entry, passed.entry],
        {blocker.entry.id: blocker.findings, passed.entry.id: passed.findings},
        checked_ids={blocker.entry.id, passed.entry.id},
        waivers=waivers,
    )

    run_dir = write_reports(run_result(list(items)), tmp_path)

    document = json.loads((run_dir / "results.json").read_text())
    assert (document["verdict"], document["exit_status"]) == (verdict, exit_status)
    assert verdict in (run_dir / "readiness.md").read_text().splitlines()[0]
