"""Images of the docker stack: their names, and local builds of compose/images/ without a registry.

`python -m conformance.stack.images build` (what `nox -s images` runs) debootstraps one Debian
bookworm rootfs from the host's own apt mirror, imports it as the shared base, builds the
PostgreSQL, Redis and server images on top, and skips every image whose recipe hash (an image
label) is unchanged.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from conformance.model import ExitStatus
from conformance.usage import UsageError, UsageParser

#: The label holding the hash of the recipe an image was built from.
RECIPE_LABEL = "org.taskforge.recipe-hash"
SUITE = "bookworm"
#: Where the debootstrapped rootfs tarball is kept between runs (debootstrap takes about a minute).
CACHE_ENV = "TASKFORGE_IMAGE_CACHE"
#: Overrides the mirror read from apt's configuration (for hosts whose apt is not Debian's).
MIRROR_ENV = "TASKFORGE_DEBIAN_MIRROR"
COMMAND_TIMEOUT_SECONDS = 1800


class ImageBuildError(RuntimeError):
    """An image could not be built; the message is one line for the user."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ImageRole:
    """One image the docker stack needs, named by an environment variable."""

    role: str
    env_var: str
    default: str
    local: str  # the name `nox -s images` builds it under

    @property
    def name(self) -> str:
        return os.environ.get(self.env_var) or self.default


POSTGRES = ImageRole(
    role="postgres", env_var="TASKFORGE_POSTGRES_IMAGE", default="postgres:16-alpine",
    local="taskforge-local/postgres:15-bookworm",
)
REDIS = ImageRole(
    role="redis", env_var="TASKFORGE_REDIS_IMAGE", default="redis:7-alpine",
    local="taskforge-local/redis:7-bookworm",
)
SERVER = ImageRole(
    role="server", env_var="TASKFORGE_SERVER_IMAGE", default="taskforge/reference-server:latest",
    local="taskforge-local/reference-server:bookworm",
)
STACK_IMAGES = (POSTGRES, REDIS, SERVER)
# The front door and observability of the reference deployment (compose/docker-compose.prod.yml),
# each built from its Debian package on the shared base (compose/images/<role>/).
NGINX = ImageRole(
    role="nginx", env_var="TASKFORGE_NGINX_IMAGE", default="nginx:1.27-alpine",
    local="taskforge-local/nginx:bookworm",
)
PROMETHEUS = ImageRole(
    role="prometheus", env_var="TASKFORGE_PROMETHEUS_IMAGE", default="prom/prometheus:v2.53.1",
    local="taskforge-local/prometheus:bookworm",
)
ALERTMANAGER = ImageRole(
    role="alertmanager", env_var="TASKFORGE_ALERTMANAGER_IMAGE",
    default="prom/alertmanager:v0.27.0", local="taskforge-local/alertmanager:bookworm",
)
POSTGRES_EXPORTER = ImageRole(
    role="postgres-exporter", env_var="TASKFORGE_POSTGRES_EXPORTER_IMAGE",
    default="prometheuscommunity/postgres-exporter:v0.15.0",
    local="taskforge-local/postgres-exporter:bookworm",
)
DEPLOYMENT_IMAGES = (NGINX, PROMETHEUS, ALERTMANAGER, POSTGRES_EXPORTER)
#: Grafana has no Debian package: it runs only when this names an image (never built here).
GRAFANA_IMAGE_ENV = "TASKFORGE_GRAFANA_IMAGE"
BASE_LOCAL = "taskforge-local/base:bookworm"
#: The server image's base: a rootfs of its own (compose/images/server/packages.txt), Python only.
SERVER_BASE_LOCAL = "taskforge-local/server-base:bookworm"
#: What the server image installs from the wheelhouse: the server alone, none of the kit's tools.
SERVER_REQUIREMENT = "taskforge-conformance-kit[server]"
#: The server the host checks' tests reach over SSH (tests/conformance/host); not part of a stack.
SSH_HOST = ImageRole(
    role="sshhost", env_var="TASKFORGE_SSH_HOST_IMAGE", default="taskforge-local/ssh-host:bookworm",
    local="taskforge-local/ssh-host:bookworm",
)
SSH_HOST_ROOTFS = "taskforge-local/ssh-host-rootfs:bookworm"


