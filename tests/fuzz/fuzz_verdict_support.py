"""Run `python -m conformance run --fuzz-results FILE` with only the fuzz check, as a release
manager would to fold a fuzz run into the verdict (the other checks are left out to stay quick).

Also a pytest plugin (`-p fuzz_verdict_support`): it answers the conformance plugin's hooks with
the fuzz check and the API-FUZZ items only.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from conformance import cli
from conformance.checks.fuzz import fuzz_run
from conformance.checks.registry import REGISTRY, CheckSpec
from conformance.fuzz.findings import catalogue_entries
from conformance.model import CatalogueEntry


def fuzz_spec() -> CheckSpec:
    return REGISTRY[f"{fuzz_run.__module__}.{fuzz_run.__qualname__}"]


def fuzz_suite() -> cli.Suite:
    return cli.Suite(checks=[fuzz_spec()], catalogue=catalogue_entries(),
                     pytest_plugins=("fuzz_verdict_support",),
                     pytest_args=("-W", "ignore::pytest.PytestAssertRewriteWarning"))


@pytest.hookimpl(tryfirst=True)
def pytest_taskforge_checks(config: pytest.Config) -> list[CheckSpec]:
    return [fuzz_spec()]


@pytest.hookimpl(tryfirst=True)
def pytest_taskforge_catalogue(config: pytest.Config) -> list[CatalogueEntry]:
    return catalogue_entries()


def verdict_of(results_file: Path, reports: Path) -> tuple[int, str, dict[str, Any], str]:
    """Exit status, stdout, results.json and readiness.md of a run judging the fuzz results."""
    out = io.StringIO()
    code = cli.main(["run", "--fuzz-results", str(results_file), "--reports-dir", str(reports)],
                    suite=fuzz_suite(), out=out)
    latest = reports / "latest"
    document = json.loads((latest / "results.json").read_text(encoding="utf-8"))
    return code, out.getvalue(), document, (latest / "readiness.md").read_text(encoding="utf-8")


def statuses(document: dict[str, Any]) -> dict[str, str]:
    return {i["id"]: i["status"] for i in document["items"]}
