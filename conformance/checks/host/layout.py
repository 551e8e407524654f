"""Guide 4.2 and 8.1: the /opt/taskforge directories, their owner, and recent backups."""

from __future__ import annotations

import time
from collections.abc import Iterator

from conformance.checks.host.common import finding, hosts
from conformance.checks.registry import CheckContext, check
from conformance.model import Evidence, Finding, Status

DIRECTORIES = ("app", "config", "data", "logs", "backups")
#: Daily backups plus two hours of slack for a slow dump or a late cron.
MAX_BACKUP_AGE_HOURS = 26


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


def newest_file(find_output: str) -> tuple[float, str] | None:
    """The newest (mtime, path) of `find -printf '%T@ %p\\n'` output."""
    newest: tuple[float, str] | None = None
    for line in find_output.splitlines():
        stamp, _, path = line.partition(" ")
        try:
            mtime = float(stamp)
        except ValueError:
            continue
        if newest is None or mtime > newest[0]:
            newest = (mtime, path)
    return newest


@check("HOST-BACKUPS-RECENT", needs=("hosts",))
def backups_recent(context: CheckContext) -> Iterator[Finding]:
    for host in hosts(context):
        directory = host.path(f"{host.taskforge_dir}/backups")
        if not host.host.file(directory).is_directory:
            yield finding("HOST-BACKUPS-RECENT", Status.FAILED, host,
                          f"no backups directory {directory}", expected="a backup file younger "
                          f"than {MAX_BACKUP_AGE_HOURS} h", actual="no directory")
            continue
        done = host.run("find", directory, "-type", "f", "-printf", "%T@ %p\\n")
        now = float(host.run("date", "+%s").stdout.strip() or time.time())
        newest = newest_file(done.stdout) if done.ok else None
        if newest is None:
            yield finding("HOST-BACKUPS-RECENT", Status.FAILED, host,
                          f"no backup files in {directory}", done.evidence(),
                          expected=f"a file younger than {MAX_BACKUP_AGE_HOURS} h", actual="none")
            continue
        age_hours = (now - newest[0]) / 3600
        if age_hours > MAX_BACKUP_AGE_HOURS:
            yield finding("HOST-BACKUPS-RECENT", Status.FAILED, host,
                          f"newest backup {newest[1]} is {age_hours:.0f} h old",
                          done.evidence(), expected=f"< {MAX_BACKUP_AGE_HOURS} h",
                          actual=f"{age_hours:.0f} h")
        else:
            yield finding("HOST-BACKUPS-RECENT", Status.PASSED, host,
                          f"newest backup {newest[1]} is {age_hours:.1f} h old", done.evidence())
