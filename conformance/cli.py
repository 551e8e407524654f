"""`python -m conformance run|list|diff|report`: the release manager's entry point.

`run` loads the catalogue, waivers and attestations (a bad file stops it with one line, exit 2),
stands up or wraps the target (the reference stack by default), probes it once (unreachable: one
line, exit 3), runs the checks through pytest and the conformance plugin, writes the reports and
exits with the verdict's status (0 ready, 1 blocked). Ctrl-C cleans the stack up and exits 130.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from conformance.checks.registry import CheckSpec
from conformance.inputs import add_arguments, file_inputs, forward, resolve_entry, secrets_of
from conformance.model import (
    REACHABILITY,
    CatalogueEntry,
    ExitStatus,
    Kind,
    Phase,
    RunResult,
    Status,
)
from conformance.usage import UsageError, UsageParser
from conformance.verdicts import Selection, expired_waivers, parse_phase, parse_severity
from conformance.yamlrecords import ConfigError

if TYPE_CHECKING:
    from conformance.stack import Target

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_COMPOSE_DIR = PACKAGE_DIR.parent / "compose"
EXAMPLES_DIR = PACKAGE_DIR / "examples"
DEFAULT_REPORTS_DIR = Path("reports")
PROBE_TIMEOUT_SECONDS = 4.0
#: Inputs a reference stack supplies; a check needing one of them needs a live target.
LIVE_NEEDS = frozenset({"target", "database_url", "redis_url", "log_file"})
#: Phases whose explicit selection brings the host checks in (on this machine unless --hosts).
HOST_PHASES = frozenset({Phase.PRE_DEPLOY, Phase.DAILY, Phase.MONTHLY})


class Unreachable(Exception):
    """The target could not be stood up or did not answer: one line, exit status 3."""


@dataclass(kw_only=True)
class Suite:
    """Where the checks and the catalogue come from; tests swap in small made-up ones."""

    checks: list[CheckSpec] | None = None
    catalogue: list[CatalogueEntry] | None = None
    pytest_plugins: tuple[str, ...] = ()  # extra `-p` plugins for every pytest process
    pytest_args: tuple[str, ...] = field(default_factory=tuple)

    def load_checks(self) -> list[CheckSpec]:
        if self.checks is None:
            from conformance.checks.all import registered_checks

            self.checks = list(registered_checks())
        return self.checks

    def load_catalogue(self) -> list[CatalogueEntry]:
        if self.catalogue is None:
            from conformance.catalogue import load_catalogue

            try:
                self.catalogue = list(load_catalogue().values())
            except ValueError as exc:  # CatalogueError: "file:line: problem"
                raise ConfigError(str(exc)) from None
        return self.catalogue


# --- argument parsing --------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = UsageParser(prog="python -m conformance",
                     description="Check a TaskForge deployment against its deployment guide.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=UsageParser)

    run = commands.add_parser("run", help="run the conformance checks and write the reports")
    add_arguments(run)  # every run input, from the one table of conformance/inputs.py

    listing = commands.add_parser("list", help="print the catalogue")
    listing.add_argument("--phase", action="append", default=[])
    listing.add_argument("--severity")

    diff = commands.add_parser("diff", help="compare two runs; exit 1 on a regression")
    diff.add_argument("old", type=Path)
    diff.add_argument("new", type=Path)

    report = commands.add_parser("report", help="re-render the reports of a run directory")
    report.add_argument("run_dir", type=Path)
    return parser


def main(argv: Sequence[str] | None = None, *, suite: Suite | None = None,
         out: TextIO | None = None) -> int:
    out = out or sys.stdout
    suite = suite or Suite()
    try:
        args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
        if args.command == "run":
            return run(args, suite, out)
        if args.command == "list":
            return list_catalogue(args, suite, out)
        if args.command == "diff":
            from conformance.reporting import diff

            return diff.main([str(args.old), str(args.new)], out=out)
        if args.command == "report":
            return render_report(args.run_dir, out)
        raise UsageError("a command is needed: run, list, diff or report")
    except (UsageError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return int(ExitStatus.USAGE)
    except Unreachable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return int(ExitStatus.UNREACHABLE)
    except KeyboardInterrupt:
        print("interrupted: the stack has been cleaned up", file=sys.stderr)
        return int(ExitStatus.INTERRUPTED)
    except BrokenPipeError:
        # The reader went away (`list | head`): stop quietly, not with a traceback at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return int(ExitStatus.READY)


def render_report(run_dir: Path, out: TextIO) -> int:
    from conformance.reporting import FILENAMES, ReportError, render_run_dir

    try:
        render_run_dir(run_dir)
    except ReportError as exc:
        raise ConfigError(str(exc)) from None
    print(f"re-rendered {', '.join(FILENAMES)} in {run_dir}", file=out)
    return int(ExitStatus.READY)


def selection_of(args: argparse.Namespace) -> Selection:
    return Selection(
        phases=frozenset(parse_phase(p) for p in args.phase),
        min_severity=parse_severity(args.severity) if args.severity else None,
    )


def list_catalogue(args: argparse.Namespace, suite: Suite, out: TextIO) -> int:
    entries = selection_of(args).entries(suite.load_catalogue())
    rows = [("ID", "SECTION", "PHASE", "SEVERITY", "KIND", "TITLE")]
    rows += [(e.id, e.section, e.phase.value, e.severity.value, e.kind.value, e.title)
             for e in entries]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:5], widths, strict=True)]
        print("  ".join([*cells, row[5]]), file=out)
    print(f"{len(entries)} items", file=out)
    return int(ExitStatus.READY)


# --- run ---------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class Plan:
    """What a run will do, decided before anything is started."""

    selection: Selection
    files: dict[str, Path | None]
    rules: list[Path]
    hosts: list[str]
    needs_target: bool
    require_attestations: bool
    defaults_from_repo: bool


FILE_OPTIONS = ("env_file", "compose_file", "dockerfile", "nginx_conf", "prometheus_config",
                "runbook")


def prepare_repo_deployment(workdir: Path) -> tuple[dict[str, Path | None], list[Path], str]:
    """compose/ as guide 4.2 steps 2-3 and .env.example's header prepare it, in a scratch copy."""
    from conformance.checks.static.reference import prepare_reference_deployment

    prepared = prepare_reference_deployment(REPO_COMPOSE_DIR, workdir / "compose")
    return dict(prepared.files), list(prepared.rules), prepared.note()


