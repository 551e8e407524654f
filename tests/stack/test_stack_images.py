"""Image names, the mirror read from apt's configuration, recipe hashes and the rebuild skip."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from conformance.model import ExitStatus
from conformance.stack import images
from conformance.stack.images import (
    BASE_LOCAL,
    POSTGRES,
    ImageBuildError,
    build_service_image,
    debian_mirror,
    image_label,
    recipe_hash,
)

PROJECT = Path(__file__).resolve().parents[2]

DEB822 = """\
Types: deb
# a comment between fields
URIs: http://mirror.invalid/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.invalid/debian-security
Suites: bookworm-security
Components: main
"""


def _apt_dir(tmp_path: Path, sources: str = "", sources_list: str = "") -> Path:
    (tmp_path / "sources.list.d").mkdir()
    if sources:
        (tmp_path / "sources.list.d" / "debian.sources").write_text(sources)
    if sources_list:
        (tmp_path / "sources.list").write_text(sources_list)
    return tmp_path


def test_mirror_comes_from_a_deb822_sources_file(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(images.MIRROR_ENV, raising=False)
    assert debian_mirror("bookworm", _apt_dir(tmp_path, DEB822)) == "http://mirror.invalid/debian"


def test_a_disabled_stanza_is_not_a_mirror(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(images.MIRROR_ENV, raising=False)
    disabled = "Enabled: no\n" + DEB822.split("\n\n")[0] + "\n"
    with pytest.raises(ImageBuildError, match="no Debian bookworm source"):
        debian_mirror("bookworm", _apt_dir(tmp_path, disabled))


def test_mirror_comes_from_sources_list_with_options(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(images.MIRROR_ENV, raising=False)
    listing = ("# deb http://commented.invalid/debian bookworm main\n"
               "deb-src http://src.invalid/debian bookworm main\n"
               "deb [arch=amd64 signed-by=/k.gpg] http://list.invalid/debian bookworm main\n")
    apt = _apt_dir(tmp_path, sources_list=listing)
    assert debian_mirror("bookworm", apt) == "http://list.invalid/debian"


def test_mirror_override_and_its_absence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    apt = _apt_dir(tmp_path)
    monkeypatch.delenv(images.MIRROR_ENV, raising=False)
    with pytest.raises(ImageBuildError, match=images.MIRROR_ENV):
        debian_mirror("bookworm", apt)
    monkeypatch.setenv(images.MIRROR_ENV, "http://override.invalid/debian")
    assert debian_mirror("bookworm", apt) == "http://override.invalid/debian"


def test_recipe_hash_follows_names_contents_and_parents(tmp_path: Path) -> None:
    recipe = tmp_path / "r"
    recipe.mkdir()
    (recipe / "Dockerfile").write_text("FROM x\n")
    (recipe / "__pycache__").mkdir()
    (recipe / "__pycache__" / "junk.pyc").write_bytes(b"\0")
    first = recipe_hash([recipe], relative_to=tmp_path)
    assert recipe_hash([recipe], relative_to=tmp_path) == first
    (recipe / "__pycache__" / "junk.pyc").write_bytes(b"\1")
    assert recipe_hash([recipe], relative_to=tmp_path) == first
    assert recipe_hash([recipe], relative_to=tmp_path, extra=["base2"]) != first
    (recipe / "entrypoint.sh").write_text("#!/bin/sh\n")
    second = recipe_hash([recipe], relative_to=tmp_path)
    assert second != first
    (recipe / "entrypoint.sh").rename(recipe / "other.sh")
    assert recipe_hash([recipe], relative_to=tmp_path) != second


def test_image_names_default_to_official_images(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(POSTGRES.env_var, raising=False)
    assert POSTGRES.name == "postgres:16-alpine"
    monkeypatch.setenv(POSTGRES.env_var, "registry.invalid/pg:15")
    assert POSTGRES.name == "registry.invalid/pg:15"


def _image_id(name: str) -> str:
    return subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", name],
                          capture_output=True, text=True, check=True, timeout=60).stdout.strip()


@pytest.fixture
def throwaway_tag() -> Iterator[str]:
    """A tag for test builds; every image built under it is removed afterwards."""
    tag = f"taskforge-test/skip-{uuid.uuid4().hex[:8]}:latest"
    built: list[str] = []
    _built_ids[tag] = built
    yield tag
    subprocess.run(["docker", "image", "rm", "-f", tag, *built], capture_output=True,
                   check=False, timeout=60)


_built_ids: dict[str, list[str]] = {}


@pytest.mark.docker
@pytest.mark.xdist_group("docker")
@pytest.mark.usefixtures("docker_lock")
def test_an_unchanged_recipe_is_not_rebuilt(tmp_path: Path, throwaway_tag: str) -> None:
    """The label carries the recipe hash: same hash, no build; changed file, new build."""
    if image_label(BASE_LOCAL) is None:
        pytest.skip(f"{BASE_LOCAL} is not built here (nox -s images builds it)")
    recipes = tmp_path / "recipes"
    recipe = recipes / "probe"
    recipe.mkdir(parents=True)
    (recipe / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY note.txt /note.txt\n")
    (recipe / "note.txt").write_text("one\n")
    role = images.ImageRole(role="probe", env_var="UNUSED", default="unused", local=throwaway_tag)
    lines: list[str] = []

    build_service_image(recipes, role, "base-digest", force=False, log=lines.append)
    first = image_label(throwaway_tag)
    assert first is not None
    _built_ids[throwaway_tag].append(_image_id(throwaway_tag))
    assert any(line.startswith("$ docker build") for line in lines)

    lines.clear()
    build_service_image(recipes, role, "base-digest", force=False, log=lines.append)
    assert lines == [f"{throwaway_tag}: up to date ({first})"]

    (recipe / "note.txt").write_text("two\n")
    lines.clear()
    build_service_image(recipes, role, "base-digest", force=False, log=lines.append)
    assert any(line.startswith("$ docker build") for line in lines)
    assert image_label(throwaway_tag) not in (None, first)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        ([], "error: the following arguments are required: command"),
        (["rebuild"], "error: argument command: invalid choice: 'rebuild'"),
        (["build", "--frobnicate"], "error: unrecognized arguments: --frobnicate"),
    ],
)
def test_a_bad_option_is_one_line_and_the_usage_status(argv: list[str], says: str,
                                                      tmp_path: Path) -> None:
    # Run from an empty directory: were the option accepted, no recipe is there to build.
    done = subprocess.run([sys.executable, "-m", "conformance.stack.images", *argv],
                          capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(PROJECT)})
    assert done.returncode == ExitStatus.USAGE
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(says)
    assert done.stdout == ""
