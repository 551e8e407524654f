"""The compose file as the static checks read it: services, their images, commands,
healthchecks, published ports and volumes, with the line of each, and `${VARIABLE}` interpolated
against the .env when one is given (against their defaults otherwise), as Compose does.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conformance.checks.registry import CheckContext
from conformance.checks.static.base import ArtifactError, LineDict, line_of, load_yaml
from conformance.checks.static.env import EnvFile, load_env

#: ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}, $NAME; $$ escapes.
VARIABLE_REFERENCE = re.compile(
    r"\$\$|\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)

@dataclass(frozen=True, kw_only=True, slots=True)
class Compose:
    path: Path
    data: LineDict
    lines: list[str]
    env: EnvFile | None

    @property
    def services(self) -> LineDict:
        services = self.data.get("services")
        return services if isinstance(services, LineDict) else LineDict()

    def service_line(self, name: str, key: str | None = None) -> int | None:
        service = self.services.get(name)
        if key is not None and isinstance(service, LineDict) and key in service:
            return line_of(service, key)
        return line_of(self.services, name)

    def find_line(self, needle: str, start: int = 1) -> int | None:
        for number, text in enumerate(self.lines[start - 1 :], start=start):
            if needle in text and not text.lstrip().startswith("#"):
                return number
        return None

    def interpolate(self, value: str, *, mandatory: str | None = None) -> str:
        """The value after Compose's interpolation (unset variables become empty). The colon
        forms treat an empty value as unset, as Compose does. A mandatory variable (`:?`, `?`)
        that is unset here is one Compose refuses to start without: with `mandatory` given, it
        becomes that text with {name} filled in, since the operator sets it at deploy time."""

        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name = match.group("braced") or match.group("bare")
            current = self.env.get(name) if self.env is not None else None
            op, arg = match.group("op"), match.group("arg") or ""
            unset = current is None or (op is not None and op.startswith(":") and current == "")
            if op in (":-", "-"):
                return arg if unset else current or ""
            if op in (":+", "+"):
                return "" if unset else arg
            if op in (":?", "?") and unset and mandatory is not None:
                return mandatory.format(name=name)
            return current or ""

        return VARIABLE_REFERENCE.sub(replace, value)


def load_compose(context: CheckContext) -> Compose:
    assert context.compose_file is not None  # guaranteed by needs=("compose_file",)
    path = context.compose_file
    data = load_yaml(path)
    if not isinstance(data, LineDict):
        raise ArtifactError(path, "not a compose file: the top level is not a mapping", 1)
    return Compose(
        path=path, data=data, lines=path.read_text(encoding="utf-8").split("\n"),
        env=load_env(context),
    )


def each_service(compose: Compose) -> Iterator[tuple[str, LineDict]]:
    for name, service in compose.services.items():
        if isinstance(service, LineDict):
            yield str(name), service


def command_text(value: Any) -> str:
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return str(value) if value is not None else ""


def image_of(service: LineDict) -> str:
    return str(service.get("image") or "")


def is_redis(service: LineDict) -> bool:
    image = image_of(service).split("/")[-1]
    return image.startswith("redis") or "redis-server" in command_text(service.get("command"))


def is_postgres(service: LineDict) -> bool:
    image = image_of(service).split("/")[-1]
    return image.startswith(("postgres", "postgis")) and "exporter" not in image


def app_service(compose: Compose) -> tuple[str, LineDict] | None:
    """The TaskForge application: the service that builds the image, or one named app."""
    services = dict(each_service(compose))
    if "app" in services:
        return "app", services["app"]
    for name, service in services.items():
        if "build" in service:
            return name, service
    return None


def healthcheck_test(service: LineDict) -> str | None:
    health = service.get("healthcheck")
    if not isinstance(health, dict) or health.get("disable") is True:
        return None
    test = health.get("test")
    text = command_text(test)
    if not text or text.strip().upper() in ("NONE", "[NONE]"):
        return None
    return text


@dataclass(frozen=True, slots=True)
class Published:
    host_ip: str
    published: str
    target: int | None
    line: int | None


def published_ports(compose: Compose, service: LineDict) -> Iterator[Published]:
    ports = service.get("ports")
    if not isinstance(ports, list):
        return
    for index, entry in enumerate(ports):
        line = line_of(ports, index)
        if isinstance(entry, dict):
            target = entry.get("target")
            yield Published(
                str(entry.get("host_ip") or ""), str(entry.get("published") or ""),
                int(str(target)) if str(target).isdigit() else None, line,
            )
            continue
        text = compose.interpolate(str(entry)).split("/")[0]
        host_ip = ""
        if text.startswith("["):  # [::1]:5432:5432
            host_ip, _, text = text[1:].partition("]:")
            host_ip = f"[{host_ip}]"
        parts = text.split(":")
        if len(parts) == 3:
            host_ip, published, target_text = parts
        elif len(parts) == 2:
            published, target_text = parts
        else:
            published, target_text = "", parts[0]  # container port only: a random host port
        first = target_text.split("-")[0]
        yield Published(host_ip, published, int(first) if first.isdigit() else None, line)


def volume_sources(service: LineDict) -> Iterator[tuple[str, str, int | None]]:
    """(source, target, line) of every volume entry of a service."""
    volumes = service.get("volumes")
    if not isinstance(volumes, list):
        return
    for index, entry in enumerate(volumes):
        line = line_of(volumes, index)
        if isinstance(entry, dict):
            yield str(entry.get("source") or ""), str(entry.get("target") or ""), line
        else:
            parts = str(entry).split(":")
            if len(parts) >= 2:
                yield parts[0], parts[1], line
            else:
                yield "", parts[0], line


def bind_mounts(compose: Compose, service: LineDict) -> list[tuple[str, Path]]:
    """(container directory or file, host path) of every bind mount of a service."""
    mounts = []
    for source, target, _line in volume_sources(service):
        if source.startswith((".", "/")) and target:
            mounts.append((target.rstrip("/"), (compose.path.parent / source).resolve()))
    return mounts


def host_path(container_path: str, mounts: list[tuple[str, Path]]) -> Path | None:
    """Where a path inside the container is on the host, through the most specific bind mount."""
    for target, source in sorted(mounts, key=lambda m: -len(m[0])):
        if container_path == target:
            return source
        if container_path.startswith(target + "/"):
            return source / container_path[len(target) + 1 :]
    return None
