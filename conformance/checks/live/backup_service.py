"""The deployment's own backups (guide 6.3, 7, 10.2): the backup service's dumps and the guide's
restore commands, on the docker stack (its containers are the deployment's).

backup.py drills pg_dump and psql from this machine; here the dump is the one the backup service
wrote on its schedule, restored inside the database container into a fresh database, and the jobs
that existed before that dump started are looked for in it. The guide's rollback (7) and recovery
(10.2) blocks are then followed in their written order against the engine: a step that cannot
work as written (an `exec` into the database after `down` removed it) fails the item with the
engine's own answer.
"""

from __future__ import annotations

import calendar
import contextlib
import re
import secrets
import shlex
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg

from conformance.checks.live.common import Report, database_url_of, may_write, target_of
from conformance.checks.live.http import LoginError, auth_headers, client_for, payload_of
from conformance.checks.live.jobs import smoke_job_body
from conformance.checks.registry import check
from conformance.model import Evidence

if TYPE_CHECKING:
    import docker

    from conformance.checks.registry import CheckContext
    from conformance.model import Finding

SCHEDULE_ITEMS = ("BACKUP-SCHEDULED", "BACKUP-SCHEDULED-RESTORE")
GUIDE_ITEMS = {"7": "BACKUP-GUIDE-ROLLBACK", "10.2": "BACKUP-GUIDE-RECOVERY"}
#: Beyond one schedule interval, how long a dump may take to appear (the dump itself, start-up).
GRACE_SECONDS = 10.0
#: Never wait longer than this for a scheduled dump, whatever the schedule says.
MAX_WAIT_SECONDS = 90.0
EXEC_TIMEOUT_SECONDS = 120.0
GUIDE = Path(__file__).resolve().parents[2] / "guide.md"
_DUMP = re.compile(r"taskforge_(\d{8}_\d{6})\.sql\.gz$")


@dataclass(frozen=True, slots=True)
class Dump:
    path: str
    started: int  # epoch seconds, from the name the service gives it (date +%Y%m%d_%H%M%S, UTC)
    written: int  # epoch seconds, the file's mtime
    size: int


def _engine() -> docker.DockerClient:
    import docker

    return docker.from_env(timeout=int(EXEC_TIMEOUT_SECONDS))


def _exec(client: docker.DockerClient, container: str, argv: list[str],
          stdin_from: str | None = None) -> tuple[int, str]:
    """Run argv in the container; (exit status, output)."""
    if stdin_from is not None:
        argv = ["sh", "-c", f"{stdin_from} | {shlex.join(argv)}"]
    created = client.api.exec_create(container, argv, stdout=True, stderr=True)
    output = client.api.exec_start(created["Id"])
    code = client.api.exec_inspect(created["Id"]).get("ExitCode")
    return int(code if code is not None else -1), output.decode(errors="replace")


def list_dumps(client: docker.DockerClient, container: str,
               directory: str) -> tuple[list[Dump], int, str]:
    """(the dumps, the container's clock, the command) in the backup directory."""
    script = (f"for f in {shlex.quote(directory)}/taskforge_*.sql.gz; do [ -e \"$f\" ] && "
              "stat -c '%Y %s %n' \"$f\"; done; date -u +%s")
    _, output = _exec(client, container, ["sh", "-c", script])
    lines = output.strip().splitlines()
    now = int(lines[-1]) if lines and lines[-1].isdigit() else int(time.time())
    dumps = []
    for line in lines[:-1]:
        parts = line.split(" ", 2)
        match = _DUMP.search(parts[-1]) if len(parts) == 3 else None
        if match and parts[0].isdigit() and parts[1].isdigit():
            started = calendar.timegm(time.strptime(match.group(1), "%Y%m%d_%H%M%S"))
            dumps.append(Dump(parts[2], started, int(parts[0]), int(parts[1])))
    return sorted(dumps, key=lambda d: d.started), now, f"ls -l {directory} (in backup)"


def _docker_facts(ctx: CheckContext) -> dict[str, str] | None:
    facts = dict(target_of(ctx).docker)
    return facts if facts.get("backup") and facts.get("db") else None


def _jobs_before(database_url: str, epoch: int) -> set[str]:
    with psycopg.connect(database_url, connect_timeout=5) as conn:
        rows = conn.execute("SELECT id::text FROM jobs WHERE created_at < to_timestamp(%s)",
                            (epoch,)).fetchall()
    return {str(r[0]) for r in rows}


def _submit_job(ctx: CheckContext) -> tuple[str | None, Evidence | None]:
    """A job of this run, so the restore has one to find (writes: reference stack or opted in)."""
    with client_for(ctx) as client:
        try:
            headers = auth_headers(ctx, client)
        except LoginError:
            return None, None
        if headers is None:
            return None, None
        response = client.post("/api/v1/jobs", json=smoke_job_body(ctx), headers=headers)
        job = payload_of(response)
        evidence = client.evidence(response, "POST /api/v1/jobs (a job the restore must hold)")
    return (str(job["id"]) if isinstance(job, dict) and job.get("id") else None), evidence


