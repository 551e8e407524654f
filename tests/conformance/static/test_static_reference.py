"""The reference deployment of compose/ passes every static check, completed as an operator would
(secrets generated, certificate installed)."""

from __future__ import annotations

import stat
from pathlib import Path

from static_helpers import COMPOSE_DIR, failing, run_checks

from conformance import cli
from conformance.catalogue import load_catalogue
from conformance.checks.static.reference import fill_empty_values, prepare_reference_deployment
from conformance.model import Phase, Status

PREFIXES = ("ENV", "COMPOSE", "DOCKERFILE", "NGINX", "PROM", "GRAFANA", "SIZING", "PROC")
#: Items compose/'s files cannot decide, and the words that say why.
NOT_JUDGEABLE = {
    # Dumps go to /opt/taskforge/backups: another disk or the same, the compose file cannot tell.
    "COMPOSE-BACKUP-OFFSITE": "whether that is another disk or machine",
}
#: The five secrets .env.example's header tells the operator to generate.
SECRET_VARIABLES = (
    "JWT_SECRET", "JWT_REFRESH_SECRET", "DB_PASSWORD", "REDIS_PASSWORD", "GRAFANA_ADMIN_PASSWORD",
)


def test_reference_deployment_passes_every_static_check(tmp_path: Path) -> None:
    files, rules, _ = cli.prepare_repo_deployment(tmp_path)  # what a default `run` checks
    catalogue = load_catalogue()
    static_items = {i for i, e in catalogue.items()
                    if i.startswith(PREFIXES) and e.phase is Phase.STATIC}
    findings = [f for f in run_checks(PREFIXES, **files, prometheus_rules=tuple(rules))
                if f.item_id in static_items]
    problems = [
        f"{f.item_id}: {f.message} ({f.evidence[0].file}:{f.evidence[0].line})"
        for f in findings if f.status in (Status.FAILED, Status.ERROR)
    ]
    assert problems == []
    # Every static item was judged (none skipped for a missing input), but those the files
    # cannot decide, which say so.
    assert {f.item_id for f in findings if f.status is Status.PASSED} == static_items - set(
        NOT_JUDGEABLE
    )
    for item, reason in NOT_JUDGEABLE.items():
        (finding,) = [f for f in findings if f.item_id == item]
        assert finding.status is Status.NOT_APPLICABLE
        assert reason in finding.message


def test_preparation_generates_private_distinct_secrets(tmp_path: Path) -> None:
    prepared = prepare_reference_deployment(COMPOSE_DIR, tmp_path / "compose")
    env = prepared.files["env_file"]
    assert env is not None
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert prepared.generated == tuple(
        line.removesuffix("=") for line in (COMPOSE_DIR / ".env.example").read_text().splitlines()
        if line.endswith("=") and not line.startswith("#")
    )
    assert set(prepared.generated) == set(SECRET_VARIABLES)
    key = tmp_path / "compose" / "nginx" / "ssl" / "private.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    values = dict(
        line.split("=", 1) for line in env.read_text().splitlines()
        if line.split("=", 1)[0] in SECRET_VARIABLES
    )
    assert set(values) == set(SECRET_VARIABLES)
    assert len(set(values.values())) == len(SECRET_VARIABLES)
    assert all(len(v) >= 64 for v in values.values())
    assert fill_empty_values("JWT_SECRET=kept\n# X=\n") == ("JWT_SECRET=kept\n# X=\n", ())


def test_example_env_as_shipped_is_refused(tmp_path: Path) -> None:
    """Unfilled, the example stops at its empty secrets: nobody deploys it by accident."""
    path = tmp_path / ".env"
    path.write_text((COMPOSE_DIR / ".env.example").read_text())
    path.chmod(0o600)
    assert failing(run_checks(("ENV",), env_file=path)) == {
        "ENV-REQUIRED-VARS", "ENV-JWT-SECRET-STRENGTH", "ENV-JWT-REFRESH-SECRET-STRENGTH",
    }
