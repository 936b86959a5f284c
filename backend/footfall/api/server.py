"""The HTTP server as ``footfall serve`` runs it: uvicorn with httptools, plus the
limits uvicorn does not enforce by itself.

uvicorn's httptools protocol buffers a request's header section without a bound
(a 16 MB header was accepted) and has no timeout until the first response (an
idle connection, a client sending its headers or body a byte at a time, was
kept forever). :class:`GuardedHttpToolsProtocol` adds:

- a total header-section limit (request line plus headers): 431 and the
  connection closed, counted on the raw bytes as they arrive, so memory stays
  bounded while a huge header is still coming in;
- a header timeout: from the connection's first moment (or the end of the
  previous request) until the header section is complete; past it 408 and close;
- a body timeout: from the end of the headers until the body is complete; past
  it the connection is closed, which the app sees as a client disconnect (499).

Idle keep-alive connections are closed by uvicorn's own ``timeout_keep_alive``.
The same configuration is used by the tests' in-process server.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sys
from dataclasses import dataclass
from typing import Any

import httptools
import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.supervisors import Multiprocess

from footfall.errors import HeadersTooLarge
from footfall.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ServerLimits:
    max_header_bytes: int = 16 * 1024
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings) -> ServerLimits:
        return cls(settings.max_header_bytes, settings.header_timeout_s, settings.body_timeout_s)


class _HeaderSectionTooLarge(Exception):
    pass


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header-size limit and header/body timeouts."""

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.limits: ServerLimits = getattr(config, "footfall_limits", ServerLimits())
        self._awaiting_headers = True
        self._header_bytes = 0  # raw bytes received while awaiting the header section
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None

    # -- connection events -------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        if self._awaiting_headers:
            self._header_bytes += len(data)
            self._arm_header_timer()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, _HeaderSectionTooLarge):  # raised below
                self._refuse_headers()
            else:
                log.info("invalid HTTP request received")
                self.send_400_response("Invalid HTTP request received.")
            return
        if self._awaiting_headers and self._header_bytes > self.limits.max_header_bytes:
            self._refuse_headers()

    # -- parser callbacks --------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._awaiting_headers = True

    def on_headers_complete(self) -> None:
        # Exact size, for a header section that completed within one read.
        size = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
        if size > self.limits.max_header_bytes:
            raise _HeaderSectionTooLarge  # httptools wraps it in an HttpParserError
        self._awaiting_headers = False
        self._header_bytes = 0
        self._cancel_header_timer()
        self._body_timer = self.loop.call_later(self.limits.body_timeout_s, self._body_timeout)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._cancel_body_timer()
        self._awaiting_headers = True
        super().on_message_complete()

    # -- limits --------------------------------------------------------------------

    def _refuse_headers(self) -> None:
        log.info("request header section over %d bytes refused", self.limits.max_header_bytes)
        error = HeadersTooLarge(f"request header section over {self.limits.max_header_bytes} bytes")
        self._send_error_and_close(error.status, {"error": error.code, "detail": error.detail})

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined request's headers arrived while the previous one is
            # still being answered: its time starts when that answer is sent.
            self._arm_header_timer()
            return
        if self._header_bytes == 0 and (self.cycle is None or self.cycle.response_complete):
            self.transport.close()  # idle: nothing was asked, nothing to answer
            return
        log.info("request headers not received within %ss", self.limits.header_timeout_s)
        self._send_error_and_close(
            408, {"error": "request_timeout", "detail": "request headers took too long"}
        )

    def _body_timeout(self) -> None:
        self._body_timer = None
        if not self.transport.is_closing():
            # The app is reading the body: closing makes it see a disconnect (499).
            log.info("request body not received within %ss", self.limits.body_timeout_s)
            self.transport.close()

    def _send_error_and_close(self, status: int, body: dict[str, str]) -> None:
        self._cancel_timers()
        content = orjson.dumps(body)
        self.transport.write(
            b"".join(
                [
                    STATUS_LINE[status],
                    b"content-type: application/json\r\n",
                    b"content-length: " + str(len(content)).encode() + b"\r\n",
                    b"connection: close\r\n\r\n",
                    content,
                ]
            )
        )
        self.transport.close()

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(
                self.limits.header_timeout_s, self._header_timeout
            )

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _cancel_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _cancel_timers(self) -> None:
        self._cancel_header_timer()
        self._cancel_body_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # Between requests uvicorn's keep-alive timeout watches the connection.
        self._cancel_header_timer()
        self._header_bytes = 0


class ServerConfig(uvicorn.Config):
    """uvicorn's Config carrying :class:`ServerLimits` to the protocol (and to
    worker processes, which receive the config pickled)."""

    def __init__(self, app: Any, *, limits: ServerLimits, **kwargs: Any) -> None:
        super().__init__(app, http=GuardedHttpToolsProtocol, **kwargs)
        self.footfall_limits = limits


def server_config(app: Any, settings: Settings, **kwargs: Any) -> ServerConfig:
    """The server configuration of ``footfall serve`` (and of the tests' server)."""
    return ServerConfig(
        app,
        limits=ServerLimits.from_settings(settings),
        timeout_keep_alive=settings.keep_alive_timeout_s,
        h11_max_incomplete_event_size=settings.max_header_bytes,
        proxy_headers=False,  # the collector decides which X-Forwarded-For to believe
        **kwargs,
    )


def run(settings: Settings, **kwargs: Any) -> None:
    """Serve ``app.create_worker_app(settings)`` as uvicorn.run would, with :func:`server_config`.

    The caller ran ``app.prepare_database`` first (workers never migrate) and
    passes ``settings`` with the database URL it resolved: the factory and its
    arguments reach every worker in the pickled config, so nothing goes through
    the environment, and workers never start (or hold) the embedded PostgreSQL.
    """
    from footfall.app import create_worker_app

    app = functools.partial(create_worker_app, settings)
    config = server_config(app, settings, factory=True, **kwargs)
    server = uvicorn.Server(config)
    try:
        if config.workers > 1:
            Multiprocess(config, sockets=[config.bind_socket()]).run()
        else:
            server.run()
    except KeyboardInterrupt:
        pass
    if config.workers == 1 and not server.started:
        sys.exit(3)  # uvicorn's STARTUP_FAILURE
