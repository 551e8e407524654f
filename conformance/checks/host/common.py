"""What every host check needs: a testinfra host per spec, bounded commands, reads, findings."""

from __future__ import annotations

import functools
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from conformance.checks.registry import CheckContext
from conformance.model import Evidence, Finding, Status

COMMAND_TIMEOUT_SECONDS = 20
MAX_OUTPUT = 2000


@functools.cache
def _testinfra_host(spec: str) -> Any:
    import testinfra

    return testinfra.get_host(spec)


@dataclass(frozen=True, kw_only=True)
class Command:
    command: str
    rc: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def evidence(self, summary: str = "") -> Evidence:
        output = (self.stdout or self.stderr).strip()[:MAX_OUTPUT]
        return Evidence(kind="command", summary=summary, command=self.command,
                        output=f"{output}\n(exit status {self.rc})".strip())


def display_spec(spec: str) -> str:
    """The spec as reports show it: no password, no query (identity files, ssh_config paths)."""
    parts = urlsplit(spec)
    if not parts.scheme or not parts.netloc:
        return spec.split("?", 1)[0]  # local://
    user, at, place = parts.netloc.rpartition("@")
    netloc = f"{user.split(':', 1)[0]}@{place}" if at else place
    return f"{parts.scheme}://{netloc}{parts.path}"


@dataclass(frozen=True, kw_only=True)
class HostView:
    """One host as the checks see it; `root` prefixes the files they read (tests: a fake tree)."""

    spec: str
    host: Any
    root: str = "/"
    taskforge_dir: str = "/opt/taskforge"

    @property
    def name(self) -> str:
        return display_spec(self.spec)

    @property
    def is_local(self) -> bool:
        return str(getattr(self.host.backend, "NAME", "")) == "local"

    @property
    def address(self) -> str | None:
        """The server's address as the kit reaches it (ssh and paramiko specs); None when local."""
        spec = getattr(self.host.backend, "host", None)
        name = getattr(spec, "name", None)
        return None if self.is_local or not name else str(name)

    @property
    def ssh_port(self) -> int | None:
        spec = getattr(self.host.backend, "host", None)
        port = getattr(spec, "port", None)
        return int(port) if port else (22 if self.address else None)

    @functools.cached_property
    def is_root(self) -> bool:
        return self.run("id", "-u").stdout.strip() == "0"

    def path(self, path: str) -> str:
        if self.root in ("", "/"):
            return path
        return str(PurePosixPath(self.root) / path.lstrip("/"))

    def read(self, path: str) -> str | None:
        handle = self.host.file(self.path(path))
        if not handle.exists or not handle.is_file:
            return None
        return str(handle.content_string)

    def exists(self, path: str) -> bool:
        return bool(self.host.file(self.path(path)).exists)

    def run(self, *argv: str, timeout: int = COMMAND_TIMEOUT_SECONDS) -> Command:
        """Run a command under `timeout`, so no host check can hang the run."""
        line = " ".join(shlex.quote(a) for a in argv)
        result = self.host.run(f"timeout {int(timeout)} {line}")
        return Command(command=line, rc=int(result.rc), stdout=str(result.stdout),
                       stderr=str(result.stderr))

    def run_privileged(self, *argv: str, timeout: int = COMMAND_TIMEOUT_SECONDS) -> Command:
        """A read-only command that needs root (`sshd -T`, `ufw status`): as root, or through
        `sudo -n`, which fails at once instead of asking for a password."""
        if self.is_root:
            return self.run(*argv, timeout=timeout)
        return self.run("sudo", "-n", *argv, timeout=timeout)

    def has_command(self, name: str) -> bool:
        return bool(self.host.exists(name))

    def file_evidence(self, path: str, summary: str = "") -> Evidence:
        return Evidence(kind="file", file=self.path(path), summary=summary)


def unreachable_reason(spec: str) -> str | None:
    """Why the host does not answer one bounded command (None when it does): checked once
    before the run, so an unreachable server is one line, not an error per check."""
    try:
        result = _testinfra_host(spec).run("true")
    except Exception as exc:  # testinfra raises RuntimeError (ssh exit 255) and backend errors
        detail = getattr(getattr(exc, "args", [None])[0], "stderr", None) or str(exc)
        lines = [ln for ln in str(detail).splitlines() if ln.strip()]
        return lines[-1].strip()[:200] if lines else type(exc).__name__
    if result.rc == 0:
        return None
    said = [ln.strip() for ln in str(result.stderr).splitlines() if ln.strip()]
    return f"{said[-1][:200] if said else 'no output'} (exit status {result.rc})"


def hosts(context: CheckContext) -> Iterator[HostView]:
    root = context.host_root or "/"
    taskforge_dir = context.taskforge_dir or "/opt/taskforge"
    for spec in context.hosts:
        yield HostView(spec=spec, host=_testinfra_host(spec), root=root,
                       taskforge_dir=taskforge_dir)


def finding(item_id: str, status: Status, host: HostView, message: str, *evidence: Evidence,
            expected: str | None = None, actual: str | None = None) -> Finding:
    """A finding that names its host (several hosts may be checked in one run)."""
    return Finding(item_id=item_id, status=status, check="", message=f"{host.name}: {message}",
                   expected=expected, actual=actual, evidence=evidence, host=host.name)


def version_tuple(text: str) -> tuple[int, ...]:
    parts: list[int] = []
    for piece in text.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
        if len(digits) != len(piece):
            break  # "24.0.5-ce": stop at the first non-numeric part
    return tuple(parts)
