"""Chaos items (guide 6.3 and 10.2) judged from a chaos run's chaos.json.

The file comes from `CheckContext.chaos_results` (--chaos-results, or $TASKFORGE_CHAOS_RESULTS: the
run-input table reads the variable, not this check); without one every item is not applicable.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from conformance.chaos import SCENARIO_IDS
from conformance.chaos.results import ChaosResultsError, read_results
from conformance.checks.registry import CheckContext, check, failed, passed
from conformance.model import Evidence, Finding, Status

CHECK_NAME = f"{__name__}.chaos_scenarios"


def results_path(ctx: CheckContext) -> Path | None:
    return ctx.chaos_results


def _figures(scenario: dict[str, Any]) -> str:
    recovery = scenario.get("recovery_seconds")
    bound = scenario.get("recovery_bound_seconds")
    text = (f"accepted={scenario.get('accepted')} completed={scenario.get('completed')} "
            f"lost={scenario.get('lost')} re-executed={scenario.get('re_executed')} "
            f"500s={scenario.get('http_500')}")
    if recovery is not None:
        text += f" recovery={recovery}s" + (f" (bound {bound}s)" if bound is not None else "")
    return text


def _finding(item_id: str, name: str, scenario: dict[str, Any], path: Path,
             sizes: str) -> Finding:
    evidence = (
        Evidence(kind="file", file=str(path), summary=f"{_figures(scenario)} ({sizes} sizes)"),
        Evidence(kind="command", command=f"python -m conformance.chaos --scenario {name}",
                 summary="reproduce this scenario against a fresh reference stack"),
    )
    if scenario.get("error"):
        return Finding(item_id=item_id, status=Status.ERROR, check=CHECK_NAME,
                       message=f"the scenario could not run: {scenario['error']}",
                       evidence=evidence)
    problems = [str(p) for p in scenario.get("problems") or []]
    if scenario.get("ok") is True and not problems:
        return passed(item_id, CHECK_NAME, f"{_figures(scenario)} ({sizes} sizes)", *evidence)
    return failed(item_id, CHECK_NAME, "; ".join(problems) or "the scenario reported a failure",
                  *evidence, expected="no job lost, no 500, recovery within its bound",
                  actual=_figures(scenario))


@check(*SCENARIO_IDS.values())
def chaos_scenarios(ctx: CheckContext) -> Iterator[Finding]:
    """One finding per chaos item: passed, failed or errored as its scenario reported."""
    path = results_path(ctx)
    if path is None:
        for item_id in SCENARIO_IDS.values():
            yield Finding(item_id=item_id, status=Status.NOT_APPLICABLE, check=CHECK_NAME,
                          message="not run: no chaos results given (python -m conformance.chaos)")
        return
    try:
        data = read_results(path)
    except ChaosResultsError as exc:
        for item_id in SCENARIO_IDS.values():
            yield Finding(item_id=item_id, status=Status.ERROR, check=CHECK_NAME, message=str(exc))
        return
    by_id = {str(s["id"]): s for s in data["scenarios"]}
    for name, item_id in SCENARIO_IDS.items():
        scenario = by_id.get(item_id)
        if scenario is None:
            yield Finding(item_id=item_id, status=Status.NOT_APPLICABLE, check=CHECK_NAME,
                          message=f"scenario {name} was not part of the chaos run in {path}")
        else:
            yield _finding(item_id, name, scenario, path,
                           "quick" if data.get("quick") else "full")
