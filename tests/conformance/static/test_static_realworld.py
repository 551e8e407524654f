"""Constructs of real-world deployment files that the static checks once misread.

Each test writes a minimal file with one such construct (our own, not a copied file) and asserts
the status the guide and the tool's documentation support, next to a true positive that must
still be caught.
"""

from __future__ import annotations

from pathlib import Path

from conformance.model import Status
from tests.conformance.static.static_helpers import run_checks

PROMETHEUS = """\
global:
  scrape_interval: 15s
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["alertmanager:9093"]
rule_files:
  - {pattern}
scrape_configs:
  - job_name: taskforge
    static_configs:
      - targets: ["app:8080"]
  - job_name: node
    file_sd_configs:
      - files: ["/etc/prometheus/targets/*.json"]
"""

ALERTS = """\
groups:
  - name: taskforge
    rules:
      - alert: TaskForgeDown
        expr: up{job="taskforge"} == 0
"""


def _statuses(findings: list, item: str) -> set[Status]:  # type: ignore[type-arg]
    return {f.status for f in findings if f.item_id == item}


def test_rule_glob_in_a_container_directory_is_not_the_configuration(tmp_path: Path) -> None:
    """/etc/prometheus/rules/*.yml once fell back to *.yml beside prometheus.yml, so promtool
    checked prometheus.yml itself as a rule file (field global not found in RuleGroups)."""
    config = tmp_path / "prometheus.yml"
    config.write_text(PROMETHEUS.format(pattern="/etc/prometheus/rules/*.yml"))
    findings = run_checks(("PROM-CONFIG-VALID", "PROM-ALERT-RULES"), prometheus_config=config)
    assert _statuses(findings, "PROM-CONFIG-VALID") == {Status.PASSED}
    # Its rule files were not given: the alert rules cannot be judged, which is not a failure.
    (alert,) = [f for f in findings if f.item_id == "PROM-ALERT-RULES"]
    assert alert.status is Status.NOT_APPLICABLE
    assert "--prometheus-rules" in alert.message


def test_rule_glob_maps_onto_the_mounted_directory(tmp_path: Path) -> None:
    config = tmp_path / "prometheus.yml"
    config.write_text(PROMETHEUS.format(pattern="/etc/prometheus/rules/*.yml"))
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "taskforge.yml").write_text(ALERTS)
    findings = run_checks(("PROM-ALERT-RULES",), prometheus_config=config)
    # Found and read: the rules lack the other critical alerts (a true positive).
    messages = {f.message for f in findings if f.status is Status.FAILED}
    assert "no alert rule for database down" in messages
    assert "no alert rule for app down" not in messages


def test_named_rule_file_missing_is_still_reported(tmp_path: Path) -> None:
    config = tmp_path / "prometheus.yml"
    config.write_text(PROMETHEUS.format(pattern="/etc/prometheus/alerts.yml"))
    findings = run_checks(("PROM-CONFIG-VALID",), prometheus_config=config)
    assert [f.message for f in findings if f.status is Status.FAILED] == [
        "rule file alerts.yml does not exist"
    ]


COMPOSE_VERSIONED = """\
x-app: &app
  image: registry.example.org/taskforge/app:${TASKFORGE_VERSION:?set TASKFORGE_VERSION}
  restart: unless-stopped
services:
  app:
    <<: *app
  worker:
    <<: *app
    command: ["taskforge", "worker"]
  cache:
    image: redis:${REDIS_TAG:-latest}
  proxy:
    image: nginx:${NGINX_TAG:-}
"""


def test_image_tag_from_a_mandatory_variable_is_pinned(tmp_path: Path) -> None:
    """${VERSION:?msg} (the versioned tag per release PROC-ROLLBACK-PREVIOUS-VERSION asks for)
    was read as an empty tag, i.e. :latest; a default of latest or an empty default still is."""
    compose = tmp_path / "docker-compose.yml"
    compose.write_text(COMPOSE_VERSIONED)
    findings = run_checks(("COMPOSE-IMAGE-PINNED",), compose_file=compose)
    assert sorted(f.message for f in findings if f.status is Status.FAILED) == [
        "service cache: image redis:latest is :latest",
        "service proxy: image nginx: is :latest",
    ]


COMPOSE_V2 = """\
name: taskforge
services:
  app:
    image: example/app:1.2.3
    env_file:
      - path: ./env.production
        required: true
    ports:
      - name: http
        target: 8080
        published: "8080"
        host_ip: 127.0.0.1
        app_protocol: http
    depends_on:
      db:
        condition: service_healthy
        restart: true
    healthcheck:
      test: ["CMD", "/app/healthcheck"]
      start_interval: 2s
    volumes:
      - type: bind
        source: ./config
        target: /app/config
        bind:
          create_host_path: true
    develop:
      watch:
        - action: rebuild
          path: ./src
    deploy:
      resources:
        limits: {cpus: "1", memory: 512M, pids: 200}
  db:
    image: postgres:16.2
    annotations:
      com.example.tier: data
"""


