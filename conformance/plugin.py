"""The conformance kit's pytest plugin (registered as a pytest11 entry point).

Every registered check becomes one test item of the virtual module `conformance/suite.py`, marked
with the phases and severities of the catalogue items it speaks for. An item runs its check with a
CheckContext built from the `--tf-*` options and ships the findings in `report.user_properties`
(plain JSON, so pytest-xdist workers hand them to the controller). The controller folds the findings
per catalogue item, applies attestations and waivers, and keeps the RunResult in its stash.

Safety: CheckContext.allow_writes is True only for the reference stack (Target.is_reference) or
with --tf-allow-writes. When it is False a live check may write nothing but one smoke job tagged
with the run ID and a bounded rate-limit probe; anything else that writes must not run.

Run it directly with `pytest conformance/suite.py --tf-...` or through `python -m conformance run`.
The `--tf-*` options are those of conformance/inputs.py (one table for the command line, the
pytest options and the typed CheckContext fields).
"""

from __future__ import annotations

import json
import os
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from conformance import __version__, hookspecs
from conformance.attestations import load_attestations
from conformance.checks.registry import CheckContext, CheckSpec
from conformance.inputs import CONTEXT_INPUTS, add_pytest_options, context_values, resolve_entry
from conformance.model import (
    Attestation,
    CatalogueEntry,
    Evidence,
    Finding,
    Phase,
    RunInfo,
    RunResult,
    Severity,
    Status,
    Waiver,
    to_jsonable,
)
from conformance.verdicts import (
    Outcome,
    Selection,
    fold_items,
    git_commit,
    new_run_id,
    parse_phase,
    parse_severity,
    phase_marker,
)
from conformance.waivers import load_waivers
from conformance.yamlrecords import ConfigError

if TYPE_CHECKING:
    from conformance.stack import Target

SUITE_PATH = Path(__file__).with_name("suite.py")
FINDINGS_PROPERTY = "taskforge_findings"


@dataclass(kw_only=True)
class RunState:
    """What the controller gathers during a run and what it ends with."""

    active: bool = False
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    checks: list[CheckSpec] = field(default_factory=list)
    catalogue: list[CatalogueEntry] = field(default_factory=list)
    selection: Selection = field(default_factory=Selection)
    waivers: list[Waiver] = field(default_factory=list)
    attestations: list[Attestation] = field(default_factory=list)
    outcome: Outcome = field(default_factory=Outcome)
    ran_checks: set[str] = field(default_factory=set)
    run_id: str = ""
    result: RunResult | None = None
    config_error: ConfigError | None = None
    report_dir: Path | None = None


STATE_KEY = pytest.StashKey[RunState]()
CONTEXT_KEY = pytest.StashKey[CheckContext]()


# --- options and markers -----------------------------------------------------------------------


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("taskforge", "TaskForge conformance")
    add_pytest_options(group.addoption)


def pytest_configure(config: pytest.Config) -> None:
    for phase in Phase:
        config.addinivalue_line("markers", f"{phase_marker(phase)}: checks of the {phase.value} "
                                           "phase of the deployment guide")
    for severity in Severity:
        config.addinivalue_line("markers", f"{severity.value}: checks of {severity.value} "
                                           "severity")
    state = RunState(active=_is_suite_run(config))
    config.stash[STATE_KEY] = state
    if not state.active:
        return
    # One ID for the controller and every xdist worker (see pytest_configure_node).
    worker_input = getattr(config, "workerinput", {})
    state.run_id = (config.option.tf_run_id or worker_input.get("tf_run_id")
                    or new_run_id(state.started_at))
    try:
        state.selection = Selection(
            phases=frozenset(parse_phase(p) for p in config.option.tf_phase),
            min_severity=(parse_severity(config.option.tf_severity)
                          if config.option.tf_severity else None),
        )
        state.checks = list(config.hook.pytest_taskforge_checks(config=config) or [])
        state.catalogue = list(config.hook.pytest_taskforge_catalogue(config=config) or [])
        known = {e.id for e in state.catalogue}
        today = datetime.now(UTC).date()
        if config.option.tf_waivers:
            state.waivers = load_waivers(Path(config.option.tf_waivers), known)
        if config.option.tf_attestations:
            state.attestations = load_attestations(Path(config.option.tf_attestations), known,
                                                   today)
        config.stash[CONTEXT_KEY] = build_context(config)
    except ConfigError as exc:
        state.config_error = exc
        raise pytest.UsageError(str(exc)) from None
    except ValueError as exc:  # conformance.catalogue.CatalogueError: "file:line: problem"
        state.config_error = ConfigError(str(exc))
        raise pytest.UsageError(str(exc)) from None


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist: hand the controller's run ID to each worker."""
    state = node.config.stash.get(STATE_KEY, None)
    if state is not None and state.active:
        node.workerinput["tf_run_id"] = state.run_id


