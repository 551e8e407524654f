"""Structured JSON logs (structlog) with secret redaction, and the Prometheus exposition.

Logs go to stdout and, when LOG_FILE_PATH is set and writable, are appended to that file too.
A redaction processor runs last before rendering, so no processor or caller can leak a secret.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from collections.abc import Iterable, Mapping, MutableMapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
import structlog
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)

if TYPE_CHECKING:
    from reference_server.config import Settings

REDACTED = "[REDACTED]"

#: Keys whose values are secrets whatever they hold.
SECRET_KEY_PATTERN = re.compile(
    r"pass(word)?|secret|token|api[_-]?key|authorization|cookie|database_url|dsn|credential",
    re.IGNORECASE,
)
#: Secrets recognisable by their shape, wherever they appear in a value.
SECRET_VALUE_PATTERNS = (
    re.compile(r"\btf_[A-Za-z0-9]{32}\b"),  # API keys
    re.compile(r"\beyJ[\w-]*\.[\w-]*\.[\w-]*"),  # JWTs
    re.compile(r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9_]+"),  # Stripe keys
    re.compile(r"\bwhsec_[A-Za-z0-9_]+"),
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+"),
)
#: user:password@ in URLs (postgresql://, redis://): the password part goes.
URL_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@\s]*)@")
#: A literal every pattern above needs (a superset, case-insensitive): text without any of them
#: cannot match, so the patterns run only on text that has one. Most log values are ids and paths.
MAY_HOLD_SECRET = re.compile(r"tf_|eyj|[sr]k_|whsec_|bearer|://", re.IGNORECASE)
#: Distinct short values whose scrubbed form is remembered (a bounded memory: 2048 x 256 chars).
SCRUB_CACHE_SIZE = 2048
SCRUB_CACHE_MAX_LENGTH = 256
#: Values with nothing to scrub (a status, a duration): skip the isinstance walk of scrub().
_PLAIN_SCALARS = frozenset({int, float, bool, type(None)})


def _is_secret_key(key: str) -> bool:
    # Log lines reuse a few dozen keys: the pattern runs once per key, not once per line.
    known = _SECRET_KEYS.get(key)
    if known is None:
        known = SECRET_KEY_PATTERN.search(key) is not None
        if len(_SECRET_KEYS) < SCRUB_CACHE_SIZE:
            _SECRET_KEYS[key] = known
    return known


_SECRET_KEYS: dict[str, bool] = {}


class Redactor:
    """A structlog processor replacing secrets in the event dict, recursively."""

    def __init__(self, known_secrets: Iterable[str] = ()) -> None:
        # Whole configured secrets (JWT keys, DB password) are masked even inside free text.
        self.known = sorted({s for s in known_secrets if s and len(s) >= 4}, key=len, reverse=True)
        # Log lines repeat most of their values (method, path, ids of the caller, logger name):
        # each distinct short value is scrubbed once and remembered in a plain dict, emptied when
        # full (15 us a line before; a dict look-up per value now).
        self._scrubbed: dict[str, str] = {}

    def scrub_text(self, text: str) -> str:
        found = self._scrubbed.get(text)
        if found is not None:
            return found
        clean = self._scrub_text(text)
        if len(text) <= SCRUB_CACHE_MAX_LENGTH:
            if len(self._scrubbed) >= SCRUB_CACHE_SIZE:
                self._scrubbed.clear()
            self._scrubbed[text] = clean
        return clean

    def _scrub_text(self, text: str) -> str:
        for secret in self.known:
            if secret in text:
                text = text.replace(secret, REDACTED)
        if MAY_HOLD_SECRET.search(text) is None:
            return text
        for pattern in SECRET_VALUE_PATTERNS:
            text = pattern.sub(REDACTED, text)
        return URL_USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", text)

    def scrub(self, value: Any, depth: int = 0) -> Any:
        if depth > 8:
            return REDACTED
        if isinstance(value, str):
            return self.scrub_text(value)
        if isinstance(value, Mapping):
            return {
                k: REDACTED
                if isinstance(k, str) and _is_secret_key(k)
                else self.scrub(v, depth + 1)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple | set):
            return [self.scrub(v, depth + 1) for v in value]
        if isinstance(value, BaseException):
            return self.scrub_text(repr(value))
        return value

    def __call__(
        self, logger: Any, method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        scrubbed, scrub_text, scrub = self._scrubbed, self.scrub_text, self.scrub
        secret_keys = _SECRET_KEYS
        out = {}
        for key, value in event_dict.items():
            secret = secret_keys.get(key)
            if secret is None:
                secret = _is_secret_key(key)
            if secret and key != "event":
                out[key] = REDACTED
            elif type(value) is str:
                out[key] = scrubbed.get(value) or scrub_text(value)
            elif type(value) in _PLAIN_SCALARS:
                out[key] = value
            else:
                out[key] = scrub(value)
        return out


class TeeLogger:
    """Writes each rendered line to stdout and, when open, to the log file (O_APPEND)."""

    def __init__(self, file_fd: int | None, name: str) -> None:
        self.file_fd = file_fd
        self.name = name

    def msg(self, message: str) -> None:
        line = (message + "\n").encode()
        try:
            sys.stdout.buffer.write(line)
            sys.stdout.flush()
        except (OSError, ValueError):
            pass  # a closed stdout must not take a request down
        if self.file_fd is not None:
            # One write per line on an O_APPEND descriptor: lines of processes do not interleave.
            with contextlib.suppress(OSError):
                os.write(self.file_fd, line)

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


class _TeeFactory:
    def __init__(self, file_fd: int | None) -> None:
        self.file_fd = file_fd

    def __call__(self, *args: Any) -> TeeLogger:
        return TeeLogger(self.file_fd, str(args[0]) if args else "reference_server")


#: structlog's add_log_level names these two methods by their level.
_LEVEL_OF_METHOD = {"warn": "warning", "exception": "error"}


def _annotate(
    logger: Any, method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Level and logger name in one step (a processor each cost a call each)."""
    event_dict["level"] = _LEVEL_OF_METHOD.get(method, method)
    event_dict.setdefault("logger", getattr(logger, "name", "reference_server"))
    return event_dict


