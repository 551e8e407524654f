"""Each deliberately defective artifact is flagged by the check meant for it, and by no other
check of the same kind of file."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from static_helpers import COMPOSE_DIR, FIXTURES, failing, install_certificate, run_checks

from conformance.model import Status

DEFECTS = FIXTURES / "defects"

#: Defects that cannot be written without tripping a second check of the same file.
ALSO = {
    # A CSP has blanks, which the guide's export procedure splits.
    "ENV-CSP-STRICT": {"ENV-SURVIVES-EXPORT"},
    # hadolint has its own rule for :latest (DL3007).
    "DOCKERFILE-BASE-PINNED": {"DOCKERFILE-HADOLINT"},
    # A dependency without a healthcheck is also a service without one.
    "COMPOSE-DEPENDS-HEALTHY": {"COMPOSE-HEALTHCHECKS"},
}


def ids(directory: Path, suffix: str) -> list[str]:
    return sorted(p.name.removesuffix(suffix) for p in directory.glob(f"*{suffix}"))


def test_clean_artifacts_pass(clean_env: Path, compose_copy: Path) -> None:
    """The clean fixtures are the baseline: nothing fails on them."""
    assert failing(run_checks(("ENV",), env_file=clean_env)) == set()
    clean_dockerfile = FIXTURES / "clean" / "Dockerfile"
    assert failing(run_checks(("DOCKERFILE",), dockerfile=clean_dockerfile)) == set()
    assert failing(run_checks(
        ("COMPOSE", "NGINX", "PROM", "GRAFANA", "SIZING"),
        compose_file=compose_copy / "docker-compose.prod.yml", env_file=compose_copy / ".env",
        nginx_conf=compose_copy / "nginx" / "nginx.conf",
        prometheus_config=compose_copy / "prometheus" / "prometheus.yml",
    )) == set()


@pytest.mark.parametrize("item", ids(DEFECTS / "env", ".env"))
def test_env_defect(item: str, tmp_path: Path) -> None:
    env = tmp_path / ".env"
    shutil.copyfile(DEFECTS / "env" / f"{item}.env", env)
    env.chmod(0o600)
    assert failing(run_checks(("ENV",), env_file=env)) == {item} | ALSO.get(item, set())


def test_env_file_mode(clean_env: Path) -> None:
    clean_env.chmod(0o644)
    findings = run_checks(("ENV",), env_file=clean_env)
    assert failing(findings) == {"ENV-FILE-MODE"}
    (mode,) = [f for f in findings if f.item_id == "ENV-FILE-MODE"]
    assert (mode.expected, mode.actual) == ("600", "644")


@pytest.mark.parametrize("item", ids(DEFECTS / "compose", ".yml"))
def test_compose_defect(item: str, compose_copy: Path) -> None:
    compose = compose_copy / "docker-compose.prod.yml"
    shutil.copyfile(DEFECTS / "compose" / f"{item}.yml", compose)
    findings = run_checks(("COMPOSE",), compose_file=compose, env_file=compose_copy / ".env")
    assert failing(findings) == {item} | ALSO.get(item, set())
    flagged = [f for f in findings if f.item_id == item]
    assert all(f.evidence[0].file == str(compose) and f.evidence[0].line for f in flagged)


@pytest.mark.parametrize("item", ids(DEFECTS / "dockerfile", ".Dockerfile"))
def test_dockerfile_defect(item: str) -> None:
    findings = run_checks(("DOCKERFILE",), dockerfile=DEFECTS / "dockerfile" / f"{item}.Dockerfile")
    assert failing(findings) == {item} | ALSO.get(item, set())


@pytest.mark.parametrize(
    "item", [i for i in ids(DEFECTS / "nginx", ".conf") if i.startswith("NGINX")]
)
def test_nginx_defect(item: str) -> None:
    findings = run_checks(("NGINX",), nginx_conf=DEFECTS / "nginx" / f"{item}.conf")
    assert failing(findings) == {item}
    assert all(f.evidence[0].line for f in findings if f.item_id == item)


@pytest.mark.parametrize("item", sorted(p.name for p in (DEFECTS / "prometheus").iterdir()))
def test_prometheus_defect(item: str) -> None:
    config = DEFECTS / "prometheus" / item / "prometheus.yml"
    assert failing(run_checks(("PROM",), prometheus_config=config)) == {item}


def test_grafana_without_datasource(compose_copy: Path) -> None:
    (compose_copy / "grafana" / "provisioning" / "datasources" / "prometheus.yml").unlink()
    findings = run_checks(("GRAFANA",), compose_file=compose_copy / "docker-compose.prod.yml")
    assert failing(findings) == {"GRAFANA-DASHBOARD-PROVISIONED"}
    assert any("datasource" in f.message for f in findings)


def test_grafana_dashboard_without_taskforge_metrics(compose_copy: Path) -> None:
    dashboard = compose_copy / "grafana/provisioning/dashboards/json/taskforge-overview.json"
    dashboard.write_text(dashboard.read_text().replace("taskforge_", "other_"))
    findings = run_checks(("GRAFANA",), compose_file=compose_copy / "docker-compose.prod.yml")
    assert [f.message for f in findings] == ["no dashboard panel queries the taskforge_* metrics"]


def test_sizing_db_connections(compose_copy: Path) -> None:
    env = compose_copy / ".env"
    env.write_text(env.read_text().replace("POOL_SIZE=20", "POOL_SIZE=30"))
    findings = run_checks(
        ("SIZING", "NGINX"), env_file=env, compose_file=compose_copy / "docker-compose.prod.yml",
        nginx_conf=compose_copy / "nginx" / "nginx.conf",
    )
    assert failing(findings) == {"SIZING-DB-CONNECTIONS"}
    (finding,) = [f for f in findings if f.item_id == "SIZING-DB-CONNECTIONS"]
    assert (finding.expected, finding.actual) == ("<= 97", "130")


def test_sizing_db_connections_follows_max_connections(compose_copy: Path) -> None:
    """Raising PostgreSQL's max_connections in the compose file makes room for the pool."""
    env = compose_copy / ".env"
    text = env.read_text().replace("POOL_SIZE=20", "POOL_SIZE=30")
    env.write_text(text.replace("PG_MAX_CONNECTIONS=100", "PG_MAX_CONNECTIONS=200"))
    findings = run_checks(
        ("SIZING",), env_file=env, compose_file=compose_copy / "docker-compose.prod.yml"
    )
    assert failing(findings) == set()


