"""PNG plots of a load run and of the sizing sweep (matplotlib, no display needed)."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # headless: CI machines have no display
import matplotlib.pyplot as plt

if TYPE_CHECKING:
    from loadtests.sizing import SweepPoint


def _history(csv_prefix: Path) -> list[dict[str, float]]:
    rows = []
    with open(f"{csv_prefix}_stats_history.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["Name"] != "Aggregated":
                continue

            def num(key: str, r: dict[str, str] = row) -> float:
                try:
                    return float(r[key])
                except (KeyError, ValueError):
                    return 0.0

            rows.append({
                "t": num("Timestamp"), "users": num("User Count"), "rps": num("Requests/s"),
                "p50": num("50%"), "p95": num("95%"), "p99": num("99%"),
            })
    if rows:
        start = rows[0]["t"]
        for r in rows:
            r["t"] -= start
    return rows


def plot_run(csv_prefix: Path, out_dir: Path) -> list[Path]:
    """Throughput and p95 against users, and latency percentiles over time."""
    rows = _history(csv_prefix)
    written: list[Path] = []
    if not rows:
        return written

    by_users: dict[int, list[dict[str, float]]] = defaultdict(list)
    for r in rows:
        if r["users"] > 0:
            by_users[int(r["users"])].append(r)
    users = sorted(by_users)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(users, [sum(r["rps"] for r in by_users[u]) / len(by_users[u]) for u in users],
            marker="o", label="throughput (req/s)")
    ax.set_xlabel("users")
    ax.set_ylabel("requests/s")
    ax2 = ax.twinx()
    ax2.plot(users, [max(r["p95"] for r in by_users[u]) for u in users], marker="s",
             color="tab:red", label="p95 (ms)")
    ax2.set_ylabel("p95 latency (ms)")
    ax.set_title("Throughput and p95 against users")
    fig.legend(loc="upper left")
    fig.tight_layout()
    path = out_dir / "throughput-vs-users.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(path)

    fig, ax = plt.subplots(figsize=(7, 4))
    for key in ("p50", "p95", "p99"):
        ax.plot([r["t"] for r in rows], [r[key] for r in rows], label=key)
    ax.set_xlabel("seconds")
    ax.set_ylabel("latency (ms)")
    ax.set_title("Latency percentiles over time")
    ax.legend()
    fig.tight_layout()
    path = out_dir / "latency-over-time.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(path)
    return written


def plot_sizing(points: list[SweepPoint], out_dir: Path) -> Path:
    """Heat map of throughput over WORKERS x POOL_SIZE, each cell annotated with its p95."""
    workers = sorted({p.workers for p in points})
    pools = sorted({p.pool_size for p in points})
    grid = [[0.0 for _ in pools] for _ in workers]
    notes = [["" for _ in pools] for _ in workers]
    for p in points:
        i, j = workers.index(p.workers), pools.index(p.pool_size)
        grid[i][j] = p.throughput
        notes[i][j] = f"{p.throughput:.0f}/s\np95 {p.p95_ms:.0f}ms"
    fig, ax = plt.subplots(figsize=(1.6 * len(pools) + 2, 1.2 * len(workers) + 1.5))
    image = ax.imshow(grid, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(pools)), [str(p) for p in pools])
    ax.set_yticks(range(len(workers)), [str(w) for w in workers])
    ax.set_xlabel("POOL_SIZE")
    ax.set_ylabel("WORKERS")
    for i in range(len(workers)):
        for j in range(len(pools)):
            ax.text(j, i, notes[i][j], ha="center", va="center", color="white", fontsize=8)
    fig.colorbar(image, label="requests/s")
    ax.set_title("Sizing sweep: throughput (p95 annotated)")
    fig.tight_layout()
    path = out_dir / "sizing-heatmap.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
