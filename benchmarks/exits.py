"""Exit statuses of every benchmark entry: `python -m benchmarks` and the processes it runs."""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    OK = 0
    INCOMPLETE = 1  # some figure could not be measured (the report says which and why)
    USAGE = 2
    UNAVAILABLE = 3  # PostgreSQL, Redis or a peer's database did not start or answer