def test_sizing_http_connections(compose_copy: Path) -> None:
    findings = run_checks(
        ("SIZING", "NGINX"), env_file=compose_copy / ".env",
        compose_file=compose_copy / "docker-compose.prod.yml",
        nginx_conf=DEFECTS / "nginx" / "SIZING-HTTP-CONNECTIONS.conf",
    )
    assert failing(findings) == {"SIZING-HTTP-CONNECTIONS"}


def cert_findings(compose_copy: Path, also: frozenset[str] = frozenset()) -> list[str]:
    findings = run_checks(
        ("NGINX",), nginx_conf=compose_copy / "nginx" / "nginx.conf",
        compose_file=compose_copy / "docker-compose.prod.yml", env_file=compose_copy / ".env",
    )
    assert failing(findings) <= {"NGINX-TLS-CERT-INSTALLED"} | also
    return [f.message for f in findings if f.item_id == "NGINX-TLS-CERT-INSTALLED"
            and f.status is Status.FAILED]


def test_certificate_not_installed(compose_copy: Path) -> None:
    (compose_copy / "nginx" / "ssl" / "private.key").unlink()
    (message,) = cert_findings(compose_copy)
    assert message.startswith("/etc/nginx/ssl/private.key is not installed")


def test_certificate_expired(compose_copy: Path) -> None:
    install_certificate(
        compose_copy / "nginx" / "ssl", "api.example.com",
        not_before=datetime(2020, 1, 1, tzinfo=UTC), not_after=datetime(2021, 1, 1, tzinfo=UTC),
    )
    assert cert_findings(compose_copy) == ["certificate.crt expired on 2021-01-01"]


def test_certificate_for_another_host(compose_copy: Path) -> None:
    install_certificate(compose_copy / "nginx" / "ssl", "www.example.org")
    assert cert_findings(compose_copy) == [
        "certificate.crt does not name api.example.com (BASE_URL)"
    ]


def test_certificate_with_another_key(compose_copy: Path, tmp_path: Path) -> None:
    install_certificate(tmp_path / "other", "api.example.com")
    shutil.copyfile(tmp_path / "other" / "private.key",
                    compose_copy / "nginx" / "ssl" / "private.key")
    # nginx itself refuses a certificate with another's key: `nginx -t` says so too.
    assert cert_findings(compose_copy, frozenset({"NGINX-CONFIG-LOADS"})) == [
        "private.key is not the key of certificate.crt"
    ]


