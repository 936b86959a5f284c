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


class HeadersTooLarge(FootfallError):
    status, code = 431, "request_header_fields_too_large"


class Unavailable(FootfallError):
    """Storage cannot take the messages now; nothing was acknowledged."""

    status, code = 503, "storage_unavailable"

    @classmethod
    def retry_after(cls, seconds: int) -> Unavailable:
        """The one 503 of the collector: nothing was stored, retry after ``seconds``."""
        return cls(
            "storage unavailable; nothing was stored, retry later",
            headers={"Retry-After": str(seconds)},
        )


class RejectedByDatabase(FootfallError):
    """The database refused a value of the request (the same request fails again)."""

    status, code = 400, "rejected_by_database"
