"""Tests marked `docker` skip, with one line saying why, where no engine answers or images lack.

CI sets TASKFORGE_REQUIRE_DOCKER=1 (.ci/run): there a missing engine fails those tests instead,
so that the docker path cannot silently stop being exercised.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator

import pytest

REQUIRE_DOCKER = "TASKFORGE_REQUIRE_DOCKER"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    docker_items = [item for item in items if item.get_closest_marker("docker")]
    if not docker_items:
        return
    from conformance.stack.docker import docker_usable

    usable, why = docker_usable()
    if usable:
        return
    if os.environ.get(REQUIRE_DOCKER) == "1":
        mark = pytest.mark.usefixtures("_docker_required")
        config.stash[_WHY] = why
    else:
        mark = pytest.mark.skip(reason=f"docker: {why}")
    for item in docker_items:
        item.add_marker(mark)


_WHY = pytest.StashKey[str]()


@pytest.fixture
def _docker_required(request: pytest.FixtureRequest) -> None:
    pytest.fail(f"{REQUIRE_DOCKER}=1 but {request.config.stash[_WHY]}", pytrace=False)


@pytest.fixture
def docker_lock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Run the holder alone among tests that count what the engine holds, across xdist workers.

    xdist_group does not keep a group on one worker with this pytest, so a file lock in the
    directory the workers share serialises the tests whose engine-wide counts would see each
    other's containers (a stopped run's stack, an image build's intermediate containers).
    """
    path = tmp_path_factory.getbasetemp().parent / "taskforge-docker-tests.lock"
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(scope="module")
def deployment_images() -> None:
    """The deployment's images (NGINX, Prometheus...) come from `nox -s images`: without them a
    test skips, and fails where TASKFORGE_REQUIRE_DOCKER=1 (CI must have built them)."""
    import docker

    from conformance.stack.docker import image_available
    from conformance.stack.images import DEPLOYMENT_IMAGES

    client = docker.from_env()
    try:
        missing = [role.name for role in DEPLOYMENT_IMAGES
                   if image_available(client, role.name, check_registry=False) is not None]
    finally:
        client.close()
    if missing:
        message = f"docker: no image {', '.join(missing)}: `nox -s images` builds them"
        if os.environ.get(REQUIRE_DOCKER) == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
