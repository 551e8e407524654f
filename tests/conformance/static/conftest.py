"""Fixtures of the static-check tests: the clean .env and a private copy of compose/."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from static_helpers import COMPOSE_DIR, FIXTURES, install_certificate


@pytest.fixture
def clean_env(tmp_path: Path) -> Path:
    """The clean .env fixture, private as it must be (mode 600)."""
    path = tmp_path / "clean.env"
    shutil.copyfile(FIXTURES / "clean" / "env", path)
    path.chmod(0o600)
    return path


@pytest.fixture
def compose_copy(tmp_path: Path) -> Path:
    """A copy of the reference compose/ directory as an operator fills it in: the clean .env
    (mode 600) and a certificate for BASE_URL's host in nginx/ssl."""
    target = tmp_path / "compose"
    shutil.copytree(COMPOSE_DIR, target, ignore=shutil.ignore_patterns("images"))
    env = target / ".env"
    shutil.copyfile(FIXTURES / "clean" / "env", env)
    env.chmod(0o600)
    install_certificate(target / "nginx" / "ssl", "api.example.com")
    return target
