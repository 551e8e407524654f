"""`--runbook`: the PROC-* items judge the procedures the team runs, in the guide's form.

Each defect is written into a copy of compose/RUNBOOK.md (the reference deployment's corrected
procedures): the item fails on that line, and passes on the runbook without it. Without a runbook
the guide's own procedures are judged, and every finding says so.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from static_helpers import COMPOSE_DIR, FIXTURES, run_checks

from conformance import cli
from conformance.checks.static import procedures
from conformance.model import Finding, Status

RUNBOOK = COMPOSE_DIR / "RUNBOOK.md"
COMPOSE = COMPOSE_DIR / "docker-compose.prod.yml"
GUIDE_COMPOSE = FIXTURES / "guide" / "docker-compose.prod.yml"  # requirepass, no REDISCLI_AUTH
PROC_ITEMS = ("PROC-ENV-LOCATION", "PROC-PSQL-IDENTITY", "PROC-SMOKE-VERIFIES-TLS",
              "PROC-ROLLBACK-PREVIOUS-VERSION", "PROC-ROLLBACK-ORDER", "PROC-DIAG-REDIS-AUTH",
              "PROC-RECOVERY-ORDER")
TAGGED_UP = ("TASKFORGE_IMAGE=taskforge-local/reference-server:PREVIOUS_TAG docker compose "
             "-f docker-compose.prod.yml up -d app")
PING = ("docker compose -f docker-compose.prod.yml exec redis sh -c "
        "'REDISCLI_AUTH=\"$REDIS_PASSWORD\" redis-cli ping'")


@pytest.fixture
def env(tmp_path: Path) -> Path:
    """compose/'s .env as its operator completes it (DB_USER and DB_NAME as shipped)."""
    path = tmp_path / ".env"
    path.write_text((COMPOSE_DIR / ".env.example").read_text(), encoding="utf-8")
    return path


def runbook_with(tmp_path: Path, old: str, new: str, *, section: str | None = None) -> tuple[
        Path, int]:
    """A copy of RUNBOOK.md with `old` replaced (in one section when given), and the line."""
    text = RUNBOOK.read_text(encoding="utf-8")
    start = text.index(f"### {section}." if "." in (section or "") else f"## {section}.") \
        if section else 0
    at = text.index(old, start)
    path = tmp_path / "RUNBOOK.md"
    path.write_text(text[:at] + new + text[at + len(old):], encoding="utf-8")
    return path, text[:at].count("\n") + 1


def judge(item: str, runbook: Path | None, **files: object) -> list[Finding]:
    files.setdefault("compose_file", COMPOSE)
    return run_checks((item,), runbook=runbook, **files)


def only(findings: list[Finding]) -> set[Status]:
    return {f.status for f in findings}


def test_reference_runbook_passes_every_proc_item(env: Path) -> None:
    for item in PROC_ITEMS:
        findings = judge(item, RUNBOOK, env_file=env)
        assert only(findings) == {Status.PASSED}, (item, [f.message for f in findings])
        # judged where it is, and not said to be the guide's
        assert all(e.file == str(RUNBOOK) for f in findings for e in f.evidence[:1]), item
        assert not any(procedures.GUIDE_NOTE in f.message for f in findings)


@pytest.mark.parametrize(
    ("item", "section", "old", "new", "text"),
    [
        ("PROC-ENV-LOCATION", "4.2", "production-server:/opt/taskforge/app/.env",
         "production-server:/opt/taskforge/config/.env", "put it at /opt/taskforge/config/.env"),
        ("PROC-SMOKE-VERIFIES-TLS", "5.2", "curl --fail --cacert /path/to/your/ca.crt https",
         "curl -sSk https", "passes -k"),
        ("PROC-ROLLBACK-ORDER", "7", "docker compose -f docker-compose.prod.yml stop app\n",
         "docker compose -f docker-compose.prod.yml down\n", "after `down`"),
        ("PROC-ROLLBACK-ORDER", "7", "docker compose -f docker-compose.prod.yml stop app\n",
         "docker compose -f docker-compose.prod.yml stop\n", "that stopped its container"),
        ("PROC-RECOVERY-ORDER", "10.2", "docker compose -f docker-compose.prod.yml stop app backup",
         "docker compose -f docker-compose.prod.yml stop db app", "that stopped its container"),
        ("PROC-ROLLBACK-PREVIOUS-VERSION", "7", TAGGED_UP,
         "docker compose -f docker-compose.prod.yml up -d app", "nothing before it names"),
    ],
)
def test_runbook_defect_fails_where_it_is(
    tmp_path: Path, env: Path, item: str, section: str, old: str, new: str, text: str
) -> None:
    runbook, changed = runbook_with(tmp_path, old, new, section=section)
    findings = judge(item, runbook, env_file=env)
    assert only(findings) == {Status.FAILED}, [f.message for f in findings]
    assert any(text in f.message for f in findings), [f.message for f in findings]
    assert all(f.evidence[0].file == str(runbook) for f in findings)
    assert all(f.message.startswith(f"RUNBOOK.md {section} ") for f in findings)
    lines = {f.evidence[0].line for f in findings}
    # the step the defect breaks: the exec after the stop, the up after the copy, or the line
    assert min(lines) >= changed, (lines, changed)
    assert not any(procedures.GUIDE_NOTE in f.message for f in findings)


