"""The guide's procedures read as the commands an operator runs, in order (4.2, 5.2, 7, 9.2, 10).

Each check takes the guide's shell blocks from `conformance/guide.md` and judges what a command
assumes (the directory it runs in, the file it reads, the container it needs, what it switches
off) against the commands before it and, where the answer depends on them, the deployment's files.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from conformance.catalogue import GUIDE_PATH
from conformance.checks.registry import CheckContext
from conformance.checks.static.base import NotApplicable, Problem, static_check
from conformance.checks.static.composefile import (
    app_service,
    command_text,
    each_service,
    is_redis,
    load_compose,
)
from conformance.checks.static.env import parse_env

_HEADING = re.compile(r"^#{2,4} (\d+(?:\.\d+)*)\.? ")


@dataclass(frozen=True, kw_only=True, slots=True)
class Command:
    section: str  # the guide section (e.g. "7", "10.2")
    line: int  # of guide.md
    text: str  # backslash continuations joined

    @property
    def words(self) -> list[str]:
        try:
            return shlex.split(self.text, comments=True)
        except ValueError:
            return self.text.split()


@cache
def guide_commands(path: Path = GUIDE_PATH) -> tuple[Command, ...]:
    """Every command of the guide's ```bash blocks, with its section and line."""
    commands: list[Command] = []
    section, in_block, pending, start = "", False, "", 0
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        heading = _HEADING.match(raw)
        if heading and not in_block:
            section = heading.group(1)
        if raw.startswith("```"):
            in_block = raw.strip() == "```bash"
            continue
        if not in_block:
            continue
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        if (pending + stripped).count("'") % 2:  # a quoted argument over several lines
            pending += stripped + " "
            continue
        commands.append(Command(section=section, line=start, text=(pending + stripped).strip()))
        pending = ""
    return tuple(commands)


#: The guide whose procedures are judged: the kit's copy (tests point it at variants).
GUIDE = GUIDE_PATH


def guide_of(_context: CheckContext) -> Path:
    return GUIDE


def section_commands(section: str, guide: Path = GUIDE_PATH) -> list[Command]:
    return [c for c in guide_commands(guide) if c.section == section]


def _is_compose(words: list[str], action: str) -> bool:
    """`docker-compose ... <action>` or `docker compose ... <action>`."""
    if words[:1] == ["docker-compose"]:
        rest = words[1:]
    elif words[:2] == ["docker", "compose"]:
        rest = words[2:]
    else:
        return False
    while rest and rest[0].startswith("-"):
        rest = rest[2:] if rest[0] in ("-f", "--file", "-p", "--project-name") else rest[1:]
    return rest[:1] == [action]


def _needs_running(words: list[str]) -> bool:
    return _is_compose(words, "exec") or words[:2] == ["docker", "exec"]


def _after_down(section: str, guide: Path) -> Iterator[tuple[Command, Command]]:
    """(down, command) for each command that needs a running container after a `down`."""
    down: Command | None = None
    for command in section_commands(section, guide):
        words = command.words
        if "|" in words:  # `cat file | docker-compose exec -T db ...`
            words = words[words.index("|") + 1:]
        if _is_compose(words, "down"):
            down = command
        elif _is_compose(words, "up") or _is_compose(words, "start"):
            down = None
        elif down is not None and _needs_running(words):
            yield down, command


def _order_problems(section: str, guide: Path) -> Iterator[Problem]:
    for down, command in _after_down(section, guide):
        yield Problem(
            message=f"guide {section} runs `{command.text[:90]}` after `down` (line {down.line}): "
            "`down` removed the containers, so there is nothing to exec into (\"No such "
            "container\" / \"service is not running\")", file=guide, line=command.line,
            expected="stop only the app (`docker compose stop app`), restore into the running "
            "db with `exec -T db`, then `up -d`", actual=f"down (line {down.line}), then exec",
            section=section,
        )


