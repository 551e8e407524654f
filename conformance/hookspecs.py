"""Hooks of the conformance plugin: where the checks and the catalogue of a run come from.

The plugin implements both from the registry and the catalogue files; a conftest or `-p` plugin may
answer first (tests use this to run small, made-up registries).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conformance.checks.registry import CheckSpec
    from conformance.model import CatalogueEntry


@pytest.hookspec(firstresult=True)
def pytest_taskforge_checks(config: pytest.Config) -> list[CheckSpec] | None:
    """The checks to turn into test items."""


@pytest.hookspec(firstresult=True)
def pytest_taskforge_catalogue(config: pytest.Config) -> list[CatalogueEntry] | None:
    """The catalogue entries, in the guide's order."""
