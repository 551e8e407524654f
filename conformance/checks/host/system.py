"""Guide 2.1, 2.2, 4.2 and 8.3: operating system, Docker and Compose, docker group, updates."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator

from conformance.checks.host.common import Command, HostView, finding, hosts, version_tuple
from conformance.checks.registry import CheckContext, check
from conformance.model import Evidence, Finding, Status

#: The guide's list: Ubuntu 20.04 LTS or newer, CentOS 8 or newer. RHEL rebuilds count as CentOS.
MINIMUM_OS = {"ubuntu": (20, 4), "centos": (8,)}
CENTOS_LIKE = frozenset({"centos", "rhel", "rocky", "almalinux"})
#: Compose v2 needs Docker 20.10.
MIN_DOCKER = (20, 10)
#: The guide calls `docker-compose` (step 1: `apt install docker-compose`, v1 on Debian and Ubuntu).
#: Its compose file (3.2) says version '3.8' and uses `depends_on: {condition: service_healthy}`,
#: which the 3.x format dropped; docker-compose reads that again since 1.27.0, the release that
#: adopted the Compose Specification (apt: 1.25.0 on Ubuntu 20.04, 1.29.2 on 22.04 and Debian 12).
MIN_COMPOSE = (1, 27)
#: An index older than this makes "no updates pending" meaningless (guide 8.3 is monthly).
MAX_INDEX_AGE_DAYS = 7


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


def judge_compose(version: tuple[int, ...] | None,
                  plugin: tuple[int, ...] | None) -> tuple[Status, str]:
    """The `docker-compose` command the guide calls; the v2 plugin alone does not answer it."""
    shown_min = ".".join(map(str, MIN_COMPOSE))
    beside = ("" if plugin is None else
              f"; the `docker compose` plugin {'.'.join(map(str, plugin))} is installed too")
    if version is None:
        if plugin is not None:
            return Status.FAILED, (
                f"only the `docker compose` plugin {'.'.join(map(str, plugin))} answers, but the "
                "guide's commands call `docker-compose`: install the docker-compose package or "
                "link the plugin as docker-compose")
        return Status.FAILED, "neither `docker-compose` nor the `docker compose` plugin answers"
    shown = ".".join(map(str, version))
    if version < MIN_COMPOSE:
        return Status.FAILED, (
            f"docker-compose {shown} is older than {shown_min}, the first release that reads the "
            "guide's compose file (`depends_on` with `condition: service_healthy` under version "
            f"'3.8'){beside}")
    if version < (2,):
        return Status.PASSED, (f"docker-compose {shown} (v1); Compose v1 no longer receives "
                               f"updates (v2 can be installed as docker-compose){beside}")
    return Status.PASSED, f"docker-compose {shown} (v2){beside}"


@check("HOST-COMPOSE-VERSION", needs=("hosts",))
def compose_version(context: CheckContext) -> Iterator[Finding]:
    """The `docker-compose` every command of the guide calls (step 1 installs it from apt)."""
    for host in hosts(context):
        standalone = host.run("docker-compose", "--version")
        version = docker_version(standalone.stdout) if standalone.ok else None
        plugin = host.run("docker", "compose", "version")
        plugin_version = docker_version(plugin.stdout) if plugin.ok else None
        status, message = judge_compose(version, plugin_version)
        yield finding("HOST-COMPOSE-VERSION", status, host, message,
                      standalone.evidence("the command the guide calls"), plugin.evidence(),
                      expected=f"docker-compose >= {'.'.join(map(str, MIN_COMPOSE))}",
                      actual="none" if version is None else ".".join(map(str, version)))


@check("HOST-DOCKER-GROUP", needs=("hosts",))
def docker_group(context: CheckContext) -> Iterator[Finding]:
    """Judged on the group database (`id -nG USER`), not on this session's groups: a session
    opened before `usermod -aG docker` keeps its old groups until the user logs in again."""
    for host in hosts(context):
        who = host.run("id", "-un")
        user = who.stdout.strip() or "?"
        groups = host.run("id", "-nG", user)
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


def apt_index_age(host: HostView) -> tuple[float | None, Evidence]:
    """Seconds since the apt index was last refreshed: the newest of the stamps apt and its
    hooks touch on every `apt update` (lists/partial, Ubuntu's update-success-stamp) and the
    index files themselves."""
    script = ("find /var/lib/apt/periodic/update-success-stamp /var/lib/apt/periodic/update-stamp"
              " /var/lib/apt/lists/partial /var/lib/apt/lists -maxdepth 1 \\( -name '*Release'"
              " -o -name partial -o -name '*-stamp' \\) -printf '%T@ %p\\n' 2>/dev/null;"
              " date +%s")
    done = host.run("sh", "-c", script)
    lines = done.stdout.split("\n")
    stamps: list[tuple[float, str]] = []
    now: float | None = None
    for line in (ln.strip() for ln in lines if ln.strip()):
        stamp, _, path = line.partition(" ")
        try:
            value = float(stamp)
        except ValueError:
            continue
        if path:
            stamps.append((value, path))
        else:
            now = value
    if not stamps or now is None:
        return None, done.evidence("no apt index found")
    newest = max(stamps)
    return max(0.0, now - newest[0]), done.evidence(f"newest: {newest[1]}")


def refresh_succeeded(refresh: Command) -> bool:
    """apt-get update exits 0 when a source cannot be fetched (it keeps the old index and warns):
    an `Err:` line or a fetch warning means the index was not refreshed."""
    output = refresh.stdout + refresh.stderr
    return refresh.ok and not re.search(r"^(Err:|W: Failed to fetch|W: Some index files failed|E:)",
                                        output, re.MULTILINE)


def count_apt_upgrades(simulation: str) -> int:
    return sum(1 for line in simulation.splitlines() if line.startswith("Inst "))


@check("HOST-SYSTEM-UPDATES", needs=("hosts",))
def system_updates(context: CheckContext) -> Iterator[Finding]:
    """Pending updates against a fresh index: refreshed here only with --allow-writes (it writes
    on the server); otherwise the index's age is judged and the count is as of that refresh."""
    for host in hosts(context):
        if host.has_command("apt-get"):
            yield from _apt_updates(context, host)
        elif host.has_command("dnf"):
            yield from _dnf_updates(context, host)
        else:
            yield finding("HOST-SYSTEM-UPDATES", Status.NOT_APPLICABLE, host,
                          "neither apt-get nor dnf found")


def _apt_updates(context: CheckContext, host: HostView) -> Iterator[Finding]:
    evidence: list[Evidence] = []
    if context.allow_host_writes:
        refresh = host.run_privileged("apt-get", "update", "-q", timeout=180)
        evidence.append(refresh.evidence("refreshing the index (--allow-writes)"))
        if not refresh_succeeded(refresh):
            yield finding("HOST-SYSTEM-UPDATES", Status.ERROR, host,
                          "could not refresh the package index (apt-get update as root or "
                          "through sudo -n)", *evidence)
            return
    age, age_evidence = apt_index_age(host)
    evidence.append(age_evidence)
    if age is None:
        yield finding("HOST-SYSTEM-UPDATES", Status.FAILED, host,
                      "no apt package index on the server: pending updates are unknown; run "
                      "`sudo apt update` (or rerun with --allow-writes)", *evidence,
                      expected=f"an index refreshed within {MAX_INDEX_AGE_DAYS} days",
                      actual="no index")
        return
    days = age / 86400
    if days > MAX_INDEX_AGE_DAYS:
        yield finding("HOST-SYSTEM-UPDATES", Status.FAILED, host,
                      f"the package index is {days:.0f} days old, so what it says is pending "
                      "says little: refresh it (`sudo apt update`, or rerun with "
                      "--allow-writes) and upgrade", *evidence,
                      expected=f"an index at most {MAX_INDEX_AGE_DAYS} days old, 0 pending",
                      actual=f"{days:.0f} days old")
        return
    simulation = host.run("apt-get", "-s", "-o", "Debug::NoLocking=1", "dist-upgrade",
                          timeout=120)
    evidence.append(simulation.evidence())
    if not simulation.ok:
        yield finding("HOST-SYSTEM-UPDATES", Status.ERROR, host,
                      "apt-get could not list pending updates", *evidence)
        return
    count = count_apt_upgrades(simulation.stdout)
    as_of = f"index refreshed {days:.1f} days ago"
    if count:
        yield finding("HOST-SYSTEM-UPDATES", Status.FAILED, host,
                      f"{count} package update(s) pending (apt; {as_of})", *evidence,
                      expected="0 pending", actual=str(count))
    else:
        yield finding("HOST-SYSTEM-UPDATES", Status.PASSED, host,
                      f"no package updates pending (apt; {as_of})", *evidence)


def _dnf_updates(context: CheckContext, host: HostView) -> Iterator[Finding]:
    # dnf refreshes expired metadata by itself; without --allow-writes it keeps to its cache.
    argv = ("dnf", "-q", "check-update") if context.allow_host_writes else (
        "dnf", "-q", "--cacheonly", "check-update")
    done = host.run_privileged(*argv, timeout=180) if context.allow_host_writes else host.run(
        *argv, timeout=60)
    if done.rc not in (0, 100):  # 100: updates available
        yield finding("HOST-SYSTEM-UPDATES", Status.ERROR, host,
                      "dnf could not list pending updates", done.evidence())
        return
    count = sum(1 for line in done.stdout.splitlines()
                if line.strip() and not line.startswith((" ", "Obsoleting")))
    as_of = ("fresh metadata" if context.allow_host_writes
             else "cached metadata; --allow-writes refreshes it")
    if count:
        yield finding("HOST-SYSTEM-UPDATES", Status.FAILED, host,
                      f"{count} package update(s) pending (dnf; {as_of})", done.evidence(),
                      expected="0 pending", actual=str(count))
    else:
        yield finding("HOST-SYSTEM-UPDATES", Status.PASSED, host,
                      f"no package updates pending (dnf; {as_of})", done.evidence())


@check("HOST-DOCKER-ENGINE", needs=("hosts",))
def docker_engine(context: CheckContext) -> Iterator[Finding]:
    for host in hosts(context):
        # `docker version` says why it cannot reach the daemon; `docker info --format` hides it.
        done = host.run("docker", "version", "--format", "{{.Server.Version}}")
        version = done.stdout.strip()
        if done.ok and version:
            yield finding("HOST-DOCKER-ENGINE", Status.PASSED, host,
                          f"the Docker daemon answers (server {version})", done.evidence())
            continue
        said = done.stderr.lower()
        if "permission denied" in said:
            why = ("the Docker daemon's socket refuses this user (outside the docker group, or "
                   "a session older than the membership)")
        elif "cannot connect to the docker daemon" in said:
            why = "the Docker daemon is not running (its socket does not answer)"
        elif done.rc == 127 or "not found" in said:
            why = "docker is not installed"
        else:
            why = "the Docker daemon does not answer `docker version`"
        yield finding("HOST-DOCKER-ENGINE", Status.FAILED, host, why, done.evidence(),
                      expected="a running daemon", actual="no answer")
