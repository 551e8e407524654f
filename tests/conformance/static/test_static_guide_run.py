"""The guide's three files of section 3, judged as a user judges them: `python -m conformance run`
on `.env.production`, `docker-compose.prod.yml` and `Dockerfile.prod`, read back from results.json.

The fixtures are the guide's own blocks, and a test here keeps them so.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from static_helpers import FIXTURES
from test_static_guide import (
    COMPOSE_DEFECTS,
    DOCKERFILE_DEFECTS,
    DOCKERFILE_RIGHT,
    ENV_DEFECTS,
    LOG_FILE_PATH_DEFECTS,
    PROCEDURE_DEFECTS,
)

from conformance.catalogue import GUIDE_PATH

GUIDE = FIXTURES / "guide"
#: The name each file has in the guide (its `# File:` line) -> the fixture holding it.
FILES = {".env.production": "env.production", "docker-compose.prod.yml": "docker-compose.prod.yml",
         "Dockerfile.prod": "Dockerfile.prod"}
RUN_TIMEOUT_SECONDS = 240

#: Issue 18's defects of the three files, each as (item, words of one failed finding, file).
ISSUE_DEFECTS = [
    # the Redis password on redis-server's command line (docker inspect, ps)
    ("COMPOSE-NO-INLINE-SECRETS", "service redis: command interpolates ${REDIS_PASSWORD}",
     "docker-compose.prod.yml"),
    # the dumps on the same host and disk, no copy elsewhere, no encryption
    ("COMPOSE-BACKUP-OFFSITE", "writes its dumps to ./backups on the same host as the data",
     "docker-compose.prod.yml"),
    ("COMPOSE-BACKUP-OFFSITE", "unencrypted, and nothing copies them elsewhere",
     "docker-compose.prod.yml"),
    # variable names the unpinned backup image never reads
    ("COMPOSE-BACKUP-SERVICE", "tiredofit/db-backup reads none of SCHEDULE, BACKUP_KEEP_DAYS, "
     "BACKUP_KEEP_WEEKS, BACKUP_KEEP_MONTHS", "docker-compose.prod.yml"),
    ("COMPOSE-BACKUP-SERVICE", "the image has no tag", "docker-compose.prod.yml"),
    # 365 days of samples, nothing bounding their size on the shared disk
    ("PROM-RETENTION-BOUNDED", "keeps 365d of samples with no --storage.tsdb.retention.size",
     "docker-compose.prod.yml"),
    *[("ENV-LOG-FILE-PATH", text, ".env.production") for text in LOG_FILE_PATH_DEFECTS],
    # given the .env, only the variable it lacks is undefined (test_static_guide judges the
    # compose file without one)
    ("COMPOSE-VARIABLES-DEFINED", "${GRAFANA_ADMIN_PASSWORD} has no default",
     "docker-compose.prod.yml"),
]


def guide_files() -> dict[str, str]:
    """The blocks of guide.md whose first line is `# File: <name>`, by that name."""
    text = GUIDE_PATH.read_text(encoding="utf-8")
    blocks = re.findall(r"^```\w*\n(# File: (\S+)\n.*?)^```$", text, re.MULTILINE | re.DOTALL)
    return {name: block for block, name in blocks}


def test_the_fixtures_are_the_guides_blocks() -> None:
    """A changed fixture (or guide) would make every test of the guide's files judge other files."""
    blocks = guide_files()
    assert set(FILES) <= set(blocks)
    for name, fixture in FILES.items():
        assert (GUIDE / fixture).read_text(encoding="utf-8") == blocks[name], name


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """results.json's items of one run over the three files, by item id.

    The static phase and pre-deploy, whose PROC-* items read the guide's procedures against the
    files (its host checks judge this machine and are not looked at here).
    """
    workdir = tmp_path_factory.mktemp("guide-run")
    for name, fixture in FILES.items():
        shutil.copyfile(GUIDE / fixture, workdir / name)
    argv = [sys.executable, "-m", "conformance", "run", "--phase", "static",
            "--phase", "pre-deploy", "--hosts", "local://", "-n", "0",
            "--env-file", ".env.production", "--compose-file", "docker-compose.prod.yml",
            "--dockerfile", "Dockerfile.prod", "--reports-dir", "reports"]
    done = subprocess.run(argv, cwd=workdir, capture_output=True, text=True, check=False,
                          timeout=RUN_TIMEOUT_SECONDS)
    assert done.returncode == 1, done.stderr[-2000:]  # NOT READY, and not a usage error (2)
    data = json.loads((workdir / "reports" / "latest" / "results.json").read_text())
    assert data["verdict"] == "NOT READY"
    return {item["id"]: item for item in data["items"]}


def _failed_with(item: dict[str, Any], text: str) -> list[dict[str, Any]]:
    return [f for f in item["findings"] if f["status"] == "failed" and text in f["message"]]


def _explain(item: dict[str, Any]) -> str:
    return "\n".join(f"{f['status']}: {f['message'][:160]}" for f in item["findings"])


@pytest.mark.parametrize(
    ("item", "text", "file"),
    [*ISSUE_DEFECTS,
     *[(i, t, ".env.production") for i, _line, t in ENV_DEFECTS],
     *[(i, t, "docker-compose.prod.yml") for i, t in COMPOSE_DEFECTS
       if i != "COMPOSE-VARIABLES-DEFINED"],
     *[(i, t, "Dockerfile.prod") for i, t in DOCKERFILE_DEFECTS]],
)
def test_each_defect_is_flagged_in_its_file(
    results: dict[str, dict[str, Any]], item: str, text: str, file: str
) -> None:
    assert results[item]["status"] == "failed", _explain(results[item])
    matching = _failed_with(results[item], text)
    assert matching, _explain(results[item])
    (evidence, *_) = matching[0]["evidence"]
    assert (Path(evidence["file"]).name, evidence["line"] > 0) == (file, True)


@pytest.mark.parametrize("item", PROCEDURE_DEFECTS)
def test_each_procedure_defect_is_flagged(results: dict[str, dict[str, Any]], item: str) -> None:
    assert results[item]["status"] == "failed", _explain(results[item])


@pytest.mark.parametrize("item", sorted(DOCKERFILE_RIGHT))
def test_what_the_dockerfile_gets_right_passes(
    results: dict[str, dict[str, Any]], item: str
) -> None:
    """DOCKERFILE-BASE-COMPATIBLE above all: rust:1.70 builds on bullseye, as the runtime runs."""
    assert results[item]["status"] == "passed", _explain(results[item])
