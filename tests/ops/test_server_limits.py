"""The HTTP server's own limits (issue 9 items 7, 8): header size, timeouts, disconnects.

Real sockets against the real server configured as ``footfall serve`` runs it
(api/server.py), so what is tested is what uvicorn + httptools actually do.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.ops.metrics_text import sample
from tests.support import ServerThread, collector_settings


@pytest.fixture(scope="module")
def strict_server(database: str) -> Iterator[ServerThread]:
    settings = collector_settings(
        database, header_timeout_s=1.0, body_timeout_s=1.0, keep_alive_timeout_s=1
    )
    server = ServerThread(settings).start()
    yield server
    server.stop()


def _connect(server: ServerThread) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except (ConnectionResetError, TimeoutError):
        pass
    return b"".join(chunks)


def test_header_section_over_16_kb_is_431(server: ServerThread) -> None:
    big = "x" * (16 * 1024)
    response = httpx.get(server.base_url + "/healthz", headers={"X-Big": big})
    assert response.status_code == 431
    assert response.json()["error"] == "request_header_fields_too_large"
    # Many headers adding up count too, not only one long one.
    many = {f"X-H{i}": "y" * 100 for i in range(200)}
    assert httpx.get(server.base_url + "/healthz", headers=many).status_code == 431
    # Under the limit is fine.
    assert httpx.get(server.base_url + "/healthz", headers={"X-Ok": "x" * 8000}).status_code == 200


def test_huge_header_is_cut_off_while_it_streams(server: ServerThread) -> None:
    """A 16 MB header is refused after the first bytes over the limit, not buffered."""
    sock = _connect(server)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
    sent = 0
    try:
        for _ in range(256):  # up to 16 MB in 64 KB pieces; the server closes long before
            sock.sendall(b"a" * 65536)
            sent += 65536
    except (BrokenPipeError, ConnectionResetError):
        pass
    answer = _read_all(sock)
    sock.close()
    assert sent < 16 * 1024 * 1024
    assert answer.startswith(b"HTTP/1.1 431")


def test_idle_connection_is_closed(strict_server: ServerThread) -> None:
    sock = _connect(strict_server)
    started = time.monotonic()
    assert _read_all(sock) == b""  # closed by the server, without an answer
    assert time.monotonic() - started < 5
    sock.close()


def test_slow_headers_get_408(strict_server: ServerThread) -> None:
    sock = _connect(strict_server)
    started = time.monotonic()
    sock.sendall(b"GET /healthz HTTP/1.1\r\n")
    answer = b""
    for _ in range(10):  # a header line every 0.3 s: never complete within 1 s
        time.sleep(0.3)
        try:
            sock.sendall(b"X-Slow: 1\r\n")
        except (BrokenPipeError, ConnectionResetError):
            break
    answer = _read_all(sock)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
    assert time.monotonic() - started < 5


def test_slow_body_is_cut_off_and_counted_as_disconnect(
    strict_server: ServerThread, collector_key: str
) -> None:
    before = _status_count(strict_server, "499")
    sock = _connect(strict_server)
    sock.sendall(
        b"POST /v1/track HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"X-Write-Key: " + collector_key.encode() + b"\r\nContent-Length: 1000\r\n\r\n{"
    )
    started = time.monotonic()
    try:
        for _ in range(20):  # a byte every 0.2 s: 1000 bytes would take minutes
            time.sleep(0.2)
            sock.sendall(b" ")
    except (BrokenPipeError, ConnectionResetError):
        pass
    _read_all(sock)
    sock.close()
    assert time.monotonic() - started < 6
    _wait_for(lambda: _status_count(strict_server, "499") == before + 1)
    assert _status_count(strict_server, "500") == 0


def test_client_gone_mid_body_is_499_not_500(server: ServerThread, collector_key: str) -> None:
    before_499 = _status_count(server, "499")
    before_500 = _status_count(server, "500")
    sock = _connect(server)
    sock.sendall(
        b"POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"X-Write-Key: " + collector_key.encode() + b"\r\nContent-Length: 5000\r\n\r\n"
        b'{"batch": ['
    )
    time.sleep(0.2)
    sock.close()
    _wait_for(lambda: _status_count(server, "499") == before_499 + 1)
    assert _status_count(server, "500") == before_500


@pytest.fixture(scope="module")
def collector_key(database: str) -> str:
    from tests.support import make_site

    return make_site(database, allowed_origins=["*"])[1]


def _status_count(server: ServerThread, status: str) -> float:
    # Counters are per process (both test servers share them): compare deltas.
    return sample(server.base_url, "footfall_http_requests_total", method="POST", status=status)


def _wait_for(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def test_pipelined_requests_are_answered(strict_server: ServerThread) -> None:
    sock = _connect(strict_server)
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    sock.sendall(request * 3)
    answers = b""
    while answers.count(b"HTTP/1.1 200") < 3:
        chunk = sock.recv(65536)
        assert chunk, answers
        answers += chunk
    sock.close()
