"""The fuzzer against real server processes: a deliberately broken build, and the real one."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fuzz_verdict_support import statuses, verdict_of

from conformance.fuzz import FuzzOptions, run_fuzz
from conformance.fuzz.runner import FuzzTarget, contract_document, fuzz_target, operations_of
from conformance.model import ExitStatus
from reference_server.devservices import free_port

BROKEN_APP = Path(__file__).with_name("broken_app.py")
PROGRESS = re.compile(r"fuzz: (examples|coverage|fuzzing) phase: (\d+)/(\d+) operations done, "
                      r"(\d+) failures? so far")
STARTUP_ATTEMPTS = 150  # x 0.2 s


def _wait_ready(base_url: str, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(STARTUP_ATTEMPTS):
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"{base_url}/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("server did not become ready")


@pytest.fixture
def broken_server(database_url: str, redis_url: str, tmp_path: Path) -> Iterator[str]:
    """The reference app with two injected defects, served by hypercorn in its own process."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url}
    log = (tmp_path / "broken-server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, str(BROKEN_APP), str(port)], env=env, stdout=log, stderr=log
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base_url, proc)
        yield base_url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def _check(results: dict[str, Any], name: str) -> dict[str, Any]:
    record: dict[str, Any] = next(r for r in results["checks"] if r["check"] == name)
    return record


@pytest.mark.slow
def test_broken_build_defects_are_both_found(
    broken_server: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A 500 on an edge case and a schema-violating response are reported with reproducers."""
    options = FuzzOptions(
        max_examples=5,
        phases=("examples", "coverage", "fuzzing"),
        reports_dir=tmp_path / "reports",
        run_id="broken",
        # The two operations carrying the defects keep the run short.
        extra_args=("--include-path-regex", "^/api/v1/(jobs|queues)$"),
    )
    target = FuzzTarget(base_url=broken_server, is_reference=True, provider="test")
    outcome = fuzz_target(options, target, tmp_path / "reports" / "broken" / "fuzz")

    assert outcome.exit_status is ExitStatus.BLOCKED
    # Progress was shown while it ran: operations done of total, failures so far.
    progress = PROGRESS.findall(capfd.readouterr().err)
    assert progress, "no progress line"
    assert any(int(failures) > 0 for *_, failures in progress)
    written = json.loads(outcome.results_file.read_text(encoding="utf-8"))
    assert written["status"] == "failed"

    server_errors = _check(written, "not_a_server_error")
    assert server_errors["status"] == "failed"
    (crash,) = [g for g in server_errors["failures"] if g["operation"] == "POST /api/v1/jobs"]
    example = crash["examples"][0]
    assert example["status_code"] == 500
    assert "/api/v1/jobs" in example["curl"]
    assert '"priority": 9' in example["curl"]

    schema = _check(written, "response_schema_conformance")
    assert schema["status"] == "failed"
    (violation,) = [g for g in schema["failures"] if g["operation"] == "GET /api/v1/queues"]
    assert violation["examples"][0]["curl"].startswith("curl -X GET")
    assert "Authorization: ***" in violation["examples"][0]["curl"]

    run_dir = outcome.run_dir
    for name in ("junit.xml", "cassette.yaml", "events.ndjson", "schemathesis.json"):
        assert (run_dir / name).stat().st_size > 0, name
    assert "<failure" in (run_dir / "junit.xml").read_text(encoding="utf-8")
    assert "Bearer ey" not in (run_dir / "fuzz-results.json").read_text(encoding="utf-8")

    # --fuzz-results folds both defects into the readiness report as failed items.
    _, _, document, readiness = verdict_of(outcome.results_file, tmp_path / "verdict")
    found = statuses(document)
    assert found["API-FUZZ-NOT-A-SERVER-ERROR"] == "failed"
    assert found["API-FUZZ-RESPONSE-SCHEMA-CONFORMANCE"] == "failed"
    assert "`failed` **API-FUZZ-NOT-A-SERVER-ERROR**" in readiness


@pytest.mark.slow
def test_reference_stack_fuzzes_clean(tmp_path: Path) -> None:
    """Every operation, every phase, a small budget: the real reference server has no failure."""
    outcome = run_fuzz(
        FuzzOptions(
            stack="embedded",
            max_examples=2,
            reports_dir=tmp_path / "reports",
            run_id="clean",
        )
    )
    results = outcome.results
    failing = {r["check"]: r["failures"] for r in results["checks"] if r["status"] == "failed"}
    assert failing == {}
    assert results["errors"] == []
    documented = len(operations_of(contract_document()))  # every operation the contract has
    assert documented >= 32
    totals = results["totals"]
    assert totals["operations_exercised"] == totals["operations"] == documented
    assert outcome.exit_status is ExitStatus.READY
    code, _, document, _ = verdict_of(outcome.results_file, tmp_path / "verdict")
    assert code == 0
    assert set(statuses(document).values()) <= {"passed", "not_applicable"}
    assert statuses(document)["API-FUZZ-NOT-A-SERVER-ERROR"] == "passed"
