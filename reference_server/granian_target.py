"""The entry point of a `serve` worker process (Granian's target).

Granian forks its workers after installing the main process' signal handlers, and a worker sets
its own only once its event loop runs. A SIGTERM in between (a deploy stopping a container that
is still starting) would run the inherited handler, which only flags the main process' copy of
its state: the signal was lost and the worker was killed after the grace period. A worker that
is still booting holds nothing in flight, so until Granian installs its handlers, SIGTERM and
SIGINT end it at once. This module is imported first thing in the worker for that reason.
A SIGTERM that arrived between the fork and this import already ran the inherited handler; its
flag in the worker's copy of the main process' state says so, and the worker ends as well.
"""

from __future__ import annotations

import os
import signal


def _stopped_while_forking() -> bool:
    """Whether the inherited handler (Granian's main-process one) already recorded a stop."""
    owner = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
    return getattr(owner, "interrupt_signal", False) is True


if _stopped_while_forking():
    os._exit(0)  # nothing in flight yet; Granian's main process reaps it and exits
signal.signal(signal.SIGTERM, signal.SIG_DFL)
signal.signal(signal.SIGINT, signal.SIG_DFL)

from reference_server.app import app_from_environment  # noqa: E402 - after the signal reset

__all__ = ["app_from_environment"]
