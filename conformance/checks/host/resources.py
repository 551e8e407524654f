"""Guide 2.1 and 8.1: CPU cores, memory, storage size and SSD, free disk space."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from conformance.checks.host.common import Command, HostView, finding, hosts
from conformance.checks.registry import CheckContext, check
from conformance.model import Finding, Status

GB = 1000**3
GIB = 1024**3
MIN_CORES, RECOMMENDED_CORES = 4, 8
MIN_MEMORY_GB, RECOMMENDED_MEMORY_GB = 8, 16
MIN_STORAGE_GB = 50
#: The kernel keeps part of the RAM (MemTotal) and the filesystem part of the disk (df size) for
#: itself: a machine sold as "8 GB" or "50 GB" shows 90-97% of it. 90% of the figure counts.
USABLE_FRACTION = 0.9
#: Free space below these fails (a full disk stops PostgreSQL); below WARN passes with a note.
MIN_FREE_FRACTION, WARN_FREE_FRACTION, MIN_FREE_BYTES = 0.10, 0.20, 5 * GIB
VIRTUAL_DEVICES = ("loop", "ram", "zram", "dm-", "sr", "md", "nbd")


def judge_cores(cores: int, logical: int | None = None) -> tuple[Status, str]:
    """Judged on physical cores: hyperthreads share a core's execution units."""
    threads = f" ({logical} logical CPUs)" if logical is not None and logical != cores else ""
    if cores < MIN_CORES:
        return Status.FAILED, (f"{cores} physical CPU cores{threads}, below the guide's minimum "
                               f"of {MIN_CORES}")
    if cores < RECOMMENDED_CORES:
        return Status.PASSED, (f"{cores} physical CPU cores{threads}: meets the minimum of "
                               f"{MIN_CORES}; note: {RECOMMENDED_CORES} are recommended for high "
                               "load")
    return Status.PASSED, (f"{cores} physical CPU cores{threads} (recommended: "
                           f"{RECOMMENDED_CORES})")


def judge_memory(total_bytes: int) -> tuple[Status, str]:
    shown = f"{total_bytes / GIB:.1f} GiB"
    if total_bytes < MIN_MEMORY_GB * GB * USABLE_FRACTION:
        return Status.FAILED, f"{shown} of memory, below the guide's minimum of {MIN_MEMORY_GB} GB"
    if total_bytes < RECOMMENDED_MEMORY_GB * GB * USABLE_FRACTION:
        return Status.PASSED, (f"{shown} of memory: meets the minimum of {MIN_MEMORY_GB} GB; "
                               f"note: {RECOMMENDED_MEMORY_GB} GB are recommended for high load")
    return Status.PASSED, f"{shown} of memory (recommended: {RECOMMENDED_MEMORY_GB} GB)"


def judge_storage(size_bytes: int) -> tuple[Status, str]:
    shown = f"{size_bytes / GB:.0f} GB"
    if size_bytes < MIN_STORAGE_GB * GB * USABLE_FRACTION:
        return Status.FAILED, (f"{shown} of storage, below the guide's minimum of "
                               f"{MIN_STORAGE_GB} GB")
    return Status.PASSED, f"{shown} of storage (minimum: {MIN_STORAGE_GB} GB)"


def judge_free(size_bytes: int, free_bytes: int) -> tuple[Status, str]:
    fraction = free_bytes / size_bytes if size_bytes else 0.0
    shown = f"{free_bytes / GIB:.1f} GiB free of {size_bytes / GIB:.1f} GiB ({fraction:.0%})"
    if fraction < MIN_FREE_FRACTION or free_bytes < MIN_FREE_BYTES:
        return Status.FAILED, (f"{shown}: below {MIN_FREE_FRACTION:.0%} or "
                               f"{MIN_FREE_BYTES // GIB} GiB")
    if fraction < WARN_FREE_FRACTION:
        return Status.PASSED, f"{shown}; note: below {WARN_FREE_FRACTION:.0%}, plan more space"
    return Status.PASSED, shown


@dataclass(frozen=True, kw_only=True)
class DiskUsage:
    device: str
    size: int
    free: int
    mount: str


def parse_df(output: str) -> DiskUsage | None:
    """The data line of `df -P -B1 PATH` (POSIX format, byte units)."""
    lines = [line for line in output.splitlines() if line.strip()]
    if len(lines) < 2:
        return None
    fields = lines[-1].split()
    if len(fields) < 6 or not fields[1].isdigit() or not fields[3].isdigit():
        return None
    return DiskUsage(device=fields[0], size=int(fields[1]), free=int(fields[3]),
                     mount=fields[5])


