"""Helpers of the static-check tests: run the registered checks of one kind of artifact."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from conformance.checks.registry import CheckContext, registered_checks
from conformance.model import Finding, Status

REPO = Path(__file__).resolve().parents[3]
FIXTURES = Path(__file__).parent / "fixtures"
COMPOSE_DIR = REPO / "compose"

Runner = Callable[..., list[Finding]]


def run_checks(prefixes: tuple[str, ...], **context: object) -> list[Finding]:
    """Every finding of the registered checks whose items start with one of the prefixes."""
    ctx = CheckContext(**context)  # type: ignore[arg-type]
    findings: list[Finding] = []
    for spec in registered_checks():
        if any(item.startswith(prefixes) for item in spec.item_ids):
            findings += spec.run(ctx)
    return findings


def failing(findings: list[Finding]) -> set[str]:
    return {f.item_id for f in findings if f.status in (Status.FAILED, Status.ERROR)}
