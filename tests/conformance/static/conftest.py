"""Fixtures of the static-check tests: the clean .env and a private copy of compose/."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from static_helpers import COMPOSE_DIR, FIXTURES


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
