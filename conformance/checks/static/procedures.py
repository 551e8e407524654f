"""The procedures read as the commands an operator runs, in order (4.2, 5.2, 7, 9.2, 10).

Each check takes the shell blocks of the procedures the team runs (`--runbook`, a Markdown file in
the guide's form) or, without one, of the guide itself (`conformance/guide.md`, and the finding
says so), and judges what a command assumes (the directory it runs in, the file it reads, the
container it needs, what it switches off, the version it returns to) against the commands before
it and, where the answer depends on them, the deployment's files. One parser reads both.
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
from conformance.checks.static.base import ArtifactError, NotApplicable, Problem, static_check
from conformance.checks.static.composefile import (
    app_service,
    command_text,
    each_service,
    is_redis,
    load_compose,
)
from conformance.checks.static.env import EnvFile, parse_env

_HEADING = re.compile(r"^#{1,4} (\d+(?:\.\d+)*)\.? ")
#: What a finding on the guide's own procedure adds.
GUIDE_NOTE = "judged the guide's own procedure; give --runbook with the procedures you run"


@dataclass(frozen=True, kw_only=True, slots=True)
class Command:
    section: str  # the guide section (e.g. "7", "10.2")
    line: int  # of the Markdown file
    text: str  # backslash continuations joined

    @property
    def words(self) -> list[str]:
        try:
            return shlex.split(self.text, comments=True)
        except ValueError:
            return self.text.split()


def guide_commands(path: Path = GUIDE_PATH) -> tuple[Command, ...]:
    """Every command of the ```bash blocks of the guide or a runbook, with its section and line."""
    try:
        info = path.stat()
    except OSError as exc:
        raise ArtifactError(path, f"cannot read: {exc.strerror}") from None
    return _commands(path, info.st_mtime_ns, info.st_size)


@cache
def _commands(path: Path, _mtime_ns: int, _size: int) -> tuple[Command, ...]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ArtifactError(path, f"cannot read: {exc}") from None
    commands: list[Command] = []
    section, in_fence, in_block, pending, start = "", False, False, "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        heading = _HEADING.match(raw)
        if heading and not in_fence:  # a `# comment` inside any fenced block is no heading
            section = heading.group(1)
        if raw.startswith("```"):
            in_fence = not in_fence
            in_block = in_fence and raw.strip() in ("```bash", "```sh", "```shell")
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


#: The guide whose procedures are judged without a runbook: the kit's copy (tests point it at
#: variants).
GUIDE = GUIDE_PATH


@dataclass(frozen=True, slots=True)
class Procedures:
    """The file whose procedures are judged, and how findings name it."""

    path: Path
    is_guide: bool

    def name(self, section: str) -> str:
        return f"guide {section}" if self.is_guide else f"{self.path.name} {section}"

    def commands(self, section: str | None = None) -> list[Command]:
        """The commands of a section (all of them when None); NotApplicable for a runbook that
        has none there (nothing to judge)."""
        found = [c for c in guide_commands(self.path) if section is None or c.section == section]
        if not found and not self.is_guide:
            where = f"under a section {section} heading" if section else "at all"
            raise NotApplicable(f"{self.path.name} has no ```bash commands {where}: write the "
                                "procedure you run there, in the guide's form")
        return found


def procedures_of(context: CheckContext) -> Procedures:
    if context.runbook is not None:
        return Procedures(context.runbook, is_guide=False)
    return Procedures(GUIDE, is_guide=True)


def subject(context: CheckContext) -> tuple[Path, str]:
    procedures = procedures_of(context)
    return procedures.path, GUIDE_NOTE if procedures.is_guide else ""


def section_commands(section: str, guide: Path = GUIDE_PATH) -> list[Command]:
    return [c for c in guide_commands(guide) if c.section == section]


_COMPOSE_GLOBAL_ARGS = ("-f", "--file", "-p", "--project-name", "--env-file",
                        "--project-directory", "--profile")


