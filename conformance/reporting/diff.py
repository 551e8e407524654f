"""Compare two runs (their results.json): what regressed, what was fixed; exit 1 on a regression.

Used as a CI baseline gate: `python -m conformance diff <baseline-run> <new-run>`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from conformance.model import ExitStatus, RunResult, Status
from conformance.reporting import results
from conformance.reporting.results import ReportError
from conformance.usage import UsageError, UsageParser

#: An item in one of these states needs someone's attention; moving into them is a regression.
BAD = frozenset({Status.FAILED, Status.ERROR, Status.BLOCKED, Status.UNATTESTED})


@dataclass(frozen=True, kw_only=True, slots=True)
class Change:
    item_id: str
    title: str
    severity: str
    old: Status | None  # None: the item is new in the later run
    new: Status | None  # None: the item is gone from the later run

    def line(self) -> str:
        old = self.old.value if self.old else "(absent)"
        new = self.new.value if self.new else "(absent)"
        return f"  {self.item_id} [{self.severity}] {old} -> {new}: {self.title}"


@dataclass(kw_only=True)
class Diff:
    regressed: list[Change] = field(default_factory=list)
    fixed: list[Change] = field(default_factory=list)
    changed: list[Change] = field(default_factory=list)  # neither: e.g. failed -> error


def compare(old: RunResult, new: RunResult) -> Diff:
    before = {item.entry.id: item for item in old.items}
    after = {item.entry.id: item for item in new.items}
    diff = Diff()
    for item_id in [*after, *(i for i in before if i not in after)]:
        was, now = before.get(item_id), after.get(item_id)
        old_status = was.status if was else None
        new_status = now.status if now else None
        if old_status is new_status:
            continue
        entry = (now or was).entry  # type: ignore[union-attr]  # one of them is present
        change = Change(
            item_id=item_id,
            title=entry.title,
            severity=entry.severity.value,
            old=old_status,
            new=new_status,
        )
        was_bad = old_status in BAD
        is_bad = new_status in BAD
        if is_bad and not was_bad:
            diff.regressed.append(change)
        elif was_bad and not is_bad and new_status is not None:
            diff.fixed.append(change)
        else:
            diff.changed.append(change)
    return diff


def format_diff(old: RunResult, new: RunResult, diff: Diff) -> str:
    lines = [
        f"{old.run.run_id} ({old.verdict.value}) -> {new.run.run_id} ({new.verdict.value})",
    ]
    for heading, changes in (
        ("regressed", diff.regressed),
        ("fixed", diff.fixed),
        ("other changes", diff.changed),
    ):
        lines.append(f"{heading}: {len(changes)}")
        lines.extend(change.line() for change in changes)
    return "\n".join(lines) + "\n"


def _parser() -> argparse.ArgumentParser:
    parser = UsageParser(
        prog="python -m conformance diff",
        description="Compare two conformance runs; exit 1 when something regressed.",
    )
    parser.add_argument("old", type=Path, help="baseline run directory (or its results.json)")
    parser.add_argument("new", type=Path, help="later run directory (or its results.json)")
    return parser


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    """0: no regression; 1: something regressed; 2: bad arguments or unreadable results."""
    out = out or sys.stdout
    try:
        args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
        old = results.load(args.old)
        new = results.load(args.new)
    except (UsageError, ReportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitStatus.USAGE
    diff = compare(old, new)
    out.write(format_diff(old, new, diff))
    return ExitStatus.BLOCKED if diff.regressed else ExitStatus.READY
