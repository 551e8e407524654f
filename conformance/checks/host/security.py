"""Guide 6.1: only SSH, HTTP and HTTPS answer from outside, and SSH refuses passwords."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from conformance.checks.host.common import HostView, finding, hosts
from conformance.checks.registry import CheckContext, check
from conformance.model import Evidence, Finding, Status

#: The deployment's ports (guide 3.2 compose file, 5.x monitoring) and whether the guide lets
#: them answer from outside: only SSH, HTTP and HTTPS may (6.1 "Firewall dikonfigurasi").
DEPLOYMENT_PORTS: tuple[tuple[int, str, bool], ...] = (
    (22, "SSH", True), (80, "HTTP", True), (443, "HTTPS", True),
    (5432, "PostgreSQL", False), (6379, "Redis", False), (9090, "Prometheus", False),
    (9093, "Alertmanager", False), (3000, "Grafana", False), (8000, "the app itself", False),
)
CONNECT_TIMEOUT_SECONDS = 2.0
#: After a connect, how long a silent open connection counts as a server waiting for its client.
#: A proxy with nothing behind it (Docker's userland proxy, a load balancer) closes well before.
READ_TIMEOUT_SECONDS = 1.0


@dataclass(frozen=True, kw_only=True, slots=True)
class PortState:
    port: int
    service: str
    allowed: bool
    state: str  # answers, closed, refused, filtered, unreachable

    @property
    def answers(self) -> bool:
        return self.state == "answers"

    def line(self) -> str:
        return f"{self.port} ({self.service}): {self.state}"


def probe_port(address: str, port: int, *, connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
               read_timeout: float = READ_TIMEOUT_SECONDS) -> str:
    """One bounded connect: `answers` only when something holds the connection (or speaks)."""
    try:
        sock = socket.create_connection((address, port), timeout=connect_timeout)
    except ConnectionRefusedError:
        return "refused"
    except TimeoutError:
        return "filtered"  # no answer at all: a firewall dropping the packets
    except OSError:
        return "unreachable"
    with sock:
        sock.settimeout(read_timeout)
        try:
            data = sock.recv(1)
        except TimeoutError:
            return "answers"  # a server waiting for its client to speak first (PostgreSQL, Redis)
        except OSError:
            return "closed"
        return "answers" if data else "closed"


def probe_ports(address: str, ports: list[tuple[int, str, bool]]) -> list[PortState]:
    """All ports at once: the whole probe takes one connect timeout plus one read timeout."""
    with ThreadPoolExecutor(max_workers=len(ports)) as pool:
        states = list(pool.map(lambda p: probe_port(address, p[0]), ports))
    return [PortState(port=p, service=s, allowed=a, state=state)
            for (p, s, a), state in zip(ports, states, strict=True)]


def ufw_enabled(conf: str) -> bool:
    return re.search(r"^\s*ENABLED\s*=\s*yes\s*$", conf, re.MULTILINE | re.IGNORECASE) is not None


def ufw_default_deny(defaults: str) -> bool:
    match = re.search(r"^\s*DEFAULT_INPUT_POLICY\s*=\s*\"?(\w+)", defaults, re.MULTILINE)
    return match is None or match.group(1).upper() in ("DROP", "REJECT")  # ufw's default: DROP


def ufw_allowed_ports(user_rules: str) -> set[int]:
    """Ports ufw's user rules accept (`ufw allow 22/tcp` writes `--dport 22 -j ACCEPT`)."""
    return {int(m.group(1)) for m in re.finditer(r"--dport\s+(\d+)\b[^\n]*-j\s+ACCEPT", user_rules)}


def nft_has_rules(ruleset: str) -> bool:
    """A ruleset with at least one chain holding a rule or a drop/reject policy."""
    for chain in re.findall(r"chain\s+\S+\s*\{(.*?)\n\s*\}", ruleset, re.DOTALL):
        lines = [ln.strip() for ln in chain.splitlines() if ln.strip()]
        if any("policy drop" in ln or "policy reject" in ln for ln in lines):
            return True
        if any(not ln.startswith(("type ", "policy ")) for ln in lines):
            return True
    return False


