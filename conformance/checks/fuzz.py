"""API-FUZZ-* items (guide 5.1) judged from a fuzz run's fuzz-results.json (`nox -s fuzz`).

The file comes from `CheckContext.fuzz_results` (--fuzz-results); without one the items are not
applicable. A check family that failed is failed with its curl reproducers; one that passed counts
only when the run completed (a run cut short by its timeout is no evidence); one that never
applied (no DELETE sequence generated, say) is not applicable.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from conformance.checks.registry import CheckContext, check
from conformance.fuzz.findings import load_findings
from conformance.fuzz.results import item_id
from conformance.fuzz.runner import CHECKS
from conformance.model import Evidence, Finding, Status

CHECK_NAME = f"{__name__}.fuzz_run"
ITEMS = tuple(item_id(name) for name in CHECKS)
HOW = "nox -s fuzz, then --fuzz-results reports/<run>/fuzz/fuzz-results.json"


def _read(path: Path) -> tuple[dict[str, Any], list[Finding]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("checks"), list):
        raise ValueError(f"{path}: not a fuzz-results.json (no 'checks' list)")
    return data, load_findings(path)


def _incomplete(data: dict[str, Any]) -> str | None:
    """Why the run's passes are no evidence, or None when it ran to its end."""
    if data.get("timed_out"):
        return "the fuzz run was stopped by its timeout"
    if data.get("complete") is False:
        return "the fuzz run did not complete"
    code = data.get("schemathesis_exit_code")
    failures = (data.get("totals") or {}).get("failures", 0)
    if code not in (0, None) and not failures:
        return f"schemathesis exited {code} without a recorded failure (see schemathesis.log)"
    return None


@check(*ITEMS)
def fuzz_run(ctx: CheckContext) -> Iterator[Finding]:
    """One finding per API-FUZZ item: failed with reproducers, passed, or why it is not judged."""
    path = ctx.fuzz_results
    if path is None:
        for item in ITEMS:
            yield Finding(item_id=item, status=Status.NOT_APPLICABLE, check=CHECK_NAME,
                          message=f"not run: no fuzz results given ({HOW})")
        return
    try:
        data, findings = _read(path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        for item in ITEMS:
            yield Finding(item_id=item, status=Status.ERROR, check=CHECK_NAME,
                          message=f"unreadable fuzz results {path}: {reason}")
        return
    where = Evidence(kind="file", file=str(path),
                     summary=f"fuzz run against {data.get('target', '?')} "
                             f"(seed {data.get('seed')}, {data.get('provider', '?')})")
    unfinished = _incomplete(data)
    by_item = {f.item_id: f for f in findings}
    for item in ITEMS:
        found = by_item.get(item)
        if found is None:
            yield Finding(item_id=item, status=Status.NOT_APPLICABLE, check=CHECK_NAME,
                          message=f"its check was not part of the fuzz run in {path}",
                          evidence=(where,))
            continue
        evidence = (where, *found.evidence)
        if found.status is Status.SKIPPED:
            yield Finding(item_id=item, status=Status.NOT_APPLICABLE, check=CHECK_NAME,
                          message=f"the check never applied in the fuzz run ({found.message})",
                          evidence=evidence)
        elif found.status is Status.PASSED and unfinished:
            yield Finding(item_id=item, status=Status.ERROR, check=CHECK_NAME,
                          message=f"{unfinished}: its passes are no evidence; run it again "
                                  f"({found.message})", evidence=evidence)
        else:
            yield Finding(item_id=item, status=found.status, check=CHECK_NAME,
                          message=found.message, expected=found.expected, actual=found.actual,
                          evidence=evidence)
