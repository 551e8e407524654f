"""NGINX-CONFIG-LOADS: `nginx -t` decides whether the configuration loads (guide 3.2, 6.1).

The file is tested in a scratch prefix, line for line the same: absolute paths of the files it
names (includes, certificates, logs, pid) point into the prefix, filled from the compose file's
mounts (or, for a certificate not installed yet, a throwaway one: NGINX-TLS-CERT-INSTALLED judges
the real one); the image's `user` is dropped (the kit's machine has other users); and upstream
hosts that only the compose network resolves (service names) become 127.0.0.1.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from conformance.checks.registry import CheckContext
from conformance.checks.static.base import ArtifactError, Problem, static_check
from conformance.checks.static.composefile import each_service, host_path, image_of, load_compose
from conformance.checks.static.nginx import nginx_mounts
from conformance.checks.static.tools import line_of_text, require_tool, run_tool, tool_version

#: Directives whose arguments are files or directories nginx opens when it loads.
PATH_DIRECTIVES = (
    "include", "ssl_certificate", "ssl_certificate_key", "ssl_trusted_certificate",
    "ssl_client_certificate", "ssl_dhparam", "ssl_password_file", "auth_basic_user_file",
    "access_log", "error_log", "root", "alias", "client_body_temp_path", "proxy_temp_path",
    "fastcgi_temp_path", "uwsgi_temp_path", "scgi_temp_path",
)
_PATH_LINE = re.compile(rf"^(\s*)({'|'.join(PATH_DIRECTIVES)})(\s+)([^;]*)(;.*)$")
_UPSTREAM_SERVER = re.compile(r"^(\s*server\s+)([A-Za-z][\w-]*)(:\d+)?(\s[^;{]*)?;")
_PROXY_PASS = re.compile(r"(\b(?:proxy|grpc|uwsgi|fastcgi)_pass\s+(?:https?|grpcs?)://)"
                         r"([A-Za-z][\w-]*)(?=[:/;])")
HTTP2_DIRECTIVE_SINCE = (1, 25, 1)  # `http2 on;` is nginx 1.25.1's


def _system_file(path: str) -> Path | None:
    """A file the image ships (mime.types...): this machine's nginx package has the same."""
    local = Path(path)
    return local if local.is_file() and str(local).startswith("/etc/nginx/") else None


