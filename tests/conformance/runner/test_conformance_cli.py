"""`python -m conformance`: exit statuses 0, 1, 2, 3, the summary, and the catalogue listing."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conformance import cli

HERE = Path(__file__).parent


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> cli.Suite:
    """The made-up registry of fakesuite.py, for the runner and its xdist workers."""
    import fakesuite

    monkeypatch.setenv("PYTHONPATH", str(HERE))
    monkeypatch.delenv("FAKE_FAIL", raising=False)
    return cli.Suite(checks=fakesuite.CHECKS, catalogue=fakesuite.ENTRIES,
                     pytest_plugins=("fakesuite",),
                     # fakesuite is imported here before pytest could rewrite its asserts
                     pytest_args=("-W", "ignore::pytest.PytestAssertRewriteWarning"))


@pytest.fixture(autouse=True)
def _importable(monkeypatch: pytest.MonkeyPatch) -> None:
    """fakesuite is imported by name, here and by pytest's `-p`."""
    monkeypatch.syspath_prepend(str(HERE))


def run(argv: list[str], suite: cli.Suite) -> tuple[int, str]:
    out = io.StringIO()
    code = cli.main(argv, suite=suite, out=out)
    return code, out.getvalue()


def static_args(tmp_path: Path) -> list[str]:
    env = tmp_path / "prod.env"
    env.write_text("APP_ENVIRONMENT=production\n")
    return ["run", "--phase", "static", "--env-file", str(env),
            "--reports-dir", str(tmp_path / "reports")]


def test_ready_run_exits_0_and_writes_the_reports(fake: cli.Suite, tmp_path: Path) -> None:
    code, out = run(static_args(tmp_path), fake)
    assert code == 0
    assert "verdict: READY (" in out
    assert "target: none" in out
    data = json.loads((tmp_path / "reports" / "latest" / "results.json").read_text())
    assert data["run"]["options"]["env_file"].endswith("prod.env")
    timing = json.loads((tmp_path / "reports" / "conformance-timing.json").read_text())
    assert timing["run_id"] == data["run"]["run_id"]
    assert timing["wall_seconds"] == data["run"]["options"]["wall_seconds"] > 0


