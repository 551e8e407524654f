"""What every report says about an item: its headline finding, expected vs actual, guide order."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache
from pathlib import Path

from conformance.model import Evidence, Finding, ItemResult, RunResult, Status

#: The deployment guide the catalogue quotes; its headings name the sections in reports.
GUIDE_PATH = Path(__file__).resolve().parents[1] / "guide.md"
_HEADING = re.compile(r"^#{2,6}\s+(\d+(?:\.\d+)*)\.?\s+(.+?)\s*$")

#: Statuses a release manager has to look at, in the order reports list them.
ATTENTION = (Status.ERROR, Status.BLOCKED, Status.FAILED, Status.UNATTESTED, Status.WAIVED)
#: Statuses that stop the release when the item is a blocker (unattested: when required).
GATING = (Status.FAILED, Status.ERROR, Status.BLOCKED)


def headline(item: ItemResult) -> Finding | None:
    """The finding that gave the item its status (the first of the worst), if any."""
    for finding in item.findings:
        if finding.status is item.status:
            return finding
    return item.findings[0] if item.findings else None


def blocked_by(item: ItemResult) -> str | None:
    """What stopped a blocked item from being judged (an item ID or "reachability")."""
    if item.status is not Status.BLOCKED:
        return None
    return next((f.blocked_by for f in item.findings if f.blocked_by), None)


def finding_text(item: ItemResult) -> str:
    """The item's finding in one phrase, the cause first for a blocked item."""
    text = message(item) or actual(item) or ""
    cause = blocked_by(item)
    if cause is not None:
        return f"blocked by {cause}" + (f": {text}" if text else "")
    return text


def expected(item: ItemResult) -> str | None:
    found = headline(item)
    if found is not None and found.expected is not None:
        return found.expected
    return next((f.expected for f in item.findings if f.expected is not None), None)


def actual(item: ItemResult) -> str | None:
    found = headline(item)
    if found is not None and found.actual is not None:
        return found.actual
    return next((f.actual for f in item.findings if f.actual is not None), None)


def message(item: ItemResult) -> str:
    found = headline(item)
    return found.message if found is not None else ""


def evidence(item: ItemResult) -> list[Evidence]:
    """Every finding's evidence, once each, in finding order."""
    seen: list[Evidence] = []
    for finding in item.findings:
        for piece in finding.evidence:
            if piece not in seen:
                seen.append(piece)
    return seen


def section_key(section: str) -> tuple[tuple[int, str], ...]:
    """Sort key putting guide sections in the guide's order: 2.1 < 3.1 < 3.10 < 10.1."""
    parts = re.findall(r"\d+|[^\d.]+", section)
    return tuple((int(p), "") if p.isdigit() else (1 << 30, p) for p in parts)


def by_section(items: Iterable[ItemResult]) -> list[tuple[str, list[ItemResult]]]:
    """Items grouped by guide section, sections in guide order, items in run (catalogue) order."""
    groups: dict[str, list[ItemResult]] = {}
    for item in items:
        groups.setdefault(item.entry.section, []).append(item)
    return sorted(groups.items(), key=lambda pair: section_key(pair[0]))


def is_blocker(result: RunResult, item: ItemResult) -> bool:
    return any(b is item for b in result.blockers())


def needing_attention(result: RunResult) -> list[ItemResult]:
    """Non-passing items that matter, worst status first, guide order within a status."""
    order = {status: rank for rank, status in enumerate(ATTENTION)}
    picked = [i for i in result.items if i.status in order]
    return sorted(picked, key=lambda i: (order[i.status], section_key(i.entry.section)))


@cache
def section_titles() -> dict[str, str]:
    """Guide section number to its heading, in the guide's words; empty when the guide is absent."""
    try:
        text = GUIDE_PATH.read_text(encoding="utf-8")
    except OSError:
        return {}
    titles: dict[str, str] = {}
    fenced = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced  # "# comment" lines in code blocks are not headings
        elif not fenced and (match := _HEADING.match(line)):
            titles.setdefault(match.group(1), match.group(2))
    return titles
