"""Every run input, declared once: flag, type, environment variable, default, help, and the
CheckContext field it fills.

The command line (`python -m conformance run`, `cli.build_parser`), the pytest options
(`plugin.pytest_addoption`, as `--tf-<flag>`), the argv the command line hands to pytest and its
xdist workers (`forward`), and the values a CheckContext is built from (`context_values`) are all
derived from RUN_INPUTS, as nox's option set derives its parser and its session namespace from one
list. Adding an input is one entry here and, when checks read it, one typed CheckContext field of
the same name (tests/conformance/runner/test_run_inputs.py keeps the two in step).

Secrets (credentials, signing keys) never travel on a command line: the command line writes them
into the run's target file (mode 600), which every pytest process reads; run_options never shows
them.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from conformance.stack import STACK_KINDS
from conformance.yamlrecords import ConfigError

Kind = Literal["str", "path", "file", "int", "flag", "strs", "paths", "files"]
Where = Literal["both", "cli", "pytest"]

GROUPS = {
    "target": "target",
    "identities": "second identity and signing keys (tenant isolation, auth checks)",
    "observability": "observability and front door",
    "results": "results of other runs (judged in the verdict)",
    "files": "deployment files (static checks)",
    "hosts": "hosts",
    "select": "selection and verdict",
    "internal": "internal",
}


@dataclass(frozen=True, kw_only=True, slots=True)
class RunInput:
    """One run input.

    kind: str, int, path (a path, not checked), file (a path that must be an existing file),
    flag (a switch), strs/paths/files (repeatable). `context` is the CheckContext field it fills
    (its own name), None when only the runner reads it. `where` says which parsers have it.
    """

    name: str
    kind: Kind
    help: str
    group: str = "target"
    env: str | None = None
    default: Any = None
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    context: bool = True
    secret: bool = False
    where: Where = "both"
    forwarded: bool = True  # the command line hands it to pytest (reports_dir: it writes them)
    short: str | None = None  # an extra short flag on the command line, e.g. -n

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def pytest_flag(self) -> str:
        return "--tf-" + self.name.replace("_", "-")

    @property
    def dest(self) -> str:
        return "tf_" + self.name

    @property
    def repeatable(self) -> bool:
        return self.kind in ("strs", "paths", "files")

    def initial(self) -> Any:
        """The default, taken from the environment variable when it is set."""
        if self.env and os.environ.get(self.env):
            return os.environ[self.env]
        if self.repeatable:
            return list(self.default or [])
        if self.kind == "flag":
            return bool(self.default)
        return self.default

    def convert(self, value: Any) -> Any:
        """The typed value of a parsed option (pytest options arrive as strings)."""
        if self.repeatable:
            items = list(value or [])
            return tuple(_path(v) for v in items) if self.kind != "strs" else tuple(
                str(v) for v in items)
        if self.kind == "flag":
            return bool(value)
        if value is None or value == "":
            return None
        if self.kind in ("path", "file"):
            return _path(value)
        if self.kind == "int":
            try:
                return int(value)
            except ValueError:
                raise ConfigError(f"{self.pytest_flag} {value!r}: expected a whole number"
                                  ) from None
        return str(value)


def _path(value: Any) -> Path:
    return Path(str(value)).expanduser()


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None


def _help(spec: RunInput) -> str:
    text = spec.help
    if spec.env:
        text += f" (or ${spec.env})"
    return text


RUN_INPUTS: tuple[RunInput, ...] = (
    # --- the target ------------------------------------------------------------------------------
    RunInput(name="stack", kind="str", where="cli", context=False, default="auto",
             choices=STACK_KINDS,
             help="how to get a target (default: auto; external when --target-url is given)"),
    RunInput(name="target_url", kind="str", context=False, metavar="URL",
             help="base URL of a deployment to verify"),
    RunInput(name="token", kind="str", env="TASKFORGE_TOKEN", secret=True, metavar="TOKEN",
             help="access token for the target"),
    RunInput(name="api_key", kind="str", secret=True, metavar="KEY",
             help="API key for the target"),
    RunInput(name="email", kind="str", secret=True, help="login e-mail for the target"),
    RunInput(name="password", kind="str", env="TASKFORGE_PASSWORD", secret=True,
             help="login password"),
    RunInput(name="ca_bundle", kind="file", context=False, metavar="PATH",
             help="PEM of the CA of the target's certificate"),
    RunInput(name="insecure", kind="flag",
             help="skip TLS verification for the other checks (the TLS checks still report the "
                  "certificate)"),
    RunInput(name="resolve", kind="strs", metavar="HOST:PORT:ADDRESS",
             help="connect to ADDRESS for HOST:PORT, as curl --resolve (repeatable)"),
    RunInput(name="database_url", kind="str", context=False, metavar="URL",
             help="PostgreSQL URL of the deployment, reachable here"),
    RunInput(name="redis_url", kind="str", context=False, metavar="URL",
             help="Redis URL of the deployment, reachable here"),
    RunInput(name="log_file", kind="file", context=False, metavar="PATH",
             help="file of the server's JSON log lines"),
    RunInput(name="log_command", kind="str", metavar="CMD",
             help="command printing the server's recent log lines"),
    RunInput(name="cors_origin", kind="str", metavar="ORIGIN",
             help="an origin the deployment allows (CORS checks; default: the first of "
                  "CORS_ALLOWED_ORIGINS)"),
    RunInput(name="metrics_endpoint", kind="str", metavar="PATH",
             help="path of the metrics endpoint (default: METRICS_ENDPOINT or /metrics)"),
    RunInput(name="metrics_url", kind="str", metavar="URL",
             help="the address Prometheus scrapes the server's metrics at (scrape checks; "
                  "default: the public URL, which must then refuse anonymous scrapes)"),
    RunInput(name="migrations_dir", kind="path", metavar="PATH",
             help="the migrations the deployment should have applied"),
    RunInput(name="allow_writes", kind="flag",
             help="allow writes beyond one smoke job and a bounded rate-limit probe on a target "
                  "that is not the reference stack"),
    RunInput(name="allow_load", kind="flag",
             help="allow checks that load a target that is not the reference stack (many "
                  "connections, slow clients)"),
    RunInput(name="slow_client_count", kind="int", metavar="N",
             help="slow clients the slow-client check opens (needs --allow-load on a foreign "
                  "target)"),
    # --- identities and keys ---------------------------------------------------------------------
    RunInput(name="jwt_secret", kind="str", env="TASKFORGE_JWT_SECRET", secret=True,
             group="identities", metavar="SECRET",
             help="the server's JWT_SECRET, to sign genuine expired and re-signed tokens"),
    RunInput(name="expired_token", kind="str", secret=True, group="identities", metavar="TOKEN",
             help="a genuine expired access token of the target (LIVE-AUTH-EXPIRED)"),
    RunInput(name="second_token", kind="str", secret=True, group="identities", metavar="TOKEN",
             help="access token of a user in another organisation"),
    RunInput(name="second_api_key", kind="str", secret=True, group="identities", metavar="KEY",
             help="API key of another organisation"),
    RunInput(name="second_email", kind="str", secret=True, group="identities",
             help="login e-mail of a user in another organisation"),
    RunInput(name="second_password", kind="str", secret=True, group="identities",
             help="login password of a user in another organisation"),
    RunInput(name="member_token", kind="str", env="TASKFORGE_MEMBER_TOKEN", secret=True,
             group="identities", metavar="TOKEN",
             help="access token of a member (not an admin) of the run's organisation "
                  "(LIVE-PERM-MEMBER; default: the kit makes a member API key)"),
    RunInput(name="member_api_key", kind="str", env="TASKFORGE_MEMBER_API_KEY", secret=True,
             group="identities", metavar="KEY",
             help="API key holding only a member's permissions in the run's organisation "
                  "(LIVE-PERM-MEMBER)"),
    # --- observability and the front door --------------------------------------------------------
    RunInput(name="prometheus_url", kind="str", group="observability", metavar="URL",
             help="base URL of the deployment's Prometheus"),
    RunInput(name="alertmanager_url", kind="str", group="observability", metavar="URL",
             help="base URL of the deployment's Alertmanager"),
    RunInput(name="grafana_url", kind="str", group="observability", metavar="URL",
             help="base URL of the deployment's Grafana"),
    RunInput(name="grafana_token", kind="str", secret=True, group="observability",
             metavar="TOKEN", help="Grafana service-account token"),
    RunInput(name="docker_host", kind="str", group="observability", metavar="URL",
             help="Docker engine of the deployment (e.g. ssh://user@server, "
                  "unix:///var/run/docker.sock)"),
    # --- results of other runs -------------------------------------------------------------------
    RunInput(name="chaos_results", kind="file", group="results", env="TASKFORGE_CHAOS_RESULTS",
             metavar="PATH",
             help="results file of `python -m conformance.chaos` (chaos checks)"),
    RunInput(name="load_results", kind="file", group="results", metavar="PATH",
             help="verdict.json of `python -m loadtests` (load and sizing checks)"),
    RunInput(name="fuzz_results", kind="file", group="results", metavar="PATH",
             help="fuzz-results.json of `nox -s fuzz` (API-FUZZ-* items)"),
    # --- deployment files ------------------------------------------------------------------------
    RunInput(name="env_file", kind="file", group="files", metavar="PATH",
             help="the deployment's .env file"),
    RunInput(name="compose_file", kind="file", group="files", metavar="PATH",
             help="the deployment's docker-compose.prod.yml"),
    RunInput(name="dockerfile", kind="file", group="files", metavar="PATH",
             help="the deployment's production Dockerfile"),
    RunInput(name="nginx_conf", kind="file", group="files", metavar="PATH",
             help="the nginx configuration"),
    RunInput(name="prometheus_config", kind="file", group="files", metavar="PATH",
             help="prometheus.yml"),
    RunInput(name="prometheus_rules", kind="files", group="files", metavar="PATH",
             help="alert rule file (repeatable)"),
    RunInput(name="runbook", kind="file", group="files", metavar="PATH",
             help="the procedures the team runs: Markdown in the guide's form (numbered section "
                  "headings, ```bash blocks); the PROC-* items judge it instead of the guide's"),
    # --- hosts -----------------------------------------------------------------------------------
    RunInput(name="hosts", kind="strs", group="hosts", metavar="SPEC",
             help="testinfra host spec, e.g. ssh://user@server (repeatable; default: local:// "
                  "when --phase pre-deploy, daily or monthly is selected)"),
    RunInput(name="taskforge_dir", kind="str", group="hosts", default="/opt/taskforge",
             metavar="PATH", help="the deployment directory on the host (default: /opt/taskforge)"),
    RunInput(name="host_root", kind="str", group="hosts", default="/", where="pytest",
             metavar="PATH", help="prefix of the files host checks read (tests use a fake root)"),
    # --- selection and verdict -------------------------------------------------------------------
    RunInput(name="phase", kind="strs", group="select", context=False,
             help="static, pre-deploy, post-deploy, production, daily, weekly, monthly "
                  "(repeatable; default: all)"),
    RunInput(name="severity", kind="str", group="select", context=False,
             help="only this severity and more serious ones"),
    RunInput(name="waivers", kind="file", group="select", context=False, metavar="PATH",
             help="YAML file of waivers"),
    RunInput(name="attestations", kind="file", group="select", context=False, metavar="PATH",
             help="YAML file of attestations"),
    RunInput(name="require_attestations", kind="flag", group="select", context=False,
             help="unattested blocking items block the verdict (implied by --phase pre-deploy)"),
    RunInput(name="workers", kind="int", group="select", context=False, where="cli", short="-n",
             help="pytest-xdist worker processes (default: 0, in-process)"),
    RunInput(name="reports_dir", kind="path", group="select", context=False, forwarded=False,
             metavar="PATH", help="where reports/<run-id>/ is written (python -m conformance run: "
                                  "default ./reports; pytest alone writes none without it)"),
    # --- between the command line and pytest -----------------------------------------------------
    RunInput(name="target_file", kind="file", group="internal", context=False, where="pytest",
             metavar="PATH", help="JSON file describing the target and its credentials "
                                  "(written by `python -m conformance run`)"),
    RunInput(name="run_id", kind="str", group="internal", where="pytest", metavar="ID",
             help="the run's ID (tags the smoke job; names reports/<run-id>/)"),
    RunInput(name="no_summary", kind="flag", group="internal", context=False, where="pytest",
             help="leave the verdict summary to the caller (python -m conformance run)"),
)

BY_NAME: dict[str, RunInput] = {spec.name: spec for spec in RUN_INPUTS}
#: The CheckContext fields the table fills directly.
CONTEXT_INPUTS = tuple(spec for spec in RUN_INPUTS if spec.context)
SECRET_INPUTS = tuple(spec for spec in RUN_INPUTS if spec.secret)


# --- derived: argparse, pytest options, forwarding, context values ------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The inputs of `python -m conformance run`, in their groups."""
    groups: dict[str, Any] = {}
    for spec in RUN_INPUTS:
        if spec.where == "pytest":
            continue
        group = groups.get(spec.group)
        if group is None:
            group = groups[spec.group] = parser.add_argument_group(GROUPS[spec.group])
        flags = [f for f in (spec.short, spec.flag) if f]
        kwargs: dict[str, Any] = {"dest": spec.name, "help": _help(spec)}
        if spec.kind == "flag":
            kwargs.update(action="store_true", default=spec.initial())
        else:
            kwargs.update(default=spec.initial(), metavar=spec.metavar, choices=spec.choices)
            if spec.repeatable:
                kwargs["action"] = "append"
            if spec.kind in ("path", "file", "paths", "files"):
                kwargs["type"] = Path
            elif spec.kind == "int":
                kwargs["type"] = _int
        group.add_argument(*flags, **kwargs)


