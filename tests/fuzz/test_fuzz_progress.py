"""`nox -s fuzz` shows progress while schemathesis runs: operations done of total per phase and
failures so far, read from the event stream as schemathesis writes it."""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path
from typing import Any

from conformance.fuzz.progress import Progress, follow


def loading(total: int) -> dict[str, Any]:
    return {"LoadingFinished": {"statistic": {"operations": {"total": total, "selected": total}}}}


def phase(kind: str, name: str) -> dict[str, Any]:
    return {kind: {"phase": {"name": name, "is_enabled": True}}}


def scenario(phase_name: str, label: str, failures: int = 0) -> dict[str, Any]:
    checks = [{"name": "not_a_server_error", "status": "failure"}] * failures
    checks += [{"name": "status_code_conformance", "status": "success"}]
    return {"ScenarioFinished": {"phase": phase_name, "is_final": False, "status": "success",
                                 "recorder": {"label": label, "checks": {"case-1": checks}}}}


def test_progress_counts_operations_per_phase_and_failures_across_phases() -> None:
    progress = Progress()
    assert progress.line() is None
    progress.feed(loading(3))
    assert progress.feed(phase("PhaseStarted", "examples"))
    progress.feed(scenario("examples", "POST /api/v1/jobs", failures=2))
    progress.feed(scenario("examples", "POST /api/v1/jobs"))  # the same operation again
    assert progress.line() == "fuzz: examples phase: 1/3 operations done, 2 failures so far"
    progress.feed(scenario("examples", "GET /api/v1/queues", failures=1))
    assert progress.line() == "fuzz: examples phase: 2/3 operations done, 3 failures so far"
    assert progress.feed(phase("PhaseStarted", "coverage"))
    assert progress.line() == "fuzz: coverage phase: 0/3 operations done, 3 failures so far"
    progress.feed(phase("PhaseStarted", "stateful"))
    progress.feed(scenario("stateful", "POST /api/v1/jobs -> GET /api/v1/jobs/{id}"))
    assert progress.line() == "fuzz: stateful phase: 1 scenarios done, 3 failures so far"


def test_follow_prints_progress_while_the_stream_grows(tmp_path: Path) -> None:
    """A real file written line by line (one line in two writes) while follow() tails it."""
    events = tmp_path / "events.ndjson"
    stop = threading.Event()
    out = io.StringIO()
    watcher = threading.Thread(target=follow, args=(events, stop, out), kwargs={"every": 0.0})
    watcher.start()
    seen: list[str] = []
    try:
        lines = [loading(2), phase("PhaseStarted", "examples"),
                 scenario("examples", "POST /api/v1/jobs", failures=1),
                 scenario("examples", "GET /api/v1/queues")]
        with events.open("w", encoding="utf-8") as stream:
            for event in lines:
                text = json.dumps(event) + "\n"
                stream.write(text[:10])
                stream.flush()
                time.sleep(0.05)
                stream.write(text[10:])
                stream.flush()
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline and out.getvalue().count("\n") == len(seen):
                    if event is lines[0]:
                        break  # loading alone prints nothing (no phase yet)
                    time.sleep(0.05)
                seen = out.getvalue().splitlines()
    finally:
        stop.set()
        watcher.join(timeout=10)
    printed = out.getvalue().splitlines()
    # Seen while the stream was still being written, not only at the end.
    assert "fuzz: examples phase: 0/2 operations done, 0 failures so far" in seen
    assert "fuzz: examples phase: 1/2 operations done, 1 failure so far" in seen
    assert printed[-1] == "fuzz: examples phase: 2/2 operations done, 1 failure so far"


def test_a_phase_s_end_is_said_even_when_the_next_phase_starts_in_the_same_read(
    tmp_path: Path,
) -> None:
    """One read may hold a phase's failures, its end and the next phase's start: the ended
    phase's tally is printed, not only the next phase's first line."""
    events = tmp_path / "events.ndjson"
    lines = [loading(1), phase("PhaseStarted", "fuzzing"),
             scenario("fuzzing", "POST /api/v1/jobs", failures=2),
             phase("PhaseFinished", "fuzzing"), phase("PhaseStarted", "stateful")]
    events.write_text("".join(json.dumps(event) + "\n" for event in lines), encoding="utf-8")
    stop = threading.Event()
    stop.set()  # everything is already written: one read, then stop
    out = io.StringIO()
    follow(events, stop, out, every=3600.0)
    assert "fuzz: fuzzing phase: 1/1 operations done, 2 failures so far" in (
        out.getvalue().splitlines())
