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

#: Sections whose statements (bullets of 2.1, every line of the files of 3.x, every command of
#: the procedures) are derived from the guide text and must each have an entry.
STATEMENT_SECTIONS = ("2.1", "3.1", "3.2", "3.3", "4.2", "5.2", "7", "9.2", "10.1", "10.2")

#: A statement whose words no entry quotes is covered by the entry that judges it (a pattern of
#: its words -> the item), or is not a statement (None -> why). Patterns are searched in the
#: statement's text; each rule must match at least one statement and name an existing entry.
RULES: tuple[tuple[str, str, str | None], ...] = (
    # 3.1: each variable is judged by its format, the secrets and URLs by their own items
    ("3.1", r"^(DB_HOST|DB_PORT|DB_NAME|DB_USER)=", "ENV-DATABASE-URL-CONSISTENT"),
    ("3.1", r"^(REDIS_HOST|REDIS_PORT)=", "ENV-REDIS-URL-CONSISTENT"),
    ("3.1", r"^(REDIS_PASSWORD|SMTP_USERNAME|SMTP_PASSWORD|STRIPE_SECRET_KEY|"
     r"STRIPE_WEBHOOK_SECRET)=", "ENV-SECRETS-NOT-PLACEHOLDER"),
    ("3.1", r"^(APPLICATION_HOST|LOG_LEVEL|METRICS_ENDPOINT|PROMETHEUS_PUSH_GATEWAY|SMTP_HOST|"
     r"SMTP_PORT|EMAIL_FROM|SENTRY_DSN|HEALTH_CHECK_TIMEOUT_SECONDS)=", "ENV-VALUE-FORMATS"),
    ("3.1", r"^JWT_REFRESH_EXPIRY_TIME_MINUTES=", "ENV-TOKEN-LIFETIMES"),
    # 3.2: what each line decides, and the item that judges it
    ("3.2", r"^(services|networks|volumes|environment|deploy|resources|limits|reservations|"
     r"healthcheck|depends_on|ports|command|build|driver_opts|[a-z_]+):( >)?$", None),  # keys
    ("3.2", r"^- taskforge_prod$|^taskforge_prod:$|^driver: (bridge|local)$|^attachable:|"
     r"^type: none$|^o: bind$", None),  # network and volume layout: nothing to verify
    ("3.2", r"^container_name:", "PROC-ROLLBACK-ORDER"),  # 7 execs into one by name
    ("3.2", r"^(interval|timeout|retries|start_period):", "COMPOSE-HEALTHCHECKS"),
    ("3.2", r"^test: ", "COMPOSE-HEALTHCHECK-AUTH"),
    ("3.2", r"^(cpus|memory): ", "COMPOSE-RESOURCE-LIMITS"),
    ("3.2", r"^image: ", "COMPOSE-IMAGE-PINNED"),
    ("3.2", r"^(context|dockerfile): ", "PROC-ROLLBACK-PREVIOUS-VERSION"),
    ("3.2", r"^- \"\d+:\d+\"$", "COMPOSE-PORTS-LOOPBACK"),
    ("3.2", r"^device: ", "COMPOSE-BIND-MOUNT-PATHS"),
    ("3.2", r"^- (taskforge_\w+|\./[\w/.-]+|/etc/localtime):", "COMPOSE-BIND-MOUNT-PATHS"),
    ("3.2", r"^- (app|prometheus|db|redis)$|^condition:", "COMPOSE-DEPENDS-HEALTHY"),
    ("3.2", r"^(redis-server|--requirepass)", "COMPOSE-NO-INLINE-SECRETS"),
    ("3.2", r"^--(save|appendonly)", "COMPOSE-REDIS-PERSISTENCE"),
    ("3.2", r"^--maxmemory ", "COMPOSE-REDIS-EVICTION"),
    ("3.2", r"^- '--(config.file|storage.tsdb.path|web.console)", "PROM-CONFIG-VALID"),
    ("3.2", r"^- '--storage.tsdb.retention", "PROM-RETENTION-BOUNDED"),
    ("3.2", r"^- '--web.enable-lifecycle'", "COMPOSE-PROMETHEUS-ADMIN-API"),
    ("3.2", r"^(POSTGRES_\w+|PGDATA): ", "COMPOSE-VARIABLES-DEFINED"),
    ("3.2", r"^- (SCHEDULE|BACKUP_KEEP_\w+|HEALTHCHECK_PORT|DB_TYPE|DB_PASS|DB_HOST=db)",
     "COMPOSE-BACKUP-SERVICE"),
    ("3.2", r"^- GF_", "GRAFANA-DASHBOARD-PROVISIONED"),
    ("3.2", r"^- (WORKERS|MAX_CONNECTIONS|POOL_SIZE)=", "SIZING-DB-CONNECTIONS"),
    ("3.2", r"^- [A-Z_]+=\$\{[A-Z_]+\}$|^- RUST_BACKTRACE", "COMPOSE-APP-ENV-COMPLETE"),
    # 3.3: each instruction of the Dockerfile
    ("3.3", r"^(RUN apt-get|[a-z0-9.-]+ \\$|&& rm -rf)", "DOCKERFILE-HADOLINT"),
    ("3.3", r"^(WORKDIR|COPY (Cargo|src|migrations)|RUN (mkdir src|echo|cargo|rm src|touch))",
     "DOCKERFILE-HADOLINT"),
    ("3.3", r"^COPY --from=builder /app/target", "DOCKERFILE-BASE-COMPATIBLE"),
    ("3.3", r"^COPY --from=builder /app/migrations", "DOCKERFILE-MIGRATION-TOOL"),
    ("3.3", r"^RUN (addgroup|chown)", "DOCKERFILE-NONROOT"),
    ("3.3", r"^RUN mkdir -p /app/config /app/logs", "ENV-LOG-FILE-PATH"),
    ("3.3", r"^CMD curl", "DOCKERFILE-HEALTHCHECK-TOOL"),
    ("3.3", r'^CMD \["taskforge"\]', "DOCKERFILE-APP-PORT"),
    # 4.2, 5.2, 7, 9.2, 10: every command
    ("4.2", r"^ssh user@", "HOST-SSH-NO-PASSWORD"),
    ("4.2", r"^sudo apt update", "HOST-SYSTEM-UPDATES"),
    ("4.2", r"^sudo systemctl restart docker", "HOST-DOCKER-ENGINE"),
    ("4.2", r"^scp |^sudo (mkdir -p /opt/taskforge/app/nginx/ssl|cp )", "PROC-ENV-LOCATION"),
    ("4.2", r"^cd /opt/taskforge/app$", "PROC-ENV-LOCATION"),
    ("4.2", r"ps$|^sleep 60$", "LIVE-CONTAINERS-HEALTHY"),
    ("5.2", r"^curl -X POST", "LIVE-SMOKE-JOB"),
    ("7", r"^cd /opt/taskforge/app$|down$", "PROC-ROLLBACK-ORDER"),
    ("7", r"up -d$", "PROC-ROLLBACK-PREVIOUS-VERSION"),
    ("9.2", r"ps$", "LIVE-CONTAINERS-HEALTHY"),
    # Diagnostics that work as written on the compose file they name: nothing to judge.
    ("9.2", r"logs (app|db|nginx)$|^docker stats$|exec db pg_isready$", None),
    ("10.1", r"^tar -czf logs_backup", "OPS-CONFIG-BACKUP"),
    ("10.2", r"down$|up -d$", "PROC-RECOVERY-ORDER"),
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


def guide_statements() -> list[tuple[str, int, str]]:
    """(section, line, text) of each statement of STATEMENT_SECTIONS, derived from the guide:
    2.1's bullets, every line of the files of 3.1-3.3, every command of the procedures."""
    from conformance.checks.static.procedures import guide_commands

    lines = GUIDE_PATH.read_text(encoding="utf-8").splitlines()
    found: list[tuple[str, int, str]] = []
    section, block = "", None
    for number, raw in enumerate(lines, start=1):
        heading = _SECTION.match(raw)
        if heading and block is None:
            section = heading.group(1)
            continue
        if raw.startswith("```"):
            block = None if block is not None else raw[3:].strip()
            continue
        text = raw.strip()
        if section not in STATEMENT_SECTIONS or not text or text.startswith("#"):
            continue
        if block is None and section == "2.1" and text.startswith("- "):
            found.append((section, number, text[2:]))
        elif block in ("env", "yaml", "dockerfile"):
            found.append((section, number, text))
    found += [(c.section, c.line, c.text) for c in guide_commands(GUIDE_PATH)
              if c.section in STATEMENT_SECTIONS]
    return found


def rule_for(section: str, text: str) -> tuple[str, str, str | None] | None:
    return next((r for r in RULES if r[0] == section and re.search(r[1], text)), None)


def test_guide_statements_are_derived() -> None:
    """Parsing sanity: the files of 3.1-3.3 and the procedures' commands are all read."""
    counts: dict[str, int] = {}
    for section, _line, _text in guide_statements():
        counts[section] = counts.get(section, 0) + 1
    assert counts["3.1"] == 36 and counts["2.1"] == 9
    assert counts["7"] == 4 and counts["10.2"] == 3 and counts["9.2"] == 7


def test_every_statement_has_an_entry(catalogue: dict[str, CatalogueEntry]) -> None:
    missing = [
        f"{section} (guide.md:{line}) {text}"
        for section, line, text in guide_statements()
        if not any(covers(e, text) for e in catalogue.values()) and rule_for(section, text) is None
    ]
    assert not missing, "guide statements without a catalogue entry:\n  " + "\n  ".join(missing)


def test_every_rule_is_used_and_names_an_entry(catalogue: dict[str, CatalogueEntry]) -> None:
    statements = guide_statements()
    unused = [r for r in RULES if not any(s == r[0] and re.search(r[1], t)
                                          for s, _l, t in statements)]
    unknown = [r for r in RULES if r[2] is not None and r[2] not in catalogue]
    assert unused == [] and unknown == []


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
