"""The reference deployment of compose/ passes every static check, completed as an operator would
(secrets generated, certificate installed)."""

from __future__ import annotations

import dataclasses
import stat
from pathlib import Path

from static_helpers import COMPOSE_DIR, failing, run_checks

from conformance.catalogue import load_catalogue
from conformance.checks.static.reference import (
    SECRET_VARIABLES,
    fill_secrets,
    prepare_reference_deployment,
)
from conformance.model import Status

PREFIXES = ("ENV", "COMPOSE", "DOCKERFILE", "NGINX", "PROM", "GRAFANA", "SIZING")


def test_reference_deployment_passes_every_static_check(tmp_path: Path) -> None:
    files = prepare_reference_deployment(COMPOSE_DIR, tmp_path / "compose")
    findings = run_checks(PREFIXES, **dataclasses.asdict(files))
    problems = [
        f"{f.item_id}: {f.message} ({f.evidence[0].file}:{f.evidence[0].line})"
        for f in findings if f.status in (Status.FAILED, Status.ERROR)
    ]
    assert problems == []
    static_items = {i for i in load_catalogue() if i.startswith(PREFIXES)}
    # Every static item was judged (none skipped for a missing input).
    assert {f.item_id for f in findings if f.status is Status.PASSED} == static_items


def test_preparation_generates_private_distinct_secrets(tmp_path: Path) -> None:
    files = prepare_reference_deployment(COMPOSE_DIR, tmp_path / "compose")
    assert stat.S_IMODE(files.env_file.stat().st_mode) == 0o600
    values = dict(
        line.split("=", 1) for line in files.env_file.read_text().splitlines()
        if line.split("=", 1)[0] in SECRET_VARIABLES
    )
    assert set(values) == set(SECRET_VARIABLES)
    assert len(set(values.values())) == len(SECRET_VARIABLES)
    assert all(len(v) >= 64 for v in values.values())
    assert fill_secrets("JWT_SECRET=kept\n") == "JWT_SECRET=kept\n"  # set values stay


def test_example_env_as_shipped_is_refused(tmp_path: Path) -> None:
    """Unfilled, the example stops at its empty secrets: nobody deploys it by accident."""
    path = tmp_path / ".env"
    path.write_text((COMPOSE_DIR / ".env.example").read_text())
    path.chmod(0o600)
    assert failing(run_checks(("ENV",), env_file=path)) == {
        "ENV-REQUIRED-VARS", "ENV-JWT-SECRET-STRENGTH", "ENV-JWT-REFRESH-SECRET-STRENGTH",
    }
