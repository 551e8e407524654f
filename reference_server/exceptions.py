"""Exceptions of the reference server; each API error maps to one code of the contract.

The engine and the store raise these; the HTTP layer turns them into error envelopes in one handler.
"""

from __future__ import annotations

from typing import Any


class ConfigurationError(Exception):
    """A setting that the server refuses; the CLI prints it as one line and exits 2."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable} {problem}")
        self.variable = variable
        self.problem = problem


class ApiError(Exception):
    """Base of every error that reaches a client as an error envelope."""

    status: int = 500
    code: str = "INTERNAL_ERROR"

    def __init__(
        self,
        message: str,
        *,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers or {}


class AuthenticationFailed(ApiError):
    status, code = 401, "AUTH_001"


class TokenExpired(ApiError):
    status, code = 401, "AUTH_002"


class PermissionDenied(ApiError):
    status, code = 403, "PERM_001"


class ValidationFailed(ApiError):
    status, code = 400, "VALIDATION_001"


class NotFound(ApiError):
    status, code = 404, "RESOURCE_NOT_FOUND"


class Conflict(ApiError):
    status, code = 409, "RESOURCE_CONFLICT"


class PayloadTooLarge(ApiError):
    status, code = 413, "PAYLOAD_TOO_LARGE"


class UnsupportedMediaType(ApiError):
    status, code = 415, "UNSUPPORTED_MEDIA_TYPE"


class RateLimited(ApiError):
    status, code = 429, "RATE_LIMIT_EXCEEDED"


class ServiceUnavailable(ApiError):
    status, code = 503, "SERVICE_UNAVAILABLE"
