"""The registry of checks: each check is a function of a context that yields findings.

A check names the catalogue items it speaks for and the inputs it needs; the pytest plugin turns
every registered check into a test item, runs it, and folds its findings into the item results.
A check whose inputs are absent is not run: its items are reported as not applicable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conformance.model import Evidence, Finding, Status

if TYPE_CHECKING:
    from conformance.stack import Target


@dataclass(kw_only=True)
class CheckContext:
    """Everything a check may read. Absent inputs are None."""

    env_file: Path | None = None
    compose_file: Path | None = None
    dockerfile: Path | None = None
    nginx_conf: Path | None = None
    prometheus_config: Path | None = None
    prometheus_rules: tuple[Path, ...] = ()
    target: Target | None = None  # a live deployment (reference stack or external)
    token: str | None = None  # access token or API key for the live target
    hosts: tuple[str, ...] = ()  # testinfra host specs, e.g. "local://", "ssh://user@host"
    log_file: Path | None = None
    log_command: str | None = None
    database_url: str | None = None
    redis_url: str | None = None
    allow_writes: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def has(self, name: str) -> bool:
        value = getattr(self, name, None)
        return bool(value) if isinstance(value, tuple) else value is not None


CheckFunction = Callable[[CheckContext], Iterable[Finding]]


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
        return list(self.function(context))


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


def registered_checks() -> Iterator[CheckSpec]:
    """All checks, after importing the modules that define them."""
    import conformance.checks.all  # noqa: F401 - importing registers the checks

    yield from REGISTRY.values()


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