def add_pytest_options(addoption: Callable[..., None]) -> None:
    """The same inputs as `--tf-*` pytest options (values kept as given; see convert)."""
    for spec in RUN_INPUTS:
        if spec.where == "cli":
            continue
        kwargs: dict[str, Any] = {"dest": spec.dest, "help": _help(spec)}
        if spec.kind == "flag":
            kwargs.update(action="store_true", default=spec.initial())
        else:
            kwargs.update(default=spec.initial(), metavar=spec.metavar or spec.name.upper())
            if spec.repeatable:
                kwargs["action"] = "append"
        addoption(spec.pytest_flag, **kwargs)


def forward(values: Mapping[str, Any]) -> list[str]:
    """`--tf-*` arguments carrying the given values to every pytest process.

    Secrets are left out (they go into the target file); so are inputs pytest does not have,
    and values that are unset (None, False, empty).
    """
    argv: list[str] = []
    for spec in RUN_INPUTS:
        if (spec.where == "cli" or spec.secret or not spec.forwarded
                or spec.name not in values):
            continue
        value = values[spec.name]
        if spec.kind == "flag":
            if value:
                argv.append(spec.pytest_flag)
        elif spec.repeatable:
            for item in value or ():
                argv += [spec.pytest_flag, str(item)]
        elif value is not None and value != "":
            argv += [spec.pytest_flag, str(value)]
    return argv


