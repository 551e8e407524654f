"""The backup items judge what the image reads and where the dumps go, from the cited table."""

from __future__ import annotations

from pathlib import Path

import pytest
from static_helpers import run_checks

from conformance.model import Finding, Status

DB = """  db:
    image: postgres:16-alpine
    volumes:
      - pgdata:/var/lib/postgresql/data
"""


def judge(tmp_path: Path, item: str, backup: str, volumes: str = "  pgdata:\n") -> list[Finding]:
    compose = tmp_path / "docker-compose.prod.yml"
    compose.write_text(f"services:\n{DB}  backup:\n{backup}volumes:\n{volumes}")
    return run_checks((item,), compose_file=compose)


def statuses(findings: list[Finding]) -> list[Status]:
    return [f.status for f in findings]


GUIDE_NAMES = """    image: tiredofit/db-backup:4.1.21
    volumes:
      - ./backups:/backup
    environment:
      - DB_TYPE=postgres
      - SCHEDULE=@daily
      - BACKUP_KEEP_DAYS=7
"""


def test_variables_the_image_does_not_read(tmp_path: Path) -> None:
    (finding,) = judge(tmp_path, "COMPOSE-BACKUP-SERVICE", GUIDE_NAMES)
    assert finding.status is Status.FAILED
    assert finding.actual == "SCHEDULE, BACKUP_KEEP_DAYS"
    assert "never deleted" in finding.message
    assert finding.evidence[0].line == 12  # the first ignored variable


def test_variables_the_image_reads(tmp_path: Path) -> None:
    backup = GUIDE_NAMES.replace("SCHEDULE=@daily", "DEFAULT_BACKUP_INTERVAL=1440").replace(
        "BACKUP_KEEP_DAYS=7", "DEFAULT_CLEANUP_TIME=10080")
    assert statuses(judge(tmp_path, "COMPOSE-BACKUP-SERVICE", backup)) == [Status.PASSED]


def test_the_names_belong_to_another_image(tmp_path: Path) -> None:
    backup = GUIDE_NAMES.replace("tiredofit/db-backup:4.1.21",
                                 "prodrigestivill/postgres-backup-local:16")
    backup = backup.replace("./backups:/backup", "./backups:/backups")
    assert statuses(judge(tmp_path, "COMPOSE-BACKUP-SERVICE", backup)) == [Status.PASSED]


def test_own_command_must_read_its_settings(tmp_path: Path) -> None:
    backup = """    image: postgres:16-alpine
    environment:
      BACKUP_KEEP_DAYS: "7"
    command: ["sh", "-c", "while true; do pg_dump > /backups/x.sql; sleep 86400; done"]
    volumes:
      - dumps:/backups
"""
    (finding,) = judge(tmp_path, "COMPOSE-BACKUP-SERVICE", backup, "  pgdata:\n  dumps:\n")
    assert finding.message == "service backup sets BACKUP_KEEP_DAYS, which its command never reads"


def test_dumps_inside_the_database_volume(tmp_path: Path) -> None:
    backup = """    image: prodrigestivill/postgres-backup-local:16
    volumes:
      - pgdata:/backups
"""
    (finding,) = judge(tmp_path, "COMPOSE-BACKUP-SERVICE", backup)
    assert "into the database's own volume pgdata" in finding.message


def test_unknown_image_is_not_judged(tmp_path: Path) -> None:
    backup = "    image: acme/backup:2\n    environment:\n      SCHEDULE: '@daily'\n"
    (finding,) = judge(tmp_path, "COMPOSE-BACKUP-SERVICE", backup)
    assert finding.status is Status.NOT_APPLICABLE
    assert finding.message.startswith("cannot tell which variables acme/backup:2 reads")


@pytest.mark.parametrize(
    ("environment", "status"),
    [
        ("", Status.FAILED),  # local dumps only
        ("      - DEFAULT_BACKUP_LOCATION=S3\n", Status.FAILED),  # off the host, unencrypted
        ("      - DEFAULT_BACKUP_LOCATION=S3\n      - DEFAULT_ENCRYPT=TRUE\n"
         "      - DEFAULT_ENCRYPT_PASSPHRASE=${BACKUP_PASSPHRASE}\n", Status.PASSED),
    ],
)
def test_offsite_and_encrypted(tmp_path: Path, environment: str, status: Status) -> None:
    findings = judge(tmp_path, "COMPOSE-BACKUP-OFFSITE", GUIDE_NAMES + environment)
    assert statuses(findings) == [status]


def test_offsite_on_a_host_path_cannot_be_told(tmp_path: Path) -> None:
    backup = GUIDE_NAMES.replace("./backups:/backup", "/srv/backups:/backup")
    (finding,) = judge(tmp_path, "COMPOSE-BACKUP-OFFSITE", backup)
    assert finding.status is Status.NOT_APPLICABLE