def make_plan(args: argparse.Namespace, suite: Suite) -> Plan:
    selection = selection_of(args)
    files: dict[str, Path | None] = {name: getattr(args, name) for name in FILE_OPTIONS}
    rules = list(args.prometheus_rules)
    for flag, path in file_inputs(vars(args)):
        if not path.is_file():
            raise UsageError(f"{flag} {path}: no such file")
    for flag, text in [("--resolve", r) for r in args.resolve]:
        if not resolve_entry(text):
            raise UsageError(f"{flag} {text!r}: expected HOST:PORT:ADDRESS")
    if args.slow_client_count is not None and args.slow_client_count < 1:
        raise UsageError("--slow-client-count must be 1 or more")
    explicit_files = any(files.values()) or bool(rules)
    # Without files or a target of their own, users get the reference deployment's compose/.
    defaults_from_repo = (not explicit_files and not args.target_url
                          and (REPO_COMPOSE_DIR / ".env.example").is_file())
    if args.stack == "external" and not args.target_url:
        raise UsageError("--stack external needs --target-url")
    if args.workers is not None and args.workers < 0:
        raise UsageError("--workers must be 0 or more")

    entries = {e.id for e in selection.entries(suite.load_catalogue())}
    selected = [c for c in suite.load_checks() if entries.intersection(c.item_ids)]
    supplied = {"database_url": args.database_url, "redis_url": args.redis_url,
                "log_file": args.log_file}
    needs_target = bool(args.target_url) or any(
        need in LIVE_NEEDS and not supplied.get(need) for c in selected for need in c.needs)
    hosts = list(args.hosts)
    if not hosts and selection.phases & HOST_PHASES:
        hosts = ["local://"]
    require = bool(args.require_attestations) or Phase.PRE_DEPLOY in selection.phases
    return Plan(selection=selection, files=files, rules=rules, hosts=hosts,
                needs_target=needs_target, require_attestations=require,
                defaults_from_repo=defaults_from_repo)