@static_check(
    "PROC-ROLLBACK-ORDER", ok="the rollback procedure never execs into a removed container"
)
def rollback_order(context: CheckContext) -> Iterator[Problem]:
    guide = guide_of(context)
    yield from _order_problems("7", guide)
    if context.compose_file is None:
        return
    compose = load_compose(context)
    names = {str(s.get("container_name")) for _n, s in each_service(compose)
             if s.get("container_name")}
    for command in section_commands("7", guide):
        words = command.words
        if words[:2] == ["docker", "exec"]:
            container = next((w for w in words[2:] if not w.startswith("-")), None)
            if container is not None and container not in names:
                yield Problem(
                    message=f"guide 7 runs `docker exec {container}`, but no service of "
                    f"{compose.path.name} is named {container} (container_name)",
                    file=guide, line=command.line,
                    expected="docker compose exec -T db ... (the service, not a container name)",
                    actual=f"containers named: {', '.join(sorted(names)) or 'by Compose'}",
                )


@static_check(
    "PROC-RECOVERY-ORDER", ok="the recovery procedure never execs into a removed container"
)
def recovery_order(context: CheckContext) -> Iterator[Problem]:
    yield from _order_problems("10.2", guide_of(context))


def _resolve(cwd: str, path: str) -> str:
    return posixpath.normpath(posixpath.join(cwd, path))


@static_check(
    "PROC-ENV-LOCATION", ok="the deployment steps read the .env where the guide put it"
)
def env_location(context: CheckContext) -> Iterator[Problem]:
    """Step 2 copies the .env to /opt/taskforge/config/.env; steps 4-5 run in /opt/taskforge/app."""
    guide = guide_of(context)
    placed: dict[str, int] = {}
    cwd = "~"
    for command in section_commands("4.2", guide):
        words = command.words
        if words[:1] in (["scp"], ["cp"], ["sudo"]) and len(words) >= 3:
            args = [w for w in (words[1:] if words[0] != "sudo" else words[2:])
                    if not w.startswith("-")]
            if len(args) >= 2:
                destination = args[-1].split(":", 1)[-1] if ":" in args[-1] else args[-1]
                if destination.endswith("/"):
                    destination += posixpath.basename(args[0])
                placed[destination] = command.line
        elif words[:1] == ["cd"] and len(words) == 2:
            cwd = _resolve(cwd, words[1])
        elif ".env" in command.text.split() or re.search(r"\s\.env(\s|\)|$)", command.text):
            wanted = _resolve(cwd, ".env")
            if wanted not in placed:
                where = ", ".join(f"{p} (line {n})" for p, n in placed.items() if p.endswith(
                    ".env")) or "nowhere"
                yield Problem(
                    message=f"guide 4.2 reads .env in {cwd} (`{command.text[:60]}`), but the "
                    f"steps before put it at {where}: the command finds no file, and Compose, "
                    f"which reads {cwd}/.env, interpolates every variable as empty",
                    file=guide, line=command.line, expected=f"the .env copied to {wanted}",
                    actual=f"{wanted}: not created",
                )
                return


@static_check("PROC-SMOKE-VERIFIES-TLS", ok="the functional tests verify the certificate")
def smoke_verifies_tls(context: CheckContext) -> Iterator[Problem]:
    guide = guide_of(context)
    for command in section_commands("5.2", guide):
        words = command.words
        if words[:1] == ["curl"] and ("-k" in words or "--insecure" in words):
            yield Problem(
                message=f"guide 5.2 `{command.text[:60]}` passes -k: curl accepts any "
                "certificate, so the check succeeds with an expired, self-signed or wrong-host "
                "certificate that 5.1 (\"SSL certificate valid\") must catch",
                file=guide, line=command.line, expected="curl without -k (or --cacert)",
                actual="-k",
            )


