"""The guide's own artifacts (3.1-3.3, verbatim) produce the findings a careful review expects."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from static_helpers import FIXTURES, run_checks

from conformance.model import Finding, Status

GUIDE = FIXTURES / "guide"
GUIDE_FILES = {"dockerfile": GUIDE / "Dockerfile.prod",
               "compose_file": GUIDE / "docker-compose.prod.yml"}


def failed(findings: list[Finding], item: str) -> list[Finding]:
    return [f for f in findings if f.item_id == item and f.status is Status.FAILED]


@pytest.fixture(scope="module")
def env_findings(tmp_path_factory: pytest.TempPathFactory) -> list[Finding]:
    path = tmp_path_factory.mktemp("guide") / ".env"
    shutil.copyfile(GUIDE / "env.production", path)
    path.chmod(0o600)
    return run_checks(("ENV",), env_file=path)


@pytest.fixture(scope="module")
def compose_findings() -> list[Finding]:
    return run_checks(
        ("COMPOSE",), compose_file=GUIDE / "docker-compose.prod.yml",
        dockerfile=GUIDE / "Dockerfile.prod",
    )


@pytest.fixture(scope="module")
def dockerfile_findings() -> list[Finding]:
    return run_checks(
        ("DOCKERFILE",), dockerfile=GUIDE / "Dockerfile.prod",
        compose_file=GUIDE / "docker-compose.prod.yml",
    )


def messages(findings: list[Finding], item: str) -> str:
    return "\n".join(f"{f.message} | {f.actual}" for f in failed(findings, item))


#: (item, line of .env.production, words of the failure): what the guide's .env gets wrong.
ENV_DEFECTS = [
    ("ENV-JWT-SECRET-STRENGTH", 24, "JWT_SECRET is a placeholder"),
    ("ENV-JWT-REFRESH-SECRET-STRENGTH", 26, "JWT_REFRESH_SECRET is a placeholder"),
    ("ENV-SECRETS-NOT-PLACEHOLDER", 8, "DB_PASSWORD is a placeholder"),
    ("ENV-SECRETS-NOT-PLACEHOLDER", 47, "STRIPE_SECRET_KEY is a placeholder"),
    ("ENV-SECRETS-NOT-PLACEHOLDER", 3, "the password inside DATABASE_URL is a placeholder"),
    ("ENV-DATABASE-URL-CONSISTENT", 3, "DATABASE_URL's password differs from DB_PASSWORD"),
    ("ENV-REDIS-URL-CONSISTENT", 11, "REDIS_URL's password differs from REDIS_PASSWORD"),
    ("ENV-CSP-STRICT", 56, "SECURITY_CSP allows 'unsafe-inline'"),
    ("ENV-CSP-STRICT", 56, "SECURITY_CSP allows 'unsafe-eval'"),
    ("ENV-SURVIVES-EXPORT", 56, "SECURITY_CSP arrives changed"),
    ("ENV-VALUE-FORMATS", 51, "SENTRY_DSN is not a valid URL"),
    ("ENV-BASE-URL-HTTPS", 20, "BASE_URL is on the guide's placeholder domain"),
    ("ENV-CORS-ORIGINS", 21, "CORS origin https://yourdomain.com is the guide's placeholder"),
    ("ENV-CORS-ORIGINS", 21, "CORS origin https://app.yourdomain.com is the guide's"),
]
#: LOG_FILE_PATH (line 32): the image never creates it, its user cannot write it, no volume
#: keeps it.
LOG_FILE_PATH_DEFECTS = [
    "no volume of service app keeps /var/log/taskforge",
    "the image never creates /var/log/taskforge",
    "the runtime user taskforge cannot write /var/log/taskforge",
]
#: (item, words of the failure): what the guide's compose file gets wrong.
COMPOSE_DEFECTS = [
    ("COMPOSE-PORTS-LOOPBACK", "service db publishes container port 5432"),
    ("COMPOSE-PORTS-LOOPBACK", "service redis publishes container port 6379"),
    ("COMPOSE-PORTS-LOOPBACK", "service prometheus publishes container port 9090"),
    ("COMPOSE-PORTS-LOOPBACK", "service grafana publishes container port 3000"),
    ("COMPOSE-PORTS-LOOPBACK", "service app publishes container port 8000"),
    ("COMPOSE-NO-DOCKER-SOCKET", "service app mounts the Docker socket"),
    ("COMPOSE-IMAGE-PINNED", "prom/prometheus:latest is :latest"),
    ("COMPOSE-IMAGE-PINNED", "grafana/grafana-enterprise:latest is :latest"),
    ("COMPOSE-IMAGE-PINNED", "tiredofit/db-backup has no tag"),
    ("COMPOSE-PROMETHEUS-ADMIN-API", "enables --web.enable-admin-api"),
    ("COMPOSE-PROMETHEUS-ADMIN-API", "enables --web.enable-lifecycle"),
    ("COMPOSE-REDIS-EVICTION", "(allkeys-lru)"),
    ("COMPOSE-HEALTHCHECK-AUTH", "service redis: `CMD redis-cli ping` does not authenticate"),
    ("COMPOSE-HEALTHCHECKS", "service prometheus has no healthcheck"),
    ("COMPOSE-HEALTHCHECKS", "service backup has no healthcheck"),
    ("COMPOSE-RESOURCE-LIMITS", "service nginx has no limits.cpus"),
    ("COMPOSE-CPU-RESERVATIONS", "service db reserves 1.0 CPUs"),
    ("COMPOSE-CPU-RESERVATIONS", "service app reserves 0.5 CPUs"),
    ("COMPOSE-V2-FEATURES", "`version: 3.8` is obsolete"),
    ("COMPOSE-APP-ENV-COMPLETE", "LOG_FILE_PATH is not passed to service app"),
    ("COMPOSE-APP-ENV-COMPLETE", "SECURITY_HSTS is not passed to service app"),
    ("COMPOSE-APP-ENV-COMPLETE", "SECURITY_CSP is not passed to service app"),
    ("COMPOSE-APP-ENV-COMPLETE", "HEALTH_CHECK_TIMEOUT_SECONDS is not passed to service app"),
    ("COMPOSE-VARIABLES-DEFINED", "${DB_PASSWORD} has no default"),
    ("COMPOSE-BIND-MOUNT-PATHS", "device /opt/taskforge/data/postgres must exist before"),
    ("COMPOSE-BIND-MOUNT-PATHS", "guide 4.2 step 2 creates only /opt/taskforge/{app,"),
    ("COMPOSE-BIND-MOUNT-PATHS", "bind source ./redis.conf"),
    ("COMPOSE-NO-INLINE-SECRETS", "service redis: command interpolates ${REDIS_PASSWORD}"),
    ("COMPOSE-REDIS-PERSISTENCE", "redis-server is never told to load it"),
    ("COMPOSE-BACKUP-SERVICE", "tiredofit/db-backup reads none of SCHEDULE, BACKUP_KEEP_DAYS"),
    ("COMPOSE-BACKUP-OFFSITE", "writes its dumps to ./backups on the same host as the data"),
]
#: (item, words of the failure): what the guide's Dockerfile gets wrong.
DOCKERFILE_DEFECTS = [
    ("DOCKERFILE-MIGRATION-TOOL", "installs no sqlx-cli"),
    ("DOCKERFILE-HADOLINT", "DL3008"),
]
#: What the guide's procedures (4.2, 5.2, 7, 9.2, 10) get wrong about its own files.
PROCEDURE_DEFECTS = ["PROC-ROLLBACK-ORDER", "PROC-RECOVERY-ORDER", "PROC-ENV-LOCATION",
                     "PROC-SMOKE-VERIFIES-TLS", "PROC-DIAG-REDIS-AUTH",
                     "PROC-ROLLBACK-PREVIOUS-VERSION"]
#: What the guide's Dockerfile gets right (rust:1.70's default variant is bullseye, like the
#: runtime: issue 18's false blocker).
DOCKERFILE_RIGHT = {"DOCKERFILE-NONROOT", "DOCKERFILE-HEALTHCHECK", "DOCKERFILE-BASE-PINNED",
                    "DOCKERFILE-HEALTHCHECK-TOOL", "DOCKERFILE-NO-SECRETS",
                    "DOCKERFILE-BASE-COMPATIBLE"}


@pytest.mark.parametrize(("item", "line", "text"), ENV_DEFECTS)
def test_guide_env(env_findings: list[Finding], item: str, line: int, text: str) -> None:
    matching = [f for f in failed(env_findings, item) if text in f.message]
    assert matching, messages(env_findings, item)
    assert matching[0].evidence[0].line == line


def test_guide_csp_is_cut_to_its_first_word(env_findings: list[Finding]) -> None:
    (changed,) = [f for f in failed(env_findings, "ENV-SURVIVES-EXPORT") if "arrives" in f.message]
    assert changed.actual == "default-src"


def test_guide_env_passes_what_it_gets_right(env_findings: list[Finding]) -> None:
    passed = {f.item_id for f in env_findings if f.status is Status.PASSED}
    assert {
        "ENV-REQUIRED-VARS", "ENV-APP-ENVIRONMENT", "ENV-LOG-FORMAT-JSON", "ENV-METRICS-ENABLED",
        "ENV-HSTS-ENABLED", "ENV-FILE-MODE", "ENV-TOKEN-LIFETIMES",  # 60 and 10080 minutes
    } <= passed


@pytest.mark.parametrize("text", LOG_FILE_PATH_DEFECTS)
def test_guide_log_file_path(tmp_path: Path, text: str) -> None:
    env = tmp_path / ".env"
    shutil.copyfile(GUIDE / "env.production", env)
    findings = run_checks(("ENV-LOG-FILE-PATH",), env_file=env, **GUIDE_FILES)
    matching = [f for f in failed(findings, "ENV-LOG-FILE-PATH") if text in f.message]
    assert matching and matching[0].evidence[0].line == 32, messages(findings, "ENV-LOG-FILE-PATH")


@pytest.mark.parametrize(("item", "text"), COMPOSE_DEFECTS)
def test_guide_compose(compose_findings: list[Finding], item: str, text: str) -> None:
    matching = [f for f in failed(compose_findings, item) if text in f.message]
    assert matching, messages(compose_findings, item)
    assert matching[0].evidence[0].line is not None


def test_guide_compose_passes_what_it_gets_right(compose_findings: list[Finding]) -> None:
    """Its service_healthy dependencies (db, redis) do have healthchecks."""
    passed = {f.item_id for f in compose_findings if f.status is Status.PASSED}
    assert "COMPOSE-DEPENDS-HEALTHY" in passed


def test_guide_compose_is_schema_valid(compose_findings: list[Finding]) -> None:
    """The guide's file is valid Compose; its defects are of meaning, not of syntax."""
    statuses = {f.status for f in compose_findings if f.item_id == "COMPOSE-SCHEMA-VALID"}
    assert statuses == {Status.PASSED}


