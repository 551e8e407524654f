"""Deploy-readiness reports of a run: results.json, junit.xml, results.sarif, readiness.md/.html.

`write_reports` writes `reports/<run-id>/` and points `reports/latest` at it; `render_run_dir`
re-renders a run directory from its results.json; `diff.main` compares two runs.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

from conformance.model import RunResult
from conformance.reporting import html, junit, markdown, results, sarif
from conformance.reporting.redact import redact_result
from conformance.reporting.results import ReportError

LATEST = "latest"
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

#: Every report file and how it is rendered, in the order they are written (results.json first:
#: the others can always be re-rendered from it).
RENDERERS: tuple[tuple[str, Callable[[RunResult], str]], ...] = (
    (results.FILENAME, results.render),
    (junit.FILENAME, junit.render),
    (sarif.FILENAME, sarif.render),
    (markdown.FILENAME, markdown.render),
    (html.FILENAME, html.render),
)
FILENAMES = tuple(name for name, _ in RENDERERS)


def _write_atomically(path: Path, text: str) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see half a report."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; reports are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _point_latest(reports_root: Path, run_dir: Path) -> None:
    """Replace reports/latest by a relative symlink to run_dir in one rename."""
    latest = reports_root / LATEST
    if latest.exists() and not latest.is_symlink():
        # An OSError, like any other failure to write into reports/, so runners treat it alike.
        raise FileExistsError(f"{latest} exists and is not a symlink; move it away")
    tmp = reports_root / f".{LATEST}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(run_dir.name, target_is_directory=True)
    try:
        os.replace(tmp, latest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def render_files(result: RunResult, run_dir: Path) -> None:
    """Write all five report files of `result` into run_dir (which must exist)."""
    safe = redact_result(result)
    rendered = [(name, render(safe)) for name, render in RENDERERS]  # render all before writing any
    for name, text in rendered:
        _write_atomically(run_dir / name, text)


def write_reports(result: RunResult, reports_root: Path) -> Path:
    """Write reports/<run-id>/ with all five files, point reports/latest at it, return the dir."""
    run_id = result.run.run_id
    if not _RUN_ID.match(run_id):
        raise ReportError(f"run id {run_id!r} cannot name a directory (letters, digits, . _ -)")
    run_dir = reports_root / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    render_files(result, run_dir)
    _point_latest(reports_root, run_dir)
    return run_dir


def render_run_dir(run_dir: Path) -> None:
    """Re-render every report file of a run directory from its results.json."""
    if not run_dir.is_dir():
        raise ReportError(f"{run_dir}: not a run directory")
    render_files(results.load(run_dir), run_dir)


__all__ = ["FILENAMES", "ReportError", "render_files", "render_run_dir", "write_reports"]
