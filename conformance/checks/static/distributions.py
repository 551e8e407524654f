"""Which distribution an image tag is built on, from a table whose every row says where it is from.

The release of an image is a fact about someone else's registry, not something a tag's text
always says. `distribution_of` answers only from the rules below; a tag they do not cover is
unknown (`None`), and the checks that need it then say they cannot tell, rather than guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Debian releases in age order: a binary built on a newer one needs a C library (and OpenSSL)
#: the older one does not have.
DEBIAN_RELEASES = ("stretch", "buster", "bullseye", "bookworm", "trixie")

#: Debian's release numbers (debian.org/releases: 9 stretch ... 13 trixie).
DEBIAN_NUMBERS = {
    "9": "stretch", "10": "buster", "11": "bullseye", "12": "bookworm", "13": "trixie",
}

SOURCE_TAG_NAMES_RELEASE = (
    "Docker official images name a Debian variant by its codename in the tag "
    "(e.g. python:3.12-slim-bookworm, rust:1.70-bullseye)"
)
SOURCE_DEBIAN = "debian official image: tags are Debian codenames or release numbers"
SOURCE_ALPINE = "an alpine tag or the alpine image: musl libc, not glibc"
SOURCE_RUST = (
    "rust-lang/docker-rust x.py `default_debian_variant`: bullseye from 1.55.0 (commit 878a3bd, "
    "2021-09-09), bookworm from 2023-08-03 (3c948e6, during 1.71.1), trixie from 2025-08-19 "
    "(9b9ec24, during 1.89.0), still trixie at 1.94.1 (2026-04)"
)


@dataclass(frozen=True, kw_only=True, slots=True)
class RustDefault:
    """The Debian release of the official rust image's default (unsuffixed) tags, by version."""

    first: tuple[int, int, int]
    last: tuple[int, int, int]
    release: str


#: Versions published while one default held. 1.71.1 and 1.89.0 were published the days the
#: default changed, so which release their tag ends up on is not stated here: unknown.
RUST_DEFAULTS = (
    RustDefault(first=(1, 55, 0), last=(1, 71, 0), release="bullseye"),
    RustDefault(first=(1, 72, 0), last=(1, 88, 999), release="bookworm"),
    # Still the default (`latest_debian_release`) at the source's 2026-04-03 state (1.94.1).
    RustDefault(first=(1, 90, 0), last=(1, 94, 999), release="trixie"),
)


@dataclass(frozen=True, kw_only=True, slots=True)
class Distribution:
    """A Debian codename or "alpine", and where that answer comes from."""

    release: str
    source: str


def _split(image: str) -> tuple[str, str]:
    """(repository's last path part, tag) of an image reference, digest dropped."""
    reference = image.partition("@")[0]
    name, colon, tag = reference.rpartition(":")
    if not colon or "/" in tag:  # no tag (a registry port is not a tag)
        name, tag = reference, ""
    return name.rsplit("/", 1)[-1], tag


def _rust_default(tag: str) -> str | None:
    match = re.fullmatch(r"(\d+)\.(\d+)(?:\.(\d+))?(?:-slim)?", tag)
    if match is None:
        return None
    major, minor = int(match.group(1)), int(match.group(2))
    patch = match.group(3)
    # `rust:1.70` follows 1.70's patch releases: known only when all of them share a release.
    if patch:
        low = high = (major, minor, int(patch))
    else:
        low, high = (major, minor, 0), (major, minor, 999)
    for default in RUST_DEFAULTS:
        if default.first <= low and high <= default.last:
            return default.release
    return None


def distribution_of(image: str) -> Distribution | None:
    """The distribution `image` is built on, or None when the table cannot tell."""
    base, tag = _split(image)
    words = set(re.split(r"[-_.]", tag))
    for release in DEBIAN_RELEASES:
        if release in words:
            return Distribution(release=release, source=SOURCE_TAG_NAMES_RELEASE)
    if "alpine" in words or base == "alpine" or re.search(r"alpine\d", tag):
        return Distribution(release="alpine", source=SOURCE_ALPINE)
    if base == "debian":
        number = re.split(r"[.-]", tag)[0]
        if number in DEBIAN_NUMBERS:
            return Distribution(release=DEBIAN_NUMBERS[number], source=SOURCE_DEBIAN)
        return None
    if base == "rust":
        rust_release = _rust_default(tag)
        return Distribution(release=rust_release, source=SOURCE_RUST) if rust_release else None
    return None
