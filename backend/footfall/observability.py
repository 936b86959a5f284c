"""Structured logs and the per-request middleware (request id, access log, timing).

The middleware also starts a :class:`StageTimer` per request, which the ingest
path marks stage by stage (read, auth, ...): ``/metrics`` has the stages'
histograms (api/metrics.py), so a slow request's time can be placed.

Logs are one JSON object per line. They never carry personal data, raw IPs or
keys: the access log line has the route *template* (no path parameters, no
query string, which may hold a write key or pixel data), the method, status,
duration and request id, and no client address, header or body. uvicorn's own
access log, which prints the client address, is turned off by
:func:`logging_config`.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID: ContextVar[str | None] = ContextVar("footfall_request_id", default=None)
# The request's stage timer (set by RequestMiddleware; ingest marks its stages).
STAGE_TIMER: ContextVar[StageTimer | None] = ContextVar("footfall_stage_timer", default=None)
REQUEST_ID_HEADER = "X-Request-ID"
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

access_log = logging.getLogger("footfall.access")

# Attributes every LogRecord has; anything else was passed as ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "color_message",  # uvicorn's coloured copy of the message
    "request_id",
}


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "pid", "msg", "request_id"?, **extra, "exc"?}``, one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,  # which worker
            "msg": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or REQUEST_ID.get()
        if request_id:
            entry["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    """For a terminal: ``time level logger [request id] message``."""

    def format(self, record: logging.LogRecord) -> str:
        request_id = REQUEST_ID.get()
        prefix = f"[{request_id}] " if request_id else ""
        extra = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        line = (
            f"{datetime.fromtimestamp(record.created, UTC):%H:%M:%S} {record.levelname:<7}"
            f" {record.name}: {prefix}{record.getMessage()}"
            + ("".join(f" {k}={v}" for k, v in extra.items()))
        )
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def logging_config(level: str = "info", fmt: str = "json") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for the collector (uvicorn applies it in each worker)."""
    formatter = JsonFormatter if fmt == "json" else TextFormatter
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": {"()": f"{__name__}.{formatter.__name__}"}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "": {"handlers": ["default"], "level": level.upper()},
            "uvicorn": {"handlers": [], "level": level.upper(), "propagate": True},
            "uvicorn.error": {"handlers": [], "level": level.upper(), "propagate": True},
            "alembic.runtime.plugins": {"level": "WARNING"},  # a line per plugin, each start
            # A line per webhook request, with the endpoint's full URL (it may hold a token).
            "httpx": {"level": "WARNING"},
            # It prints client addresses; the middleware logs each request instead.
            "uvicorn.access": {"handlers": [], "level": "CRITICAL", "propagate": False},
        },
    }


class StageTimer:
    """Where one request's time went, stage by stage (``time.perf_counter``, ~0.1 µs a lap).

    Each :meth:`lap` gives the time since the previous lap (or since the timer
    started, when the request arrived) to the stage named. What no lap claims by
    the end of the request (routing, middleware, sending the answer) is the
    ``framework`` stage (:meth:`finish`).
    """

    __slots__ = ("_last", "durations", "started")

    def __init__(self) -> None:
        self.started = self._last = time.perf_counter()
        self.durations: dict[str, float] = {}

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.durations[stage] = self.durations.get(stage, 0.0) + now - self._last
        self._last = now

    def lap_split(self, stage: str, tail_stage: str, tail_s: float) -> None:
        """A lap whose last ``tail_s`` seconds (at most all of it) were ``tail_stage``."""
        now = time.perf_counter()
        elapsed = now - self._last
        tail = min(max(tail_s, 0.0), elapsed)
        self.durations[stage] = self.durations.get(stage, 0.0) + elapsed - tail
        self.durations[tail_stage] = self.durations.get(tail_stage, 0.0) + tail
        self._last = now

    def finish(self, total_s: float) -> None:
        """Give what the laps left of ``total_s`` to ``framework``."""
        self.durations["framework"] = max(0.0, total_s - sum(self.durations.values()))


def stage_timer() -> StageTimer:
    """The current request's timer; a detached one outside a request (tests, replay)."""
    return STAGE_TIMER.get() or StageTimer()


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            if _SANE_ID.match(candidate):
                return candidate
            break
    return uuid.uuid4().hex


def route_template(scope: Scope) -> str:
    """The matched route's path template (bounded cardinality), or ``unmatched``."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"


OnResponse = Callable[[str, str, int, float], None]


class RequestMiddleware:
    """Request id (from X-Request-ID or new, echoed back), timing, the access log line."""

    def __init__(
        self, app: ASGIApp, *, log_requests: bool = True, on_response: OnResponse | None = None
    ) -> None:
        self.app = app
        self.log_requests = log_requests
        self.on_response = on_response

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        token = REQUEST_ID.set(request_id)
        timer = StageTimer()
        timer_token = STAGE_TIMER.set(timer)
        started = timer.started
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).append(REQUEST_ID_HEADER, request_id)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = route_template(scope)
            if self.on_response is not None:
                self.on_response(route, scope["method"], status, seconds)
            if self.log_requests:
                access_log.info(
                    "request",
                    extra={
                        "method": scope["method"],
                        "route": route,
                        "status": status,
                        "duration_ms": round(seconds * 1000, 2),
                    },
                )
            STAGE_TIMER.reset(timer_token)
            REQUEST_ID.reset(token)


@contextmanager
def metrics_dir(multiprocess: bool) -> Iterator[None]:
    """``PROMETHEUS_MULTIPROC_DIR`` for worker processes: a fresh one, removed afterwards.

    An operator's own directory (the variable already set) is used as is; it
    must be emptied between runs, as prometheus_client requires.
    """
    if not multiprocess or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="footfall-metrics-") as directory:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
        try:
            yield
        finally:
            del os.environ["PROMETHEUS_MULTIPROC_DIR"]