# --- the Debian mirror, from the host's apt configuration -------------------------------------


def _deb822_stanzas(text: str) -> Iterable[dict[str, str]]:
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = ""
        for line in block.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line[0].isspace() and key:
                fields[key] += " " + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                fields[key] = value.strip()
        if fields:
            yield fields


def debian_mirror(suite: str = SUITE, apt_dir: Path = Path("/etc/apt")) -> str:
    """The first `deb` source of `suite` in apt's configuration (deb822, then sources.list)."""
    override = os.environ.get(MIRROR_ENV)
    if override:
        return override
    sources = sorted((apt_dir / "sources.list.d").glob("*.sources"))
    for path in sources:
        for stanza in _deb822_stanzas(path.read_text(errors="replace")):
            if stanza.get("enabled", "yes").lower() == "no":
                continue
            types, suites = stanza.get("types", "").split(), stanza.get("suites", "").split()
            if "deb" in types and suite in suites:
                uris = stanza.get("uris", "").split()
                if uris:
                    return uris[0]
    lists = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*.list"))]
    for path in lists:
        if not path.is_file():
            continue
        for line in path.read_text(errors="replace").splitlines():
            words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
            if len(words) >= 3 and words[0] == "deb" and words[2] == suite:
                return words[1]
    raise ImageBuildError(
        f"no Debian {suite} source in {apt_dir}; set {MIRROR_ENV} to a Debian mirror URL"
    )


# --- recipe hashes ------------------------------------------------------------------------------


def files_under(root: Path) -> list[Path]:
    """The files a recipe consists of, in a stable order, without caches."""
    if root.is_file():
        return [root]
    return sorted(
        p for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    )


def recipe_hash(paths: Iterable[Path], *, relative_to: Path, extra: Sequence[str] = ()) -> str:
    """A hash of the files' names and contents plus extra strings (such as a parent's hash)."""
    digest = hashlib.sha256()
    for item in extra:
        digest.update(item.encode() + b"\0")
    for path in paths:
        for file in files_under(path):
            digest.update(str(file.relative_to(relative_to)).encode() + b"\0")
            digest.update(file.read_bytes() + b"\0")
    return digest.hexdigest()[:24]


# --- the engine ---------------------------------------------------------------------------------


Log = Callable[[str], None]


def _run(args: Sequence[str], *, log: Log, what: str, **kwargs: object) -> None:
    line = " ".join(args)
    log("$ " + (line if len(line) <= 300 else line[:297] + "..."))
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}  # the classic builder needs no helper images
    try:
        result = subprocess.run(
            list(args), check=False, env=env, timeout=COMMAND_TIMEOUT_SECONDS, **kwargs  # type: ignore[call-overload]
        )
    except FileNotFoundError:
        raise ImageBuildError(f"{args[0]} is not installed (needed to {what})") from None
    except subprocess.TimeoutExpired:
        raise ImageBuildError(f"{what} took longer than {COMMAND_TIMEOUT_SECONDS}s") from None
    if result.returncode != 0:
        raise ImageBuildError(f"{what} failed (exit status {result.returncode})")


def image_label(image: str, label: str = RECIPE_LABEL) -> str | None:
    """The label's value on a local image; None when the image or the label is absent."""
    result = subprocess.run(
        ["docker", "image", "inspect", "--format", f'{{{{ index .Config.Labels "{label}" }}}}',
         image],
        capture_output=True, text=True, check=False, timeout=60,
    )
    if result.returncode != 0:
        return None
    value = result.stdout.strip()
    return value if value and value != "<no value>" else None


def cache_dir() -> Path:
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "taskforge-conformance" / "images"


