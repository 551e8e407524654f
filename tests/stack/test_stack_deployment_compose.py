"""The docker stack's deployment and compose/docker-compose.prod.yml cannot drift apart.

Every service the provider runs exists in the compose file under the same name, mounts the same
compose files at the same paths, and uses the ports compose publishes or exposes; the services
whose commands the provider takes from compose read them there. No engine needed.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import pytest
import yaml

from conformance.checks.live.observability import receiver_problems
from conformance.stack.base import StackError
from conformance.stack.deployment import (
    ALERT_PLACEHOLDER_URL,
    ALERT_SINK_SERVICE,
    ALERT_SINK_URL,
    ALERTMANAGER_SERVICE,
    APP_PORT,
    APP_SERVICE,
    DB_SERVICE,
    REDIS_SERVICE,
    SERVICES,
    Service,
    compose_command,
    compose_dir,
    compose_services,
    interpolate,
    operator_alertmanager_config,
    stage_files,
)

COMPOSE = compose_services()


def _binds(service: dict[str, Any]) -> set[tuple[str, str]]:
    """compose's `./x:/y[:ro]` bind mounts as (x, y); named volumes are the run's business."""
    binds = set()
    for entry in service.get("volumes") or []:
        source, _, rest = str(entry).partition(":")
        if source.startswith("./"):
            binds.add((source.removeprefix("./"), rest.split(":")[0]))
    return binds


def _ports(service: dict[str, Any]) -> set[int]:
    ports = {int(str(p).rsplit(":", 1)[-1]) for p in service.get("ports") or []}
    return ports | {int(p) for p in service.get("expose") or []}


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_each_service_mounts_the_compose_files_and_uses_its_ports(service: Service) -> None:
    assert service.name in COMPOSE, f"compose has no service {service.name}"
    declared = COMPOSE[service.name]
    assert set(service.mounts) == _binds(declared)
    assert set(service.ports) == {p for p in _ports(declared)}
    for source, _ in service.mounts:
        assert (compose_dir() / source).exists(), source


def test_the_core_services_keep_their_compose_names_and_the_app_its_port() -> None:
    for name in (DB_SERVICE, REDIS_SERVICE, APP_SERVICE):
        assert name in COMPOSE
    assert _ports(COMPOSE[APP_SERVICE]) == {APP_PORT}
    # Nothing the kit does not run is in compose unnoticed, apart from what it says it leaves out.
    run = {s.name for s in SERVICES} | {DB_SERVICE, REDIS_SERVICE, APP_SERVICE}
    assert set(COMPOSE) - run == {"node-exporter"}
    # The alert sink stands in for the operator's on-call tool: the stack's, never compose's.
    assert ALERT_SINK_SERVICE.name not in COMPOSE and ALERT_SINK_SERVICE not in SERVICES


def test_commands_taken_from_compose_are_compose_s_own() -> None:
    env = {"BACKUP_INTERVAL_SECONDS": "10", "PROMETHEUS_RETENTION": "1d"}
    for service in SERVICES:
        if not service.compose_command:
            continue
        command = compose_command(service.name, env)
        declared = COMPOSE[service.name]["command"]
        if isinstance(declared, list):
            assert command == [interpolate(str(part), env) for part in declared]
        else:
            assert command[:2] == ["sh", "-c"]
    backup = " ".join(compose_command("backup", env))
    assert "pg_dump" in backup and "sleep $BACKUP_INTERVAL_SECONDS" in backup
    assert "--storage.tsdb.retention.time=1d" in compose_command("prometheus", env)


def test_compose_interpolation() -> None:
    assert interpolate("$${A} ${A:-x} ${B:-y} ${A}", {"A": "1"}) == "${A} 1 y 1"
    with pytest.raises(ValueError, match="DB_NAME must be set"):
        interpolate("${DB_NAME:?set DB_NAME in .env}", {})


def test_the_staged_files_are_compose_s_own_but_for_the_one_receiver_url(tmp_path: Path) -> None:
    """The stack configures the deployment as an operator would: in alertmanager.yml the
    placeholder receiver URL becomes the alert sink's; nothing else differs from compose/."""
    certificates = tmp_path / "ssl"
    certificates.mkdir()
    staged = stage_files(tmp_path / "run", SERVICES, {}, certificates)
    alertmanager = ALERTMANAGER_SERVICE.mounts[0][0]
    for source, copy in staged.items():
        if source in ("nginx/ssl", alertmanager):
            continue
        original = compose_dir() / source
        files = ([p for p in sorted(original.rglob("*")) if p.is_file()]
                 if original.is_dir() else [original])
        assert files, source
        for path in files:
            twin = copy / path.relative_to(original) if original.is_dir() else copy
            assert twin.read_bytes() == path.read_bytes(), f"{source}: {path.name} differs"
    shipped = (compose_dir() / alertmanager).read_text()
    mounted = staged[alertmanager].read_text()
    changed = [line for line in difflib.ndiff(shipped.splitlines(), mounted.splitlines())
               if line[:1] in "+-"]
    assert changed == [f"-       - url: {ALERT_PLACEHOLDER_URL}",
                       f"+       - url: {ALERT_SINK_URL}"]
    assert ALERT_SINK_URL.startswith(f"http://{ALERT_SINK_SERVICE.name}:")
    # The check fails what compose ships and passes what the stack mounts.
    assert receiver_problems(yaml.safe_load(shipped))[0]
    assert receiver_problems(yaml.safe_load(mounted)) == ([], [
        f"on-call: webhook_configs -> {ALERT_SINK_URL}"])


def test_an_alertmanager_yml_without_the_placeholder_is_not_silently_used() -> None:
    """Were compose's receiver changed, the stack must not guess which URL to replace."""
    with pytest.raises(StackError, match="found it 0 time"):
        operator_alertmanager_config("receivers:\n  - name: x\n    webhook_configs:\n"
                                     "      - url: http://pager.internal/hook\n")
    twice = f"a:\n  - url: {ALERT_PLACEHOLDER_URL}\nb:\n  - url: {ALERT_PLACEHOLDER_URL}\n"
    with pytest.raises(StackError, match="found it 2 time"):
        operator_alertmanager_config(twice)
