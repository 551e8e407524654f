"""Host checks on testinfra's local backend, reading a fake file tree where checks read files."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from conformance.checks.host import layout, resources, security, system
from conformance.checks.registry import CheckContext
from conformance.model import Finding, Status

GB = 1000**3


def context(root: Path) -> CheckContext:
    return CheckContext(hosts=("local://",), host_root=str(root), taskforge_dir="/opt/taskforge")


def write(root: Path, path: str, text: str) -> Path:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return target


def statuses(check: Callable[[CheckContext], Iterable[Finding]], root: Path) -> dict[str, Status]:
    return {f.item_id: f.status for f in check(context(root))}


@pytest.mark.parametrize(
    ("cores", "status", "note"),
    [(2, Status.FAILED, "below the guide's minimum of 4"),
     (4, Status.PASSED, "note: 8 are recommended"),
     (8, Status.PASSED, "recommended: 8")],
)
def test_cpu_cores_against_minimum_and_recommended(cores: int, status: Status, note: str) -> None:
    got, message = resources.judge_cores(cores)
    assert got is status
    assert note in message


@pytest.mark.parametrize(
    ("gib", "status", "note"),
    [(4, Status.FAILED, "below the guide's minimum of 8 GB"),
     (7.6, Status.PASSED, "note: 16 GB are recommended"),  # an "8 GB" machine's MemTotal
     (15.6, Status.PASSED, "recommended: 16 GB")],
)
def test_memory_against_minimum_and_recommended(gib: float, status: Status, note: str) -> None:
    got, message = resources.judge_memory(int(gib * 1024**3))
    assert got is status
    assert note in message


def test_storage_and_free_space_thresholds() -> None:
    assert resources.judge_storage(30 * GB)[0] is Status.FAILED
    assert resources.judge_storage(49 * GB)[0] is Status.PASSED  # filesystem overhead of 50 GB
    assert resources.judge_free(100 * GB, 5 * GB)[0] is Status.FAILED
    status, message = resources.judge_free(100 * GB, 15 * GB)
    assert status is Status.PASSED
    assert "note" in message
    assert resources.judge_free(100 * GB, 50 * GB) == (Status.PASSED,
                                                      "46.6 GiB free of 93.1 GiB (50%)")


def test_cpu_and_memory_read_from_proc(tmp_path: Path) -> None:
    write(tmp_path, "/proc/cpuinfo", "processor\t: 0\nmodel name: x\n\nprocessor\t: 1\n")
    write(tmp_path, "/proc/meminfo", "MemTotal:       16303144 kB\nMemFree: 1 kB\n")
    assert statuses(resources.cpu_cores, tmp_path) == {"HOST-CPU-CORES": Status.FAILED}
    assert statuses(resources.memory, tmp_path) == {"HOST-MEMORY": Status.PASSED}
    write(tmp_path, "/proc/cpuinfo", "".join(f"processor\t: {i}\n" for i in range(8)))
    [finding] = resources.cpu_cores(context(tmp_path))
    assert finding.status is Status.PASSED
    assert finding.actual == "8 cores"


def test_storage_reports_size_and_free_space_with_df_output(tmp_path: Path) -> None:
    findings = list(resources.storage(context(tmp_path)))
    assert [f.item_id for f in findings] == ["HOST-STORAGE-SIZE", "HOST-DISK-FREE"]
    assert all(f.status in (Status.PASSED, Status.FAILED) for f in findings)
    assert findings[0].evidence[0].command is not None
    assert "df -P -B1" in findings[0].evidence[0].command


@pytest.mark.parametrize(
    ("disks", "status"),
    [({"nvme0n1": "0", "loop0": "1"}, Status.PASSED),  # loop devices are not disks
     ({"nvme0n1": "0", "sdb": "1"}, Status.FAILED)],
)
def test_ssd_from_the_rotational_flag(tmp_path: Path, disks: dict[str, str],
                                      status: Status) -> None:
    for name, flag in disks.items():
        write(tmp_path, f"/sys/block/{name}/queue/rotational", f"{flag}\n")
    assert statuses(resources.storage_ssd, tmp_path) == {"HOST-STORAGE-SSD": status}


def test_block_device_of_a_partition() -> None:
    assert resources.block_device("/dev/sda1") == "sda"
    assert resources.block_device("/dev/nvme0n1p2") == "nvme0n1"
    assert resources.block_device("overlay") is None


@pytest.mark.parametrize(
    ("os_release", "version", "listed"),
    [('ID=ubuntu\nVERSION_ID="22.04"\n', Status.PASSED, Status.PASSED),
     ('ID=ubuntu\nVERSION_ID="18.04"\n', Status.FAILED, Status.PASSED),
     ('ID=centos\nVERSION_ID="7"\n', Status.FAILED, Status.PASSED),
     ('ID=rocky\nVERSION_ID="9.3"\n', Status.PASSED, Status.PASSED),
     ('ID=debian\nVERSION_ID="12"\nPRETTY_NAME="Debian GNU/Linux 12"\n', Status.PASSED,
      Status.FAILED)],
)
def test_os_version_and_whether_the_guide_lists_it(
    tmp_path: Path, os_release: str, version: Status, listed: Status
) -> None:
    write(tmp_path, "/etc/os-release", os_release)
    assert statuses(system.operating_system, tmp_path) == {
        "HOST-OS-VERSION": version, "HOST-OS-LISTED": listed}


def test_version_parsing_of_docker_and_compose() -> None:
    assert system.docker_version("Docker version 24.0.5, build ced0996") == (24, 0, 5)
    assert system.docker_version("Docker Compose version v2.20.2") == (2, 20, 2)
    assert system.docker_version("docker-compose version 1.29.2, build unknown") == (1, 29, 2)
    assert system.docker_version("command not found") is None


def test_docker_checks_speak_through_commands_on_this_host(tmp_path: Path) -> None:
    for check in (system.docker_installed, system.compose_version, system.docker_engine,
                  system.docker_group):
        [finding] = check(context(tmp_path))
        assert finding.status in (Status.PASSED, Status.FAILED)
        assert finding.message.startswith("local://: ")
        assert finding.evidence[0].command is not None


def test_taskforge_directories_present_and_owned(tmp_path: Path) -> None:
    for name in layout.DIRECTORIES:
        (tmp_path / "opt/taskforge" / name).mkdir(parents=True)
    assert statuses(layout.directories, tmp_path) == {
        "HOST-TASKFORGE-DIRS": Status.PASSED, "HOST-TASKFORGE-OWNER": Status.PASSED}


def test_missing_taskforge_directories_fail_by_name(tmp_path: Path) -> None:
    (tmp_path / "opt/taskforge/app").mkdir(parents=True)
    dirs = next(f for f in layout.directories(context(tmp_path))
                if f.item_id == "HOST-TASKFORGE-DIRS")
    assert dirs.status is Status.FAILED
    assert dirs.message.endswith("config, data, logs, backups")


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a directory's owner needs root")
def test_directories_owned_by_someone_else_fail(tmp_path: Path) -> None:
    for name in layout.DIRECTORIES:
        (tmp_path / "opt/taskforge" / name).mkdir(parents=True)
    os.chown(tmp_path / "opt/taskforge/data", 65534, 65534)
    owner = statuses(layout.directories, tmp_path)["HOST-TASKFORGE-OWNER"]
    assert owner is Status.FAILED


@pytest.mark.parametrize(
    ("age_hours", "status"), [(None, Status.FAILED), (2, Status.PASSED), (30, Status.FAILED)]
)
def test_backups_present_and_recent(tmp_path: Path, age_hours: float | None,
                                    status: Status) -> None:
    backups = tmp_path / "opt/taskforge/backups"
    backups.mkdir(parents=True)
    if age_hours is not None:
        dump = backups / "nightly" / "backup_20261127.sql.gz"
        dump.parent.mkdir()
        dump.write_bytes(b"dump")
        stamp = time.time() - age_hours * 3600
        os.utime(dump, (stamp, stamp))
    assert statuses(layout.backups_recent, tmp_path) == {"HOST-BACKUPS-RECENT": status}


def test_no_backups_directory_fails(tmp_path: Path) -> None:
    assert statuses(layout.backups_recent, tmp_path) == {"HOST-BACKUPS-RECENT": Status.FAILED}


@pytest.mark.parametrize(
    ("config", "dropin", "status"),
    [("PasswordAuthentication no\n", None, Status.PASSED),
     ("#PasswordAuthentication no\nPort 22\n", None, Status.FAILED),  # sshd's default: yes
     ("Include /etc/ssh/sshd_config.d/*.conf\nPasswordAuthentication yes\n",
      "PasswordAuthentication no\n", Status.PASSED),  # the first value wins
     ("PasswordAuthentication yes\nMatch User deploy\n  PasswordAuthentication no\n", None,
      Status.FAILED)],
)
def test_sshd_refusing_passwords(tmp_path: Path, config: str, dropin: str | None,
                                 status: Status) -> None:
    write(tmp_path, "/etc/ssh/sshd_config", config)
    if dropin is not None:
        write(tmp_path, "/etc/ssh/sshd_config.d/50-hardening.conf", dropin)
    assert statuses(security.ssh_passwords, tmp_path) == {"HOST-SSH-NO-PASSWORD": status}


def test_no_ssh_server_is_not_applicable(tmp_path: Path) -> None:
    assert statuses(security.ssh_passwords, tmp_path) == {
        "HOST-SSH-NO-PASSWORD": Status.NOT_APPLICABLE}


def test_ufw_enabled_counts_as_an_active_firewall(tmp_path: Path) -> None:
    write(tmp_path, "/etc/ufw/ufw.conf", "# /etc/ufw/ufw.conf\nENABLED=yes\nLOGLEVEL=low\n")
    assert statuses(security.firewall, tmp_path) == {"HOST-FIREWALL-ACTIVE": Status.PASSED}


def test_nftables_rules_are_recognised() -> None:
    empty = "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority 0;\n\t}\n}"
    ruled = ("table inet filter {\n\tchain input {\n\t\ttype filter hook input priority 0;"
             " policy drop;\n\t\ttcp dport 22 accept\n\t}\n}")
    assert not security.nft_has_rules(empty)
    assert security.nft_has_rules(ruled)
    assert not security.ufw_enabled("ENABLED=no\n")