# Parts of the rootfs no container reads: package caches, indexes, documentation, translations.
_ROOTFS_PRUNE = (
    "var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man",
    "usr/share/locale", "usr/share/info",
    # postgresql-common makes a cluster at install time; the image's entrypoint makes its own.
    "etc/postgresql", "var/lib/postgresql",
)


def _packages(recipes: Path, flavour: str = "base") -> list[str]:
    text = (recipes / flavour / "packages.txt").read_text()
    return [w for line in text.splitlines() for w in line.split("#", 1)[0].split()]


def build_rootfs_tarball(recipes: Path, digest: str, *, log: Log, flavour: str = "base",
                         prune: Sequence[str] = _ROOTFS_PRUNE) -> Path:
    """Debootstrap a rootfs (the shared base, or the recipe `flavour`'s own packages.txt) into a
    tarball, or reuse the cached one of the same recipe."""
    prefix = f"rootfs-{SUITE}" if flavour == "base" else f"rootfs-{flavour}-{SUITE}"
    tarball = cache_dir() / f"{prefix}-{digest}.tar"
    if tarball.is_file():
        log(f"base rootfs: cached at {tarball}")
        return tarball
    if shutil.which("debootstrap") is None:
        raise ImageBuildError("debootstrap is not installed (apt-get install debootstrap)")
    if os.geteuid() != 0:
        raise ImageBuildError("debootstrap needs root to build the base rootfs")
    mirror = debian_mirror()
    tarball.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="taskforge-rootfs-", dir=tarball.parent))
    try:
        rootfs = work / "rootfs"
        _run(["debootstrap", "--variant=minbase",
              "--include=" + ",".join(_packages(recipes, flavour)),
              SUITE, str(rootfs), mirror], log=log, what=f"debootstrap the {flavour} rootfs",
             stdout=subprocess.DEVNULL)
        for part in prune:
            target = rootfs / part
            if target.is_dir():
                shutil.rmtree(target)
                target.mkdir(mode=0o755)
        partial = work / "rootfs.tar"
        _run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(partial), "."],
             log=log, what="pack the base rootfs")
        partial.replace(tarball)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for stale in tarball.parent.glob(f"{prefix}-*.tar"):
        if stale != tarball:
            stale.unlink(missing_ok=True)
    return tarball


def build_base(recipes: Path, *, force: bool, log: Log) -> str:
    digest = recipe_hash([recipes / "base"], relative_to=recipes, extra=[SUITE, "minbase"])
    if not force and image_label(BASE_LOCAL) == digest:
        log(f"{BASE_LOCAL}: up to date ({digest})")
        return digest
    _import_rootfs(build_rootfs_tarball(recipes, digest, log=log), BASE_LOCAL, digest, log=log)
    return digest


def build_server_base(recipes: Path, *, force: bool, log: Log) -> str:
    """The server image's base, debootstrapped from its own packages.txt (Python only)."""
    digest = recipe_hash([recipes / SERVER.role], relative_to=recipes, extra=[SUITE, "minbase"])
    if not force and image_label(SERVER_BASE_LOCAL) == digest:
        log(f"{SERVER_BASE_LOCAL}: up to date ({digest})")
        return digest
    tarball = build_rootfs_tarball(recipes, digest, log=log, flavour=SERVER.role)
    _import_rootfs(tarball, SERVER_BASE_LOCAL, digest, log=log)
    return digest


def _import_rootfs(tarball: Path, image: str, digest: str, *, log: Log) -> None:
    """`docker import` a rootfs tarball as a base image; the image it replaces is removed."""
    previous = image_id(image)
    _run(["docker", "import",
          "--change", f"LABEL {RECIPE_LABEL}={digest}",
          "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
          "--change", "ENV LANG=C.UTF-8",
          "--change", 'CMD ["/bin/bash"]',
          str(tarball), image], log=log, what=f"import {image}",
         stdout=subprocess.DEVNULL)
    if previous is not None and previous != image_id(image):
        subprocess.run(["docker", "image", "rm", previous], capture_output=True, check=False,
                       timeout=120)


