"""The run-input table (conformance/inputs.py): one declaration per input reaches every place.

The command line parses it, the runner forwards it to pytest and its xdist workers (secrets in the
target file, never on a command line), and the check receives it as a typed CheckContext field.
"""

from __future__ import annotations

import dataclasses
import io
import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from conformance import cli
from conformance.checks.chaos import chaos_scenarios
from conformance.checks.registry import CheckContext
from conformance.inputs import CONTEXT_INPUTS, RUN_INPUTS, SECRET_INPUTS, RunInput
from conformance.model import Status

HERE = Path(__file__).parent
KIND_TYPES = {"str": "str | None", "path": "Path | None", "file": "Path | None",
              "int": "int | None", "flag": "bool", "strs": "tuple[str, ...]",
              "paths": "tuple[Path, ...]", "files": "tuple[Path, ...]"}
NEW_INPUTS = {"metrics_url", "resolve", "prometheus_url", "alertmanager_url", "grafana_url",
              "grafana_token", "jwt_secret", "expired_token", "second_token", "second_api_key",
              "second_email", "second_password", "allow_load", "slow_client_count",
              "docker_host", "fuzz_results"}


def test_every_context_input_is_a_typed_context_field_with_the_table_default() -> None:
    fields = {f.name: f for f in dataclasses.fields(CheckContext)}
    hints = {f.name: str(f.type) for f in dataclasses.fields(CheckContext)}
    for spec in CONTEXT_INPUTS:
        assert spec.name in fields, f"{spec.name}: no CheckContext field"
        expected = "str" if spec.name in ("taskforge_dir", "host_root") else KIND_TYPES[spec.kind]
        assert hints[spec.name] == expected, spec.name
        default = fields[spec.name].default
        assert default == (tuple(spec.default or ()) if spec.repeatable else
                           bool(spec.default) if spec.kind == "flag" else spec.default), spec.name
    assert "extra" not in fields  # no untyped inputs any more
    assert {s.name for s in CONTEXT_INPUTS} >= NEW_INPUTS


def test_the_command_line_and_pytest_have_each_input_once() -> None:
    parser = cli.build_parser()
    run = next(a for a in parser._subparsers._group_actions  # type: ignore[union-attr]
               ).choices["run"]
    flags = {f for action in run._actions for f in action.option_strings}
    for spec in RUN_INPUTS:
        assert (spec.flag in flags) is (spec.where != "pytest"), spec.flag
    dests = [a.dest for a in run._actions]
    assert len(dests) == len(set(dests))


@pytest.fixture
def health_server() -> Iterator[str]:
    """An HTTP server on 127.0.0.1 that answers anything 200 (the run's reachability probe)."""
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def given_values(tmp_path: Path) -> tuple[list[str], dict[str, str], dict[str, Any]]:
    """argv, environment and the CheckContext values they must become, for every input."""
    argv: list[str] = []
    env: dict[str, str] = {}
    expected: dict[str, Any] = {}
    for index, spec in enumerate(CONTEXT_INPUTS):
        if spec.where == "pytest":
            continue
        value: Any
        if spec.kind == "flag":
            argv.append(spec.flag)
            expected[spec.name] = True
            continue
        if spec.kind in ("file", "files", "path"):
            path = tmp_path / f"{spec.name}.txt"
            path.write_text("x\n")
            value, shown = path, str(path)
        elif spec.kind == "int":
            value, shown = 7, "7"
        elif spec.name == "hosts":  # the run checks a given host answers before anything
            argv += [spec.flag, "local://", spec.flag, "local://"]
            expected[spec.name] = ["local://", "local://"]
            continue
        elif spec.name == "resolve":
            value, shown = "app.example.test:443:127.0.0.1", "app.example.test:443:127.0.0.1"
        else:
            value = shown = f"{spec.name}-value-{index}"
        if spec.repeatable:
            argv += [spec.flag, shown, spec.flag, shown + "2" if spec.kind == "strs" else shown]
            second = (shown + "2") if spec.kind == "strs" else value
            expected[spec.name] = [str(value), str(second)]
        elif spec.env:
            env[spec.env] = shown  # inputs with a variable are given through it
            expected[spec.name] = str(value)
        else:
            argv += [spec.flag, shown]
            expected[spec.name] = value if isinstance(value, int) else str(value)
    return argv, env, expected


