"""Optional profiles of the server during a phase (`--profile DIR`): py-spy, when installed.

py-spy samples the running server from outside (no code of the server changes); each phase leaves
DIR/<phase>.folded (collapsed stacks) and DIR/<phase>.top.txt (where the samples were).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

#: Per second; --nonblocking keeps py-spy from pausing the server; on-CPU samples only.
SAMPLE_RATE = 200
TOP = 40


def executable() -> str | None:
    """py-spy on PATH, or beside this interpreter (a virtualenv not activated)."""
    beside = Path(sys.executable).parent / "py-spy"
    return shutil.which("py-spy") or (str(beside) if beside.is_file() else None)


def available() -> bool:
    return executable() is not None


@contextlib.contextmanager
def profiled(directory: Path | None, phase: str, pid: int) -> Iterator[None]:
    """Record the server's process tree while the block runs (nothing when directory is None)."""
    spy = executable()
    if directory is None or spy is None:
        yield
        return
    directory.mkdir(parents=True, exist_ok=True)
    folded = directory / f"{phase}.folded"
    proc = subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--subprocesses", "--nonblocking",
         "--rate", str(SAMPLE_RATE), "--format", "raw", "--output", str(folded)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        proc.send_signal(2)  # SIGINT: py-spy writes its output and exits
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if folded.is_file():
            (directory / f"{phase}.top.txt").write_text(summarize(folded), encoding="utf-8")


def _frame_name(frame: str) -> str:
    # "function (path/to/module.py:123)" → "function (module.py)"
    name, _, where = frame.partition(" (")
    file = where.rsplit("/", 1)[-1].split(":", 1)[0]
    return f"{name} ({file})" if file else name


def summarize(folded: Path) -> str:
    """Self and inclusive sample shares of the busiest frames, idle stacks counted apart."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = idle = 0
    for line in folded.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";") if f]
        total += count
        if frames and any(word in frames[-1] for word in ("select (", "epoll", "poll (", "wait (")):
            idle += count
        if frames:
            own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return "no samples\n"
    lines = [f"samples: {total}, idle-looking (select/poll/wait leaf): {idle / total:.1%}", "",
             "self:"]
    lines += [f"{n / total:7.1%}  {name}" for name, n in own.most_common(TOP)]
    lines += ["", "inclusive:"]
    lines += [f"{n / total:7.1%}  {name}" for name, n in inclusive.most_common(TOP)]
    return "\n".join(lines) + "\n"
