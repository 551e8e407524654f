"""Stack providers: stand a TaskForge target up (docker, embedded) or wrap a given one (external).

One interface, `open_stack(kind, **options)`, over a small registry of provider names, as
testinfra's backends. Every provider removes what it started on exit, on error and on Ctrl-C or
SIGTERM (both arrive as KeyboardInterrupt while a stack is open).
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Iterator
from typing import Any

from conformance.stack.base import (
    StackConfigError,
    StackError,
    Target,
    said,
    say,
    signals_deferred,
    terminate_as_interrupt,
    trusting,
)

#: The providers by name, where each one's context manager lives (imported when chosen). The
#: command lines' `--stack` choices derive from it.
PROVIDERS: dict[str, tuple[str, str]] = {
    "docker": ("conformance.stack.docker", "docker_stack"),
    "embedded": ("conformance.stack.embedded", "embedded_stack"),
    "external": ("conformance.stack.external", "external_stack"),
}
#: The providers that stand the reference stack up (fuzz, load and start-up runs need one).
REFERENCE_PROVIDERS = ("docker", "embedded")
#: What `--stack` takes: `auto` chooses docker or embedded (choose_provider).
STACK_KINDS = ("auto", *PROVIDERS)
REFERENCE_KINDS = ("auto", *REFERENCE_PROVIDERS)

__all__ = [
    "PROVIDERS",
    "REFERENCE_KINDS",
    "REFERENCE_PROVIDERS",
    "STACK_KINDS",
    "StackConfigError",
    "StackError",
    "Target",
    "choose_provider",
    "open_stack",
    "said",
    "say",
    "signals_deferred",
    "terminate_as_interrupt",
    "trusting",
]


def choose_provider() -> tuple[str, str]:
    """(provider, why) for `auto`: docker when an engine answers and the images are there."""
    from conformance.stack.docker import docker_usable

    usable, why = docker_usable()
    return ("docker", why) if usable else ("embedded", why)


def _provider(kind: str) -> Callable[..., contextlib.AbstractContextManager[Target]]:
    module, name = PROVIDERS[kind]
    provider: Callable[..., contextlib.AbstractContextManager[Target]] = getattr(
        importlib.import_module(module), name)
    return provider


@contextlib.contextmanager
def open_stack(kind: str = "auto", **options: Any) -> Iterator[Target]:
    """Stand up (or wrap) a target of the given kind; tear down what was started on exit.

    kind: auto | docker | embedded | external. External takes target_url, database_url,
    redis_url, ca_bundle; reference stacks take server_env (overrides of the server's settings,
    None removes one) to start a misconfigured server on purpose.
    """
    if kind not in STACK_KINDS:
        raise StackConfigError(f"unknown stack {kind!r}: choose one of {', '.join(STACK_KINDS)}")
    if kind == "auto":
        kind, why = choose_provider()
        say(f"provider {kind}: {why}")
    else:
        say(f"provider {kind}: chosen explicitly")
    with terminate_as_interrupt(), _provider(kind)(**options) as target:
        yield target
