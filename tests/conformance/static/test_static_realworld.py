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
