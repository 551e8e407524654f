"""What every live check shares: resolving its inputs from the context, and reporting findings."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conformance.model import Evidence, Finding, Status

if TYPE_CHECKING:
    from conformance.checks.registry import CheckContext
    from conformance.stack import Target

#: One id per process when the runner gives none; it tags what the checks write (the smoke job).
_PROCESS_RUN_ID = f"local-{uuid.uuid4().hex[:12]}"

#: Loopback names: the only hosts besides the user's target that a check may contact.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


class Report:
    """Builds the findings of one check, with its name and the time since it started."""

    def __init__(self, check: str) -> None:
        self.check = check
        self._started = time.monotonic()

    def _finding(
        self,
        item_id: str,
        status: Status,
        message: str,
        evidence: tuple[Evidence, ...],
        expected: str | None = None,
        actual: str | None = None,
    ) -> Finding:
        return Finding(
            item_id=item_id,
            status=status,
            check=self.check,
            message=message,
            expected=expected,
            actual=actual,
            evidence=evidence,
            duration_seconds=round(time.monotonic() - self._started, 3),
        )

    def passed(self, item_id: str, message: str, *evidence: Evidence) -> Finding:
        return self._finding(item_id, Status.PASSED, message, evidence)

    def failed(
        self,
        item_id: str,
        message: str,
        *evidence: Evidence,
        expected: str | None = None,
        actual: str | None = None,
    ) -> Finding:
        return self._finding(item_id, Status.FAILED, message, evidence, expected, actual)

    def not_applicable(self, item_id: str, message: str) -> Finding:
        return self._finding(item_id, Status.NOT_APPLICABLE, message, ())

    def skipped(self, item_id: str, message: str, *evidence: Evidence) -> Finding:
        return self._finding(item_id, Status.SKIPPED, message, evidence)

    def error(self, item_id: str, message: str, *evidence: Evidence) -> Finding:
        return self._finding(item_id, Status.ERROR, message, evidence)


def target_of(ctx: CheckContext) -> Target:
    """The context's target, with the run's --resolve entries added to the target's own."""
    if ctx.target is None:  # the registry runs live checks only with a target (needs=("target",))
        raise ValueError("live check run without a target")
    given = tuple(run_input(ctx, "resolve") or ())
    if given and not set(given) <= set(ctx.target.resolve):
        return dataclasses.replace(ctx.target, resolve=(*ctx.target.resolve, *given))
    return ctx.target


def target_env(ctx: CheckContext) -> Mapping[str, str]:
    """The settings the reference server was started with; empty for a foreign deployment."""
    return ctx.target.env if ctx.target is not None else {}


def database_url_of(ctx: CheckContext) -> str | None:
    return ctx.database_url or (ctx.target.database_url if ctx.target is not None else None)


def redis_url_of(ctx: CheckContext) -> str | None:
    return ctx.redis_url or (ctx.target.redis_url if ctx.target is not None else None)


def log_file_of(ctx: CheckContext) -> Path | None:
    return ctx.log_file or (ctx.target.log_file if ctx.target is not None else None)


def run_id(ctx: CheckContext) -> str:
    return ctx.run_id or _PROCESS_RUN_ID


def may_write(ctx: CheckContext) -> bool:
    """Writes beyond the smoke job and the rate-limit probe: the reference stack, or opted in."""
    return ctx.allow_writes or (ctx.target is not None and ctx.target.is_reference)


def run_input(ctx: CheckContext, name: str) -> Any:
    """A run input by its CheckContext field name (e.g. "jwt_secret", "second_token").

    Every run input is a typed field now (conformance/inputs.py); None when the name is unknown.
    """
    return getattr(ctx, name, None)


def flag(ctx: CheckContext, name: str) -> bool:
    """A boolean run input (e.g. "allow_load"), false when absent; "true"/"1"/"yes" from extra."""
    value = run_input(ctx, name)
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return bool(value)


def may_load(ctx: CheckContext) -> bool:
    """Load-like probes (many connections, bursts): the reference stack, or --allow-load."""
    return flag(ctx, "allow_load") or (ctx.target is not None and ctx.target.is_reference)


def known_setting(ctx: CheckContext, name: str) -> str | None:
    """A server setting the kit knows: the reference stack's own, else the --env-file's."""
    value = target_env(ctx).get(name)
    if value:
        return value
    if ctx.env_file is not None:
        from conformance.checks.static.base import ArtifactError
        from conformance.checks.static.env import parse_env

        try:
            return parse_env(ctx.env_file).get(name)
        except ArtifactError:
            return None
    return None


def metrics_path(ctx: CheckContext) -> str:
    return ctx.metrics_endpoint or target_env(ctx).get("METRICS_ENDPOINT") or "/metrics"


def shorten(text: str, limit: int = 600) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text) - limit} more chars)"


def deployment_input(ctx: CheckContext, name: str) -> str | None:
    """A URL of the deployment (--metrics-url, --prometheus-url, ...): the run input when given,
    else what the target knows (the docker stack's deployment says where its Prometheus is)."""
    value = run_input(ctx, name)
    if not value and ctx.target is not None:
        value = getattr(ctx.target, name, None)
    return str(value) if value else None