def image_id(image: str) -> str | None:
    result = subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", image],
                            capture_output=True, text=True, check=False, timeout=60)
    return result.stdout.strip() or None if result.returncode == 0 else None


def _build(dockerfile: Path, context: Path, tag: str, digest: str, *, log: Log,
           base: str = BASE_LOCAL) -> None:
    previous = image_id(tag)
    _run(["docker", "build", "--network", "host", "--quiet", "--force-rm",
          "--build-arg", f"BASE_IMAGE={base}",
          "--label", f"{RECIPE_LABEL}={digest}",
          "-f", str(dockerfile), "-t", tag, str(context)], log=log, what=f"build {tag}",
         stdout=subprocess.DEVNULL)
    if previous is not None and previous != image_id(tag):
        # The replaced image is untagged now; a gigabyte per rebuild adds up. In use: it stays.
        subprocess.run(["docker", "image", "rm", previous], capture_output=True, check=False,
                       timeout=120)


def build_service_image(recipes: Path, role: ImageRole, base_digest: str, *,
                        force: bool, log: Log) -> None:
    recipe = recipes / role.role
    digest = recipe_hash([recipe], relative_to=recipes, extra=[base_digest])
    if not force and image_label(role.local) == digest:
        log(f"{role.local}: up to date ({digest})")
        return
    _build(recipe / "Dockerfile", recipe, role.local, digest, log=log)


def build_ssh_host_image(recipes: Path, *, force: bool, log: Log) -> None:
    """The SSH test host (compose/images/sshhost/): its own rootfs, since it needs an apt index,
    docker.io and sshd that the shared base leaves out, and a Dockerfile for the user on top."""
    recipe = recipes / SSH_HOST.role
    rootfs_digest = recipe_hash([recipe / "packages.txt"], relative_to=recipes,
                                extra=[SUITE, "minbase"])
    digest = recipe_hash([recipe], relative_to=recipes, extra=[rootfs_digest])
    if not force and image_label(SSH_HOST.local) == digest:
        log(f"{SSH_HOST.local}: up to date ({digest})")
        return
    if force or image_label(SSH_HOST_ROOTFS) != rootfs_digest:
        # The apt index stays: the update checks read it.
        prune = [p for p in _ROOTFS_PRUNE if p != "var/lib/apt/lists"]
        tarball = build_rootfs_tarball(recipes, rootfs_digest, log=log, flavour=SSH_HOST.role,
                                       prune=prune)
        _run(["docker", "import", "--change", f"LABEL {RECIPE_LABEL}={rootfs_digest}",
              "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
              "--change", "ENV LANG=C.UTF-8", str(tarball), SSH_HOST_ROOTFS], log=log,
             what=f"import {SSH_HOST_ROOTFS}", stdout=subprocess.DEVNULL)
    _build(recipe / "Dockerfile", recipe, SSH_HOST.local, digest, log=log, base=SSH_HOST_ROOTFS)


def server_recipe(project: Path) -> list[Path]:
    """What the server image is made of: its Dockerfile and the sources of its wheel."""
    return [project / "compose" / "Dockerfile", project / "pyproject.toml",
            project / "reference_server"]


def build_server_image(project: Path, base_digest: str, *, force: bool, log: Log) -> None:
    """The server on its own base (`base_digest`: SERVER_BASE_LOCAL's), from a wheelhouse."""
    digest = recipe_hash(server_recipe(project), relative_to=project, extra=[base_digest])
    if not force and image_label(SERVER.local) == digest:
        log(f"{SERVER.local}: up to date ({digest})")
        return
    with tempfile.TemporaryDirectory(prefix="taskforge-server-context-") as context:
        build_wheelhouse(project, Path(context) / "wheelhouse", log=log)
        _build(project / "compose" / "Dockerfile", Path(context), SERVER.local, digest, log=log,
               base=SERVER_BASE_LOCAL)


