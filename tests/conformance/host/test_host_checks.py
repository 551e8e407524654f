"""Host checks on testinfra's local backend, reading a fake file tree where checks read files."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest

from conformance.checks.host import common, layout, resources, security, system
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


def cpuinfo(cores: int, threads_per_core: int) -> str:
    blocks = []
    for n in range(cores * threads_per_core):
        blocks.append(f"processor\t: {n}\nphysical id\t: 0\ncore id\t\t: {n % cores}\n")
    return "\n".join(blocks)


@pytest.mark.parametrize(
    ("text", "status", "actual"),
    [(cpuinfo(2, 2), Status.FAILED, "2 physical cores, 4 logical CPUs"),  # hyperthreads
     (cpuinfo(4, 2), Status.PASSED, "4 physical cores, 8 logical CPUs"),
     ("processor\t: 0\n\nprocessor\t: 1\n", Status.FAILED, "2 logical CPUs"),  # no core ids
     ("".join(f"processor\t: {i}\n\n" for i in range(8)), Status.PASSED, "8 logical CPUs")],
)
def test_cpu_cores_are_physical_cores_where_the_kernel_lists_them(
        tmp_path: Path, text: str, status: Status, actual: str) -> None:
    write(tmp_path, "/proc/cpuinfo", text)
    [finding] = resources.cpu_cores(context(tmp_path))
    assert (finding.status, finding.actual) == (status, actual)


def test_memory_read_from_proc(tmp_path: Path) -> None:
    write(tmp_path, "/proc/meminfo", "MemTotal:       16303144 kB\nMemFree: 1 kB\n")
    assert statuses(resources.memory, tmp_path) == {"HOST-MEMORY": Status.PASSED}
    write(tmp_path, "/proc/meminfo", "MemTotal:       4030000 kB\n")
    assert statuses(resources.memory, tmp_path) == {"HOST-MEMORY": Status.FAILED}


def test_df_output_is_read_in_bytes() -> None:
    """`df -P -B1` as GNU coreutils prints it (the SSH host tests judge real volumes with it)."""
    output = ("Filesystem         1-blocks  Used    Available Capacity Mounted on\n"
              "tmpfs          107374182400  4096 107374178304       1% /opt/taskforge\n")
    assert resources.parse_df(output) == resources.DiskUsage(
        device="tmpfs", size=107374182400, free=107374178304, mount="/opt/taskforge")
    assert resources.parse_df("df: /x: No such file or directory\n") is None


def test_cpus_outside_the_hosts_cpuset_are_not_counted(tmp_path: Path) -> None:
    """A container server granted 2 of the machine's 8 threads (cgroup v1 and v2 files)."""
    write(tmp_path, "/proc/cpuinfo", cpuinfo(4, 2))  # CPUs n and n+4 share core n % 4
    write(tmp_path, "/sys/fs/cgroup/cpuset/cpuset.effective_cpus", "0,4\n")
    [finding] = resources.cpu_cores(context(tmp_path))
    assert (finding.status, finding.actual) == (Status.FAILED, "1 physical cores, 2 logical CPUs")
    assert "grants, of 8 in /proc/cpuinfo" in finding.message
    write(tmp_path, "/sys/fs/cgroup/cpuset.cpus.effective", "0-7\n")  # v2 is read first
    [finding] = resources.cpu_cores(context(tmp_path))
    assert (finding.status, finding.actual) == (Status.PASSED, "4 physical cores, 8 logical CPUs")


@pytest.mark.parametrize(
    ("limit", "status", "actual"),
    [("2147483648\n", Status.FAILED, "2.0 GiB"),  # a container server's limit
     ("9223372036854771712\n", Status.PASSED, "15.5 GiB"),  # cgroup v1's "no limit"
     ("max\n", Status.PASSED, "15.5 GiB")],  # v2's
)
def test_memory_is_capped_by_the_hosts_cgroup_limit(tmp_path: Path, limit: str, status: Status,
                                                    actual: str) -> None:
    write(tmp_path, "/proc/meminfo", "MemTotal:       16303144 kB\n")
    path = ("/sys/fs/cgroup/memory.max" if limit.startswith("max")
            else "/sys/fs/cgroup/memory/memory.limit_in_bytes")
    write(tmp_path, path, limit)
    [finding] = resources.memory(context(tmp_path))
    assert (finding.status, finding.actual) == (status, actual)


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


@pytest.mark.docker
def test_docker_checks_on_a_machine_whose_engine_answers(docker_engine: None) -> None:
    """This machine runs the tests' Docker engine, and the tests talk to it as its owner."""
    local = CheckContext(hosts=("local://",))
    for check, item in ((system.docker_installed, "HOST-DOCKER-VERSION"),
                        (system.docker_engine, "HOST-DOCKER-ENGINE"),
                        (system.docker_group, "HOST-DOCKER-GROUP")):
        [finding] = check(local)
        assert (finding.item_id, finding.status) == (item, Status.PASSED), finding.message
        assert finding.host == "local://"
        assert finding.message.startswith("local://: ")