def test_wildcard_certificate_names_the_host(compose_copy: Path) -> None:
    install_certificate(compose_copy / "nginx" / "ssl", "*.example.com")
    assert cert_findings(compose_copy) == []


def test_alerts_without_alertmanager(tmp_path: Path) -> None:
    shutil.copytree(COMPOSE_DIR / "prometheus", tmp_path / "prometheus")
    config = tmp_path / "prometheus" / "prometheus.yml"
    text = config.read_text()
    start, end = text.index("alerting:"), text.index("scrape_configs:")
    config.write_text(text[:start] + text[end:])
    findings = run_checks(("PROM",), prometheus_config=config)
    assert failing(findings) == {"PROM-ALERT-RULES"}
    assert [f.message for f in findings if f.status is Status.FAILED] == [
        "no Alertmanager is configured: alerts fire and notify nobody"
    ]


@pytest.mark.parametrize(
    ("builder", "runtime", "status"),
    [
        ("rust:1.70", "debian:bullseye-slim", Status.PASSED),  # the guide's pair
        ("rust:1.72", "debian:bullseye-slim", Status.FAILED),  # bookworm binary, bullseye libc
        ("rust:1.72", "debian:bookworm-slim", Status.PASSED),
        ("rust:1.70-alpine", "debian:bullseye-slim", Status.FAILED),
        ("rust:1.71", "debian:bullseye-slim", Status.NOT_APPLICABLE),  # changed that week
        ("ghcr.io/acme/rust-builder:7", "debian:bookworm-slim", Status.NOT_APPLICABLE),
    ],
)
def test_base_compatibility_from_the_cited_table(
    tmp_path: Path, builder: str, runtime: str, status: Status
) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        f"FROM {builder} AS builder\nRUN cargo build --release\n"
        f"FROM {runtime}\nCOPY --from=builder /app/target/release/app /usr/local/bin/app\n"
        'USER 10001\nCMD ["app"]\n'
    )
    findings = run_checks(("DOCKERFILE-BASE-COMPATIBLE",), dockerfile=dockerfile)
    assert [f.status for f in findings] == [status]
    if status is Status.NOT_APPLICABLE:
        assert findings[0].message.startswith(f"cannot tell which Debian release {builder} is")


def compose_problems(compose_copy: Path, item: str, old: str, new: str) -> list[str]:
    """The failure messages of one item on compose/'s file with one text replaced."""
    compose = compose_copy / "docker-compose.prod.yml"
    text = compose.read_text()
    assert old in text
    compose.write_text(text.replace(old, new, 1))
    findings = run_checks((item,), compose_file=compose, env_file=compose_copy / ".env")
    return [f.message for f in findings if f.status is Status.FAILED]


def test_secret_interpolated_into_a_command_is_flagged(compose_copy: Path) -> None:
    (message,) = compose_problems(
        compose_copy, "COMPOSE-NO-INLINE-SECRETS", '--requirepass "$$REDIS_PASSWORD"',
        "--requirepass ${REDIS_PASSWORD}",
    )
    assert "${REDIS_PASSWORD}" in message and "docker inspect" in message


def test_secret_with_an_inline_default_is_flagged(compose_copy: Path) -> None:
    (message,) = compose_problems(
        compose_copy, "COMPOSE-NO-INLINE-SECRETS", "${DB_PASSWORD:?set DB_PASSWORD in .env}",
        "${DB_PASSWORD:-postgres}",
    )
    assert message.startswith("${DB_PASSWORD:-postgres}: the secret has a default")


def test_redis_persistence_without_a_volume(compose_copy: Path) -> None:
    (message,) = compose_problems(
        compose_copy, "COMPOSE-REDIS-PERSISTENCE", "      - taskforge_redis_data:/data\n", "",
    )
    assert "which no volume keeps" in message


def test_redis_config_loaded_as_first_argument_passes(compose_copy: Path) -> None:
    compose = compose_copy / "docker-compose.prod.yml"
    text = compose.read_text().replace(
        "      - taskforge_redis_data:/data\n",
        "      - taskforge_redis_data:/data\n      - ./nginx/nginx.conf:/etc/redis.conf:ro\n", 1,
    )
    compose.write_text(text.replace("exec redis-server --requirepass",
                                    "exec redis-server /etc/redis.conf --requirepass", 1))
    findings = run_checks(("COMPOSE-REDIS-PERSISTENCE",), compose_file=compose)
    assert [f.status for f in findings] == [Status.PASSED]