def test_failed_blocker_exits_1_and_is_listed(
    fake: cli.Suite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_FAIL", "1")
    code, out = run(static_args(tmp_path), fake)
    assert code == 1
    assert "FAKE-STATIC-BLOCKER failed: the blocker is broken" in out
    assert "verdict: NOT READY" in out


def test_valid_waiver_makes_it_ready_with_waivers_and_expired_one_does_not(
    fake: cli.Suite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_FAIL", "1")
    waivers = tmp_path / "waivers.yaml"
    template = ("waivers:\n  - id: FAKE-STATIC-BLOCKER\n    justification: vendor patch due\n"
                "    owner: Ana\n    expires: {}\n")
    waivers.write_text(template.format("2999-01-31"))
    code, out = run([*static_args(tmp_path), "--waivers", str(waivers)], fake)
    assert (code, "verdict: READY WITH WAIVERS") == (0, out.splitlines()[-1][:27])
    assert "waived: FAKE-STATIC-BLOCKER until 2999-01-31 (owner: Ana)" in out

    waivers.write_text(template.format("2020-01-31"))
    code, out = run([*static_args(tmp_path), "--waivers", str(waivers)], fake)
    assert code == 1
    assert "waiver expired: FAKE-STATIC-BLOCKER expired on 2020-01-31 (owner: Ana)" in out


def test_malformed_waivers_stop_the_run_with_file_and_line(
    fake: cli.Suite, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    waivers = tmp_path / "waivers.yaml"
    waivers.write_text("waivers:\n  - id: FAKE-STATIC-OK\n    owner: Ana\n"
                       "    expires: 2999-01-01\n")
    code, _ = run([*static_args(tmp_path), "--waivers", str(waivers)], fake)
    assert code == 2
    assert capsys.readouterr().err == f"error: {waivers}:2: missing 'justification'\n"
    assert not (tmp_path / "reports").exists()


def test_unattested_items_are_listed_with_how_to_attest_and_gate_only_when_asked(
    fake: cli.Suite, tmp_path: Path
) -> None:
    base = ["run", "--reports-dir", str(tmp_path / "reports"), "--hosts", "local://"]
    code, out = run([*base, "--phase", "static", "--phase", "pre-deploy"], fake)
    assert code == 1  # --phase pre-deploy requires attestations
    assert "FAKE-ATTESTED [6.1, pre-deploy, blocker]" in out
    assert "  - id: FAKE-ATTESTED" in out
    assert "# evidence expected: a signed change ticket" in out

    attestations = tmp_path / "attestations.yaml"
    attestations.write_text("attestations:\n  - id: FAKE-ATTESTED\n    by: Ops\n"
                            "    on: 2026-01-02\n    evidence: CHG-7\n")
    code, out = run([*base, "--phase", "static", "--phase", "pre-deploy",
                     "--attestations", str(attestations)], fake)
    assert code == 0
    assert "unattested (" not in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--phase", "someday"], "error: unknown phase 'someday'"),
        (["run", "--severity", "huge"], "error: unknown severity 'huge'"),
        (["run", "--env-file", "/nonexistent/.env"], "error: --env-file /nonexistent/.env: "
                                                    "no such file"),
        (["run", "--stack", "external"], "error: --stack external needs --target-url"),
        (["run", "--frobnicate"], "error: unrecognized arguments: --frobnicate"),
        ([], "error: a command is needed"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    fake: cli.Suite, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = run(argv, fake)
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(message)
    assert err.count("\n") == 1


def test_findings_come_back_from_xdist_workers(
    fake: cli.Suite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import xdist.workermanage

    # Local xdist workers start from the sys.path frozen when xdist was imported (before this
    # test put fakesuite's directory on it).
    monkeypatch.setattr(xdist.workermanage, "_sys_path", [str(HERE), *sys.path])
    monkeypatch.setenv("FAKE_FAIL", "1")
    code, out = run([*static_args(tmp_path), "--workers", "2",
                     "--cors-origin", "https://app.example.com"], fake)
    assert code == 1
    assert "verdict: NOT READY (2 passed, 1 failed;" in out
    data = json.loads((tmp_path / "reports" / "latest" / "results.json").read_text())
    [ok] = [i for i in data["items"] if i["id"] == "FAKE-STATIC-OK"]
    # The workers ran with the controller's run ID, which also names the reports.
    assert ok["findings"][0]["message"] == (
        f"fine run={data['run']['run_id']} cors=https://app.example.com")


def test_list_prints_id_section_phase_severity_kind_title(fake: cli.Suite) -> None:
    code, out = run(["list", "--phase", "pre-deploy"], fake)
    lines = out.splitlines()
    assert code == 0
    assert lines[0].split() == ["ID", "SECTION", "PHASE", "SEVERITY", "KIND", "TITLE"]
    assert lines[1].split() == ["FAKE-ATTESTED", "6.1", "pre-deploy", "blocker", "attested",
                                "title", "of", "FAKE-ATTESTED"]
    assert lines[-1] == "1 items"


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_target_exits_3_with_one_line() -> None:
    url = f"https://127.0.0.1:{closed_port()}"
    done = subprocess.run(
        [sys.executable, "-m", "conformance", "run", "--target-url", url, "--phase",
         "post-deploy"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 3, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert errors[0].startswith(f"error: target {url} unreachable")
    assert "Traceback" not in done.stderr
    assert "Traceback" not in done.stdout


def test_probe_gives_up_on_a_silent_listener() -> None:
    """A port that accepts but never answers is unreachable after the probe's timeout."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        with pytest.raises(cli.Unreachable, match="unreachable"):
            cli.probe(f"http://127.0.0.1:{port}", timeout=0.5)


def test_default_run_checks_compose_prepared_as_the_guide_prepares_it(tmp_path: Path) -> None:
    """A scratch copy: .env (600) with every empty secret generated, a certificate for BASE_URL."""
    from cryptography import x509

    files, rules, note = cli.prepare_repo_deployment(tmp_path)
    env = files["env_file"]
    assert env is not None
    assert env.stat().st_mode & 0o777 == 0o600
    values = dict(line.split("=", 1) for line in env.read_text().splitlines()
                  if "=" in line and not line.startswith("#"))
    assert all(values.values())
    assert "JWT_SECRET" in note
    host = values["BASE_URL"].split("://", 1)[1].split("/", 1)[0]
    cert = x509.load_pem_x509_certificate((tmp_path / "compose/nginx/ssl/certificate.crt")
                                          .read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert host in names.get_values_for_type(x509.DNSName)
    assert files["compose_file"] == tmp_path / "compose" / "docker-compose.prod.yml"
    assert rules
    assert not (tmp_path / "compose" / "images").exists()


def test_safety_line_says_what_a_foreign_target_may_get() -> None:
    from conformance.stack import Target

    foreign = Target(base_url="https://api.example.test", provider="external",
                     is_reference=False)
    for flags, expected in [([], "writes: read-mostly (one tagged smoke job and a bounded "
                                 "rate-limit probe; --allow-writes to lift)"),
                            (["--allow-writes"], "writes: ALLOWED by --allow-writes")]:
        out = io.StringIO()
        args = cli.build_parser().parse_args(["run", *flags])
        cli.print_safety(foreign, args, out)
        assert out.getvalue().splitlines()[1].startswith(expected)


def test_ctrl_c_cleans_the_stack_up_and_exits_130(
    fake: cli.Suite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import contextlib
    import threading
    from collections.abc import Iterator
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import conformance.stack
    from conformance.stack import Target

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    events: list[str] = []

    @contextlib.contextmanager
    def fake_stack(kind: str = "auto", **options: object) -> Iterator[Target]:
        events.append(f"open {kind}")
        try:
            yield Target(base_url=f"http://127.0.0.1:{server.server_port}", provider="embedded",
                         is_reference=True)
        finally:
            events.append("closed")

    monkeypatch.setattr(conformance.stack, "open_stack", fake_stack)
    monkeypatch.setenv("FAKE_INTERRUPT", "1")
    try:
        code, _ = run(["run", "--reports-dir", str(tmp_path / "reports")], fake)
    finally:
        server.shutdown()
        server.server_close()
    assert code == 130
    assert events == ["open auto", "closed"]
    assert not (tmp_path / "reports").exists()


def test_static_phase_on_files_from_anywhere_with_the_real_checks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The guide's own artifacts, verbatim: NOT READY, findings pointing into those files."""
    guide = Path(__file__).parents[1] / "static" / "fixtures" / "guide"
    code, out = run(["run", "--phase", "static", "--env-file", str(guide / "env.production"),
                     "--compose-file", str(guide / "docker-compose.prod.yml"),
                     "--dockerfile", str(guide / "Dockerfile.prod"),
                     "--reports-dir", str(tmp_path / "reports")], cli.Suite())
    assert code == 1
    assert "target: none" in out
    assert f"[{guide / 'env.production'}:" in capsys.readouterr().out  # pytest's failure lines
    assert "COMPOSE-NO-DOCKER-SOCKET failed" in out


def test_report_and_diff_delegate_to_the_reporting_package(
    fake: cli.Suite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reports = tmp_path / "reports"
    assert run(static_args(tmp_path), fake)[0] == 0
    before = (reports / "latest").resolve()
    monkeypatch.setenv("FAKE_FAIL", "1")
    assert run(static_args(tmp_path), fake)[0] == 1
    after = (reports / "latest").resolve()

    (after / "readiness.md").unlink()
    code, out = run(["report", str(after)], fake)
    assert (code, (after / "readiness.md").is_file()) == (0, True)
    assert out.startswith("re-rendered ")

    code, out = run(["diff", str(before), str(after)], fake)
    assert code == 1  # FAKE-STATIC-BLOCKER regressed
    assert "FAKE-STATIC-BLOCKER" in out
    assert run(["diff", str(after), str(after)], fake)[0] == 0


def test_host_phases_without_hosts_say_which_machine_they_judge(
        fake: cli.Suite, tmp_path: Path) -> None:
    argv = ["run", "--reports-dir", str(tmp_path / "reports"), "--phase", "pre-deploy"]
    _, out = run(argv, fake)
    [line] = [ln for ln in out.splitlines() if ln.startswith("hosts: ")]
    assert line == (f"hosts: local:// ({socket.gethostname()}), the machine the kit runs on; "
                    "--hosts ssh://user@server judges the server")
    _, out = run([*argv, "--hosts", "local://"], fake)  # chosen: nothing to say
    assert "hosts: " not in out


def test_an_unreachable_host_is_one_line_and_exit_status_3(
        fake: cli.Suite, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code, _ = run(["run", "--reports-dir", str(tmp_path / "reports"), "--phase", "pre-deploy",
                   "--hosts", f"ssh://nobody@127.0.0.1:{port}"], fake)
    assert code == 3
    assert capsys.readouterr().err == (f"error: host ssh://nobody@127.0.0.1:{port} unreachable: "
                                       f"ssh: connect to host 127.0.0.1 port {port}: Connection "
                                       "refused\n")
    assert not (tmp_path / "reports").exists()
