"""Load items (guide 6.4) judged from a load run's verdict.json, linking its report and plots.

The file comes from `CheckContext.load_results` (--load-results); without one the items are not
applicable.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from conformance.checks.registry import CheckContext, check, failed, passed
from conformance.model import Evidence, Finding, Status

CHECK_NAME = f"{__name__}.load_run"
ITEMS = ("LOAD-THRESHOLDS", "LOAD-POOL-EXHAUSTION", "LOAD-GENERATOR-HEADROOM")


def _evidence(path: Path, summary: dict[str, Any]) -> tuple[Evidence, ...]:
    report = path.with_name("load-report.md")
    links = [Evidence(kind="file", file=str(report), summary="load report with plots")]
    links += [Evidence(kind="file", file=str(p), summary="plot") for p in summary.get("plots", [])]
    links.append(Evidence(kind="command",
                          command=f"python -m loadtests --profile {summary.get('profile')}",
                          summary="reproduce the load run"))
    return tuple(links)


def _read(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    for key in ("profile", "verdict", "thresholds", "generator"):
        if key not in data:
            raise ValueError(f"{path}: not a load verdict (no {key!r})")
    return dict(data)


@check(*ITEMS)
def load_run(ctx: CheckContext) -> Iterator[Finding]:
    """Thresholds, pool exhaustion and generator headroom of the given load run."""
    path = ctx.load_results
    if path is None:
        for item_id in ITEMS:
            yield Finding(item_id=item_id, status=Status.NOT_APPLICABLE, check=CHECK_NAME,
                          message="not run: no load results given (nox -s load)")
        return
    try:
        data = _read(path)
    except (OSError, ValueError) as exc:
        for item_id in ITEMS:
            yield Finding(item_id=item_id, status=Status.ERROR, check=CHECK_NAME,
                          message=str(exc).splitlines()[0])
        return
    evidence = _evidence(path, data)
    outcomes = data["thresholds"]
    breached = [o for o in outcomes if not o["passed"]]
    if breached:
        yield failed("LOAD-THRESHOLDS", CHECK_NAME,
                     "; ".join(f"{o['threshold']} (actual {o['actual']})" for o in breached),
                     *evidence, expected="every threshold holds",
                     actual=f"{len(breached)} of {len(outcomes)} breached")
    else:
        yield passed("LOAD-THRESHOLDS", CHECK_NAME,
                     f"{len(outcomes)} thresholds hold under profile {data['profile']}", *evidence)
    pool = [o for o in outcomes if o["threshold"].startswith("pool_exhaustion")]
    static = [c for c in data.get("static_sizing", []) if not c["passed"]]
    if any(not o["passed"] for o in pool) or static:
        actual = "; ".join([f"503s: {o['actual']}" for o in pool]
                           + [c["detail"] for c in static])
        yield failed("LOAD-POOL-EXHAUSTION", CHECK_NAME, actual, *evidence,
                     expected="no 503 under load; pools fit max_connections", actual=actual)
    else:
        yield passed("LOAD-POOL-EXHAUSTION", CHECK_NAME, "no request refused for a connection",
                     *evidence)
    generator = data["generator"]
    headroom = (f"{generator['processes']} Locust process(es), max "
                f"{generator['cpu_max_percent']}% CPU each")
    if generator.get("saturated"):
        yield failed("LOAD-GENERATOR-HEADROOM", CHECK_NAME, f"saturated: {headroom}", *evidence,
                     expected="generator below 90% CPU", actual=headroom)
    else:
        yield passed("LOAD-GENERATOR-HEADROOM", CHECK_NAME, headroom, *evidence)
