"""Host checks over SSH against a real server (the SSH test host): clean it passes, each defect
fails its item. Every test restores what it flipped, so the tests share one container."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest
from sshhost_support import (
    BACKUPS,
    FRESH_INDEX,
    SMALL_DISK,
    STALE_INDEX,
    SshHost,
    lscpu_cores,
    machine_disks,
)

from conformance.checks.host import layout, resources, security, system
from conformance.checks.live import containers
from conformance.checks.registry import CheckContext
from conformance.model import Finding, Status

# One worker holds the group (nox runs `--dist loadgroup`): one container for them all.
pytestmark = [pytest.mark.docker, pytest.mark.xdist_group("sshhost")]

Check = Callable[[CheckContext], Iterable[Finding]]


def judged(host: SshHost, check: Check, item: str, **options: object) -> Finding:
    [found] = [f for f in check(host.context(**options)) if f.item_id == item]
    assert found.host is not None and found.host.startswith("ssh://deploy@")
    assert "ssh_config" not in found.host  # the query (a local path) stays out of reports
    return found


@contextlib.contextmanager
def defect(host: SshHost, flip: str, restore: str) -> Iterator[None]:
    host.root(flip)
    try:
        yield
    finally:
        host.root(restore)


def test_the_clean_host_passes_what_it_was_prepared_for(ssh_host: SshHost) -> None:
    expected = {
        (layout.directories, "HOST-TASKFORGE-DIRS"): Status.PASSED,
        (layout.directories, "HOST-TASKFORGE-OWNER"): Status.PASSED,
        (system.docker_group, "HOST-DOCKER-GROUP"): Status.PASSED,
        (security.ssh_passwords, "HOST-SSH-NO-PASSWORD"): Status.PASSED,
        (security.firewall, "HOST-FIREWALL-ACTIVE"): Status.PASSED,
        (layout.backups_recent, "HOST-BACKUPS-RECENT"): Status.PASSED,
        (system.system_updates, "HOST-SYSTEM-UPDATES"): Status.PASSED,
        (system.compose_version, "HOST-COMPOSE-VERSION"): Status.PASSED,
        (system.docker_installed, "HOST-DOCKER-VERSION"): Status.PASSED,
        # The container runs no Docker daemon of its own.
        (system.docker_engine, "HOST-DOCKER-ENGINE"): Status.FAILED,
        # Sized below the guide (the fixture): one core, 2 GB, a 100 GB data volume.
        (resources.cpu_cores, "HOST-CPU-CORES"): Status.FAILED,
        (resources.memory, "HOST-MEMORY"): Status.FAILED,
        (resources.storage, "HOST-STORAGE-SIZE"): Status.PASSED,
        (resources.storage, "HOST-DISK-FREE"): Status.PASSED,
        # Debian 12: new enough, not in the guide's list.
        (system.operating_system, "HOST-OS-VERSION"): Status.PASSED,
        (system.operating_system, "HOST-OS-LISTED"): Status.FAILED,
    }
    got = {key: judged(ssh_host, key[0], key[1]) for key in expected}
    assert {key: f.status for key, f in got.items()} == expected, {
        key[1]: f.message for key, f in got.items() if f.status is not expected[key]}
    assert "sshd -T" in got[(security.ssh_passwords, "HOST-SSH-NO-PASSWORD")].message
    assert "daemon is not running" in got[(system.docker_engine, "HOST-DOCKER-ENGINE")].message
    assert "docker-compose 1.29.2 (v1)" in got[(system.compose_version,
                                                "HOST-COMPOSE-VERSION")].message
    backups = got[(layout.backups_recent, "HOST-BACKUPS-RECENT")].message
    assert f"{BACKUPS}/taskforge_" in backups
    assert "service 'backup' of /opt/taskforge/app/docker-compose.prod.yml" in backups
    assert "complete" in backups  # pg_dump's closing line was read through gzip


def test_cpu_cores_are_the_physical_cores_of_the_cpus_the_host_is_granted(
        ssh_host: SshHost) -> None:
    """The host holds CPU 0 and its thread siblings (its cpuset): one physical core, whatever
    /proc/cpuinfo lists of the machine beneath. lscpu counts them here, independently."""
    cpus = lscpu_cores()
    granted = [cpu for cpu, core in cpus.items() if core == cpus[0]]
    found = judged(ssh_host, resources.cpu_cores, "HOST-CPU-CORES")
    assert found.status is Status.FAILED, found.message
    assert found.actual == f"1 physical cores, {len(granted)} logical CPUs"
    assert "below the guide's minimum of 4" in found.message
    if len(cpus) > len(granted):
        assert f"grants, of {len(cpus)} in /proc/cpuinfo" in found.message


def test_memory_is_what_the_host_is_granted_not_the_machine_beneath(ssh_host: SshHost) -> None:
    """2 GB of cgroup limit on a machine whose MemTotal says more."""
    found = judged(ssh_host, resources.memory, "HOST-MEMORY")
    assert found.status is Status.FAILED, found.message
    assert found.actual == "2.0 GiB"
    assert "below the guide's minimum of 8 GB" in found.message
    assert "/sys/fs/cgroup/memory" in found.message


def test_storage_is_the_volume_holding_the_deployment_directory(ssh_host: SshHost) -> None:
    """/opt/taskforge is a 100 GB volume of its own, empty but for the deployment's files."""
    findings = {f.item_id: f for f in resources.storage(ssh_host.context())}
    size, free = findings["HOST-STORAGE-SIZE"], findings["HOST-DISK-FREE"]
    assert (size.status, size.actual) == (Status.PASSED, "107 GB")
    assert size.message.endswith("/opt/taskforge: 107 GB of storage (minimum: 50 GB)")
    assert free.status is Status.PASSED
    assert "GiB free of 100.0 GiB (100%)" in free.message


