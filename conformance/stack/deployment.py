"""The rest of the reference deployment on the docker stack: NGINX, Prometheus, Alertmanager, the
PostgreSQL exporter and the backup service, as compose/docker-compose.prod.yml declares them.

The services carry the compose file's names as network aliases and mount its configuration files
(copied into the run's directory, so a test can swap one for a defective variant), so the configs
work unchanged. The container commands of Prometheus, Alertmanager and the backup service are
read from the compose file itself; what differs is said here: ports are published on 127.0.0.1
only (random ports), data lives in tmpfs or in labelled volumes removed with the run, the backup
runs on a short schedule, and the health probes run every half second.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conformance.stack.base import StackConfigError, StackError
from conformance.stack.images import (
    ALERTMANAGER,
    GRAFANA_IMAGE_ENV,
    NGINX,
    POSTGRES,
    POSTGRES_EXPORTER,
    PROMETHEUS,
    SERVER,
    ImageRole,
)

if TYPE_CHECKING:
    import docker

#: The deployment's public name: a reserved test domain (RFC 6761), reached with --resolve.
DOMAIN = "api.taskforge.test"
#: The backup service's schedule for a run (compose's default is a day).
BACKUP_INTERVAL_SECONDS = 10
COMPOSE_FILE = "docker-compose.prod.yml"
HEALTH_TIMING = {"interval": 500_000_000, "timeout": 3_000_000_000, "retries": 120,
                 "start_period": 0}


def compose_dir() -> Path:
    """compose/ of this checkout (the kit runs from its source tree)."""
    return Path(__file__).resolve().parents[2] / "compose"


@dataclass(frozen=True, kw_only=True, slots=True)
class Service:
    """One compose service as the docker stack runs it."""

    name: str  # the compose service name, also the container's network alias
    image: ImageRole | None  # None: the image named by an environment variable (Grafana)
    #: (path under compose/, path in the container), read-only, as compose's `./x:/y:ro` binds.
    mounts: tuple[tuple[str, str], ...] = ()
    #: Container ports published on 127.0.0.1 (compose publishes these, or exposes them).
    ports: tuple[int, ...] = ()
    #: Writable directories kept in memory for the run (compose gives them named volumes), with
    #: the owner the image's user needs (nobody for Prometheus and Alertmanager, 472 for Grafana).
    tmpfs: tuple[tuple[str, str], ...] = ()
    #: The compose file's `command:` is used as it is written (interpolated).
    compose_command: bool = False


#: The compose names of the three core services, their network aliases on the docker stack.
DB_SERVICE, REDIS_SERVICE, APP_SERVICE = "db", "redis", "app"
#: The app's port on the compose network (compose `expose:`, NGINX's upstream, Prometheus' target).
APP_PORT = 8000
_NOBODY = "uid=65534,gid=65534"
NGINX_SERVICE = Service(
    name="nginx", image=NGINX,
    mounts=(("nginx/nginx.conf", "/etc/nginx/nginx.conf"), ("nginx/ssl", "/etc/nginx/ssl")),
    ports=(80, 443),
)
PROMETHEUS_SERVICE = Service(
    name="prometheus", image=PROMETHEUS,
    mounts=(("prometheus/prometheus.yml", "/etc/prometheus/prometheus.yml"),
            ("prometheus/alerts.yml", "/etc/prometheus/alerts.yml")),
    ports=(9090,), tmpfs=(("/prometheus", _NOBODY),), compose_command=True,
)
ALERTMANAGER_SERVICE = Service(
    name="alertmanager", image=ALERTMANAGER,
    mounts=(("alertmanager/alertmanager.yml", "/etc/alertmanager/alertmanager.yml"),),
    ports=(9093,), tmpfs=(("/alertmanager", _NOBODY),), compose_command=True,
)
EXPORTER_SERVICE = Service(name="postgres-exporter", image=POSTGRES_EXPORTER)
BACKUP_SERVICE = Service(name="backup", image=POSTGRES, compose_command=True)
GRAFANA_SERVICE = Service(
    name="grafana", image=None,
    mounts=(("grafana/provisioning", "/etc/grafana/provisioning"),), ports=(3000,),
    tmpfs=(("/var/lib/grafana", "uid=472,gid=0"),),
)
SERVICES = (NGINX_SERVICE, PROMETHEUS_SERVICE, ALERTMANAGER_SERVICE, EXPORTER_SERVICE,
            BACKUP_SERVICE, GRAFANA_SERVICE)

# --- the operator's on-call tool ----------------------------------------------------------------
# compose/alertmanager/alertmanager.yml routes to a placeholder that resolves nowhere until the
# operator names their on-call tool (OBS-ALERTMANAGER-RECEIVER fails such a deployment, as it
# must). The docker stack stands the deployment up as an operator would have configured it: the
# one placeholder URL replaced by an alert sink's, nothing else changed (a test holds that). The
# sink is the stack's stand-in for PagerDuty or Slack, not a compose service: a few lines of the
# reference-server image's Python that record each webhook delivery and show them at /received.

#: The receiver URL compose ships, which the operator replaces.
ALERT_PLACEHOLDER_URL = "http://on-call-relay.invalid/alertmanager"
ALERT_SINK_PORT = 5001  # Alertmanager's documentation's webhook example port
ALERT_SINK_SERVICE = Service(name="alert-sink", image=SERVER, ports=(ALERT_SINK_PORT,))
ALERT_SINK_URL = f"http://{ALERT_SINK_SERVICE.name}:{ALERT_SINK_PORT}/alertmanager"
ALERT_SINK_PROGRAM = f"""
import json, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
received, lock = [], threading.Lock()
class Sink(BaseHTTPRequestHandler):
    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def do_POST(self):
        body = self.rfile.read(min(int(self.headers.get("Content-Length") or 0), 1 << 20))
        try:
            delivery = json.loads(body)
        except ValueError:
            return self.answer(400, {{"error": "not JSON"}})
        with lock:
            received.append({{"path": self.path, "body": delivery}})
            del received[:-100]
        self.answer(200, {{"ok": True}})
    def do_GET(self):
        if self.path == "/received":
            with lock:
                return self.answer(200, list(received))
        self.answer(200 if self.path == "/health" else 404, {{}})
    def log_message(self, *args):
        pass
