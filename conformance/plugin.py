"""The conformance kit's pytest plugin (registered as a pytest11 entry point)."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("taskforge", "TaskForge conformance")
    group.addoption(
        "--tf-target-url",
        dest="tf_target_url",
        default=None,
        help="Base URL of the TaskForge deployment to verify",
    )
