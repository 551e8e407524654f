"""RequestSlots' own bookkeeping: the bound holds, waiters go in turn, a cancelled waiter
leaks no slot (the server-level behaviour is in test_slow_clients.py)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from reference_server.slots import RequestSlots

SCOPE = {"type": "http", "path": "/api/v1/jobs", "method": "POST"}


def _slots(limit: int, app: Any) -> RequestSlots:
    return RequestSlots(app, SimpleNamespace(MAX_CONNECTIONS=limit, METRICS_ENDPOINT="/metrics"))  # type: ignore[arg-type]


async def test_at_most_the_limit_run_at_once_and_all_finish_in_arrival_order() -> None:
    gate = asyncio.Event()
    running = 0
    peak = 0
    started: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        started.append(receive)
        await gate.wait()
        running -= 1

    slots = _slots(2, app)
    tasks = [asyncio.create_task(slots(SCOPE, n, None)) for n in range(6)]
    await asyncio.sleep(0.01)
    assert running == 2
    gate.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 2)
    assert peak == 2
    assert started == list(range(6))
    assert slots._busy == 0 and not slots._waiting


async def test_a_cancelled_waiter_gives_its_turn_on() -> None:
    gate = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await gate.wait()

    slots = _slots(1, app)
    first = asyncio.create_task(slots(SCOPE, None, None))
    waiter = asyncio.create_task(slots(SCOPE, None, None))
    last = asyncio.create_task(slots(SCOPE, None, None))
    await asyncio.sleep(0.01)
    waiter.cancel()
    gate.set()
    await asyncio.wait_for(asyncio.gather(first, last), 2)
    assert waiter.cancelled()
    assert slots._busy == 0 and not slots._waiting


async def test_exempt_paths_take_no_slot() -> None:
    gate = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == "/api/v1/jobs":
            await gate.wait()

    slots = _slots(1, app)
    busy = asyncio.create_task(slots(SCOPE, None, None))
    await asyncio.sleep(0.01)
    for path in ("/health", "/ready", "/metrics", "/api/v1/workers/w1/lease"):
        await asyncio.wait_for(slots({"type": "http", "path": path}, None, None), 1)
    gate.set()
    await busy