ThreadingHTTPServer(("0.0.0.0", {ALERT_SINK_PORT}), Sink).serve_forever()
"""
ALERT_SINK_PROBE = ("import urllib.request as u; "
                    f"u.urlopen('http://127.0.0.1:{ALERT_SINK_PORT}/health', timeout=3)")


def operator_alertmanager_config(text: str, url: str = ALERT_SINK_URL) -> str:
    """compose's alertmanager.yml with its placeholder receiver URL, and only that, set to url."""
    line = re.compile(r"^(\s*-?\s*url:\s*)" + re.escape(ALERT_PLACEHOLDER_URL) + r"\s*$",
                      re.MULTILINE)
    replaced, count = line.subn(lambda m: m.group(1) + url, text)
    if count != 1:
        raise StackError(f"alertmanager/alertmanager.yml: expected the placeholder receiver URL "
                         f"{ALERT_PLACEHOLDER_URL} once, found it {count} time(s)")
    return replaced
#: The files a test may replace: compose-relative path -> a file of the caller's.
Overrides = Mapping[str, Path]


def grafana_image() -> str | None:
    return os.environ.get(GRAFANA_IMAGE_ENV) or None


# --- the compose file ------------------------------------------------------------------------

_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's interpolation: `$$` is a dollar, `${NAME}`, `${NAME:-default}`, `${NAME:?err}`."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, word = match.group(1), match.group(2), match.group(3) or ""
        value = env.get(name)
        if op in (":-", "-"):
            return value if value else word
        if op in (":?", "?") and not value:
            raise StackConfigError(f"{COMPOSE_FILE}: {name} must be set ({word})")
        return value or ""

    return _VARIABLE.sub(one, text)