def test_compose_v2_syntax_is_valid(tmp_path: Path) -> None:
    """Keys Compose v2 accepts were rejected by the docker-compose 1.29 schema once vendored."""
    compose = tmp_path / "docker-compose.yml"
    compose.write_text(COMPOSE_V2)
    findings = run_checks(("COMPOSE-SCHEMA-VALID",), compose_file=compose)
    assert [f.status for f in findings] == [Status.PASSED], [f.message for f in findings]
    # Still a true positive: a misspelt key.
    compose.write_text(COMPOSE_V2.replace("  db:\n    image", "  db:\n    restrat: no\n    image"))
    findings = run_checks(("COMPOSE-SCHEMA-VALID",), compose_file=compose)
    assert [f.message for f in findings if f.status is Status.FAILED] == [
        "services.db: 'restrat' does not match any of the regexes: '^x-'"
    ]


NGINX = """\
events {{}}
http {{
    server {{
        listen 80;
        server_name tasks.example.com;
        location /.well-known/acme-challenge/ {{ root /var/www/certbot; }}
        location / {{ return 301 https://$host$request_uri; }}
    }}
    server {{
        listen 443 ssl;
        {http2}
        server_name tasks.example.com;
        ssl_certificate /etc/nginx/ssl/fullchain.pem;
        ssl_certificate_key /etc/nginx/ssl/privkey.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        add_header Strict-Transport-Security "max-age=63072000; includeSubDomains" always;
        add_header X-Content-Type-Options nosniff always;
        add_header X-Frame-Options DENY always;
        add_header Referrer-Policy no-referrer always;
        location /metrics {{ deny all; }}
        location / {{ proxy_pass http://app:8080; }}
    }}
}}
"""

NGINX_COMPOSE = """\
services:
  nginx:
    image: {image}
    volumes:
      - ./nginx.conf:/etc/nginx/nginx.conf:ro
"""


def test_acme_location_on_the_redirect_server_needs_no_security_headers(tmp_path: Path) -> None:
    """The port-80 server with a certbot webroot location serves the CA a token, not the app;
    browsers ignore HSTS over plain HTTP. The TLS server's missing CSP is still reported, once
    (not again for each location that inherits the server's headers)."""
    conf = tmp_path / "nginx.conf"
    conf.write_text(NGINX.format(http2="http2 on;"))
    findings = run_checks(("NGINX-SECURITY-HEADERS",), nginx_conf=conf)
    failed = [(f.message, f.evidence[0].line) for f in findings if f.status is Status.FAILED]
    assert failed == [("content-security-policy is not sent", 9)]


def _loads(tmp_path: Path, image: str, http2: str) -> list[str]:
    conf = tmp_path / "nginx.conf"
    conf.write_text(NGINX.format(http2=http2))
    compose = tmp_path / "docker-compose.yml"
    compose.write_text(NGINX_COMPOSE.format(image=image))
    findings = run_checks(("NGINX-CONFIG-LOADS",), nginx_conf=conf, compose_file=compose)
    return [f.message for f in findings if f.status is not Status.PASSED]


def test_http2_directive_is_judged_by_the_deployed_nginx(tmp_path: Path) -> None:
    """`http2 on;` (nginx >= 1.25.1) is valid for the nginx:1.25-alpine the compose file runs,
    though the nginx here may be older; on an image tagged older it is still refused."""
    from conformance.checks.static.nginxload import HTTP2_DIRECTIVE_SINCE
    from conformance.checks.static.tools import require_tool, tool_version

    assert _loads(tmp_path, "nginx:1.25-alpine", "http2 on;") == []
    assert _loads(tmp_path, "nginx:alpine", "http2 on;") == []
    here = tool_version(require_tool("nginx"))
    old = _loads(tmp_path, "nginx:1.24.0", "http2 on;")
    if here is not None and here < HTTP2_DIRECTIVE_SINCE:
        assert len(old) == 1 and 'unknown directive "http2"' in old[0]
    # Whatever the version: a real error elsewhere in the file is still found.
    assert _loads(tmp_path, "nginx:1.25-alpine", "http2 on; proxy_bufering off;") != []