def _is_suite_run(config: pytest.Config) -> bool:
    """Only runs that collect the suite module gather and fold findings."""
    for arg in config.args:
        if arg == "conformance.suite":
            return True
        try:
            if Path(arg.split("::")[0]).resolve() == SUITE_PATH:
                return True
        except OSError:
            continue
    return False


# --- where the checks and the catalogue come from ----------------------------------------------


@pytest.hookimpl(trylast=True)
def pytest_taskforge_checks(config: pytest.Config) -> list[CheckSpec]:
    from conformance.checks.all import registered_checks

    return list(registered_checks())


@pytest.hookimpl(trylast=True)
def pytest_taskforge_catalogue(config: pytest.Config) -> list[CatalogueEntry]:
    from conformance.catalogue import load_catalogue

    return list(load_catalogue().values())


# --- the context checks run with ---------------------------------------------------------------


def _path(value: str | None) -> Path | None:
    return Path(value).expanduser() if value else None


def build_context(config: pytest.Config) -> CheckContext:
    """The CheckContext of this process, from the options (and the target file, if any)."""
    opt = config.option
    target: Target | None = None
    from_file: dict[str, Any] = {}
    if opt.tf_target_file:
        target, file_token, auth = read_target_file(Path(opt.tf_target_file))
        from_file = {**auth, "token": file_token}
    elif opt.tf_target_url:
        from conformance.stack import Target

        target = Target(
            base_url=opt.tf_target_url.rstrip("/"), provider="external", is_reference=False,
            ca_bundle=_path(opt.tf_ca_bundle), database_url=opt.tf_database_url,
            redis_url=opt.tf_redis_url, log_file=_path(opt.tf_log_file), env={},
            admin_email=None, admin_password=None,
        )
    values = context_values(opt, overrides=from_file)
    for entry in values["resolve"]:
        if resolve_entry(entry) is None:
            raise ConfigError(f"--tf-resolve {entry!r}: expected HOST:PORT:ADDRESS")
    # Writes beyond the smoke job and the rate-limit probe only on our own stack or when asked.
    values.update(
        # A host is never the reference stack: writes on it (apt-get update) only when asked.
        allow_host_writes=values["allow_writes"],
        allow_writes=values["allow_writes"] or (target is not None and target.is_reference),
        target=target,
        log_file=_path(opt.tf_log_file) or (target.log_file if target else None),
        database_url=opt.tf_database_url or (target.database_url if target else None),
        redis_url=opt.tf_redis_url or (target.redis_url if target else None),
        run_id=config.stash[STATE_KEY].run_id,
    )
    return CheckContext(**values)


def write_target_file(path: Path, target: Target | None, *, token: str | None = None,
                      auth: dict[str, str | None] | None = None) -> None:
    """Hand a target and the run's secrets to every test process, readable by the owner only."""
    data = {"target": to_jsonable(_target_fields(target)) if target is not None else None,
            "token": token, "auth": auth or {}}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(data, out, default=str)


#: The Target fields of the front door (conformance/stack: Target), carried as they are.
_FRONT_DOOR_FIELDS = ("resolve", "front_door", "metrics_url", "prometheus_url", "alertmanager_url",
                      "grafana_url", "grafana_token", "docker")


def _target_fields(target: Target) -> dict[str, Any]:
    names = ("base_url", "provider", "is_reference", "ca_bundle", "database_url", "redis_url",
             "log_file", "env", "admin_email", "admin_password", *_FRONT_DOOR_FIELDS)
    fields = {name: getattr(target, name) for name in names}
    fields["env"] = dict(fields["env"] or {})
    fields["resolve"] = list(fields["resolve"])
    fields["docker"] = dict(fields["docker"] or {})
    for name in ("ca_bundle", "log_file"):
        fields[name] = str(fields[name]) if fields[name] is not None else None
    return fields


def read_target_file(path: Path) -> tuple[Target | None, str | None, dict[str, Any]]:
    from conformance.stack import Target

    target: Target | None = None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        fields = data["target"]
        target = None if fields is None else Target(
            base_url=fields["base_url"], provider=fields["provider"],
            is_reference=bool(fields["is_reference"]), ca_bundle=_path(fields["ca_bundle"]),
            database_url=fields["database_url"], redis_url=fields["redis_url"],
            log_file=_path(fields["log_file"]), env=dict(fields["env"]),
            admin_email=fields["admin_email"], admin_password=fields["admin_password"],
            resolve=tuple(fields.get("resolve") or ()),
            docker=dict(fields.get("docker") or {}),
            **{name: fields.get(name) for name in _FRONT_DOOR_FIELDS
               if name not in ("resolve", "docker")},
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"unusable target file: {exc}", file=path) from None
    return target, data.get("token"), dict(data.get("auth") or {})