def test_prometheus_retention_without_a_size_bound() -> None:
    findings = run_checks(("PROM-RETENTION",),
                          compose_file=DEFECTS / "prom_retention_365d.yml")
    (finding,) = findings
    assert finding.status is Status.FAILED
    assert finding.actual == "retention.time=365d, no size limit"


def env_findings(tmp_path: Path, clean_env: Path, item: str, old: str, new: str) -> list[str]:
    text = clean_env.read_text()
    assert old in text
    clean_env.write_text(text.replace(old, new))
    # compose/'s app sets APPLICATION_PORT itself (it wins over the .env): judge the port alone.
    compose = None if item == "DOCKERFILE-APP-PORT" else COMPOSE_DIR / "docker-compose.prod.yml"
    findings = run_checks((item,), env_file=clean_env,
                          dockerfile=FIXTURES / "clean" / "Dockerfile", compose_file=compose)
    return [f.message for f in findings if f.status is Status.FAILED]


def test_clean_files_pass_the_cross_file_items(clean_env: Path) -> None:
    """The clean Dockerfile's USER 10001 is its taskforge user, who owns /app/logs."""
    for item in ("ENV-LOG-FILE-PATH", "DOCKERFILE-APP-PORT", "ENV-TOKEN-LIFETIMES"):
        assert env_findings(Path(), clean_env, item, "=", "=") == [], item


@pytest.mark.parametrize(
    ("item", "old", "new", "text"),
    [
        ("ENV-LOG-FILE-PATH", "LOG_FILE_PATH=/app/logs/app.log",
         "LOG_FILE_PATH=/var/log/taskforge/app.log", "the image never creates /var/log/taskforge"),
        ("ENV-LOG-FILE-PATH", "LOG_FILE_PATH=/app/logs/app.log",
         "LOG_FILE_PATH=/app/config/app.log", "no volume of service app keeps /app/config"),
        ("DOCKERFILE-APP-PORT", "APPLICATION_PORT=8000", "APPLICATION_PORT=9000",
         "EXPOSE 8000 but the app listens on 9000"),
        ("ENV-TOKEN-LIFETIMES", "JWT_REFRESH_EXPIRY_TIME_MINUTES=10080",
         "JWT_REFRESH_EXPIRY_TIME_MINUTES=30", "refresh tokens expire no later than access"),
        ("ENV-TOKEN-LIFETIMES", "JWT_EXPIRY_TIME_MINUTES=60", "JWT_EXPIRY_TIME_MINUTES=1440",
         "access tokens live 1440 minutes"),
        ("ENV-BASE-URL-HTTPS", "BASE_URL=https://api.example.com",
         "BASE_URL=https://api.yourdomain.com", "the guide's placeholder domain api.yourdomain"),
        ("ENV-CORS-ORIGINS", "CORS_ALLOWED_ORIGINS=https://example.com,",
         "CORS_ALLOWED_ORIGINS=https://your-domain.com,", "https://your-domain.com is the guide's"),
    ],
)
def test_cross_file_defect(
    tmp_path: Path, clean_env: Path, item: str, old: str, new: str, text: str
) -> None:
    messages = env_findings(tmp_path, clean_env, item, old, new)
    assert any(text in m for m in messages), messages


def test_http_sizing_without_nginx_is_not_vouched_for(clean_env: Path) -> None:
    """Workers vs CPUs judged, NGINX unseen: not applicable, not passed."""
    (finding,) = run_checks(("SIZING-HTTP",), env_file=clean_env,
                            compose_file=COMPOSE_DIR / "docker-compose.prod.yml")
    assert finding.status is Status.NOT_APPLICABLE
    assert "--nginx-conf" in finding.message


def test_cpu_reservation_is_flagged_where_it_is(compose_copy: Path) -> None:
    (message,) = compose_problems(
        compose_copy, "COMPOSE-CPU-RESERVATIONS",
        '        reservations:\n          memory: "${DB_MEMORY_RESERVE:-2G}"',
        '        reservations:\n          cpus: "1.0"\n'
        '          memory: "${DB_MEMORY_RESERVE:-2G}"',
    )
    assert message.startswith("service db reserves 1.0 CPUs, which Docker Compose does not apply")
