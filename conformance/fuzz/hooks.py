"""Schemathesis hooks loaded into the fuzzing process (through SCHEMATHESIS_HOOKS).

They adjust generated values only where the contract has a rule JSON Schema cannot state, so that
schema-valid requests stay valid under the contract; invalid values are left alone so negative
tests still exercise the bounds:
- a lease may long-poll up to 30 s when nothing is ready: valid `wait_seconds` are sent as 0
  (which the contract also allows) instead of turning each lease request into a long wait;
- an API key's `expires_at` must lie in the future: valid past timestamps move to 2099.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import schemathesis

LEASE_PATH = "/api/v1/workers/{id}/lease"
API_KEYS_PATH = "/api/v1/api-keys"
MAX_WAIT_SECONDS = 30
FAR_FUTURE = "2099-01-01T00:00:00Z"


def _is_valid_wait(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return 0 < value <= MAX_WAIT_SECONDS


def _is_past_timestamp(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return False  # not a valid timestamp: a negative case, left as generated
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment <= datetime.now(UTC)


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    if not isinstance(case.body, dict):
        return
    path, method = case.operation.path, case.operation.method.lower()
    if path == LEASE_PATH and _is_valid_wait(case.body.get("wait_seconds")):
        case.body["wait_seconds"] = 0
    elif (
        path == API_KEYS_PATH
        and method == "post"
        and _is_past_timestamp(case.body.get("expires_at"))
    ):
        case.body["expires_at"] = FAR_FUTURE
