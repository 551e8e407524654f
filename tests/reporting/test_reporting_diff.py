"""Comparing two runs: a regression exits 1, a fix exits 0, bad input exits 2 with one line."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from reporting_factories import item, mixed_items, run_result

from conformance.model import Status
from conformance.reporting import FILENAMES, diff, render_run_dir, write_reports


def _runs(tmp_path: Path, old: Status, new: Status) -> tuple[Path, Path]:
    stable = item("ENV-LOG-LEVEL", Status.PASSED)
    first = write_reports(
        run_result([stable, item("ENV-DB-POOL", old)], run_id="old"), tmp_path
    )
    second = write_reports(
        run_result([stable, item("ENV-DB-POOL", new)], run_id="new"), tmp_path
    )
    return first, second


def test_diff_exits_1_on_a_regression(tmp_path: Path) -> None:
    old, new = _runs(tmp_path, Status.PASSED, Status.FAILED)
    out = io.StringIO()

    assert diff.main([str(old), str(new)], out=out) == 1
    text = out.getvalue()
    assert "regressed: 1" in text
    assert "ENV-DB-POOL [major] passed -> failed" in text
    assert "fixed: 0" in text


def test_diff_exits_0_on_a_fix(tmp_path: Path) -> None:
    old, new = _runs(tmp_path, Status.FAILED, Status.PASSED)
    out = io.StringIO()

    assert diff.main([str(old), str(new)], out=out) == 0
    assert "fixed: 1" in out.getvalue()
    assert "ENV-DB-POOL [major] failed -> passed" in out.getvalue()
    assert "regressed: 0" in out.getvalue()


def test_diff_counts_a_new_failing_item_as_a_regression(tmp_path: Path) -> None:
    old = write_reports(run_result([item("A-1", Status.PASSED)], run_id="old"), tmp_path)
    new = write_reports(
        run_result([item("A-1", Status.PASSED), item("B-2", Status.ERROR)], run_id="new"),
        tmp_path,
    )

    assert diff.main([str(old / "results.json"), str(new)], out=io.StringIO()) == 1


def test_diff_of_a_run_with_itself_is_clean(tmp_path: Path) -> None:
    run_dir = write_reports(run_result(mixed_items()), tmp_path)
    out = io.StringIO()

    assert diff.main([str(run_dir), str(run_dir)], out=out) == 0
    assert "regressed: 0\nfixed: 0\nother changes: 0" in out.getvalue()


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing", "no such file"),
        ("not-json", "not JSON"),
        ("bad-schema", "does not follow schema"),
    ],
)
def test_diff_exits_2_with_one_line_on_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], setup: str, message: str
) -> None:
    good = write_reports(run_result(mixed_items()), tmp_path)
    bad = tmp_path / "bad"
    if setup != "missing":
        bad.mkdir()
        body = "{not json" if setup == "not-json" else '{"schema_version": "1.0", "run": {}}'
        (bad / "results.json").write_text(body)

    assert diff.main([str(good), str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert message in err
    assert err.count("\n") == 1


def test_diff_with_a_missing_argument_exits_2_with_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert diff.main(["only-one"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert err.count("\n") == 1


def test_render_run_dir_rebuilds_every_file_from_results_json(tmp_path: Path) -> None:
    run_dir = write_reports(run_result(mixed_items()), tmp_path)
    before = {name: (run_dir / name).read_text() for name in FILENAMES}
    for name in FILENAMES:
        if name != "results.json":
            (run_dir / name).unlink()

    render_run_dir(run_dir)

    assert {name: (run_dir / name).read_text() for name in FILENAMES} == before


def test_report_module_rerenders_and_refuses_a_bad_dir_in_one_line(tmp_path: Path) -> None:
    """`python -m conformance.reporting render <dir>`, which `nox -s report` runs."""
    run_dir = write_reports(run_result(mixed_items()), tmp_path)
    (run_dir / "readiness.html").unlink()

    ok = subprocess.run(
        [sys.executable, "-m", "conformance.reporting", "render", str(run_dir)],
        capture_output=True, text=True, check=False, timeout=120,
    )
    bad = subprocess.run(
        [sys.executable, "-m", "conformance.reporting", "render", str(tmp_path / "nope")],
        capture_output=True, text=True, check=False, timeout=120,
    )

    assert ok.returncode == 0, ok.stderr
    assert (run_dir / "readiness.html").exists()
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: ")
    assert bad.stderr.count("\n") == 1
