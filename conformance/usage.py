"""Bad usage, for every command of the kit: one error type and a parser that raises it.

Each entry (`conformance`, its `run`/`diff`/`report`, `conformance.fuzz`, `conformance.chaos`,
`conformance.reporting`, `conformance.stack.images`, `conformance.stack.startup_bench`) prints the
message as one line on stderr and exits with `ExitStatus.USAGE`, instead of argparse's usage text
and its own exit.
"""

from __future__ import annotations

import argparse
from typing import NoReturn


class UsageError(Exception):
    """Bad command line or option values: one line on stderr, exit status 2 (ExitStatus.USAGE)."""


class UsageParser(argparse.ArgumentParser):
    """argparse reporting bad usage as a UsageError rather than usage text and an exit."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)
