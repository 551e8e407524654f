"""Static checks of the backup service of the compose file (guide 3.2, 6.3, 10.1).

Which variables a backup image reads is a fact about that image, taken from a table that cites
its source; for an image not in the table, a service with its own command is judged by what its
command reads, and otherwise the variables are not judged.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

from conformance.checks.registry import CheckContext
from conformance.checks.static.base import LineDict, NotApplicable, Problem, line_of, static_check
from conformance.checks.static.compose import image_pin_problem
from conformance.checks.static.composefile import (
    Compose,
    command_text,
    each_service,
    image_of,
    is_postgres,
    load_compose,
    volume_sources,
)

#: Settings of a schedule, a retention or a backup healthcheck, whatever the image calls them.
SCHEDULE_LIKE = re.compile(r"SCHEDULE|FREQ|INTERVAL|KEEP|CLEANUP|RETENTION|CRON|BEGIN|"
                           r"HEALTHCHECK_PORT")


@dataclass(frozen=True, kw_only=True, slots=True)
class BackupImage:
    reads: re.Pattern[str]  # the schedule-like variables the image reads
    destination: str  # where it writes dumps inside the container by default
    defaults: str  # what happens when none of its variables is set
    source: str


BACKUP_IMAGES = {
    "tiredofit/db-backup": BackupImage(
        reads=re.compile(r"^(DB_DUMP_FREQ|DB_DUMP_BEGIN|DB_CLEANUP_TIME|DEFAULT_BACKUP_INTERVAL|"
                         r"DEFAULT_BACKUP_BEGIN|DEFAULT_CLEANUP_TIME|DEFAULT_ARCHIVE_TIME|"
                         r"DB\d\d_(BACKUP_INTERVAL|BACKUP_BEGIN|CLEANUP_TIME|ARCHIVE_TIME))$"),
        destination="/backup",
        defaults="a dump every 1440 minutes from start, old dumps never deleted "
        "(DEFAULT_CLEANUP_TIME=FALSE)",
        source="tiredofit/docker-db-backup install/assets/defaults/10-db-backup and README "
        "(v3 DB_DUMP_FREQ/DB_CLEANUP_TIME, v4 DEFAULT_*/DB01_*); no release from 2017-09-13 to "
        "2026-03-13 reads SCHEDULE or BACKUP_KEEP_*",
    ),
    "prodrigestivill/postgres-backup-local": BackupImage(
        reads=re.compile(r"^(SCHEDULE|BACKUP_KEEP_(MINS|DAYS|WEEKS|MONTHS)|HEALTHCHECK_PORT)$"),
        destination="/backups",
        defaults="a dump @daily, 7 daily, 4 weekly and 6 monthly kept",
        source="prodrigestivill/docker-postgres-backup-local README (environment variables)",
    ),
}

#: What ships dumps off the host, and what encrypts them.
OFFSITE = re.compile(
    r"s3://|gs://|azure|blobxfer|b2://|rclone|restic|borg|rsync|scp |sftp|ssh |"
    r"\bS3_(BUCKET|HOST)|BACKUP_LOCATION\W+(S3|BLOBXFER)", re.IGNORECASE,
)
ENCRYPTED = re.compile(
    r"\bgpg\b|\bage\b -|openssl enc|restic|borg|ENCRYPT\W+(TRUE|YES|1)|ENCRYPT_(PASSPHRASE|"
    r"PUBLIC_KEY)", re.IGNORECASE,
)


def backup_services(compose: Compose) -> list[tuple[str, LineDict]]:
    return [(n, s) for n, s in each_service(compose) if "backup" in (n + image_of(s)).lower()]


def _repository(image: str) -> str:
    name = image.partition("@")[0]
    head, colon, tag = name.rpartition(":")
    name = head if colon and "/" not in tag else name
    return name.removeprefix("docker.io/")


def _environment(service: LineDict) -> list[tuple[str, str, int | None]]:
    environment = service.get("environment")
    if isinstance(environment, dict):
        return [(str(k), "" if v is None else str(v), line_of(environment, k))
                for k, v in environment.items()]
    if isinstance(environment, list):
        return [(str(e).partition("=")[0].strip(), str(e).partition("=")[2],
                 line_of(environment, i)) for i, e in enumerate(environment)]
    return []


def _service_text(service: LineDict) -> str:
    return " ".join([json.dumps(service.get("environment")), command_text(service.get("command")),
                     command_text(service.get("entrypoint"))])


def _destination(service: LineDict) -> tuple[str, str, int | None] | None:
    """(source, target, line) of the volume the dumps land on, when it can be told."""
    image = BACKUP_IMAGES.get(_repository(image_of(service)))
    text = _service_text(service)
    mounts = list(volume_sources(service))
    for source, target, line in mounts:
        if not source or target in ("/etc/localtime", "/etc/timezone"):
            continue
        if (image is not None and target.rstrip("/") == image.destination) or target in text:
            return source, target, line
    return None


@static_check(
    "COMPOSE-BACKUP-SERVICE", needs=("compose_file",),
    ok="a scheduled backup service is defined; its image reads the settings it is given",
)
def backup_service(context: CheckContext) -> Iterator[Problem]:
    compose = load_compose(context)
    backups = backup_services(compose)
    if not backups:
        yield Problem(
            message="no backup service: nothing backs the database up automatically",
            file=compose.path, line=line_of(compose.data, "services"),
            expected="a service that dumps the database on a schedule", actual="none",
        )
        return
    unknown: list[str] = []
    data_sources = {source for _n, s in each_service(compose) if is_postgres(s)
                    for source, target, _l in volume_sources(s)
                    if target.rstrip("/").startswith("/var/lib/postgresql")}
    for name, service in backups:
        image_name = image_of(service)
        image = BACKUP_IMAGES.get(_repository(image_name))
        command = command_text(service.get("command")) + command_text(service.get("entrypoint"))
        settings = [(k, v, line) for k, v, line in _environment(service) if SCHEDULE_LIKE.search(k)]
        if image is not None:
            ignored = [(k, line) for k, _v, line in settings if not image.reads.match(k)]
            if ignored:
                pin = image_pin_problem(image_name)
                yield Problem(
                    message=f"service {name}: {_repository(image_name)} reads none of "
                    f"{', '.join(k for k, _l in ignored)}, so they change nothing: it runs "
                    f"with its defaults ({image.defaults})"
                    + (f"; and the image {pin}, so what it reads may change at any pull"
                       if pin else "") + f" (source: {image.source})",
                    file=compose.path, line=ignored[0][1],
                    expected=f"the variables {_repository(image_name)} reads",
                    actual=", ".join(k for k, _l in ignored),
                )
        elif command.strip():
            for key, _value, line in settings:
                if not re.search(rf"\$\$?\{{?{key}\b", command):
                    yield Problem(
                        message=f"service {name} sets {key}, which its command never reads",
                        file=compose.path, line=line, expected=f"${key} used by the command",
                        actual="unused",
                    )
        else:
            unknown.append(image_name)
        if not (settings or re.search(r"@daily|@hourly|cron|sleep", command, re.IGNORECASE)
                or image is not None):
            yield Problem(
                message=f"service {name} has no schedule", file=compose.path,
                line=compose.service_line(name), expected="a backup schedule", actual="none",
            )
        found = _destination(service)
        if found is not None and found[0] in data_sources:
            yield Problem(
                message=f"service {name} writes its dumps into the database's own volume "
                f"{found[0]}: a lost or corrupted volume takes the backups with it",
                file=compose.path, line=found[2], expected="a separate backups volume",
                actual=found[0],
            )
    if unknown:
        raise NotApplicable(
            f"cannot tell which variables {', '.join(unknown)} reads: it is not in the kit's "
            "table of backup images and has no command of its own"
        )


@static_check(
    "COMPOSE-BACKUP-OFFSITE", needs=("compose_file",),
    ok="the dumps are copied off the host, encrypted",
)
def backup_offsite(context: CheckContext) -> Iterator[Problem]:
    compose = load_compose(context)
    backups = backup_services(compose)
    if not backups:
        raise NotApplicable("no backup service (COMPOSE-BACKUP-SERVICE)")
    texts = " ".join(_service_text(s) + " " + " ".join(src for src, _t, _l in volume_sources(s))
                     for _n, s in each_service(compose))
    offsite, encrypted = OFFSITE.search(texts), ENCRYPTED.search(texts)
    if offsite:
        if not encrypted:
            name = backups[0][0]
            yield Problem(
                message=f"the dumps leave the host ({offsite.group(0).strip()}) unencrypted: "
                "whoever holds the remote copy reads every job and account",
                file=compose.path, line=compose.service_line(name),
                expected="encryption before upload (gpg, age, restic...)", actual="plain dumps",
            )
        return
    for name, service in backups:
        found = _destination(service)
        if found is None:
            continue
        source, _target, line = found
        volumes = compose.data.get("volumes")
        spec = volumes.get(source) if isinstance(volumes, dict) else None
        options = spec.get("driver_opts") if isinstance(spec, dict) else None
        remote_volume = isinstance(spec, dict) and (
            str(spec.get("driver", "local")) != "local"
            or (isinstance(options, dict) and str(options.get("type", "none")) not in
                ("none", "bind")))
        if remote_volume:
            continue  # an NFS/CIFS or plugin volume: not this host's disk
        device = options.get("device") if isinstance(options, dict) else None
        if source.startswith("/") or (device and str(device).startswith("/")):
            raise NotApplicable(
                f"the dumps go to the host path {device or source}; whether that is another disk "
                "or machine the compose file cannot tell: attest the offsite copy and the "
                "restore test (OPS-RECOVERY-TESTED)"
            )
        yield Problem(
            message=f"service {name} writes its dumps to {source} on the same host as the data "
            "(a directory next to the compose file or a Docker volume), unencrypted, and nothing "
            "copies them elsewhere: the host's loss or compromise takes the backups with it",
            file=compose.path, line=line,
            expected="an encrypted copy off the host (restic/borg/rclone to another machine or "
            "bucket)", actual=f"{source} only",
        )
