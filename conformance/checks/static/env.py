"""Static checks of the production .env (guide 3.1), including the guide's loading procedure (4.2).

The file is read as Docker Compose reads it (quotes, inline comments); the loading procedure
`export $(grep -v '^#' .env | xargs)` is simulated separately to show what it does to the values.
"""

from __future__ import annotations

import math
import re
import stat
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from conformance.checks.registry import CheckContext
from conformance.checks.static.base import ArtifactError, NotApplicable, Problem, static_check
from conformance.checks.static.variables import BY_NAME, REQUIRED, VARIABLES, Format, Secret

MIN_SECRET_BYTES = 32
MIN_SECRET_BITS = 128  # Shannon estimate over the whole value
MIN_BITS_PER_CHAR = 3.0
MIN_PASSWORD_CHARS = 16

#: Values copied from the guide or from examples rather than generated.
PLACEHOLDERS = (
    re.compile(r"your[_-]", re.IGNORECASE),
    re.compile(r"change[_-]?me", re.IGNORECASE),
    re.compile(r"^(password|secret|admin|test|example)\d*$", re.IGNORECASE),
    re.compile(r"_here$", re.IGNORECASE),
    re.compile(r"^x{6,}$", re.IGNORECASE),
)

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_GLOB = re.compile(r"[*?\[]")


@dataclass(frozen=True, kw_only=True, slots=True)
class EnvVar:
    name: str
    value: str
    line: int
    raw: str


@dataclass(frozen=True, kw_only=True, slots=True)
class EnvFile:
    path: Path
    variables: dict[str, EnvVar]
    lines: list[str]
    duplicates: list[EnvVar]  # earlier definitions overridden by a later line

    def get(self, name: str) -> str | None:
        """The value, or None when absent or empty (empty means unset to the server)."""
        var = self.variables.get(name)
        return var.value if var is not None and var.value != "" else None

    def line_of(self, name: str) -> int | None:
        var = self.variables.get(name)
        return var.line if var is not None else None


def _compose_value(text: str) -> str:
    """A value as Docker Compose's dotenv reader sees it: quotes removed, inline comment cut."""
    text = text.strip()
    if text[:1] in ("'", '"') and text.count(text[0]) >= 2:
        quote = text[0]
        body = text[1 : text.index(quote, 1)]
        if quote == '"':
            body = body.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")
        return body
    comment = re.search(r"\s#", text)
    return (text[: comment.start()] if comment else text).strip()


