"""Progress of a running fuzz: operations done of total per phase, failures so far.

schemathesis writes its NDJSON event stream (events.ndjson) as it goes; `follow` tails that file
from a thread while the subprocess runs and prints a line on each phase change and at most every
PRINT_EVERY_SECONDS in between, as schemathesis' own CLI shows progress. `Progress` is the pure
part: it folds events and says what to print.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

PRINT_EVERY_SECONDS = 5.0
POLL_SECONDS = 0.5
#: Phases that go operation by operation (stateful runs scenarios over links instead).
OPERATION_PHASES = frozenset({"examples", "coverage", "fuzzing"})


class Progress:
    """Folds schemathesis events; `line()` is the progress line for what has been seen."""

    def __init__(self) -> None:
        self.total: int | None = None
        self.phase: str | None = None
        self.done: set[str] = set()  # operations finished in the current phase
        self.scenarios = 0  # scenarios finished in the current phase
        self.failures = 0  # failed check results, all phases
        self.finished = False

    def feed(self, event: dict[str, Any]) -> bool:
        """Take one event; True when it starts or ends a phase (worth a line at once)."""
        ((kind, body),) = event.items()
        if kind == "LoadingFinished":
            operations = ((body.get("statistic") or {}).get("operations") or {})
            selected = operations.get("selected", operations.get("total"))
            self.total = int(selected) if selected is not None else None
        elif kind == "PhaseStarted":
            name = str((body.get("phase") or {}).get("name", ""))
            if name in OPERATION_PHASES or name == "stateful":
                self.phase, self.done, self.scenarios = name, set(), 0
                return True
        elif kind == "ScenarioFinished":
            recorder = body.get("recorder") or {}
            self.scenarios += 1
            if body.get("is_final") or body.get("phase") in OPERATION_PHASES:
                label = recorder.get("label")
                if label:
                    self.done.add(str(label))
            for results in (recorder.get("checks") or {}).values():
                self.failures += sum(1 for r in results if r.get("status") == "failure")
        elif kind == "PhaseFinished":
            name = str((body.get("phase") or {}).get("name", ""))
            if name == self.phase:
                return True
        elif kind == "EngineFinished":
            self.finished = True
            return True
        return False

    def line(self) -> str | None:
        if self.phase is None:
            return None
        failures = f"{self.failures} failure{'s' if self.failures != 1 else ''} so far"
        if self.phase == "stateful":
            return f"fuzz: stateful phase: {self.scenarios} scenarios done, {failures}"
        total = self.total if self.total is not None else "?"
        return f"fuzz: {self.phase} phase: {len(self.done)}/{total} operations done, {failures}"


def follow(events: Path, stop: threading.Event, out: TextIO | None = None,
           every: float = PRINT_EVERY_SECONDS) -> Progress:
    """Tail the event stream until `stop` is set (then read what is left), printing progress."""
    out = out or sys.stderr
    progress = Progress()
    offset, pending = 0, ""
    last_line, last_time = "", 0.0
    while True:
        stopping = stop.is_set()
        try:
            with events.open("rb") as stream:
                stream.seek(offset)
                chunk = stream.read()
                offset += len(chunk)
        except FileNotFoundError:
            chunk = b""
        pending += chunk.decode("utf-8", errors="replace")
        *complete, pending = pending.split("\n")
        for text in complete:
            if not text.strip():
                continue
            try:
                urgent = progress.feed(json.loads(text))
            except (ValueError, AttributeError):
                continue  # a line schemathesis did not finish writing is read next time
            # A phase's end is said before the next event is taken: one read may hold the end
            # of one phase and the start of the next, and the ended phase's tally is the news.
            line = progress.line()
            if urgent and line and line != last_line:
                print(line, file=out, flush=True)
                last_line, last_time = line, time.monotonic()
        line = progress.line()
        now = time.monotonic()
        if line and line != last_line and (now - last_time >= every or stopping):
            print(line, file=out, flush=True)
            last_line, last_time = line, now
        if stopping:
            return progress
        stop.wait(POLL_SECONDS)