def test_env_file_option_reads_the_env_where_it_was_put(tmp_path: Path, env: Path) -> None:
    """The .env kept in config/ is right when every compose command is given --env-file."""
    text = RUNBOOK.read_text(encoding="utf-8")
    text = text.replace("production-server:/opt/taskforge/app/.env",
                        "production-server:/opt/taskforge/config/.env")
    moved = tmp_path / "moved.md"
    moved.write_text(text, encoding="utf-8")
    assert only(judge("PROC-ENV-LOCATION", moved)) == {Status.FAILED}
    given = tmp_path / "given.md"
    given.write_text(text.replace("docker compose -f", "docker compose --env-file "
                                  "/opt/taskforge/config/.env -f"), encoding="utf-8")
    assert only(judge("PROC-ENV-LOCATION", given)) == {Status.PASSED}


def test_env_location_not_judged_when_the_steps_put_no_env(tmp_path: Path) -> None:
    """A .env made some way the steps do not show: where Compose finds it cannot be told."""
    runbook = tmp_path / "RUNBOOK.md"
    runbook.write_text("### 4.2. Steps\n\n```bash\ncd /opt/taskforge/app\n"
                       "docker compose -f docker-compose.prod.yml up -d\n```\n", encoding="utf-8")
    (finding,) = judge("PROC-ENV-LOCATION", runbook)
    assert finding.status is Status.NOT_APPLICABLE and "puts no .env" in finding.message


def test_psql_identity_judges_the_runbook_commands(tmp_path: Path, env: Path) -> None:
    other = tmp_path / "other.env"
    other.write_text(env.read_text().replace("DB_USER=taskforge", "DB_USER=tf_app"))
    findings = judge("PROC-PSQL-IDENTITY", RUNBOOK, env_file=other)
    assert only(findings) == {Status.FAILED}
    assert {f.evidence[0].summary.split(":")[0] for f in findings} == {
        "guide 7", "guide 10.1", "guide 10.2"}
    assert all("as user taskforge" in f.message and f.evidence[0].file == str(RUNBOOK)
               for f in findings)
    # the .env's own variables are its values
    variables = tmp_path / "variables.md"
    variables.write_text(RUNBOOK.read_text().replace("-U taskforge", '-U "$DB_USER"'))
    assert only(judge("PROC-PSQL-IDENTITY", variables, env_file=env)) == {Status.PASSED}
    assert only(judge("PROC-PSQL-IDENTITY", variables, env_file=other)) == {Status.PASSED}


def test_redis_diagnostic_needs_credentials_where_the_service_sets_none(tmp_path: Path) -> None:
    # The guide's compose file: --requirepass and no REDISCLI_AUTH in the service.
    assert only(judge("PROC-DIAG-REDIS-AUTH", RUNBOOK, compose_file=GUIDE_COMPOSE)) == {
        Status.PASSED}
    plain, line = runbook_with(tmp_path, PING, "docker compose -f docker-compose.prod.yml exec "
                               "redis redis-cli ping", section="9.2")
    (finding,) = judge("PROC-DIAG-REDIS-AUTH", plain, compose_file=GUIDE_COMPOSE)
    assert finding.status is Status.FAILED
    assert finding.evidence[0].line == line and "NOAUTH" in finding.message
    # compose/'s redis sets REDISCLI_AUTH itself: the plain ping authenticates there
    assert only(judge("PROC-DIAG-REDIS-AUTH", plain)) == {Status.PASSED}


def test_a_runbook_without_the_section_is_not_judged(tmp_path: Path, env: Path) -> None:
    text = RUNBOOK.read_text(encoding="utf-8")
    runbook = tmp_path / "RUNBOOK.md"
    runbook.write_text(text[:text.index("## 7.")], encoding="utf-8")
    (finding,) = judge("PROC-ROLLBACK-ORDER", runbook)
    assert finding.status is Status.NOT_APPLICABLE
    assert "no ```bash commands under a section 7 heading" in finding.message


@pytest.mark.parametrize("item", PROC_ITEMS)
def test_without_a_runbook_the_guide_is_judged_and_said_to_be(item: str, tmp_path: Path) -> None:
    env = tmp_path / ".env"
    shutil.copyfile(FIXTURES / "guide" / "env.production", env)
    # compose/'s app has an image: tag, so the guide's section 7 itself is what is judged
    compose = COMPOSE if item == "PROC-ROLLBACK-PREVIOUS-VERSION" else GUIDE_COMPOSE
    findings = judge(item, None, env_file=env, compose_file=compose)
    assert findings and all(procedures.GUIDE_NOTE in f.message for f in findings)
    assert all(e.file and e.file.endswith("guide.md") for f in findings
               for e in f.evidence[:1] if f.status is Status.FAILED)


@pytest.mark.slow
def test_embedded_reference_run_fails_no_static_item(tmp_path: Path) -> None:
    """`python -m conformance run --stack embedded`: compose/ with its RUNBOOK.md."""
    reports = tmp_path / "reports"
    out = io.StringIO()
    cli.main(["run", "--stack", "embedded", "--reports-dir", str(reports)], out=out)
    (results,) = [p for p in reports.glob("*/results.json") if not p.parent.is_symlink()]
    items = json.loads(results.read_text())["items"]
    static_failures = [
        (i["id"], i["message"]) for i in items
        if i["status"] in ("failed", "error")
        and any(f["check"].startswith("conformance.checks.static.") for f in i["findings"])
    ]
    assert static_failures == []
    proc = {i["id"]: i for i in items if i["id"] in PROC_ITEMS}
    assert {i: p["status"] for i, p in proc.items()} == dict.fromkeys(PROC_ITEMS, "passed")
    assert all(e["file"].endswith("RUNBOOK.md") for p in proc.values()
               for e in p["evidence"][:1])
    assert "RUNBOOK.md" in out.getvalue()
