"""Without a front door or observability URLs, each item says why it is not judged and how to
make it judgeable; nothing is contacted (no request leaves for a target that has none of these)."""

from __future__ import annotations

import pytest

from conformance.checks.live import backup_service, frontdoor, observability
from conformance.checks.registry import CheckContext
from conformance.model import Status
from conformance.stack import Target

CHECKS = (frontdoor.metrics_private, frontdoor.front_door_headers, observability.prometheus,
          observability.alertmanager, observability.grafana, backup_service.scheduled_backup)
# Port 9 (discard) on loopback: were anything contacted, the check would fail, not say n/a.
EMBEDDED = Target(base_url="https://127.0.0.1:9", provider="embedded", is_reference=True)
FOREIGN = Target(base_url="https://127.0.0.1:9", provider="external", is_reference=False)


def test_the_embedded_stack_says_which_items_it_cannot_judge() -> None:
    ctx = CheckContext(target=EMBEDDED)
    findings = [f for check in CHECKS for f in check(ctx)]
    assert len(findings) == 11  # 2 front door, 4 Prometheus, 1 Alertmanager, 2 Grafana, 2 backup
    for finding in findings:
        assert finding.status is Status.NOT_APPLICABLE, finding
        assert "--stack docker" in finding.message, finding


@pytest.mark.parametrize(("check", "option"), [
    (observability.prometheus, "--prometheus-url"),
    (observability.alertmanager, "--alertmanager-url"),
    (observability.grafana, "--grafana-url and --grafana-token"),
])
def test_a_foreign_deployment_is_told_the_option_to_pass(check: object, option: str) -> None:
    findings = list(check(CheckContext(target=FOREIGN)))  # type: ignore[operator]
    assert findings and all(f.status is Status.NOT_APPLICABLE for f in findings)
    assert all(f.message == f"no {f.message.split()[1]} given: pass {option}" for f in findings)


def test_the_metrics_item_asks_for_the_scrape_address() -> None:
    [finding] = frontdoor.metrics_private(CheckContext(target=FOREIGN))
    assert finding.status is Status.NOT_APPLICABLE
    assert "--metrics-url" in finding.message