def test_env_export_prefix_and_single_quoted_dollar(tmp_path: Path) -> None:
    """`export NAME=value` is dotenv's own form, and a single-quoted `$` is literal to Compose's
    dotenv readers and to the guide's `export $(grep -v '^#' .env | xargs)`: neither is a defect.
    An unquoted `$` and an inline comment (split into stray words by the procedure) still are."""
    env = tmp_path / "env.production"
    env.write_text(
        "export APP_ENVIRONMENT=production\n"
        "DB_PASSWORD='Zq8nV2$kL9pR4wX7'\n"
        "REDIS_PASSWORD=b7Yt3$Kp9Wm2Qx6\n"
        "LOG_LEVEL=info # inline comment\n"
    )
    findings = run_checks(("ENV-SURVIVES-EXPORT",), env_file=env)
    failed = sorted((f.evidence[0].line, f.message) for f in findings if f.status is Status.FAILED)
    assert failed == [
        (3, "REDIS_PASSWORD contains `$`: Compose interpolates it when it reads the .env"),
        (4, "the line splits into 3 extra word(s) that export treats as names; "
            "not valid identifiers: #"),
    ]


DISTROLESS = """\
ARG RUST_VERSION=1.78
FROM rust:${RUST_VERSION}-slim-bookworm AS builder
WORKDIR /app
COPY . .
RUN cargo build --release --locked
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /app/target/release/taskforge /app/taskforge
USER nonroot:nonroot
ENTRYPOINT ["/app/taskforge"]
"""


def test_image_without_healthcheck_probed_by_compose(tmp_path: Path) -> None:
    """A distroless image has no shell or curl for a HEALTHCHECK; the compose file's own
    healthcheck of the app (guide 3.2's form) probes its container. Without one, it fails."""
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(DISTROLESS)
    compose = tmp_path / "docker-compose.yml"
    compose.write_text(
        "services:\n  app:\n    build: .\n    healthcheck:\n"
        "      test: [\"CMD\", \"/app/taskforge\", \"healthcheck\"]\n"
    )
    probed = run_checks(("DOCKERFILE-HEALTHCHECK",), dockerfile=dockerfile, compose_file=compose)
    assert {f.item_id: f.status for f in probed}["DOCKERFILE-HEALTHCHECK"] is Status.PASSED
    compose.write_text("services:\n  app:\n    build: .\n")
    unprobed = run_checks(("DOCKERFILE-HEALTHCHECK",), dockerfile=dockerfile, compose_file=compose)
    assert {f.item_id: f.status for f in unprobed}["DOCKERFILE-HEALTHCHECK"] is Status.FAILED


HEADERS_INC = """\
add_header Strict-Transport-Security "max-age=31536000; includeSubDomains" always;
add_header Content-Security-Policy "default-src 'none'; frame-ancestors 'none'" always;
add_header X-Content-Type-Options nosniff always;
add_header X-Frame-Options DENY always;
add_header Referrer-Policy no-referrer always;
"""

SITE = """\
upstream api_backend {{ server app:3000; }}
server {{
    listen 80 default_server;
    location = /healthz {{ return 200 "ok"; }}
    location / {{ return 308 https://$host$request_uri; }}
}}
server {{
    listen 443 ssl;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_certificate /etc/nginx/ssl/certificate.crt;
    ssl_certificate_key /etc/nginx/ssl/private.key;
    {headers}
    location / {{
        limit_req zone=perip burst=20;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_pass http://api_backend;
    }}
}}
"""

MAIN = """\
events {}
http {
    include /etc/nginx/mime.types;
    limit_req_zone $binary_remote_addr zone=perip:10m rate=10r/s;
    include /etc/nginx/conf.d/*.conf;
}
"""


def _site(tmp_path: Path, headers: str) -> tuple[Path, Path]:
    (tmp_path / "nginx" / "conf.d").mkdir(parents=True)
    main = tmp_path / "nginx" / "nginx.conf"
    main.write_text(MAIN)
    (tmp_path / "nginx" / "conf.d" / "taskforge.conf").write_text(SITE.format(headers=headers))
    (tmp_path / "nginx" / "conf.d" / "headers.inc").write_text(HEADERS_INC)
    compose = tmp_path / "docker-compose.yml"
    compose.write_text("services:\n  nginx:\n    image: nginx:1.24.0\n    volumes:\n"
                       "      - ./nginx/nginx.conf:/etc/nginx/nginx.conf:ro\n"
                       "      - ./nginx/conf.d:/etc/nginx/conf.d:ro\n")
    return main, compose


ITEMS = ("NGINX-TLS-PROTOCOLS", "NGINX-PROXY-APP", "NGINX-RATE-LIMIT", "NGINX-SECURITY-HEADERS")