def check_files(args: argparse.Namespace, suite: Suite) -> None:
    """Read waivers and attestations before anything starts: a bad file is exit 2, at once."""
    from conformance.attestations import load_attestations
    from conformance.waivers import load_waivers

    known = {e.id for e in suite.load_catalogue()}
    if args.waivers:
        load_waivers(args.waivers, known)
    if args.attestations:
        load_attestations(args.attestations, known, datetime.now(UTC).date())


@contextlib.contextmanager
def target_of(args: argparse.Namespace, plan: Plan, out: TextIO) -> Iterator[Target | None]:
    """The reference stack (stood up here, torn down after) or the user's deployment."""
    if not plan.needs_target:
        yield None
        return
    from conformance.stack import open_stack

    kind = "external" if args.target_url else args.stack
    options: dict[str, Any] = {}
    if kind == "external":
        options = {"target_url": args.target_url, "database_url": args.database_url,
                   "redis_url": args.redis_url, "ca_bundle": args.ca_bundle,
                   "resolve": getattr(args, "resolve", None) or ()}
    elif args.stack == "auto" and args.target_url is None:
        kind = "auto"
    elif kind == "docker":
        # The whole reference deployment, judged through its front door (NGINX for a domain).
        options = {"deployment": True}
    stack = open_stack(kind, **options)
    try:
        target = stack.__enter__()
    except (KeyboardInterrupt, UsageError, ConfigError):
        raise
    except Exception as exc:
        raise Unreachable(f"could not stand the {kind} target up: "
                          f"{type(exc).__name__}: {exc}") from None
    try:
        yield target
    except BaseException:
        if not stack.__exit__(*sys.exc_info()):
            raise
    else:
        stack.__exit__(None, None, None)


def probe(base_url: str, timeout: float = PROBE_TIMEOUT_SECONDS,
          resolve: tuple[str, ...] = ()) -> None:
    """One bounded request: any HTTP answer means reachable; TLS is judged by the TLS checks."""
    import httpx

    from conformance.resolve import ResolveSpecError, resolve_map, transport

    try:
        mapping = resolve_map(resolve)
    except ResolveSpecError as exc:
        raise UsageError(str(exc)) from None
    try:
        # Reachability only: any TLS answer counts here (the TLS checks judge the certificate).
        with httpx.Client(transport=transport(mapping, verify=False),
                          timeout=httpx.Timeout(timeout), follow_redirects=False) as client:
            client.get(f"{base_url.rstrip('/')}/health")
    except httpx.TransportError as exc:
        reason = str(exc) or type(exc).__name__
        raise Unreachable(f"target {base_url} unreachable: {reason}") from None


def say_certificate(target: Target, out: TextIO) -> None:
    """One line when the certificate does not verify: the HTTP checks will be blocked by it."""
    from conformance.checks.live.reach import certificate_line, certificate_problem

    problem = certificate_problem(target.base_url, target.ca_bundle, resolve=target.resolve_map)
    if problem is not None:
        print(f"tls: {certificate_line(target.base_url, problem, target.ca_bundle)}; until "
              f"then LIVE-TLS-* report the certificate and the other HTTP checks are blocked",
              file=out)


def pytest_arguments(args: argparse.Namespace, plan: Plan, suite: Suite, workdir: Path,
                     target: Target | None) -> list[str]:
    from conformance.plugin import SUITE_PATH, write_target_file

    ini = workdir / "pytest.ini"
    ini.write_text("[pytest]\n", encoding="utf-8")  # the user's own pytest config stays out
    # `-p conformance.plugin` reaches the xdist workers; here it is registered already (run()).
    argv = ["-c", str(ini), "--rootdir", str(PACKAGE_DIR.parent), "-p", "no:cacheprovider",
            "-p", "conformance.plugin", "-q", "-rN", "--tf-no-summary"]
    workers = args.workers or 0
    if workers > 0:
        argv += ["-p", "xdist.plugin", "-n", str(workers)]
    for plugin in suite.pytest_plugins:
        argv += ["-p", plugin]
    # The run's inputs as given, with what the plan decided in their place.
    values = {**vars(args), **plan.files, "prometheus_rules": plan.rules, "hosts": plan.hosts,
              "phase": [p.value for p in plan.selection.phases],
              "severity": (plan.selection.min_severity.value
                           if plan.selection.min_severity is not None else None),
              "require_attestations": plan.require_attestations}
    argv += forward(values)
    # Secrets travel in a file only this user can read, not on command lines.
    secrets = secrets_of(values)
    if target is not None or secrets:
        target_file = workdir / "target.json"
        token = secrets.pop("token", None)
        write_target_file(target_file, target, token=token, auth=dict(secrets))
        argv += ["--tf-target-file", str(target_file)]
    argv += list(suite.pytest_args)
    argv.append(str(SUITE_PATH))
    return argv