# --- collection: one item per check ------------------------------------------------------------


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.resolve() == SUITE_PATH and parent.config.stash[STATE_KEY].active:
        return SuiteModule.from_parent(parent, path=file_path)
    return None


class SuiteModule(pytest.File):
    """The virtual module holding one item per registered check."""

    def collect(self) -> Iterator[pytest.Item]:
        state = self.config.stash[STATE_KEY]
        entries = {e.id: e for e in state.catalogue}
        # Checks that may disturb others (a rate-limit burst) go last; sorted() keeps the rest
        # in registration order.
        for spec in sorted(state.checks, key=lambda s: s.last):
            spoken = [entries[i] for i in spec.item_ids if i in entries]
            if spoken and not any(state.selection.covers(e) for e in spoken):
                continue  # none of its items is in the selected phases or severities
            yield CheckItem.from_parent(self, name=spec.name, spec=spec, entries=spoken)


class CheckFailed(Exception):
    """A check reported failed or errored findings (not a crash of the check)."""

    def __init__(self, findings: list[Finding]):
        super().__init__(f"{len(findings)} finding(s)")
        self.findings = findings


class CheckItem(pytest.Item):
    def __init__(self, *, spec: CheckSpec, entries: list[CatalogueEntry], **kwargs: Any):
        super().__init__(**kwargs)
        self.spec = spec
        for marker in sorted({phase_marker(e.phase) for e in entries}
                             | {e.severity.value for e in entries}):
            self.add_marker(marker)

    def runtest(self) -> None:
        context = self.config.stash[CONTEXT_KEY]
        started = time.perf_counter()
        try:
            findings = self.spec.run(context)
        except Exception as exc:
            findings = [
                Finding(
                    item_id=item_id, status=Status.ERROR, check=self.spec.name,
                    message=f"the check crashed: {type(exc).__name__}: {exc}",
                    evidence=(Evidence(kind="text", summary="traceback",
                                       output=traceback.format_exc(limit=-4)),),
                )
                for item_id in self.spec.item_ids
            ]
        elapsed = time.perf_counter() - started
        share = elapsed / len(findings) if findings else 0.0
        findings = [
            replace(f, check=f.check or self.spec.name,
                    duration_seconds=f.duration_seconds or share)
            for f in findings
        ]
        self.user_properties.append((FINDINGS_PROPERTY, json.dumps(to_jsonable(findings))))
        bad = [f for f in findings if f.status in (Status.FAILED, Status.ERROR)]
        if bad:
            raise CheckFailed(bad)
        blocked = [f for f in findings if f.status is Status.BLOCKED]
        if blocked:
            # Said once by the run (and in the reports), not once per check on the terminal.
            pytest.skip(f"blocked by {blocked[0].blocked_by}")
        if findings and all(f.status is Status.NOT_APPLICABLE for f in findings):
            pytest.skip(findings[0].message or "not applicable")

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str:
        if isinstance(excinfo.value, CheckFailed):
            return "\n".join(describe(f) for f in excinfo.value.findings)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, self.spec.name


def describe(finding: Finding) -> str:
    """One line about a finding, with where it points and what was expected."""
    parts = [f"{finding.item_id} {finding.status.value}: {finding.message}"]
    if finding.expected is not None or finding.actual is not None:
        parts.append(f"(expected {finding.expected}, actual {finding.actual})")
    for evidence in finding.evidence:
        if evidence.file:
            where = f"{evidence.file}:{evidence.line}" if evidence.line else evidence.file
            parts.append(f"[{where}]")
            break
    return " ".join(parts)


# --- the controller: gather findings, fold them, build the result ------------------------------


def findings_from_json(text: str) -> list[Finding]:
    return [
        Finding(
            item_id=raw["item_id"], status=Status(raw["status"]), check=raw["check"],
            message=raw.get("message", ""), expected=raw.get("expected"),
            actual=raw.get("actual"),
            evidence=tuple(Evidence(**{k: v for k, v in ev.items()})
                           for ev in raw.get("evidence", ())),
            duration_seconds=float(raw.get("duration_seconds", 0.0)),
            host=raw.get("host"),
            blocked_by=raw.get("blocked_by"),
        )
        for raw in json.loads(text)
    ]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    state = _controller_state()
    if state is None:
        return
    check_name = report.nodeid.rsplit("::", 1)[-1]
    shipped = [v for n, v in report.user_properties if n == FINDINGS_PROPERTY]
    if report.when == "call" and shipped:
        for value in shipped:
            state.outcome.add(findings_from_json(str(value)))
        state.ran_checks.add(check_name)
    elif report.failed and not shipped and check_name not in state.ran_checks:
        # The check never reported (an xdist worker died under it): its items are errors.
        spec = next((c for c in state.checks if c.name == check_name), None)
        reason = (report.longreprtext or "no report").strip().splitlines()[-1:] or ["?"]
        state.outcome.add(
            Finding(item_id=item_id, status=Status.ERROR, check=check_name,
                    message=f"the check did not report: {reason[0]}")
            for item_id in (spec.item_ids if spec else ())
        )
        state.ran_checks.add(check_name)