def _image_python(image: str) -> tuple[str, str, str]:
    """(python version, glibc version, machine) of the image's python3."""
    probe = ("import platform; print(platform.python_version(), platform.libc_ver()[1], "
             "platform.machine())")
    result = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--entrypoint", "python3", image,
         "-c", probe],
        capture_output=True, text=True, check=False, timeout=120,
    )
    words = result.stdout.split()
    if result.returncode != 0 or len(words) != 3:
        raise ImageBuildError(f"cannot run python3 in {image}: {result.stderr.strip()[-200:]}")
    return words[0], words[1], words[2]


_MISSING = re.compile(r"No matching distribution found for ([^;\s]+)")
WHEELHOUSE_ROUNDS = 5


def _missing_in_image(image: str, wheelhouse: Path) -> list[str]:
    """Requirements the image's pip cannot satisfy from the wheelhouse (a dry run, no network)."""
    script = ("python3 -m venv /tmp/venv && /tmp/venv/bin/pip install --dry-run --quiet "
              "--disable-pip-version-check --no-index --find-links /wheelhouse "
              f"'{SERVER_REQUIREMENT}'")
    result = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--entrypoint", "sh",
         "-v", f"{wheelhouse}:/wheelhouse:ro", image, "-c", script],
        capture_output=True, text=True, check=False, timeout=600,
    )
    if result.returncode == 0:
        return []
    missing = _MISSING.findall(result.stdout + result.stderr)
    if not missing:
        raise ImageBuildError(f"pip in {image} failed: {result.stderr.strip()[-300:]}")
    return missing


def build_wheelhouse(project: Path, wheelhouse: Path, *, log: Log) -> None:
    """The project's wheel and its dependencies, complete for the base image's python3.

    The host's pip knows the host's index configuration and trust store; the build does not. The
    host's Python may differ in its patch level from the image's, and environment markers can
    depend on it (redis needs async-timeout below 3.11.3), which pip cannot be told to evaluate for
    another interpreter. So the image's own pip dry-runs the install from the wheelhouse, and what
    it misses is fetched on the host for the image's version and platform, for a few rounds.
    """
    # The dependencies change with pyproject.toml only: their wheels are kept between builds, and
    # a change to the server's code rebuilds just the project's wheel.
    deps_key = recipe_hash([project / "pyproject.toml"], relative_to=project,
                           extra=[sys.version, image_label(SERVER_BASE_LOCAL) or ""])
    cached = cache_dir() / f"wheelhouse-{deps_key}"
    if cached.is_dir():
        log(f"wheelhouse: dependencies cached at {cached}")
        shutil.copytree(cached, wheelhouse)
        _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
              "--wheel-dir", str(wheelhouse), str(project)], log=log,
             what="build the project's wheel")
    else:
        _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(wheelhouse),
              f"{project}[server]"], log=log, what="build the wheelhouse")
    _complete_wheelhouse(wheelhouse, log=log)
    if not cached.is_dir():
        _keep_dependencies(wheelhouse, cached)


def _keep_dependencies(wheelhouse: Path, cached: Path) -> None:
    cached.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=".wheelhouse-", dir=cached.parent))
    try:
        for wheel in wheelhouse.glob("*.whl"):
            if not wheel.name.startswith("taskforge_conformance_kit-"):
                shutil.copy2(wheel, staged / wheel.name)
        staged.rename(cached)
    except OSError:
        shutil.rmtree(staged, ignore_errors=True)  # another build stored them first
        return
    for stale in cached.parent.glob("wheelhouse-*"):
        if stale != cached:
            shutil.rmtree(stale, ignore_errors=True)