def secrets_of(values: Mapping[str, Any]) -> dict[str, str]:
    """The secret inputs that are set, by name."""
    return {spec.name: str(values[spec.name]) for spec in SECRET_INPUTS
            if values.get(spec.name)}


def context_values(option: Any, *, overrides: Mapping[str, Any] | None = None
                   ) -> dict[str, Any]:
    """The typed CheckContext fields of the parsed pytest options (`config.option`).

    `overrides` (secrets read from the target file) fill inputs left unset on the command line.
    """
    values: dict[str, Any] = {}
    for spec in CONTEXT_INPUTS:
        raw = getattr(option, spec.dest, None) if spec.where != "cli" else None
        if not raw and overrides and overrides.get(spec.name) is not None:
            raw = overrides[spec.name]
        values[spec.name] = spec.convert(raw)
    return values


def file_inputs(values: Mapping[str, Any]) -> Iterable[tuple[str, Path]]:
    """(flag, path) of every given input that must name an existing file."""
    for spec in RUN_INPUTS:
        if spec.kind not in ("file", "files") or spec.where == "pytest":
            continue
        given = values.get(spec.name)
        for path in (given or ()) if spec.repeatable else ((given,) if given else ()):
            yield spec.flag, Path(path)


def resolve_entry(text: str) -> tuple[str, int, str] | None:
    """HOST:PORT:ADDRESS (curl --resolve; an IPv6 ADDRESS may be bracketed), None if malformed."""
    host, _, rest = text.partition(":")
    port, _, address = rest.partition(":")
    address = address.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536 or not address:
        return None
    return host, int(port), address
