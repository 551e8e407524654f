"""Settings of the reference server: exactly the variables of the deployment guide, section 3.1.

Each setting is declared once, here, with its environment variable and its help text. Values come
from the process environment and, when given, from an env file (the environment wins).
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from reference_server.exceptions import ConfigurationError

#: Values that mark a secret as copied from an example rather than generated.
PLACEHOLDER_PATTERNS = (
    re.compile(r"^your[_-]", re.IGNORECASE),
    re.compile(r"changeme", re.IGNORECASE),
    re.compile(r"^password\d*$", re.IGNORECASE),
    re.compile(r"^secret\d*$", re.IGNORECASE),
)
MIN_SECRET_BYTES = 32
#: zxcvbn's estimate of the guesses a secret takes, as a power of ten: 10^30 is about 100 bits.
#: Length says little ('a' * 32, 'secret' * 6 and 'Password1!' * 4 are long and guessable);
#: 48 random bytes (what with_generated_secrets makes) come out near 10^64.
MIN_SECRET_GUESSES_LOG10 = 30
#: Where Prometheus and the operator's own tools scrape from (loopback, RFC 1918, ULA).
PRIVATE_NETWORKS = (
    "127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"
)


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    STAGING = "staging"
    PRODUCTION = "production"


class LogFormat(StrEnum):
    JSON = "json"
    TEXT = "text"


class LogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


class RateLimitFailureMode(StrEnum):
    OPEN = "open"  # Redis down: let requests through (the reference default)
    CLOSED = "closed"  # Redis down: refuse with 503


def guesses_log10(secret: str) -> float:
    """zxcvbn's estimate (log10 of the guesses) for a secret; it judges the first 100 chars."""
    from zxcvbn import zxcvbn  # imported here: only production start-up needs it

    return float(zxcvbn(secret[:100])["guesses_log10"])


def is_placeholder(value: str) -> bool:
    return any(p.search(value) for p in PLACEHOLDER_PATTERNS)


