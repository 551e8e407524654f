"""Static sizing checks (guide 6.4): database connections and HTTP capacity against their limits.

Values come from the .env when given, else from the defaults the compose file writes
(`${WORKERS:-4}`), else from PostgreSQL's and the guide's defaults.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from conformance.checks.registry import CheckContext
from conformance.checks.static.base import NotApplicable, Problem, static_check
from conformance.checks.static.composefile import (
    Compose,
    app_service,
    command_text,
    each_service,
    is_postgres,
    load_compose,
)
from conformance.checks.static.env import load_env
from conformance.checks.static.nginx import parse_nginx

POSTGRES_DEFAULT_MAX_CONNECTIONS = 100
SUPERUSER_RESERVED = 3  # PostgreSQL's superuser_reserved_connections default
RESERVE = 10  # backups, migrations, exporters, an administrator's psql
GUIDE_DEFAULTS = {"WORKERS": 4, "POOL_SIZE": 20, "MAX_CONNECTIONS": 100}


def _setting(
    context: CheckContext, compose: Compose | None, name: str
) -> tuple[int, Path | None, int | None, str]:
    """(value, file, line, where it came from) of an integer application setting."""
    env = load_env(context)
    if env is not None and env.get(name) is not None and str(env.get(name)).isdigit():
        return int(str(env.get(name))), env.path, env.line_of(name), ".env"
    if compose is not None:
        found = app_service(compose)
        if found is not None:
            for number, text in enumerate(compose.lines, start=1):
                if re.search(rf"\b{name}\b\s*[=:]", text) and not text.lstrip().startswith("#"):
                    value = compose.interpolate(text.split("=", 1)[-1] if "=" in text
                                                else text.split(":", 1)[1]).strip().strip("'\"")
                    if value.isdigit():
                        return int(value), compose.path, number, "compose file"
    return GUIDE_DEFAULTS[name], None, None, "guide default"


def _max_connections(compose: Compose | None) -> tuple[int, int | None, str]:
    if compose is not None:
        for name, service in each_service(compose):
            if not is_postgres(service):
                continue
            command = compose.interpolate(command_text(service.get("command")))
            match = re.search(r"max_connections\s*=\s*(\d+)", command)
            if match:
                return int(match.group(1)), compose.service_line(name, "command"), "compose file"
    return POSTGRES_DEFAULT_MAX_CONNECTIONS, None, "PostgreSQL default"


def _compose(context: CheckContext) -> Compose | None:
    return load_compose(context) if context.compose_file is not None else None


@static_check(
    "SIZING-DB-CONNECTIONS", ok="WORKERS x POOL_SIZE + reserve fits max_connections",
)
def db_connections(context: CheckContext) -> Iterator[Problem]:
    if context.env_file is None and context.compose_file is None:
        raise NotApplicable("needs an env file or a compose file")
    compose = _compose(context)
    workers, w_file, w_line, w_from = _setting(context, compose, "WORKERS")
    pool, p_file, p_line, p_from = _setting(context, compose, "POOL_SIZE")
    limit, limit_line, limit_from = _max_connections(compose)
    usable = limit - SUPERUSER_RESERVED
    needed = workers * pool + RESERVE
    if needed > usable:
        yield Problem(
            message=f"WORKERS ({workers}, {w_from}) x POOL_SIZE ({pool}, {p_from}) + {RESERVE} "
            f"reserve = {needed} connections, but max_connections is {limit} ({limit_from}; "
            f"{usable} usable by the application)",
            file=p_file or w_file or (compose.path if compose else None),
            line=p_line or w_line or limit_line,
            expected=f"<= {usable}", actual=str(needed),
        )


def _cpu_limit(compose: Compose | None) -> float | None:
    if compose is None:
        return None
    found = app_service(compose)
    if found is None:
        return None
    _name, service = found
    deploy = service.get("deploy")
    resources = deploy.get("resources") if isinstance(deploy, dict) else None
    limits = resources.get("limits") if isinstance(resources, dict) else None
    raw = limits.get("cpus") if isinstance(limits, dict) else service.get("cpus")
    if raw is None:
        return None
    try:
        return float(compose.interpolate(str(raw)))
    except ValueError:
        return None


@static_check(
    "SIZING-HTTP-CONNECTIONS",
    ok="workers fit the CPU limit and NGINX carries the app's connections",
)
def http_connections(context: CheckContext) -> Iterator[Problem]:
    if context.env_file is None and context.compose_file is None:
        raise NotApplicable("needs an env file or a compose file")
    compose = _compose(context)
    workers, w_file, w_line, w_from = _setting(context, compose, "WORKERS")
    cpus = _cpu_limit(compose)
    too_many = cpus is not None and workers > 2 * cpus + 1
    if cpus is not None and too_many:
        yield Problem(
            message=f"WORKERS={workers} ({w_from}) processes on a {cpus:g}-CPU limit: more "
            "workers than 2 x CPUs + 1 only add contention", file=w_file, line=w_line,
            expected=f"<= {int(2 * cpus + 1)}", actual=str(workers),
        )
    if context.nginx_conf is None:
        if not too_many:  # half judged: saying "passed" would vouch for NGINX unseen
            raise NotApplicable(f"WORKERS={workers} fits the CPU limit; give the nginx "
                                "configuration (--nginx-conf) to judge NGINX's capacity")
        return
    root = parse_nginx(context.nginx_conf)
    processes_directive = root.direct("worker_processes")
    raw = processes_directive[0].args[0] if processes_directive else "1"
    # "auto" means the host's cores, unknown here: count one, the worst case.
    processes = int(raw) if raw.isdigit() else 1
    events = root.direct("events")
    connections_directive = events[0].direct("worker_connections") if events else []
    connections = int(connections_directive[0].args[0]) if connections_directive else 512
    max_connections, _m_file, _m_line, m_from = _setting(context, compose, "MAX_CONNECTIONS")
    capacity = processes * connections // 2  # a proxied request holds two connections
    demand = workers * max_connections
    if capacity < demand:
        yield Problem(
            message=f"NGINX carries {processes} x {connections} / 2 = {capacity} proxied "
            f"connections, below WORKERS x MAX_CONNECTIONS = {demand} ({m_from})",
            file=context.nginx_conf,
            line=connections_directive[0].line if connections_directive else 1,
            expected=f">= {demand} proxied connections", actual=str(capacity),
        )
