"""Evidence as text: an HTTP exchange as a curl command, a file and line, command output."""

from __future__ import annotations

from conformance.model import Evidence

#: Output of a host command is cut here in text reports; the HTML report and results.json keep it.
MAX_OUTPUT_CHARS = 2000


def location(evidence: Evidence) -> str | None:
    """`file:line` (or just the file) when the evidence points into a file."""
    if not evidence.file:
        return None
    return f"{evidence.file}:{evidence.line}" if evidence.line else evidence.file


def describe(evidence: Evidence, *, max_output: int = MAX_OUTPUT_CHARS) -> str:
    """Several lines a reader can act on: how to reproduce it and what came back."""
    lines: list[str] = []
    if evidence.summary:
        lines.append(evidence.summary)
    if evidence.curl:
        lines.append(f"$ {evidence.curl}")
    if evidence.status_code is not None:
        lines.append(f"HTTP status {evidence.status_code}")
    lines.extend(f"{name}: {value}" for name, value in evidence.headers.items())
    where = location(evidence)
    if where:
        lines.append(f"at {where}")
    if evidence.command:
        lines.append(f"$ {evidence.command}")
    if evidence.output:
        output = evidence.output
        if len(output) > max_output:
            output = output[:max_output] + f"\n... ({len(evidence.output) - max_output} more chars)"
        lines.append(output)
    return "\n".join(lines)