class _Collector:
    """Picks the run result out of the plugin's stash when pytest is done."""

    def __init__(self) -> None:
        self.result: RunResult | None = None

    def pytest_unconfigure(self, config: Any) -> None:
        from conformance.plugin import STATE_KEY

        state = config.stash.get(STATE_KEY, None)
        if state is not None and state.result is not None:
            self.result = state.result


@contextlib.contextmanager
def _no_plugin_autoload() -> Iterator[None]:
    """Only the plugins we name: faster start-up (also in every xdist worker), no surprises."""
    saved = os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD")
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None)
        else:
            os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = saved


def run(args: argparse.Namespace, suite: Suite, out: TextIO) -> int:
    import time

    import pytest

    started, started_at = time.monotonic(), datetime.now(UTC)
    if args.target_url:
        # Fail fast: an unreachable deployment is known before anything heavy is loaded.
        probe(args.target_url, resolve=tuple(getattr(args, "resolve", None) or ()))
    import conformance.plugin

    plan = make_plan(args, suite)
    check_files(args, suite)
    with target_of(args, plan, out) as target, \
            tempfile.TemporaryDirectory(prefix="taskforge-run-") as workdir:
        if target is not None:
            probe(target.base_url, resolve=target.resolve)
            if not args.insecure:
                say_certificate(target, out)
        if plan.defaults_from_repo:
            plan.files, plan.rules, note = prepare_repo_deployment(Path(workdir))
            print(note, file=out)
        print_safety(target, args, out)
        check_hosts(args, plan, out)
        argv = pytest_arguments(args, plan, suite, Path(workdir), target)
        collector = _Collector()
        with _no_plugin_autoload():
            code = pytest.main(argv, plugins=[conformance.plugin, collector])
        if code == pytest.ExitCode.INTERRUPTED:
            raise KeyboardInterrupt
        if code == pytest.ExitCode.USAGE_ERROR or collector.result is None:
            raise ConfigError(f"the checks could not run (pytest exit status {int(code)})")
        result = collector.result
    # The run spans the whole command: stack start, checks and stack clean-up.
    wall = round(time.monotonic() - started, 1)
    options = {**result.run.options, "stack": args.stack, "wall_seconds": wall,
               "defaults_from_repo": plan.defaults_from_repo}
    result = replace(result, run=replace(result.run, options=options, started_at=started_at,
                                         finished_at=datetime.now(UTC)))
    reports_dir = args.reports_dir or DEFAULT_REPORTS_DIR
    report_dir = write(result, reports_dir, out)
    if report_dir is not None:
        write_timing(result, reports_dir)
    print_summary(result, report_dir, out)
    return int(result.exit_status)


def write_timing(result: RunResult, reports_dir: Path) -> None:
    """reports/conformance-timing.json: how long the latest run took, and on what."""
    import json

    from conformance.reporting.redact import mask_argv

    options = result.run.options
    record = {
        "run_id": result.run.run_id,
        "wall_seconds": options.get("wall_seconds"),
        "provider": result.run.provider,
        "phases": options.get("phases") or "all",
        "workers": options.get("workers") or 0,
        "items": len(result.items),
        "cpu_count": os.cpu_count(),
        "command": "python -m conformance " + " ".join(mask_argv(sys.argv[1:])),
        "measured_at": result.run.finished_at.isoformat(),
    }
    path = reports_dir / "conformance-timing.json"
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def write(result: RunResult, reports_dir: Path, out: TextIO) -> Path | None:
    from conformance.reporting import write_reports

    try:
        return write_reports(result, reports_dir)
    except OSError as exc:
        print(f"warning: reports not written to {reports_dir}: {exc}", file=out)
        return None