def test_a_small_data_disk_fails_and_a_full_one_fails_for_its_free_space(
        ssh_host: SshHost) -> None:
    """The deployment directory on a 64 MB filesystem, then that filesystem 60 MiB full."""
    options = {"taskforge_dir": SMALL_DISK}
    findings = {f.item_id: f for f in resources.storage(ssh_host.context(**options))}
    size = findings["HOST-STORAGE-SIZE"]
    assert (size.status, size.actual) == (Status.FAILED, "0 GB")
    assert "below the guide's minimum of 50 GB" in size.message
    with defect(ssh_host, f"head -c {60 * 1024 * 1024} /dev/zero > {SMALL_DISK}/fill",
                f"rm -f {SMALL_DISK}/fill"):
        free = judged(ssh_host, resources.storage, "HOST-DISK-FREE", **options)
    assert free.status is Status.FAILED, free.message
    assert "GiB free of 0.1 GiB (6%): below 10%" in free.message


def test_ssd_is_judged_on_the_disks_beneath_the_data_volume(ssh_host: SshHost) -> None:
    """The data volume is no block device: every disk of the machine is judged, and a
    rotational one fails (a virtio disk often says rotational; on this machine it decides)."""
    disks = machine_disks()
    assert disks, "no disk in /sys/block"
    spinning = sorted(name for name, flag in disks.items() if flag == "1")
    found = judged(ssh_host, resources.storage_ssd, "HOST-STORAGE-SSD")
    if spinning:
        assert found.status is Status.FAILED, found.message
        assert f"rotational disk(s): {', '.join(spinning)}" in found.message
    else:
        assert found.status is Status.PASSED, found.message
        assert found.message.endswith(f"non-rotational: {', '.join(sorted(disks))}")


UBUNTU_18 = 'NAME="Ubuntu"\nID=ubuntu\nVERSION_ID="18.04"\nPRETTY_NAME="Ubuntu 18.04.6 LTS"\n'
UBUNTU_22 = 'NAME="Ubuntu"\nID=ubuntu\nVERSION_ID="22.04"\nPRETTY_NAME="Ubuntu 22.04.4 LTS"\n'


@pytest.mark.parametrize(("release", "version", "listed"),
                         [(UBUNTU_18, Status.FAILED, Status.PASSED),
                          (UBUNTU_22, Status.PASSED, Status.PASSED)],
                         ids=["ubuntu-18.04", "ubuntu-22.04"])
def test_the_release_the_host_says_it_runs_is_judged(ssh_host: SshHost, release: str,
                                                     version: Status, listed: Status) -> None:
    """/etc/os-release (Debian's is a link into /usr/lib) replaced by another release's."""
    with defect(ssh_host, f"rm /etc/os-release && printf '{release}' > /etc/os-release",
                "rm -f /etc/os-release && ln -s ../usr/lib/os-release /etc/os-release"):
        findings = {f.item_id: f for f in system.operating_system(ssh_host.context())}
    assert findings["HOST-OS-VERSION"].status is version, findings["HOST-OS-VERSION"].message
    assert findings["HOST-OS-LISTED"].status is listed
    if version is Status.FAILED:
        assert "Ubuntu 18.04.6 LTS is older than ubuntu 20.4" in findings["HOST-OS-VERSION"].message


@pytest.mark.parametrize("setting", ["PasswordAuthentication yes",
                                     "KbdInteractiveAuthentication yes"])