def _compose_rest(words: list[str]) -> list[str] | None:
    """The words after `docker-compose` / `docker compose` and their global options, else None
    (`VAR=value` assignments and `sudo` before it left out)."""
    while words and (words[0] == "sudo" or re.fullmatch(r"\w+=.*", words[0])):
        words = words[1:]
    if words[:1] == ["docker-compose"]:
        rest = words[1:]
    elif words[:2] == ["docker", "compose"]:
        rest = words[2:]
    else:
        return None
    while rest and rest[0].startswith("-"):
        rest = rest[2:] if rest[0] in _COMPOSE_GLOBAL_ARGS else rest[1:]
    return rest


def _is_compose(words: list[str], action: str) -> bool:
    """`docker-compose ... <action>` or `docker compose ... <action>`."""
    rest = _compose_rest(words)
    return rest is not None and rest[:1] == [action]


def _services(words: list[str]) -> set[str] | None:
    """The services a compose subcommand names (None: all of them)."""
    rest = _compose_rest(words) or []
    named = {w for w in rest[1:] if not w.startswith("-") and "=" not in w}
    return named or None


def _exec_target(words: list[str]) -> str | None:
    """The service of `compose exec SERVICE`, the container of `docker exec CONTAINER`."""
    rest = _compose_rest(words)
    if rest is not None and rest[:1] == ["exec"]:
        args = rest[1:]
        with_value = ("-e", "--env", "-u", "--user", "-w", "--workdir", "--index")
    elif words[:2] == ["docker", "exec"]:
        args = words[2:]
        with_value = ("-e", "--env", "-u", "--user", "-w", "--workdir", "--env-file")
    else:
        return None
    while args and args[0].startswith("-"):
        args = args[2:] if args[0] in with_value else args[1:]
    return args[0] if args else None


def _after_down(commands: list[Command]) -> Iterator[tuple[Command, Command]]:
    """(down or stop, command) for each command that execs into a container it removed or stopped.

    `down` removes every container; `stop`/`kill`/`rm` stop the services they name (all when none);
    `up`/`start`/`restart` bring back those they name (all when none).
    """
    stopped: dict[str, Command] = {}  # service -> the command that stopped it ("*": all)
    for command in commands:
        words = command.words
        if "|" in words:  # `cat file | docker-compose exec -T db ...`
            words = words[words.index("|") + 1:]
        rest = _compose_rest(words)
        action = rest[0] if rest else None
        if action == "down":
            stopped = {"*": command}
        elif action in ("stop", "kill", "rm"):
            for service in _services(words) or {"*"}:
                stopped[service] = command
        elif action in ("up", "start", "restart"):
            services = _services(words)
            stopped = {} if services is None else {
                k: v for k, v in stopped.items() if k not in services}
        else:
            target = _exec_target(words)
            if target is None:
                continue
            by = stopped.get(target) or stopped.get("*")
            if by is not None:
                yield by, command


def _order_problems(procedures: Procedures, section: str) -> Iterator[Problem]:
    for down, command in _after_down(procedures.commands(section)):
        removed = _is_compose(down.words, "down")
        what = "down" if removed else down.text[:60]
        effect = "`down` removed the containers" if removed else "that stopped its container"
        yield Problem(
            message=f"{procedures.name(section)} runs `{command.text[:90]}` after `{what}` (line "
            f"{down.line}): {effect}, so there is nothing to exec into (\"No such container\" / "
            "\"service is not running\")",
            file=procedures.path, line=command.line,
            expected="stop only the app (`docker compose stop app`), restore into the running "
            "db with `exec -T db`, then `up -d`", actual=f"{what} (line {down.line}), then exec",
            section=section,
        )


