"""The job ledger: every job id that got a 2xx, every answer seen, and the final accounting.

A promise broken anywhere shows up here: an accepted id missing from the database is lost, one
still unfinished at the deadline is stuck, a 500 is counted, a 503 without Retry-After too.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import psycopg

from conformance import namedsql

TERMINAL = frozenset({"succeeded", "failed", "dead", "cancelled"})
#: Status 0 stands for "no HTTP answer" (connection refused or reset, timeout).
NO_ANSWER = 0
QUERIES = namedsql.load("conformance.chaos", "queries.sql")


@dataclass(frozen=True, slots=True)
class Answer:
    at: float  # time.monotonic()
    status: int  # NO_ANSWER when there was none
    retry_after: bool
    what: str  # "submit", "health", "lease", ...


@dataclass
class Ledger:
    """Thread-safe record of what the clients of one scenario were told."""

    accepted: dict[str, float] = field(default_factory=dict)  # job id -> when it got its 2xx
    answers: list[Answer] = field(default_factory=list)
    server_errors: list[str] = field(default_factory=list)  # first lines of 5xx other than 503
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, what: str, status: int, *, retry_after: bool = False,
               job_id: str | None = None, body: str = "") -> None:
        now = time.monotonic()
        with self._lock:
            self.answers.append(Answer(now, status, retry_after, what))
            if job_id is not None and 200 <= status < 300:
                self.accepted[job_id] = now
            if status >= 500 and status != 503 and len(self.server_errors) < 20:
                self.server_errors.append(f"{what} {status}: {body[:200]}")

    def accept(self, job_ids: list[str]) -> None:
        now = time.monotonic()
        with self._lock:
            for job_id in job_ids:
                self.accepted[job_id] = now

    @property
    def accepted_count(self) -> int:
        return len(self.accepted)

    def accepted_before(self, moment: float) -> list[str]:
        with self._lock:
            return [job_id for job_id, at in self.accepted.items() if at < moment]

    def ids(self) -> list[str]:
        with self._lock:
            return list(self.accepted)

    def statuses(self, since: float = 0.0, until: float = float("inf"),
                 what: str | None = None) -> Counter[int]:
        with self._lock:
            return Counter(a.status for a in self.answers
                           if since <= a.at < until and (what is None or a.what == what))

    def count_500(self) -> int:
        with self._lock:
            return sum(1 for a in self.answers if a.status >= 500 and a.status != 503)

    def count_503_without_retry_after(self) -> int:
        with self._lock:
            return sum(1 for a in self.answers if a.status == 503 and not a.retry_after)

    def first_success_after(self, moment: float, what: str | None = None) -> float | None:
        with self._lock:
            times = [a.at for a in self.answers
                     if a.at >= moment and 200 <= a.status < 300
                     and (what is None or a.what == what)]
        return min(times) if times else None


@dataclass(frozen=True, slots=True)
class JobState:
    status: str
    attempt_count: int
    output: Any


@dataclass(frozen=True, slots=True)
class Accounting:
    """Where the accepted jobs ended up."""

    accepted: int
    completed: int  # terminal with status succeeded
    terminal: int  # any terminal status
    lost: list[str]  # accepted, not in the database
    stuck: list[str]  # in the database, not terminal at the deadline
    re_executed: list[str]  # attempt_count > 1
    by_status: dict[str, int]


def job_states(database_url: str, ids: list[str]) -> dict[str, JobState]:
    found: dict[str, JobState] = {}
    with psycopg.connect(database_url, connect_timeout=10) as conn:
        for start in range(0, len(ids), 5000):
            rows = conn.execute(QUERIES["job_states"], {"ids": ids[start:start + 5000]})
            for job_id, status, attempts, output in rows:
                found[job_id] = JobState(status, int(attempts), output)
    return found


def processing_ids(database_url: str) -> set[str]:
    with psycopg.connect(database_url, connect_timeout=10) as conn:
        return {row[0] for row in conn.execute(QUERIES["processing_ids"])}


def wait_terminal(database_url: str, ids: list[str], timeout: float) -> float | None:
    """Poll until every id is terminal; the seconds it took, None at the deadline."""
    started = time.monotonic()
    with psycopg.connect(database_url, connect_timeout=10, autocommit=True) as conn:
        while True:
            row = conn.execute(QUERIES["count_terminal"], {"ids": ids}).fetchone()
            if row is not None and int(row[0]) >= len(ids):
                return time.monotonic() - started
            if time.monotonic() - started >= timeout:
                return None
            time.sleep(0.25)


def account(database_url: str, ids: list[str]) -> Accounting:
    states = job_states(database_url, ids)
    by_status = Counter(s.status for s in states.values())
    return Accounting(
        accepted=len(ids),
        completed=by_status.get("succeeded", 0),
        terminal=sum(n for status, n in by_status.items() if status in TERMINAL),
        lost=sorted(i for i in ids if i not in states),
        stuck=sorted(i for i, s in states.items() if s.status not in TERMINAL),
        re_executed=sorted(i for i, s in states.items() if s.attempt_count > 1),
        by_status=dict(by_status),
    )