class StructlogHandler(logging.Handler):
    """Routes records of libraries using stdlib logging through the same redacting pipeline."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            log = structlog.get_logger(record.name)
            fields: dict[str, Any] = {}
            if record.exc_info and record.exc_info[1] is not None:
                fields["error"] = type(record.exc_info[1]).__name__
            log.log(record.levelno, record.getMessage(), **fields)
        except Exception:
            self.handleError(record)


def _stamp(
    logger: Any, method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """The UTC timestamp, and the event as `message`. After the redactor: a time of our own
    making holds no secret, and every line's is new, so scrubbing it was pure cost."""
    event_dict["timestamp"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    event_dict["message"] = event_dict.pop("event", "")
    return event_dict


def _json_renderer(logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> str:
    return orjson.dumps(event_dict, default=str).decode()


_open_fd: int | None = None


def known_secrets(settings: Settings) -> list[str]:
    """The configured values that must never appear in a log line."""
    values = [
        settings.JWT_SECRET,
        settings.JWT_REFRESH_SECRET,
        settings.DB_PASSWORD,
        settings.REDIS_PASSWORD,
        settings.SMTP_PASSWORD,
        settings.STRIPE_SECRET_KEY,
        settings.STRIPE_WEBHOOK_SECRET,
        settings.database_url,
        settings.redis_url,
    ]
    return [v for v in values if v]


def configure_logging(settings: Settings) -> None:
    """Configure structlog and stdlib logging for this process; safe to call again."""
    global _open_fd
    if _open_fd is not None:
        os.close(_open_fd)
        _open_fd = None
    problem = None
    if settings.LOG_FILE_PATH is not None:
        try:
            settings.LOG_FILE_PATH.parent.mkdir(parents=True, exist_ok=True)
            _open_fd = os.open(
                settings.LOG_FILE_PATH, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640
            )
        except OSError as exc:
            problem = exc.strerror or type(exc).__name__
    level = logging.getLevelNamesMapping()[settings.LOG_LEVEL.value.upper()]
    renderer: Any = (
        _json_renderer
        if settings.LOG_FORMAT.value == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _annotate,
            structlog.processors.format_exc_info,
            Redactor(known_secrets(settings)),
            _stamp,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=_TeeFactory(_open_fd),
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if not isinstance(h, StructlogHandler)]
    root.addHandler(StructlogHandler())
    root.setLevel(max(level, logging.INFO))
    if problem is not None:
        # Keep serving: the file is a convenience, stdout is the contract.
        structlog.get_logger("reference_server").warning(
            "log file unwritable; logging to stdout only",
            path=str(settings.LOG_FILE_PATH),
            reason=problem,
        )


def get_logger(name: str = "reference_server") -> Any:
    # Lazy: the proxy binds at first use, after configure_logging has run.
    return structlog.get_logger(name)


def metrics_exposition() -> tuple[bytes, str]:
    """The Prometheus text of this process, or of all processes in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
