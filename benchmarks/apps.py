"""The HTTP limits: an empty Quart endpoint and a bare ASGI callable, served the way the reference
server serves itself (Granian, ASGI interface, the same workers and backpressure).

`python -m benchmarks.apps quart|asgi --port N --workers W --backpressure B`
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from quart import Quart, Response

from benchmarks.exits import ExitStatus

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

EMPTY_JSON = b"{}"


def quart_app() -> Quart:
    """One route that answers every method and path with `{}` and does nothing else."""
    app = Quart("benchmarks.empty")

    @app.route("/", defaults={"path": ""}, methods=["GET", "POST"])
    @app.route("/<path:path>", methods=["GET", "POST"])
    async def empty(path: str) -> Response:
        return Response(EMPTY_JSON, status=200, content_type="application/json")

    return app


async def bare_asgi(scope: Scope, receive: Receive, send: Send) -> None:
    """The least an ASGI application can do: drain the body, answer `{}`."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = bool(message.get("more_body"))
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(EMPTY_JSON)).encode())]})
    await send({"type": "http.response.body", "body": EMPTY_JSON})


def bare_asgi_factory() -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    return bare_asgi


TARGETS = {
    "quart": "benchmarks.apps:quart_app",
    "asgi": "benchmarks.apps:bare_asgi_factory",
}


def serve(kind: str, *, port: int, workers: int, backpressure: int) -> None:
    # The same construction as reference_server.cli._run_granian, TLS aside.
    from granian import Granian
    from granian.constants import Interfaces

    Granian(
        TARGETS[kind],
        factory=True,
        address="127.0.0.1",
        port=port,
        interface=Interfaces.ASGI,
        workers=workers,
        backpressure=backpressure,
    ).serve()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.apps")
    parser.add_argument("kind", choices=sorted(TARGETS))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--backpressure", type=int, default=100)
    args = parser.parse_args(argv)
    serve(args.kind, port=args.port, workers=args.workers, backpressure=args.backpressure)
    return ExitStatus.OK


if __name__ == "__main__":
    sys.exit(main())
