"""Load profiles and sweep settings, read from profiles.toml (or a file the user gives)."""

from __future__ import annotations

import itertools
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

USER_KINDS = ("submitter", "poller", "worker", "health")
PERCENTILES = ("p50", "p95", "p99")
RUN_THRESHOLDS = ("error_rate", "throughput", "pool_exhaustion")


class ProfileError(ValueError):
    """A profile file that cannot be used; the message is one line."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Stage:
    until: float  # seconds from the start
    users: int
    spawn_rate: float


@dataclass(frozen=True, kw_only=True, slots=True)
class Thresholds:
    latency_ms: dict[str, dict[str, float]]  # endpoint ("all" included) -> percentile -> limit
    error_rate: float | None = None
    throughput: float | None = None  # minimum requests/s
    pool_exhaustion: int | None = None  # maximum 503 responses


@dataclass(frozen=True, kw_only=True, slots=True)
class Profile:
    name: str
    description: str
    server: dict[str, int]
    mix: dict[str, int]
    stages: tuple[Stage, ...]
    thresholds: Thresholds

    @property
    def duration(self) -> float:
        return self.stages[-1].until

    @property
    def peak_users(self) -> int:
        return max(s.users for s in self.stages)

    def capped(self, *, max_users: int, max_seconds: float) -> Profile:
        """The same shape scaled down to fit the caps (used against foreign targets)."""
        scale_users = min(1.0, max_users / self.peak_users)
        scale_time = min(1.0, max_seconds / self.duration)
        stages = tuple(
            Stage(
                until=round(s.until * scale_time, 1),
                users=max(1, int(s.users * scale_users)),
                spawn_rate=s.spawn_rate,
            )
            for s in self.stages
        )
        return Profile(
            name=self.name, description=self.description, server=self.server, mix=self.mix,
            stages=stages, thresholds=self.thresholds,
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class Sweep:
    workers: tuple[int, ...]
    pool_sizes: tuple[int, ...]
    users: int
    spawn_rate: float
    seconds: float
    mix: dict[str, int] = field(default_factory=dict)


def default_profiles_path() -> Path:
    return Path(str(resources.files("loadtests").joinpath("profiles.toml")))


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ProfileError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{path}: {exc}") from None


def _thresholds(name: str, raw: dict[str, Any]) -> Thresholds:
    latency: dict[str, dict[str, float]] = {}
    run: dict[str, float] = {}
    for key, value in raw.items():
        if key in RUN_THRESHOLDS:
            if not isinstance(value, int | float):
                raise ProfileError(f"profile {name}: threshold {key} must be a number")
            run[key] = float(value)
        elif isinstance(value, dict):
            unknown = set(value) - set(PERCENTILES)
            if unknown:
                raise ProfileError(f"profile {name}: threshold {key}: unknown {sorted(unknown)}")
            latency[key] = {p: float(v) for p, v in value.items()}
        else:
            raise ProfileError(f"profile {name}: threshold {key} is not understood")
    return Thresholds(
        latency_ms=latency,
        error_rate=run.get("error_rate"),
        throughput=run.get("throughput"),
        pool_exhaustion=int(run["pool_exhaustion"]) if "pool_exhaustion" in run else None,
    )


def _mix(where: str, raw: dict[str, Any]) -> dict[str, int]:
    unknown = set(raw) - set(USER_KINDS)
    if unknown:
        raise ProfileError(f"{where}: unknown user kinds {sorted(unknown)}; know {USER_KINDS}")
    if not raw or any(not isinstance(v, int) or v < 0 for v in raw.values()):
        raise ProfileError(f"{where}: mix weights must be non-negative integers")
    return {k: int(v) for k, v in raw.items() if v}


def load_profile(name: str, path: Path | None = None) -> Profile:
    path = path or default_profiles_path()
    profiles = _read(path).get("profiles", {})
    if name not in profiles:
        raise ProfileError(f"no profile {name!r} in {path}; have {sorted(profiles)}")
    raw = profiles[name]
    try:
        stages = tuple(
            Stage(until=float(s["until"]), users=int(s["users"]), spawn_rate=float(s["spawn_rate"]))
            for s in raw["stages"]
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ProfileError(f"profile {name}: bad stage ({exc})") from None
    if not stages or any(b.until <= a.until for a, b in itertools.pairwise(stages)):
        raise ProfileError(f"profile {name}: stages must be non-empty with increasing `until`")
    return Profile(
        name=name,
        description=str(raw.get("description", "")),
        server={k: int(v) for k, v in raw.get("server", {}).items()},
        mix=_mix(f"profile {name}", raw.get("mix", {})),
        stages=stages,
        thresholds=_thresholds(name, raw.get("thresholds", {})),
    )


def load_sweep(path: Path | None = None) -> Sweep:
    path = path or default_profiles_path()
    raw = _read(path).get("sweep")
    if not raw:
        raise ProfileError(f"{path}: no [sweep] table")
    return Sweep(
        workers=tuple(int(w) for w in raw["workers"]),
        pool_sizes=tuple(int(p) for p in raw["pool_sizes"]),
        users=int(raw["users"]),
        spawn_rate=float(raw["spawn_rate"]),
        seconds=float(raw["seconds"]),
        mix=_mix("sweep", raw.get("mix", {})),
    )
