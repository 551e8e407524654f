"""LOG_FILE_PATH judged against the image and the compose file (guide 3.1, 3.2, 3.3).

A log file needs a directory that exists in the image, that the runtime user may write, and a
volume that keeps it past the container; the guide's /var/log/taskforge/app.log has none of these.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator

from conformance.checks.registry import CheckContext
from conformance.checks.static.base import NotApplicable, Problem, static_check
from conformance.checks.static.composefile import app_service, load_compose, volume_sources
from conformance.checks.static.dockerfile import Stage, parse_dockerfile
from conformance.checks.static.env import parse_env


def _covers(parent: str, path: str) -> bool:
    parent = parent.rstrip("/") or "/"
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def _created(stage: Stage, directory: str) -> bool:
    """The final stage makes the directory: mkdir, install -d, WORKDIR, or a COPY into it."""
    for instruction in stage.instructions:
        words = re.split(r"[\s;&|]+", instruction.arguments)
        if instruction.keyword == "WORKDIR" and _covers(directory, instruction.arguments.strip()):
            return True
        makes = "mkdir" in words or ("install" in words and "-d" in words)
        if instruction.keyword == "RUN" and makes and any(
            _covers(directory, w.rstrip("/")) for w in words if w.startswith("/")
        ):
            return True
        if instruction.keyword in ("COPY", "ADD") and words and _covers(directory, words[-1]):
            return True
    return False


def _runtime_user(stage: Stage) -> str:
    users = stage.all("USER")
    return users[-1].arguments.split(":")[0].strip() if users else "root"


def _names_of(stage: Stage, user: str) -> set[str]:
    """The user and its other spelling (name or uid) from the stage's useradd/adduser."""
    names = {user}
    for instruction in stage.all("RUN"):
        for match in re.finditer(r"(?:useradd|adduser)\b([^;&|]*)", instruction.arguments):
            words = match.group(1).split()
            uid = next((words[i + 1] for i, w in enumerate(words[:-1])
                        if w in ("-u", "--uid")), None)
            name = words[-1] if words else None
            if uid and name and user in (uid, name):
                names |= {uid, name}
    return names


def _owned_by(stage: Stage, directory: str, user: str) -> bool:
    """A RUN gives the user the directory (chown of it or a parent with -R) or opens it to all."""
    names = _names_of(stage, user)
    for instruction in stage.all("RUN"):
        text = instruction.arguments
        for match in re.finditer(r"chown\s+(-R\s+)?(\S+)\s+((?:/\S+\s*)+)", text):
            owner = match.group(2).split(":")[0]
            paths = match.group(3).split()
            recursive = bool(match.group(1))
            if owner in names and any(
                p.rstrip("/") == directory or (recursive and _covers(p, directory)) for p in paths
            ):
                return True
        if re.search(rf"chmod\s+(-R\s+)?[0-7]?7[0-7]7\s+\S*{re.escape(directory)}", text):
            return True
        # `install -d -o USER [-g GROUP] DIR...` makes the directory and gives it to USER.
        for match in re.finditer(r"\binstall\s+([^;&|]*)", text):
            words = match.group(1).split()
            if "-d" not in words and "--directory" not in words:
                continue
            owner = next((words[i + 1] for i, w in enumerate(words[:-1]) if w == "-o"), None)
            owner = owner or next((w.split("=", 1)[1] for w in words
                                   if w.startswith("--owner=")), None)
            if owner in names and any(w.rstrip("/") == directory for w in words):
                return True
    return False


@static_check(
    "ENV-LOG-FILE-PATH", needs=("env_file",),
    ok="LOG_FILE_PATH is in a directory the image creates, its user writes and a volume keeps",
)
def log_file_path(context: CheckContext) -> Iterator[Problem]:
    assert context.env_file is not None
    env = parse_env(context.env_file)
    value = env.get("LOG_FILE_PATH")
    if value is None:
        raise NotApplicable("LOG_FILE_PATH is not set: the app logs to its standard output only")
    if context.dockerfile is None and context.compose_file is None:
        raise NotApplicable("give the Dockerfile and the compose file to judge LOG_FILE_PATH")
    directory = posixpath.dirname(value.rstrip("/")) or "/"
    line = env.line_of("LOG_FILE_PATH")
    mounted = False
    if context.compose_file is not None:
        compose = load_compose(context)
        found = app_service(compose)
        if found is not None:
            mounts = [t for _s, t, _l in volume_sources(found[1])]
            mounted = any(_covers(t, directory) for t in mounts)
            if not mounted:
                yield Problem(
                    message=f"LOG_FILE_PATH={value}: no volume of service {found[0]} keeps "
                    f"{directory}, so the log is lost with the container (its volumes: "
                    f"{', '.join(mounts) or 'none'})", file=env.path, line=line,
                    expected=f"a volume mounted at {directory}", actual="not on a volume",
                )
    if context.dockerfile is not None:
        final = parse_dockerfile(context.dockerfile).final
        user = _runtime_user(final)
        if not mounted and not _created(final, directory):
            yield Problem(
                message=f"LOG_FILE_PATH={value}: the image never creates {directory} "
                f"({context.dockerfile.name} makes no such directory)", file=env.path, line=line,
                expected=f"RUN mkdir -p {directory} in the final stage", actual="missing",
            )
        if user not in ("root", "0") and not _owned_by(final, directory, user):
            yield Problem(
                message=f"LOG_FILE_PATH={value}: the runtime user {user} cannot write "
                f"{directory} (the final stage gives it no chown to {user}; what the image makes "
                "as root stays root's)",
                file=env.path, line=line,
                expected=f"RUN chown {user} {directory}", actual="owned by root",
            )
