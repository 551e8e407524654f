"""Static checks of the NGINX configuration (guide 6.1), parsed with crossplane.

Includes are followed where their files are here (through the compose file's mounts, or beside
the given file); those of the image (mime.types) are not. add_header inheritance is applied as
NGINX does: a block with its own add_header inherits none from above.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import crossplane

from conformance.checks.registry import CheckContext
from conformance.checks.static.base import ArtifactError, NotApplicable, Problem, static_check
from conformance.checks.static.composefile import (
    bind_mounts,
    each_service,
    host_path,
    image_of,
    load_compose,
    volume_sources,
)
from conformance.checks.static.env import load_env

GOOD_PROTOCOLS = {"TLSv1.2", "TLSv1.3"}
HSTS_MIN_SECONDS = 15552000  # 180 days
REQUIRED_HEADERS = (
    "strict-transport-security",
    "content-security-policy",
    "x-content-type-options",
    "x-frame-options",
    "referrer-policy",
)


@dataclass(kw_only=True)
class Block:
    """A directive with its block, its line and its parent (http, server, location...)."""

    name: str
    args: list[str]
    line: int
    children: list[Block] = field(default_factory=list)
    parent: Block | None = None

    def direct(self, name: str) -> list[Block]:
        return [c for c in self.children if c.name == name]

    def inherited(self, name: str) -> list[Block]:
        """The directive as NGINX applies it here: from the nearest block that sets it."""
        node: Block | None = self
        while node is not None:
            found = node.direct(name)
            if found:
                return found
            node = node.parent
        return []

    def walk(self) -> Iterator[Block]:
        for child in self.children:
            yield child
            yield from child.walk()


def _build(directives: list[dict[str, Any]], parent: Block,
           include: Callable[[str], list[Path]] | None = None, depth: int = 0,
           at: int | None = None) -> None:
    """The block tree. An `include` whose files are here (`include` maps its argument) is
    spliced in as NGINX does; its directives carry the include's line (`at`), so findings
    point at the given file."""
    for directive in directives:
        line = at if at is not None else int(directive.get("line", 0))
        name, args = directive["directive"], list(directive.get("args", []))
        if name == "include" and include is not None and depth < 8 and args:
            files = include(args[0])
            if files:
                for file in files:
                    parsed = crossplane.parse(str(file), single=True, check_ctx=False,
                                              comments=False)
                    if parsed.get("errors") or not parsed.get("config"):
                        continue  # its own errors are NGINX-CONFIG-LOADS's (nginx -t) to report
                    _build(parsed["config"][0]["parsed"], parent, include, depth + 1, line)
                continue
        node = Block(name=name, args=args, line=line, parent=parent)
        parent.children.append(node)
        if "block" in directive:
            _build(directive["block"], node, include, depth, at)


def _includer(path: Path, mounts: list[tuple[str, Path]]) -> Callable[[str], list[Path]]:
    """Where an include's files are here: through the compose file's mounts of the nginx
    service, else /etc/nginx/ (NGINX's conf directory, where relative names are resolved too)
    taken as the given file's directory."""

    def files(argument: str) -> list[Path]:
        local = host_path(argument, mounts) if argument.startswith("/") else None
        if local is None:
            relative = argument.removeprefix("/etc/nginx/")
            if relative.startswith("/"):
                return []
            local = path.parent / relative
        if any(c in local.name for c in "*?["):
            matches = sorted(local.parent.glob(local.name)) if local.parent.is_dir() else []
        else:
            matches = [local] if local.is_file() else []
        return [m for m in matches if m.is_file() and m.resolve() != path.resolve()]

    return files


def parse_nginx(path: Path, mounts: list[tuple[str, Path]] | None = None) -> Block:
    if not path.is_file():
        raise ArtifactError(path, "no such file")
    result = crossplane.parse(str(path), single=True, check_ctx=False, comments=False)
    if result.get("errors"):
        error = result["errors"][0]
        raise ArtifactError(path, str(error.get("error")), error.get("line"))
    root = Block(name="main", args=[], line=1)
    _build(result["config"][0]["parsed"], root, _includer(path, mounts or []))
    return root


def _nginx(context: CheckContext) -> tuple[Path, Block]:
    assert context.nginx_conf is not None  # guaranteed by needs=("nginx_conf",)
    mounts = nginx_mounts(context) if context.compose_file is not None else []
    return context.nginx_conf, parse_nginx(context.nginx_conf, mounts)


def servers(root: Block) -> list[Block]:
    """The http servers; at the top level too, for a conf.d file of server blocks (included
    inside http {})."""
    return [b for b in root.walk()
            if b.name == "server" and b.parent and b.parent.name in ("http", "main")]


def is_tls(server: Block) -> bool:
    return any("ssl" in listen.args or "quic" in listen.args for listen in server.direct("listen"))


def is_public(server: Block) -> bool:
    """Listening on something other than loopback."""
    for listen in server.direct("listen"):
        address = listen.args[0] if listen.args else ""
        if not address.startswith(("127.", "localhost", "[::1]", "unix:")):
            return True
    return not server.direct("listen")  # default: *:80


def _acme_challenge(block: Block) -> bool:
    return block.name == "location" and any(
        a.rstrip("/").endswith("/.well-known/acme-challenge") for a in block.args)


def _walk_outside_acme(block: Block) -> Iterator[Block]:
    for child in block.children:
        if _acme_challenge(child):
            continue
        yield child
        yield from _walk_outside_acme(child)


def redirects_only(server: Block) -> bool:
    """A server that answers everything with a redirect (the usual port-80 block). Its ACME
    HTTP-01 location (/.well-known/acme-challenge/, the certificate's renewal by webroot) serves
    a token to the CA, not the application, so it does not make the server one that serves."""
    inside = list(_walk_outside_acme(server))
    if any(b.name in ("proxy_pass", "root", "alias", "fastcgi_pass") for b in inside):
        return False
    returns = [b for b in inside if b.name == "return"]
    return bool(returns) and all(
        r.args[:1] in (["301"], ["302"], ["307"], ["308"]) for r in returns
    )


def locations(block: Block) -> Iterator[Block]:
    for child in block.children:
        if child.name == "location":
            yield child
            yield from locations(child)


@static_check(
    "NGINX-TLS-PROTOCOLS", needs=("nginx_conf",), ok="TLS 1.2 and 1.3 only, on a TLS server"
)
def tls_protocols(context: CheckContext) -> Iterator[Problem]:
    path, root = _nginx(context)
    tls = [s for s in servers(root) if is_tls(s)]
    if not tls:
        yield Problem(
            message="no server listens with ssl: the API is served over plain http", file=path,
            line=servers(root)[0].line if servers(root) else 1,
            expected="listen 443 ssl;", actual="no TLS server",
        )
        return
    for server in tls:
        protocols = server.inherited("ssl_protocols")
        if not protocols:
            yield Problem(
                message="ssl_protocols is not set: older NGINX releases default to TLSv1 and "
                "TLSv1.1", file=path, line=server.line, expected="ssl_protocols TLSv1.2 TLSv1.3;",
                actual="NGINX default",
            )
            continue
        bad = [p for p in protocols[-1].args if p not in GOOD_PROTOCOLS]
        if bad:
            yield Problem(
                message=f"ssl_protocols allows {' '.join(bad)}", file=path,
                line=protocols[-1].line, expected="TLSv1.2 TLSv1.3",
                actual=" ".join(protocols[-1].args),
            )


def _mount_targets(context: CheckContext) -> list[str]:
    """Where the compose file mounts directories into the nginx service (certificate homes)."""
    if context.compose_file is None:
        return ["/etc/nginx/ssl/"]
    compose = load_compose(context)
    targets = []
    for name, service in each_service(compose):
        if "nginx" in name or "nginx" in str(service.get("image") or ""):
            targets += [t.rstrip("/") + "/" for _s, t, _l in volume_sources(service) if t]
    return targets or ["/etc/nginx/ssl/"]


@static_check(
    "NGINX-TLS-CERT-PATHS", needs=("nginx_conf",),
    ok="certificate and key paths lie under a mounted directory",
)
def tls_cert_paths(context: CheckContext) -> Iterator[Problem]:
    path, root = _nginx(context)
    mounted = _mount_targets(context)
    for server in (s for s in servers(root) if is_tls(s)):
        for directive in ("ssl_certificate", "ssl_certificate_key"):
            found = server.inherited(directive)
            if not found:
                yield Problem(
                    message=f"TLS server without {directive}", file=path, line=server.line,
                    expected=f"{directive} /etc/nginx/ssl/<file>;", actual="absent",
                )
                continue
            for entry in found:
                target = entry.args[0] if entry.args else ""
                if not any(target.startswith(m) for m in mounted) and "$" not in target:
                    yield Problem(
                        message=f"{directive} {target} is outside the directories mounted into "
                        "the nginx container", file=path, line=entry.line,
                        expected=f"a path under {', '.join(mounted)}", actual=target,
                    )


def _headers(block: Block) -> tuple[Block | None, dict[str, Block]]:
    """The add_header set that applies in this block, and the block it comes from."""
    node: Block | None = block
    while node is not None:
        found = node.direct("add_header")
        if found:
            return node, {h.args[0].lower(): h for h in found if h.args}
        node = node.parent
    return None, {}


def _header_problem(name: str, header: Block) -> str | None:
    value = header.args[1] if len(header.args) > 1 else ""
    if "always" not in header.args[2:]:
        return f"{name} is sent without `always`: error responses (4xx/5xx) go without it"
    if name == "strict-transport-security":
        match = re.search(r"max-age=(\d+)", value)
        if not match or int(match.group(1)) < HSTS_MIN_SECONDS:
            return f"HSTS max-age below {HSTS_MIN_SECONDS} s (180 days): {value}"
    if name == "content-security-policy" and re.search(r"unsafe-(inline|eval)", value):
        return f"CSP allows unsafe-inline or unsafe-eval: {value}"
    if name == "x-content-type-options" and value.lower() != "nosniff":
        return f"X-Content-Type-Options is {value}, not nosniff"
    if name == "x-frame-options" and value.upper() not in ("DENY", "SAMEORIGIN"):
        return f"X-Frame-Options is {value}"
    if name == "referrer-policy" and value.lower() in ("unsafe-url", "no-referrer-when-downgrade"):
        return f"Referrer-Policy {value} leaks URLs"
    return None


@static_check(
    "NGINX-SECURITY-HEADERS", needs=("nginx_conf",),
    ok="the five security headers are sent, always, everywhere",
)
def security_headers(context: CheckContext) -> Iterator[Problem]:
    path, root = _nginx(context)
    targets = [s for s in servers(root) if is_public(s) and not redirects_only(s)]
    if not targets:
        raise NotApplicable("no public server that serves content")
    # Beside the TLS servers, a plain-http one serves no browser page of the API (a health
    # probe, an ACME token), and browsers ignore HSTS over http (RFC 6797 8.1).
    targets = [s for s in targets if is_tls(s)] or targets
    seen: set[tuple[int, str]] = set()
    for server in targets:
        for block in [server, *locations(server)]:
            source, headers = _headers(block)
            for name in REQUIRED_HEADERS:
                # A header missing from an inherited set is one defect, where that set is (the
                # server block), not one per location that inherits it.
                where = source.line if source is not None else server.line
                header = headers.get(name)
                if header is None:
                    problem = f"{name} is not sent" + (
                        f" in location {' '.join(block.args)} (its own add_header drops the "
                        "inherited ones)" if block.name == "location" and source is block else ""
                    )
                else:
                    found = _header_problem(name, header)
                    if found is None:
                        continue
                    problem, where = found, header.line
                if (where, name) in seen:
                    continue
                seen.add((where, name))
                yield Problem(
                    message=problem, file=path, line=where,
                    expected=f"add_header {name} ... always;",
                    actual=" ".join(header.args) if header is not None else "absent",
                )


@static_check("NGINX-RATE-LIMIT", needs=("nginx_conf",), ok="requests are rate limited")
def rate_limit(context: CheckContext) -> Iterator[Problem]:
    path, root = _nginx(context)
    zones = {}
    for zone in (b for b in root.walk() if b.name == "limit_req_zone"):
        for arg in zone.args:
            if arg.startswith("zone="):
                zones[arg[5:].split(":")[0]] = zone
    if not zones:
        yield Problem(message="no limit_req_zone is declared", file=path, line=1,
                      expected="limit_req_zone $binary_remote_addr zone=api:10m rate=...;",
                      actual="none")
        return
    proxied = [b for b in root.walk() if b.name == "location" and b.direct("proxy_pass")]
    for location in proxied:
        applied = location.inherited("limit_req")
        if not applied:
            yield Problem(
                message=f"location {' '.join(location.args)} proxies without limit_req",
                file=path, line=location.line, expected="limit_req zone=<zone> burst=...;",
                actual="no limit_req",
            )
            continue
        for limit in applied:
            names = [a[5:] for a in limit.args if a.startswith("zone=")]
            if names and names[0] not in zones:
                yield Problem(message=f"limit_req uses undeclared zone {names[0]}", file=path,
                              line=limit.line, expected=f"one of {sorted(zones)}",
                              actual=names[0])


def _app_names(context: CheckContext) -> set[str]:
    if context.compose_file is None:
        return set()
    compose = load_compose(context)
    return {name for name, service in each_service(compose) if "build" in service or name == "app"}


@static_check("NGINX-PROXY-APP", needs=("nginx_conf",), ok="the API is proxied to the app")
def proxy_app(context: CheckContext) -> Iterator[Problem]:
    path, root = _nginx(context)
    upstreams = {
        b.args[0]: [s.args[0] for s in b.direct("server") if s.args]
        for b in root.walk() if b.name == "upstream" and b.args
    }
    apps = _app_names(context)
    passes = [b for b in root.walk() if b.name == "proxy_pass"]
    if not passes:
        yield Problem(message="no proxy_pass: NGINX does not reach the app", file=path, line=1,
                      expected="proxy_pass http://app:8000;", actual="none")
        return
    hosts: set[str] = set()
    for proxy in passes:
        target = re.sub(r"^\w+://", "", proxy.args[0] if proxy.args else "").split("/")[0]
        for server in upstreams.get(target, [target]):
            hosts.add(server.split(":")[0])
    if apps and not hosts & apps:
        yield Problem(
            message=f"proxy_pass reaches {sorted(hosts)}, not the app service {sorted(apps)}",
            file=path, line=passes[0].line, expected=f"proxy_pass http://{sorted(apps)[0]}:...;",
            actual=", ".join(sorted(hosts)),
        )
    for proxy in passes:
        location = proxy.parent
        assert location is not None
        sent = {h.args[0].lower() for h in location.inherited("proxy_set_header") if h.args}
        for header in ("x-forwarded-for", "x-forwarded-proto"):
            if header not in sent:
                yield Problem(
                    message=f"proxy to the app without {header}: the app sees NGINX's address "
                    "or scheme", file=path, line=proxy.line,
                    expected=f"proxy_set_header {header} ...;", actual="absent",
                )


def _matches(location: Block, uri: str) -> bool:
    args = location.args
    if not args:
        return False
    if args[0] == "=":
        return len(args) > 1 and args[1] == uri
    if args[0] in ("~", "~*"):
        flags = re.IGNORECASE if args[0] == "~*" else 0
        return len(args) > 1 and re.search(args[1], uri, flags) is not None
    prefix = args[1] if args[0] == "^~" and len(args) > 1 else args[0]
    return uri.startswith(prefix)


def _refuses(location: Block) -> bool:
    if any(d.args == ["all"] for d in location.direct("deny")):
        return True
    return any(r.args[:1] in (["403"], ["404"], ["444"]) for r in location.direct("return"))


@static_check(
    "NGINX-METRICS-NOT-PUBLIC", needs=("nginx_conf",), ok="the metrics endpoint is not public"
)
def metrics_not_public(context: CheckContext) -> Iterator[Problem]:
    path, root = _nginx(context)
    env = load_env(context)
    endpoint = (env.get("METRICS_ENDPOINT") if env is not None else None) or "/metrics"
    for server in servers(root):
        if not is_public(server) or redirects_only(server):
            continue
        matching = [loc for loc in locations(server) if _matches(loc, endpoint)]
        exact = [loc for loc in matching if loc.args[0] == "="]
        chosen = exact or sorted(matching, key=lambda loc: -len(loc.args[-1]))
        if not chosen:
            continue  # nothing serves it
        location = chosen[0]
        if _refuses(location):
            continue
        if location.inherited("proxy_pass") or location.direct("proxy_pass"):
            yield Problem(
                message=f"{endpoint} is proxied to the public by location "
                f"{' '.join(location.args)}", file=path, line=location.line,
                expected=f"location = {endpoint} {{ deny all; }}", actual="served publicly",
            )


def nginx_mounts(context: CheckContext) -> list[tuple[str, Path]]:
    """(container directory or file, host path) of every bind mount of the nginx service."""
    compose = load_compose(context)
    mounts = []
    for name, service in each_service(compose):
        if "nginx" in name or "nginx" in image_of(service):
            mounts.extend(bind_mounts(compose, service))
    return mounts


def _host_matches(pattern: str, host: str) -> bool:
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if pattern.startswith("*."):
        return host.count(".") == pattern.count(".") and host.endswith(pattern[1:])
    return pattern == host


def _certificate_problems(
    cert_file: Path, key_file: Path | None, host: str | None
) -> Iterator[tuple[str, str, str]]:
    """(message, expected, actual) for an installed certificate and its key."""
    # Imported here: only this check needs cryptography.
    from datetime import UTC, datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        certificate = x509.load_pem_x509_certificate(cert_file.read_bytes())
    except (OSError, ValueError) as exc:
        yield f"{cert_file.name} is not a PEM certificate: {exc}", "a PEM certificate", "unreadable"
        return
    now = datetime.now(UTC)
    if certificate.not_valid_after_utc < now:
        yield (f"{cert_file.name} expired on {certificate.not_valid_after_utc:%Y-%m-%d}",
               "a certificate valid today", "expired")
    if certificate.not_valid_before_utc > now:
        yield (f"{cert_file.name} is not valid before {certificate.not_valid_before_utc:%Y-%m-%d}",
               "a certificate valid today", "not yet valid")
    if host:
        try:
            names = certificate.extensions.get_extension_for_class(
                x509.SubjectAlternativeName
            ).value.get_values_for_type(x509.DNSName)
        except x509.ExtensionNotFound:
            names = []
        if not any(_host_matches(name, host) for name in names):
            yield (f"{cert_file.name} does not name {host} (BASE_URL)", host,
                   ", ".join(names) or "no DNS names")
    if key_file is None:
        return
    try:
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        yield f"{key_file.name} is not an unencrypted PEM key: {exc}", "a PEM key", "unreadable"
        return
    encoding = serialization.Encoding.PEM
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(encoding, public) != certificate.public_key().public_bytes(
        encoding, public
    ):
        yield (f"{key_file.name} is not the key of {cert_file.name}", "the matching key",
               "another key")


@static_check(
    "NGINX-TLS-CERT-INSTALLED", needs=("nginx_conf", "compose_file"),
    ok="the certificate and key are installed, valid today, matching, and name BASE_URL's host",
)
def tls_cert_installed(context: CheckContext) -> Iterator[Problem]:
    path, root = _nginx(context)
    mounts = nginx_mounts(context)
    env = load_env(context)
    base_url = env.get("BASE_URL") if env is not None else None
    host = urlsplit(base_url).hostname if base_url else None
    for server in (s for s in servers(root) if is_tls(s)):
        certs = server.inherited("ssl_certificate")
        keys = server.inherited("ssl_certificate_key")
        if not certs:
            continue  # NGINX-TLS-CERT-PATHS reports it
        files = [(d, host_path(d.args[0], mounts)) for d in certs + keys if d.args]
        missing = [(d, f) for d, f in files if f is not None and not f.is_file()]
        for directive, file in missing:
            yield Problem(
                message=f"{directive.args[0]} is not installed: {file} does not exist",
                file=path, line=directive.line, expected=f"the file at {file}", actual="missing",
            )
        cert_file = host_path(certs[0].args[0], mounts) if certs[0].args else None
        key_file = host_path(keys[0].args[0], mounts) if keys and keys[0].args else None
        if missing or cert_file is None:
            continue
        for message, expected, actual in _certificate_problems(cert_file, key_file, host):
            yield Problem(message=message, file=path, line=certs[0].line, expected=expected,
                          actual=actual)
