"""The guide's procedures read as commands in order: each defect is found where it is, and the
corrected procedure (or the project's compose/) passes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from static_helpers import COMPOSE_DIR, FIXTURES, run_checks

from conformance.catalogue import GUIDE_PATH
from conformance.checks.static import procedures
from conformance.model import Finding, Status

GUIDE_FILES = FIXTURES / "guide"

#: The guide's procedure lines, and what a corrected procedure writes instead.
CORRECTIONS = {
    "docker-compose -f docker-compose.prod.yml down":
        "docker-compose -f docker-compose.prod.yml stop app",
    "scp .env.production user@production-server:/opt/taskforge/config/.env":
        "scp .env.production user@production-server:/opt/taskforge/app/.env",
    "curl -k ": "curl ",
}


@pytest.fixture
def corrected_guide(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    text = GUIDE_PATH.read_text(encoding="utf-8")
    for old, new in CORRECTIONS.items():
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / "guide.md"
    path.write_text(text, encoding="utf-8")
    monkeypatch.setattr(procedures, "GUIDE", path)
    return path


def statuses(findings: list[Finding]) -> dict[str, set[Status]]:
    result: dict[str, set[Status]] = {}
    for f in findings:
        result.setdefault(f.item_id, set()).add(f.status)
    return result


def test_commands_keep_their_section_and_line() -> None:
    downs = [c for c in procedures.guide_commands(GUIDE_PATH) if c.text.endswith(" down")]
    assert [(c.section, c.line) for c in downs] == [("7", 627), ("10.2", 728)]
    assert GUIDE_PATH.read_text().splitlines()[626].strip() == downs[0].text


@pytest.mark.parametrize(
    ("item", "line", "text"),
    [
        ("PROC-ROLLBACK-ORDER", 631, "after `down` (line 627)"),
        ("PROC-RECOVERY-ORDER", 731, "after `down` (line 728)"),
        ("PROC-ENV-LOCATION", 521, "put it at /opt/taskforge/config/.env (line 499)"),
        ("PROC-SMOKE-VERIFIES-TLS", 560, "passes -k"),
    ],
)
def test_guide_procedure_defect(item: str, line: int, text: str) -> None:
    findings = [f for f in run_checks((item,)) if f.status is Status.FAILED]
    assert any(text in f.message and f.evidence[0].line == line for f in findings), findings
    assert all(f.evidence[0].file == str(GUIDE_PATH) for f in findings)


def test_corrected_procedure_passes(corrected_guide: Path) -> None:
    items = ("PROC-ROLLBACK-ORDER", "PROC-RECOVERY-ORDER", "PROC-ENV-LOCATION",
             "PROC-SMOKE-VERIFIES-TLS")
    assert statuses(run_checks(items)) == {item: {Status.PASSED} for item in items}


def test_rollback_needs_the_container_name_it_execs(tmp_path: Path) -> None:
    """compose/ lets Compose name its containers: `docker exec taskforge_db_prod` finds none."""
    findings = run_checks(("PROC-ROLLBACK-ORDER",),
                          compose_file=COMPOSE_DIR / "docker-compose.prod.yml")
    assert any("no service of docker-compose.prod.yml is named taskforge_db_prod" in f.message
               for f in findings)
    guide = run_checks(("PROC-ROLLBACK-ORDER",),
                       compose_file=GUIDE_FILES / "docker-compose.prod.yml")
    assert not any("is named" in f.message for f in guide)  # the guide sets container_name


@pytest.mark.parametrize(
    ("item", "compose", "status"),
    [
        ("PROC-DIAG-REDIS-AUTH", GUIDE_FILES / "docker-compose.prod.yml", Status.FAILED),
        ("PROC-DIAG-REDIS-AUTH", COMPOSE_DIR / "docker-compose.prod.yml", Status.PASSED),
        ("PROC-ROLLBACK-PREVIOUS-VERSION", GUIDE_FILES / "docker-compose.prod.yml",
         Status.FAILED),
        # compose/ tags the app's image, but the guide's own section 7 never names the previous
        # tag (compose/RUNBOOK.md does: test_static_runbook.py)
        ("PROC-ROLLBACK-PREVIOUS-VERSION", COMPOSE_DIR / "docker-compose.prod.yml",
         Status.FAILED),
    ],
)
def test_procedure_against_the_files(item: str, compose: Path, status: Status) -> None:
    assert statuses(run_checks((item,), compose_file=compose)) == {item: {status}}


def test_redis_diagnostic_noauth_is_found_at_its_line() -> None:
    (finding,) = run_checks(("PROC-DIAG-REDIS-AUTH",),
                            compose_file=GUIDE_FILES / "docker-compose.prod.yml")
    assert finding.evidence[0].line == 706
    assert "NOAUTH Authentication required." in finding.message


@pytest.mark.parametrize(
    ("old", "new", "status"),
    [
        ("DB_USER=taskforge", "DB_USER=taskforge", Status.PASSED),  # the guide's own .env
        ("DB_USER=taskforge", "DB_USER=tf_app", Status.FAILED),
        ("DB_NAME=taskforge_production", "DB_NAME=tasks", Status.FAILED),
    ],
)
def test_psql_identity(tmp_path: Path, old: str, new: str, status: Status) -> None:
    env = tmp_path / ".env"
    shutil.copyfile(GUIDE_FILES / "env.production", env)
    env.write_text(env.read_text().replace(old, new))
    findings = run_checks(("PROC-PSQL-IDENTITY",), env_file=env)
    assert {f.status for f in findings} == {status}
    if status is Status.FAILED:
        assert {f.evidence[0].line for f in findings} >= {537, 715, 731}
        # each where its command is: 4.2 step 5, 10.1, 10.2
        assert {f.evidence[0].summary.split(":")[0] for f in findings} >= {
            "guide 4.2", "guide 10.1", "guide 10.2"}
