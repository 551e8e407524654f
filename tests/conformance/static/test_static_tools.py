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
