"""The start-up benchmark writes its figures with the command that produced them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.model import ExitStatus
from conformance.stack import startup_bench


def test_startup_report_holds_figures_target_and_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "startup.json"
    status = startup_bench.main(["--stack", "embedded", "--rounds", "1", "--output", str(output),
                                 "--command", "nox -s startup -- --stack embedded"])
    assert status == 0
    report = json.loads(output.read_text())
    assert report["command"] == "nox -s startup -- --stack embedded"
    assert report["machine"]["cpus"] >= 1
    assert len(report["machine"]["load_average_before"]) == 3
    embedded = report["results"]["embedded"]
    assert embedded["target_seconds"] == 5.0
    assert len(embedded["runs"]) == 1
    assert embedded["runs"][0]["ready_seconds"] > 0
    assert embedded["median_ready_seconds"] == embedded["runs"][0]["ready_seconds"]
    assert isinstance(embedded["within_target"], bool)
    assert "docker" not in report["results"]
    assert "embedded: median" in capsys.readouterr().out


def test_rounds_out_of_range_is_a_usage_error(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "startup.json"
    assert startup_bench.main(["--rounds", "0", "--output", str(output)]) == 2
    assert capsys.readouterr().err == "error: --rounds must be from 1 to 20\n"
    assert not output.exists()


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--frobnicate"], "error: unrecognized arguments: --frobnicate"),
        (["--rounds", "three"], "error: argument --rounds: invalid int value: 'three'"),
        (["--stack", "kubernetes"], "error: argument --stack: invalid choice: 'kubernetes'"),
    ],
)
def test_a_bad_option_is_one_line_and_the_usage_status(argv: list[str], says: str,
                                                      tmp_path: Path) -> None:
    output = tmp_path / "startup.json"
    done = subprocess.run(
        [sys.executable, "-m", "conformance.stack.startup_bench", *argv, "--output", str(output)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == ExitStatus.USAGE
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(says)
    assert not output.exists()
