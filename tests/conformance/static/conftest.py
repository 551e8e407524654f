"""Helpers of the static-check tests: run the registered checks of one artifact kind."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

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


@pytest.fixture
def clean_env(tmp_path: Path) -> Path:
    """The clean .env fixture, private as it must be (mode 600)."""
    path = tmp_path / "clean.env"
    shutil.copyfile(FIXTURES / "clean" / "env", path)
    path.chmod(0o600)
    return path


@pytest.fixture
def compose_copy(tmp_path: Path) -> Path:
    """A copy of the reference compose/ directory with the clean .env in it (mode 600)."""
    target = tmp_path / "compose"
    shutil.copytree(COMPOSE_DIR, target, ignore=shutil.ignore_patterns("images"))
    env = target / ".env"
    shutil.copyfile(FIXTURES / "clean" / "env", env)
    env.chmod(0o600)
    return target
