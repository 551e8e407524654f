"""The registry of checks: each check is a function of a context that yields findings.

A check names the catalogue items it speaks for and the inputs it needs; the pytest plugin turns
every registered check into a test item, runs it, and folds its findings into the item results.
A check whose inputs are absent is not run: its items are reported as not applicable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from conformance.model import Evidence, Finding, Status

if TYPE_CHECKING:
    from conformance.stack import Target


@dataclass(kw_only=True)
class CheckContext:
    """Everything a check may read. Absent inputs are None (or empty, or False).

    The fields named like a run input are filled from it (conformance/inputs.py declares each
    one: flag, type, environment variable, help); the rest the runner derives.
    """

    # deployment files
    env_file: Path | None = None
    compose_file: Path | None = None
    dockerfile: Path | None = None
    nginx_conf: Path | None = None
    prometheus_config: Path | None = None
    prometheus_rules: tuple[Path, ...] = ()
    runbook: Path | None = None  # the procedures run (guide form); None: the guide's own
    # the live target: derived from --target-url, --ca-bundle or the stack the run stood up
    target: Target | None = None  # a live deployment (reference stack or external)
    database_url: str | None = None  # --database-url, else the target's
    redis_url: str | None = None  # --redis-url, else the target's
    log_file: Path | None = None  # --log-file, else the target's
    allow_writes: bool = False  # --allow-writes, or the reference stack
    # credentials of the run's own identity
    token: str | None = None  # access token for the live target
    api_key: str | None = None
    email: str | None = None
    password: str | None = None
    # a second identity, in another organisation, and signing keys
    second_token: str | None = None
    second_api_key: str | None = None
    second_email: str | None = None
    second_password: str | None = None
    member_token: str | None = None  # a member of the run's own organisation
    member_api_key: str | None = None
    jwt_secret: str | None = None
    expired_token: str | None = None
    # how to reach the target and what to ask of it
    insecure: bool = False
    resolve: tuple[str, ...] = ()  # HOST:PORT:ADDRESS, as curl --resolve
    log_command: str | None = None
    cors_origin: str | None = None
    metrics_endpoint: str | None = None
    metrics_url: str | None = None
    migrations_dir: Path | None = None
    allow_load: bool = False
    slow_client_count: int | None = None
    # observability and the front door
    prometheus_url: str | None = None
    alertmanager_url: str | None = None
    grafana_url: str | None = None
    grafana_token: str | None = None
    docker_host: str | None = None
    # results of other runs
    chaos_results: Path | None = None
    load_results: Path | None = None
    fuzz_results: Path | None = None
    # hosts
    hosts: tuple[str, ...] = ()  # testinfra host specs, e.g. "local://", "ssh://user@host"
    allow_host_writes: bool = False  # --allow-writes itself: the reference stack is no host
    taskforge_dir: str = "/opt/taskforge"  # the deployment directory on the hosts
    host_root: str = "/"  # prefix of the files host checks read ("/" except in tests)
    # the run
    run_id: str | None = None

    def has(self, name: str) -> bool:
        value = getattr(self, name, None)
        return bool(value) if isinstance(value, tuple) else value is not None


CheckFunction = Callable[[CheckContext], Iterable[Finding]]


class Blocked(Exception):
    """Raised inside a check that cannot be judged: every item of the check becomes `blocked`.

    `by` names the cause: the item whose failure stops it (LIVE-TLS-CHAIN) or "reachability".
    """

    def __init__(self, by: str, message: str) -> None:
        super().__init__(message)
        self.by = by
        self.message = message


def blocked(item_id: str, check_name: str, by: str, message: str) -> Finding:
    return Finding(item_id=item_id, status=Status.BLOCKED, check=check_name, message=message,
                   blocked_by=by)


@dataclass(frozen=True, kw_only=True, slots=True)
class CheckSpec:
    name: str  # module-qualified function name, stable across runs
    item_ids: tuple[str, ...]
    needs: frozenset[str]  # CheckContext attribute names that must be present
    function: CheckFunction
    last: bool = False  # runs after the others: it may disturb them (e.g. exhausts a rate limit)

    def run(self, context: CheckContext) -> list[Finding]:
        missing = sorted(n for n in self.needs if not context.has(n))
        if missing:
            return [
                Finding(
                    item_id=item_id,
                    status=Status.NOT_APPLICABLE,
                    check=self.name,
                    message=f"not run: no {', '.join(missing)} given",
                )
                for item_id in self.item_ids
            ]
        found: list[Finding] = []
        try:
            for finding in self.function(context):
                found.append(finding)
        except Blocked as exc:
            # What was judged before the block stands; the rest of the check's items are blocked.
            judged = {f.item_id for f in found}
            found += [blocked(item_id, self.name, exc.by, exc.message)
                      for item_id in self.item_ids if item_id not in judged]
        return found


REGISTRY: dict[str, CheckSpec] = {}


def check(
    *item_ids: str, needs: Iterable[str] = (), last: bool = False
) -> Callable[[CheckFunction], CheckFunction]:
    """Register a check for the given catalogue items."""

    def register(function: CheckFunction) -> CheckFunction:
        name = f"{function.__module__}.{function.__qualname__}"
        REGISTRY[name] = CheckSpec(
            name=name, item_ids=tuple(item_ids), needs=frozenset(needs), function=function,
            last=last,
        )
        return function

    return register


def passed(item_id: str, check_name: str, message: str = "", *evidence: Evidence) -> Finding:
    return Finding(
        item_id=item_id, status=Status.PASSED, check=check_name, message=message,
        evidence=tuple(evidence),
    )


def failed(
    item_id: str,
    check_name: str,
    message: str,
    *evidence: Evidence,
    expected: str | None = None,
    actual: str | None = None,
) -> Finding:
    return Finding(
        item_id=item_id, status=Status.FAILED, check=check_name, message=message,
        expected=expected, actual=actual, evidence=tuple(evidence),
    )