def _wait_dump(client: docker.DockerClient, facts: dict[str, str],
               after: int | None) -> tuple[Dump | None, int, str]:
    """The newest dump (one started at or after `after`, if given), waiting one schedule."""
    interval = float(facts.get("backup_interval") or 0)
    deadline = time.monotonic() + min(MAX_WAIT_SECONDS, interval + GRACE_SECONDS)
    while True:
        dumps, now, command = list_dumps(client, facts["backup"], facts["backups_dir"])
        fitting = [d for d in dumps if after is None or d.started >= after]
        if fitting or time.monotonic() >= deadline:
            return (fitting[-1] if fitting else None), now, command
        time.sleep(1.0)


def _restore(client: docker.DockerClient, facts: dict[str, str],
             dump: Dump) -> tuple[set[str] | None, list[str], str]:
    """Restore the dump into a fresh database in the db container; (job ids, commands, output)."""
    user, scratch = facts["db_user"], f"restore_check_{secrets.token_hex(4)}"
    db = facts["db"]
    commands = [f"createdb -U {user} {scratch}",
                f"gunzip -c {dump.path} | psql -v ON_ERROR_STOP=1 -q -U {user} -d {scratch}",
                f"psql -At -U {user} -d {scratch} -c 'SELECT id FROM jobs'"]  # noqa: S608
    code, output = _exec(client, db, ["createdb", "-U", user, scratch])
    if code != 0:
        return None, commands[:1], output
    try:
        code, output = _exec(client, db, ["psql", "-v", "ON_ERROR_STOP=1", "-q", "-U", user,
                                          "-d", scratch], stdin_from=f"gunzip -c {dump.path}")
        if code != 0:
            return None, commands[:2], output
        code, output = _exec(client, db, ["psql", "-At", "-U", user, "-d", scratch,
                                          "-c", "SELECT id FROM jobs"])
        if code != 0:
            return None, commands, output
        return {line.strip() for line in output.splitlines() if line.strip()}, commands, ""
    finally:
        _exec(client, db, ["dropdb", "-U", user, "--force", scratch])


@check(*SCHEDULE_ITEMS, needs=("target",))
def scheduled_backup(ctx: CheckContext) -> Iterator[Finding]:
    """The backup service wrote a dump within its schedule, and the next one restores the jobs."""
    report = Report(f"{__name__}.scheduled_backup")
    facts = _docker_facts(ctx)
    if facts is None:
        why = ("the backup service is inspected on the docker stack's deployment (`--stack "
               "docker`); for another deployment attest its schedule and last restore")
        for item in SCHEDULE_ITEMS:
            yield report.not_applicable(item, why)
        return
    interval = int(facts.get("backup_interval") or 0)
    with contextlib.closing(_engine()) as client:
        newest, now, command = _wait_dump(client, facts, None)
        listing = Evidence(kind="command", command=command,
                           output=f"newest: {newest}" if newest else "no dump")
        if newest is None:
            message = (f"no dump in {facts['backups_dir']} of the backup service: its schedule "
                       f"(every {interval}s) never ran")
            for item in SCHEDULE_ITEMS:
                yield report.failed(item, message, listing, expected="a dump within the "
                                    "schedule", actual="none")
            return
        age = now - newest.written
        if age > interval + GRACE_SECONDS or newest.size == 0:
            yield report.failed(
                "BACKUP-SCHEDULED", f"the newest dump {newest.path} is {age}s old "
                f"({newest.size} bytes); the schedule is every {interval}s", listing,
                expected=f"a non-empty dump at most {interval + GRACE_SECONDS:.0f}s old",
                actual=f"{age}s, {newest.size} bytes")
        else:
            yield report.passed(
                "BACKUP-SCHEDULED", f"the backup service wrote {newest.path} ({newest.size} "
                f"bytes) {age}s ago; its schedule is every {interval}s", listing)
        url = database_url_of(ctx)
        if not may_write(ctx) or url is None:
            yield report.not_applicable(
                "BACKUP-SCHEDULED-RESTORE", "restoring creates a database: reference stack or "
                "--allow-writes, with a database URL")
            return
        job_id, submitted = _submit_job(ctx)
        mark = int(time.time()) + 1  # a dump started after the job committed
        dump, _, _ = _wait_dump(client, facts, mark)
        if dump is None:
            yield report.failed("BACKUP-SCHEDULED-RESTORE", f"no dump started after {mark} "
                                f"within the schedule (every {interval}s)", listing)
            return
        expected = _jobs_before(url, dump.started)
        restored, commands, output = _restore(client, facts, dump)
    evidence = [e for e in (submitted,) if e is not None] + [Evidence(
        kind="command", summary=f"restore of {dump.path} into a fresh database (in db)",
        command="\n".join(commands), output=output[-800:] or None)]
    if restored is None:
        yield report.failed("BACKUP-SCHEDULED-RESTORE", f"the restore of {dump.path} failed",
                            *evidence)
        return
    lost = expected - restored
    if lost:
        yield report.failed(
            "BACKUP-SCHEDULED-RESTORE", f"{len(lost)} of {len(expected)} job(s) that existed "
            f"before the dump started are missing from the restore: "
            f"{', '.join(sorted(lost)[:5])}", *evidence,
            expected=f"{len(expected)} jobs", actual=f"{len(expected) - len(lost)} restored")
        return
    ours = f" (this run's job {job_id} among them)" if job_id in expected else ""
    yield report.passed(
        "BACKUP-SCHEDULED-RESTORE", f"{dump.path} restored into a fresh database with all "
        f"{len(expected)} jobs that existed before it started{ours}", *evidence)