def test_password_logins_fail(ssh_host: SshHost, setting: str) -> None:
    # A drop-in read before 10-keys-only.conf: sshd takes the first value it reads.
    with defect(ssh_host, f"echo '{setting}' > /etc/ssh/sshd_config.d/05-defect.conf",
                "rm -f /etc/ssh/sshd_config.d/05-defect.conf"):
        found = judged(ssh_host, security.ssh_passwords, "HOST-SSH-NO-PASSWORD")
    assert found.status is Status.FAILED
    assert setting in found.message


def test_a_running_sshd_that_offers_passwords_fails_though_its_files_say_no(
        ssh_host: SshHost) -> None:
    """Passwords switched on and sshd reloaded, then the file fixed without a reload."""
    dropin = "/etc/ssh/sshd_config.d/05-defect.conf"
    reload = "kill -HUP $(cat /run/sshd.pid) && sleep 0.5"
    with defect(ssh_host, f"echo 'PasswordAuthentication yes' > {dropin} && {reload} && "
                          f"rm {dropin}", reload):
        found = judged(ssh_host, security.ssh_passwords, "HOST-SSH-NO-PASSWORD")
    assert found.status is Status.FAILED
    assert "sshd refuses password logins (sshd -T)" in found.message  # the files
    assert "the running sshd offers password (the configuration on disk refuses them: reload " \
           "sshd)" in found.message  # the daemon, from outside


def test_missing_taskforge_directory_fails(ssh_host: SshHost) -> None:
    # /opt/taskforge is a mount point: the volume is there, the directories of step 2 are not.
    with defect(ssh_host, "mkdir /root/taskforge.away && mv /opt/taskforge/* /root/taskforge.away/",
                "mv /root/taskforge.away/* /opt/taskforge/ && rmdir /root/taskforge.away"):
        findings = {f.item_id: f for f in layout.directories(ssh_host.context())}
    assert findings["HOST-TASKFORGE-DIRS"].status is Status.FAILED
    assert findings["HOST-TASKFORGE-OWNER"].status is Status.NOT_APPLICABLE


def test_taskforge_directory_owned_by_root_fails(ssh_host: SshHost) -> None:
    with defect(ssh_host, "chown -R root:root /opt/taskforge",
                "chown -R deploy:deploy /opt/taskforge"):
        found = judged(ssh_host, layout.directories, "HOST-TASKFORGE-OWNER")
    assert found.status is Status.FAILED
    assert "'deploy'" in found.message


def test_user_outside_the_docker_group_fails(ssh_host: SshHost) -> None:
    with defect(ssh_host, "gpasswd -d deploy docker", "gpasswd -a deploy docker"):
        found = judged(ssh_host, system.docker_group, "HOST-DOCKER-GROUP")
    assert found.status is Status.FAILED


@pytest.mark.parametrize(
    ("flip", "why"),
    [(f"for f in {BACKUPS}/*; do : > $f; done", "empty"),
     (f"for f in {BACKUPS}/*; do echo 'not a dump' | gzip > $f; done", "not a PostgreSQL dump"),
     (f"for f in {BACKUPS}/*; do gzip -dc $f | head -n 40 | gzip > $f.cut; mv $f.cut $f; done",
      "cut short"),
     (f"touch -d '30 hours ago' {BACKUPS}/*", "30 h old")],
    ids=["empty", "not-a-dump", "truncated", "too-old"],
)
def test_a_bad_newest_backup_fails(ssh_host: SshHost, flip: str, why: str) -> None:
    keep = "/root/backups.kept"
    with defect(ssh_host, f"cp -a {BACKUPS} {keep} && {flip}",
                f"rm -rf {BACKUPS} && mv {keep} {BACKUPS}"):
        found = judged(ssh_host, layout.backups_recent, "HOST-BACKUPS-RECENT")
    assert found.status is Status.FAILED
    assert why in found.message


def test_a_custom_format_dump_this_pg_restore_cannot_read_is_not_judged(
        ssh_host: SshHost, custom_dump: bytes) -> None:
    """pg_dump 16's custom format; the host's pg_restore is Debian 12's 15, which cannot tell."""
    keep = "/root/backups.kept"
    ssh_host.root(f"cp -a {BACKUPS} {keep}")
    try:
        ssh_host.put(f"{BACKUPS}/zz.dump", custom_dump)
        ssh_host.root(f"chown deploy:deploy {BACKUPS}/zz.dump && touch {BACKUPS}/zz.dump")
        found = judged(ssh_host, layout.backups_recent, "HOST-BACKUPS-RECENT")
    finally:
        ssh_host.root(f"rm -rf {BACKUPS} && mv {keep} {BACKUPS}")
    assert found.status is Status.NOT_APPLICABLE, found.message
    assert f"{BACKUPS}/zz.dump" in found.message
    assert "pg_restore is too old to read" in found.message