@static_check(
    "PROC-ROLLBACK-ORDER", ok="the rollback procedure never execs into a removed container",
    subject=subject,
)
def rollback_order(context: CheckContext) -> Iterator[Problem]:
    procedures = procedures_of(context)
    yield from _order_problems(procedures, "7")
    if context.compose_file is None:
        return
    compose = load_compose(context)
    names = {str(s.get("container_name")) for _n, s in each_service(compose)
             if s.get("container_name")}
    for command in procedures.commands("7"):
        words = command.words
        if "|" in words:
            words = words[words.index("|") + 1:]
        if words[:2] == ["docker", "exec"]:
            container = _exec_target(words)
            if container is not None and container not in names:
                yield Problem(
                    message=f"{procedures.name('7')} runs `docker exec {container}`, but no "
                    f"service of {compose.path.name} is named {container} (container_name)",
                    file=procedures.path, line=command.line,
                    expected="docker compose exec -T db ... (the service, not a container name)",
                    actual=f"containers named: {', '.join(sorted(names)) or 'by Compose'}",
                )


@static_check(
    "PROC-RECOVERY-ORDER", ok="the recovery procedure never execs into a removed container",
    subject=subject,
)
def recovery_order(context: CheckContext) -> Iterator[Problem]:
    yield from _order_problems(procedures_of(context), "10.2")


def _resolve(cwd: str, path: str) -> str:
    return posixpath.normpath(posixpath.join(cwd, path))


def _option(words: list[str], *names: str) -> str | None:
    """The value of an option (`--name value` or `--name=value`)."""
    for index, word in enumerate(words):
        if word in names and index + 1 < len(words):
            return words[index + 1]
        for name in names:
            if name.startswith("--") and word.startswith(name + "="):
                return word.split("=", 1)[1]
    return None


_PLACING = ("scp", "cp", "install", "mv", "rsync")


@static_check(
    "PROC-ENV-LOCATION", ok="the deployment steps read the .env where the steps before put it",
    subject=subject,
)
def env_location(context: CheckContext) -> Iterator[Problem]:
    """The guide's step 2 copies the .env to /opt/taskforge/config/.env; steps 4-5 run in
    /opt/taskforge/app, where the export and Compose read it."""
    procedures = procedures_of(context)
    name = procedures.name("4.2")
    placed: dict[str, int] = {}
    cwd, judged = "~", False
    for command in procedures.commands("4.2"):
        words = command.words
        if words[:1] == ["sudo"]:
            words = words[1:]
        if words[:1] and words[0] in _PLACING and len(words) >= 3:
            args = [w for w in words[1:] if not w.startswith("-")]
            if len(args) >= 2:
                destination = args[-1].split(":", 1)[-1] if ":" in args[-1] else args[-1]
                if destination.endswith("/"):
                    destination += posixpath.basename(args[0])
                placed[_resolve(cwd, destination)] = command.line
            continue
        if words[:1] == ["cd"] and len(words) == 2:
            cwd = _resolve(cwd, words[1])
            continue
        rest = _compose_rest(words)
        env_file = _option(words, "--env-file") if rest is not None else None
        if env_file is not None:
            wanted, reader = _resolve(cwd, env_file), f"Compose (--env-file {env_file})"
        elif ".env" in command.text.split() or re.search(r"\s\.env(\s|\)|$)", command.text):
            wanted, reader = _resolve(cwd, ".env"), "the command"
        elif rest is not None and rest[:1] and rest[0] in ("up", "run", "exec", "create", "config"):
            # Compose reads the .env beside the compose file; judged only when the steps put an
            # .env somewhere else (a deployment may create it some way the steps do not show).
            compose_file = _option(words, "-f", "--file") or "docker-compose.yml"
            wanted = _resolve(posixpath.dirname(_resolve(cwd, compose_file)), ".env")
            reader = "Compose"
            if not any(p.endswith(".env") for p in placed):
                continue
        else:
            continue
        if wanted in placed:
            judged = True
            continue
        where = ", ".join(f"{p} (line {n})" for p, n in placed.items() if p.endswith(
            ".env")) or "nowhere"
        consequence = ("finds none there" if reader == "Compose" else
                       "finds no file there, and Compose, which reads the .env beside the "
                       "compose file, finds none either")
        yield Problem(
            message=f"{name} reads .env in {posixpath.dirname(wanted)} (`{command.text[:60]}`), "
            f"but the steps before put it at {where}: {reader} {consequence}, so the services "
            "start without its settings (every variable empty, or refused where one is "
            "required)",
            file=procedures.path, line=command.line, expected=f"the .env copied to {wanted}",
            actual=f"{wanted}: not created",
        )
        return
    if not judged:
        raise NotApplicable(f"{name} puts no .env anywhere before Compose or a command reads it: "
                            "cannot tell where it is; copy it in the steps (scp, cp or install) "
                            "beside the compose file")


