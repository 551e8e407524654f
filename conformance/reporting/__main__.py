"""`python -m conformance.reporting render <run-dir>` or `diff <old> <new>` (nox -s report)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from conformance.model import ExitStatus
from conformance.reporting import FILENAMES, ReportError, diff, render_run_dir

USAGE = "usage: python -m conformance.reporting render <run-dir> | diff <old-run> <new-run>"


def main(argv: Sequence[str]) -> int:
    if len(argv) >= 1 and argv[0] == "diff":
        return diff.main(argv[1:])
    if len(argv) == 2 and argv[0] == "render":
        run_dir = Path(argv[1])
        try:
            render_run_dir(run_dir)
        except ReportError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return ExitStatus.USAGE
        print(f"re-rendered {', '.join(FILENAMES)} in {run_dir}")
        return ExitStatus.READY
    print(f"error: {USAGE}", file=sys.stderr)
    return ExitStatus.USAGE


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
