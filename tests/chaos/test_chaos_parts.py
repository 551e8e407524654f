"""The chaos kit without a stack: the checks over chaos.json, the ledger, the command line."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from conformance.chaos import SCENARIO_IDS
from conformance.chaos.cli import main
from conformance.chaos.ledger import Ledger, account
from conformance.chaos.results import write_results
from conformance.checks.all import registered_checks
from conformance.checks.chaos import chaos_scenarios
from conformance.checks.registry import CheckContext
from conformance.model import ExitStatus, Status

EXIT_USAGE = ExitStatus.USAGE  # the kit's one exit-status enum


def scenario(name: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": SCENARIO_IDS[name], "name": name, "accepted": 10, "completed": 10, "lost": 0,
        "stuck": 0, "re_executed": 0, "http_500": 0, "recovery_seconds": 1.5,
        "recovery_bound_seconds": 5.0, "duration_seconds": 3.0, "figures": {}, "problems": [],
        "error": None, "ok": True,
    }
    body.update(changes)
    return body


def findings_for(path: Path | None) -> dict[str, tuple[Status, str]]:
    return {f.item_id: (f.status, f.message)
            for f in chaos_scenarios(CheckContext(chaos_results=path))}


def test_checks_judge_each_scenario_from_chaos_json(tmp_path: Path) -> None:
    path = tmp_path / "chaos.json"
    write_results(path, run_id="r", quick=True, started_at="a", finished_at="b", scenarios=[
        scenario("process-crash"),
        scenario("database-outage", ok=False, lost=2, problems=["2 accepted job(s) lost, e.g. x"]),
        scenario("redis-outage", ok=False, error="ChaosError: the load did not start"),
    ])
    found = findings_for(path)
    assert set(found) == set(SCENARIO_IDS.values())
    assert found["CHAOS-PROCESS-CRASH"][0] is Status.PASSED
    assert found["CHAOS-DATABASE-OUTAGE"] == (Status.FAILED, "2 accepted job(s) lost, e.g. x")
    assert found["CHAOS-REDIS-OUTAGE"][0] is Status.ERROR
    assert found["CHAOS-WORKER-DEATH"][0] is Status.NOT_APPLICABLE
    written = json.loads(path.read_text())
    assert written["ok"] is False
    assert written["totals"]["lost"] == 2
    assert written["totals"]["accepted"] == 30


def test_checks_not_applicable_without_results(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TASKFORGE_CHAOS_RESULTS", raising=False)
    assert {status for status, _ in findings_for(None).values()} == {Status.NOT_APPLICABLE}


def test_checks_error_on_unreadable_results(tmp_path: Path) -> None:
    bad = tmp_path / "chaos.json"
    bad.write_text("{not json")
    found = findings_for(bad)
    assert {status for status, _ in found.values()} == {Status.ERROR}
    assert all("not JSON" in message for _, message in found.values())
    assert {s for s, _ in findings_for(tmp_path / "absent.json").values()} == {Status.ERROR}


def test_every_chaos_item_has_a_registered_check() -> None:
    named = {i for spec in registered_checks() for i in spec.item_ids}
    assert set(SCENARIO_IDS.values()) <= named


def test_ledger_accounts_lost_stuck_and_rerun_jobs(database_url: str) -> None:
    """A job id that got a 2xx but is not in the database is lost; an unfinished one is stuck."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        org = conn.execute(
            "INSERT INTO organizations (name) VALUES ('chaos ledger') RETURNING id").fetchone()
        assert org is not None
        queue = conn.execute(
            "INSERT INTO queues (organization_id, name) VALUES (%s, 'default') RETURNING id",
            (org[0],)).fetchone()
        assert queue is not None
        rows = conn.execute(
            "INSERT INTO jobs (organization_id, queue_id, queue_name, job_type, payload, status,"
            " attempt_count, max_attempts, timeout_seconds) SELECT %s, %s, 'default', 'echo',"
            " '{}', s, a, 3, 60 FROM (VALUES ('succeeded', 1), ('succeeded', 2), ('pending', 0))"
            " AS v (s, a) RETURNING id::text", (org[0], queue[0])).fetchall()
    ledger = Ledger()
    ids = [r[0] for r in rows]
    missing = str(uuid.uuid4())
    ledger.accept([*ids, missing])
    books = account(database_url, ledger.ids())
    assert books.accepted == 4
    assert books.completed == 2
    assert books.lost == [missing]
    assert books.stuck == [ids[2]]
    assert books.re_executed == [ids[1]]


def test_ledger_counts_500s_and_503s_without_retry_after() -> None:
    ledger = Ledger()
    ledger.record("submit", 201, job_id="a")
    ledger.record("submit", 503, retry_after=True)
    ledger.record("submit", 503, retry_after=False)
    ledger.record("submit", 500, body="internal error")
    assert ledger.accepted_count == 1
    assert ledger.count_500() == 1
    assert ledger.count_503_without_retry_after() == 1
    assert ledger.server_errors == ["submit 500: internal error"]


def test_cli_refuses_unknown_scenario_with_usage_status(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--scenario", "meteor-strike"]) == EXIT_USAGE
    err = capsys.readouterr().err
    # One line (the kit's UsageParser), not argparse's usage text.
    assert err.count("\n") == 1 and err.startswith("error: ") and "invalid choice" in err, err


def test_cli_usage_status_is_distinct() -> None:
    """Bad usage is told apart from a broken promise and from a stack that did not start."""
    others = {ExitStatus.READY, ExitStatus.BLOCKED, ExitStatus.UNREACHABLE}
    assert EXIT_USAGE not in others
    assert main(["--no-such-option"]) == EXIT_USAGE


def test_cli_refuses_bad_worker_count(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--workers", "0"]) == EXIT_USAGE
    assert capsys.readouterr().err.strip() == "error: --workers must be within 1..16"