@dataclass(frozen=True, kw_only=True, slots=True)
class FirewallService:
    """What the server's firewall service says about itself (information beside the probe)."""

    summary: str
    ufw_denies: frozenset[int] | None  # ufw enabled and denying by default: the ports it allows
    evidence: tuple[Evidence, ...]
    rules_read: bool = True  # ufw's user rules were readable (root or sudo)

    def denies(self, port: int) -> bool:
        return self.ufw_denies is not None and port not in self.ufw_denies


def firewall_service(host: HostView) -> FirewallService:
    seen: list[Evidence] = []
    conf = host.read("/etc/ufw/ufw.conf")
    if conf is not None:
        seen.append(host.file_evidence("/etc/ufw/ufw.conf", "ENABLED=yes?"))
        if ufw_enabled(conf):
            defaults = host.read("/etc/default/ufw") or ""
            if ufw_default_deny(defaults):
                rules = host.run_privileged("cat", host.path("/etc/ufw/user.rules"))
                seen.append(rules.evidence("ufw's user rules"))
                allowed = ufw_allowed_ports(rules.stdout) if rules.ok else set()
                shown = (", ".join(map(str, sorted(allowed))) or "none") if rules.ok else (
                    "unknown: its rules need root or sudo to read")
                return FirewallService(summary=f"ufw enabled, incoming denied by default "
                                               f"(allowed: {shown})",
                                       ufw_denies=frozenset(allowed), evidence=tuple(seen),
                                       rules_read=rules.ok)
            return FirewallService(summary="ufw enabled, incoming allowed by default",
                                   ufw_denies=None, evidence=tuple(seen))
    if host.has_command("firewall-cmd"):
        done = host.run_privileged("firewall-cmd", "--state")
        seen.append(done.evidence())
        if done.ok and done.stdout.strip() == "running":
            return FirewallService(summary="firewalld running", ufw_denies=None,
                                   evidence=tuple(seen))
    done = host.run_privileged("nft", "list", "ruleset")
    if done.ok:
        seen.append(done.evidence())
        if nft_has_rules(done.stdout):
            return FirewallService(summary="nftables rules loaded (Docker adds its own)",
                                   ufw_denies=None, evidence=tuple(seen))
    return FirewallService(summary="no firewall service found (ufw disabled or absent, no "
                                   "firewalld; nftables unreadable or empty)",
                           ufw_denies=None, evidence=tuple(seen))


@check("HOST-FIREWALL-ACTIVE", needs=("hosts",))
def firewall(context: CheckContext) -> Iterator[Finding]:
    """Judged from outside: which of the deployment's ports answer at the server's address."""
    for host in hosts(context):
        address = host.address
        if address is None:
            yield finding("HOST-FIREWALL-ACTIVE", Status.NOT_APPLICABLE, host,
                          "which ports answer from outside cannot be seen from the server "
                          "itself: run the kit on another machine with --hosts "
                          "ssh://user@server")
            continue
        ports = list(DEPLOYMENT_PORTS)
        if host.ssh_port not in {p for p, _, _ in ports}:
            ports.append((host.ssh_port or 22, "SSH (the kit's connection)", True))
        states = probe_ports(address, ports)
        service = firewall_service(host)
        probed = Evidence(kind="text", summary=f"TCP connects to {address} from the kit's "
                                               f"machine ({CONNECT_TIMEOUT_SECONDS:.0f} s each)",
                          output="\n".join(s.line() for s in states))
        evidence = (probed, *service.evidence)
        ssh = next(s for s in states if s.port == (host.ssh_port or 22))
        if not ssh.answers:
            yield finding("HOST-FIREWALL-ACTIVE", Status.NOT_APPLICABLE, host,
                          f"even the SSH port {ssh.port} is {ssh.state} at {address}, so "
                          f"{address} is not where the server answers (an ssh_config alias or a "
                          "jump host?): give --hosts the server's own address", *evidence)
            continue
        open_ = [s for s in states if s.answers and not s.allowed]
        info = f"firewall service: {service.summary}"
        if open_:
            shown = ", ".join(f"{s.port} ({s.service})" for s in open_)
            message = f"{shown} answer(s) from outside at {address}; {info}"
            bypassed = [s.port for s in open_ if service.denies(s.port)]
            if bypassed:
                denies = (f"ufw denies {', '.join(map(str, bypassed))}" if service.rules_read
                          else "ufw denies incoming by default (unless its unread rules allow "
                               f"{', '.join(map(str, bypassed))})")
                message += (f". {denies} yet it answers: Docker's published ports bypass ufw "
                            "(Docker's own chains accept them before ufw's rules run); publish "
                            "them on 127.0.0.1 in the compose file or drop their `ports:` "
                            "entries")
            yield finding("HOST-FIREWALL-ACTIVE", Status.FAILED, host, message, *evidence,
                          expected="only 22, 80 and 443 answer from outside",
                          actual=f"{shown} answer(s)")
        else:
            answering = ", ".join(str(s.port) for s in states if s.answers)
            yield finding("HOST-FIREWALL-ACTIVE", Status.PASSED, host,
                          f"only {answering} answer at {address}; none of "
                          + ", ".join(str(s.port) for s in states if not s.allowed)
                          + f" does; {info}", *evidence)


