"""The field's own validators (promtool, nginx) as the static checks run them.

A missing tool makes its item not applicable with the line that installs it; a tool that hangs
is stopped after TOOL_TIMEOUT_SECONDS.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from conformance.checks.static.base import ArtifactError, NotApplicable

TOOL_TIMEOUT_SECONDS = 30

#: Also looked in when PATH lacks them (nginx lives in /usr/sbin).
SYSTEM_DIRS = (Path("/usr/sbin"), Path("/usr/bin"))
#: Where each tool comes from (Debian packages; .ci/run installs them).
PACKAGES = {"promtool": "prometheus", "nginx": "nginx"}


@dataclass(frozen=True, kw_only=True, slots=True)
class ToolResult:
    returncode: int
    output: str  # stdout and stderr together, in that order


def require_tool(name: str) -> str:
    """The tool's path, or NotApplicable saying how to install it."""
    found = shutil.which(name) or next(
        (str(d / name) for d in SYSTEM_DIRS if (d / name).is_file()), None
    )
    if found is None:
        package = PACKAGES.get(name, name)
        raise NotApplicable(
            f"{name} is not installed, so the item cannot be judged: apt-get install {package} "
            f"(Debian package {package})"
        )
    return found


def run_tool(argv: list[str], artifact: Path, cwd: Path | None = None) -> ToolResult:
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT_SECONDS, check=False,
            cwd=cwd,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ArtifactError(artifact, f"{Path(argv[0]).name} did not run: {exc}") from None
    return ToolResult(returncode=done.returncode, output=(done.stdout + "\n" + done.stderr))


def tool_version(executable: str, flag: str = "-v") -> tuple[int, ...] | None:
    """The x.y.z a tool prints for its version flag (nginx prints it on stderr)."""
    try:
        done = subprocess.run([executable, flag], capture_output=True, text=True,
                              timeout=TOOL_TIMEOUT_SECONDS, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"(\d+)\.(\d+)\.(\d+)", done.stdout + done.stderr)
    return tuple(int(g) for g in match.groups()) if match else None


def line_of_text(path: Path, needle: str) -> int | None:
    """The first line of the file that contains `needle` (for tools that name no line)."""
    try:
        for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if needle and needle in text:
                return number
    except (OSError, UnicodeDecodeError):
        return None
    return None