@static_check(
    "PROC-DIAG-REDIS-AUTH", needs=("compose_file",),
    ok="the 9.2 Redis diagnostic authenticates against this Redis",
)
def diagnostic_redis_auth(context: CheckContext) -> Iterator[Problem]:
    compose = load_compose(context)
    redis_services = [(n, s) for n, s in each_service(compose) if is_redis(s)]
    if not redis_services:
        raise NotApplicable("no Redis service in the compose file")
    guide = guide_of(context)
    pings = [c for c in section_commands("9.2", guide) if "redis-cli" in c.words]
    for name, service in redis_services:
        command = command_text(service.get("command"))
        if "requirepass" not in command:
            continue
        environment = service.get("environment")
        names = (set(environment) if isinstance(environment, dict) else
                 {str(e).partition("=")[0].strip() for e in environment}
                 if isinstance(environment, list) else set())
        if "REDISCLI_AUTH" in names:
            continue
        for ping in pings:
            if "-a" in ping.words or "--pass" in ping.words:
                continue
            yield Problem(
                message=f"guide 9.2 `{ping.text[:70]}` connects without a password, but service "
                f"{name} requires one (--requirepass) and sets no REDISCLI_AUTH: the diagnostic "
                "answers \"NOAUTH Authentication required.\" instead of PONG, which reads as "
                "Redis being broken", file=guide, line=ping.line,
                expected=f"REDISCLI_AUTH in service {name}'s environment",
                actual="no credentials",
            )


@static_check(
    "PROC-PSQL-IDENTITY", needs=("env_file",),
    ok="the guide's psql and pg_dump commands use the .env's DB_USER and DB_NAME",
)
def psql_identity(context: CheckContext) -> Iterator[Problem]:
    assert context.env_file is not None
    env = parse_env(context.env_file)
    user, database = env.get("DB_USER"), env.get("DB_NAME")
    if user is None or database is None:
        raise NotApplicable("DB_USER or DB_NAME is not set in the .env")
    guide = guide_of(context)
    for command in guide_commands(guide):
        words = command.words
        for tool in ("psql", "pg_dump"):
            if tool not in words:
                continue
            rest = words[words.index(tool) + 1:]
            named_user = rest[rest.index("-U") + 1] if "-U" in rest[:-1] else None
            named_db = (rest[rest.index("-d") + 1] if "-d" in rest[:-1] else
                        next((w for w in rest if not w.startswith("-") and w != named_user
                              and w not in (">", "<") and re.fullmatch(r"\w+", w)), None))
            wrong = [(k, got, want) for k, got, want in (("user", named_user, user),
                                                         ("database", named_db, database))
                     if got is not None and got != want]
            for kind, got, want in wrong:
                yield Problem(
                    message=f"guide {command.section} runs {tool} as {kind} {got}, but the .env "
                    f"sets {'DB_USER' if kind == 'user' else 'DB_NAME'}={want}: the command "
                    "fails (role or database does not exist)", file=guide,
                    line=command.line, expected=want, actual=got, section=command.section,
                )


@static_check(
    "PROC-ROLLBACK-PREVIOUS-VERSION", needs=("compose_file",),
    ok="the app's image is named by a tag a rollback can return to",
)
def rollback_previous_version(context: CheckContext) -> Iterator[Problem]:
    compose = load_compose(context)
    found = app_service(compose)
    if found is None:
        raise NotApplicable("no app service (one named app, or one with build:)")
    name, service = found
    if "image" in service or "build" not in service:
        return
    yield Problem(
        message=f"service {name} is built (build:) with no image: tag, so each `up --build` "
        "replaces the only tag of the previous build: guide 7 step 1 (`cd`) returns to no "
        "previous version, and step 4 `up -d` starts the version that failed again",
        file=compose.path, line=compose.service_line(name, "build"),
        expected="image: registry/taskforge:${TASKFORGE_VERSION:?} (a versioned tag per release)",
        actual="build: only",
    )
