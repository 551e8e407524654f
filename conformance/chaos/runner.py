"""The scenarios by name, in running order (SCENARIO_IDS'), and how one is run over a stack."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import psycopg

from conformance.chaos import SCENARIO_IDS, faults
from conformance.chaos.scenarios import (
    ScenarioResult,
    Sizes,
    backup_restore,
    database_outage,
    ensure_server,
    graceful_shutdown,
    log_file_unwritable,
    process_crash,
    redis_outage,
    worker_death,
)
from conformance.chaos.stack import ChaosError, ChaosStack

Scenario = Callable[[ChaosStack, Sizes], ScenarioResult]
SCENARIOS: dict[str, Scenario] = {
    "process-crash": process_crash,
    "worker-death": worker_death,
    "database-outage": database_outage,
    "redis-outage": redis_outage,
    "graceful-shutdown": graceful_shutdown,
    "log-unwritable": log_file_unwritable,
    "backup-restore": backup_restore,
    "database-crash": faults.database_crash,
    "database-hang": faults.database_hang,
    "submit-retry": faults.submit_retry,
    "pool-burst": faults.pool_burst,
}
assert list(SCENARIOS) == list(SCENARIO_IDS), "one scenario per catalogue item, in order"


def run_scenario(stack: ChaosStack, name: str, sizes: Sizes) -> ScenarioResult:
    """Run one scenario; staging failures become `error`; the stack is left serving."""
    started = time.monotonic()
    try:
        result = SCENARIOS[name](stack, sizes)
    except (ChaosError, RuntimeError, OSError, httpx.HTTPError, psycopg.Error) as exc:
        result = ScenarioResult(id=SCENARIO_IDS[name], name=name,
                                error=f"{type(exc).__name__}: {exc}"[:300])
    result.duration_seconds = round(time.monotonic() - started, 2)
    try:
        ensure_server(stack)
    except ChaosError as exc:
        result.problems.append(f"the stack did not come back after the scenario: {exc}")
    return result
