"""Guide 4.2 and 8.1: the /opt/taskforge directories, their owner, and recent backups."""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import yaml

from conformance.checks.host.common import Command, HostView, finding, hosts
from conformance.checks.registry import CheckContext, check
from conformance.model import Evidence, Finding, Status

DIRECTORIES = ("app", "config", "data", "logs", "backups")


@check("HOST-TASKFORGE-DIRS", "HOST-TASKFORGE-OWNER", needs=("hosts",))
def directories(context: CheckContext) -> Iterator[Finding]:
    for host in hosts(context):
        base = host.taskforge_dir
        who = host.run("id", "-un")
        user = who.stdout.strip()
        missing: list[str] = []
        owners: dict[str, str] = {}
        for name in DIRECTORIES:
            handle = host.host.file(host.path(f"{base}/{name}"))
            if not handle.exists or not handle.is_directory:
                missing.append(name)
            else:
                owners[name] = str(handle.user)
        evidence = Evidence(kind="text", summary=f"{base}/{{{','.join(DIRECTORIES)}}}",
                            output="\n".join(f"{n}: owner {o}" for n, o in owners.items())
                                   + "".join(f"\n{n}: missing" for n in missing))
        if missing:
            yield finding("HOST-TASKFORGE-DIRS", Status.FAILED, host,
                          f"missing under {base}: {', '.join(missing)}", evidence,
                          expected=", ".join(DIRECTORIES), actual=", ".join(owners) or "none")
        else:
            yield finding("HOST-TASKFORGE-DIRS", Status.PASSED, host,
                          f"{base} has {', '.join(DIRECTORIES)}", evidence)
        if not owners:
            yield finding("HOST-TASKFORGE-OWNER", Status.NOT_APPLICABLE, host,
                          f"no directories under {base} to judge")
            continue
        foreign = {n: o for n, o in owners.items() if o != user}
        if foreign:
            yield finding("HOST-TASKFORGE-OWNER", Status.FAILED, host,
                          "not owned by the deploying user " + repr(user) + ": "
                          + ", ".join(f"{n} ({o})" for n, o in foreign.items()), evidence,
                          expected=f"owner {user}", actual=", ".join(sorted(set(foreign.values()))))
        else:
            yield finding("HOST-TASKFORGE-OWNER", Status.PASSED, host,
                          f"owned by {user}", evidence)


#: Files beside dumps that are not dumps: checksums, logs, a dump still being written.
NOT_DUMPS = (".md5", ".sha1", ".sha256", ".sha512", ".log", ".tmp", ".part", ".partial")
#: Slack on top of the schedule for a slow dump or a late timer.
SCHEDULE_SLACK_SECONDS = 2 * 3600
DAY = 86400
#: The guide's layout (4.2 step 2): the compose file in app/, whose backup service writes ./backups.
GUIDE_COMPOSE = "app/docker-compose.prod.yml"
SCHEDULES = {"@hourly": 3600, "@daily": DAY, "@midnight": DAY, "@weekly": 7 * DAY}
DECOMPRESSORS = {".gz": "gzip -dc", ".zst": "zstd -dc", ".bz2": "bzip2 -dc", ".xz": "xz -dc"}


@dataclass(frozen=True, kw_only=True)
class BackupPlace:
    """Where the deployment's backup service writes on the host, and how often."""

    directory: str | None  # None: not locatable (the reason says why)
    interval_seconds: int
    source: str  # how it was found, for the message
    reason: str = ""


def _interpolate(value: str) -> str:
    """`${VAR:-default}` → default (the kit does not see the server's .env); else unchanged."""
    return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*:?-([^}]*)\}", r"\1", value)


def _environment(service: dict[str, Any]) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        pairs = (str(item).partition("=") for item in raw)
        return {k: _interpolate(v) for k, _, v in pairs}
    return {str(k): _interpolate(str(v)) for k, v in raw.items() if v is not None}


def schedule_seconds(env: dict[str, str]) -> int:
    """The backup interval from the settings backup images read; daily when none is given."""
    if env.get("BACKUP_INTERVAL_SECONDS", "").strip().isdigit():
        return int(env["BACKUP_INTERVAL_SECONDS"])
    schedule = env.get("SCHEDULE", env.get("BACKUP_SCHEDULE", "")).strip().lower()
    if schedule in SCHEDULES:
        return SCHEDULES[schedule]
    fields = schedule.split()
    if len(fields) == 5:  # cron: judge by its widest repeating field
        if fields[1] == "*":
            return 3600
        if fields[4] != "*" and fields[2] == "*":
            return 7 * DAY
        return DAY
    if env.get("DB_DUMP_FREQ", "").strip().isdigit():  # minutes (older db-backup images)
        return int(env["DB_DUMP_FREQ"]) * 60
    return DAY


