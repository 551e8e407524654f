"""The reference deployment of compose/, completed as its operator would before the static checks.

compose/ ships `.env.example` with its secrets left empty and no TLS certificate (neither belongs
in a repository). `prepare_reference_deployment` is the one preparation of it, used by a default
`run` (`cli.prepare_repo_deployment`) and by the tests: it copies compose/ to a scratch directory,
generates each value the example leaves empty (as its header says), and installs a throwaway
certificate for BASE_URL's host (guide 4.2 step 3), so that the reference files are judged the
way a deployment would use them. Everything else is checked exactly as the repository has it,
RUNBOOK.md (the procedures its operator runs, judged by the PROC-* items) among them.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

_EMPTY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=[ \t]*$", re.MULTILINE)
_BASE_URL = re.compile(r"^BASE_URL=(\S+)$", re.MULTILINE)


@dataclass(frozen=True, kw_only=True, slots=True)
class PreparedDeployment:
    """The completed copy: its files as CheckContext fields, and what the preparation did."""

    directory: Path
    files: dict[str, Path | None]
    rules: tuple[Path, ...]
    generated: tuple[str, ...]
    host: str

    def context_fields(self) -> dict[str, object]:
        return {**self.files, "prometheus_rules": self.rules}

    def note(self) -> str:
        return (f"static: compose/ prepared in a scratch copy as guide 4.2 steps 2-3 do: .env from "
                f".env.example (mode 600; generated {', '.join(self.generated) or 'nothing'}), a "
                f"throwaway certificate for {self.host} in nginx/ssl/"
                + ("; its RUNBOOK.md is the procedures the PROC-* items judge"
                   if self.files.get("runbook") else ""))


def fill_empty_values(text: str) -> tuple[str, tuple[str, ...]]:
    """The example's empty `NAME=` lines filled with generated values, and the names filled."""
    names: list[str] = []

    def generate(match: re.Match[str]) -> str:
        names.append(match.group(1))
        return f"{match.group(1)}={secrets.token_urlsafe(48)}"

    return _EMPTY.sub(generate, text), tuple(names)


def install_certificate(ssl_dir: Path, host: str) -> None:
    """A certificate for `host` from a throwaway CA, where guide 4.2 step 3 installs it."""
    import trustme  # only a default run needs it

    issued = trustme.CA().issue_cert(host)
    ssl_dir.mkdir(parents=True, exist_ok=True)
    (ssl_dir / "certificate.crt").write_bytes(b"".join(p.bytes() for p in issued.cert_chain_pems))
    _write_private(ssl_dir / "private.key", issued.private_key_pem.bytes())


def _write_private(path: Path, data: bytes) -> None:
    """Created with mode 600: the secret is never readable by others, not even for a moment."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def artifacts_in(directory: Path) -> tuple[dict[str, Path | None], tuple[Path, ...]]:
    """The deployment files of a compose/-shaped directory (those that exist), and its rules."""
    found = {
        "env_file": directory / ".env",
        "compose_file": directory / "docker-compose.prod.yml",
        "dockerfile": directory / "Dockerfile",
        "nginx_conf": directory / "nginx" / "nginx.conf",
        "prometheus_config": directory / "prometheus" / "prometheus.yml",
        "runbook": directory / "RUNBOOK.md",
    }
    files: dict[str, Path | None] = {k: (p if p.is_file() else None) for k, p in found.items()}
    prometheus = directory / "prometheus"
    rules = tuple(sorted(p for p in prometheus.glob("*.y*ml") if p.name != "prometheus.yml"))
    return files, rules


def prepare_reference_deployment(compose_dir: Path, target: Path) -> PreparedDeployment:
    """Copy compose/ into `target` (which must not exist) and complete it."""
    shutil.copytree(compose_dir, target, ignore=shutil.ignore_patterns("images", ".env"))
    text, generated = fill_empty_values((compose_dir / ".env.example").read_text(encoding="utf-8"))
    _write_private(target / ".env", text.encode("utf-8"))
    match = _BASE_URL.search(text)
    host = (urlsplit(match.group(1)).hostname if match else None) or "localhost"
    install_certificate(target / "nginx" / "ssl", host)
    files, rules = artifacts_in(target)
    return PreparedDeployment(
        directory=target, files=files, rules=rules, generated=generated, host=host
    )
