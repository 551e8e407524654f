"""The SSH test host: one container of compose/images/sshhost per test session, reached over SSH.

Its ports are published on a loopback address of its own (127.x.y.z), the deployment's with their
real numbers, sshd's on a free port (this machine may run an sshd on every address): the host
checks reach it as `ssh://deploy@127.x.y.z:PORT` and probe its 5432 or 6379 from outside exactly
as they would a user's server. Tests flip one defect and restore it.
Without an engine or the image the tests skip, saying why; in CI (TASKFORGE_REQUIRE_DOCKER=1)
they fail instead.
"""

from __future__ import annotations

import gzip
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest
from sshhost_support import (
    BACKUPS,
    FRESH_INDEX,
    MEMORY_LIMIT,
    SMALL_DISK,
    SshHost,
    core_of_cpu0,
    guide_compose_file,
)

from conformance.stack.docker import LABEL_HOST, LABEL_PID, LABEL_RUN
from conformance.stack.images import SSH_HOST

REQUIRE_DOCKER = "TASKFORGE_REQUIRE_DOCKER"
#: The deployment's ports, published with their own numbers (the firewall item probes these).
PUBLISHED_PORTS = (80, 443, 5432, 6379, 9090, 9093, 3000, 8000)
START_TIMEOUT_SECONDS = 20


def _unusable(why: str) -> None:
    if os.environ.get(REQUIRE_DOCKER) == "1":
        pytest.fail(f"{REQUIRE_DOCKER}=1 but {why}", pytrace=False)
    pytest.skip(f"docker: {why}")


def _wait_for_sshd(address: str, port: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, port), timeout=1) as sock:
                sock.settimeout(1)
                if sock.recv(4).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"sshd on {address}:{port} did not answer within "
                         f"{START_TIMEOUT_SECONDS}s")


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """A Docker engine answers here (skip, or in CI fail, saying why when none does)."""
    try:
        done = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"],
                              capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        _unusable(f"no docker engine ({exc})")
    if done.returncode != 0 or not done.stdout.strip():
        _unusable(f"no docker engine answers: {done.stderr.strip()[:200]}")


