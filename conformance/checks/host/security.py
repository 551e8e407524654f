"""Guide 6.1: a firewall is active and SSH refuses passwords."""

from __future__ import annotations

import re
from collections.abc import Iterator

from conformance.checks.host.common import HostView, finding, hosts
from conformance.checks.registry import CheckContext, check
from conformance.model import Evidence, Finding, Status


def ufw_enabled(conf: str) -> bool:
    return re.search(r"^\s*ENABLED\s*=\s*yes\s*$", conf, re.MULTILINE | re.IGNORECASE) is not None


def nft_has_rules(ruleset: str) -> bool:
    """A ruleset with at least one chain holding a rule or a drop/reject policy."""
    for chain in re.findall(r"chain\s+\S+\s*\{(.*?)\n\s*\}", ruleset, re.DOTALL):
        lines = [ln.strip() for ln in chain.splitlines() if ln.strip()]
        if any("policy drop" in ln or "policy reject" in ln for ln in lines):
            return True
        if any(not ln.startswith(("type ", "policy ")) for ln in lines):
            return True
    return False


def firewall_evidence(host: HostView) -> tuple[str | None, list[Evidence]]:
    """The active firewall's name, or None, with what was looked at."""
    seen: list[Evidence] = []
    conf = host.read("/etc/ufw/ufw.conf")
    if conf is not None:
        seen.append(host.file_evidence("/etc/ufw/ufw.conf", "ENABLED=yes?"))
        if ufw_enabled(conf):
            return "ufw", seen
    if host.has_command("firewall-cmd"):
        done = host.run("firewall-cmd", "--state")
        seen.append(done.evidence())
        if done.ok and done.stdout.strip() == "running":
            return "firewalld", seen
    if host.has_command("nft"):
        done = host.run("nft", "list", "ruleset")
        seen.append(done.evidence())
        if done.ok and nft_has_rules(done.stdout):
            return "nftables", seen
    if host.has_command("systemctl"):
        # Without root `nft list ruleset` is refused; a service that loads rules at boot still
        # says a firewall is configured.
        for service in ("firewalld", "nftables", "ufw"):
            done = host.run("systemctl", "is-active", service)
            if done.ok and done.stdout.strip() == "active":
                seen.append(done.evidence())
                if service != "ufw":  # ufw.service is active even when ufw is disabled
                    return f"{service} (service active)", seen
    return None, seen


@check("HOST-FIREWALL-ACTIVE", needs=("hosts",))
def firewall(context: CheckContext) -> Iterator[Finding]:
    for host in hosts(context):
        name, evidence = firewall_evidence(host)
        if name:
            yield finding("HOST-FIREWALL-ACTIVE", Status.PASSED, host, f"{name} is active",
                          *evidence)
        else:
            yield finding("HOST-FIREWALL-ACTIVE", Status.FAILED, host,
                          "no active firewall found (ufw enabled, firewalld running or nftables "
                          "rules)", *evidence, expected="an active firewall", actual="none")


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


@check("HOST-SSH-NO-PASSWORD", needs=("hosts",))
def ssh_passwords(context: CheckContext) -> Iterator[Finding]:
    for host in hosts(context):
        value: str | None = None
        evidence: list[Evidence] = []
        if host.root in ("", "/") and host.has_command("sshd"):
            done = host.run("sshd", "-T")
            if done.ok:
                value = sshd_setting(done.stdout, "passwordauthentication")
                evidence = [done.evidence("effective configuration")]
        if value is None:
            text, evidence = sshd_config_text(host)
            if text is None:
                yield finding("HOST-SSH-NO-PASSWORD", Status.NOT_APPLICABLE, host,
                              "no SSH server configuration (/etc/ssh/sshd_config)")
                continue
            value = sshd_setting(text, "PasswordAuthentication") or "yes"  # sshd's default
        if value == "no":
            yield finding("HOST-SSH-NO-PASSWORD", Status.PASSED, host,
                          "sshd refuses password logins", *evidence)
        else:
            yield finding("HOST-SSH-NO-PASSWORD", Status.FAILED, host,
                          f"sshd accepts passwords (PasswordAuthentication {value})", *evidence,
                          expected="PasswordAuthentication no", actual=value)
