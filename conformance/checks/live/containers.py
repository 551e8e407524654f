"""LIVE-CONTAINERS-HEALTHY (guide 4.2 step 4 `up -d` then `ps`): every container of the
deployment is running, and healthy where it has a healthcheck, as the deployment host's Docker
engine reports it (--docker-host). Read-only: containers are listed and inspected, nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator

from conformance.checks.registry import CheckContext, check
from conformance.checks.static.composefile import load_compose
from conformance.model import Evidence, Finding, Status

ITEM = "LIVE-CONTAINERS-HEALTHY"
ENGINE_TIMEOUT_SECONDS = 10
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"


def _project(ctx: CheckContext) -> str | None:
    """The compose project: the file's `name:`, else its directory's name (as Compose does)."""
    if ctx.compose_file is None:
        return None
    compose = load_compose(ctx)
    name = compose.data.get("name")
    return str(name) if name else ctx.compose_file.resolve().parent.name.lower()


def _finding(status: Status, message: str, evidence: tuple[Evidence, ...] = (),
             expected: str | None = None, actual: str | None = None) -> Finding:
    return Finding(item_id=ITEM, status=status, check=f"{__name__}.containers_healthy",
                   message=message, evidence=evidence, expected=expected, actual=actual)


@check(ITEM, needs=("docker_host",))
def containers_healthy(ctx: CheckContext) -> Iterator[Finding]:
    import docker  # the Docker SDK, present with the suite's testcontainers

    assert ctx.docker_host is not None
    try:
        client = docker.DockerClient(base_url=ctx.docker_host, timeout=ENGINE_TIMEOUT_SECONDS)
        project = _project(ctx)
        filters = {"label": f"{PROJECT_LABEL}={project}" if project else PROJECT_LABEL}
        containers = client.containers.list(all=True, filters=filters)
    except docker.errors.DockerException as exc:
        yield _finding(Status.ERROR, f"the Docker engine at {ctx.docker_host} did not answer: "
                       f"{str(exc).splitlines()[0][:200]}")
        return
    if not containers:
        yield _finding(Status.FAILED, f"no container of compose project {project or '(any)'} "
                       f"on {ctx.docker_host}: `up -d` has not run or the project is another",
                       expected="the deployment's containers", actual="none")
        return
    bad: list[str] = []
    lines: list[str] = []
    for container in containers:
        state = container.attrs.get("State", {})
        service = container.labels.get(SERVICE_LABEL, container.name)
        health = (state.get("Health") or {}).get("Status")
        shown = f"{service}: {state.get('Status')}" + (f" ({health})" if health else "")
        lines.append(shown)
        if state.get("Status") != "running" or health not in (None, "healthy"):
            bad.append(shown)
    evidence = (Evidence(kind="command", command=f"docker --host {ctx.docker_host} ps -a "
                         f"--filter {filters['label']}", output="\n".join(sorted(lines))),)
    if bad:
        for shown in sorted(bad):
            yield _finding(Status.FAILED, f"container {shown} after `up -d`", evidence,
                           expected="running (healthy)", actual=shown.split(": ", 1)[1])
        return
    yield _finding(Status.PASSED, f"{len(containers)} containers running, the checked ones "
                   "healthy", evidence)