def data_disk(host: HostView) -> tuple[DiskUsage | None, Command]:
    """The filesystem holding the deployment directory (or / before it exists)."""
    path = host.taskforge_dir if host.exists(host.taskforge_dir) else "/"
    done = host.run("df", "-P", "-B1", host.path(path))
    return (parse_df(done.stdout) if done.ok else None), done


#: The root of the cgroup hierarchy the host's processes see (v2, then v1's controllers). On a
#: virtual or physical machine it holds every CPU and no memory limit; on a server that is itself
#: a container (LXC, OpenVZ, Docker) it holds what the provider granted, while /proc/cpuinfo
#: and /proc/meminfo still describe the machine beneath.
CPUSET_FILES = ("/sys/fs/cgroup/cpuset.cpus.effective",
                "/sys/fs/cgroup/cpuset/cpuset.effective_cpus")
MEMORY_LIMIT_FILES = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def parse_cpu_list(text: str) -> frozenset[int] | None:
    """The kernel's CPU list format (`0-3,6`); None when it is not one."""
    cpus: set[int] = set()
    for part in (p.strip() for p in text.strip().split(",")):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if match is None:
            return None
        first = int(match.group(1))
        last = int(match.group(2) or first)
        if last < first or last - first > 65536:
            return None
        cpus.update(range(first, last + 1))
    return frozenset(cpus) or None


def cpuinfo_blocks(cpuinfo: str, allowed: frozenset[int] | None = None) -> list[dict[str, str]]:
    """One dict per logical CPU, only those in `allowed` when a cpuset restricts them."""
    blocks = []
    for block in re.split(r"\n\s*\n", cpuinfo):
        fields = dict(re.findall(r"^([^:\n]+?)\s*:\s*(.*)$", block, re.MULTILINE))
        number = fields.get("processor", "").strip()
        if not number:
            continue
        if allowed is not None and number.isdigit() and int(number) not in allowed:
            continue
        blocks.append(fields)
    return blocks


def count_cpus(cpuinfo: str, allowed: frozenset[int] | None = None) -> int:
    return len(cpuinfo_blocks(cpuinfo, allowed))


def count_physical_cores(cpuinfo: str, allowed: frozenset[int] | None = None) -> int | None:
    """Distinct (physical id, core id) pairs; None when the kernel lists no core ids (some
    virtual and ARM machines), where only logical CPUs can be counted."""
    cores = {(fields.get("physical id", "0"), fields["core id"])
             for fields in cpuinfo_blocks(cpuinfo, allowed) if "core id" in fields}
    return len(cores) or None


