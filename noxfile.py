"""The project's menu: `nox -l` lists what each session does."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["conformance"]
nox.options.error_on_missing_interpreters = True

PYTHON = "3.11"


def install_project(session: nox.Session, *extras: str) -> None:
    """Install the project (editable) with the given extras into the session's venv."""
    spec = f".[{','.join(extras)}]" if extras else "."
    session.install("-e", spec)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run the project's own tests (unit and integration, real PostgreSQL and Redis)."""
    install_project(session, "dev")
    # The slowest tests named in every run keep the suite's 15-minute budget in sight.
    session.run("pytest", "-n", "2", "--dist", "loadgroup", "--durations=30", *session.posargs)


@nox.session(python=PYTHON)
def conformance(session: nox.Session) -> None:
    """Stand the reference stack up (or use --target-url) and run the conformance suite."""
    install_project(session, "reference")
    # `--stack docker` needs the images `nox -s images` built (their names in .cache/images.env).
    session.run("python", "-m", "conformance", "run", *session.posargs, env=images_env())


@nox.session(python=PYTHON)
def fuzz(session: nox.Session) -> None:
    """Fuzz the API with schemathesis against the contract (the reference stack or --target-url)."""
    install_project(session, "reference")
    session.run("python", "-m", "conformance.fuzz", *session.posargs)


@nox.session(python=PYTHON)
def chaos(session: nox.Session) -> None:
    """Fault injection on the reference stack: crashes, outages, SIGTERM, backup; --quick."""
    install_project(session, "reference")
    session.run("python", "-m", "conformance.chaos", *session.posargs)


@nox.session(python=PYTHON)
def report(session: nox.Session) -> None:
    """Re-render a run's reports from its results.json: `nox -s report -- reports/<run-id>`."""
    if len(session.posargs) != 1:
        session.error("usage: nox -s report -- <run-dir>")
    install_project(session, "suite")
    session.run("python", "-m", "conformance.reporting", "render", *session.posargs)


@nox.session(python=PYTHON)
def serve(session: nox.Session) -> None:
    """Serve the reference job service; without DATABASE_URL/REDIS_URL, on embedded ones."""
    install_project(session, "server", "embedded")
    session.run("python", "-m", "reference_server", "serve", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """Check style and common mistakes with ruff."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """Type-check the packages with mypy (strict)."""
    # Every extra (dev holds them all): the benchmark's peers' decorators, for one, are typed
    # only when PgQueuer and procrastinate are there.
    install_project(session, "dev")
    session.run("mypy")


@nox.session(python=PYTHON)
def load(session: nox.Session) -> None:
    """Locust load test of a profile (default smoke) with thresholds; --sweep for sizing."""
    install_project(session, "load")
    session.run("python", "-m", "loadtests", *session.posargs)


#: Written by `nox -s images`: `export TASKFORGE_*_IMAGE=...` lines selecting the local images.
IMAGES_ENV_FILE = ".cache/images.env"


def images_env() -> dict[str, str]:
    """The image variables of the last `nox -s images`, unless the environment sets them."""
    import os
    from pathlib import Path

    path = Path(IMAGES_ENV_FILE)
    if not path.is_file():
        return {}
    pairs = (line.removeprefix("export ").partition("=") for line in path.read_text().splitlines())
    return {name: value for name, _, value in pairs if name and name not in os.environ}


@nox.session(python=PYTHON)
def images(session: nox.Session) -> None:
    """Build the docker stack's images locally (Debian bookworm from the host's apt mirror)."""
    # The builder needs only the standard library and pip (it runs from this checkout): no
    # project install, which would cost minutes on a clean clone before anything is built.
    session.run("python", "-m", "conformance.stack.images", "build",
                "--env-file", IMAGES_ENV_FILE, *session.posargs)


@nox.session(python=PYTHON)
def startup(session: nox.Session) -> None:
    """Measure the reference stacks' start-up (docker, embedded) into reports/startup.json."""
    install_project(session, "reference")
    session.run("python", "-m", "conformance.stack.startup_bench",
                "--command", "nox -s startup" + (" -- " + " ".join(session.posargs)
                                                 if session.posargs else ""),
                *session.posargs, env=images_env())


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Engine benchmarks vs raw PostgreSQL/HTTP limits and peers into reports/bench.json."""
    install_project(session, "bench")
    session.run("python", "-m", "benchmarks",
                "--command", " ".join(["nox -s bench", *(["--", *session.posargs]
                                                         if session.posargs else [])]),
                *session.posargs)
