"""The docker provider: PostgreSQL, Redis and the reference server image on one network.

testcontainers starts the containers; every port is published on 127.0.0.1 only; the server
speaks TLS with a throwaway CA. Every container and network carries this run's id as a label and
is removed on exit, on error and on Ctrl-C/SIGTERM. Where no reaper (Ryuk) image exists the reaper
is disabled and, instead, each run first removes what runs of dead processes left behind.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conformance.stack.base import StackConfigError, StackError, Target, say, signals_deferred
from conformance.stack.deployment import (
    ALERT_SINK_PORT,
    ALERT_SINK_PROBE,
    ALERT_SINK_PROGRAM,
    ALERT_SINK_SERVICE,
    ALERTMANAGER_SERVICE,
    APP_PORT,
    APP_SERVICE,
    BACKUP_INTERVAL_SECONDS,
    BACKUP_SERVICE,
    DB_SERVICE,
    DOMAIN,
    EXPORTER_SERVICE,
    GRAFANA_SERVICE,
    NGINX_SERVICE,
    PROMETHEUS_SERVICE,
    REDIS_SERVICE,
    SERVICES,
    Overrides,
    compose_command,
    compose_services,
    grafana_image,
    interpolate,
    published,
    stage_files,
    start_container,
)
from conformance.stack.images import (
    DEPLOYMENT_IMAGES,
    GRAFANA_IMAGE_ENV,
    NGINX,
    POSTGRES,
    POSTGRES_EXPORTER,
    REDIS,
    SERVER,
    STACK_IMAGES,
    stale_server_image,
)
from conformance.stack.reference import (
    READY_TIMEOUT_SECONDS,
    ServerEnv,
    generated_secrets,
    register_admin,
    wait_ready,
    with_overrides,
)
from conformance.stack.tls import TlsFiles, issue

if TYPE_CHECKING:
    import docker
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.network import Network

LABEL_RUN = "org.taskforge.stack.run-id"
LABEL_PID = "org.taskforge.stack.pid"
LABEL_HOST = "org.taskforge.stack.host"
ENGINE_TIMEOUT_SECONDS = 5
API_TIMEOUT_SECONDS = 120
HEALTH_TIMEOUT_SECONDS = 90.0
#: How long the server gets to stop gracefully before the engine kills it.
STOP_GRACE_SECONDS = 10
VOLUME_REMOVE_SECONDS = 15.0
DATABASE = "taskforge"
DB_USER = "taskforge"
SERVER_PORT = APP_PORT
TLS_DIR_IN_CONTAINER = "/run/taskforge/tls"
LOG_DIR_IN_CONTAINER = "/app/logs"
#: Docker health probes every half second: a stack is used seconds after it starts, not minutes.
_HEALTH_TIMING = {"interval": 500_000_000, "timeout": 3_000_000_000, "retries": 120,
                  "start_period": 0}
_SERVER_PROBE = (
    "import os,ssl,urllib.request as u; s='https' if os.environ.get('TLS_CERT_FILE') else 'http';"
    " u.urlopen(s+'://127.0.0.1:'+os.environ.get('APPLICATION_PORT','8000')+'/health',"
    " timeout=3, context=ssl._create_unverified_context())"
)


def engine(timeout: int = ENGINE_TIMEOUT_SECONDS) -> docker.DockerClient:
    """A client of the engine DOCKER_HOST names (or the default socket) that answered a ping."""
    import docker

    client = docker.from_env(timeout=timeout)
    try:
        client.ping()
    except Exception:
        client.close()
        raise
    return client


def image_available(client: docker.DockerClient, name: str, *, check_registry: bool) -> str | None:
    """None when the image is local (or, if asked, pullable); else why not, in a few words."""
    import docker.errors

    try:
        client.images.get(name)
        return None
    except docker.errors.ImageNotFound:
        pass
    if not check_registry:
        return f"image {name} is not present locally"
    try:
        client.api.inspect_distribution(name)
        return None
    except Exception:
        # The engine's answer embeds the registry's error page; the point fits in a few words.
        return f"image {name} is neither present locally nor pullable"


def docker_usable() -> tuple[bool, str]:
    """Whether the docker provider can run here, and why (one line)."""
    try:
        client = engine()
    except Exception as exc:
        detail = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        return False, f"no Docker engine answers ({detail})"
    with contextlib.closing(client):
        version = client.version().get("Version", "?")
        for role in STACK_IMAGES:
            missing = image_available(client, role.name, check_registry=True)
            if missing is not None:
                return False, f"Docker engine {version} answers, but {missing}"
        names = ", ".join(role.name for role in STACK_IMAGES)
        return True, f"Docker engine {version} answers and the images are there ({names})"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_volume(volume: docker.models.volumes.Volume) -> None:
    """Remove a volume, waiting (bounded) while the engine still counts it in use.

    Never with force: forcing purges the engine's record while the local driver keeps the
    directory, and the volume then reappears in listings, unlabelled, for no run to remove.
    """
    import docker.errors

    deadline = time.monotonic() + VOLUME_REMOVE_SECONDS
    while True:
        try:
            volume.remove()
            return
        except docker.errors.NotFound:
            return
        except docker.errors.APIError:
            if time.monotonic() >= deadline:
                return  # reported by the caller's final count
            time.sleep(0.2)


def remove_run(client: docker.DockerClient, run_id: str) -> int:
    """Remove every container, network and volume labelled with run_id; return the containers."""
    import docker.errors

    label = f"{LABEL_RUN}={run_id}"
    containers = _listed(client, {"label": label})
    for container in containers:
        # Gone or going already: another run reaping the same orphan got there first.
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            client.api.remove_container(container["Id"], force=True, v=True)
    for network in client.networks.list(filters={"label": label}):
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            network.remove()
    for volume in client.volumes.list(filters={"label": label}):
        _remove_volume(volume)
    return len(containers)


def _listed(client: docker.DockerClient, filters: dict[str, str]) -> list[dict[str, Any]]:
    """The engine's containers matching filters, as its one listing call answers them.

    Never one inspect per container (docker-py's non-sparse list): another run on the same engine
    may remove a listed container before it is inspected, and the 404 would break this run.
    """
    return list(client.api.containers(all=True, filters=filters))


def reap_orphans(client: docker.DockerClient) -> list[str]:
    """Remove what runs of dead processes on this host left behind (killed with SIGKILL).

    A run is an orphan only when its labels name this host and a process id that no longer lives;
    a live run's containers, networks and volumes are never touched.
    """
    host = socket.gethostname()
    orphans: set[str] = set()
    for container in _listed(client, {"label": LABEL_RUN}):
        labels = container.get("Labels") or {}
        pid = labels.get(LABEL_PID, "")
        if labels.get(LABEL_HOST) == host and pid.isdigit() and not _pid_alive(int(pid)):
            orphans.add(labels[LABEL_RUN])
    for network in client.networks.list(filters={"label": LABEL_RUN}):
        labels = network.attrs.get("Labels") or {}
        pid = labels.get(LABEL_PID, "")
        if labels.get(LABEL_HOST) == host and pid.isdigit() and not _pid_alive(int(pid)):
            orphans.add(labels[LABEL_RUN])
    for run_id in sorted(orphans):
        remove_run(client, run_id)
    return sorted(orphans)


def _configure_testcontainers(client: docker.DockerClient) -> None:
    import docker.errors
    from testcontainers.core.config import testcontainers_config as config

    # Probe every quarter second, up to a minute: the default (1 s) costs seconds per container.
    config.sleep_time = 0.25
    config.max_tries = 240
    if "TESTCONTAINERS_CONNECTION_MODE" not in os.environ:
        from testcontainers.core.config import ConnectionMode

        # Inside a container (/.dockerenv) testcontainers would dial the bridge gateway, but our
        # ports are published on 127.0.0.1 only: the engine shares this host's loopback.
        config.connection_mode_override = ConnectionMode.docker_host
    if "TESTCONTAINERS_RYUK_DISABLED" in os.environ:
        return  # the user decided
    try:
        client.images.get(config.ryuk_image)
    except docker.errors.ImageNotFound:
        # No reaper image and no registry to pull it from: our own labels and finally blocks
        # (and reap_orphans for SIGKILLed runs) do its work.
        config.ryuk_disabled = True
        say(f"docker: no {config.ryuk_image} image here; the reaper is disabled, "
            "this run removes its own containers")


def _ensure_image(client: docker.DockerClient, name: str) -> None:
    missing = image_available(client, name, check_registry=False)
    if missing is None:
        return
    try:
        client.images.pull(name)
    except Exception as exc:
        detail = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise StackError(
            f"{missing} and could not be pulled ({detail}); build local images with "
            f"`nox -s images` and export TASKFORGE_*_IMAGE"
        ) from None


def _loopback_port(container: DockerContainer, port: int) -> None:
    # testcontainers publishes on every interface by default; the kit's rule is loopback only.
    container.ports[str(port)] = ("127.0.0.1", None)  # type: ignore[assignment]


def _published(client: docker.DockerClient, container: DockerContainer, port: int) -> int:
    bindings = client.api.port(container.get_wrapped_container().id, port)
    if not bindings:
        raise StackError(f"port {port} of {container.image} is not published")
    return int(bindings[0]["HostPort"])


def _health(client: docker.DockerClient, container_id: str) -> tuple[str, str]:
    """(container status, health status) as the engine reports them."""
    state = client.api.inspect_container(container_id)["State"]
    return str(state.get("Status")), str((state.get("Health") or {}).get("Status", "none"))


def wait_healthy(client: docker.DockerClient,
                 containers: Mapping[str, DockerContainer | str],
                 timeout: float = HEALTH_TIMEOUT_SECONDS) -> None:
    """Wait until the engine reports every container (or container id) healthy; one that exits
    ends the wait with its last log line."""
    deadline = time.monotonic() + timeout
    pending = {role: c if isinstance(c, str) else str(c.get_wrapped_container().id)
               for role, c in containers.items()}
    while pending:
        for role, container_id in list(pending.items()):
            status, health = _health(client, container_id)
            if status in ("exited", "dead"):
                logs = client.api.logs(container_id, tail=5)
                tail = logs.decode(errors="replace").strip().splitlines()
                raise StackError(f"the {role} container exited: "
                                 f"{tail[-1][:300] if tail else 'no output'}")
            if health == "healthy":
                say(f"docker: {role} healthy")
                del pending[role]
        if not pending:
            return
        if time.monotonic() >= deadline:
            raise StackError(f"not healthy within {timeout:.0f}s: {', '.join(sorted(pending))}")
        time.sleep(0.1)


def _start_postgres(network: Network, labels: dict[str, str], password: str,
                    volume: str, backups: str | None = None) -> DockerContainer:
    from testcontainers.community.postgres import PostgresContainer

    container = PostgresContainer(POSTGRES.name, username=DB_USER, password=password,
                                  dbname=DATABASE, driver=None)
    _loopback_port(container, 5432)
    container.with_network(network).with_network_aliases(DB_SERVICE)
    # A named, labelled volume, as the guide's compose file gives the database (durable writes,
    # not RAM), removed with the run; an anonymous one could not be found by its label.
    container.with_volume_mapping(volume, "/var/lib/postgresql/data", "rw")
    if backups is not None:  # as compose mounts the backups volume into db (guide 7, 10.2)
        container.with_volume_mapping(backups, "/backups", "rw")
    container.with_kwargs(labels=labels, healthcheck={
        "test": ["CMD-SHELL", f"pg_isready -h 127.0.0.1 -U {DB_USER} -d {DATABASE}"],
        **_HEALTH_TIMING,
    })
    return container.start()


def _start_redis(network: Network, labels: dict[str, str], password: str) -> DockerContainer:
    from testcontainers.community.redis import RedisContainer

    container = RedisContainer(REDIS.name, password=password)
    _loopback_port(container, 6379)
    container.with_network(network).with_network_aliases(REDIS_SERVICE)
    container.with_tmpfs_mount("/data")
    container.with_env("REDISCLI_AUTH", password)  # lets the health probe's redis-cli log in
    container.with_kwargs(labels=labels, healthcheck={
        "test": ["CMD-SHELL", "redis-cli ping | grep -q PONG"], **_HEALTH_TIMING,
    })
    return container.start()


@contextlib.contextmanager
def docker_stack(
    *,
    server_env: ServerEnv | None = None,
    ready_timeout: float = READY_TIMEOUT_SECONDS,
    create_admin: bool = True,
    deployment: bool = False,
    compose_overrides: Overrides | None = None,
    backup_command: Sequence[str] | None = None,
    backup_interval: int = BACKUP_INTERVAL_SECONDS,
    **unknown: object,
) -> Iterator[Target]:
    """The containers, healthy, removed on exit.

    Without `deployment`: PostgreSQL, Redis and the server over its own TLS on a loopback port.
    With it, the whole reference deployment of compose/docker-compose.prod.yml: the server speaks
    plain HTTP on the network behind NGINX, which terminates TLS for DOMAIN on a loopback port
    (the target's base URL, reached with --resolve), beside Prometheus, Alertmanager, the
    PostgreSQL exporter and the backup service. `compose_overrides` swaps mounted compose files
    (compose-relative path -> file) and `backup_command` the backup service's command: defects
    on purpose, for tests.
    """
    if unknown:
        raise StackConfigError(f"the docker stack takes no option {', '.join(sorted(unknown))}")
    if not deployment and (compose_overrides or backup_command):
        raise StackConfigError("compose_overrides and backup_command need deployment=True")
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.network import Network

    from reference_server.devservices import free_port

    try:
        client = engine(API_TIMEOUT_SECONDS)
    except Exception as exc:
        raise StackError(f"no Docker engine answers: {str(exc).splitlines()[0][:200]}") from None
    run_id = uuid.uuid4().hex[:12]
    labels = {LABEL_RUN: run_id, LABEL_PID: str(os.getpid()), LABEL_HOST: socket.gethostname()}
    work = Path(tempfile.mkdtemp(prefix=f"taskforge-docker-{run_id}-"))
    executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="taskforge-stack")
    started_containers: list[DockerContainer] = []
    network: Network | None = None
    try:
        started = time.monotonic()
        reaped = reap_orphans(client)
        if reaped:
            say(f"docker: removed what {len(reaped)} killed run(s) left behind")
        _configure_testcontainers(client)
        roles = (*STACK_IMAGES, *(DEPLOYMENT_IMAGES if deployment else ()))
        for role in roles:
            _ensure_image(client, role.name)
        stale = stale_server_image()
        if stale:
            say(f"docker: warning: {stale}")
        work.chmod(0o755)
        tls = issue(work / "tls", extra_names=(DOMAIN,) if deployment else ())
        logs = work / "logs"
        logs.mkdir()
        logs.chmod(0o777)  # the server's non-root user writes its log file here
        network = Network(docker_network_kw={"labels": labels}).create()
        volume = client.volumes.create(f"taskforge-pgdata-{run_id}", labels=labels).name
        backups = (client.volumes.create(f"taskforge-backups-{run_id}", labels=labels).name
                   if deployment else None)
        pg_password, redis_password = secrets.token_hex(16), secrets.token_hex(16)
        if deployment:
            staged = stage_files(work, SERVICES, compose_overrides or {}, _nginx_ssl(work, tls))
        futures: dict[str, Future[DockerContainer]] = {
            "postgres": executor.submit(_start_postgres, network, labels, pg_password, volume,
                                        backups),
            "redis": executor.submit(_start_redis, network, labels, redis_password),
        }
        pg, redis = futures["postgres"].result(), futures["redis"].result()
        started_containers += [pg, redis]

        port = free_port()
        if deployment:
            base_url = f"https://{DOMAIN}:{port}"
            resolve: tuple[str, ...] = (f"{DOMAIN}:{port}:127.0.0.1",)
            behind_proxy = {"TRUSTED_PROXIES": _subnet(client, network.name)}
        else:
            base_url, resolve, behind_proxy = f"https://127.0.0.1:{port}", (), {}
        settings = with_overrides({
            "DATABASE_URL": f"postgresql://{DB_USER}:{pg_password}@db:5432/{DATABASE}",
            "REDIS_URL": f"redis://:{redis_password}@redis:6379/0",
            "APP_ENVIRONMENT": "production",
            "APPLICATION_HOST": "0.0.0.0",
            "APPLICATION_PORT": str(SERVER_PORT),
            "BASE_URL": base_url,
            **({} if deployment else {
                "TLS_CERT_FILE": f"{TLS_DIR_IN_CONTAINER}/{tls.cert_file.name}",
                "TLS_KEY_FILE": f"{TLS_DIR_IN_CONTAINER}/{tls.key_file.name}",
            }),
            "LOG_FORMAT": "json",
            "LOG_FILE_PATH": f"{LOG_DIR_IN_CONTAINER}/server.log",
            "CORS_ALLOWED_ORIGINS": base_url,
            "WORKERS": "1",
            **behind_proxy,
            **generated_secrets(),
        }, server_env)
        server = DockerContainer(SERVER.name)
        # Behind NGINX the app is published on loopback too: the address Prometheus scrapes
        # (--metrics-url), which the kit reaches from this host.
        server.ports[str(SERVER_PORT)] = (  # type: ignore[assignment]
            "127.0.0.1", free_port() if deployment else port)
        server.with_network(network).with_network_aliases(APP_SERVICE).with_envs(**settings)
        server.with_volume_mapping(tls.ca_bundle.parent, TLS_DIR_IN_CONTAINER, "ro")
        server.with_volume_mapping(logs, LOG_DIR_IN_CONTAINER, "rw")
        server.with_kwargs(labels=labels, stop_signal="SIGTERM", healthcheck={
            "test": ["CMD", "python", "-c", _SERVER_PROBE], **_HEALTH_TIMING,
        })
        server.start()
        started_containers.append(server)
        behind: dict[str, str] = {}
        if deployment:
            assert backups is not None
            behind.update(_start_behind_app(
                client, network.name, labels, staged, port=port, db_password=pg_password,
                backups=backups, backup_command=backup_command, backup_interval=backup_interval))

        watched = {"server": str(server.get_wrapped_container().id)}
        if deployment:
            watched["nginx"] = behind["nginx"]

        def still_running() -> str | None:
            for role, container_id in watched.items():
                status, _ = _health(client, container_id)
                if status in ("exited", "dead"):
                    tail = client.api.logs(container_id, tail=5).decode(errors="replace")
                    lines = tail.strip().splitlines()
                    return (f"the {role} container exited: "
                            f"{lines[-1][:300] if lines else 'no output'}")
            return None

        wait_ready(base_url, tls.ca_bundle, still_running=still_running, timeout=ready_timeout,
                   resolve=resolve)
        if deployment:
            # Prometheus starts once the app answers, so that its first scrape finds it up (a
            # target is judged by its last scrape, 15 s apart).
            behind.update(_start_observability(client, network.name, labels, staged))
            grafana_password = secrets.token_urlsafe(18)
            image = grafana_image()
            if image is not None:
                behind["grafana"] = start_container(
                    client, GRAFANA_SERVICE, image=image, network=network.name, labels=labels,
                    staged=staged, ports={}, healthcheck=_compose_healthcheck("grafana"),
                    env={"GF_SECURITY_ADMIN_PASSWORD": grafana_password,
                         "GF_USERS_ALLOW_SIGN_UP": "false"},
                )
        healthy: dict[str, DockerContainer | str] = {"postgres": pg, "redis": redis,
                                                     "server": server}
        healthy.update({role: cid for role, cid in behind.items() if role in _HEALTH_WAITED})
        wait_healthy(client, healthy)
        email = password = None
        if create_admin:
            email, password = register_admin(base_url, tls.ca_bundle, resolve=resolve)
        pg_port, redis_port = _published(client, pg, 5432), _published(client, redis, 6379)
        extra: dict[str, Any] = {}
        if deployment:
            app_port = _published(client, server, SERVER_PORT)
            metrics_path = settings.get("METRICS_ENDPOINT", "/metrics")
            prometheus_port = published(client, behind["prometheus"], 9090)
            alertmanager_port = published(client, behind["alertmanager"], 9093)
            sink_port = published(client, behind[ALERT_SINK_SERVICE.name], ALERT_SINK_PORT)
            extra = {
                "resolve": resolve,
                "front_door": "nginx",
                "metrics_url": f"http://127.0.0.1:{app_port}{metrics_path}",
                "prometheus_url": f"http://127.0.0.1:{prometheus_port}",
                "alertmanager_url": f"http://127.0.0.1:{alertmanager_port}",
                **(_grafana_access(client, behind["grafana"], grafana_password)
                   if "grafana" in behind else {}),
                "docker": {
                    "run_id": run_id, "db": str(pg.get_wrapped_container().id),
                    "backup": behind["backup"], "backup_interval": str(backup_interval),
                    "backups_dir": "/backups", "database": DATABASE, "db_user": DB_USER,
                    "http_port": str(published(client, behind["nginx"], 80)),
                    # What the operator's on-call tool (the stack's alert sink) has received.
                    "alert_sink_url": f"http://127.0.0.1:{sink_port}/received",
                },
            }
            grafana = ("running" if grafana_image() is not None
                       else f"not run, {GRAFANA_IMAGE_ENV} is unset")
            say(f"docker: the reference deployment answers through NGINX at {base_url} "
                f"(--resolve {resolve[0]}); behind it {', '.join(sorted(behind))} "
                f"(grafana: {grafana})")
        say(f"docker: PostgreSQL, Redis and the server healthy at {base_url} "
            f"in {time.monotonic() - started:.1f}s (run {run_id})")
        yield Target(
            base_url=base_url,
            provider="docker",
            is_reference=True,
            ca_bundle=tls.ca_bundle,
            database_url=f"postgresql://{DB_USER}:{pg_password}@127.0.0.1:{pg_port}/{DATABASE}",
            redis_url=f"redis://:{redis_password}@127.0.0.1:{redis_port}/0",
            log_file=logs / "server.log",
            env=settings,
            admin_email=email,
            admin_password=password,
            **extra,
        )
    finally:
        with signals_deferred():
            _teardown(client, run_id, started_containers, network, executor,
                      graceful=next((c for c in started_containers if c.image == SERVER.name),
                                    None))
            with contextlib.suppress(OSError):
                _remove_tree(work)
            client.close()


#: The deployment's containers whose compose healthcheck start-up waits for. Not the backup
#: service: its health means "a recent dump exists", which is what the backup checks judge.
_HEALTH_WAITED = frozenset({"nginx", "prometheus", "alertmanager", "postgres-exporter",
                            "grafana", ALERT_SINK_SERVICE.name})


def _nginx_ssl(work: Path, tls: TlsFiles) -> Path:
    """The certificate directory of guide 4.2 step 3, with the names nginx.conf reads."""
    directory = work / "nginx-ssl"
    directory.mkdir()
    shutil.copyfile(tls.cert_file, directory / "certificate.crt")
    shutil.copyfile(tls.key_file, directory / "private.key")
    return directory


def _subnet(client: docker.DockerClient, network: str) -> str:
    config = client.api.inspect_network(network).get("IPAM", {}).get("Config") or []
    return ",".join(str(c["Subnet"]) for c in config if c.get("Subnet")) or "127.0.0.1"


def _compose_healthcheck(service: str) -> list[str] | None:
    test = compose_services().get(service, {}).get("healthcheck", {}).get("test")
    return [interpolate(str(part), {}) for part in test] if isinstance(test, list) else None


def _grafana_access(client: docker.DockerClient, container_id: str,
                    admin_password: str) -> dict[str, str]:
    """Grafana's URL and a viewer's token (a service account made with the admin's password)."""
    import httpx

    url = f"http://127.0.0.1:{published(client, container_id, 3000)}"
    auth = ("admin", admin_password)
    try:
        with httpx.Client(base_url=url, auth=auth, timeout=10) as http:
            account = http.post("/api/serviceaccounts", json={"name": "conformance",
                                                              "role": "Viewer"})
            account.raise_for_status()
            token = http.post(f"/api/serviceaccounts/{account.json()['id']}/tokens",
                              json={"name": "conformance"})
            token.raise_for_status()
    except (httpx.HTTPError, KeyError, ValueError) as exc:
        raise StackError(f"grafana: no viewer token: {str(exc).splitlines()[0][:200]}") from None
    return {"grafana_url": url, "grafana_token": str(token.json()["key"])}


def _start_observability(client: docker.DockerClient, network: str, labels: dict[str, str],
                         staged: Mapping[str, Path]) -> dict[str, str]:
    """Prometheus, Alertmanager and the alert sink its configuration on the stack names (they
    need nothing else to start); role -> container id."""
    env = dict(os.environ)
    assert ALERT_SINK_SERVICE.image is not None
    ids = {ALERT_SINK_SERVICE.name: start_container(
        client, ALERT_SINK_SERVICE, image=ALERT_SINK_SERVICE.image.name, network=network,
        labels=labels, staged=staged, ports={}, entrypoint=["python", "-c", ALERT_SINK_PROGRAM],
        command=[], healthcheck=["CMD", "python", "-c", ALERT_SINK_PROBE],
    )}
    for service in (PROMETHEUS_SERVICE, ALERTMANAGER_SERVICE):
        assert service.image is not None
        ids[service.name] = start_container(
            client, service, image=service.image.name, network=network, labels=labels,
            staged=staged, ports={}, command=compose_command(service.name, env),
            healthcheck=_compose_healthcheck(service.name),
        )
    return ids


def _start_behind_app(client: docker.DockerClient, network: str, labels: dict[str, str],
                      staged: Mapping[str, Path], *, port: int, db_password: str, backups: str,
                      backup_command: Sequence[str] | None, backup_interval: int,
                      ) -> dict[str, str]:
    """NGINX (its upstream `app` must resolve when it loads), the exporter and the backup."""
    ids = {"nginx": start_container(
        client, NGINX_SERVICE, image=NGINX.name, network=network, labels=labels, staged=staged,
        ports={443: port}, healthcheck=_compose_healthcheck("nginx"),
    )}
    ids["postgres-exporter"] = start_container(
        client, EXPORTER_SERVICE, image=POSTGRES_EXPORTER.name, network=network, labels=labels,
        staged=staged, ports={}, healthcheck=_compose_healthcheck("postgres-exporter"),
        env={"DATA_SOURCE_URI": f"db:5432/{DATABASE}?sslmode=disable",
             "DATA_SOURCE_USER": DB_USER, "DATA_SOURCE_PASS": db_password},
    )
    backup_env = {"PGHOST": "db", "PGDATABASE": DATABASE, "PGUSER": DB_USER,
                  "PGPASSWORD": db_password, "BACKUP_INTERVAL_SECONDS": str(backup_interval),
                  "BACKUP_KEEP_DAYS": "7"}
    ids["backup"] = start_container(
        client, BACKUP_SERVICE, image=POSTGRES.name, network=network, labels=labels,
        staged=staged, ports={}, env=backup_env, volumes={backups: "/backups"},
        command=backup_command or compose_command("backup", backup_env),
    )
    return ids


def _teardown(client: docker.DockerClient, run_id: str, containers: list[DockerContainer],
              network: Network | None, executor: ThreadPoolExecutor,
              graceful: DockerContainer | None = None) -> None:
    import docker.errors

    # A container still starting in a worker thread must be created before the sweep sees it.
    executor.shutdown(wait=True, cancel_futures=True)
    for container in reversed(containers):
        wrapped = container._container
        if wrapped is None:
            continue
        if container is graceful:
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                wrapped.stop(timeout=STOP_GRACE_SECONDS)  # the server's SIGTERM: graceful
        # The rest at once: their data goes with the run, and a graceful stop of each in turn
        # (PostgreSQL waiting for the exporter's session, up to the grace each) took a loaded
        # engine past two minutes.
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            wrapped.remove(force=True, v=True)
    if network is not None:
        with contextlib.suppress(Exception):
            network.remove()
    left = remove_run(client, run_id)
    if left:
        say(f"docker: removed {left} more container(s) of run {run_id}")
    label = {"label": f"{LABEL_RUN}={run_id}"}
    remaining = {
        "container": len(_listed(client, label)),
        "network": len(client.networks.list(filters=label)),
        "volume": len(client.volumes.list(filters=label)),
    }
    if any(remaining.values()):
        kept = ", ".join(f"{n} {kind}(s)" for kind, n in remaining.items() if n)
        say(f"docker: run {run_id}: {kept} could not be removed")
    else:
        say(f"docker: run {run_id} removed, no container left behind (nor network, nor volume)")


def _remove_tree(path: Path) -> None:
    # The server container may have written files as its own user; root or the owner removes them.
    shutil.rmtree(path, ignore_errors=True)

