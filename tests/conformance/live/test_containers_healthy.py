"""LIVE-CONTAINERS-HEALTHY against the real Docker engine: a compose project's containers as
`up -d` leaves them, one healthy and one that exited. Only containers made here are touched."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from live_support import docker_client

from conformance.checks.live.containers import containers_healthy
from conformance.checks.registry import CheckContext
from conformance.model import Status

IMAGE = os.environ.get("TASKFORGE_REDIS_IMAGE", "taskforge-local/redis:7-bookworm")
pytestmark = pytest.mark.docker


def _host() -> str:
    return os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")


@pytest.fixture
def engine() -> Iterator[object]:
    client = docker_client(IMAGE)
    yield client
    client.close()


@pytest.fixture
def project(engine: object, tmp_path: Path) -> Iterator[tuple[Path, list[object]]]:
    import docker

    client: docker.DockerClient = engine  # type: ignore[assignment]
    name = f"tf-static-{uuid.uuid4().hex[:8]}"
    compose = tmp_path / "docker-compose.prod.yml"
    compose.write_text(f"name: {name}\nservices:\n  db:\n    image: {IMAGE}\n")
    made = []
    try:
        for service, command, health in (("db", ["sleep", "60"], ["CMD", "true"]),
                                         ("worker", ["false"], None)):
            made.append(client.containers.run(
                IMAGE, command, detach=True, name=f"{name}-{service}-1",
                labels={"com.docker.compose.project": name,
                        "com.docker.compose.service": service},
                healthcheck={"test": health, "interval": 500_000_000} if health else None,
            ))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            made[0].reload()
            if (made[0].attrs["State"].get("Health") or {}).get("Status") == "healthy":
                break
            time.sleep(0.5)
        yield compose, made
    finally:
        for container in made:
            container.remove(force=True)


#: The engine as --docker-host names it, and as the server's own `docker` answers over the
#: testinfra backend (--hosts; local:// is this machine, whose docker talks to the same engine).
ENGINES = {"docker-host": lambda: {"docker_host": _host()},
           "hosts": lambda: {"hosts": ("local://",)}}


@pytest.mark.parametrize("engine_of", list(ENGINES))
def test_exited_container_fails_and_healthy_one_does_not(
    project: tuple[Path, list[object]], engine_of: str,
) -> None:
    compose, made = project
    engine: dict[str, object] = ENGINES[engine_of]()
    context = CheckContext(compose_file=compose, **engine)  # type: ignore[arg-type]
    findings = list(containers_healthy(context))
    assert [f.status for f in findings] == [Status.FAILED]
    assert findings[0].message.startswith("container worker: exited")
    assert "db: running (healthy)" in (findings[0].evidence[0].output or "")
    assert findings[0].host == ("local://" if engine_of == "hosts" else None)
    made.pop().remove(force=True)  # type: ignore[attr-defined]
    findings = list(containers_healthy(context))
    assert [f.status for f in findings] == [Status.PASSED]  # the healthy one alone


def test_without_an_engine_it_is_not_applicable_naming_both_ways_to_give_one(
        tmp_path: Path) -> None:
    compose = tmp_path / "docker-compose.prod.yml"
    compose.write_text("services: {}\n")
    (finding,) = containers_healthy(CheckContext(compose_file=compose))
    assert finding.status is Status.NOT_APPLICABLE
    assert "--docker-host" in finding.message and "--hosts ssh://" in finding.message


def test_a_project_with_no_container_fails(engine: object, tmp_path: Path) -> None:
    compose = tmp_path / "docker-compose.prod.yml"
    compose.write_text(f"name: tf-static-none-{uuid.uuid4().hex[:8]}\nservices: {{}}\n")
    (finding,) = containers_healthy(CheckContext(docker_host=_host(), compose_file=compose))
    assert finding.status is Status.FAILED and "no container of compose project" in finding.message
