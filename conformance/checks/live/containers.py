"""LIVE-CONTAINERS-HEALTHY (guide 4.2 step 4 `up -d` then `ps`): every container of the
deployment is running, and healthy where it has a healthcheck, as the deployment host's Docker
engine reports it: the engine at --docker-host, else the engine of each --hosts server, asked
with its own `docker` command over the testinfra backend (the guide's user runs `ps` there).
Read-only: containers are listed and inspected, nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from conformance.checks.host.common import HostView, hosts
from conformance.checks.registry import CheckContext, check
from conformance.checks.static.composefile import load_compose
from conformance.model import Evidence, Finding, Status

ITEM = "LIVE-CONTAINERS-HEALTHY"
CHECK = f"{__name__}.containers_healthy"
ENGINE_TIMEOUT_SECONDS = 10
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
#: More containers than any compose project runs; `docker inspect` takes them on one line.
MAX_CONTAINERS = 200


@dataclass(frozen=True, kw_only=True)
class Container:
    service: str
    status: str | None
    health: str | None

    @property
    def shown(self) -> str:
        return f"{self.service}: {self.status}" + (f" ({self.health})" if self.health else "")

    @property
    def good(self) -> bool:
        return self.status == "running" and self.health in (None, "healthy")


def _of_inspect(attrs: dict[str, Any], name: str) -> Container:
    """A container from `docker inspect`'s record (the SDK's `attrs` are the same record)."""
    state = attrs.get("State") or {}
    labels = (attrs.get("Config") or {}).get("Labels") or {}
    return Container(service=str(labels.get(SERVICE_LABEL) or name), status=state.get("Status"),
                     health=(state.get("Health") or {}).get("Status"))


def _project(ctx: CheckContext) -> str | None:
    """The compose project: the file's `name:`, else its directory's name (as Compose does)."""
    if ctx.compose_file is None:
        return None
    compose = load_compose(ctx)
    name = compose.data.get("name")
    return str(name) if name else ctx.compose_file.resolve().parent.name.lower()


def _finding(status: Status, message: str, evidence: tuple[Evidence, ...] = (),
             expected: str | None = None, actual: str | None = None,
             host: str | None = None) -> Finding:
    return Finding(item_id=ITEM, status=status, check=CHECK, message=message, evidence=evidence,
                   expected=expected, actual=actual, host=host)


def _judge(containers: list[Container], project: str | None, where: str, command: str,
           host: str | None = None) -> Iterator[Finding]:
    if not containers:
        yield _finding(Status.FAILED, f"no container of compose project {project or '(any)'} "
                       f"on {where}: `up -d` has not run or the project is another",
                       expected="the deployment's containers", actual="none", host=host)
        return
    evidence = (Evidence(kind="command", command=command,
                         output="\n".join(sorted(c.shown for c in containers))),)
    bad = sorted(c.shown for c in containers if not c.good)
    for shown in bad:
        yield _finding(Status.FAILED, f"container {shown} after `up -d`", evidence,
                       expected="running (healthy)", actual=shown.split(": ", 1)[1], host=host)
    if not bad:
        yield _finding(Status.PASSED, f"{len(containers)} containers running, the checked ones "
                       "healthy", evidence, host=host)


@check(ITEM)
def containers_healthy(ctx: CheckContext) -> Iterator[Finding]:
    if ctx.docker_host is not None:
        yield from _from_docker_host(ctx, ctx.docker_host)
    elif ctx.hosts:
        for host in hosts(ctx):
            yield from _from_server(ctx, host)
    else:
        yield _finding(Status.NOT_APPLICABLE, "not run: the deployment host's Docker engine is "
                       "not given (--docker-host URL, or --hosts ssh://user@server to ask the "
                       "server's own docker)")


def _from_docker_host(ctx: CheckContext, docker_host: str) -> Iterator[Finding]:
    import docker  # the Docker SDK, present with the suite's testcontainers

    project = _project(ctx)
    label = f"{PROJECT_LABEL}={project}" if project else PROJECT_LABEL
    try:
        client = docker.DockerClient(base_url=docker_host, timeout=ENGINE_TIMEOUT_SECONDS)
        found = client.containers.list(all=True, filters={"label": label})
    except docker.errors.DockerException as exc:
        yield _finding(Status.ERROR, f"the Docker engine at {docker_host} did not answer: "
                       f"{str(exc).splitlines()[0][:200]}")
        return
    containers = [_of_inspect(c.attrs, c.name) for c in found[:MAX_CONTAINERS]]
    yield from _judge(containers, project, docker_host,
                      f"docker --host {docker_host} ps -a --filter label={label}")


def _engine_unanswered(host: HostView, said: str, rc: int) -> Finding:
    lines = [ln.strip() for ln in said.splitlines() if ln.strip()]
    why = lines[-1][:200] if lines else f"exit status {rc}"
    if rc == 127:
        why = "docker is not installed"
    return _finding(Status.ERROR, f"{host.name}: the Docker engine does not answer on that host: "
                    f"{why}", host=host.name)


def _from_server(ctx: CheckContext, host: HostView) -> Iterator[Finding]:
    """`docker ps` and `docker inspect` on the server, as the deploying user (the guide puts it
    in the docker group), through `sudo -n` when its socket refuses that user."""
    project = _project(ctx)
    label = f"{PROJECT_LABEL}={project}" if project else PROJECT_LABEL
    argv = ("docker", "ps", "-a", "--filter", f"label={label}", "--format", "{{.ID}}")
    listing = host.run(*argv, timeout=ENGINE_TIMEOUT_SECONDS)
    privileged = not listing.ok and "permission denied" in listing.stderr.lower()
    if privileged:
        listing = host.run_privileged(*argv, timeout=ENGINE_TIMEOUT_SECONDS)
    if not listing.ok:
        yield _engine_unanswered(host, listing.stderr or listing.stdout, listing.rc)
        return
    ids = listing.stdout.split()[:MAX_CONTAINERS]
    records: list[Any] = []
    if ids:
        run = host.run_privileged if privileged else host.run
        inspect = run("docker", "inspect", *ids, timeout=ENGINE_TIMEOUT_SECONDS)
        # A container removed between the two commands: the others are printed, exit 1.
        try:
            records = json.loads(inspect.stdout or "[]")
        except ValueError:
            records = []
        if not isinstance(records, list) or not records:
            yield _engine_unanswered(host, inspect.stderr or "docker inspect gave no records",
                                     inspect.rc)
            return
    containers = [_of_inspect(r, str(r.get("Name", "?")).lstrip("/"))
                  for r in records if isinstance(r, dict)]
    yield from _judge(containers, project, host.name, f"{listing.command} (on {host.name})",
                      host=host.name)