class Settings(BaseSettings):
    """Every environment variable the reference server reads."""

    model_config = SettingsConfigDict(
        case_sensitive=True,
        extra="ignore",
        populate_by_name=True,
        env_ignore_empty=True,
    )

    # Database (guide 3.1): DATABASE_URL, or the DB_* parts it is built from.
    DATABASE_URL: str | None = Field(None, description="PostgreSQL URL (postgresql://...)")
    DB_HOST: str | None = Field(None, description="PostgreSQL host, when DATABASE_URL is absent")
    DB_PORT: int = Field(5432, ge=1, le=65535, description="PostgreSQL port")
    DB_NAME: str | None = Field(None, description="PostgreSQL database name")
    DB_USER: str | None = Field(None, description="PostgreSQL user")
    DB_PASSWORD: str | None = Field(None, description="PostgreSQL password")

    # Redis (guide 3.1): REDIS_URL, or the REDIS_* parts.
    REDIS_URL: str | None = Field(None, description="Redis URL (redis://...)")
    REDIS_HOST: str | None = Field(None, description="Redis host, when REDIS_URL is absent")
    REDIS_PORT: int = Field(6379, ge=1, le=65535, description="Redis port")
    REDIS_PASSWORD: str | None = Field(None, description="Redis password")

    # Application
    APP_ENVIRONMENT: Environment = Field(Environment.DEVELOPMENT, description="Deployment stage")
    APPLICATION_HOST: str = Field("127.0.0.1", description="Address to listen on")
    APPLICATION_PORT: int = Field(8000, ge=0, le=65535, description="Port to listen on (0: any)")
    BASE_URL: str = Field("http://127.0.0.1:8000", description="Public URL of the API")
    CORS_ALLOWED_ORIGINS: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated origins allowed by CORS"
    )

    # Security
    JWT_SECRET: str | None = Field(None, description="HS256 key of access tokens")
    JWT_EXPIRY_TIME_MINUTES: int = Field(60, ge=1, description="Access token lifetime")
    JWT_REFRESH_SECRET: str | None = Field(None, description="HS256 key of refresh tokens")
    JWT_REFRESH_EXPIRY_TIME_MINUTES: int = Field(10080, ge=1, description="Refresh token lifetime")
    SECURITY_HSTS: bool = Field(True, description="Send Strict-Transport-Security")
    SECURITY_CSP: str = Field(
        "default-src 'self'; frame-ancestors 'none'", description="Content-Security-Policy value"
    )

    # Logging
    LOG_LEVEL: LogLevel = Field(LogLevel.INFO, description="Minimum level logged")
    LOG_FORMAT: LogFormat = Field(LogFormat.JSON, description="json or text")
    LOG_FILE_PATH: Path | None = Field(None, description="Also append logs to this file")

    # Metrics
    METRICS_ENABLED: bool = Field(True, description="Serve Prometheus metrics")
    METRICS_ENDPOINT: str = Field("/metrics", pattern=r"^/[A-Za-z0-9_\-/]*$")
    # The metrics name every tenant's queues and job types: not for the public (reference).
    METRICS_ALLOWED_NETWORKS: Annotated[list[str] | None, NoDecode] = Field(
        None,
        description="Client networks (comma-separated) served the metrics without METRICS_TOKEN; "
        "default in production: loopback and private networks, elsewhere: everyone",
    )
    METRICS_TOKEN: str | None = Field(
        None, description="Bearer token that is served the metrics from any address"
    )
    PROMETHEUS_PUSH_GATEWAY: str | None = Field(None, description="Accepted, unused")

    # Monitoring
    SENTRY_DSN: str | None = Field(None, description="Sentry DSN (validated, unused)")
    HEALTH_CHECK_TIMEOUT_SECONDS: float = Field(30, gt=0, le=300, description="Bound per probe")

    # Email (optional in the guide): validated when present.
    SMTP_HOST: str | None = None
    SMTP_PORT: int | None = Field(None, ge=1, le=65535)
    SMTP_USERNAME: str | None = None
    SMTP_PASSWORD: str | None = None
    EMAIL_FROM: str | None = Field(None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

    # Payments (optional in the guide): validated when present.
    STRIPE_SECRET_KEY: str | None = Field(None, pattern=r"^sk_(live|test)_[A-Za-z0-9_]+$")
    STRIPE_WEBHOOK_SECRET: str | None = Field(None, pattern=r"^whsec_[A-Za-z0-9_]+$")

    # Production sizing (guide 3.2)
    WORKERS: int = Field(1, ge=1, le=64, description="Server processes")
    MAX_CONNECTIONS: int = Field(
        100, ge=1, description="Requests in progress per process (reference_server/slots.py)"
    )
    POOL_SIZE: int = Field(20, ge=1, le=500, description="asyncpg pool size per process")

    # Reference-server settings beyond the guide.
    TLS_CERT_FILE: Path | None = Field(None, description="Serve HTTPS with this certificate")
    TLS_KEY_FILE: Path | None = Field(None, description="Private key of TLS_CERT_FILE")
    RATE_LIMIT_ENABLED: bool = Field(True, description="Per-credential and per-IP rate limits")
    RATE_LIMIT_PER_MINUTE: int = Field(600, ge=1, description="Requests per minute per key")
    RATE_LIMIT_FAILURE_MODE: RateLimitFailureMode = Field(RateLimitFailureMode.OPEN)
    LOGIN_THROTTLE_FAILURE_MODE: RateLimitFailureMode | None = Field(
        None,
        description="Redis down: let logins through unthrottled (open) or refuse them (closed); "
        "default closed in production, open elsewhere",
    )
    TRUSTED_PROXIES: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Proxy addresses/networks (comma-separated) whose X-Forwarded-For is believed",
    )
    MAX_BODY_BYTES: int = Field(1024 * 1024, ge=1024, description="Request body limit")
    BUILTIN_WORKERS: int = Field(4, ge=0, le=256, description="Built-in job runners per process")
    SHUTDOWN_GRACE_SECONDS: float = Field(30, ge=0, description="SIGTERM: time to finish jobs")
    HEADER_READ_TIMEOUT_SECONDS: float = Field(
        10, ge=0.5, le=300, description="A connection sends a whole request header within this"
    )
    LONG_POLLS_PER_CREDENTIAL: int = Field(
        16, ge=0, le=10_000, description="Leases of one credential that may wait at once"
    )

    @field_validator("CORS_ALLOWED_ORIGINS", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [o.strip() for o in value.split(",") if o.strip()]
        return value

    @field_validator("METRICS_ALLOWED_NETWORKS", mode="before")
    @classmethod
    def _split_networks(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [p.strip() for p in value.split(",") if p.strip()]
        if isinstance(value, list):
            for item in value:
                ipaddress.ip_network(str(item), strict=False)
        return value

    @field_validator("TRUSTED_PROXIES", mode="before")
    @classmethod
    def _split_proxies(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [p.strip() for p in value.split(",") if p.strip()]
        if isinstance(value, list):
            for item in value:
                ipaddress.ip_network(str(item), strict=False)  # ValueError names the bad one
        return value

    @field_validator("LOG_LEVEL", "LOG_FORMAT", "APP_ENVIRONMENT", mode="before")
    @classmethod
    def _lowercase(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("DATABASE_URL")
    @classmethod
    def _database_scheme(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("postgres", "postgresql"):
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("REDIS_URL")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("redis", "rediss", "unix"):
            raise ValueError("must be a redis:// or rediss:// URL")
        return value

    @field_validator("BASE_URL", "SENTRY_DSN", "PROMETHEUS_PUSH_GATEWAY")
    @classmethod
    def _absolute_url(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError("must be an absolute http(s) URL")
        return value

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.TLS_CERT_FILE is None) != (self.TLS_KEY_FILE is None):
            raise ValueError("TLS_CERT_FILE and TLS_KEY_FILE go together")
        return self

    @property
    def database_url(self) -> str | None:
        """DATABASE_URL, or one built from the DB_* parts."""
        if self.DATABASE_URL:
            return self.DATABASE_URL
        if self.DB_HOST and self.DB_NAME and self.DB_USER:
            auth = quote(self.DB_USER, safe="")
            if self.DB_PASSWORD:
                auth += ":" + quote(self.DB_PASSWORD, safe="")
            return f"postgresql://{auth}@{self.DB_HOST}:{self.DB_PORT}/{self.DB_NAME}"
        return None

    @property
    def redis_url(self) -> str | None:
        """REDIS_URL, or one built from the REDIS_* parts."""
        if self.REDIS_URL:
            return self.REDIS_URL
        if self.REDIS_HOST:
            auth = f":{quote(self.REDIS_PASSWORD, safe='')}@" if self.REDIS_PASSWORD else ""
            return f"redis://{auth}{self.REDIS_HOST}:{self.REDIS_PORT}/0"
        return None

    @property
    def is_production(self) -> bool:
        return self.APP_ENVIRONMENT is Environment.PRODUCTION

    @property
    def metrics_networks(self) -> list[str] | None:
        """Who may scrape without METRICS_TOKEN; None: everyone."""
        if self.METRICS_ALLOWED_NETWORKS is not None:
            return self.METRICS_ALLOWED_NETWORKS
        return list(PRIVATE_NETWORKS) if self.is_production else None

    @property
    def login_throttle_failure_mode(self) -> RateLimitFailureMode:
        """Without Redis there is no lockout: production refuses logins then, unless told."""
        if self.LOGIN_THROTTLE_FAILURE_MODE is not None:
            return self.LOGIN_THROTTLE_FAILURE_MODE
        return RateLimitFailureMode.CLOSED if self.is_production else RateLimitFailureMode.OPEN

    def production_problems(self) -> list[ConfigurationError]:
        """What production refuses to start with, one error per variable."""
        problems: list[ConfigurationError] = []
        for name in ("JWT_SECRET", "JWT_REFRESH_SECRET", "METRICS_TOKEN"):
            value: str | None = getattr(self, name)
            if not value and name == "METRICS_TOKEN":
                continue  # optional
            if not value:
                problems.append(ConfigurationError(name, "is required in production"))
            elif is_placeholder(value):
                problems.append(ConfigurationError(name, "is a placeholder; generate a secret"))
            elif len(value.encode()) < MIN_SECRET_BYTES:
                problems.append(
                    ConfigurationError(name, f"is shorter than {MIN_SECRET_BYTES} bytes")
                )
            elif guesses_log10(value) < MIN_SECRET_GUESSES_LOG10:
                problems.append(
                    ConfigurationError(name, "is guessable (repeats, words or sequences); "
                                       "generate one, e.g. 48 random bytes")
                )
        if self.JWT_SECRET and self.JWT_SECRET == self.JWT_REFRESH_SECRET:
            problems.append(
                ConfigurationError("JWT_REFRESH_SECRET", "must differ from JWT_SECRET")
            )
        if "*" in self.CORS_ALLOWED_ORIGINS:
            problems.append(
                ConfigurationError("CORS_ALLOWED_ORIGINS", "must not allow every origin (*)")
            )
        elif any(urlsplit(o).scheme != "https" for o in self.CORS_ALLOWED_ORIGINS):
            # `null` is what sandboxed frames and file: pages send; http:// can be spoofed on path.
            problems.append(
                ConfigurationError("CORS_ALLOWED_ORIGINS", "must list https:// origins only")
            )
        if not self.RATE_LIMIT_ENABLED:
            problems.append(
                ConfigurationError("RATE_LIMIT_ENABLED", "must stay true in production")
            )
        if urlsplit(self.BASE_URL).scheme != "https":
            problems.append(ConfigurationError("BASE_URL", "must be an https:// URL"))
        if self.database_url is None:
            problems.append(ConfigurationError("DATABASE_URL", "is required in production"))
        return problems

    def with_generated_secrets(self) -> Settings:
        """Outside production, fill absent JWT secrets with random ones for this run."""
        updates = {
            name: secrets.token_urlsafe(48)
            for name in ("JWT_SECRET", "JWT_REFRESH_SECRET")
            if not getattr(self, name)
        }
        return self.model_copy(update=updates) if updates else self


def load_settings(env_file: Path | None = None, **overrides: Any) -> Settings:
    """Read the settings; raise ConfigurationError naming the first bad variable.

    In production, weak settings are refused here, so that no process starts with them.
    """
    try:
        settings = Settings(_env_file=env_file, **overrides)  # type: ignore[call-arg]
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(p) for p in first["loc"]) or "settings"
        raise ConfigurationError(name, first["msg"].removeprefix("Value error, ")) from None
    if settings.is_production:
        problems = settings.production_problems()
        if problems:
            raise problems[0]
    return settings