@pytest.fixture(scope="session")
def sql_dump(postgres_server: object, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A real pg_dump of the tests' PostgreSQL (plain SQL, gzipped as the backup service does)."""
    from reference_server.devservices import postgres_bin_dir

    url = postgres_server.url_for("taskforge_template")  # type: ignore[attr-defined]
    done = subprocess.run([str(postgres_bin_dir() / "pg_dump"), "--no-owner", url],
                          capture_output=True, timeout=60, check=True)
    return gzip.compress(done.stdout)


@pytest.fixture(scope="session")
def custom_dump(postgres_server: object) -> bytes:
    """The same database in pg_dump's custom format (what pg_restore --list reads)."""
    from reference_server.devservices import postgres_bin_dir

    url = postgres_server.url_for("taskforge_template")  # type: ignore[attr-defined]
    done = subprocess.run([str(postgres_bin_dir() / "pg_dump"), "-Fc", "--no-owner", url],
                          capture_output=True, timeout=60, check=True)
    return done.stdout


@pytest.fixture(scope="session")
def ssh_host(tmp_path_factory: pytest.TempPathFactory, sql_dump: bytes) -> Iterator[SshHost]:
    """The clean host: keys only, deploy in the docker group, /opt/taskforge as guide 4.2, the
    guide's compose file in app/, today's dump in app/backups, an index refreshed now.

    Sized as a provider sizes a container server, the same on every machine: the CPUs of one
    core (CPU 0 and its thread siblings), 2 GB of memory (its cgroup limits) and a 100 GB data
    volume at /opt/taskforge (a tmpfs: its size is a limit, nothing is reserved), beside a
    64 MB one at SMALL_DISK for the storage defects."""
    try:
        info = subprocess.run(["docker", "image", "inspect", SSH_HOST.name], capture_output=True,
                              timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        _unusable(f"no docker engine ({exc})")
    if info.returncode != 0:
        _unusable(f"no image {SSH_HOST.name} (`nox -s images` builds it): "
                  f"{info.stderr.decode(errors='replace').strip()[:200]}")
    work = tmp_path_factory.mktemp("sshhost")
    key = work / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True,
                   timeout=30)
    # One SSH connection for all commands (a socket path must stay under ~100 bytes).
    control = tempfile.mkdtemp(prefix="tf-ssh-", dir="/tmp")
    config = work / "ssh_config"
    config.write_text(
        "Host *\n"
        f"  IdentityFile {key}\n  IdentitiesOnly yes\n  BatchMode yes\n"
        "  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n"
        f"  ControlPath {control}/%C\n"
    )
    # A loopback address of its own, so that its 5432 is its own and nobody else's.
    address = f"127.{random.randint(64, 250)}.{random.randint(0, 255)}.{random.randint(2, 254)}"
    name = f"taskforge-sshhost-test-{os.getpid()}-{random.randint(0, 1 << 30)}"
    sizing = ["--cpuset-cpus", ",".join(map(str, core_of_cpu0())), "--memory", MEMORY_LIMIT,
              "--tmpfs", "/opt/taskforge:rw,size=100g,mode=0755",
              "--tmpfs", f"{SMALL_DISK}:rw,size=64m,mode=0777"]
    publish = ["-p", f"{address}::22",
               *(arg for port in PUBLISHED_PORTS for arg in ("-p", f"{address}:{port}:{port}"))]
    started = subprocess.run(
        # The stack's labels: engine-wide container counts leave it out, and a stack run reaps
        # it when this process died by SIGKILL.
        ["docker", "run", "-d", "--rm", "--name", name, "--label", f"{LABEL_RUN}={name}",
         "--label", f"{LABEL_PID}={os.getpid()}", "--label", f"{LABEL_HOST}={socket.gethostname()}",
         "-e", f"AUTHORIZED_KEY={(work / 'id_ed25519.pub').read_text().strip()}", *sizing,
         *publish,
         SSH_HOST.name], capture_output=True, text=True, timeout=60, check=False)
    if started.returncode != 0:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60,
                       check=False)
        if "address already in use" in started.stderr:
            _unusable("a port of the deployment is taken on every address of this machine: "
                      f"{started.stderr.strip()[-200:]}")
        raise AssertionError(f"the SSH test host did not start: {started.stderr.strip()}")
    try:
        mapped = subprocess.run(["docker", "port", name, "22/tcp"], capture_output=True,
                                text=True, timeout=30, check=True).stdout.split()[0]
        port = int(mapped.rpartition(":")[2])
        host = SshHost(container=name, address=address,
                       spec=f"ssh://deploy@{address}:{port}?ssh_config={config}")
        _wait_for_sshd(address, port)
        # The data volume hides the image's /opt/taskforge: lay it out again (guide 4.2 step 2).
        host.root("mkdir -p " + " ".join(f"/opt/taskforge/{d}" for d in
                                          ("app", "config", "data", "logs", "backups",
                                           "app/backups")))
        host.put("/opt/taskforge/app/docker-compose.prod.yml", guide_compose_file().encode())
        host.put(f"{BACKUPS}/{time.strftime('taskforge_%Y%m%d_%H%M%S')}.sql.gz", sql_dump)
        # Tests reach nothing beyond 127.0.0.1: apt's mirror is cut off (a proxy nobody runs).
        host.root("echo 'Acquire::http::Proxy \"http://127.0.0.1:9\"; Acquire::Retries \"0\";' "
                  "> /etc/apt/apt.conf.d/99-test-offline && "
                  f"chown -R deploy:deploy /opt/taskforge && {FRESH_INDEX}")
        yield host
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60,
                       check=False)
        shutil.rmtree(control, ignore_errors=True)
