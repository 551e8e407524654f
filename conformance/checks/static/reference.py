"""The reference deployment of compose/, completed as its operator would before the static checks.

compose/ ships `.env.example` with its secrets left empty and no TLS certificate (neither belongs
in a repository). `prepare_reference_deployment` copies compose/ to a scratch directory, generates
the secrets as the example's header says, and installs a throwaway certificate for BASE_URL's
host, so that a default run judges the reference files the way a deployment would use them.
"""

from __future__ import annotations

import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

#: The variables `.env.example` leaves empty for the operator to generate.
SECRET_VARIABLES = (
    "JWT_SECRET", "JWT_REFRESH_SECRET", "DB_PASSWORD", "REDIS_PASSWORD", "GRAFANA_ADMIN_PASSWORD",
)


@dataclass(frozen=True, kw_only=True, slots=True)
class ReferenceFiles:
    """The completed artifacts, as CheckContext fields."""

    env_file: Path
    compose_file: Path
    dockerfile: Path | None
    nginx_conf: Path
    prometheus_config: Path
    prometheus_rules: tuple[Path, ...]


def fill_secrets(text: str) -> str:
    """The example's empty secret lines (`NAME=`) filled with generated values."""
    for name in SECRET_VARIABLES:
        pattern = re.compile(rf"^{name}=$", re.MULTILINE)
        while pattern.search(text):  # one fresh value per line
            text = pattern.sub(f"{name}={secrets.token_urlsafe(48)}", text, count=1)
    return text


def install_certificate(ssl_dir: Path, host: str) -> None:
    """A certificate for `host` from a throwaway CA, where guide 4.2 step 3 installs it."""
    import trustme  # only a default run needs it

    issued = trustme.CA().issue_cert(host)
    ssl_dir.mkdir(parents=True, exist_ok=True)
    (ssl_dir / "certificate.crt").write_bytes(b"".join(p.bytes() for p in issued.cert_chain_pems))
    key = ssl_dir / "private.key"
    key.write_bytes(issued.private_key_pem.bytes())
    key.chmod(0o600)


def prepare_reference_deployment(compose_dir: Path, target: Path) -> ReferenceFiles:
    """Copy compose/ into `target` (which must not exist) and complete it; return its files."""
    shutil.copytree(compose_dir, target, ignore=shutil.ignore_patterns("images", ".env"))
    env = target / ".env"
    text = fill_secrets((compose_dir / ".env.example").read_text(encoding="utf-8"))
    env.write_text(text, encoding="utf-8")
    env.chmod(0o600)
    match = re.search(r"^BASE_URL=(\S+)$", text, re.MULTILINE)
    host = urlsplit(match.group(1)).hostname if match else None
    install_certificate(target / "nginx" / "ssl", host or "localhost")
    prometheus = target / "prometheus"
    dockerfile = target / "Dockerfile"
    return ReferenceFiles(
        env_file=env,
        compose_file=target / "docker-compose.prod.yml",
        dockerfile=dockerfile if dockerfile.is_file() else None,
        nginx_conf=target / "nginx" / "nginx.conf",
        prometheus_config=prometheus / "prometheus.yml",
        prometheus_rules=tuple(
            sorted(p for p in prometheus.glob("*.y*ml") if p.name != "prometheus.yml")
        ),
    )