def sshd_setting(config: str, name: str) -> str | None:
    """The effective value of a keyword: sshd takes the first one outside Match blocks."""
    for raw in config.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, value = line.partition(" ")
        if keyword.lower() == "match":
            break  # conditional blocks follow; the global value is decided above them
        if keyword.lower() == name.lower():
            return value.strip().strip('"').lower()
    return None


def sshd_config_text(host: HostView) -> tuple[str | None, list[Evidence]]:
    """sshd_config with its Include'd drop-ins first, in the order sshd reads them."""
    main = host.read("/etc/ssh/sshd_config")
    if main is None:
        return None, []
    parts: list[str] = []
    evidence = [host.file_evidence("/etc/ssh/sshd_config")]
    for line in main.splitlines():
        match = re.match(r"^\s*Include\s+(\S+)", line, re.IGNORECASE)
        if match and match.group(1).startswith("/etc/ssh/sshd_config.d/"):
            listing = host.host.file(host.path("/etc/ssh/sshd_config.d"))
            for name in sorted(listing.listdir() if listing.is_directory else []):
                if name.endswith(".conf"):
                    text = host.read(f"/etc/ssh/sshd_config.d/{name}") or ""
                    parts.append(text)
                    evidence.append(host.file_evidence(f"/etc/ssh/sshd_config.d/{name}"))
        else:
            parts.append(line)
    return "\n".join(parts), evidence


@dataclass(frozen=True, kw_only=True, slots=True)
class SshAuth:
    password_auth: str  # effective PasswordAuthentication
    kbd_interactive: str  # effective KbdInteractiveAuthentication (ChallengeResponse before 8.7)
    use_pam: str
    source: str  # "sshd -T" or "configuration files"


def judge_ssh(auth: SshAuth) -> tuple[Status, str]:
    problems = []
    if auth.password_auth != "no":  # noqa: S105 - an sshd setting's value, not a secret
        problems.append(f"PasswordAuthentication {auth.password_auth}")
    if auth.kbd_interactive != "no" and auth.use_pam == "yes":
        problems.append(f"KbdInteractiveAuthentication {auth.kbd_interactive} with UsePAM yes "
                        "(PAM asks for the password that way)")
    if problems:
        return Status.FAILED, f"sshd accepts passwords: {'; '.join(problems)} ({auth.source})"
    note = "" if auth.kbd_interactive == "no" else (
        "; KbdInteractiveAuthentication is on but UsePAM is off, so it offers no password")
    return Status.PASSED, f"sshd refuses password logins ({auth.source}){note}"


