"""chaos.json: the figures of one chaos run, written by `python -m conformance.chaos`.

Shape: {"run_id", "quick", "started_at", "finished_at", "ok", "totals", "scenarios": [...]}
with each scenario's id (its catalogue item), figures and the list of broken promises.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

FILE_NAME = "chaos.json"
SCHEMA_VERSION = 1


class ChaosResultsError(ValueError):
    """A chaos.json that cannot be read; the message is one line."""


def write_results(path: Path, *, run_id: str, quick: bool, started_at: str, finished_at: str,
                  scenarios: Sequence[dict[str, Any]]) -> None:
    body = {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "quick": quick,
        "started_at": started_at,
        "finished_at": finished_at,
        "ok": all(s.get("ok") is True for s in scenarios),
        "totals": {key: sum(int(s.get(key) or 0) for s in scenarios)
                   for key in ("accepted", "completed", "lost", "stuck", "re_executed",
                               "http_500")},
        "scenarios": list(scenarios),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(body, indent=2, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)


def read_results(path: Path) -> dict[str, Any]:
    """The parsed file, checked for the fields the checks read."""
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ChaosResultsError(f"{path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ChaosResultsError(f"{path}: not JSON ({exc})") from None
    scenarios = data.get("scenarios") if isinstance(data, dict) else None
    if not isinstance(scenarios, list) or not all(
        isinstance(s, dict) and isinstance(s.get("id"), str) for s in scenarios
    ):
        raise ChaosResultsError(f"{path}: no list of scenarios with ids")
    return dict(data)
