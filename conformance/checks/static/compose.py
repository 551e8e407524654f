"""Static checks of the production compose file (guide 3.2, 6.1, 6.3).

The file is parsed with line numbers; `${VARIABLE}` references are resolved against the .env when
one is given (and against their defaults otherwise), as Compose would interpolate them.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema

from conformance.checks.registry import CheckContext
from conformance.checks.static.base import (
    LineDict,
    NotApplicable,
    Problem,
    line_of,
    static_check,
)
from conformance.checks.static.composefile import (
    VARIABLE_REFERENCE,
    Compose,
    app_service,
    command_text,
    each_service,
    healthcheck_test,
    image_of,
    is_postgres,
    is_redis,
    load_compose,
    published_ports,
    volume_sources,
)
from conformance.checks.static.variables import GUIDE_VARIABLES

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "compose-spec.json"

#: Container ports that may be published on every interface: the public web entry point.
PUBLIC_PORTS = {80, 443}
LOOPBACK = {"127.0.0.1", "::1", "[::1]", "localhost"}
_SECRET_KEY = re.compile(r"PASSWORD|PASS$|SECRET|TOKEN|_KEY$|^KEY$|DSN", re.IGNORECASE)

#: .env variables that configure the compose file itself, not the application.
COMPOSE_ONLY = re.compile(
    r"^(COMPOSE_|GRAFANA_|GF_|DOCKER_|TASKFORGE_IMAGE|TASKFORGE_VERSION|POSTGRES_|.*_(CPUS|MEMORY)"
    r"(_RESERVE)?$|REDIS_MAXMEMORY$|PG_MAX_CONNECTIONS$|BACKUP_)"
)


# --- schema -----------------------------------------------------------------------------------


@functools.cache
def _validator() -> jsonschema.Draft201909Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    # The vendored revision predates the top-level `name` and `include` keys (see schemas/README).
    schema["properties"].setdefault("name", {"type": "string"})
    schema["properties"].setdefault("include", {"type": "array"})
    return jsonschema.Draft201909Validator(schema)


def _path_line(data: Any, path: list[Any]) -> int | None:
    line = getattr(data, "line", None)
    node = data
    for key in path:
        found = line_of(node, key)
        line = found or line
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            break
    return line


@static_check(
    "COMPOSE-SCHEMA-VALID", needs=("compose_file",),
    ok="valid against the Compose specification's schema",
)
def schema_valid(context: CheckContext) -> Iterator[Problem]:
    compose = load_compose(context)
    errors = sorted(_validator().iter_errors(compose.data), key=lambda e: list(e.absolute_path))
    for error in errors[:20]:
        where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        yield Problem(
            message=f"{where}: {error.message[:200]}", file=compose.path,
            line=_path_line(compose.data, list(error.absolute_path)),
            expected="a key and value the Compose specification allows", actual=where,
        )


# --- health, restart, resources ---------------------------------------------------------------


def _dockerfile_has_healthcheck(context: CheckContext) -> bool:
    if context.dockerfile is None:
        return False
    try:
        text = context.dockerfile.read_text(encoding="utf-8")
    except OSError:
        return False
    found = re.search(r"^\s*HEALTHCHECK\s+(?!NONE\b)", text, re.MULTILINE | re.IGNORECASE)
    return found is not None


@static_check("COMPOSE-HEALTHCHECKS", needs=("compose_file",), ok="every service has a healthcheck")
def healthchecks(context: CheckContext) -> Iterator[Problem]:
    compose = load_compose(context)
    for name, service in each_service(compose):
        if healthcheck_test(service) is not None:
            continue
        if "build" in service and _dockerfile_has_healthcheck(context):
            continue  # the image's own HEALTHCHECK applies
        yield Problem(
            message=f"service {name} has no healthcheck", file=compose.path,
            line=compose.service_line(name, "healthcheck"),
            expected="healthcheck: test: [...]", actual="none",
        )


def _requires_password(service: LineDict) -> bool:
    return "--requirepass" in command_text(service.get("command"))


@static_check(
    "COMPOSE-HEALTHCHECK-AUTH", needs=("compose_file",),
    ok="healthchecks authenticate where the service requires it",
)
def healthcheck_auth(context: CheckContext) -> Iterator[Problem]:
    compose = load_compose(context)
    for name, service in each_service(compose):
        test = healthcheck_test(service)
        if test is None:
            continue
        line = compose.service_line(name, "healthcheck")
        if is_redis(service) and _requires_password(service):
            authenticates = re.search(r"(\s-a\s|--pass\b|--user\b|REDISCLI_AUTH|-u\s+redis)", test)
            checks_reply = "PONG" in test
            if not authenticates:
                yield Problem(
                    message=f"service {name}: `{test}` does not authenticate against a Redis "
                    "started with --requirepass (NOAUTH, exit status 0: always healthy)",
                    file=compose.path, line=line,
                    expected="redis-cli -a \"$$REDIS_PASSWORD\" --no-auth-warning ping | grep PONG",
                    actual=test,
                )
            elif not checks_reply:
                yield Problem(
                    message=f"service {name}: the Redis probe does not check for PONG "
                    "(redis-cli exits 0 on error replies)", file=compose.path, line=line,
                    expected="... ping | grep -q PONG", actual=test,
                )
        if is_postgres(service) and "pg_isready" in test and " -U" not in test:
            yield Problem(
                message=f"service {name}: pg_isready without -U probes as user root and logs "
                "'role \"root\" does not exist' every interval", file=compose.path, line=line,
                expected="pg_isready -U $${POSTGRES_USER} -d $${POSTGRES_DB}", actual=test,
            )


RESTART_POLICIES = ("always", "unless-stopped", "on-failure")


@static_check(
    "COMPOSE-RESTART-POLICY", needs=("compose_file",), ok="every service has a restart policy"
)
def restart_policy(context: CheckContext) -> Iterator[Problem]:
    compose = load_compose(context)
    for name, service in each_service(compose):
        policy = str(service.get("restart") or "")
        deploy = service.get("deploy")
        swarm = deploy.get("restart_policy") if isinstance(deploy, dict) else None
        if policy.split(":")[0] in RESTART_POLICIES or isinstance(swarm, dict):
            continue
        yield Problem(
            message=f"service {name} has no restart policy", file=compose.path,
            line=compose.service_line(name, "restart"), expected="restart: unless-stopped",
            actual=policy or "none (never restarted)",
        )


@static_check(
    "COMPOSE-RESOURCE-LIMITS", needs=("compose_file",),
    ok="every service has CPU and memory limits and reservations",
)
def resource_limits(context: CheckContext) -> Iterator[Problem]:
    compose = load_compose(context)
    for name, service in each_service(compose):
        deploy = service.get("deploy")
        resources = deploy.get("resources") if isinstance(deploy, dict) else None
        limits = resources.get("limits") if isinstance(resources, dict) else None
        reservations = resources.get("reservations") if isinstance(resources, dict) else None
        missing = []
        if not (isinstance(limits, dict) and limits.get("cpus")) and not service.get("cpus"):
            missing.append("limits.cpus")
        if not (isinstance(limits, dict) and limits.get("memory")) and not service.get(
            "mem_limit"
        ):
            missing.append("limits.memory")
        if not (isinstance(reservations, dict) and reservations.get("memory")) and not service.get(
            "mem_reservation"
        ):
            missing.append("reservations.memory")
        if missing:
            yield Problem(
                message=f"service {name} has no {', '.join(missing)}", file=compose.path,
                line=compose.service_line(name, "deploy"),
                expected="deploy.resources.limits {cpus, memory} and reservations {memory}",
                actual="missing " + ", ".join(missing),
            )


# --- images and ports -------------------------------------------------------------------------


def image_pin_problem(reference: str) -> str | None:
    """Why an image reference is not pinned, or None."""
    if "@sha256:" in reference:
        return None
    last = reference.rsplit("/", 1)[-1]
    if ":" not in last:
        return "has no tag (means :latest)"
    tag = last.rsplit(":", 1)[1]
    if tag in ("latest", ""):
        return "is :latest"
    return None


@static_check("COMPOSE-IMAGE-PINNED", needs=("compose_file",), ok="every image is pinned")
def images_pinned(context: CheckContext) -> Iterator[Problem]:
    compose = load_compose(context)
    for name, service in each_service(compose):
        raw = service.get("image")
        if raw is None:
            continue
        reference = compose.interpolate(str(raw))
        why = image_pin_problem(reference)
        if why is not None:
            yield Problem(
                message=f"service {name}: image {reference} {why}", file=compose.path,
                line=compose.service_line(name, "image"), expected="image:<version> or @sha256:",
                actual=reference,
            )


@static_check(
    "COMPOSE-PORTS-LOOPBACK", needs=("compose_file",),
    ok="only the web entry point (80/443) is published on all interfaces",
)
def ports_loopback(context: CheckContext) -> Iterator[Problem]:
    compose = load_compose(context)
    for name, service in each_service(compose):
        for port in published_ports(compose, service):
            if port.host_ip in LOOPBACK or port.target in PUBLIC_PORTS:
                continue
            shown = f"{port.host_ip or '0.0.0.0'}:{port.published or '<random>'}:{port.target}"
            yield Problem(
                message=f"service {name} publishes container port {port.target} on all "
                "interfaces", file=compose.path, line=port.line,
                expected=f"no ports: entry, or \"127.0.0.1:{port.published or port.target}:"
                f"{port.target}\"", actual=shown,
            )


# --- dangerous mounts and flags ---------------------------------------------------------------


@static_check(
    "COMPOSE-NO-DOCKER-SOCKET", needs=("compose_file",), ok="no service mounts the Docker socket"
)
def no_docker_socket(context: CheckContext) -> Iterator[Problem]:
    compose = load_compose(context)
    for name, service in each_service(compose):
        for source, _target, line in volume_sources(service):
            if source.endswith("docker.sock"):
                yield Problem(
                    message=f"service {name} mounts the Docker socket ({source}): root on the host",
                    file=compose.path, line=line, expected="no docker.sock mount", actual=source,
                )


DANGEROUS_FLAGS = ("--web.enable-admin-api", "--web.enable-lifecycle")


@static_check(
    "COMPOSE-PROMETHEUS-ADMIN-API", needs=("compose_file",),
    ok="Prometheus runs without admin and lifecycle APIs",
)
def prometheus_admin_api(context: CheckContext) -> Iterator[Problem]:
    compose = load_compose(context)
    for name, service in each_service(compose):
        text = command_text(service.get("command")) + " " + command_text(service.get("entrypoint"))
        for flag in DANGEROUS_FLAGS:
            if flag in text:
                start = compose.service_line(name) or 1
                yield Problem(
                    message=f"service {name} enables {flag}", file=compose.path,
                    line=compose.find_line(flag, start) or compose.service_line(name, "command"),
                    expected=f"no {flag}", actual=flag,
                )


# --- variables and the .env -------------------------------------------------------------------


@static_check(
    "COMPOSE-VARIABLES-DEFINED", needs=("compose_file",),
    ok="every variable has a value, a default or is mandatory (:?)",
)
def variables_defined(context: CheckContext) -> Iterator[Problem]:
    compose = load_compose(context)
    reported: set[str] = set()
    for number, text in enumerate(compose.lines, start=1):
        if text.lstrip().startswith("#"):
            continue
        code = re.sub(r"\s#.*$", "", text)  # a trailing YAML comment is no reference
        for match in VARIABLE_REFERENCE.finditer(code):
            name = match.group("braced") or match.group("bare")
            if name is None or name in reported:
                continue
            op = match.group("op") or ""
            if op in (":-", "-", ":?", "?", ":+", "+"):
                continue  # a default, or Compose refuses to start without it
            if compose.env is not None and compose.env.get(name) is not None:
                continue
            reported.add(name)
            yield Problem(
                message=f"${{{name}}} has no default and "
                + ("is not set in the .env" if compose.env is not None else "no .env was given")
                + ": Compose substitutes an empty string", file=compose.path, line=number,
                expected=f"{name} in the .env, ${{{name}:-default}} or ${{{name}:?message}}",
                actual=match.group(0),
            )


@static_check(
    "COMPOSE-APP-ENV-COMPLETE", needs=("compose_file",),
    ok="every setting reaches the app service",
)
def app_env_complete(context: CheckContext) -> Iterator[Problem]:
    compose = load_compose(context)
    found = app_service(compose)
    if found is None:
        raise NotApplicable("no app service (one named app, or one with build:)")
    name, service = found
    if service.get("env_file"):
        return  # the whole file reaches the app
    environment = service.get("environment")
    if isinstance(environment, dict):
        passed = set(environment)
    elif isinstance(environment, list):
        passed = {str(item).split("=", 1)[0].strip() for item in environment}
    else:
        passed = set()
    wanted = (
        [n for n in compose.env.variables if not COMPOSE_ONLY.match(n)]
        if compose.env is not None
        else list(GUIDE_VARIABLES)
    )
    for variable in wanted:
        if variable not in passed:
            yield Problem(
                message=f"{variable} is not passed to service {name}: the app runs with its "
                "default", file=compose.path, line=compose.service_line(name, "environment"),
                expected=f"{variable} in environment: (or env_file: .env)", actual="absent",
            )


V2_ONLY = {
    "deploy.resources": "resource limits (ignored by docker-compose v1 outside swarm)",
    "depends_on.condition": "depends_on conditions",
}


@static_check(
    "COMPOSE-V2-FEATURES", needs=("compose_file",),
    ok="no legacy `version:` next to Compose v2 features",
)
def compose_v2_features(context: CheckContext) -> Iterator[Problem]:
    compose = load_compose(context)
    if "version" not in compose.data:
        return
    used: list[str] = []
    for _name, service in each_service(compose):
        deploy = service.get("deploy")
        if isinstance(deploy, dict) and "resources" in deploy:
            used.append(V2_ONLY["deploy.resources"])
        depends = service.get("depends_on")
        if isinstance(depends, dict) and any(
            isinstance(v, dict) and "condition" in v for v in depends.values()
        ):
            used.append(V2_ONLY["depends_on.condition"])
    features = sorted(set(used))
    yield Problem(
        message=f"`version: {compose.data['version']}` is obsolete in Compose v2 and "
        "suggests docker-compose v1 (the guide installs it from apt)"
        + (f", which ignores or rejects: {'; '.join(features)}" if features else ""),
        file=compose.path, line=line_of(compose.data, "version"),
        expected="no version: key; run `docker compose` (v2)",
        actual=f"version: {compose.data['version']}",
    )


@static_check(
    "COMPOSE-NO-INLINE-SECRETS", needs=("compose_file",), ok="no literal secret in the file"
)
def no_inline_secrets(context: CheckContext) -> Iterator[Problem]:
    compose = load_compose(context)
    for name, service in each_service(compose):
        environment = service.get("environment")
        items: list[tuple[str, str, int | None]] = []
        if isinstance(environment, dict):
            items = [(str(k), str(v) if v is not None else "", line_of(environment, k))
                     for k, v in environment.items()]
        elif isinstance(environment, list):
            for index, entry in enumerate(environment):
                key, _, value = str(entry).partition("=")
                items.append((key.strip(), value, line_of(environment, index)))
        for key, value, line in items:
            if _SECRET_KEY.search(key) and value and "$" not in value and not key.endswith(
                "_FILE"
            ):
                yield Problem(
                    message=f"service {name}: {key} is written into the compose file",
                    file=compose.path, line=line, expected=f"{key}=${{{key}}} from the .env",
                    actual=f"{key}=<literal>",
                )
        command = command_text(service.get("command"))
        match = re.search(r"--requirepass\s+(\S+)", command)
        if match and "$" not in match.group(1):
            yield Problem(
                message=f"service {name}: the Redis password is written into the command",
                file=compose.path, line=compose.service_line(name, "command"),
                expected="--requirepass ${REDIS_PASSWORD}", actual="--requirepass <literal>",
            )


# --- Redis, mounts, backup --------------------------------------------------------------------


@static_check(
    "COMPOSE-REDIS-EVICTION", needs=("compose_file",), ok="Redis never evicts keys (noeviction)"
)
def redis_eviction(context: CheckContext) -> Iterator[Problem]:
    compose = load_compose(context)
    redis_services = [(n, s) for n, s in each_service(compose) if is_redis(s)]
    if not redis_services:
        raise NotApplicable("no Redis service in the compose file")
    for name, service in redis_services:
        command = command_text(service.get("command"))
        match = re.search(r"--maxmemory-policy\s+(\S+)", command)
        if match and compose.interpolate(match.group(1)) != "noeviction":
            start = compose.service_line(name) or 1
            yield Problem(
                message=f"service {name} evicts keys under memory pressure "
                f"({match.group(1)}): queue and rate-limit keys vanish",
                file=compose.path, line=compose.find_line("--maxmemory-policy", start),
                expected="--maxmemory-policy noeviction", actual=match.group(1),
            )


def _documented(compose: Compose, path: str) -> bool:
    """A path named in a comment of the compose file (e.g. `# mkdir -p /opt/...`) is documented."""
    parent = path.rstrip("/").rsplit("/", 1)[0]
    for text in compose.lines:
        comment = text.partition("#")[2] if "#" in text else ""
        if path in comment or (parent and f"{parent}/{{" in comment):
            return True
    return False


@static_check(
    "COMPOSE-BIND-MOUNT-PATHS", needs=("compose_file",),
    ok="every bind-mount source exists or is documented",
)
def bind_mount_paths(context: CheckContext) -> Iterator[Problem]:
    compose = load_compose(context)
    base = compose.path.parent
    volumes = compose.data.get("volumes")
    if isinstance(volumes, dict):
        for volume, spec in volumes.items():
            options = spec.get("driver_opts") if isinstance(spec, dict) else None
            device = options.get("device") if isinstance(options, dict) else None
            if not device:
                continue
            device = compose.interpolate(str(device))
            if Path(device).is_dir() or _documented(compose, device):
                continue
            yield Problem(
                message=f"volume {volume}: device {device} does not exist on this host and no "
                "comment of the file says how to create it", file=compose.path,
                line=line_of(options, "device"), expected=f"mkdir -p {device} (documented)",
                actual="missing",
            )
    for name, service in each_service(compose):
        for source, target, line in volume_sources(service):
            if not source.startswith((".", "/", "~")) or source.endswith("docker.sock"):
                continue  # named volumes; the socket has its own item
            resolved = (base / compose.interpolate(source)).resolve()
            if source.startswith("/"):
                resolved = Path(compose.interpolate(source))
            if resolved.exists() or _documented(compose, source):
                continue
            yield Problem(
                message=f"service {name}: bind source {source} (for {target}) does not exist; "
                "Docker creates an empty directory in its place", file=compose.path, line=line,
                expected=f"{source} present next to the compose file", actual="missing",
            )


@static_check(
    "COMPOSE-BACKUP-SERVICE", needs=("compose_file",), ok="a scheduled backup service is defined"
)
def backup_service(context: CheckContext) -> Iterator[Problem]:
    compose = load_compose(context)
    backups = [(n, s) for n, s in each_service(compose) if "backup" in (n + image_of(s)).lower()]
    if not backups:
        yield Problem(
            message="no backup service: nothing backs the database up automatically",
            file=compose.path, line=line_of(compose.data, "services"),
            expected="a service that dumps the database on a schedule", actual="none",
        )
        return
    for name, service in backups:
        text = json.dumps(service.get("environment")) + command_text(service.get("command"))
        text += command_text(service.get("entrypoint"))
        if not re.search(r"SCHEDULE|CRON|FREQ|INTERVAL|@daily|@hourly|sleep", text, re.I):
            yield Problem(
                message=f"service {name} has no schedule", file=compose.path,
                line=compose.service_line(name), expected="a backup schedule", actual="none",
            )
