"""The docker provider on a real engine: three healthy containers, loopback ports, TLS, clean-up.

One stack serves the module (it costs seconds to stand up); the clean-up test stands up its own in
a child process, because what it checks is what happens when that process is told to stop.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import docker
import httpx
import psycopg
import pytest
import redis

from conformance.smoke import run_smoke
from conformance.stack import StackError, Target, choose_provider, open_stack, said
from conformance.stack.docker import LABEL_PID, LABEL_RUN

pytestmark = [pytest.mark.docker, pytest.mark.xdist_group("docker")]

CHILD_EXIT_TIMEOUT = 90.0
RYUK = "testcontainers/ryuk"


@pytest.fixture(scope="module")
def engine() -> Iterator[docker.DockerClient]:
    client = docker.from_env(timeout=120)
    yield client
    client.close()


@pytest.fixture(scope="module")
def stack(engine: docker.DockerClient) -> Iterator[Target]:
    # auto, as CI runs it: the conftest skips this module where auto would not choose docker.
    with open_stack("auto") as target:
        assert target.provider == "docker"
        yield target


def _ours(engine: docker.DockerClient, pid: int) -> list[docker.models.containers.Container]:
    return engine.containers.list(all=True, filters={"label": f"{LABEL_PID}={pid}"})


def _engine_count(engine: docker.DockerClient, child: int | None = None) -> int:
    """The engine's containers, without other processes' stacks (tests on other workers) and
    without testcontainers' reaper, which outlives a run by design where its image exists.

    Sparse listing: one API call, so a container another worker removes meanwhile cannot make
    a per-container inspect fail with 404.
    """
    count = 0
    for c in engine.containers.list(all=True, sparse=True):
        labels = c.attrs.get("Labels") or {}
        if (LABEL_RUN not in labels or labels.get(LABEL_PID) == str(child)) and not str(
            c.attrs.get("Image", "")
        ).startswith(RYUK):
            count += 1
    return count


def _unlabelled_volumes(engine: docker.DockerClient, *, dangling: bool = False) -> set[str]:
    """Volumes no stack run claims (other workers' runs come and go with their labels).

    `dangling`: only those no container mounts. A run on another worker holds anonymous volumes
    of its own while it is up; one that is left behind is mounted by nothing.
    """
    filters = {"dangling": True} if dangling else None
    return {v.name for v in engine.volumes.list(filters=filters)
            if LABEL_RUN not in (v.attrs.get("Labels") or {})}


def test_auto_chooses_docker_when_the_engine_and_images_are_there() -> None:
    kind, why = choose_provider()
    assert kind == "docker", why
    assert "answers" in why


def test_three_containers_are_healthy_and_published_on_loopback_only(
    stack: Target, engine: docker.DockerClient
) -> None:
    # This process may hold other labelled containers (the SSH test host of tests/conformance/host
    # runs per worker): the stack's run is the one whose container publishes the target's port.
    port = str(urlsplit(stack.base_url).port)
    mine = _ours(engine, os.getpid())
    runs = {c.labels[LABEL_RUN] for c in mine
            if any(b.get("HostPort") == port
                   for ports in c.attrs["NetworkSettings"]["Ports"].values() for b in ports or [])}
    assert len(runs) == 1, runs
    containers = [c for c in mine if c.labels[LABEL_RUN] in runs]
    assert len(containers) == 3
    for container in containers:
        container.reload()
        assert container.attrs["State"]["Health"]["Status"] == "healthy", container.name
        bindings = [b for ports in container.attrs["NetworkSettings"]["Ports"].values()
                    for b in ports or []]
        assert bindings, container.name
        assert {b["HostIp"] for b in bindings} == {"127.0.0.1"}, container.name


def test_guide_smoke_sequence_passes_over_tls(
    stack: Target, record_property: Callable[[str, object], None]
) -> None:
    result = run_smoke(stack)
    assert result.steps == ["health", "metrics", "login", "submit", "run"]
    assert result.job["status"] == "succeeded"
    assert result.job["payload"] == {"test": "data"}
    assert stack.base_url.startswith("https://127.0.0.1:")
    # Shown in the CI log's summary (tests/conftest.py): which provider, healthy, smoke passed.
    docker_lines = [line for line in said() if "docker" in line]  # not other tests' stacks
    record_property("ci_log", [*docker_lines, f"smoke 5.2 over TLS at {stack.base_url}: "
                               f"{', '.join(result.steps)} passed (job {result.job_id} "
                               f"{result.job['status']})"])


def test_the_certificate_is_trusted_only_through_the_throwaway_ca(stack: Target) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{stack.base_url}/health", verify=True, timeout=10)
    assert stack.ca_bundle is not None
    assert httpx.get(f"{stack.base_url}/health", verify=stack.verify,
                     timeout=10).status_code == 200


def test_database_redis_and_log_file_are_reachable_from_the_host(stack: Target) -> None:
    assert stack.database_url is not None and stack.redis_url is not None
    with psycopg.connect(stack.database_url, connect_timeout=10) as conn:
        applied = conn.execute("SELECT count(*) FROM _sqlx_migrations").fetchone()
    assert applied is not None and applied[0] >= 1
    client = redis.Redis.from_url(stack.redis_url, socket_timeout=10)
    try:
        assert client.ping() is True
    finally:
        client.close()
    assert stack.log_file is not None
    assert '"message"' in stack.log_file.read_text()
    assert stack.env["APP_ENVIRONMENT"] == "production"
    assert stack.admin_email and stack.admin_password


def test_a_server_that_refuses_to_start_fails_in_one_line_and_is_removed(
    engine: docker.DockerClient, stack: Target
) -> None:
    """A placeholder secret in production: the container exits 2, its one line is the error."""
    ours_before = {c.id for c in _ours(engine, os.getpid())}
    with pytest.raises(StackError) as excinfo, \
            open_stack("docker", server_env={"JWT_SECRET": "changeme-please"}):
        pass
    message = str(excinfo.value)
    assert message.startswith("the server container exited: error: JWT_SECRET")
    assert "\n" not in message
    assert {c.id for c in _ours(engine, os.getpid())} == ours_before  # the module's stack only


CHILD = textwrap.dedent("""
    import signal
    # A Ctrl-C from a terminal: the test worker's own signal state (an ignored or blocked
    # SIGINT, left by gevent in load tests) is inherited and would swallow it.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    signal.signal(signal.SIGINT, signal.default_int_handler)
    import time
    from conformance.stack import open_stack
    with open_stack("docker", create_admin=False) as target:
        print("ready", target.base_url, flush=True)
        for _ in range(600):  # bounded, like every wait here
            time.sleep(1)
""")



@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.usefixtures("docker_lock")
def test_a_stopped_run_leaves_no_container_behind(
    engine: docker.DockerClient, sig: signal.Signals,
    record_property: Callable[[str, object], None],
) -> None:
    """Counts the engine's containers, networks and volumes before and after a run told to stop."""
    before = _engine_count(engine)
    volumes_before = _unlabelled_volumes(engine)
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stderr is not None
        # The child prints one line once the stack is up, or ends (its own waits are bounded).
        line = child.stdout.readline()
        assert line.startswith("ready https://127.0.0.1:"), child.stderr.read()[-2000:]
        assert len(_ours(engine, child.pid)) == 3
        assert len(engine.networks.list(filters={"label": f"{LABEL_PID}={child.pid}"})) == 1
        assert len(engine.volumes.list(filters={"label": f"{LABEL_PID}={child.pid}"})) == 1
        assert _engine_count(engine, child.pid) == before + 3
        child.send_signal(sig)
        _, err = child.communicate(timeout=CHILD_EXIT_TIMEOUT)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert "no container left behind" in err
    assert _ours(engine, child.pid) == []
    assert _engine_count(engine, child.pid) == before
    assert engine.networks.list(filters={"label": f"{LABEL_PID}={child.pid}"}) == []
    assert engine.volumes.list(filters={"label": f"{LABEL_PID}={child.pid}"}) == []
    # nothing orphaned without its label
    assert _unlabelled_volumes(engine, dangling=True) <= volumes_before
    record_property("ci_log", [
        f"{sig.name} to a run with its stack up: "
        f"{[line for line in err.splitlines() if 'left behind' in line][-1]}; "
        f"engine containers before {before}, during {before + 3}, after {before}",
    ])