def test_guide_compose_with_its_env(tmp_path: Path) -> None:
    """Given the guide's .env, the variables it defines no longer count as undefined."""
    env = tmp_path / ".env"
    shutil.copyfile(GUIDE / "env.production", env)
    findings = run_checks(
        ("COMPOSE-VARIABLES",), compose_file=GUIDE / "docker-compose.prod.yml", env_file=env
    )
    undefined = {f.actual for f in failed(findings, "COMPOSE-VARIABLES-DEFINED")}
    assert undefined == {"${GRAFANA_ADMIN_PASSWORD}"}


@pytest.mark.parametrize(("item", "text"), DOCKERFILE_DEFECTS)
def test_guide_dockerfile(dockerfile_findings: list[Finding], item: str, text: str) -> None:
    matching = [f for f in failed(dockerfile_findings, item) if text in f.message]
    assert matching, messages(dockerfile_findings, item)


def test_guide_dockerfile_passes_what_it_gets_right(dockerfile_findings: list[Finding]) -> None:
    """Non-root user, HEALTHCHECK, tagged bases and curl for the probes: the guide has them."""
    passed = {f.item_id for f in dockerfile_findings if f.status is Status.PASSED}
    assert passed >= DOCKERFILE_RIGHT


def test_guide_ports_agree_with_application_port(tmp_path: Path) -> None:
    """EXPOSE, both healthchecks and the published port: all 8000, as APPLICATION_PORT says."""
    env = tmp_path / ".env"
    shutil.copyfile(GUIDE / "env.production", env)
    findings = run_checks(("DOCKERFILE-APP-PORT",), env_file=env, **GUIDE_FILES)
    assert [f.status for f in findings] == [Status.PASSED]


