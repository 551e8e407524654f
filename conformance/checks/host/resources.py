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


def count_cpus(cpuinfo: str) -> int:
    return len(re.findall(r"^processor\s*:", cpuinfo, re.MULTILINE))


def count_physical_cores(cpuinfo: str) -> int | None:
    """Distinct (physical id, core id) pairs; None when the kernel lists no core ids (some
    virtual and ARM machines), where only logical CPUs can be counted."""
    cores: set[tuple[str, str]] = set()
    for block in re.split(r"\n\s*\n", cpuinfo):
        fields = dict(re.findall(r"^([^:\n]+?)\s*:\s*(.*)$", block, re.MULTILINE))
        if "core id" in fields:
            cores.add((fields.get("physical id", "0"), fields["core id"]))
    return len(cores) or None


def mem_total_bytes(meminfo: str) -> int | None:
    match = re.search(r"^MemTotal:\s+(\d+)\s*kB", meminfo, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else None


@check("HOST-CPU-CORES", needs=("hosts",))
def cpu_cores(context: CheckContext) -> Iterator[Finding]:
    for host in hosts(context):
        cpuinfo = host.read("/proc/cpuinfo") or ""
        logical = count_cpus(cpuinfo)
        physical = count_physical_cores(cpuinfo)
        evidence = host.file_evidence("/proc/cpuinfo", "processor and core id lines")
        if not logical:
            done = host.run("nproc")
            logical = int(done.stdout.strip()) if done.ok and done.stdout.strip().isdigit() else 0
            evidence = done.evidence("nproc")
        if not logical:
            yield finding("HOST-CPU-CORES", Status.ERROR, host, "could not count CPU cores",
                          evidence)
            continue
        if physical is None:
            status, message = judge_cores(logical)
            message += ("; physical cores unknown (no core ids in /proc/cpuinfo): logical CPUs "
                        "judged")
            actual = f"{logical} logical CPUs"
        else:
            status, message = judge_cores(physical, logical)
            actual = f"{physical} physical cores, {logical} logical CPUs"
        yield finding("HOST-CPU-CORES", status, host, message, evidence,
                      expected=f">= {MIN_CORES} cores (recommended {RECOMMENDED_CORES})",
                      actual=actual)


@check("HOST-MEMORY", needs=("hosts",))
def memory(context: CheckContext) -> Iterator[Finding]:
    for host in hosts(context):
        total = mem_total_bytes(host.read("/proc/meminfo") or "")
        evidence = host.file_evidence("/proc/meminfo", "MemTotal")
        if total is None:
            yield finding("HOST-MEMORY", Status.ERROR, host, "no MemTotal in /proc/meminfo",
                          evidence)
            continue
        status, message = judge_memory(total)
        yield finding("HOST-MEMORY", status, host, message, evidence,
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
