"""One error type for the HTTP edge: a status code and a stable JSON body."""

from __future__ import annotations


class FootfallError(Exception):
    """An error answered as ``{"error": code, "detail": text}`` with ``status``."""

    status = 400
    code = "bad_request"

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}


class BadRequest(FootfallError):
    status, code = 400, "bad_request"


class Unauthorized(FootfallError):
    status, code = 401, "invalid_write_key"


class Forbidden(FootfallError):
    status, code = 403, "origin_not_allowed"


class PayloadTooLarge(FootfallError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(FootfallError):
    status, code = 415, "unsupported_media_type"


class RateLimited(FootfallError):
    status, code = 429, "rate_limited"


class Unavailable(FootfallError):
    """Storage cannot take the messages now; nothing was acknowledged."""

    status, code = 503, "storage_unavailable"
