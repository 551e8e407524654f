"""readiness.md: the verdict, the counts and the blockers, short enough for a PR comment."""

from __future__ import annotations

from collections.abc import Callable

from conformance.model import ItemResult, RunResult, Status, Verdict
from conformance.reporting import evidence as ev
from conformance.reporting import view

FILENAME = "readiness.md"
#: Code hosts cap comments at 65,536 characters; stay far below so a bot can add its own lines.
MAX_CHARS = 20_000
MAX_ITEMS_PER_LIST = 25
MAX_CELL = 300

ICONS = {
    Verdict.READY: "✅",
    Verdict.READY_WITH_WAIVERS: "⚠️",
    Verdict.NOT_READY: "❌",
}


def _cell(text: str | None, limit: int = MAX_CELL) -> str:
    """One line of inline text: no line breaks, no table-breaking pipes, bounded length."""
    if not text:
        return ""
    flat = " ".join(text.split()).replace("|", "\\|")
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _where(item: ItemResult) -> str:
    places = [p for p in (ev.location(e) for e in view.evidence(item)) if p]
    where = f" at `{places[0]}`" if places else ""
    found = view.headline(item)
    if found is not None and found.host:
        where = f" on `{found.host}`" + where  # host items: which server was judged
    return where


def _blocker_lines() -> Callable[[ItemResult], str]:
    """Lines for gating items: status and finding, so nobody reads a title as a proven hole.

    A blocked item was never tried: no expected/actual, no fix of its own; the cause's reason
    is given in full once, the next items blocked by the same cause point back to it.
    """
    explained: set[tuple[str, str]] = set()

    def line_of(item: ItemResult) -> str:
        entry = item.entry
        line = (f"- **{entry.id}** `{item.status.value}` {_cell(entry.title)} (§{entry.section})"
                f"{_where(item)}\n")
        cause = view.blocked_by(item)
        if cause is not None:
            key = (cause, view.message(item))
            text = (view.finding_text(item) if key not in explained
                    else f"blocked by {cause} (not judged; the reason is given above)")
            explained.add(key)
            return line + f"  - finding: {_cell(text)}\n"
        line += f"  - finding: {_cell(view.finding_text(item) or item.status.value)}\n"
        actual = view.actual(item)
        if actual and actual != view.message(item):
            line += f"  - actual: {_cell(actual)}\n"
        if view.expected(item):
            line += f"  - expected: {_cell(view.expected(item))}\n"
        if entry.remediation:
            line += f"  - fix: {_cell(entry.remediation)}\n"
        return line

    return line_of


def _other_line(item: ItemResult) -> str:
    entry = item.entry
    detail = view.finding_text(item) if item.status is Status.BLOCKED else (
        view.actual(item) or view.message(item))
    suffix = f": {_cell(detail, 160)}" if detail else ""
    return (
        f"- `{item.status.value}` **{entry.id}** ({entry.severity.value}, §{entry.section}) "
        f"{_cell(entry.title, 120)}{_where(item)}{suffix}\n"
    )


def _waived_line(item: ItemResult) -> str:
    waiver = item.waiver
    line = f"- **{item.entry.id}** {_cell(item.entry.title, 120)}"
    if waiver is not None:
        line += f" by {waiver.owner} until {waiver.expires.isoformat()}"
        line += f": {_cell(waiver.justification, 160)}"
    return line + "\n"


def _list(heading: str, items: list[ItemResult], render_line: Callable[[ItemResult], str]) -> str:
    if not items:
        return ""
    shown = items[:MAX_ITEMS_PER_LIST]
    out = f"\n### {heading} ({len(items)})\n\n" + "".join(render_line(i) for i in shown)
    if len(items) > len(shown):
        out += f"- … and {len(items) - len(shown)} more (see readiness.html)\n"
    return out


def render(result: RunResult) -> str:
    run = result.run
    verdict = result.verdict
    counts = result.counts()
    head = f"## TaskForge deploy readiness: {ICONS[verdict]} **{verdict.value}**\n\n"
    facts = [f"run `{run.run_id}`", f"kit {run.suite_version}"]
    if run.git_commit:
        facts.append(f"commit `{run.git_commit[:12]}`")
    if run.target:
        facts.append(f"target `{_cell(run.target, 120)}`")
    if run.provider:
        facts.append(f"provider {run.provider}")
    facts.append(f"exit status {int(result.exit_status)}")
    head += " · ".join(facts) + "\n\n"
    shown = [s for s in Status if counts[s.value]] or list(Status)
    head += "| " + " | ".join(s.value.replace("_", " ") for s in shown) + " |\n"
    head += "|" + "---|" * len(shown) + "\n"
    head += "| " + " | ".join(str(counts[s.value]) for s in shown) + " |\n"

    blockers = result.blockers()
    blocker_ids = {b.entry.id for b in blockers}
    rest = [i for i in view.needing_attention(result) if i.entry.id not in blocker_ids]
    others = [i for i in rest if i.status in (*view.GATING, Status.UNATTESTED)]
    waived = [i for i in rest if i.status is Status.WAIVED]

    body = _list("Blockers", blockers, _blocker_lines())
    body += _list("Other failures", others, _other_line)
    body += _list("Waived", waived, _waived_line)
    if not blockers and not others:
        body += "\nNo failures.\n"
    footer = "\nFull report: `readiness.html` (evidence, remediation, every item).\n"

    text = head + body
    if len(text) + len(footer) > MAX_CHARS:
        cut = text[: MAX_CHARS - len(footer) - 80]
        text = cut[: cut.rfind("\n") + 1] + "\n… (cut to fit a comment; see readiness.html)\n"
    return text + footer
