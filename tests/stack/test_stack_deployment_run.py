"""`python -m conformance run --stack docker`: the readiness report of the whole reference
deployment, judged through its front door (issue 19's done-when), as CI runs it.

One run, of the phases the front door and the observability items live in (post-deploy and
production), bounded in time; its own stack, removed with it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.stack.deployment import DOMAIN
from conformance.stack.images import GRAFANA_IMAGE_ENV

pytestmark = [pytest.mark.docker, pytest.mark.xdist_group("docker"),
              pytest.mark.usefixtures("deployment_images")]

RUN_TIMEOUT_SECONDS = 600
#: Every front-door and observability item the docker stack can judge: each passes there.
PASSED_THROUGH_THE_FRONT_DOOR = (
    "FRONTDOOR-METRICS-PRIVATE", "FRONTDOOR-HEADERS",
    "OBS-PROMETHEUS-APP-UP", "OBS-DATABASE-MONITORED", "OBS-ALERT-RULES",
    "OBS-ALERTMANAGER-CONNECTED", "OBS-ALERTMANAGER-RECEIVER",
    "BACKUP-SCHEDULED", "BACKUP-SCHEDULED-RESTORE",
)
GRAFANA = ("OBS-GRAFANA-DATASOURCE", "OBS-GRAFANA-DASHBOARD")
VERDICT = re.compile(r"^verdict: (?P<verdict>[A-Z][A-Z ]+) \((?P<counts>[^;]+); \d+ automated "
                     r"items\) exit (?P<exit>\d+)$", re.MULTILINE)


def test_the_readiness_report_of_the_docker_deployment(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    env = {k: v for k, v in os.environ.items() if k != GRAFANA_IMAGE_ENV}
    result = subprocess.run(
        [sys.executable, "-m", "conformance", "run", "--stack", "docker",
         "--phase", "post-deploy", "--phase", "production", "--reports-dir", str(reports)],
        capture_output=True, text=True, timeout=RUN_TIMEOUT_SECONDS, check=False, env=env,
    )
    said = result.stdout + result.stderr
    [verdict] = VERDICT.finditer(result.stdout)
    assert int(verdict["exit"]) == result.returncode, said[-3000:]
    assert result.returncode in (0, 1), said[-3000:]  # a verdict, not a usage or stack error
    assert "docker: the reference deployment answers through NGINX at " \
           f"https://{DOMAIN}:" in result.stderr
    assert "no container left behind (nor network, nor volume)" in result.stderr

    [run_dir] = [p for p in reports.iterdir() if p.is_dir() and p.name != "latest"]
    readiness = (run_dir / "readiness.md").read_text()
    assert f"**{verdict['verdict']}**" in readiness.splitlines()[0]
    assert re.search(rf"target `https://{re.escape(DOMAIN)}:\d+` · provider docker", readiness)

    items = {i["id"]: i for i in json.loads((run_dir / "results.json").read_text())["items"]}
    front_door = {i for i in items if i.startswith(("FRONTDOOR-", "OBS-", "BACKUP-SCHEDULED"))}
    assert front_door == {*PASSED_THROUGH_THE_FRONT_DOOR, *GRAFANA}
    for item in PASSED_THROUGH_THE_FRONT_DOOR:
        assert items[item]["status"] == "passed", (item, items[item]["findings"])
    assert "answered by the front door (nginx" in items["FRONTDOOR-METRICS-PRIVATE"]["message"]
    for item in GRAFANA:
        assert items[item]["status"] == "not_applicable", items[item]
        assert items[item]["message"].startswith(f"{GRAFANA_IMAGE_ENV} is unset: ")