def _complete_wheelhouse(wheelhouse: Path, *, log: Log) -> None:
    version, glibc, machine = _image_python(SERVER_BASE_LOCAL)
    major, minor = version.split(".")[:2]
    # pip takes the platforms literally: list every manylinux level the image's glibc satisfies.
    glibc_major, glibc_minor = (int(part) for part in glibc.split(".")[:2])
    platforms = [
        f"manylinux_{glibc_major}_{level}_{machine}" for level in range(glibc_minor, 4, -1)
    ]
    platforms += [f"manylinux2014_{machine}", f"manylinux2010_{machine}",
                  f"manylinux1_{machine}", f"linux_{machine}"]
    for _ in range(WHEELHOUSE_ROUNDS):
        missing = _missing_in_image(SERVER_BASE_LOCAL, wheelhouse)
        if not missing:
            return
        log(f"wheelhouse: the image's python {version} also needs {', '.join(missing)}")
        _run([sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(wheelhouse),
              "--find-links", str(wheelhouse), "--only-binary=:all:",
              "--python-version", version, "--implementation", "cp", "--abi", f"cp{major}{minor}",
              *(arg for platform in platforms for arg in ("--platform", platform)),
              *missing], log=log, what="complete the wheelhouse for the image")
    raise ImageBuildError(f"the wheelhouse is still incomplete after {WHEELHOUSE_ROUNDS} rounds")


def stale_server_image(project: Path | None = None) -> str | None:
    """Why the local server image is older than this checkout's sources, or None.

    Only for the image `nox -s images` builds, and only when running from a source checkout.
    """
    if SERVER.name != SERVER.local:
        return None
    root = project or Path(__file__).resolve().parents[2]
    if not (root / "compose" / "Dockerfile").is_file():
        return None
    base_digest = image_label(SERVER_BASE_LOCAL)
    built = image_label(SERVER.local)
    if base_digest is None or built is None:
        return None
    current = recipe_hash(server_recipe(root), relative_to=root, extra=[base_digest])
    if current == built:
        return None
    return (f"{SERVER.local} was built from other sources than this checkout's "
            "(reference_server/, compose/Dockerfile); `nox -s images` rebuilds it")


def build_all(project: Path, *, force: bool = False, log: Log = print) -> dict[str, str]:
    """Build (or keep) the local images; return the environment variables that select them."""
    recipes = project / "compose" / "images"
    if not (recipes / "base" / "packages.txt").is_file():
        raise ImageBuildError(f"no image recipes in {recipes}")
    base_digest = build_base(recipes, force=force, log=log)
    for role in (POSTGRES, REDIS):
        build_service_image(recipes, role, base_digest, force=force, log=log)
    build_server_image(project, build_server_base(recipes, force=force, log=log), force=force,
                       log=log)
    build_ssh_host_image(recipes, force=force, log=log)
    for role in DEPLOYMENT_IMAGES:
        build_service_image(recipes, role, base_digest, force=force, log=log)
    # Images an earlier build replaced while a container still used them: untagged, ours (label).
    subprocess.run(["docker", "image", "prune", "--force", "--filter", f"label={RECIPE_LABEL}"],
                   capture_output=True, check=False, timeout=300)
    return {role.env_var: role.local for role in (*STACK_IMAGES, SSH_HOST, *DEPLOYMENT_IMAGES)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = UsageParser(
        prog="python -m conformance.stack.images",
        description="Build the docker stack's images locally from compose/images/.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=UsageParser)
    build = sub.add_parser("build", help="build the images whose recipe changed")
    build.add_argument("--project", type=Path, default=Path.cwd(), help="project root")
    build.add_argument("--force", action="store_true", help="rebuild even when up to date")
    build.add_argument("--env-file", type=Path, default=None,
                       help="write `export NAME=image` lines selecting the built images here")
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitStatus.USAGE
    try:
        env = build_all(args.project.resolve(), force=args.force,
                        log=lambda line: print(line, flush=True))
    except ImageBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitStatus.UNREACHABLE
    lines = [f"export {name}={value}" for name, value in env.items()]
    if args.env_file is not None:
        args.env_file.parent.mkdir(parents=True, exist_ok=True)
        args.env_file.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return ExitStatus.READY


if __name__ == "__main__":
    raise SystemExit(main())
