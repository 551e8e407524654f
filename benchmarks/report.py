"""Figures, their limits and targets, and the bench.json record and console line of each."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1


class TargetKind(StrEnum):
    MIN_RATIO = "min_ratio"  # value / limit must be at least the target
    MAX_VALUE = "max_value"  # value itself must be at most the target
    MIN_VALUE = "min_value"  # value itself must be more than the target (a peer's figure)


@dataclass(frozen=True, kw_only=True)
class Target:
    kind: TargetKind
    value: float
    text: str  # the wording, for the reader


@dataclass(kw_only=True)
class Figure:
    """One measured number; `limit` names the figure it is compared with, when there is one."""

    name: str
    value: float | None
    unit: str
    group: str  # limits | engine | peers | derived
    config: dict[str, Any] = field(default_factory=dict)
    limit: str | None = None
    target: Target | None = None
    error: str | None = None  # why value is None (a phase failed or was cut short)


@dataclass(kw_only=True)
class Evaluated:
    figure: Figure
    limit_value: float | None
    ratio: float | None
    met: bool | None  # None: no target, or a value missing


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def evaluate(figures: list[Figure]) -> list[Evaluated]:
    """Each figure with its ratio to its limit and whether its target is met."""
    by_name = {f.name: f for f in figures}
    out: list[Evaluated] = []
    for fig in figures:
        limit_value = by_name[fig.limit].value if fig.limit in by_name else None
        ratio = None
        if _finite(fig.value) and _finite(limit_value) and limit_value:
            assert fig.value is not None and limit_value is not None
            ratio = fig.value / limit_value
        met: bool | None = None
        if fig.target is not None and _finite(fig.value):
            assert fig.value is not None
            if fig.target.kind is TargetKind.MIN_RATIO:
                met = None if ratio is None else ratio >= fig.target.value
            elif fig.target.kind is TargetKind.MAX_VALUE:
                met = fig.value <= fig.target.value
            elif limit_value is not None:
                met = fig.value > limit_value
        out.append(Evaluated(figure=fig, limit_value=limit_value, ratio=ratio, met=met))
    return out


def _round(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.4g}") if abs(value) < 1000 else round(value, 1)


def record(ev: Evaluated) -> dict[str, Any]:
    fig = ev.figure
    return {
        "name": fig.name,
        "group": fig.group,
        "value": _round(fig.value),
        "unit": fig.unit,
        "limit": fig.limit,
        "limit_value": _round(ev.limit_value),
        "ratio": _round(ev.ratio),
        "target": None if fig.target is None else {
            "kind": fig.target.kind.value, "value": fig.target.value, "text": fig.target.text,
        },
        "met": ev.met,
        "error": fig.error,
        "config": fig.config,
    }


def line(ev: Evaluated) -> str:
    """One console line: name, value, ratio and the verdict."""
    fig = ev.figure
    value = "n/a" if fig.value is None else f"{fig.value:,.1f}" if fig.value >= 100 else (
        f"{fig.value:.3g}")
    text = f"{fig.name:<44} {value:>12} {fig.unit:<8}"
    if ev.ratio is not None:
        text += f" ratio {ev.ratio:6.3f} to {fig.limit}"
    if fig.target is not None:
        verdict = {True: "met", False: "NOT MET", None: "unknown"}[ev.met]
        text += f"  [{fig.target.text}: {verdict}]"
    if fig.error:
        text += f"  ({fig.error})"
    return text


def write(path: Path, evaluated: list[Evaluated], *, command: str, machine: dict[str, Any],
          settings: dict[str, Any], started_at: datetime, finished_at: datetime) -> None:
    """reports/bench.json, written whole to a temporary file first (never half a report)."""
    document = {
        "schema_version": SCHEMA_VERSION,
        "command": command,
        "started_at": started_at.astimezone(UTC).isoformat(),
        "finished_at": finished_at.astimezone(UTC).isoformat(),
        "machine": machine,
        "settings": settings,
        "figures": [record(ev) for ev in evaluated],
        "targets": {
            "met": sum(1 for ev in evaluated if ev.met is True),
            "not_met": sum(1 for ev in evaluated if ev.met is False),
            "unknown": sum(1 for ev in evaluated if ev.figure.target and ev.met is None),
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
