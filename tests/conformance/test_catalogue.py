"""The catalogue meta-test: every guide item has an entry, every entry a check or an attestation."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from conformance.catalogue import GUIDE_PATH, CatalogueError, guide_order, load_catalogue
from conformance.checks.all import registered_checks
from conformance.model import CatalogueEntry, Kind

#: The guide the repository carries must stay the verbatim copy of the shared seed.
GUIDE_SHA256 = "d1da3832bef40f4091cb9fec02437becc804d4a265430277e06c68d95344637e"

#: Verifiable statements outside the `- [ ]` checklists, section by section, in the guide's words.
#: An entry covers a statement when one text contains the other (markdown markup ignored).
STATEMENTS: tuple[tuple[str, str], ...] = (
    ("2.1", "**CPU**: 4 cores atau lebih (disarankan 8 cores untuk beban tinggi)"),
    ("2.1", "**RAM**: 8 GB atau lebih (disarankan 16 GB untuk beban tinggi)"),
    ("2.1", "**Storage**: 50 GB SSD atau lebih"),
    ("2.1", "**OS**: Ubuntu 20.04 LTS atau lebih baru, CentOS 8 atau lebih baru"),
    ("2.1", "PostgreSQL 13+ (disarankan 14+)"),
    ("2.1", "Redis 6+"),
    ("2.1", "TLS/SSL certificate (jika menggunakan HTTPS)"),
    ("2.1", "Load balancer (opsional tapi disarankan)"),
    ("2.2", "docker --version"),
    ("2.2", "docker-compose --version"),
    ("3.1", "DATABASE_URL=postgresql://taskforge:password@db:5432/taskforge_production"),
    ("3.1", "DB_PASSWORD=your_secure_password"),
    ("3.1", "REDIS_URL=redis://:password@redis:6379/"),
    ("3.1", "APP_ENVIRONMENT=production"),
    ("3.1", "APPLICATION_PORT=8000"),
    ("3.1", "BASE_URL=https://api.yourdomain.com"),
    ("3.1", "CORS_ALLOWED_ORIGINS=https://yourdomain.com,https://app.yourdomain.com"),
    ("3.1", "JWT_SECRET=your_super_secret_jwt_key_here_must_be_at_least_32_chars_long"),
    ("3.1", "JWT_REFRESH_SECRET=your_refresh_secret_key_at_least_32_chars"),
    ("3.1", "LOG_FORMAT=json"),
    ("3.1", "METRICS_ENABLED=true"),
    ("3.1", "SECURITY_HSTS=true"),
    ("3.1", "SECURITY_CSP=default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval';"),
    ("3.2", "# File: docker-compose.prod.yml"),
    ("3.2", 'test: ["CMD", "redis-cli", "ping"]'),
    ("3.2", "restart: unless-stopped"),
    ("3.2", "image: prom/prometheus:latest"),
    ("3.2", '- "5432:5432"'),
    ("3.2", "- /var/run/docker.sock:/var/run/docker.sock:ro"),
    ("3.2", "- '--web.enable-admin-api'"),
    ("3.2", "POSTGRES_PASSWORD: ${DB_PASSWORD}"),
    ("3.2", "--maxmemory-policy allkeys-lru"),
    ("3.2", "device: /opt/taskforge/data/postgres"),
    ("3.2", "# Environment variables from .env.production"),
    ("3.2", "version: '3.8'"),
    ("3.2", "# Reverse Proxy (NGINX)"),
    ("3.2", "- ./prometheus/prometheus.yml:/etc/prometheus/prometheus.yml"),
    ("3.2", 'test: ["CMD", "curl", "-f", "http://localhost:8000/health"]'),
    ("3.3", "# File: Dockerfile.prod"),
    ("3.3", "FROM rust:1.70 as builder"),
    ("3.3", "FROM debian:bullseye-slim"),
    ("3.3", "USER taskforge"),
    ("3.3", "HEALTHCHECK --interval=30s --timeout=3s --start-period=60s --retries=3"),
    ("4.2", "sudo apt install docker.io docker-compose -y"),
    ("4.2", "sudo usermod -aG docker $USER"),
    ("4.2", "sudo mkdir -p /opt/taskforge/{app,config,data,logs,backups}"),
    ("4.2", "scp .env.production user@production-server:/opt/taskforge/config/.env"),
    ("4.2", "sudo cp /path/to/your/certificate.crt /opt/taskforge/app/nginx/ssl/"),
    ("4.2", "#### Langkah 3: Konfigurasi SSL"),
    ("4.2", "export $(grep -v '^#' .env | xargs)"),
    ("4.2", "docker-compose -f docker-compose.prod.yml exec app sqlx migrate run"),
    ("5.2", "curl -k https://your-domain.com/health"),
    ("5.2", "curl -k https://your-domain.com/metrics"),
    ("5.2", "curl -X POST https://your-domain.com/api/v1/jobs"),
    ("7", "Jika deployment gagal atau menyebabkan masalah, ikuti prosedur rollback berikut"),
    ("10.1", "pg_dump -U taskforge taskforge_production"),
    ("10.1", "tar -czf config_backup_$(date +%Y%m%d_%H%M%S).tar.gz /opt/taskforge/config/"),
    ("10.2", "docker-compose -f docker-compose.prod.yml exec -T db psql -U taskforge"),
    ("11.1", "Untuk setiap jenis insiden, siapkan runbook procedures yang mencakup"),
    ("11.2", "Siapa yang harus dihubungi untuk jenis insiden tertentu"),
    ("11.2", "Escalation path"),
    ("11.2", "Tools dan dashboard yang digunakan"),
    ("11.2", "Komunikasi incident ke stakeholder"),
    ("12.1", "Simpan keputusan arsitektur penting dalam ADRs untuk referensi masa depan"),
    ("12.2", "Dokumentasikan catatan deployment untuk setiap release"),
)

_CHECKLIST = re.compile(r"^- \[ \] (.+)$", re.MULTILINE)
_SECTION = re.compile(r"^#{2,3} (\d+(?:\.\d+)*)\.", re.MULTILINE)


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("*", "").replace("`", "")).strip()


def guide_checklist() -> list[tuple[str, str]]:
    """(section, text) of every `- [ ]` line of the guide."""
    guide = GUIDE_PATH.read_text(encoding="utf-8")
    sections = [(m.start(), m.group(1)) for m in _SECTION.finditer(guide)]
    items = []
    for match in _CHECKLIST.finditer(guide):
        section = [s for start, s in sections if start < match.start()][-1]
        items.append((section, match.group(1).strip()))
    return items


def covers(entry: CatalogueEntry, statement: str) -> bool:
    text, wanted = normalise(entry.guide_text), normalise(statement)
    return wanted in text or (len(text) >= 8 and text in wanted)


@pytest.fixture(scope="module")
def catalogue() -> dict[str, CatalogueEntry]:
    return load_catalogue()


def test_guide_is_the_verbatim_seed() -> None:
    assert hashlib.sha256(GUIDE_PATH.read_bytes()).hexdigest() == GUIDE_SHA256


def test_guide_has_the_expected_checklists() -> None:
    """Parsing sanity: 4.1 (7), 5.1 (8), 6.1-6.4 (8+7+6+6), 8.1-8.3 (4+4+4) checklist lines."""
    sections = [s for s, _ in guide_checklist()]
    assert {s: sections.count(s) for s in dict.fromkeys(sections)} == {
        "4.1": 7, "5.1": 8, "6.1": 8, "6.2": 7, "6.3": 6, "6.4": 6, "8.1": 4, "8.2": 4, "8.3": 4,
    }


def test_every_checklist_item_has_an_entry(catalogue: dict[str, CatalogueEntry]) -> None:
    texts = {normalise(e.guide_text) for e in catalogue.values()}
    missing = [f"{s} {t}" for s, t in guide_checklist() if normalise(t) not in texts]
    assert not missing, "guide checklist items without a catalogue entry:\n  " + "\n  ".join(
        missing
    )


def test_every_statement_has_an_entry(catalogue: dict[str, CatalogueEntry]) -> None:
    missing = [
        f"{section} {text}"
        for section, text in STATEMENTS
        if not any(covers(e, text) for e in catalogue.values())
    ]
    assert not missing, "guide statements without a catalogue entry:\n  " + "\n  ".join(missing)


def test_statements_are_the_guides_words() -> None:
    guide = normalise(GUIDE_PATH.read_text(encoding="utf-8"))
    assert [t for _, t in STATEMENTS if normalise(t) not in guide] == []


def test_guide_text_is_verbatim(catalogue: dict[str, CatalogueEntry]) -> None:
    guide = normalise(GUIDE_PATH.read_text(encoding="utf-8"))
    wrong = [e.id for e in catalogue.values() if normalise(e.guide_text) not in guide]
    assert not wrong, f"entries whose guide_text is not in the guide: {wrong}"


def test_every_entry_is_checked_or_attested(catalogue: dict[str, CatalogueEntry]) -> None:
    checked = {item for spec in registered_checks() for item in spec.item_ids}
    problems = [
        f"{e.id} ({e.section}): automated but no registered check names it"
        for e in catalogue.values()
        if e.kind is Kind.AUTOMATED and e.id not in checked
    ] + [
        f"{e.id} ({e.section}): attested without an attestation rule"
        for e in catalogue.values()
        if e.kind is Kind.ATTESTED and not e.attestation
    ]
    assert not problems, "catalogue entries nobody verifies:\n  " + "\n  ".join(problems)


def test_every_check_names_catalogued_items(catalogue: dict[str, CatalogueEntry]) -> None:
    unknown = sorted(
        f"{spec.name}: {item}"
        for spec in registered_checks()
        for item in spec.item_ids
        if item not in catalogue
    )
    assert not unknown, "checks naming items that are not in the catalogue:\n  " + "\n  ".join(
        unknown
    )


def test_catalogue_is_in_guide_order(catalogue: dict[str, CatalogueEntry]) -> None:
    keys = [guide_order(e.section) for e in catalogue.values()]
    assert keys == sorted(keys)
    assert guide_order("2.1") < guide_order("3.1") < guide_order("10.1")


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("items:\n  - id: X-Y\n    section: [\n", 4, "not valid YAML"),
        ("- just a list\n", 1, "an `items:` list"),
        ("items:\n  - id: lower-case\n", 2, "item lower-case: id"),
        (
            "items:\n  - id: OPS-A\n    section: '4.1'\n    guide_text: abc\n    title: abc\n"
            "    phase: pre-deploy\n    severity: major\n    kind: attested\n"
            "    rationale: abc\n    remediation: abc\n",
            2,
            "needs an `attestation` rule",
        ),
        ("items:\n  - id: OPS-A\n    section: 4.1\n", 2, "section must be quoted"),
    ],
)
def test_malformed_file_names_file_and_line(
    tmp_path: Path, text: str, line: int, problem: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(CatalogueError) as caught:
        load_catalogue([path])
    assert str(caught.value).startswith(f"{path}:{line}: ")
    assert problem in str(caught.value)
    assert "\n" not in str(caught.value)


def test_duplicate_ids_are_refused(tmp_path: Path) -> None:
    entry = (
        "  - id: OPS-A\n    section: '4.1'\n    guide_text: abc\n    title: abc\n"
        "    phase: pre-deploy\n    severity: major\n    kind: attested\n"
        "    rationale: abc\n    remediation: abc\n    attestation: a link\n"
    )
    path = tmp_path / "dup.yaml"
    path.write_text("items:\n" + entry + entry)
    with pytest.raises(CatalogueError, match=r"dup.yaml:12: duplicate ID OPS-A \(first at"):
        load_catalogue([path])
