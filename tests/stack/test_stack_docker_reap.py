"""reap_orphans on a real engine while another run removes containers under it (issue 13, 9).

Two runs on one engine must never break each other: a container that another run's teardown
removes between this run's listing and its look at that container is simply gone, and a run
whose process still lives is never reaped. The race is made certain, not left to chance: the
engine's container listing is wrapped so that another remover strikes right after it answers.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import docker
import docker.errors
import pytest

from conformance.stack.docker import LABEL_HOST, LABEL_PID, LABEL_RUN, reap_orphans
from conformance.stack.images import POSTGRES

pytestmark = [pytest.mark.docker, pytest.mark.xdist_group("docker")]


@pytest.fixture
def engine() -> Iterator[docker.DockerClient]:
    client = docker.from_env(timeout=60)
    yield client
    client.close()


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _create(engine: docker.DockerClient, run_id: str, pid: int) -> str:
    labels = {LABEL_RUN: run_id, LABEL_PID: str(pid), LABEL_HOST: socket.gethostname()}
    # Created, never started: listing and removal are what is under test, not the program.
    container = engine.containers.create(POSTGRES.name, command=["true"], labels=labels)
    return str(container.id)


def test_a_container_removed_by_another_run_meanwhile_does_not_break_the_reap(
    engine: docker.DockerClient,
) -> None:
    dead_run, live_run = f"reap-dead-{uuid.uuid4().hex[:8]}", f"reap-live-{uuid.uuid4().hex[:8]}"
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    created: list[str] = []
    try:
        dead_pid = _dead_pid()
        created += [_create(engine, dead_run, dead_pid) for _ in range(3)]
        created.append(_create(engine, live_run, live.pid))

        real_containers = engine.api.containers
        struck: list[str] = []

        def listing_then_another_run_removes(*args: Any, **kwargs: Any) -> Any:
            answer = real_containers(*args, **kwargs)
            if not struck:  # the other run's teardown, once, right after our listing
                victim = next(c["Id"] for c in answer if c["Id"] in created[:3])
                engine.api.remove_container(victim, force=True, v=True)
                struck.append(victim)
            return answer

        engine.api.containers = listing_then_another_run_removes  # type: ignore[method-assign]
        try:
            reaped = reap_orphans(engine)
        finally:
            engine.api.containers = real_containers  # type: ignore[method-assign]

        assert struck, "the listing was never asked: the race was not exercised"
        assert dead_run in reaped
        assert live_run not in reaped
        remaining = {c.id for c in engine.containers.list(all=True, sparse=True,
                                                          filters={"label": LABEL_RUN})}
        assert not remaining & set(created[:3]), "a dead run's container was left behind"
        assert created[3] in remaining, "a run whose process lives was reaped"
    finally:
        live.kill()
        live.wait()
        for container_id in created:
            with contextlib.suppress(docker.errors.NotFound):
                engine.api.remove_container(container_id, force=True, v=True)
