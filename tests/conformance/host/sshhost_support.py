"""The SSH test host as the tests hold it: the container, its address, the spec the checks take,
and the states the tests flip it between."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from conformance.checks.registry import CheckContext

GUIDE = Path(__file__).resolve().parents[3] / "conformance" / "guide.md"
#: Where the guide's backup service writes: ./backups beside the compose file in app/.
BACKUPS = "/opt/taskforge/app/backups"
#: What a successful `apt update` leaves on Ubuntu (update-notifier's hook touches the stamp; the
#: package cache rebuilt, which a user's `apt-get -s` cannot write); the test host cannot reach a
#: mirror, so the index it has counts as refreshed now.
FRESH_INDEX = ("mkdir -p /var/lib/apt/periodic && touch /var/lib/apt/periodic/update-success-stamp"
               " /var/lib/apt/lists/partial /var/lib/apt/lists/*Release && apt-cache gencaches")
STALE_INDEX = ("touch -d '30 days ago' /var/lib/apt/periodic/update-success-stamp"
               " /var/lib/apt/lists/partial /var/lib/apt/lists/*Release")
#: The host's cgroup memory limit (HOST-MEMORY judges it: below the guide's 8 GB).
MEMORY_LIMIT = "2g"
#: A 64 MB filesystem of the host (a tmpfs), for the storage defects.
SMALL_DISK = "/srv/small-disk"


def lscpu_cores() -> dict[int, tuple[int, int]]:
    """This machine's logical CPUs and their (socket, core), as `lscpu -p` lists them (the
    container shares the kernel: these are its CPUs too)."""
    listing = subprocess.run(["lscpu", "-p=CPU,CORE,SOCKET"], capture_output=True, text=True,
                             check=True, timeout=30).stdout
    cpus: dict[int, tuple[int, int]] = {}
    for line in listing.splitlines():
        if line and not line.startswith("#"):
            cpu, core, socket = (int(field or 0) for field in line.split(","))
            cpus[cpu] = (socket, core)
    return cpus


def core_of_cpu0() -> list[int]:
    """CPU 0 and its thread siblings: the CPUs of one physical core."""
    cpus = lscpu_cores()
    return sorted(cpu for cpu, core in cpus.items() if core == cpus[0])


def machine_disks() -> dict[str, str]:
    """This machine's disks and their rotational flags, read here (the container shares the
    kernel): block devices that are neither virtual (loop, zram, dm) nor removable (sr)."""
    disks = {}
    for entry in Path("/sys/block").iterdir():
        if "/virtual/" in str(entry.resolve()):
            continue
        if (entry / "removable").read_text().strip() == "1":
            continue
        disks[entry.name] = (entry / "queue" / "rotational").read_text().strip()
    return disks


@dataclass(frozen=True, kw_only=True)
class SshHost:
    container: str
    address: str
    spec: str  # what --hosts takes

    def root(self, script: str, *, check: bool = True) -> str:
        """Run a shell script as root inside the host (the test's hand, not the kit's)."""
        done = subprocess.run(["docker", "exec", self.container, "sh", "-c", script],
                              capture_output=True, text=True, timeout=60, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"{script!r} failed on the test host: {done.stderr.strip()}")
        return done.stdout

    def put(self, path: str, data: bytes) -> None:
        """Write a file on the host as root (`docker cp` cannot write into its tmpfs volumes)."""
        done = subprocess.run(["docker", "exec", "-i", self.container, "sh", "-c",
                               f"cat > '{path}'"], input=data, capture_output=True, timeout=60,
                              check=False)
        if done.returncode != 0:
            raise AssertionError(f"writing {path} on the test host failed: "
                                 f"{done.stderr.decode(errors='replace').strip()}")

    def context(self, **options: object) -> CheckContext:
        return CheckContext(hosts=(self.spec,), **options)  # type: ignore[arg-type]


def guide_compose_file() -> str:
    """The compose file of guide 3.2, as a user following the guide deploys it."""
    text = GUIDE.read_text(encoding="utf-8")
    match = re.search(r"```yaml\n(# File: docker-compose\.prod\.yml\n.*?)```", text, re.DOTALL)
    assert match, "guide 3.2's compose file not found in conformance/guide.md"
    return match.group(1)
