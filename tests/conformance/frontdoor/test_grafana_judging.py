"""OBS-GRAFANA-* judged against a real HTTP server answering Grafana's documented API shapes.

No Grafana image can be built from Debian's packages, so the docker stack runs Grafana only when
TASKFORGE_GRAFANA_IMAGE names one. These tests give the check what Grafana answers (HTTP API
reference: GET /api/datasources, GET /api/datasources/uid/{uid}/health - 200 {"status": "OK"} or
400 {"status": "ERROR"} -, GET /api/search?type=dash-db&query=..., 401 for a token it does not
know), with the datasource and the dashboard title of compose/grafana/provisioning, so the shipped
provisioning is what passes.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from conformance.checks.live import observability
from conformance.checks.registry import CheckContext
from conformance.model import Finding, Status
from conformance.stack import Target
from conformance.stack.deployment import compose_dir

TOKEN = "glsa_conformance_viewer"
PROVISIONING = compose_dir() / "grafana" / "provisioning"
[DATASOURCE] = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())[
    "datasources"]
DASHBOARD = json.loads((PROVISIONING / "dashboards" / "json" / "taskforge-overview.json")
                       .read_text())
# Never contacted: the Grafana items read only --grafana-url.
FOREIGN = Target(base_url="https://127.0.0.1:9", provider="external", is_reference=False)


@dataclass
class Grafana:
    """What the fake Grafana holds, and the requests it was sent."""

    datasource_healthy: bool = True
    dashboards: list[str] = field(default_factory=lambda: [str(DASHBOARD["title"])])
    requests: list[tuple[str, str]] = field(default_factory=list)

    def answer(self, method: str, path: str, query: dict[str, list[str]],
               authorization: str | None) -> tuple[int, Any]:
        self.requests.append((method, path))
        if path == "/api/health":  # unauthenticated in Grafana
            return 200, {"commit": "0", "database": "ok", "version": "11.0.0"}
        if authorization != f"Bearer {TOKEN}":
            return 401, {"message": "invalid API key"}
        uid = str(DATASOURCE["uid"])
        if path == "/api/datasources":
            return 200, [{"id": 1, "uid": uid, "orgId": 1, "name": DATASOURCE["name"],
                          "type": DATASOURCE["type"], "access": DATASOURCE["access"],
                          "url": DATASOURCE["url"], "isDefault": True, "readOnly": True}]
        if path == f"/api/datasources/uid/{uid}/health":
            if self.datasource_healthy:
                return 200, {"status": "OK",
                             "message": "Successfully queried the Prometheus API."}
            return 400, {"status": "ERROR", "message": "Post \"http://prometheus:9090/api/v1/"
                         "query\": dial tcp: lookup prometheus: no such host"}
        if path == "/api/search":
            wanted = query.get("query", [""])[0].lower()
            kinds = query.get("type", ["dash-db"])
            return 200, [{"id": n, "uid": f"d{n}", "orgId": 1, "title": title,
                          "url": f"/d/d{n}/x", "type": "dash-db", "tags": [],
                          "isStarred": False}
                         for n, title in enumerate(self.dashboards, 1)
                         if wanted in title.lower() and "dash-db" in kinds]
        return 404, {"message": "Not found"}


@pytest.fixture
def grafana() -> Iterator[tuple[Grafana, str]]:
    state = Grafana()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            url = urlsplit(self.path)
            status, body = state.answer(self.command, url.path, parse_qs(url.query),
                                        self.headers.get("Authorization"))
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _serve

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _judge(url: str, token: str = TOKEN) -> dict[str, Finding]:
    ctx = CheckContext(target=FOREIGN, grafana_url=url, grafana_token=token)
    return {f.item_id: f for f in observability.grafana(ctx)}


def test_a_healthy_datasource_and_the_taskforge_dashboard_pass(
    grafana: tuple[Grafana, str],
) -> None:
    state, url = grafana
    found = _judge(url)
    assert found["OBS-GRAFANA-DATASOURCE"].status is Status.PASSED
    assert found["OBS-GRAFANA-DATASOURCE"].message == (
        f"Prometheus datasource healthy: {DATASOURCE['name']}")
    assert found["OBS-GRAFANA-DASHBOARD"].status is Status.PASSED
    assert found["OBS-GRAFANA-DASHBOARD"].message == f"dashboards: {DASHBOARD['title']}"
    # Read-only, and the token never shown in the evidence.
    assert {method for method, _ in state.requests} == {"GET"}
    assert [path for _, path in state.requests] == [
        "/api/datasources", f"/api/datasources/uid/{DATASOURCE['uid']}/health", "/api/search"]
    for finding in found.values():
        for evidence in finding.evidence:
            assert TOKEN not in (evidence.curl or "") and "Bearer <redacted>" in (
                evidence.curl or "")


def test_an_unhealthy_datasource_fails_with_grafana_s_reason(
    grafana: tuple[Grafana, str],
) -> None:
    state, url = grafana
    state.datasource_healthy = False
    found = _judge(url)
    datasource = found["OBS-GRAFANA-DATASOURCE"]
    assert datasource.status is Status.FAILED
    assert datasource.message.startswith(
        f"no Prometheus datasource answers its health check: {DATASOURCE['name']}: 400 ERROR")
    assert "no such host" in datasource.message
    assert found["OBS-GRAFANA-DASHBOARD"].status is Status.PASSED


def test_a_missing_dashboard_fails(grafana: tuple[Grafana, str]) -> None:
    state, url = grafana
    state.dashboards = ["Node Exporter Full", "Kubernetes / Pods"]
    found = _judge(url)
    assert found["OBS-GRAFANA-DASHBOARD"].status is Status.FAILED
    assert found["OBS-GRAFANA-DASHBOARD"].message == "no dashboard whose title names TaskForge"
    assert found["OBS-GRAFANA-DATASOURCE"].status is Status.PASSED


def test_a_refused_token_judges_nothing(grafana: tuple[Grafana, str]) -> None:
    _, url = grafana
    found = _judge(url, token="glsa_not_a_token_grafana_knows")
    for item in observability.GRAFANA_ITEMS:
        assert found[item].status is Status.ERROR, found[item]
        assert "answered" in found[item].message and "with 401" in found[item].message
        assert "Grafana refused --grafana-token" in found[item].message