def backup_service(services: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The service that takes the backups: named or imaged as one, or running pg_dump."""
    for name, service in services.items():
        if not isinstance(service, dict):
            continue
        image = str(service.get("image", ""))
        command = service.get("command") or ""
        text = " ".join(map(str, command)) if isinstance(command, list) else str(command)
        if "backup" in str(name).lower() or "backup" in image.lower() or "pg_dump" in text:
            return str(name), service
    return None


def backup_volume(service: dict[str, Any]) -> tuple[str, str] | None:
    """(source, target) of the volume the service writes its backups into."""
    volumes: list[tuple[str, str]] = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            volumes.append((str(volume.get("source", "")), str(volume.get("target", ""))))
        else:
            parts = _interpolate(str(volume)).split(":")
            if len(parts) >= 2:
                volumes.append((parts[0], parts[1]))
    for source, target in volumes:
        if "backup" in target.lower():
            return source, target
    return None


def backup_place_from_compose(text: str, compose_dir: str, origin: str) -> BackupPlace:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError:
        return BackupPlace(directory=None, interval_seconds=DAY, source=origin,
                           reason=f"{origin} is not valid YAML")
    services = document.get("services") if isinstance(document, dict) else None
    found = backup_service(services) if isinstance(services, dict) else None
    if found is None:
        return BackupPlace(directory=None, interval_seconds=DAY, source=origin,
                           reason=f"{origin} has no backup service (guide 3.2 `backup`)")
    name, service = found
    interval = schedule_seconds(_environment(service))
    volume = backup_volume(service)
    if volume is None:
        return BackupPlace(directory=None, interval_seconds=interval, source=origin,
                           reason=f"service {name!r} in {origin} mounts no backup volume")
    source, target = volume
    where = f"service {name!r} of {origin} writes {target}"
    if source.startswith("/"):
        return BackupPlace(directory=source, interval_seconds=interval, source=where)
    if source.startswith("."):
        return BackupPlace(directory=str(PurePosixPath(compose_dir) / source),
                           interval_seconds=interval, source=where)
    return BackupPlace(directory=f"volume:{source}", interval_seconds=interval, source=where)


def backup_place(context: CheckContext, host: HostView) -> BackupPlace:
    """From the compose file deployed on the server (guide 4.2 step 2), else --compose-file
    (taken as deployed there too), else the guide's own layout."""
    app_dir = f"{host.taskforge_dir}/app"
    deployed = host.read(f"{host.taskforge_dir}/{GUIDE_COMPOSE}")
    if deployed is not None:
        return backup_place_from_compose(deployed, app_dir,
                                         f"{host.taskforge_dir}/{GUIDE_COMPOSE}")
    if context.compose_file is not None:
        return backup_place_from_compose(context.compose_file.read_text(errors="replace"),
                                         app_dir, str(context.compose_file))
    return BackupPlace(directory=f"{app_dir}/backups", interval_seconds=DAY,
                       source="the guide's compose file (3.2: ./backups beside it in "
                              f"{app_dir}; no compose file given or deployed)")


def volume_directory(host: HostView, volume: str) -> str | None:
    """The host path of a named Docker volume (compose prefixes the project name)."""
    listing = host.run("docker", "volume", "ls", "--format", "{{.Name}}")
    if not listing.ok:
        listing = host.run_privileged("docker", "volume", "ls", "--format", "{{.Name}}")
    names = [n for n in listing.stdout.split() if n == volume or n.endswith(f"_{volume}")]
    if not listing.ok or len(names) != 1:
        return None
    inspect = host.run_privileged("docker", "volume", "inspect", "--format",
                                  "{{.Mountpoint}}", names[0])
    return inspect.stdout.strip() or None if inspect.ok else None


def list_files(find_output: str) -> list[tuple[float, int, str]]:
    """(mtime, size, path) of `find -printf '%T@ %s %p\\n'` output, newest first."""
    files: list[tuple[float, int, str]] = []
    for line in find_output.splitlines():
        stamp, _, rest = line.partition(" ")
        size, _, path = rest.partition(" ")
        try:
            files.append((float(stamp), int(size), path))
        except ValueError:
            continue
    return sorted(files, reverse=True)


def judge_dump(host: HostView, path: str) -> tuple[bool | None, str, Command]:
    """Whether the file is a PostgreSQL dump (None: this server cannot tell): pg_restore --list
    for the custom format, the header (and trailer, when it can be read in time) for plain SQL."""
    quoted = shlex.quote(path)
    reader = next((tool for suffix, tool in DECOMPRESSORS.items() if path.endswith(suffix)), "")
    cat = f"{reader} {quoted}" if reader else f"cat {quoted}"
    # Printable ASCII only: a custom-format dump is binary after its PGDMP magic.
    head = host.run("sh", "-c", f"{cat} 2>/dev/null | head -c 4096 | tr -cd '\\11\\12\\40-\\176'")
    header = head.stdout
    if header.startswith("PGDMP"):
        restore = host.run("sh", "-c", f"command -v pg_restore >/dev/null || exit 127; "
                                       f"{cat} | pg_restore --list >/dev/null")
        if restore.rc == 127:
            return True, "custom-format dump (PGDMP header; no pg_restore on the server)", head
        if restore.ok:
            return True, "custom-format dump (pg_restore --list reads it)", restore
        if "unsupported version" in restore.stderr:
            # A pg_dump newer than the server's own client tools (the database runs in a
            # container of its own version): this pg_restore cannot say either way.
            return None, ("custom-format dump that the server's pg_restore is too old to read "
                          "(install the postgresql-client of the database's version to judge "
                          "it)"), restore
        return False, "custom-format header, but pg_restore --list cannot read it", restore
    if "-- PostgreSQL database dump" in header:
        tail = host.run("sh", "-c", f"{cat} | tail -c 256", timeout=30)
        if tail.rc == 124:
            return True, "plain SQL dump (header; too large to read its end in time)", head
        if "-- PostgreSQL database dump complete" in tail.stdout:
            return True, "plain SQL dump, complete (pg_dump's header and closing line)", tail
        return False, "plain SQL dump without pg_dump's closing line: cut short", tail
    return False, "neither a pg_dump header (SQL) nor PGDMP (custom format)", head


@check("HOST-BACKUPS-RECENT", needs=("hosts",))
def backups_recent(context: CheckContext) -> Iterator[Finding]:
    for host in hosts(context):
        place = backup_place(context, host)
        directory = place.directory
        if directory is not None and directory.startswith("volume:"):
            volume = directory.removeprefix("volume:")
            directory = volume_directory(host, volume)
            if directory is None:
                yield finding("HOST-BACKUPS-RECENT", Status.NOT_APPLICABLE, host,
                              f"{place.source} in the named volume {volume!r}, which docker on "
                              "the server does not show (run as a docker group member, or "
                              "bind-mount a host directory)")
                continue
        if directory is None:
            yield finding("HOST-BACKUPS-RECENT", Status.NOT_APPLICABLE, host,
                          f"{place.reason}: give --compose-file of the deployment")
            continue
        limit = place.interval_seconds + SCHEDULE_SLACK_SECONDS
        expected = f"a non-empty dump younger than {limit / 3600:.0f} h in {directory}"
        listing = host.run("find", host.path(directory), "-type", "f", "-printf",
                           "%T@ %s %p\\n")
        if not listing.ok and "ermission denied" in listing.stderr:
            listing = host.run_privileged("find", host.path(directory), "-type", "f",
                                          "-printf", "%T@ %s %p\\n")
        if not listing.ok and not listing.stdout:
            yield finding("HOST-BACKUPS-RECENT", Status.FAILED, host,
                          f"no backups directory {directory} ({place.source})",
                          listing.evidence(), expected=expected, actual="no directory")
            continue
        now = float(host.run("date", "+%s").stdout.strip() or time.time())
        files = [f for f in list_files(listing.stdout) if not f[2].endswith(NOT_DUMPS)]
        dumps = [f for f in files if f[1] > 0]
        if not dumps:
            yield finding("HOST-BACKUPS-RECENT", Status.FAILED, host,
                          f"no non-empty backup in {directory} ({place.source}; "
                          f"{len(files)} empty file(s))", listing.evidence(),
                          expected=expected, actual="none")
            continue
        mtime, size, path = dumps[0]
        age_hours = (now - mtime) / 3600
        if files[0][1] == 0:
            yield finding("HOST-BACKUPS-RECENT", Status.FAILED, host,
                          f"the newest backup {files[0][2]} is empty: the last backup run "
                          "failed", listing.evidence(), expected=expected,
                          actual=f"empty file; last non-empty {age_hours:.0f} h old")
            continue
        if age_hours * 3600 > limit:
            yield finding("HOST-BACKUPS-RECENT", Status.FAILED, host,
                          f"the newest backup {path} is {age_hours:.0f} h old; the schedule "
                          f"is every {place.interval_seconds / 3600:.0f} h ({place.source})",
                          listing.evidence(), expected=expected, actual=f"{age_hours:.0f} h")
            continue
        is_dump, what, probe = judge_dump(host, path)
        evidence = (listing.evidence(), probe.evidence(what))
        if is_dump is None:
            yield finding("HOST-BACKUPS-RECENT", Status.NOT_APPLICABLE, host,
                          f"the newest backup {path} ({size} bytes, {age_hours:.1f} h old) is a "
                          f"{what}", *evidence)
        elif not is_dump:
            yield finding("HOST-BACKUPS-RECENT", Status.FAILED, host,
                          f"the newest backup {path} is not a PostgreSQL dump: {what}",
                          *evidence, expected="a pg_dump file", actual=what)
        else:
            yield finding("HOST-BACKUPS-RECENT", Status.PASSED, host,
                          f"newest backup {path} ({size} bytes) is {age_hours:.1f} h old, "
                          f"within the schedule of {place.interval_seconds / 3600:.0f} h plus "
                          f"{SCHEDULE_SLACK_SECONDS // 3600} h ({place.source}); {what}",
                          *evidence)