#: curl's short options that take no argument: they may share a `-` with -k (`-sSk`).
_CURL_FLAGS = set("sSfLvIiqgN#k")


def _insecure(word: str) -> bool:
    if word in ("-k", "--insecure"):
        return True
    return (re.fullmatch(r"-[A-Za-z#]+", word) is not None and "k" in word
            and set(word[1:]) <= _CURL_FLAGS)


@static_check(
    "PROC-SMOKE-VERIFIES-TLS", ok="the functional tests verify the certificate", subject=subject
)
def smoke_verifies_tls(context: CheckContext) -> Iterator[Problem]:
    procedures = procedures_of(context)
    for command in procedures.commands("5.2"):
        words = command.words
        if words[:1] == ["curl"] and any(_insecure(w) for w in words[1:]):
            yield Problem(
                message=f"{procedures.name('5.2')} `{command.text[:60]}` passes -k: curl accepts "
                "any certificate, so the check succeeds with an expired, self-signed or wrong-host "
                "certificate that 5.1 (\"SSL certificate valid\") must catch",
                file=procedures.path, line=command.line,
                expected="curl without -k (or --cacert)", actual="-k",
            )


def _authenticates(command: Command) -> bool:
    """redis-cli given a password: -a/--pass, a URI with one, or REDISCLI_AUTH set for it."""
    words = command.words
    return ("-a" in words or "--pass" in words or "REDISCLI_AUTH" in command.text
            or any(re.match(r"rediss?://[^@/\s]*:[^@/\s]+@", w) for w in words))


@static_check(
    "PROC-DIAG-REDIS-AUTH", needs=("compose_file",),
    ok="the 9.2 Redis diagnostic authenticates against this Redis", subject=subject,
)
def diagnostic_redis_auth(context: CheckContext) -> Iterator[Problem]:
    compose = load_compose(context)
    redis_services = [(n, s) for n, s in each_service(compose) if is_redis(s)]
    if not redis_services:
        raise NotApplicable("no Redis service in the compose file")
    procedures = procedures_of(context)
    pings = [c for c in procedures.commands("9.2") if "redis-cli" in c.text]
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
            if _authenticates(ping):
                continue
            yield Problem(
                message=f"{procedures.name('9.2')} `{ping.text[:70]}` connects without a "
                f"password, but service {name} requires one (--requirepass) and sets no "
                "REDISCLI_AUTH: the diagnostic answers \"NOAUTH Authentication required.\" "
                "instead of PONG, which reads as Redis being broken", file=procedures.path,
                line=ping.line, expected=f"REDISCLI_AUTH in service {name}'s environment, or "
                "set for the redis-cli command", actual="no credentials",
            )


def _value(word: str | None, env: EnvFile) -> str | None:
    """A word as the shell gives it: `$DB_USER` / `${DB_USER}` are the .env's value; any other
    variable cannot be told (None)."""
    if word is None:
        return None
    variable = re.fullmatch(r"\$\{?(\w+)\}?", word)
    if variable:
        return env.get(variable.group(1)) if variable.group(1) in ("DB_USER", "DB_NAME") else None
    return None if "$" in word else word


