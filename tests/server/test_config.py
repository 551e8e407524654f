"""Settings: every variable of guide 3.1, env files, parts-built URLs, production refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from reference_server.config import Settings, load_settings
from reference_server.exceptions import ConfigurationError

STRONG_ACCESS = "x" * 16 + "Q7pL2vN9sK4rT8wZ1mB3cF5hJ6dG0yA"
STRONG_REFRESH = "y" * 16 + "R8qM3wO0tL5sU9xA2nC4dG6iK7eH1zB"
GUIDE_VARIABLES = (
    "DATABASE_URL", "DB_HOST", "DB_PORT", "DB_NAME", "DB_USER", "DB_PASSWORD", "REDIS_URL",
    "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD", "APP_ENVIRONMENT", "APPLICATION_HOST",
    "APPLICATION_PORT", "BASE_URL", "CORS_ALLOWED_ORIGINS", "JWT_SECRET",
    "JWT_EXPIRY_TIME_MINUTES", "JWT_REFRESH_SECRET", "JWT_REFRESH_EXPIRY_TIME_MINUTES",
    "LOG_LEVEL", "LOG_FORMAT", "LOG_FILE_PATH", "METRICS_ENABLED", "METRICS_ENDPOINT",
    "HEALTH_CHECK_TIMEOUT_SECONDS", "SECURITY_HSTS", "SECURITY_CSP", "WORKERS",
    "MAX_CONNECTIONS", "POOL_SIZE", "SMTP_HOST", "SMTP_PORT", "SMTP_USERNAME", "SMTP_PASSWORD",
    "EMAIL_FROM", "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "SENTRY_DSN",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The settings read the process environment; none of the runner's may leak into a case."""
    for name in (*GUIDE_VARIABLES, "RATE_LIMIT_PER_MINUTE", "TLS_CERT_FILE", "TLS_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)


def production(**overrides: object) -> dict[str, object]:
    values: dict[str, object] = {
        "APP_ENVIRONMENT": "production",
        "DATABASE_URL": "postgresql://app:pw@db:5432/taskforge",
        "BASE_URL": "https://api.example.test",
        "JWT_SECRET": STRONG_ACCESS,
        "JWT_REFRESH_SECRET": STRONG_REFRESH,
        "CORS_ALLOWED_ORIGINS": "https://app.example.test",
    }
    values.update(overrides)
    return values


def test_every_guide_variable_is_a_setting() -> None:
    missing = [name for name in GUIDE_VARIABLES if name not in Settings.model_fields]
    assert missing == []


def test_environment_and_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "APPLICATION_PORT=9000\nWORKERS=3\nCORS_ALLOWED_ORIGINS=https://a.test, https://b.test\n"
        "LOG_LEVEL=DEBUG\nMETRICS_ENABLED=false\n"
    )
    monkeypatch.setenv("WORKERS", "5")  # the environment wins over the file
    settings = load_settings(env_file)
    assert settings.APPLICATION_PORT == 9000
    assert settings.WORKERS == 5
    assert settings.CORS_ALLOWED_ORIGINS == ["https://a.test", "https://b.test"]
    assert settings.LOG_LEVEL.value == "debug"
    assert settings.METRICS_ENABLED is False


def test_urls_built_from_their_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"DB_HOST": "db", "DB_NAME": "tf", "DB_USER": "app",
                        "DB_PASSWORD": "p@ss word", "REDIS_HOST": "cache",
                        "REDIS_PASSWORD": "r/pw"}.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.database_url == "postgresql://app:p%40ss%20word@db:5432/tf"
    assert settings.redis_url == "redis://:r%2Fpw@cache:6379/0"


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"APPLICATION_PORT": 70000}, "APPLICATION_PORT"),
        ({"POOL_SIZE": 0}, "POOL_SIZE"),
        ({"DATABASE_URL": "mysql://x/y"}, "DATABASE_URL"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
        ({"STRIPE_SECRET_KEY": "pk_live_abc"}, "STRIPE_SECRET_KEY"),
        ({"EMAIL_FROM": "not-an-address"}, "EMAIL_FROM"),
        ({"SENTRY_DSN": "sentry"}, "SENTRY_DSN"),
        ({"METRICS_ENDPOINT": "metrics"}, "METRICS_ENDPOINT"),
    ],
)
def test_bad_values_name_their_variable(overrides: dict[str, object], variable: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(**overrides)
    assert caught.value.variable == variable


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"JWT_SECRET": "too-short"}, "JWT_SECRET"),
        ({"JWT_SECRET": "your_super_secret_jwt_key_that_is_long_enough"}, "JWT_SECRET"),
        ({"JWT_SECRET": None}, "JWT_SECRET"),
        ({"JWT_REFRESH_SECRET": "changeme"}, "JWT_REFRESH_SECRET"),
        ({"JWT_REFRESH_SECRET": STRONG_ACCESS}, "JWT_REFRESH_SECRET"),
        ({"CORS_ALLOWED_ORIGINS": "https://ok.test,*"}, "CORS_ALLOWED_ORIGINS"),
        ({"BASE_URL": "http://api.example.test"}, "BASE_URL"),
        ({"DATABASE_URL": None}, "DATABASE_URL"),
        # Long enough, and guessable: judged by zxcvbn's estimate, not by length.
        ({"JWT_SECRET": "a" * 32}, "JWT_SECRET"),
        ({"JWT_SECRET": "secret" * 6}, "JWT_SECRET"),
        ({"JWT_REFRESH_SECRET": "Password1!" * 4}, "JWT_REFRESH_SECRET"),
        ({"CORS_ALLOWED_ORIGINS": "https://ok.test,null"}, "CORS_ALLOWED_ORIGINS"),
        ({"CORS_ALLOWED_ORIGINS": "http://app.example.test"}, "CORS_ALLOWED_ORIGINS"),
        ({"RATE_LIMIT_ENABLED": "false"}, "RATE_LIMIT_ENABLED"),
        ({"METRICS_TOKEN": "metrics" * 5}, "METRICS_TOKEN"),
        ({"METRICS_ALLOWED_NETWORKS": "10.0.0.0/8,not-a-network"}, "METRICS_ALLOWED_NETWORKS"),
    ],
)
def test_production_refuses_weak_settings(overrides: dict[str, object], variable: str) -> None:
    values = {k: v for k, v in production(**overrides).items() if v is not None}
    with pytest.raises(ConfigurationError) as caught:
        load_settings(**values)
    assert caught.value.variable == variable
    assert STRONG_ACCESS not in str(caught.value)


def test_production_accepts_strong_settings() -> None:
    settings = load_settings(**production())
    assert settings.is_production


def test_the_same_weak_settings_pass_outside_production() -> None:
    settings = load_settings(**production(APP_ENVIRONMENT="development", JWT_SECRET="short"))
    assert settings.JWT_SECRET == "short"


def test_generated_secrets_fill_only_what_is_absent() -> None:
    settings = load_settings(JWT_SECRET=STRONG_ACCESS).with_generated_secrets()
    assert settings.JWT_SECRET == STRONG_ACCESS
    assert settings.JWT_REFRESH_SECRET and len(settings.JWT_REFRESH_SECRET) >= 32
    assert settings.JWT_REFRESH_SECRET != settings.JWT_SECRET


def test_login_throttle_fails_closed_in_production_unless_told() -> None:
    assert load_settings(**production()).login_throttle_failure_mode.value == "closed"
    kept_open = load_settings(**production(LOGIN_THROTTLE_FAILURE_MODE="open"))
    assert kept_open.login_throttle_failure_mode.value == "open"
    assert load_settings().login_throttle_failure_mode.value == "open"