def check_hosts(args: argparse.Namespace, plan: Plan, out: TextIO) -> None:
    """Say which machine the host checks judge when nobody chose one; stop at once, in one line,
    when a given host does not answer."""
    if not plan.hosts:
        return
    if not args.hosts:
        import socket

        print(f"hosts: local:// ({socket.gethostname()}), the machine the kit runs on; "
              "--hosts ssh://user@server judges the server", file=out)
        return
    from conformance.checks.host.common import display_spec, unreachable_reason

    for spec in plan.hosts:
        reason = unreachable_reason(spec)
        if reason is not None:
            raise Unreachable(f"host {display_spec(spec)} unreachable: {reason}")


def print_safety(target: Target | None, args: argparse.Namespace, out: TextIO) -> None:
    if target is None:
        print("target: none (no live checks selected)", file=out)
        return
    print(f"target: {target.base_url} ({target.provider})", file=out)
    if target.is_reference:
        print("writes: allowed (the reference stack was started for this run)", file=out)
    elif args.allow_writes:
        print("writes: ALLOWED by --allow-writes on a deployment that is not the reference "
              "stack", file=out)
    else:
        print("writes: read-mostly (one tagged smoke job and a bounded rate-limit probe; "
              "--allow-writes to lift)", file=out)
    if args.insecure:
        print("tls: --insecure: certificates are not verified by the other checks", file=out)


def print_summary(result: RunResult, report_dir: Path | None, out: TextIO) -> None:
    unattested = [i for i in result.items if i.status is Status.UNATTESTED]
    if unattested:
        gate = ("they block the verdict (attestations required)"
                if result.run.require_attestations
                else "they do not gate this run; --require-attestations or --phase pre-deploy "
                     "makes them gate")
        print(f"\nunattested ({len(unattested)}): {gate}", file=out)
        for item in unattested:
            entry = item.entry
            print(f"  {entry.id} [{entry.section}, {entry.phase.value}, {entry.severity.value}] "
                  f"{entry.title}", file=out)
        print(f"to attest, list them in a YAML file passed with --attestations "
              f"(example: {EXAMPLES_DIR / 'attestations.yaml'}):", file=out)
        from conformance.attestations import how_to_attest

        print("attestations:", file=out)
        print(how_to_attest(unattested[0].entry.id, unattested[0].entry.attestation), file=out)
    expired = expired_waivers(result.items)
    for item in expired:
        waiver = item.waiver
        assert waiver is not None
        print(f"waiver expired: {item.entry.id} expired on {waiver.expires.isoformat()} "
              f"(owner: {waiver.owner}); the item counts as {item.status.value}", file=out)
    for item in result.items:
        if item.status is Status.WAIVED and item.waiver is not None:
            print(f"waived: {item.entry.id} until {item.waiver.expires.isoformat()} "
                  f"(owner: {item.waiver.owner})", file=out)
    blockers = result.blockers()
    if blockers:
        print(f"\nblockers ({len(blockers)}):", file=out)
        causes: dict[str, list[str]] = {}
        reasons: dict[str, str] = {}
        for item in blockers:
            first = next((f for f in item.findings if f.status is item.status), None)
            if item.status is Status.BLOCKED and first is not None and first.blocked_by:
                causes.setdefault(first.blocked_by, []).append(item.entry.id)
                reasons.setdefault(first.blocked_by, first.message)
                continue  # one line per cause below, not the same reason once per item
            why = f": {first.message}" if first and first.message else ""
            print(f"  {item.entry.id} {item.status.value}{why}", file=out)
        for cause, ids in causes.items():
            # The certificate was said at the start; a target gone mid-run is said here, once.
            why = f" ({reasons[cause]})" if cause == REACHABILITY else ""
            print(f"  blocked by {cause} ({len(ids)}, not judged){why}: {', '.join(ids)}",
                  file=out)
    counts = ", ".join(f"{n} {s}" for s, n in result.counts().items() if n)
    automated = sum(1 for i in result.items if i.entry.kind is Kind.AUTOMATED)
    if report_dir is not None:
        print(f"reports: {report_dir}", file=out)
    wall = result.run.options.get("wall_seconds")
    if wall is not None:
        print(f"wall time: {wall} s (the whole run)", file=out)
    print(f"verdict: {result.verdict.value} ({counts}; {automated} automated items) "
          f"exit {int(result.exit_status)}", file=out)