def compose_services(directory: Path | None = None) -> dict[str, Any]:
    import yaml

    path = (directory or compose_dir()) / COMPOSE_FILE
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise StackError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
    services = data.get("services") if isinstance(data, dict) else None
    if not isinstance(services, dict):
        raise StackError(f"{path} declares no services")
    return services


def compose_command(service: str, env: Mapping[str, str],
                    services: Mapping[str, Any] | None = None) -> list[str]:
    declared = (services or compose_services()).get(service, {}).get("command")
    if isinstance(declared, str):
        return ["sh", "-c", interpolate(declared, env)]
    if not isinstance(declared, list):
        raise StackError(f"{COMPOSE_FILE}: service {service} declares no command")
    return [interpolate(str(part), env) for part in declared]


# --- configuration files -----------------------------------------------------------------------


def stage_files(work: Path, services: Sequence[Service], overrides: Overrides,
                tls_dir: Path) -> dict[str, Path]:
    """Copy the mounted compose files into the run's directory; return compose path -> copy.

    `nginx/ssl` is the directory of the deployment's certificate (guide 4.2 step 3), made here;
    alertmanager.yml gets the alert sink's URL for its placeholder (unless overridden).
    """
    unknown = set(overrides) - {source for s in services for source, _ in s.mounts}
    if unknown:
        raise StackConfigError(f"no service mounts {', '.join(sorted(unknown))}")
    source_dir = compose_dir()
    staged: dict[str, Path] = {}
    for service in services:
        for source, _ in service.mounts:
            target = work / "compose" / source
            target.parent.mkdir(parents=True, exist_ok=True)
            if source == "nginx/ssl":
                shutil.copytree(tls_dir, target)
            elif source in overrides:
                shutil.copyfile(overrides[source], target)
            elif source == ALERTMANAGER_SERVICE.mounts[0][0]:
                target.write_text(operator_alertmanager_config(
                    (source_dir / source).read_text(encoding="utf-8")), encoding="utf-8")
            elif (source_dir / source).is_dir():
                shutil.copytree(source_dir / source, target)
            else:
                shutil.copyfile(source_dir / source, target)
            staged[source] = target
    # Containers run as other users (nobody): everything readable, directories traversable.
    for path in [work / "compose", *(work / "compose").rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return staged


# --- containers -------------------------------------------------------------------------------


def start_container(
    client: docker.DockerClient, service: Service, *, image: str, network: str,
    labels: Mapping[str, str], staged: Mapping[str, Path], ports: Mapping[int, int],
    env: Mapping[str, str] | None = None, command: Sequence[str] | None = None,
    volumes: Mapping[str, str] | None = None, healthcheck: Sequence[str] | None = None,
    entrypoint: Sequence[str] | None = None,
) -> str:
    """Create and start one service's container on the network under its compose name."""
    binds = {str(staged[source]): {"bind": inside, "mode": "ro"}
             for source, inside in service.mounts}
    binds.update({name: {"bind": inside, "mode": "rw"} for name, inside in (volumes or {}).items()})
    host_config = client.api.create_host_config(
        binds=binds,
        port_bindings={port: ("127.0.0.1", ports.get(port)) for port in service.ports},
        tmpfs=dict(service.tmpfs),
    )
    networking = client.api.create_networking_config(
        {network: client.api.create_endpoint_config(aliases=[service.name])}
    )
    created = client.api.create_container(
        image, command=list(command) if command is not None else None,
        entrypoint=list(entrypoint) if entrypoint is not None else None,
        environment=dict(env or {}), labels=dict(labels), ports=list(service.ports),
        host_config=host_config, networking_config=networking,
        healthcheck={"test": list(healthcheck), **HEALTH_TIMING} if healthcheck else None,
    )
    container_id = str(created["Id"])
    client.api.start(container_id)
    return container_id


def published(client: docker.DockerClient, container_id: str, port: int) -> int:
    bindings = client.api.port(container_id, port)
    if not bindings:
        raise StackError(f"port {port} of container {container_id[:12]} is not published")
    return int(bindings[0]["HostPort"])