def test_nginx_includes_are_followed_through_the_mounts(tmp_path: Path) -> None:
    """The servers were in conf.d/*.conf (included inside http {}): the checks saw none and
    reported no TLS server and no proxy_pass. A plain-http health probe beside the TLS server
    needs no browser headers."""
    main, compose = _site(tmp_path, "include /etc/nginx/conf.d/headers.inc;")
    findings = run_checks(ITEMS, nginx_conf=main, compose_file=compose)
    assert {f.item_id: f.status for f in findings} == dict.fromkeys(ITEMS, Status.PASSED)
    # Without a compose file, /etc/nginx/ is the given file's directory.
    findings = run_checks(ITEMS, nginx_conf=main)
    assert {f.item_id: f.status for f in findings} == dict.fromkeys(ITEMS, Status.PASSED)


def test_nginx_included_server_without_headers_is_reported_at_the_include(tmp_path: Path) -> None:
    main, compose = _site(tmp_path, "")
    findings = run_checks(("NGINX-SECURITY-HEADERS",), nginx_conf=main, compose_file=compose)
    failed = {(f.message, f.evidence[0].line) for f in findings if f.status is Status.FAILED}
    assert ("strict-transport-security is not sent", 5) in failed
    assert len(failed) == 5


def test_nginx_conf_d_file_of_server_blocks(tmp_path: Path) -> None:
    _site(tmp_path, "include /etc/nginx/conf.d/headers.inc;")
    site = tmp_path / "nginx" / "conf.d" / "taskforge.conf"
    findings = run_checks(("NGINX-TLS-PROTOCOLS", "NGINX-PROXY-APP"), nginx_conf=site)
    assert {f.status for f in findings} == {Status.PASSED}


def test_version_key_is_judged_by_what_v1_does_at_that_version(tmp_path: Path) -> None:
    """depends_on conditions are file format 2.1+ in docker-compose v1 (3.x dropped them); a
    `version:` next to nothing v1 mishandles is no defect. 3.8 with conditions still is."""
    compose = tmp_path / "docker-compose.yml"
    body = ("services:\n  app:\n    image: example/app:1.0\n    depends_on:\n      db:\n"
            "        condition: service_healthy\n  db:\n    image: postgres:16.2\n")
    statuses = {}
    plain = body.split("    depends")[0]
    for version, text in (("2.4", body), ("3.8", body), ("3.8-plain", plain)):
        compose.write_text(f"version: '{version.split('-')[0]}'\n{text}")
        (finding,) = run_checks(("COMPOSE-V2-FEATURES",), compose_file=compose)
        statuses[version] = finding.status
    assert statuses == {"2.4": Status.PASSED, "3.8": Status.FAILED, "3.8-plain": Status.PASSED}


def test_shell_form_healthcheck_is_not_a_hadolint_defect(tmp_path: Path) -> None:
    """hadolint 2.15 reports DL3025 on `HEALTHCHECK CMD wget ... || exit 1`, Docker's documented
    form; a shell-form CMD is still reported."""
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        "FROM alpine:3.19\n"
        "USER nobody\n"
        "HEALTHCHECK --interval=30s CMD wget -q --spider http://127.0.0.1:3000/health || exit 1\n"
        "CMD /app/server --port 3000\n"
    )
    findings = run_checks(("DOCKERFILE-HADOLINT",), dockerfile=dockerfile)
    assert [(f.message.split(":")[0], f.evidence[0].line) for f in findings
            if f.status is Status.FAILED] == [("DL3025", 4)]


def test_log_directory_made_by_install_for_a_numeric_user(tmp_path: Path) -> None:
    """`install -d -o taskforge DIR` makes the directory and gives it to the user, here run as
    its uid (USER 10001). A plain mkdir without a chown is still reported."""
    env = tmp_path / "env.production"
    env.write_text("LOG_FILE_PATH=/var/log/taskforge/app.log\n")
    dockerfile = tmp_path / "Dockerfile"
    runtime = ("FROM debian:bookworm-slim\n"
               "RUN useradd --system --uid 10001 --no-create-home taskforge \\\n"
               "    && {make} /var/log/taskforge\n"
               "USER 10001:10001\n")
    dockerfile.write_text(runtime.format(make="install -d -o taskforge -m 0750"))
    findings = run_checks(("ENV-LOG-FILE-PATH",), env_file=env, dockerfile=dockerfile)
    assert [f.status for f in findings] == [Status.PASSED], [f.message for f in findings]
    dockerfile.write_text(runtime.format(make="mkdir -p"))
    findings = run_checks(("ENV-LOG-FILE-PATH",), env_file=env, dockerfile=dockerfile)
    assert [f.message.split(": ", 1)[1][:40] for f in findings] == [
        "the runtime user 10001 cannot write /var"
    ]