@pytest.mark.parametrize(
    ("version", "plugin", "status", "says"),
    [((1, 25, 0), None, Status.FAILED, "older than 1.27"),  # Ubuntu 20.04's apt
     ((1, 29, 2), None, Status.PASSED, "(v1)"),  # Ubuntu 22.04's and Debian 12's apt
     ((2, 24, 1), None, Status.PASSED, "(v2)"),  # v2 installed as docker-compose
     (None, (2, 24, 1), Status.FAILED, "guide's commands call `docker-compose`"),
     (None, None, Status.FAILED, "neither")],
)
def test_compose_is_judged_on_the_docker_compose_the_guide_calls(
        version: tuple[int, ...] | None, plugin: tuple[int, ...] | None, status: Status,
        says: str) -> None:
    got, message = system.judge_compose(version, plugin)
    assert got is status
    assert says in message


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


GUIDE_BACKUP = """
services:
  backup:
    image: tiredofit/db-backup
    volumes:
      - ./backups:/backup
      - /etc/localtime:/etc/localtime:ro
    environment:
      - SCHEDULE=@daily
"""
REFERENCE_BACKUP = """
services:
  backup:
    image: postgres:16-alpine
    environment:
      BACKUP_INTERVAL_SECONDS: ${BACKUP_INTERVAL_SECONDS:-21600}
    command: [sh, -c, "pg_dump | gzip > /backups/x.sql.gz"]
    volumes:
      - taskforge_backups:/backups
"""


@pytest.mark.parametrize(
    ("compose", "directory", "hours"),
    [(GUIDE_BACKUP, "/opt/taskforge/app/backups", 24),  # ./backups beside the compose file
     (REFERENCE_BACKUP, "volume:taskforge_backups", 6),  # a named volume, interval from .env
     ("services:\n  db:\n    image: postgres\n", None, 24)],
)
def test_the_backup_directory_and_schedule_come_from_the_compose_file(
        compose: str, directory: str | None, hours: int) -> None:
    place = layout.backup_place_from_compose(compose, "/opt/taskforge/app", "compose.yml")
    assert (place.directory, place.interval_seconds) == (directory, hours * 3600)


@pytest.mark.parametrize(("env", "hours"), [({"SCHEDULE": "@hourly"}, 1),
                                            ({"SCHEDULE": "0 2 * * *"}, 24),
                                            ({"SCHEDULE": "0 3 * * 0"}, 168),
                                            ({"DB_DUMP_FREQ": "720"}, 12), ({}, 24)])
def test_backup_schedules(env: dict[str, str], hours: int) -> None:
    assert layout.schedule_seconds(env) == hours * 3600


def test_without_a_compose_file_the_guides_backup_directory_is_judged(tmp_path: Path) -> None:
    [finding] = layout.backups_recent(context(tmp_path))
    assert finding.status is Status.FAILED
    assert "no backups directory /opt/taskforge/app/backups" in finding.message


@pytest.mark.parametrize(
    ("config", "dropin", "status"),
    [("PasswordAuthentication no\n", None, Status.PASSED),  # no PAM: kbd-interactive asks nothing
     ("PasswordAuthentication no\nUsePAM yes\n", None, Status.FAILED),  # kbd default: yes
     ("PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM yes\n", None,
      Status.PASSED),
     ("PasswordAuthentication no\nChallengeResponseAuthentication yes\nUsePAM yes\n", None,
      Status.FAILED),  # the name before OpenSSH 8.7
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


def test_the_firewall_cannot_be_judged_from_the_server_itself(tmp_path: Path) -> None:
    [finding] = security.firewall(context(tmp_path))
    assert finding.status is Status.NOT_APPLICABLE
    assert "--hosts ssh://user@server" in finding.message


@contextlib.contextmanager
def listener(behaviour: str) -> Iterator[int]:
    """A real TCP server on 127.0.0.1: `holds` keeps connections open, `closes` shuts them."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.1)
        kept = []
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            if behaviour == "closes":
                conn.close()
            else:
                kept.append(conn)
        for conn in kept:
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()


def test_a_port_answers_only_when_something_holds_the_connection() -> None:
    with listener("holds") as held, listener("closes") as closed:
        assert security.probe_port("127.0.0.1", held) == "answers"
        # What Docker's userland proxy does when nothing listens behind a published port.
        assert security.probe_port("127.0.0.1", closed) == "closed"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        free = sock.getsockname()[1]
    assert security.probe_port("127.0.0.1", free) == "refused"


def test_ufw_and_nftables_state_is_read() -> None:
    assert security.ufw_enabled("# /etc/ufw/ufw.conf\nENABLED=yes\nLOGLEVEL=low\n")
    assert not security.ufw_enabled("ENABLED=no\n")
    assert security.ufw_default_deny('DEFAULT_INPUT_POLICY="DROP"\n')
    assert not security.ufw_default_deny('DEFAULT_INPUT_POLICY="ACCEPT"\n')
    assert security.ufw_allowed_ports(
        "-A ufw-user-input -p tcp --dport 22 -j ACCEPT\n"
        "-A ufw-user-input -p tcp --dport 5432 -j DROP\n") == {22}
    empty = "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority 0;\n\t}\n}"
    ruled = ("table inet filter {\n\tchain input {\n\t\ttype filter hook input priority 0;"
             " policy drop;\n\t\ttcp dport 22 accept\n\t}\n}")
    assert not security.nft_has_rules(empty)
    assert security.nft_has_rules(ruled)


def test_reports_show_a_host_without_its_password_or_query() -> None:
    assert common.display_spec("ssh://deploy:hunter2@server:2222?ssh_config=/x") == (
        "ssh://deploy@server:2222")
    assert common.display_spec("local://") == "local://"