@pytest.mark.parametrize("item", PROCEDURE_DEFECTS)
def test_guide_procedures(item: str, tmp_path: Path) -> None:
    env = tmp_path / ".env"
    shutil.copyfile(GUIDE / "env.production", env)
    findings = run_checks((item,), env_file=env, **GUIDE_FILES)
    assert failed(findings, item)


def test_every_finding_on_the_guide_says_file_line_and_section(tmp_path: Path) -> None:
    """Failures, passes and not-applicables alike point at a file, a line and a guide section."""
    env = tmp_path / ".env"
    shutil.copyfile(GUIDE / "env.production", env)
    env.chmod(0o600)
    findings = run_checks(("ENV", "COMPOSE", "DOCKERFILE", "PROC", "PROM-RETENTION"),
                          env_file=env, **GUIDE_FILES)
    assert len(findings) > 60
    unlocated = [f"{f.item_id} {f.status.value}: {f.message[:60]}" for f in findings
                 if not f.evidence or not all(e.file and e.line and e.summary.startswith("guide ")
                                              for e in f.evidence)]
    assert unlocated == []
    sections = {e.summary.split(":")[0] for f in findings if f.item_id == "PROC-PSQL-IDENTITY"
                for e in f.evidence}
    assert sections == {"guide 4.2"}  # passed: the item's own section