def ssh_auth(host: HostView) -> tuple[SshAuth | None, list[Evidence]]:
    """The effective settings: `sshd -T` (root or sudo) when it answers, else the files."""
    if host.root in ("", "/"):
        done = host.run_privileged("sshd", "-T")
        if done.ok and "passwordauthentication" in done.stdout:
            kbd = (sshd_setting(done.stdout, "kbdinteractiveauthentication")
                   or sshd_setting(done.stdout, "challengeresponseauthentication") or "yes")
            password = sshd_setting(done.stdout, "passwordauthentication") or "yes"
            return SshAuth(password_auth=password, kbd_interactive=kbd,
                           use_pam=sshd_setting(done.stdout, "usepam") or "no",
                           source="sshd -T"), [done.evidence("effective configuration")]
    text, evidence = sshd_config_text(host)
    if text is None:
        return None, []
    # sshd's own defaults where the files say nothing: passwords and keyboard-interactive on.
    kbd = (sshd_setting(text, "KbdInteractiveAuthentication")
           or sshd_setting(text, "ChallengeResponseAuthentication") or "yes")
    return SshAuth(password_auth=sshd_setting(text, "PasswordAuthentication") or "yes",
                   kbd_interactive=kbd, use_pam=sshd_setting(text, "UsePAM") or "no",
                   source="configuration files; `sshd -T` needs root or sudo"), evidence


#: Offered methods that end in a password prompt.
PASSWORD_METHODS = ("password", "keyboard-interactive")
SSH_PROBE_TIMEOUT_SECONDS = 15


def offered_methods(address: str, port: int, user: str) -> tuple[list[str] | None, Evidence]:
    """What the running sshd offers a client, seen from outside: an authentication with the
    `none` method is refused with the list of methods that can continue. Catches a
    configuration changed on disk but not reloaded, either way."""
    argv = ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "PreferredAuthentications=none",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", "-p", str(port),
            f"{user}@{address}", "true"]
    shown = " ".join(argv)
    if shutil.which("ssh") is None:
        return None, Evidence(kind="command", command=shown, output="no ssh client here")
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False,
                              timeout=SSH_PROBE_TIMEOUT_SECONDS, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return None, Evidence(kind="command", command=shown, output="timed out")
    match = re.search(r"Permission denied \(([^)]*)\)", done.stderr)
    evidence = Evidence(kind="command", command=shown, summary="the running sshd, from outside",
                        output=done.stderr.strip()[:500])
    return (match.group(1).split(",") if match else None), evidence


@check("HOST-SSH-NO-PASSWORD", needs=("hosts",))
def ssh_passwords(context: CheckContext) -> Iterator[Finding]:
    for host in hosts(context):
        auth, evidence = ssh_auth(host)
        offered: list[str] | None = None
        if host.address is not None:
            user = host.run("id", "-un").stdout.strip() or "root"
            offered, seen = offered_methods(host.address, host.ssh_port or 22, user)
            evidence.append(seen)
        if auth is None and offered is None:
            yield finding("HOST-SSH-NO-PASSWORD", Status.NOT_APPLICABLE, host,
                          "no SSH server configuration (/etc/ssh/sshd_config)")
            continue
        status, message = judge_ssh(auth) if auth is not None else (
            Status.PASSED, "sshd's configuration unreadable")
        prompts = [m for m in offered or () if m in PASSWORD_METHODS]
        if prompts:
            hint = (" (the configuration on disk refuses them: reload sshd)"
                    if status is Status.PASSED else "")
            status = Status.FAILED
            message += f"; the running sshd offers {', '.join(prompts)}{hint}"
        elif offered is not None:
            message += f"; the running sshd offers only {', '.join(offered)}"
            if status is Status.FAILED:
                message += " (the configuration on disk takes effect when sshd is reloaded)"
        actual = ("" if auth is None else
                  f"PasswordAuthentication {auth.password_auth}, KbdInteractiveAuthentication "
                  f"{auth.kbd_interactive}, UsePAM {auth.use_pam}")
        if offered is not None:
            actual += ("; " if actual else "") + f"offered: {','.join(offered)}"
        yield finding("HOST-SSH-NO-PASSWORD", status, host, message, *evidence,
                      expected="PasswordAuthentication no, KbdInteractiveAuthentication no; "
                               "only publickey offered",
                      actual=actual)
