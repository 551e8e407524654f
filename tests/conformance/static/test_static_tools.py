"""promtool and nginx decide what their configurations are; without them the items say how to
install them instead of guessing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from static_helpers import COMPOSE_DIR, FIXTURES, run_checks

from conformance.checks.static import tools
from conformance.model import Status

DEFECTS = FIXTURES / "defects"


@pytest.fixture
def no_tools(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(tools, "SYSTEM_DIRS", ())


def test_missing_promtool_is_not_applicable_with_the_install_line(no_tools: None) -> None:
    (finding,) = run_checks(("PROM-CONFIG-VALID",),
                            prometheus_config=COMPOSE_DIR / "prometheus" / "prometheus.yml")
    assert finding.status is Status.NOT_APPLICABLE
    assert "apt-get install prometheus" in finding.message


def test_promtool_refuses_a_bad_duration_at_its_line() -> None:
    config = DEFECTS / "prometheus" / "PROM-CONFIG-VALID" / "prometheus.yml"
    (finding,) = [f for f in run_checks(("PROM-CONFIG-VALID",), prometheus_config=config)
                  if f.status is Status.FAILED]
    assert finding.message.startswith("promtool: ") and "15 seconds" in finding.message
    assert finding.evidence[0].line == 4  # scrape_interval: 15 seconds


def test_promtool_refuses_a_bad_rule(tmp_path: Path) -> None:
    shutil.copytree(COMPOSE_DIR / "prometheus", tmp_path / "prometheus")
    rules = tmp_path / "prometheus" / "alerts.yml"
    rules.write_text(rules.read_text().replace("for: 5m", "for: five minutes", 1))
    findings = run_checks(("PROM-CONFIG-VALID",),
                          prometheus_config=tmp_path / "prometheus" / "prometheus.yml")
    failed = [f for f in findings if f.status is Status.FAILED]
    assert failed and all(f.evidence[0].file == str(rules) for f in failed)
    assert any('"five minutes"' in f.message for f in failed)


def test_promtool_accepts_compose_prometheus() -> None:
    findings = run_checks(("PROM-CONFIG-VALID",),
                          prometheus_config=COMPOSE_DIR / "prometheus" / "prometheus.yml")
    assert [f.status for f in findings] == [Status.PASSED]


def test_http2_directive_on_an_older_nginx_is_the_drift_it_is() -> None:
    """`http2 on;` needs nginx 1.25.1; Debian bookworm's 1.22 (the kit's `nginx -t`) refuses it."""
    conf = DEFECTS / "nginx" / "NGINX-CONFIG-LOADS.conf"
    version = tools.tool_version(tools.require_tool("nginx"))
    assert version is not None
    findings = run_checks(("NGINX-CONFIG-LOADS",), nginx_conf=conf)
    if version >= (1, 25, 1):
        assert [f.status for f in findings] == [Status.PASSED]
        return
    (finding,) = findings
    assert finding.status is Status.FAILED
    assert 'unknown directive "http2"' in finding.message and "1.25.1" in finding.message
    assert finding.evidence[0].line == conf.read_text().splitlines().index("        http2 on;") + 1


def test_nginx_loads_compose_config_with_its_mounts(compose_copy: Path) -> None:
    """The installed certificate and key are the ones nginx -t loads; a key of another
    certificate makes it refuse the pair."""
    conf = compose_copy / "nginx" / "nginx.conf"
    compose = compose_copy / "docker-compose.prod.yml"
    assert [f.status for f in run_checks(("NGINX-CONFIG-LOADS",), nginx_conf=conf,
                                         compose_file=compose)] == [Status.PASSED]
    import trustme

    other = trustme.CA().issue_cert("api.example.com")
    (compose_copy / "nginx" / "ssl" / "private.key").write_bytes(other.private_key_pem.bytes())
    (finding,) = run_checks(("NGINX-CONFIG-LOADS",), nginx_conf=conf, compose_file=compose)
    assert finding.status is Status.FAILED and "key values mismatch" in finding.message


def test_missing_nginx_is_not_applicable_with_the_install_line(no_tools: None) -> None:
    (finding,) = run_checks(("NGINX-CONFIG-LOADS",),
                            nginx_conf=DEFECTS / "nginx" / "NGINX-CONFIG-LOADS.conf")
    assert finding.status is Status.NOT_APPLICABLE
    assert "apt-get install nginx" in finding.message