def parse_env(path: Path) -> EnvFile:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ArtifactError(path, f"cannot read: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ArtifactError(path, "not UTF-8 text") from None
    lines = text.split("\n")
    variables: dict[str, EnvVar] = {}
    duplicates: list[EnvVar] = []
    for number, raw in enumerate(lines, start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        body = stripped.removeprefix("export ").lstrip()
        name, sep, value = body.partition("=")
        if not sep or not _IDENTIFIER.match(name.strip()):
            raise ArtifactError(path, f"line {number} is not NAME=value: {raw[:60]!r}", number)
        name = name.strip()
        if name in variables:
            duplicates.append(variables[name])
        variables[name] = EnvVar(name=name, value=_compose_value(value), line=number, raw=raw)
    return EnvFile(path=path, variables=variables, lines=lines, duplicates=duplicates)


def load_env(context: CheckContext) -> EnvFile | None:
    return parse_env(context.env_file) if context.env_file is not None else None


def _env(context: CheckContext) -> EnvFile:
    assert context.env_file is not None  # guaranteed by needs=("env_file",)
    return parse_env(context.env_file)


def is_placeholder(value: str) -> bool:
    return any(p.search(value) for p in PLACEHOLDERS)


def shannon_bits_per_char(value: str) -> float:
    if not value:
        return 0.0
    counts = Counter(value)
    total = len(value)
    return -sum(c / total * math.log2(c / total) for c in counts.values())


def secret_weakness(value: str | None) -> str | None:
    """Why a signing secret is weak, or None."""
    if value is None:
        return "is not set"
    if is_placeholder(value):
        return "is a placeholder copied from an example"
    size = len(value.encode())
    if size < MIN_SECRET_BYTES:
        return f"is {size} bytes long, shorter than {MIN_SECRET_BYTES}"
    per_char = shannon_bits_per_char(value)
    if per_char < MIN_BITS_PER_CHAR or per_char * len(value) < MIN_SECRET_BITS:
        return (
            f"has too little entropy ({per_char:.1f} bits/char, {per_char * len(value):.0f} bits;"
            f" want >= {MIN_BITS_PER_CHAR} and >= {MIN_SECRET_BITS})"
        )
    return None


def _problem(env: EnvFile, name: str, message: str, **kw: str | None) -> Problem:
    return Problem(message=message, file=env.path, line=env.line_of(name), **kw)


# --- required variables and formats -----------------------------------------------------------

@static_check("ENV-REQUIRED-VARS", needs=("env_file",), ok="every required variable is set")
def required_variables(context: CheckContext) -> Iterator[Problem]:
    env = _env(context)
    for name in REQUIRED:
        if env.get(name) is None:
            yield Problem(
                message=f"{name} is not set", file=env.path, line=env.line_of(name),
                expected=f"{name}=<value>",
                actual="absent" if name not in env.variables else "empty",
            )
    if env.get("DATABASE_URL") is None and not all(
        env.get(n) for n in ("DB_HOST", "DB_NAME", "DB_USER", "DB_PASSWORD")
    ):
        missing = [n for n in ("DB_HOST", "DB_NAME", "DB_USER", "DB_PASSWORD") if not env.get(n)]
        yield Problem(
            message="no database: neither DATABASE_URL nor all of DB_HOST, DB_NAME, DB_USER, "
            "DB_PASSWORD", file=env.path, line=None,
            expected="DATABASE_URL or DB_HOST+DB_NAME+DB_USER+DB_PASSWORD",
            actual="missing " + ", ".join(missing),
        )
    if env.get("REDIS_URL") is None and env.get("REDIS_HOST") is None:
        yield Problem(
            message="no Redis: neither REDIS_URL nor REDIS_HOST", file=env.path,
            expected="REDIS_URL or REDIS_HOST (+REDIS_PASSWORD)", actual="absent",
        )


@static_check("ENV-APP-ENVIRONMENT", needs=("env_file",), ok="APP_ENVIRONMENT=production")
def app_environment(context: CheckContext) -> Iterator[Problem]:
    env = _env(context)
    value = env.get("APP_ENVIRONMENT")
    if (value or "").lower() != "production":
        yield _problem(
            env, "APP_ENVIRONMENT", "APP_ENVIRONMENT is not production: the server's production "
            "guards are off", expected="production", actual=value or "unset",
        )


BOOLEAN_WORDS = ("true", "false")


def _format_problem(name: str, value: str) -> tuple[str, str] | None:
    """(expected, why) when the value does not have its variable's format."""
    variable = BY_NAME.get(name)
    kind = variable.format if variable is not None else Format.TEXT
    choices = variable.choices if variable is not None else ()
    if kind is Format.PORT:
        if not value.isdigit() or not 1 <= int(value) <= 65535:
            return "an integer port 1-65535", "not a port"
    elif kind is Format.POSITIVE_INT:
        if not value.isdigit() or int(value) < 1:
            return "a positive integer", "not a positive integer"
    elif kind is Format.SECONDS:
        try:
            seconds = float(value)
        except ValueError:
            return "a number of seconds", "not a number of seconds"
        if not 0 < seconds <= 300:
            return "0 < seconds <= 300", "out of range"
    elif kind is Format.BOOLEAN:
        if value.lower() not in BOOLEAN_WORDS:
            return "true or false", "not a boolean"
    elif kind is Format.URL:
        parts = urlsplit(value)
        if parts.scheme not in choices or not parts.netloc:
            return f"an absolute {'/'.join(choices)} URL", "not a valid URL"
        try:
            _ = parts.port
        except ValueError:
            return "a URL with a numeric port", "URL port is not a number"
    elif kind is Format.CHOICE:
        if value.lower() not in choices:
            return " | ".join(choices), "not an allowed value"
    elif kind is Format.URL_PATH:
        if not re.fullmatch(r"/[A-Za-z0-9_\-/]*", value):
            return "a path starting with /", "not a path"
    elif kind is Format.EMAIL:
        if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", value):
            return "an e-mail address", "not an e-mail address"
    elif kind is Format.ABSOLUTE_PATH:
        if not value.startswith("/"):
            return "an absolute path", "not an absolute path"
    elif kind is Format.ORIGINS:
        for origin in (o.strip() for o in value.split(",")):
            parts = urlsplit(origin)
            if origin != "*" and (
                parts.scheme not in ("http", "https") or not parts.netloc
                or parts.path not in ("", "/")
            ):
                return "comma-separated origins scheme://host[:port]", f"{origin!r} is no origin"
    return None


@static_check("ENV-VALUE-FORMATS", needs=("env_file",), ok="every value has its variable's format")
def value_formats(context: CheckContext) -> Iterator[Problem]:
    env = _env(context)
    for earlier in env.duplicates:
        yield Problem(
            message=f"{earlier.name} is set twice; line {env.line_of(earlier.name)} wins",
            file=env.path, line=earlier.line, expected="one definition per variable",
            actual=f"also on line {env.line_of(earlier.name)}",
        )
    for name, var in env.variables.items():
        if var.value == "":
            continue  # empty means unset; ENV-REQUIRED-VARS speaks for the required ones
        found = _format_problem(name, var.value)
        if found is not None:
            expected, why = found
            yield Problem(
                message=f"{name} is {why}", file=env.path, line=var.line, expected=expected,
                actual=var.value if "SECRET" not in name and "PASSWORD" not in name else "<hidden>",
            )


# --- secrets --------------------------------------------------------------------------------


def _jwt_problems(env: EnvFile, name: str) -> Iterator[Problem]:
    weakness = secret_weakness(env.get(name))
    if weakness is not None:
        yield _problem(
            env, name, f"{name} {weakness}",
            expected=f">= {MIN_SECRET_BYTES} random bytes, e.g. `openssl rand -base64 48`",
            actual=weakness,
        )


@static_check("ENV-JWT-SECRET-STRENGTH", needs=("env_file",), ok="JWT_SECRET is strong")
def jwt_secret_strength(context: CheckContext) -> Iterator[Problem]:
    yield from _jwt_problems(_env(context), "JWT_SECRET")


@static_check(
    "ENV-JWT-REFRESH-SECRET-STRENGTH", needs=("env_file",),
    ok="JWT_REFRESH_SECRET is strong and distinct from JWT_SECRET",
)
def jwt_refresh_secret_strength(context: CheckContext) -> Iterator[Problem]:
    env = _env(context)
    yield from _jwt_problems(env, "JWT_REFRESH_SECRET")
    refresh = env.get("JWT_REFRESH_SECRET")
    if refresh is not None and refresh == env.get("JWT_SECRET"):
        yield _problem(
            env, "JWT_REFRESH_SECRET", "JWT_REFRESH_SECRET equals JWT_SECRET",
            expected="two different keys", actual="the same key",
        )


PASSWORDS = tuple(v.name for v in VARIABLES if v.secret is Secret.PASSWORD)
KEYS = tuple(v.name for v in VARIABLES if v.secret is Secret.KEY)


@static_check(
    "ENV-SECRETS-NOT-PLACEHOLDER", needs=("env_file",), ok="no password or key is a placeholder"
)
def secrets_not_placeholders(context: CheckContext) -> Iterator[Problem]:
    env = _env(context)
    for name in PASSWORDS + KEYS:
        value = env.get(name)
        if value is None:
            continue
        if is_placeholder(value):
            yield _problem(
                env, name, f"{name} is a placeholder copied from an example",
                expected="a generated password or the real key", actual="placeholder",
            )
        elif name in PASSWORDS and len(value) < MIN_PASSWORD_CHARS:
            yield _problem(
                env, name, f"{name} is shorter than {MIN_PASSWORD_CHARS} characters",
                expected=f">= {MIN_PASSWORD_CHARS} random characters",
                actual=f"{len(value)} characters",
            )
    for name in ("DATABASE_URL", "REDIS_URL"):
        value = env.get(name)
        if value is None:
            continue
        password = urlsplit(value).password
        if password is not None and is_placeholder(unquote(password)):
            yield _problem(
                env, name, f"the password inside {name} is a placeholder",
                expected="the generated password (percent-encoded)", actual="placeholder",
            )


def _url_mismatches(
    env: EnvFile, url_name: str, parts: dict[str, tuple[str, str | None]]
) -> Iterator[Problem]:
    """Compare each component of the URL (name -> (variable, value in URL)) with its variable."""
    for component, (variable, in_url) in parts.items():
        value = env.get(variable)
        if value is None:
            continue
        if in_url != value:
            shown = "<hidden>" if "PASSWORD" in variable else in_url
            yield _problem(
                env, url_name, f"{url_name}'s {component} differs from {variable}",
                expected=f"{variable} ({'<hidden>' if 'PASSWORD' in variable else value})",
                actual=f"{shown}",
            )


@static_check(
    "ENV-DATABASE-URL-CONSISTENT", needs=("env_file",), ok="DATABASE_URL agrees with DB_*"
)
def database_url_consistent(context: CheckContext) -> Iterator[Problem]:
    env = _env(context)
    url = env.get("DATABASE_URL")
    if url is None:
        return
    parts = urlsplit(url)
    try:
        port = str(parts.port or 5432)
    except ValueError:
        port = "?"
    yield from _url_mismatches(env, "DATABASE_URL", {
        "host": ("DB_HOST", parts.hostname),
        "port": ("DB_PORT", port),
        "database": ("DB_NAME", unquote(parts.path.lstrip("/")) or None),
        "user": ("DB_USER", unquote(parts.username) if parts.username else None),
        "password": ("DB_PASSWORD", unquote(parts.password) if parts.password else None),
    })


@static_check("ENV-REDIS-URL-CONSISTENT", needs=("env_file",), ok="REDIS_URL agrees with REDIS_*")
def redis_url_consistent(context: CheckContext) -> Iterator[Problem]:
    env = _env(context)
    url = env.get("REDIS_URL")
    if url is None:
        return
    parts = urlsplit(url)
    try:
        port = str(parts.port or 6379)
    except ValueError:
        port = "?"
    yield from _url_mismatches(env, "REDIS_URL", {
        "host": ("REDIS_HOST", parts.hostname),
        "port": ("REDIS_PORT", port),
        "password": ("REDIS_PASSWORD", unquote(parts.password) if parts.password else None),
    })


# --- URLs, CORS, logging, metrics, headers ----------------------------------------------------


#: The guide's own placeholder domains (3.1, 5.2): nobody's real domain.
PLACEHOLDER_DOMAIN = re.compile(r"(^|\.)(your-?domain\.com|your-production-server)$", re.I)


def _placeholder_host(url: str) -> str | None:
    host = urlsplit(url).hostname or ""
    return host if PLACEHOLDER_DOMAIN.search(host) else None


@static_check(
    "ENV-BASE-URL-HTTPS", needs=("env_file",), ok="BASE_URL is https, on a real domain"
)
def base_url_https(context: CheckContext) -> Iterator[Problem]:
    env = _env(context)
    value = env.get("BASE_URL")
    if value is None:
        return  # ENV-REQUIRED-VARS reports it
    if urlsplit(value).scheme != "https":
        yield _problem(env, "BASE_URL", "BASE_URL is not https", expected="https://...",
                       actual=value)
    host = _placeholder_host(value)
    if host is not None:
        yield _problem(env, "BASE_URL", f"BASE_URL is on the guide's placeholder domain {host}: "
                       "links, redirects and the certificate name point at someone else's site",
                       expected="https://<your API's domain>", actual=value)


@static_check("ENV-CORS-ORIGINS", needs=("env_file",), ok="CORS origins are named https origins")
def cors_origins(context: CheckContext) -> Iterator[Problem]:
    env = _env(context)
    value = env.get("CORS_ALLOWED_ORIGINS")
    if value is None:
        return
    for origin in (o.strip() for o in value.split(",") if o.strip()):
        if "*" in origin:
            yield _problem(env, "CORS_ALLOWED_ORIGINS", "CORS allows every origin (wildcard)",
                           expected="named https origins", actual=origin)
        elif urlsplit(origin).scheme != "https":
            yield _problem(env, "CORS_ALLOWED_ORIGINS", f"CORS origin {origin} is not https",
                           expected="https://...", actual=origin)
        elif _placeholder_host(origin) is not None:
            yield _problem(env, "CORS_ALLOWED_ORIGINS", f"CORS origin {origin} is the guide's "
                           "placeholder domain: browsers on whoever owns it may call the API "
                           "with users' credentials", expected="your front ends' origins",
                           actual=origin)


#: Bounds of token lifetimes: short access tokens (revocation waits for them to expire), refresh
#: tokens longer than access tokens and at most 30 days.
ACCESS_MINUTES_MAX = 60
REFRESH_MINUTES_MAX = 30 * 24 * 60


@static_check(
    "ENV-TOKEN-LIFETIMES", needs=("env_file",),
    ok="access and refresh token lifetimes are within bounds, refresh longer than access",
)
def token_lifetimes(context: CheckContext) -> Iterator[Problem]:
    env = _env(context)
    access, refresh = env.get("JWT_EXPIRY_TIME_MINUTES"), env.get("JWT_REFRESH_EXPIRY_TIME_MINUTES")
    if access is None and refresh is None:
        raise NotApplicable("neither JWT_EXPIRY_TIME_MINUTES nor "
                            "JWT_REFRESH_EXPIRY_TIME_MINUTES is set: the server's defaults apply")
    if access is not None and access.isdigit() and not 1 <= int(access) <= ACCESS_MINUTES_MAX:
        yield _problem(env, "JWT_EXPIRY_TIME_MINUTES", f"access tokens live {access} minutes: a "
                       "stolen or revoked token stays valid that long",
                       expected=f"1-{ACCESS_MINUTES_MAX}", actual=access)
    if refresh is not None and refresh.isdigit() and not 1 <= int(refresh) <= REFRESH_MINUTES_MAX:
        yield _problem(env, "JWT_REFRESH_EXPIRY_TIME_MINUTES", f"refresh tokens live {refresh} "
                       "minutes, more than 30 days", expected=f"<= {REFRESH_MINUTES_MAX}",
                       actual=refresh)
    if (access is not None and refresh is not None and access.isdigit() and refresh.isdigit()
            and int(refresh) <= int(access)):
        yield _problem(env, "JWT_REFRESH_EXPIRY_TIME_MINUTES", "refresh tokens expire no later "
                       f"than access tokens ({refresh} <= {access} minutes): refreshing never "
                       "extends a session", expected=f"> {access}", actual=refresh)


@static_check("ENV-LOG-FORMAT-JSON", needs=("env_file",), ok="LOG_FORMAT=json")
def log_format_json(context: CheckContext) -> Iterator[Problem]:
    env = _env(context)
    value = env.get("LOG_FORMAT")
    if (value or "").lower() != "json":
        yield _problem(env, "LOG_FORMAT", "LOG_FORMAT is not json", expected="json",
                       actual=value or "unset")


@static_check("ENV-METRICS-ENABLED", needs=("env_file",), ok="metrics are enabled")
def metrics_enabled(context: CheckContext) -> Iterator[Problem]:
    env = _env(context)
    value = env.get("METRICS_ENABLED")
    if (value or "").lower() != "true":
        yield _problem(env, "METRICS_ENABLED", "METRICS_ENABLED is not true", expected="true",
                       actual=value or "unset")
    endpoint = env.get("METRICS_ENDPOINT")
    if endpoint is not None and not endpoint.startswith("/"):
        yield _problem(env, "METRICS_ENDPOINT", "METRICS_ENDPOINT is not a path",
                       expected="/metrics", actual=endpoint)


@static_check("ENV-HSTS-ENABLED", needs=("env_file",), ok="SECURITY_HSTS is on (or defaulted on)")
def hsts_enabled(context: CheckContext) -> Iterator[Problem]:
    env = _env(context)
    value = env.get("SECURITY_HSTS")
    if value is not None and value.lower() != "true":
        yield _problem(env, "SECURITY_HSTS", "SECURITY_HSTS is off", expected="true", actual=value)


UNSAFE_CSP = ("'unsafe-inline'", "'unsafe-eval'", "*")


@static_check(
    "ENV-CSP-STRICT", needs=("env_file",), ok="SECURITY_CSP is strict (or the server default)"
)
def csp_strict(context: CheckContext) -> Iterator[Problem]:
    env = _env(context)
    value = env.get("SECURITY_CSP")
    if value is None:
        return  # the server's default policy applies
    tokens = {t.strip(";") for t in value.split()}
    for token in UNSAFE_CSP:
        if token in tokens:
            yield _problem(env, "SECURITY_CSP", f"SECURITY_CSP allows {token}",
                           expected=f"no {token}", actual=value)
    if "default-src" not in value:
        yield _problem(env, "SECURITY_CSP", "SECURITY_CSP has no default-src",
                       expected="default-src 'self' (or 'none')", actual=value)


# --- the guide's loading procedure and the file itself ----------------------------------------


@dataclass(frozen=True, slots=True)
class _Word:
    text: str
    line: int


def xargs_words(lines: list[str]) -> tuple[list[_Word], Problem | None]:
    """What GNU `xargs` (default echo) hands back for these lines, word by word.

    Blanks and newlines separate arguments; single and double quotes group and are removed and
    cannot span lines; a backslash escapes the next character. An unmatched quote stops xargs.
    """
    words: list[_Word] = []
    for number, line in enumerate(lines, start=1):
        if line.startswith("#"):
            continue  # grep -v '^#'
        current: list[str] = []
        started = False
        quote: str | None = None
        index = 0
        while index < len(line):
            char = line[index]
            if quote is not None:
                if char == quote:
                    quote = None
                else:
                    current.append(char)
            elif char in ("'", '"'):
                quote, started = char, True
            elif char == "\\" and index + 1 < len(line):
                index += 1
                current.append(line[index])
                started = True
            elif char in " \t":
                if started:
                    words.append(_Word("".join(current), number))
                current, started = [], False
            else:
                current.append(char)
                started = True
            index += 1
        if quote is not None:
            kind = "single" if quote == "'" else "double"
            return words, Problem(
                message=f"xargs stops here: unmatched {kind} quote (nothing after is exported)",
                line=number, expected="no quotes in values", actual=line.strip(),
            )
        if started:
            words.append(_Word("".join(current), number))
    return words, None


def simulate_export(lines: list[str]) -> tuple[dict[str, tuple[str, int]], list[Problem]]:
    """The variables `export $(grep -v '^#' .env | xargs)` sets, and the words it chokes on.

    echo joins xargs's arguments with spaces; the shell then splits that output again at blanks
    (quoting is gone by then) and exports each word.
    """
    arguments, stop = xargs_words(lines)
    problems = [stop] if stop is not None else []
    exported: dict[str, tuple[str, int]] = {}
    stray: dict[int, list[str]] = {}
    for argument in arguments:
        for word in argument.text.split():
            name, sep, value = word.partition("=")
            if _GLOB.search(word):
                problems.append(Problem(
                    message=f"the word {word[:40]!r} contains glob characters: the shell may "
                    "replace it with file names", line=argument.line,
                    expected="no *, ? or [ in values", actual=word[:80],
                ))
            if sep and _IDENTIFIER.match(name):
                exported[name] = (value, argument.line)
            else:
                stray.setdefault(argument.line, []).append(word)
    for line, words in stray.items():
        if lines[line - 1].lstrip().startswith("export ") and words[:1] == ["export"]:
            # dotenv's `export NAME=value` form: the procedure runs `export export NAME=value`,
            # which marks an empty shell variable named export and sets NAME intact (checked
            # below as for every variable).
            words = words[1:]
            if not words:
                continue
        invalid = [w for w in words if not _IDENTIFIER.match(w)]
        problems.append(Problem(
            message=f"the line splits into {len(words)} extra word(s) that export treats as names"
            + (f"; not valid identifiers: {' '.join(invalid)[:80]}" if invalid else ""),
            line=line, expected="one NAME=value word per line", actual=" ".join(words)[:120],
        ))
    return exported, problems


def _single_quoted(var: EnvVar) -> bool:
    """A value in single quotes, which the dotenv readers of Compose take literally (no `$`
    interpolation); the procedure's xargs removes the quotes and the shell expands nothing."""
    value = var.raw.strip().removeprefix("export ").lstrip().partition("=")[2].strip()
    return value.startswith("'") and value.count("'") >= 2


@static_check(
    "ENV-SURVIVES-EXPORT", needs=("env_file",),
    ok="the file survives `export $(grep -v '^#' .env | xargs)` unchanged",
)
def survives_export(context: CheckContext) -> Iterator[Problem]:
    env = _env(context)
    lines = [line.rstrip("\r") for line in env.lines]
    exported, problems = simulate_export(lines)
    for problem in problems:
        yield Problem(message=problem.message, file=env.path, line=problem.line,
                      expected=problem.expected, actual=problem.actual)
    for name, var in env.variables.items():
        got = exported.get(name)
        secret = any(s in name for s in ("SECRET", "PASSWORD", "KEY")) or name.endswith("_URL")
        if got is None or got[0] != var.value:
            yield Problem(
                message=f"{name} arrives {'unset' if got is None else 'changed'} after the "
                "guide's export procedure",
                file=env.path, line=var.line, expected="<hidden>" if secret else var.value,
                actual="unset" if got is None else ("<hidden>" if secret else got[0]),
            )
        elif "$" in var.value and not _single_quoted(var):
            yield Problem(
                message=f"{name} contains `$`: Compose interpolates it when it reads the .env",
                file=env.path, line=var.line, expected="$$ for a literal dollar",
                actual="<hidden>" if secret else var.value,
            )
    for number, raw in enumerate(env.lines, start=1):
        if raw.endswith("\r"):
            yield Problem(message="Windows line ending: \\r becomes part of the value",
                          file=env.path, line=number, expected="LF", actual="CRLF")
            break


@static_check("ENV-FILE-MODE", needs=("env_file",), ok="the .env is readable by its owner only")
def file_mode(context: CheckContext) -> Iterator[Problem]:
    path = context.env_file
    assert path is not None
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError as exc:
        raise ArtifactError(path, f"cannot stat: {exc.strerror}") from None
    if mode & 0o077:
        yield Problem(message=f"{path.name} is readable by others (mode {mode:o})", file=path,
                      expected="600", actual=f"{mode:o}")