# --- the guide's commands, in their order ------------------------------------------------------


def guide_commands(section: str, guide: Path = GUIDE) -> list[str]:
    """The shell commands of a section's ```bash blocks, as the PROC-* items read them."""
    from conformance.checks.static.procedures import section_commands

    return [command.text for command in section_commands(section, guide)]


def blocking_step(commands: list[str]) -> tuple[str, str] | None:
    """(the `down`, the later command that needs a container it removed), or None."""
    down = None
    for command in commands:
        if re.search(r"\bdocker[- ]compose\b.*\bdown\b", command):
            down = command
        elif re.search(r"\bup\b\s+-d|\bup\b$", command):
            down = None
        elif down is not None and re.search(r"\bdocker\s+exec\b|\bexec\s+(-T\s+)?db\b", command):
            return down, command
    return None


def _demonstrate(client: docker.DockerClient, facts: dict[str, str]) -> str:
    """What the engine answers an exec into a database container that `down` removed."""
    import docker.errors

    from conformance.stack.docker import LABEL_RUN

    labels = {LABEL_RUN: facts["run_id"]}  # removed with the run, whatever happens here
    image = client.api.inspect_container(facts["db"])["Config"]["Image"]
    created = client.api.create_container(image, command=["true"], labels=labels)
    # What `down` does to it (v: the image's anonymous volume goes too, as the run's clean-up).
    client.api.remove_container(created["Id"], force=True, v=True)
    try:
        client.api.exec_create(created["Id"], ["psql", "--version"])
    except docker.errors.NotFound as exc:
        return str(exc.explanation or exc)
    except docker.errors.APIError as exc:
        return str(exc.explanation or exc)
    return "the exec was accepted"


@check(*GUIDE_ITEMS.values(), needs=("target",))
def guide_restore_commands(ctx: CheckContext) -> Iterator[Finding]:
    """Sections 7 and 10.2 of the procedures the team runs (`--runbook`, else the guide's own)
    followed in their written order on the docker stack's engine."""
    from conformance.checks.static.base import NotApplicable
    from conformance.checks.static.procedures import GUIDE_NOTE, procedures_of

    report = Report(f"{__name__}.guide_restore_commands")
    facts = _docker_facts(ctx)
    procedures = procedures_of(ctx)
    note = f" ({GUIDE_NOTE})" if procedures.is_guide else ""
    for section, item in GUIDE_ITEMS.items():
        where = procedures.name(section)
        try:
            commands = [command.text for command in procedures.commands(section)]
        except NotApplicable as reason:
            yield report.not_applicable(item, str(reason))
            continue
        written = Evidence(kind="text", summary=f"{where}, as written",
                           output="\n".join(commands))
        if not commands:
            yield report.error(item, f"no command block found in {where}")
            continue
        if facts is None:
            yield report.not_applicable(
                item, "the restore commands are run on the docker stack's deployment "
                      "(`--stack docker`)")
            continue
        blocked = blocking_step(commands)
        if blocked is None:
            yield report.passed(item, f"{where}'s order keeps the database running for its "
                                      f"restore{note}", written)
            continue
        down, needs = blocked
        with contextlib.closing(_engine()) as client:
            answer = _demonstrate(client, facts)
        yield report.failed(
            item, f"{where} cannot work as written: `{down}` removes the database "
                  f"container, then `{needs}` needs it (the engine answers: {answer}){note}",
            written, Evidence(kind="command", summary="exec into a removed container",
                              command="docker rm -f <db>; docker exec <db> psql", output=answer),
            expected="the restore runs while the database container runs",
            actual="the database container is gone",
        )