def _materialise(container_path: str, directive: str, prefix: Path,
                 mounts: list[tuple[str, Path]], installed_certificates: bool) -> None:
    """Give the scratch copy of `container_path` what nginx will find there."""
    target = prefix / container_path.lstrip("/")
    if directive in ("access_log", "error_log"):
        target.parent.mkdir(parents=True, exist_ok=True)
        return
    if directive in ("root", "alias") or directive.endswith("_temp_path"):
        target.mkdir(parents=True, exist_ok=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    source = host_path(container_path, mounts) if mounts else None
    if directive in ("ssl_certificate", "ssl_certificate_key") and not installed_certificates:
        _throwaway_certificate(prefix, target, directive)
    elif source is not None and source.is_file():
        shutil.copyfile(source, target)
    elif (system := _system_file(container_path)) is not None:
        shutil.copyfile(system, target)
    elif directive in ("ssl_certificate", "ssl_certificate_key"):
        _throwaway_certificate(prefix, target, directive)
    elif not target.exists():
        target.write_text("", encoding="utf-8")


def _throwaway_certificate(prefix: Path, target: Path, directive: str) -> None:
    """A certificate and key that match: nginx -t checks the pair (one pair per prefix)."""
    import trustme

    pair = prefix / ".throwaway"
    if not pair.is_dir():
        issued = trustme.CA().issue_cert("localhost")
        pair.mkdir()
        (pair / "cert").write_bytes(b"".join(p.bytes() for p in issued.cert_chain_pems))
        (pair / "key").write_bytes(issued.private_key_pem.bytes())
    source = pair / ("cert" if directive == "ssl_certificate" else "key")
    shutil.copyfile(source, target)


def scratch_copy(text: str, prefix: Path, mounts: list[tuple[str, Path]],
                 upstreams: set[str]) -> tuple[str, list[str]]:
    """The configuration for the scratch prefix (same lines), and what was changed."""
    changed: list[str] = []
    lines: list[str] = []
    certificates = re.findall(r"^\s*ssl_certificate(?:_key)?\s+(/[^;\s]+)", text, re.MULTILINE)
    # The installed pair when every one is there; otherwise throwaway pairs throughout (a cert
    # beside a foreign key would not load): NGINX-TLS-CERT-INSTALLED judges the real ones.
    installed = bool(mounts) and all(
        (found := host_path(c, mounts)) is not None and found.is_file() for c in certificates)
    for line in text.split("\n"):
        stripped = line.strip()
        if re.match(r"^(user|pid)\s+[^;]*;", stripped):
            changed.append(stripped)
            line = "# " + line  # the pid goes to the prefix (-g); the user is the image's
        elif (match := _PATH_LINE.match(line)) is not None:
            directive, args = match.group(2), match.group(4).split()
            new_args = []
            for arg in args:
                if arg.startswith("/") and not arg.startswith("//"):
                    _materialise(arg, directive, prefix, mounts, installed)
                    arg = str(prefix / arg.lstrip("/"))
                new_args.append(arg)
            joined = " ".join(new_args)
            line = f"{match.group(1)}{directive}{match.group(3)}{joined}{match.group(5)}"
        elif (match := _UPSTREAM_SERVER.match(line)) and match.group(2) not in ("localhost",):
            line = _UPSTREAM_SERVER.sub(lambda m: f"{m.group(1)}127.0.0.1{m.group(3) or ''}"
                                        f"{m.group(4) or ''};", line)
            changed.append(f"upstream host {match.group(2)} -> 127.0.0.1")
        elif (match := _PROXY_PASS.search(line)) and match.group(2) not in upstreams:
            line = _PROXY_PASS.sub(lambda m: f"{m.group(1)}127.0.0.1", line)
            changed.append(f"proxied host {match.group(2)} -> 127.0.0.1")
        lines.append(line)
    return "\n".join(lines), changed


_HTTP2_DIRECTIVE = re.compile(r"(^|[;{}])(\s*)(http2\s+(?:on|off)\s*;)", re.MULTILINE)


def _image_version(image: str) -> tuple[int, ...] | None:
    """The nginx version an image tag names (nginx:1.25-alpine -> (1, 25)), or None for a tag
    that names none (alpine, stable, mainline, latest: today's releases)."""
    tag = image.rsplit("/", 1)[-1].partition(":")[2].partition("@")[0]
    match = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", tag)
    return tuple(int(g) for g in match.groups() if g is not None) if match else None


def _newer_than_here(image: str | None, here: tuple[int, ...] | None) -> bool:
    """Whether the deployed image's nginx knows `http2 on;` while the one here does not."""
    if image is None or here is None or here >= HTTP2_DIRECTIVE_SINCE:
        return False
    deployed = _image_version(image)
    return deployed is None or deployed + (99,) * (3 - len(deployed)) >= HTTP2_DIRECTIVE_SINCE


def _deployed_nginx(context: CheckContext) -> str | None:
    if context.compose_file is None:
        return None
    for name, service in each_service(load_compose(context)):
        if "nginx" in name or "nginx" in image_of(service):
            return image_of(service) or None
    return None


@static_check(
    "NGINX-CONFIG-LOADS", needs=("nginx_conf",),
    ok="`nginx -t` loads the configuration",
)
def config_loads(context: CheckContext) -> Iterator[Problem]:
    nginx = require_tool("nginx")
    path = context.nginx_conf
    assert path is not None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ArtifactError(path, f"cannot read: {exc}") from None
    mounts = nginx_mounts(context) if context.compose_file is not None else []
    upstreams = set(re.findall(r"^\s*upstream\s+(\S+)\s*\{", text, re.MULTILINE))
    version = tool_version(nginx)
    shown = ".".join(map(str, version)) if version else "unknown"
    deployed = _deployed_nginx(context)
    with tempfile.TemporaryDirectory(prefix="taskforge-nginx-") as scratch:
        prefix = Path(scratch)
        (prefix / "logs").mkdir()
        copy, _changed = scratch_copy(text, prefix, mounts, upstreams)
        if _newer_than_here(deployed, version):
            # The deployed nginx has `http2 on;`; this older one would refuse that line alone,
            # so it tests the rest (same line numbers) and leaves that directive to the image.
            copy = _HTTP2_DIRECTIVE.sub(lambda m: m[1] + m[2] + " " * len(m[3]), copy)
        conf = prefix / "nginx.conf"
        conf.write_text(copy, encoding="utf-8")
        result = run_tool(
            [nginx, "-t", "-q", "-p", f"{prefix}/", "-c", str(conf),
             "-g", f"pid {prefix}/nginx.pid; error_log {prefix}/logs/error.log;"], path,
        )
    if result.returncode == 0:
        return
    for message in result.output.splitlines():
        match = re.search(r"\[(emerg|alert|crit|error)\]\s*(.*?)(?: in (\S+?):(\d+))?$", message)
        if match is None:
            continue
        what = re.sub(r"^\d+#\d+: ", "", match.group(2)).replace(scratch, "")
        line = int(match.group(4)) if match.group(4) else None
        quoted = re.search(r'"(/[^"]+)"', what)
        if line is None and quoted:
            line = line_of_text(path, quoted.group(1))
        note = ""
        if 'unknown directive "http2"' in what and version and version < HTTP2_DIRECTIVE_SINCE:
            note = (": `http2 on;` exists since nginx 1.25.1; on an older nginx write "
                    "`listen 443 ssl http2;`")
        yield Problem(
            message=f"nginx {shown} refuses the configuration: {what}{note}"
            + (f" (the compose file runs {deployed})" if deployed else ""),
            file=path, line=line or 1, expected="`nginx -t`: syntax is ok",
            actual=what,
        )
