"""Run schemathesis (as a subprocess) against a target and keep its reports in the run directory.

The reference stack is stood up by `conformance.stack.open_stack` and fuzzed with credentials of a
fresh organisation; any other target needs `--allow-writes`, credentials from the user, and runs
under a request-rate cap, because fuzzing creates data.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from conformance.fuzz.credentials import AuthHeader, SetupError, register_and_login, verify_option
from conformance.fuzz.progress import follow
from conformance.fuzz.results import RESULTS_SCHEMA_VERSION, read_events, summarise
from conformance.fuzz.scrub import scrub_run_dir
from conformance.model import ExitStatus
from conformance.usage import UsageError
from conformance.verdicts import new_run_id

PHASES = ("examples", "coverage", "fuzzing", "stateful")
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
    "negative_data_rejection",
    "positive_data_acceptance",
    "ignored_auth",
    "use_after_free",
)
#: Fixed so that two runs of the same build generate the same requests.
DEFAULT_SEED = 20261128
DEFAULT_MAX_EXAMPLES = 200
#: Cap for targets we did not start ourselves; schemathesis' `<limit>/<duration>` syntax.
DEFAULT_EXTERNAL_RATE_LIMIT = "10/s"
RATE_LIMIT_PATTERN = re.compile(r"^[1-9][0-9]*/[1-9]?[0-9]*[smhd]$")
#: Settings for a reference stack started for fuzzing: the per-credential limit (600/min) would
#: turn most of a fuzzing run into 429s, and a long run must outlive a 60-minute token.
REFERENCE_SERVER_ENV = {
    "RATE_LIMIT_PER_MINUTE": "100000000",
    "JWT_EXPIRY_TIME_MINUTES": "1440",
}
AUTH_ENV = "TASKFORGE_FUZZ_AUTH_VALUE"
HEALTH_TIMEOUT_SECONDS = 10.0


class UnreachableError(Exception):
    """The target did not answer (exit status 3)."""


@dataclass(frozen=True, kw_only=True)
class FuzzOptions:
    target_url: str | None = None  # None: stand the reference stack up
    stack: str = "auto"  # auto | docker | embedded, for the reference stack
    token: str | None = None
    api_key: str | None = None
    allow_writes: bool = False
    rate_limit: str | None = None
    max_examples: int = DEFAULT_MAX_EXAMPLES
    seed: int = DEFAULT_SEED
    phases: tuple[str, ...] = PHASES
    checks: tuple[str, ...] = CHECKS
    schema: str | None = None  # path or URL; default: the contract's document in this repository
    reports_dir: Path = Path("reports")
    run_id: str | None = None
    ca_bundle: Path | None = None
    insecure: bool = False
    workers: int = 1
    timeout_seconds: float = 3600.0
    request_timeout_seconds: float = 45.0
    extra_args: tuple[str, ...] = ()  # passed to `schemathesis run` as they are


@dataclass(frozen=True, kw_only=True)
class FuzzOutcome:
    exit_status: ExitStatus
    run_dir: Path
    results_file: Path
    results: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class FuzzTarget:
    base_url: str
    is_reference: bool
    provider: str
    ca_bundle: Path | None = None


def contract_document() -> Path:
    """The OpenAPI document of the contract, shipped beside the reference server.

    Located without importing the server (the suite talks to deployments over HTTP only).
    """
    spec = importlib.util.find_spec("reference_server")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / "openapi.json"
        if candidate.is_file():
            return candidate
    raise UsageError("the contract's openapi.json was not found; pass --schema PATH")


def validate(options: FuzzOptions) -> None:
    unknown_phases = sorted(set(options.phases) - set(PHASES))
    if unknown_phases or not options.phases:
        raise UsageError(f"--phases takes a subset of {','.join(PHASES)}")
    unknown_checks = sorted(set(options.checks) - set(CHECKS))
    if unknown_checks or not options.checks:
        raise UsageError(f"--checks takes a subset of {','.join(CHECKS)}")
    if options.max_examples < 1:
        raise UsageError("--max-examples must be at least 1")
    if options.workers < 1 or options.workers > 64:
        raise UsageError("--workers must be between 1 and 64")
    if options.rate_limit is not None and not RATE_LIMIT_PATTERN.match(options.rate_limit):
        raise UsageError(f"--rate-limit '{options.rate_limit}' is not <count>/<s|m|h|d>, e.g. 10/s")
    if options.token and options.api_key:
        raise UsageError("give --token or --api-key, not both")
    if options.target_url is not None:
        if not re.match(r"^https?://[^/\s]+", options.target_url):
            raise UsageError(f"--target-url '{options.target_url}' is not an http(s) URL")
        if not options.allow_writes:
            raise UsageError(
                "fuzzing creates data: against a target other than the reference stack it runs "
                "only with --allow-writes"
            )
        if not (options.token or options.api_key):
            raise UsageError("against --target-url, give --token or --api-key")


def schemathesis_command(
    options: FuzzOptions, target: FuzzTarget, schema: str, run_dir: Path, config_file: Path
) -> list[str]:
    """The `schemathesis run` command line (the credential travels in the environment)."""
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config_file),
        "--no-color",
        "run",
        schema,
        "--url",
        target.base_url,
        "--phases",
        ",".join(options.phases),
        "--checks",
        ",".join(options.checks),
        "--max-examples",
        str(options.max_examples),
        "--seed",
        str(options.seed),
        "--workers",
        str(options.workers),
        "--continue-on-failure",
        "--request-timeout",
        str(options.request_timeout_seconds),
        # PostgreSQL cannot store U+0000; the contract makes it a 400 rather than data.
        "--generation-allow-x00",
        "false",
        # Only the credential we give: a generated X-API-Key beside it would override it.
        "--generation-with-security-parameters",
        "false",
        "--generation-database",
        "none",
        "--report",
        "junit,vcr,ndjson,json",
        "--report-dir",
        str(run_dir),
        "--report-junit-path",
        str(run_dir / "junit.xml"),
        "--report-vcr-path",
        str(run_dir / "cassette.yaml"),
        "--report-ndjson-path",
        str(run_dir / "events.ndjson"),
        "--report-json-path",
        str(run_dir / "schemathesis.json"),
    ]
    rate_limit = options.rate_limit
    if rate_limit is None and not target.is_reference:
        rate_limit = DEFAULT_EXTERNAL_RATE_LIMIT
    if rate_limit is not None:
        command += ["--rate-limit", rate_limit]
    if options.insecure:
        command += ["--tls-verify", "false"]
    elif target.ca_bundle is not None:
        command += ["--tls-verify", str(target.ca_bundle)]
    command += list(options.extra_args)
    return command


def write_config(run_dir: Path, auth: AuthHeader) -> Path:
    """schemathesis.toml naming the auth header; its value is read from the environment."""
    config = run_dir / "schemathesis.toml"
    config.write_text(
        "# Written by conformance.fuzz; the credential itself is never stored here.\n"
        f'headers = {{ "{auth.name}" = "${{{AUTH_ENV}}}" }}\n',
        encoding="utf-8",
    )
    return config


def wait_reachable(target: FuzzTarget, verify: bool | ssl.SSLContext) -> None:
    try:
        httpx.get(f"{target.base_url}/health", verify=verify, timeout=HEALTH_TIMEOUT_SECONDS)
    except httpx.HTTPError as exc:
        raise UnreachableError(f"{target.base_url} did not answer: {type(exc).__name__}") from None


def operations_of(schema_path: Path | None) -> list[str]:
    if schema_path is None:
        return []
    document = json.loads(schema_path.read_text(encoding="utf-8"))
    methods = {"get", "put", "post", "delete", "patch"}
    return [
        f"{method.upper()} {path}"
        for path, item in document.get("paths", {}).items()
        for method in item
        if method in methods
    ]


def fuzz_target(options: FuzzOptions, target: FuzzTarget, run_dir: Path) -> FuzzOutcome:
    """Fuzz one running target; writes run_dir/fuzz-results.json."""
    run_dir.mkdir(parents=True, exist_ok=True)
    verify = verify_option(target.ca_bundle, options.insecure)
    wait_reachable(target, verify)
    if options.token:
        auth = AuthHeader.bearer(options.token)
    elif options.api_key:
        auth = AuthHeader.api_key(options.api_key)
    elif target.is_reference:
        auth = register_and_login(target.base_url, verify=verify)
    else:
        raise UsageError("against --target-url, give --token or --api-key")

    schema_path: Path | None
    if options.schema is None:
        schema_path = contract_document()
        schema = str(schema_path)
    elif re.match(r"^https?://", options.schema):
        schema_path, schema = None, options.schema
    else:
        schema_path = Path(options.schema)
        if not schema_path.is_file():
            raise UsageError(f"--schema {options.schema}: no such file")
        schema = str(schema_path)

    config_file = write_config(run_dir, auth)
    command = schemathesis_command(options, target, schema, run_dir, config_file)
    env = dict(os.environ)
    env[AUTH_ENV] = auth.value
    secrets = (auth.value, auth.value.removeprefix("Bearer "))
    env["SCHEMATHESIS_HOOKS"] = str(Path(__file__).with_name("hooks.py"))
    started = datetime.now(UTC)
    log_file = run_dir / "schemathesis.log"
    events = run_dir / "events.ndjson"
    # Progress from the event stream while schemathesis runs (it is silent for minutes otherwise).
    stop = threading.Event()
    watcher = threading.Thread(target=follow, args=(events, stop), daemon=True)
    with log_file.open("w", encoding="utf-8") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        watcher.start()
        try:
            returncode: int | None = process.wait(timeout=options.timeout_seconds)
        except subprocess.TimeoutExpired:
            returncode = None
            process.kill()
            process.wait()
        except BaseException:
            # Ctrl-C: what schemathesis wrote so far is masked all the same.
            process.kill()
            process.wait()
            stop.set()
            scrub_run_dir(run_dir, known=secrets)
            raise
        finally:
            stop.set()
            watcher.join(timeout=10)
    finished = datetime.now(UTC)

    results: dict[str, Any] = {
        "schema_version": RESULTS_SCHEMA_VERSION,
        "target": target.base_url,
        "provider": target.provider,
        "is_reference": target.is_reference,
        "started_at": started.isoformat(),
        "finished_at": finished.isoformat(),
        "seed": options.seed,
        "max_examples_per_operation": options.max_examples,
        "phases": list(options.phases),
        "schema": schema,
        "schemathesis_exit_code": returncode,
        "timed_out": returncode is None,
        "files": {
            "junit": "junit.xml",
            "vcr": "cassette.yaml",
            "ndjson": "events.ndjson",
            "json": "schemathesis.json",
            "log": "schemathesis.log",
        },
    }
    operations = operations_of(schema_path)
    if events.is_file():
        tally = read_events(events)
        results["schemathesis_version"] = tally.schemathesis_version
        results.update(summarise(tally, checks=options.checks, operations=operations))
        results["complete"] = tally.finished
    else:
        results.update(
            {"checks": [], "errors": [{"kind": "FatalError", "title": "no event stream"}]}
        )
        results["complete"] = False
    failures = results.get("totals", {}).get("failures", 0)
    # A run that stopped early, or could not run at all, is no evidence of conformance.
    clean = failures == 0 and returncode == 0 and results["complete"]
    results["status"] = "passed" if clean else "failed"
    results_file = run_dir / "fuzz-results.json"
    results_file.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    scrub_run_dir(run_dir, known=secrets)
    return FuzzOutcome(
        exit_status=ExitStatus.READY if clean else ExitStatus.BLOCKED,
        run_dir=run_dir,
        results_file=results_file,
        results=results,
    )


@contextmanager
def reference_target(stack: str) -> Iterator[FuzzTarget]:
    """Stand the reference stack up for fuzzing (with its rate limit out of the way)."""
    try:
        from conformance.stack import StackConfigError, StackError, open_stack
    except ImportError as exc:
        raise UsageError(
            f"the stack providers are not available ({exc}); pass --target-url"
        ) from None
    with ExitStack() as resources:
        try:
            target = resources.enter_context(
                open_stack(stack, server_env=dict(REFERENCE_SERVER_ENV))
            )
        except StackConfigError as exc:
            raise UsageError(str(exc)) from None
        except StackError as exc:
            raise UnreachableError(f"the reference stack did not start: {exc}") from None
        yield FuzzTarget(
            base_url=str(target.base_url).rstrip("/"),
            is_reference=bool(target.is_reference),
            provider=str(target.provider),
            ca_bundle=target.ca_bundle,
        )


def run_fuzz(options: FuzzOptions) -> FuzzOutcome:
    """Validate options, get a target (the reference stack unless --target-url) and fuzz it."""
    validate(options)
    run_id = options.run_id or new_run_id(datetime.now(UTC))
    run_dir = options.reports_dir / run_id / "fuzz"
    if options.target_url is not None:
        external = FuzzTarget(
            base_url=options.target_url.rstrip("/"),
            is_reference=False,
            provider="external",
            ca_bundle=options.ca_bundle,
        )
        return fuzz_target(options, external, run_dir)
    with reference_target(options.stack) as target:
        return fuzz_target(options, target, run_dir)


__all__ = [
    "CHECKS",
    "PHASES",
    "FuzzOptions",
    "FuzzOutcome",
    "FuzzTarget",
    "SetupError",
    "UnreachableError",
    "UsageError",
    "fuzz_target",
    "run_fuzz",
]