def mem_total_bytes(meminfo: str) -> int | None:
    match = re.search(r"^MemTotal:\s+(\d+)\s*kB", meminfo, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else None


def cgroup_cpus(host: HostView) -> tuple[frozenset[int] | None, str | None]:
    """The CPUs the host's cgroup root grants, and the file that says so (None: no cpuset)."""
    for path in CPUSET_FILES:
        text = host.read(path)
        if text is not None and (cpus := parse_cpu_list(text)) is not None:
            return cpus, path
    return None, None


def cgroup_memory_limit(host: HostView) -> tuple[int | None, str | None]:
    """The memory limit of the host's cgroup root (None: `max` or v1's near-2**63 "none")."""
    for path in MEMORY_LIMIT_FILES:
        text = (host.read(path) or "").strip()
        if text.isdigit() and int(text) < 2**60:
            return int(text), path
    return None, None


@check("HOST-CPU-CORES", needs=("hosts",))
def cpu_cores(context: CheckContext) -> Iterator[Finding]:
    for host in hosts(context):
        cpuinfo = host.read("/proc/cpuinfo") or ""
        allowed, cpuset_file = cgroup_cpus(host)
        logical = count_cpus(cpuinfo, allowed)
        physical = count_physical_cores(cpuinfo, allowed)
        evidence = [host.file_evidence("/proc/cpuinfo", "processor and core id lines")]
        granted = ""
        if cpuset_file is not None and allowed is not None and count_cpus(cpuinfo) > logical:
            evidence.append(host.file_evidence(cpuset_file, "the CPUs granted to the host"))
            granted = (f" (the CPUs {cpuset_file} grants, of {count_cpus(cpuinfo)} in "
                       "/proc/cpuinfo)")
        if not logical:
            done = host.run("nproc")
            logical = int(done.stdout.strip()) if done.ok and done.stdout.strip().isdigit() else 0
            evidence = [done.evidence("nproc")]
        if not logical:
            yield finding("HOST-CPU-CORES", Status.ERROR, host, "could not count CPU cores",
                          *evidence)
            continue
        if physical is None:
            status, message = judge_cores(logical)
            message += ("; physical cores unknown (no core ids in /proc/cpuinfo): logical CPUs "
                        "judged")
            actual = f"{logical} logical CPUs"
        else:
            status, message = judge_cores(physical, logical)
            actual = f"{physical} physical cores, {logical} logical CPUs"
        yield finding("HOST-CPU-CORES", status, host, message + granted, *evidence,
                      expected=f">= {MIN_CORES} cores (recommended {RECOMMENDED_CORES})",
                      actual=actual)


@check("HOST-MEMORY", needs=("hosts",))
def memory(context: CheckContext) -> Iterator[Finding]:
    for host in hosts(context):
        total = mem_total_bytes(host.read("/proc/meminfo") or "")
        evidence = [host.file_evidence("/proc/meminfo", "MemTotal")]
        if total is None:
            yield finding("HOST-MEMORY", Status.ERROR, host, "no MemTotal in /proc/meminfo",
                          *evidence)
            continue
        limit, limit_file = cgroup_memory_limit(host)
        granted = ""
        if limit is not None and limit < total:
            evidence.append(host.file_evidence(limit_file or "", "the memory granted"))
            granted = (f" (the limit {limit_file} sets; MemTotal shows the machine beneath, "
                       f"{total / GIB:.1f} GiB)")
            total = limit
        status, message = judge_memory(total)
        yield finding("HOST-MEMORY", status, host, message + granted, *evidence,
                      expected=f">= {MIN_MEMORY_GB} GB (recommended {RECOMMENDED_MEMORY_GB} GB)",
                      actual=f"{total / GIB:.1f} GiB")


@check("HOST-STORAGE-SIZE", "HOST-DISK-FREE", needs=("hosts",))
def storage(context: CheckContext) -> Iterator[Finding]:
    for host in hosts(context):
        usage, done = data_disk(host)
        if usage is None:
            for item in ("HOST-STORAGE-SIZE", "HOST-DISK-FREE"):
                yield finding(item, Status.ERROR, host, "df gave no usable answer",
                              done.evidence())
            continue
        status, message = judge_storage(usage.size)
        yield finding("HOST-STORAGE-SIZE", status, host, f"{usage.mount}: {message}",
                      done.evidence(), expected=f">= {MIN_STORAGE_GB} GB",
                      actual=f"{usage.size / GB:.0f} GB")
        status, message = judge_free(usage.size, usage.free)
        yield finding("HOST-DISK-FREE", status, host, f"{usage.mount}: {message}",
                      done.evidence(), expected=f">= {MIN_FREE_FRACTION:.0%} free and "
                                                f">= {MIN_FREE_BYTES // GIB} GiB",
                      actual=f"{usage.free / GIB:.1f} GiB free")


def block_device(device: str) -> str | None:
    """`/dev/sda1` → `sda`, `/dev/nvme0n1p2` → `nvme0n1`; None for overlay, tmpfs and the like."""
    if not device.startswith("/dev/"):
        return None
    name = device.removeprefix("/dev/")
    if re.fullmatch(r"(nvme\d+n\d+|mmcblk\d+)(p\d+)?", name):
        return re.sub(r"p\d+$", "", name)
    if re.fullmatch(r"(sd|vd|xvd|hd)[a-z]+\d*", name):
        return name.rstrip("0123456789")
    return None


@check("HOST-STORAGE-SSD", needs=("hosts",))
def storage_ssd(context: CheckContext) -> Iterator[Finding]:
    for host in hosts(context):
        usage, _ = data_disk(host)
        device = block_device(usage.device) if usage else None
        if device is not None and host.exists(f"/sys/block/{device}/queue/rotational"):
            devices = [device]
        else:
            # Overlay or device-mapper: judge every physical disk of the machine.
            listing = host.host.file(host.path("/sys/block"))
            names = listing.listdir() if listing.exists else []
            devices = sorted(n for n in names if not n.startswith(VIRTUAL_DEVICES))
        flags = {d: (host.read(f"/sys/block/{d}/queue/rotational") or "").strip()
                 for d in devices}
        evidence = [host.file_evidence(f"/sys/block/{d}/queue/rotational", f"{d}: {flag}")
                    for d, flag in flags.items()]
        known = {d: f for d, f in flags.items() if f in ("0", "1")}
        if not known:
            yield finding("HOST-STORAGE-SSD", Status.ERROR, host,
                          "no block device with a rotational flag in /sys/block", *evidence)
            continue
        spinning = sorted(d for d, f in known.items() if f == "1")
        if spinning:
            yield finding(
                "HOST-STORAGE-SSD", Status.FAILED, host,
                f"rotational disk(s): {', '.join(spinning)} (virtual disks may report 1 even on "
                "SSD-backed storage; check with the provider)", *evidence,
                expected="rotational = 0 (SSD)", actual=", ".join(f"{d}={f}"
                                                                   for d, f in known.items()))
        else:
            yield finding("HOST-STORAGE-SSD", Status.PASSED, host,
                          f"non-rotational: {', '.join(sorted(known))}", *evidence)