@static_check(
    "PROC-PSQL-IDENTITY", needs=("env_file",),
    ok="the procedures' psql and pg_dump commands use the .env's DB_USER and DB_NAME",
    subject=subject,
)
def psql_identity(context: CheckContext) -> Iterator[Problem]:
    assert context.env_file is not None
    env = parse_env(context.env_file)
    user, database = env.get("DB_USER"), env.get("DB_NAME")
    if user is None or database is None:
        raise NotApplicable("DB_USER or DB_NAME is not set in the .env")
    procedures = procedures_of(context)
    for command in procedures.commands():
        words = command.words
        for tool in ("psql", "pg_dump"):
            if tool not in words:
                continue
            rest = words[words.index(tool) + 1:]
            named_user = rest[rest.index("-U") + 1] if "-U" in rest[:-1] else None
            named_db = (rest[rest.index("-d") + 1] if "-d" in rest[:-1] else
                        next((w for w in rest if not w.startswith("-") and w != named_user
                              and w not in (">", "<") and re.fullmatch(r"[\w$]+|\$\{\w+\}", w)),
                             None))
            wrong = [(k, got, want) for k, got, want in (
                ("user", _value(named_user, env), user),
                ("database", _value(named_db, env), database)) if got is not None and got != want]
            for kind, got, want in wrong:
                yield Problem(
                    message=f"{procedures.name(command.section)} runs {tool} as {kind} {got}, but "
                    f"the .env sets {'DB_USER' if kind == 'user' else 'DB_NAME'}={want}: the "
                    "command fails (role or database does not exist)", file=procedures.path,
                    line=command.line, expected=want, actual=got, section=command.section,
                )

_VARIABLE = re.compile(r"\$\{?(\w+)")


def _chooses_version(command: Command, variables: set[str], image: str) -> bool:
    """Whether a command selects the app's version: sets a variable of its image (as a prefix, an
    export, or an edit of the .env), gives Compose another env file, retags the image, or checks
    out other sources (rebuilt by the `up --build` after it)."""
    words = command.words
    if any(re.search(rf"(^|[\s'\"]){re.escape(v)}=", command.text) for v in variables):
        return True
    if _compose_rest(words) is not None and _option(words, "--env-file") is not None:
        return True
    if words[:2] == ["docker", "tag"] and words[-1:] == [image]:
        return True
    return words[:2] in (["git", "checkout"], ["git", "switch"], ["git", "reset"])


@static_check(
    "PROC-ROLLBACK-PREVIOUS-VERSION", needs=("compose_file",),
    ok="the app's image is named by a tag, and the rollback starts the previous one",
    subject=subject,
)
def rollback_previous_version(context: CheckContext) -> Iterator[Problem]:
    compose = load_compose(context)
    found = app_service(compose)
    if found is None:
        raise NotApplicable("no app service (one named app, or one with build:)")
    name, service = found
    procedures = procedures_of(context)
    if "image" not in service and "build" in service:
        yield Problem(
            message=f"service {name} is built (build:) with no image: tag, so each `up --build` "
            "replaces the only tag of the previous build: the rollback (section 7) has no "
            "previous version to return to, and its `up -d` starts the version that failed "
            "again", file=compose.path, line=compose.service_line(name, "build"),
            expected="image: registry/taskforge:${TASKFORGE_VERSION:?} (a versioned tag per "
            "release)", actual="build: only",
        )
        return
    image = str(service.get("image", ""))
    variables = set(_VARIABLE.findall(image))
    chosen = False
    for command in procedures.commands("7"):
        chosen = chosen or _chooses_version(command, variables, image)
        rest = _compose_rest(command.words)
        if rest is None or rest[:1] != ["up"]:
            continue
        if chosen:
            return
        services = _services(command.words)
        if services is not None and name not in services:
            continue
        how = (f"set {', '.join(sorted(variables))} to the previous release's tag" if variables
               else f"retag the previous release as {image}")
        yield Problem(
            message=f"{procedures.name('7')} `{command.text[:70]}` starts service {name}'s "
            f"image {image} as it is: nothing before it names the previous version, so the "
            "rollback starts the version that failed again",
            file=procedures.path, line=command.line,
            expected=f"{how} before `up -d {name}`", actual="the same image",
        )
        return
    yield Problem(
        message=f"{procedures.name('7')} never runs `docker compose up` for service {name}: the "
        "rollback does not start a previous version", file=procedures.path,
        line=(procedures.commands("7") or [Command(section="7", line=1, text="")])[0].line,
        expected=f"docker compose up -d {name} with the previous release's image",
        actual="no up",
    )
