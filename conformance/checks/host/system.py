"""Guide 2.1, 2.2, 4.2 and 8.3: operating system, Docker and Compose, docker group, updates."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator

from conformance.checks.host.common import HostView, finding, hosts, version_tuple
from conformance.checks.registry import CheckContext, check
from conformance.model import Evidence, Finding, Status

#: The guide's list: Ubuntu 20.04 LTS or newer, CentOS 8 or newer. RHEL rebuilds count as CentOS.
MINIMUM_OS = {"ubuntu": (20, 4), "centos": (8,)}
CENTOS_LIKE = frozenset({"centos", "rhel", "rocky", "almalinux"})
#: Compose v2 needs Docker 20.10; the compose file's features need Compose v2.
MIN_DOCKER = (20, 10)
MIN_COMPOSE = (2,)


def parse_os_release(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            parts = shlex.split(value) if value.strip() else [""]
            fields[key.strip()] = parts[0] if parts else ""
    return fields


def judge_os(fields: dict[str, str]) -> tuple[tuple[Status, str], tuple[Status, str]]:
    """(HOST-OS-VERSION, HOST-OS-LISTED): too old fails the first; unlisted fails the second."""
    name = fields.get("PRETTY_NAME") or fields.get("NAME") or "unknown"
    os_id = fields.get("ID", "").lower()
    family = "centos" if os_id in CENTOS_LIKE else os_id
    version = version_tuple(fields.get("VERSION_ID", ""))
    if family not in MINIMUM_OS:
        note = f"{name} is not in the guide's list (Ubuntu 20.04+, CentOS 8+)"
        return ((Status.PASSED, f"{note}; its version is not judged"),
                (Status.FAILED, f"{note}: supported by the guide's authors only on those"))
    minimum = MINIMUM_OS[family]
    shown = ".".join(str(p) for p in minimum)
    listed = (Status.PASSED, f"{name} is in the guide's list")
    if not version or version < minimum:
        return (Status.FAILED, f"{name} is older than {family} {shown}"), listed
    return (Status.PASSED, f"{name} (minimum {family} {shown})"), listed


@check("HOST-OS-VERSION", "HOST-OS-LISTED", needs=("hosts",))
def operating_system(context: CheckContext) -> Iterator[Finding]:
    for host in hosts(context):
        text = host.read("/etc/os-release") or host.read("/usr/lib/os-release")
        evidence = host.file_evidence("/etc/os-release")
        if text is None:
            for item in ("HOST-OS-VERSION", "HOST-OS-LISTED"):
                yield finding(item, Status.ERROR, host, "no /etc/os-release", evidence)
            continue
        fields = parse_os_release(text)
        actual = f"{fields.get('ID', '?')} {fields.get('VERSION_ID', '?')}"
        (v_status, v_message), (l_status, l_message) = judge_os(fields)
        yield finding("HOST-OS-VERSION", v_status, host, v_message, evidence,
                      expected="Ubuntu >= 20.04 or CentOS >= 8", actual=actual)
        yield finding("HOST-OS-LISTED", l_status, host, l_message, evidence,
                      expected="Ubuntu or CentOS", actual=actual)


def docker_version(output: str) -> tuple[int, ...] | None:
    """`Docker version 24.0.5, build ced0996` → (24, 0, 5)."""
    match = re.search(r"version\s+v?(\d+(?:\.\d+)*)", output, re.IGNORECASE)
    return version_tuple(match.group(1)) if match else None


@check("HOST-DOCKER-VERSION", needs=("hosts",))
def docker_installed(context: CheckContext) -> Iterator[Finding]:
    for host in hosts(context):
        done = host.run("docker", "--version")
        version = docker_version(done.stdout) if done.ok else None
        shown = ".".join(map(str, MIN_DOCKER))
        if version is None:
            yield finding("HOST-DOCKER-VERSION", Status.FAILED, host,
                          "docker is not installed (or does not answer --version)",
                          done.evidence(), expected=f"Docker >= {shown}", actual="none")
        elif version < MIN_DOCKER:
            yield finding("HOST-DOCKER-VERSION", Status.FAILED, host,
                          f"Docker {'.'.join(map(str, version))} is older than {shown}",
                          done.evidence(), expected=f">= {shown}",
                          actual=".".join(map(str, version)))
        else:
            yield finding("HOST-DOCKER-VERSION", Status.PASSED, host,
                          f"Docker {'.'.join(map(str, version))}", done.evidence())


@check("HOST-COMPOSE-VERSION", needs=("hosts",))
def compose_version(context: CheckContext) -> Iterator[Finding]:
    for host in hosts(context):
        plugin = host.run("docker", "compose", "version")
        standalone = plugin if plugin.ok else host.run("docker-compose", "--version")
        version = docker_version(standalone.stdout) if standalone.ok else None
        evidence = standalone.evidence()
        if version is None:
            yield finding("HOST-COMPOSE-VERSION", Status.FAILED, host,
                          "neither `docker compose` nor `docker-compose` answers", evidence,
                          expected="Compose v2", actual="none")
        elif version < MIN_COMPOSE:
            yield finding(
                "HOST-COMPOSE-VERSION", Status.FAILED, host,
                f"Compose {'.'.join(map(str, version))} (v1, what `apt install docker-compose` "
                "gives on older releases): the production compose file needs Compose v2",
                evidence, expected="Compose v2", actual=".".join(map(str, version)))
        else:
            how = "docker compose plugin" if plugin.ok else "docker-compose"
            yield finding("HOST-COMPOSE-VERSION", Status.PASSED, host,
                          f"Compose {'.'.join(map(str, version))} ({how})", evidence)


@check("HOST-DOCKER-GROUP", needs=("hosts",))
def docker_group(context: CheckContext) -> Iterator[Finding]:
    for host in hosts(context):
        who = host.run("id", "-un")
        groups = host.run("id", "-nG")
        user = who.stdout.strip() or "?"
        names = groups.stdout.split()
        if user == "root":
            yield finding("HOST-DOCKER-GROUP", Status.PASSED, host,
                          "connected as root, which needs no docker group", who.evidence())
        elif "docker" in names:
            yield finding("HOST-DOCKER-GROUP", Status.PASSED, host,
                          f"{user} is in the docker group", groups.evidence())
        else:
            yield finding("HOST-DOCKER-GROUP", Status.FAILED, host,
                          f"{user} is not in the docker group", groups.evidence(),
                          expected="docker among the user's groups", actual=" ".join(names))


def pending_updates(host: HostView) -> tuple[int | None, str, Evidence | None]:
    """(count or None when unknown, package manager, evidence) of pending package updates."""
    if host.has_command("apt-get"):
        done = host.run("apt-get", "-s", "-o", "Debug::NoLocking=1", "upgrade", timeout=60)
        if not done.ok:
            return None, "apt", done.evidence()
        count = sum(1 for line in done.stdout.splitlines() if line.startswith("Inst "))
        return count, "apt", done.evidence(f"{count} packages to upgrade")
    if host.has_command("dnf"):
        done = host.run("dnf", "-q", "check-update", timeout=60)
        if done.rc not in (0, 100):  # 100: updates available
            return None, "dnf", done.evidence()
        count = sum(1 for line in done.stdout.splitlines()
                    if line.strip() and not line.startswith((" ", "Obsoleting")))
        return count, "dnf", done.evidence(f"{count} packages to upgrade")
    return None, "", None


@check("HOST-SYSTEM-UPDATES", needs=("hosts",))
def system_updates(context: CheckContext) -> Iterator[Finding]:
    for host in hosts(context):
        count, manager, evidence = pending_updates(host)
        shown = [evidence] if evidence is not None else []
        if not manager:
            yield finding("HOST-SYSTEM-UPDATES", Status.NOT_APPLICABLE, host,
                          "neither apt-get nor dnf found")
        elif count is None:
            yield finding("HOST-SYSTEM-UPDATES", Status.ERROR, host,
                          f"{manager} could not list pending updates", *shown)
        elif count:
            yield finding("HOST-SYSTEM-UPDATES", Status.FAILED, host,
                          f"{count} package update(s) pending ({manager}; as of the host's last "
                          "package index refresh)", *shown, expected="0 pending",
                          actual=str(count))
        else:
            yield finding("HOST-SYSTEM-UPDATES", Status.PASSED, host,
                          f"no package updates pending ({manager})", *shown)


@check("HOST-DOCKER-ENGINE", needs=("hosts",))
def docker_engine(context: CheckContext) -> Iterator[Finding]:
    for host in hosts(context):
        done = host.run("docker", "info", "--format", "{{.ServerVersion}}")
        version = done.stdout.strip()
        if done.ok and version:
            yield finding("HOST-DOCKER-ENGINE", Status.PASSED, host,
                          f"the Docker daemon answers (server {version})", done.evidence())
        else:
            yield finding("HOST-DOCKER-ENGINE", Status.FAILED, host,
                          "the Docker daemon does not answer `docker info`", done.evidence(),
                          expected="a running daemon", actual="no answer")