_CONFIG: list[pytest.Config] = []  # the config of this process, for hooks that get none


def _controller_state() -> RunState | None:
    if not _CONFIG:
        return None
    state = _CONFIG[-1].stash.get(STATE_KEY, None)
    return state if state is not None and state.active else None


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    _CONFIG.append(session.config)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    if _CONFIG and _CONFIG[-1] is config:
        _CONFIG.pop()
    state = config.stash.get(STATE_KEY, None)
    if state is None or not state.active or hasattr(config, "workerinput"):
        return  # xdist workers only ship findings; the controller folds them
    state.result = build_result(config, state)
    reports_dir = config.option.tf_reports_dir
    if reports_dir:
        from conformance.reporting import write_reports

        state.report_dir = write_reports(state.result, Path(reports_dir))


def build_result(config: pytest.Config, state: RunState, *,
                 today: date | None = None) -> RunResult:
    entries = state.selection.entries(state.catalogue)
    checked = {i for spec in state.checks for i in spec.item_ids}
    items = fold_items(
        entries, state.outcome.findings, checked_ids=checked, waivers=state.waivers,
        attestations=state.attestations, today=today,
    )
    context = config.stash.get(CONTEXT_KEY, None)
    target = context.target if context else None
    finished = datetime.now(UTC)
    info = RunInfo(
        run_id=state.run_id or new_run_id(finished),
        suite_version=__version__,
        git_commit=git_commit(SUITE_PATH.parent),
        target=target.base_url if target else None,
        provider=target.provider if target else None,
        started_at=state.started_at,
        finished_at=finished,
        options=run_options(config, context),
        require_attestations=bool(config.option.tf_require_attestations),
    )
    return RunResult(run=info, items=items)


def run_options(config: pytest.Config, context: CheckContext | None) -> dict[str, Any]:
    """The options of the run as the reports show them (no secrets)."""
    opt = config.option
    options: dict[str, Any] = {
        "phases": list(opt.tf_phase),
        "severity": opt.tf_severity,
        "waivers": opt.tf_waivers,
        "attestations": opt.tf_attestations,
        "require_attestations": bool(opt.tf_require_attestations),
        "workers": getattr(opt, "numprocesses", None),
    }
    if context is not None:
        options.update({
            "env_file": context.env_file, "compose_file": context.compose_file,
            "dockerfile": context.dockerfile, "nginx_conf": context.nginx_conf,
            "prometheus_config": context.prometheus_config,
            "prometheus_rules": list(context.prometheus_rules),
            "hosts": list(context.hosts), "log_file": context.log_file,
            "log_command": context.log_command,
            "allow_writes": context.allow_writes,
            "insecure": context.insecure,
            "authenticated": bool(context.token or context.api_key or context.email),
        })
        # The newer inputs, when given; never a secret.
        shown = {"allow_writes", "insecure", "hosts", "log_command", "prometheus_rules",
                 "env_file", "compose_file", "dockerfile", "nginx_conf", "prometheus_config"}
        for spec in CONTEXT_INPUTS:
            value = getattr(context, spec.name)
            if spec.secret or spec.name in shown or spec.name == "run_id":
                continue
            if value not in (None, False, (), "") and value != spec.default:
                options[spec.name] = list(value) if isinstance(value, tuple) else value
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in options.items()}


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    state = config.stash.get(STATE_KEY, None)
    if state is None or state.result is None or config.option.tf_no_summary:
        return
    result = state.result
    counts = ", ".join(f"{n} {s}" for s, n in result.counts().items() if n)
    terminalreporter.write_sep("=", "TaskForge conformance")
    terminalreporter.write_line(f"verdict: {result.verdict.value} ({counts})")
    for item in result.blockers():
        terminalreporter.write_line(f"  blocker {item.entry.id} ({item.status.value}): "
                                    f"{item.entry.title}")
    if state.report_dir is not None:
        terminalreporter.write_line(f"reports: {state.report_dir}")