@pytest.mark.parametrize("workers", [0, 2])
def test_every_input_reaches_the_check_as_its_typed_field(
    workers: int, tmp_path: Path, health_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import xdist.workermanage

    monkeypatch.syspath_prepend(str(HERE))
    # Local xdist workers start from the sys.path frozen when xdist was imported.
    monkeypatch.setattr(xdist.workermanage, "_sys_path", [str(HERE), *sys.path])
    import dumpsuite

    dumps = tmp_path / "dumps"
    dumps.mkdir()
    monkeypatch.setenv("DUMP_CONTEXT_DIR", str(dumps))
    argv, env, expected = given_values(tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # The --hosts given are names, not servers: the run's host preflight (tested with the CLI)
    # would stop at the first.
    monkeypatch.setattr("conformance.checks.host.common.unreachable_reason", lambda spec: None)
    suite = cli.Suite(checks=dumpsuite.CHECKS, catalogue=dumpsuite.ENTRIES,
                      pytest_plugins=("dumpsuite",),
                      pytest_args=("-W", "ignore::pytest.PytestAssertRewriteWarning"))
    out = io.StringIO()
    code = cli.main(["run", "--target-url", health_server, "--workers", str(workers),
                     "--reports-dir", str(tmp_path / "reports"), *argv], suite=suite, out=out)
    assert code == 0, out.getvalue()
    seen = [json.loads(p.read_text()) for p in sorted(dumps.iterdir())]
    assert len(seen) == 2
    for context in seen:
        for name, value in expected.items():
            assert context[name] == value, name
        assert context["target"] == health_server
        assert context["host_root"] == "/"
        assert context["run_id"] == seen[0]["run_id"] != ""
    results = (tmp_path / "reports" / "latest" / "results.json").read_text()
    for spec in SECRET_INPUTS:
        assert str(expected[spec.name]) not in results, f"{spec.name} in results.json"
    options = json.loads(results)["run"]["options"]
    assert options["metrics_url"] == expected["metrics_url"]
    assert options["allow_load"] is True


def test_secrets_are_never_on_the_pytest_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conformance.stack import Target

    argv, env, expected = given_values(tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    args = cli.build_parser().parse_args(["run", "--target-url", "https://x.example.test", *argv])
    suite = cli.Suite(checks=[], catalogue=[])
    plan = cli.make_plan(args, suite)
    target = Target(base_url="https://x.example.test", provider="external", is_reference=False)
    workdir = tmp_path / "work"
    workdir.mkdir()
    forwarded = " ".join(cli.pytest_arguments(args, plan, suite, workdir, target))
    for spec in SECRET_INPUTS:
        assert str(expected[spec.name]) not in forwarded, spec.name
    assert "--tf-metrics-url" in forwarded
    assert (workdir / "target.json").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--resolve", "app.example.test:443", "expected HOST:PORT:ADDRESS"),
    ("--fuzz-results", "/nonexistent/fuzz-results.json", "no such file"),
    ("--slow-client-count", "many", "expected a whole number"),
])
def test_a_bad_input_is_one_line_and_exit_2(
    flag: str, value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = cli.Suite(checks=[], catalogue=[])
    code = cli.main(["run", "--phase", "static", flag, value], suite=suite, out=io.StringIO())
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1


def test_the_chaos_check_reads_its_context_not_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The variable is the table's business: a check given no results judges nothing."""
    monkeypatch.setenv("TASKFORGE_CHAOS_RESULTS", str(tmp_path / "chaos.json"))
    statuses = {f.status for f in chaos_scenarios(CheckContext())}
    assert statuses == {Status.NOT_APPLICABLE}


def test_an_input_declared_with_a_variable_takes_it_as_default(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = RunInput(name="jwt_secret", kind="str", env="TASKFORGE_JWT_SECRET", help="-")
    monkeypatch.setenv("TASKFORGE_JWT_SECRET", "from-env")
    assert spec.initial() == "from-env"
    monkeypatch.delenv("TASKFORGE_JWT_SECRET")
    assert spec.initial() is None


def test_a_bad_value_given_to_pytest_directly_names_its_option() -> None:
    from conformance.inputs import BY_NAME
    from conformance.yamlrecords import ConfigError

    with pytest.raises(ConfigError, match="--tf-slow-client-count 'many': expected a whole"):
        BY_NAME["slow_client_count"].convert("many")
    assert BY_NAME["slow_client_count"].convert("3") == 3


def test_every_other_context_field_is_derived_by_the_plugin() -> None:
    """A new CheckContext field is a run input of the table, or one of these derived values."""
    derived = {"target",  # from --target-url / --ca-bundle or the stack the run stood up
               "database_url", "redis_url", "log_file",  # the option, else the target's
               "allow_host_writes"}  # --allow-writes itself (allow_writes adds the reference)
    fields = {f.name for f in dataclasses.fields(CheckContext)}
    assert fields - {s.name for s in CONTEXT_INPUTS} == derived
