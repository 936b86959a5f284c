"""A real HTTP receiver on a loopback port that verifies every webhook with the
Standard Webhooks reference verifier (the ``standardwebhooks`` package)."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    delay_s: float = 0.0  # hold the request this long before answering


@dataclass
class Received:
    id: str
    path: str
    at: float  # time.time() when the request arrived
    headers: dict[str, str]
    body: bytes
    verified: bool
    payload: Any
    peer: tuple[str, int] | None = None  # the sender's address and port (its connection)


# plan(webhook id, how many times this id arrived before, path) -> the reply
Plan = Callable[[str, int, str], Reply]


class Receiver:
    """``with Receiver(secret) as r:`` serves on ``r.url`` until the block ends."""

    def __init__(self, secret: str, plan: Plan | None = None, *, port: int = 0) -> None:
        self.verifier = Webhook(secret)
        self.plan: Plan = plan or (lambda _id, _n, _path: Reply())
        self.received: list[Received] = []
        self.first_arrival: dict[str, float] = {}  # webhook id -> time.time() of its first
        self.seen: Counter[str] = Counter()  # arrivals per webhook id
        self.lock = threading.Lock()
        self.arrived = threading.Condition(self.lock)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                arrived_at = time.time()
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    payload = receiver.verifier.verify(body, headers)
                    verified = True
                except WebhookVerificationError:
                    payload, verified = None, False
                msg_id = headers.get("webhook-id", "")
                with receiver.arrived:
                    seen = receiver.seen[msg_id]
                    receiver.seen[msg_id] += 1
                    receiver.received.append(
                        Received(
                            msg_id,
                            self.path,
                            arrived_at,
                            headers,
                            body,
                            verified,
                            payload,
                            tuple(self.client_address),
                        )
                    )
                    receiver.first_arrival.setdefault(msg_id, arrived_at)
                    receiver.arrived.notify_all()
                reply = receiver.plan(msg_id, seen, self.path)
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("content-length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except OSError:
                    pass  # the sender went away (killed, or timed out)

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 256  # many dispatchers connect at once

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a dispatcher stopped with a keep-alive connection open: not news

        self.server = Server(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def counts(self) -> Counter[str]:
        with self.lock:
            return Counter(r.id for r in self.received)

    def of(self, msg_id: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.id == msg_id]

    def wait_ids(self, ids: Iterable[str], timeout: float = 60.0) -> None:
        """Until every id arrived; polls without holding the lock long (for benchmarks,
        where a check on every arrival would slow the handlers down)."""
        wanted = set(ids)
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                missing = [i for i in wanted if i not in self.first_arrival]
            if not missing:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"receiver: {len(missing)} ids never arrived")
            wanted = set(missing)
            time.sleep(0.02)

    def wait_for(self, check: Callable[[list[Received]], bool], timeout: float = 20.0) -> None:
        """Until ``check(received)`` holds; AssertionError with what arrived if it never does."""
        deadline = time.monotonic() + timeout
        with self.arrived:
            while not check(self.received):
                left = deadline - time.monotonic()
                if left <= 0:
                    ids = json.dumps([(r.id, r.verified) for r in self.received][:50])
                    raise AssertionError(f"receiver: condition not met; got {ids}")
                self.arrived.wait(left)
