"""Connections that send nothing, idle keep-alives and long-polls do not starve the server."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from api_support import register, running_app
from test_serve import STRONG_ACCESS, STRONG_REFRESH, serve, server_env, stop, wait_healthy

from reference_server.config import Settings
from reference_server.devservices import free_port
from reference_server.slots import CONNECTION_CEILING_FACTOR

HEADER_TIMEOUT = 1.0
#: The default, as the audit ran it: 100 silent sockets had stopped the server answering.
MAX_CONNECTIONS = Settings.model_fields["MAX_CONNECTIONS"].default
#: Granian's connection ceiling is 4 x MAX_CONNECTIONS (reference_server/slots.py).
CEILING = CONNECTION_CEILING_FACTOR * MAX_CONNECTIONS
#: A request header sent a byte at a time, slower than the header timeout allows in all.
TRICKLED = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: trickle\r\n\r\n"
TRICKLE_SECONDS = 0.4


@contextlib.contextmanager
def silent_sockets(port: int, count: int) -> Iterator[list[socket.socket]]:
    sockets = []
    try:
        for _ in range(count):
            sockets.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        yield sockets
    finally:
        for s in sockets:
            s.close()


def health_seconds(base: str, limit: float) -> float:
    started = time.monotonic()
    response = httpx.get(base + "/health", timeout=limit)
    assert response.status_code == 200
    return time.monotonic() - started


def closed_within(sock: socket.socket, limit: float) -> bool:
    """True when the server closes `sock` (EOF) within `limit` seconds."""
    sock.settimeout(limit)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except OSError:
        return True  # reset by the server
    return True


def trickle_cut_off(port: int, limit: float) -> bool:
    """Send TRICKLED a byte every TRICKLE_SECONDS; True when the server closes the connection
    within `limit` seconds of the first byte, before the header is complete or answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        started = time.monotonic()
        for n in range(len(TRICKLED)):  # bounded: the header's length
            try:
                sock.sendall(TRICKLED[n : n + 1])
            except OSError:
                break  # reset: the server has closed it
            if closed_within(sock, TRICKLE_SECONDS):
                break
        else:
            return False  # the whole header went through: not cut off
        return time.monotonic() - started <= limit


@pytest.mark.slow
def test_silent_and_idle_connections_leave_health_answering(
    database_url: str, redis_url: str
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = serve(server_env(
        DATABASE_URL=database_url, REDIS_URL=redis_url, APPLICATION_PORT=port,
        JWT_SECRET=STRONG_ACCESS, JWT_REFRESH_SECRET=STRONG_REFRESH, BUILTIN_WORKERS=0,
        HEADER_READ_TIMEOUT_SECONDS=HEADER_TIMEOUT,
    ), "--no-migrate")
    try:
        wait_healthy(proc, base)
        # The audit's probe: MAX_CONNECTIONS sockets that never speak.
        with silent_sockets(port, MAX_CONNECTIONS) as sockets:
            time.sleep(0.3)
            assert health_seconds(base, 2.0) < 2.0
            # Each is dropped once the header timeout passes without a request.
            assert closed_within(sockets[0], HEADER_TIMEOUT + 3)
        # An idle keep-alive is dropped too.
        with socket.create_connection(("127.0.0.1", port), timeout=5) as kept:
            kept.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert kept.recv(4096).startswith(b"HTTP/1.1 200")
            assert closed_within(kept, HEADER_TIMEOUT + 3)
        # A header trickled a byte at a time (faster than any per-byte idle timer) is cut off
        # once the whole header is overdue, before it is complete.
        assert trickle_cut_off(port, HEADER_TIMEOUT + 2)
        # Every connection the server accepts taken by silent sockets: reclaimed at the timeout.
        with silent_sockets(port, CEILING):
            time.sleep(0.3)
            assert health_seconds(base, HEADER_TIMEOUT + 2) < HEADER_TIMEOUT + 2
    finally:
        code, output = stop(proc)
    assert code == 0, output[-3000:]


async def test_long_polls_take_no_request_slot_and_are_capped_per_credential(
    database_url: str, redis_url: str
) -> None:
    async with running_app(
        database_url, redis_url, MAX_CONNECTIONS=2, LONG_POLLS_PER_CREDENTIAL=2
    ) as api:
        account = await register(api)
        token = account["access_token"]
        made = await api.post(
            "/api/v1/workers",
            json={"name": "w", "queues": ["default"], "max_concurrent_jobs": 1},
            token=token,
        )
        path = f"/api/v1/workers/{(await made.get_json())['data']['id']}/lease"
        loop = asyncio.get_running_loop()

        async def lease() -> float:
            started = loop.time()
            answer = await api.post(path, json={"max_jobs": 1, "wait_seconds": 3}, token=token)
            assert answer.status_code == 200
            return loop.time() - started

        polls = [asyncio.create_task(lease()) for _ in range(2)]
        await asyncio.sleep(0.3)  # both are waiting now
        third = await lease()  # past this credential's cap: answered without waiting
        started = loop.time()
        for _ in range(3):  # more than MAX_CONNECTIONS ordinary requests, one after another
            listed = await api.get("/api/v1/jobs", token=token)
            assert listed.status_code == 200
        ordinary = loop.time() - started
        waited = await asyncio.gather(*polls)
    assert third < 1.0
    assert ordinary < 1.0
    assert all(w >= 2.5 for w in waited)