def test_a_stale_package_index_fails(ssh_host: SshHost) -> None:
    # allow_writes alone is what the reference stack grants; it is no licence to write on a host.
    with defect(ssh_host, STALE_INDEX, FRESH_INDEX):
        found = judged(ssh_host, system.system_updates, "HOST-SYSTEM-UPDATES",
                       allow_writes=True)
    assert found.status is Status.FAILED
    assert "30 days old" in found.message


def test_pending_updates_fail(ssh_host: SshHost) -> None:
    """The mirror has published a newer sudo: the index offers it, the host has the old one."""
    packages = "/var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages"
    with defect(ssh_host, f"cp -p {packages} /root/Packages.kept && sed -i "
                          "'/^Package: sudo$/,/^$/ s/^Version: .*/Version: 99:9.9/' "
                          f"{packages} && apt-cache gencaches",
                f"mv /root/Packages.kept {packages} && apt-cache gencaches"):
        found = judged(ssh_host, system.system_updates, "HOST-SYSTEM-UPDATES")
    assert found.status is Status.FAILED
    assert found.actual == "1"


def test_refreshing_the_index_needs_a_reachable_mirror(ssh_host: SshHost) -> None:
    """With --allow-writes the index is refreshed first; the test host has no route out."""
    found = judged(ssh_host, system.system_updates, "HOST-SYSTEM-UPDATES",
                   allow_host_writes=True)
    assert found.status is Status.ERROR
    assert "could not refresh the package index" in found.message


def test_docker_compose_missing_fails(ssh_host: SshHost) -> None:
    with defect(ssh_host, "mv /usr/bin/docker-compose /usr/bin/docker-compose.away",
                "mv /usr/bin/docker-compose.away /usr/bin/docker-compose"):
        found = judged(ssh_host, system.compose_version, "HOST-COMPOSE-VERSION")
    assert found.status is Status.FAILED


def test_docker_missing_fails(ssh_host: SshHost) -> None:
    with defect(ssh_host, "mv /usr/bin/docker /usr/bin/docker.away",
                "mv /usr/bin/docker.away /usr/bin/docker"):
        found = judged(ssh_host, system.docker_installed, "HOST-DOCKER-VERSION")
    assert found.status is Status.FAILED


def test_postgresql_answering_from_outside_fails_and_ufw_is_said_to_be_bypassed(
        ssh_host: SshHost) -> None:
    """A listener on 5432 behind a published port, with ufw enabled and denying by default."""
    pid = ssh_host.root("python3 -m http.server --bind 0.0.0.0 5432 >/dev/null 2>&1 & echo $!")
    ufw = ("sed -i 's/^ENABLED=no/ENABLED=yes/' /etc/ufw/ufw.conf && printf '%s\\n' "
           "'-A ufw-user-input -p tcp --dport 22 -j ACCEPT' > /etc/ufw/user.rules")
    try:
        ssh_host.root("for i in $(seq 50); do "
                      "python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", 5432))'"
                      " 2>/dev/null && exit 0; sleep 0.1; done; exit 1")
        with defect(ssh_host, ufw, "sed -i 's/^ENABLED=yes/ENABLED=no/' /etc/ufw/ufw.conf && "
                                   "rm -f /etc/ufw/user.rules"):
            found = judged(ssh_host, security.firewall, "HOST-FIREWALL-ACTIVE")
    finally:
        ssh_host.root(f"kill {int(pid)}")
    assert found.status is Status.FAILED
    assert found.actual == "5432 (PostgreSQL) answer(s)"
    assert "Docker's published ports bypass ufw" in found.message


def test_containers_are_asked_of_the_servers_engine_which_does_not_answer(
        ssh_host: SshHost) -> None:
    """LIVE-CONTAINERS-HEALTHY with --hosts and no --docker-host: the server's own docker is
    asked over SSH; no daemon runs on the test host, which the finding says."""
    [found] = containers.containers_healthy(ssh_host.context(
        compose_file=Path(__file__).resolve().parents[3] / "compose" / "docker-compose.prod.yml"))
    assert found.status is Status.ERROR, found.message
    assert found.host is not None and found.host.startswith("ssh://deploy@")
    assert "the Docker engine does not answer on that host" in found.message
    assert "Cannot connect to the Docker daemon" in found.message
