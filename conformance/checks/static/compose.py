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
from conformance.checks.static.variables import GUIDE_VARIABLES, SECRET_NAME

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "compose-spec.json"

#: Container ports that may be published on every interface: the public web entry point.
PUBLIC_PORTS = {80, 443}
LOOPBACK = {"127.0.0.1", "::1", "[::1]", "localhost"}

#: .env variables that configure the compose file itself, not the application.
COMPOSE_ONLY = re.compile(
    r"^(COMPOSE_|GRAFANA_|GF_|DOCKER_|TASKFORGE_IMAGE|TASKFORGE_VERSION|POSTGRES_|.*_(CPUS|MEMORY)"
    r"(_RESERVE)?$|REDIS_MAXMEMORY$|PG_MAX_CONNECTIONS$|BACKUP_)"
)


# --- schema -----------------------------------------------------------------------------------


@functools.cache
def _validator() -> jsonschema.Draft7Validator:
    # The compose-spec project's current schema (draft-07; see schemas/README): the older one
    # of docker-compose 1.29.2 rejected what Compose v2 accepts (long-form env_file, ports with
    # host_ip, depends_on restart/required, develop, start_interval, ...).
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return jsonschema.Draft7Validator(schema)


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


@static_check(
    "COMPOSE-CPU-RESERVATIONS", needs=("compose_file",),
    ok="no CPU reservation that Docker Compose would silently not apply",
)
def cpu_reservations(context: CheckContext) -> Iterator[Problem]:
    """docker/compose pkg/compose/create.go `setReservations` applies reservations.memory only
    ("Cpu reservation is a swarm option"): outside swarm, reservations.cpus reserves nothing."""
    compose = load_compose(context)
    for name, service in each_service(compose):
        deploy = service.get("deploy")
        resources = deploy.get("resources") if isinstance(deploy, dict) else None
        reservations = resources.get("reservations") if isinstance(resources, dict) else None
        if isinstance(reservations, LineDict) and reservations.get("cpus") is not None:
            yield Problem(
                message=f"service {name} reserves {compose.interpolate(str(reservations['cpus']))}"
                " CPUs, which Docker Compose does not apply outside swarm: nothing is reserved, "
                "and the sizing that counts on it is wrong",
                file=compose.path, line=line_of(reservations, "cpus"),
                expected="limits.cpus (applied) and reservations.memory only; cpu_shares for a "
                "relative weight", actual=f"reservations.cpus: {reservations['cpus']}",
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
        # A tag from a mandatory variable (${VERSION:?...}) is set per release, not :latest.
        reference = compose.interpolate(str(raw), mandatory="<{name}>")
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
    """Only what docker-compose v1 does differently at the declared version is a defect: file
    format 2.1-2.4 has depends_on conditions in v1 too (3.x dropped them), and a `version:`
    with nothing v1 would mishandle runs the same under both (v2 only warns)."""
    compose = load_compose(context)
    if "version" not in compose.data:
        return
    declared = str(compose.data["version"]).strip()
    major, _, minor = declared.partition(".")
    conditions_in_v1 = major == "2" and minor[:1].isdigit() and int(minor.split(".")[0]) >= 1
    used: list[str] = []
    for _name, service in each_service(compose):
        deploy = service.get("deploy")
        if isinstance(deploy, dict) and "resources" in deploy:
            used.append(V2_ONLY["deploy.resources"])
        depends = service.get("depends_on")
        if not conditions_in_v1 and isinstance(depends, dict) and any(
            isinstance(v, dict) and "condition" in v for v in depends.values()
        ):
            used.append(V2_ONLY["depends_on.condition"])
    features = sorted(set(used))
    if not features:
        return
    yield Problem(
        message=f"`version: {declared}` is obsolete in Compose v2 and suggests docker-compose v1 "
        f"(the guide installs it from apt), which ignores or rejects: {'; '.join(features)}",
        file=compose.path, line=line_of(compose.data, "version"),
        expected="no version: key; run `docker compose` (v2)",
        actual=f"version: {declared}",
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
            if SECRET_NAME.search(key) and value and "$" not in value and not key.endswith(
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
        yield from _secrets_on_command_line(compose, name, service)
    yield from _secret_defaults(compose)


def _secrets_on_command_line(compose: Compose, name: str, service: LineDict) -> Iterator[Problem]:
    """`${SECRET}` interpolated by Compose into a command ends up in the container's argv.

    Compose substitutes before the container is created, so the value is stored in the
    container's Config.Cmd (or Healthcheck.Test): `docker inspect` and `docker ps --no-trunc`
    print it to anyone who may talk to the engine. `$${SECRET}` (expanded by a shell inside the
    container from its environment) does not have this problem.
    """
    health = service.get("healthcheck")
    places = [("command", service.get("command")), ("entrypoint", service.get("entrypoint"))]
    if isinstance(health, dict):
        places.append(("healthcheck", health.get("test")))
    for key, value in places:
        text = command_text(value)
        for match in VARIABLE_REFERENCE.finditer(text):
            variable = match.group("braced") or match.group("bare")
            if variable is None or not SECRET_NAME.search(variable):
                continue
            start = compose.service_line(name, key) or 1
            yield Problem(
                message=f"service {name}: {key} interpolates {match.group(0)}, so the secret is "
                "part of the container's command line (shown by `docker inspect` and "
                "`docker ps --no-trunc`)",
                file=compose.path, line=compose.find_line(match.group(0), start) or start,
                expected=f"the secret from the environment inside the container (e.g. sh -c "
                f"'... \"$${variable}\"', REDISCLI_AUTH) or a config file",
                actual=match.group(0),
            )


def _secret_defaults(compose: Compose) -> Iterator[Problem]:
    """`${DB_PASSWORD:-postgres}`: a secret whose fallback value is written in the file."""
    for number, text in enumerate(compose.lines, start=1):
        code = re.sub(r"(^|\s)#.*$", "", text)
        for match in VARIABLE_REFERENCE.finditer(code):
            variable = match.group("braced")
            if (variable and SECRET_NAME.search(variable) and match.group("op") in (":-", "-")
                    and match.group("arg")):
                yield Problem(
                    message=f"{match.group(0)}: the secret has a default written in the compose "
                    f"file, used whenever {variable} is unset", file=compose.path, line=number,
                    expected=f"${{{variable}:?set {variable} in .env}}",
                    actual=f"${{{variable}{match.group('op')}<literal>}}",
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


#: The directories guide 4.2 step 2 creates (`sudo mkdir -p /opt/taskforge/{app,...}`).
GUIDE_STEP2_DIRECTORIES = tuple(
    f"/opt/taskforge/{d}" for d in ("app", "config", "data", "logs", "backups")
)


@static_check(
    "COMPOSE-BIND-MOUNT-PATHS", needs=("compose_file",),
    ok="every bind-mount source exists next to the compose file or is documented",
)
def bind_mount_paths(context: CheckContext) -> Iterator[Problem]:
    """Relative sources are judged next to the compose file; absolute ones are on the deployment
    host, not on the machine running the kit, so only their documentation is judged."""
    compose = load_compose(context)
    base = compose.path.parent
    volumes = compose.data.get("volumes")
    if isinstance(volumes, dict):
        for volume, spec in volumes.items():
            options = spec.get("driver_opts") if isinstance(spec, dict) else None
            if not isinstance(options, dict) or not options.get("device"):
                continue
            if str(options.get("type", "none")) not in ("none", "bind"):
                continue  # nfs, tmpfs...: not a host directory
            device = options["device"]
            device = compose.interpolate(str(device))
            if _documented(compose, device) or device.rstrip("/") in GUIDE_STEP2_DIRECTORIES:
                continue
            yield Problem(
                message=f"volume {volume}: device {device} must exist before `up` (Docker does "
                "not create the directory of a bind-backed local volume: \"failed to mount local "
                "volume\"); guide 4.2 step 2 creates only /opt/taskforge/{app,config,data,logs,"
                "backups} and no comment of the file says how to create it", file=compose.path,
                line=line_of(options, "device"), expected=f"mkdir -p {device} (documented)",
                actual="not created by the procedure",
            )
    for name, service in each_service(compose):
        for source, target, line in volume_sources(service):
            if not source.startswith((".", "~")):
                continue  # named volumes; absolute paths live on the deployment host
            if not re.search(r"\.(conf|ya?ml|json|toml|ini|cnf|crt|key|pem|sh|sql|lua)$", target):
                continue  # a directory: Docker creates it empty, as logs and backups start
            resolved = (base / compose.interpolate(source)).resolve()
            if resolved.exists() or _documented(compose, source):
                continue
            yield Problem(
                message=f"service {name}: bind source {source} (for the file {target}) does "
                f"not exist next to the compose file ({base}); Docker creates an empty directory "
                "in its place and the service cannot read its file", file=compose.path, line=line,
                expected=f"{source} present next to the compose file", actual="missing",
            )


# --- Redis persistence, start order ---------------------------------------------------------


def _mounts(service: LineDict) -> list[tuple[str, str, int | None]]:
    return list(volume_sources(service))


@static_check(
    "COMPOSE-REDIS-PERSISTENCE", needs=("compose_file",),
    ok="Redis persists as its command says, to a volume",
)
def redis_persistence(context: CheckContext) -> Iterator[Problem]:
    compose = load_compose(context)
    redis_services = [(n, s) for n, s in each_service(compose) if is_redis(s)]
    if not redis_services:
        raise NotApplicable("no Redis service in the compose file")
    for name, service in redis_services:
        command = compose.interpolate(command_text(service.get("command")))
        words = command.replace('"', " ").replace("'", " ").split()
        mounts = _mounts(service)
        for source, target, line in mounts:
            if target.endswith(".conf") and target not in words:
                yield Problem(
                    message=f"service {name} mounts {source} at {target}, but redis-server is "
                    "never told to load it (a config file is read only when it is the first "
                    "argument): every setting in it is ignored", file=compose.path, line=line,
                    expected=f"redis-server {target} [--option ...]",
                    actual=command or "the image's default command",
                )
        persists = "--appendonly yes" in " ".join(words) or re.search(r"--save\s+\d", command)
        dir_match = re.search(r"--dir\s+(\S+)", command)
        data_dir = dir_match.group(1).rstrip("/") if dir_match else "/data"
        kept = any(target.rstrip("/") == data_dir or data_dir.startswith(target.rstrip("/") + "/")
                   for _source, target, _line in mounts)
        if persists and not kept:
            yield Problem(
                message=f"service {name} writes its RDB/AOF files to {data_dir}, which no volume "
                "keeps: they are lost when the container is recreated",
                file=compose.path, line=compose.service_line(name, "command"),
                expected=f"a volume mounted at {data_dir}", actual="no volume",
            )


#: Images known to declare no HEALTHCHECK: the Docker official images do not add one
#: (docker-library/faq, "healthcheck"), nor does prom/prometheus.
NO_IMAGE_HEALTHCHECK = re.compile(
    r"^(docker\.io/)?(library/)?(postgres|redis|nginx|debian|alpine|ubuntu|python|busybox)(:|@|$)"
    r"|^(docker\.io/)?prom/prometheus(:|@|$)"
)


def _has_healthcheck(context: CheckContext, service: LineDict) -> bool | None:
    """True/False when known; None when only the image (not in the table) could tell."""
    if healthcheck_test(service) is not None:
        return True
    health = service.get("healthcheck")
    if isinstance(health, dict) and health.get("disable") is True:
        return False
    if "build" in service:
        return _dockerfile_has_healthcheck(context) if context.dockerfile is not None else None
    image = image_of(service)
    return False if NO_IMAGE_HEALTHCHECK.match(image) else None


@static_check(
    "COMPOSE-DEPENDS-HEALTHY", needs=("compose_file",),
    ok="every service_healthy dependency has a healthcheck",
)
def depends_on_healthy(context: CheckContext) -> Iterator[Problem]:
    compose = load_compose(context)
    services = dict(each_service(compose))
    for name, service in services.items():
        depends = service.get("depends_on")
        if not isinstance(depends, dict):
            continue
        for dependency, spec in depends.items():
            if not isinstance(spec, dict) or spec.get("condition") != "service_healthy":
                continue
            line = line_of(depends, dependency)
            target = services.get(str(dependency))
            if target is None:
                yield Problem(
                    message=f"service {name} waits for {dependency}, which is not defined",
                    file=compose.path, line=line, expected=f"a service {dependency}",
                    actual="undefined",
                )
            elif _has_healthcheck(context, target) is False:
                yield Problem(
                    message=f"service {name} waits for {dependency} to be healthy, but "
                    f"{dependency} has no healthcheck: `up` stops (\"dependency failed to start: "
                    f"container ... has no healthcheck configured\")", file=compose.path, line=line,
                    expected=f"a healthcheck on {dependency}, or condition: service_started",
                    actual="no healthcheck",
                )
