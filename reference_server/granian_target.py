"""The entry point of a `serve` worker process (Granian's target).

Granian forks its workers after installing the main process' signal handlers, and a worker sets
its own only once its event loop runs. A SIGTERM in between (a deploy stopping a container that
is still starting) would run the inherited handler, which only flags the main process' copy of
its state: the signal was lost and the worker was killed after the grace period. A worker that
is still booting holds nothing in flight, so until Granian installs its handlers, SIGTERM and
SIGINT end it at once. This module is imported first thing in the worker for that reason.
"""

from __future__ import annotations

import signal

signal.signal(signal.SIGTERM, signal.SIG_DFL)
signal.signal(signal.SIGINT, signal.SIG_DFL)

from reference_server.app import app_from_environment  # noqa: E402 - after the signal reset

__all__ = ["app_from_environment"]
