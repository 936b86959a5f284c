"""The dispatcher: sends the outbox, at least once, from any number of collector processes.

Each process runs one (in the collector's lifespan, or alone: ``footfall webhooks
dispatch``). It sleeps until a NOTIFY from an enqueuing transaction, the next
retry falling due, or the poll interval; claims due rows in batches
(storage/webhooks.py: SKIP LOCKED plus a lease), as many as it has room for
(``concurrency`` requests in flight, at most ``per_endpoint`` to one endpoint);
sends each as a signed POST over kept-alive connections; and records the answers
in batches: 2xx is delivered, anything else is retried with backoff (retry.py)
or, after the last attempt, dead. The recorder writes whatever has finished in
one transaction while the next attempts are in flight. A dispatcher killed
mid-flight records nothing; its rows fall due again when their lease ends, and
another (or the restarted) one sends them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urljoin, urlsplit

import httpx
import psycopg
from prometheus_client import Counter, Histogram
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from footfall import __version__
from footfall.pipeline.privacy import Keyring
from footfall.pipeline.scrub import redact_text
from footfall.settings import Settings
from footfall.storage import webhooks as outbox
from footfall.webhooks import message
from footfall.webhooks.retry import RetryPolicy, decide, parse_retry_after
from footfall.webhooks.sealing import SealError, unseal

log = logging.getLogger(__name__)

DELIVERIES = Counter(
    "footfall_webhook_deliveries",
    "Webhook attempts by outcome: delivered (2xx), retry (failed, tried again later),"
    " dead (failed, no attempt left), lost (the answer came after the claim was lost)",
    ["outcome"],
)
DELIVERY_LATENCY = Histogram(
    "footfall_webhook_delivery_latency_seconds",
    "From the enqueuing transaction to the receiver's 2xx, retries included",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 600, 3600, 21600),
)
ATTEMPT_SECONDS = Histogram(
    "footfall_webhook_attempt_duration_seconds",
    "One HTTP attempt, from sending to the receiver's answer (or the timeout)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

MAX_REDIRECTS = 3
# A 2xx answer's body is read (and dropped) up to this size, so that its connection
# is kept alive for the next request; a longer one closes the connection.
DRAIN_BYTES = 64 * 1024
RECORD_RETRY_S = 0.1  # a row locked by another transaction: record it again after this
PRUNE_BATCH = 10_000
UNSIGNABLE_PAUSE_S = 60.0
ERROR_BODY_BYTES = 200  # of a failed answer, kept (redacted) in last_error; never more
_DB_ERRORS = (psycopg.OperationalError, PoolTimeout, OSError)


@dataclass(frozen=True, slots=True)
class DispatchConfig:
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    timeout_s: float = 10.0
    lease_s: float = 60.0
    concurrency: int = 16
    poll_s: float = 5.0
    retention_days: int = 7
    per_endpoint: int | None = None  # in flight to one endpoint; None: 3/4 of the concurrency

    @property
    def endpoint_limit(self) -> int:
        """Requests in flight to one endpoint: a slow receiver never takes every slot."""
        return self.per_endpoint or max(1, self.concurrency * 3 // 4)

    @classmethod
    def from_settings(cls, settings: Settings) -> DispatchConfig:
        return cls(
            policy=RetryPolicy(
                max_attempts=settings.webhook_max_attempts,
                base_s=settings.webhook_backoff_base_s,
                max_delay_s=settings.webhook_backoff_max_s,
            ),
            timeout_s=settings.webhook_timeout_s,
            lease_s=settings.webhook_lease_s,
            concurrency=settings.webhook_concurrency,
            poll_s=settings.webhook_poll_s,
            retention_days=settings.webhook_retention_days,
        )


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one POST came to: the status (None: no answer) and, if it failed, why."""

    status: int | None
    error: str | None = None
    retry_after_s: float | None = None

    local: bool = False  # this dispatcher could not send it (no key): not the receiver's fault

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True, slots=True)
class _Result:
    """A finished attempt waiting for the recorder."""

    item: outbox.Claimed
    attempt: Attempt
    outcome: outbox.Outcome
    dead: bool = False


class Dispatcher:
    """One per process; :meth:`run` until :meth:`close`."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        dsn: str,
        keyring: Keyring,
        config: DispatchConfig,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self._pool = pool
        self._dsn = dsn
        self._keyring = keyring
        self._config = config
        self._rng = rng or random.Random()
        self._wake = asyncio.Event()
        self._stopping = False
        self._inflight: set[asyncio.Task[None]] = set()
        self._per_endpoint: collections.Counter[tuple[int, str]] = (
            collections.Counter()
        )  # in flight, (site, name)
        # The last claim stopped at a bound: an attempt that finishes makes room for more.
        self._backlog = False
        self._results: list[_Result] = []  # finished attempts, not recorded yet
        self._results_ready = asyncio.Event()
        self._draining = False
        self._task: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._recorder: asyncio.Task[None] | None = None
        # One client for the process: its connections are kept alive between requests.
        self._client = httpx.AsyncClient(
            follow_redirects=False,  # redirects are decided per hop in _post
            timeout=httpx.Timeout(config.timeout_s),
            headers={"user-agent": f"Footfall-Webhooks/{__version__}"},
            limits=httpx.Limits(
                max_connections=config.concurrency,
                max_keepalive_connections=config.concurrency,
            ),
        )
        self._last_prune = 0.0
        self._last_expiry = 0.0
        # Endpoints whose secret this process cannot open (its PII keys differ from
        # the sealer's): left to other dispatchers for a while, (site, name) -> until.
        self._unsignable: dict[tuple[int, str], float] = {}
        self.sent = 0  # attempts made by this dispatcher (tests, logs)
        self.recordings = 0  # transactions that recorded attempts (tests, logs)

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="footfall-webhooks")

    async def close(self, grace_s: float = 5.0) -> None:
        """Stop claiming; give in-flight attempts ``grace_s`` to finish. What does not finish
        keeps its claim until the lease ends and is then sent again (by anyone)."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=grace_s + 1)
            except TimeoutError:
                self._task.cancel()
            self._task = None
        if self._inflight:
            _, pending = await asyncio.wait(self._inflight, timeout=grace_s)
            for task in pending:
                task.cancel()
        if self._recorder is not None:
            # Record what finished; what cannot be recorded now is sent again after its lease.
            self._draining = True
            self._results_ready.set()
            try:
                await asyncio.wait_for(asyncio.shield(self._recorder), timeout=grace_s)
            except TimeoutError:
                self._recorder.cancel()
            self._recorder = None
        await self._client.aclose()

    async def run(self) -> None:
        self._listener = asyncio.create_task(self._listen(), name="footfall-webhooks-listen")
        if self._recorder is None:
            self._recorder = asyncio.create_task(
                self._record_forever(), name="footfall-webhooks-rec"
            )
        try:
            while not self._stopping:
                self._wake.clear()
                wait_s = await self._step()
                if wait_s > 0 and not self._stopping:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout=wait_s)
        finally:
            self._listener.cancel()

    async def _step(self) -> float:
        """Claim and start what is due; how long to sleep unless woken.

        Claims come in batches: while attempts are in flight, the next claim waits
        until a quarter of the slots are free (of the dispatcher, or of an endpoint),
        so a backlog is claimed several rows per statement rather than one row per
        finished attempt. With nothing in flight (the usual case below full load) a new
        message is claimed at once.
        """
        limit = self._config.concurrency
        free = limit - len(self._inflight)
        if self._inflight and free < _quarter(limit):
            self._backlog = True
            return self._config.poll_s  # a finishing attempt wakes the loop
        now = time.monotonic()
        self._unsignable = {k: until for k, until in self._unsignable.items() if until > now}
        bound = self._config.endpoint_limit
        room = {key: bound - n for key, n in self._per_endpoint.items() if n > 0}
        full = {key for key, left in room.items() if left < _quarter(bound)}
        try:
            async with self._pool.connection() as conn:
                claims = await outbox.claim_due(
                    conn,
                    limit=free,
                    lease_s=self._config.lease_s,
                    claim=uuid.uuid4().hex,
                    max_attempts=self._config.policy.max_attempts,
                    per_endpoint=bound,
                    room=room,
                    skip=full | self._unsignable.keys(),
                    rng=self._rng,
                )
                await self._housekeeping(conn)
        except _DB_ERRORS as exc:
            log.warning("webhooks: database unavailable (%s); retrying", type(exc).__name__)
            return min(self._config.poll_s, 2.0)
        except Exception:
            # E.g. a schema not migrated yet: the loop must outlive it, as the writer's does.
            log.exception("webhooks: claiming failed; retrying")
            return self._config.poll_s
        for item in claims.rows:
            key = (item.site_id, item.endpoint)
            self._per_endpoint[key] += 1
            task = asyncio.create_task(self._deliver(item))
            self._inflight.add(task)
            task.add_done_callback(functools.partial(self._finished, key=key))
        # Held back by a bound: the next finishing attempt wakes the loop to claim more.
        self._backlog = claims.more or bool(full)
        if claims.more:
            return 0.0  # more may be due now: claim again (a full endpoint is skipped)
        if claims.next_due_s is None:
            return self._config.poll_s
        # 0: due now but not claimable: held by another dispatcher's claim statement.
        return min(max(claims.next_due_s, 0.05), self._config.poll_s)

    def _finished(self, task: asyncio.Task[None], key: tuple[int, str]) -> None:
        self._inflight.discard(task)
        left = self._per_endpoint[key] - 1
        if left > 0:
            self._per_endpoint[key] = left
        else:
            del self._per_endpoint[key]
        # Held back by a bound: wake the loop when this attempt brings the endpoint's (or
        # the dispatcher's) free slots up to a quarter, not on every finished attempt.
        bound, limit = self._config.endpoint_limit, self._config.concurrency
        if self._backlog and (
            bound - left == _quarter(bound) or limit - len(self._inflight) == _quarter(limit)
        ):
            self._wake.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("webhooks: delivery task failed", exc_info=task.exception())

    async def _listen(self) -> None:
        delay = 0.5
        while not self._stopping:
            try:
                await outbox.listen(self._dsn, self._wake.set)
            except (psycopg.Error, OSError) as exc:
                log.warning("webhooks: LISTEN connection lost (%s)", type(exc).__name__)
            await asyncio.sleep(delay)  # polling covers the gap
            delay = min(delay * 2, 30.0)

    async def _housekeeping(self, conn: outbox.AsyncConn) -> None:
        """Now and then, off the per-message path: expired last claims, old rows."""
        now = time.monotonic()
        if now - self._last_expiry >= min(self._config.lease_s, 10.0):
            self._last_expiry = now
            await outbox.expire_last_claims(conn, self._config.policy.max_attempts)
        if self._config.retention_days <= 0 or now - self._last_prune < 3600:
            return
        self._last_prune = time.monotonic()
        deleted = 0
        for _ in range(100):  # bounded batches, so one step never holds on for long
            batch = await outbox.prune(conn, self._config.retention_days, PRUNE_BATCH)
            deleted += batch
            if batch < PRUNE_BATCH:
                break
        if deleted:
            log.info("webhooks: pruned %d finished outbox rows", deleted)

    async def _deliver(self, item: outbox.Claimed) -> None:
        """One attempt; its result goes to the recorder."""
        attempt = await self._attempt(item)
        self.sent += 1
        claim = (item.site_id, item.id, item.claim)
        if attempt.delivered:
            result = _Result(item, attempt, outbox.Outcome(*claim, "delivered", attempt.status))
        elif attempt.local:
            # A secret this process cannot open: a configuration fault here, not the
            # receiver's. The message goes back uncounted, due at once for the other
            # dispatchers; this one leaves the endpoint alone for a minute (so if no
            # dispatcher can open it, it waits, pending, with the reason in last_error,
            # instead of dying).
            self._unsignable[(item.site_id, item.endpoint)] = time.monotonic() + UNSIGNABLE_PAUSE_S
            outcome = outbox.Outcome(
                *claim, "pending", None, attempt.error or "cannot sign", 0.0, counted=False
            )
            result = _Result(item, attempt, outcome)
        else:
            decision = decide(
                item.attempts, attempt.status, attempt.retry_after_s, self._config.policy, self._rng
            )
            outcome = outbox.Outcome(
                *claim,
                "dead" if decision.dead else "pending",
                attempt.status,
                attempt.error or "failed",
                decision.delay_s,
            )
            result = _Result(item, attempt, outcome, decision.dead)
        self._results.append(result)
        self._results_ready.set()

    async def _record_forever(self) -> None:
        """Record finished attempts in batches: everything that finished while the
        previous batch was being written goes in the next one (one transaction)."""
        while True:
            await self._results_ready.wait()
            self._results_ready.clear()
            while self._results:
                batch, self._results = self._results, []
                pause = await self._record(batch)
                if pause:
                    await asyncio.sleep(pause)
            if self._draining:
                return

    async def _record(self, batch: list[_Result]) -> float:
        """Record ``batch``; what could not be recorded goes back to the queue, and the
        seconds to wait before trying again (0: all done)."""
        try:
            async with self._pool.connection() as conn:
                recorded = await outbox.record_outcomes(conn, [r.outcome for r in batch])
        except Exception as exc:  # the claims stay; unrecorded rows fall due after their lease
            if isinstance(exc, _DB_ERRORS):
                log.warning(
                    "webhooks: could not record %d attempts (%s); retrying",
                    len(batch),
                    type(exc).__name__,
                )
            else:
                log.exception("webhooks: could not record %d attempts; retrying", len(batch))
            self._results[:0] = batch
            return min(self._config.poll_s, 2.0)
        self.recordings += 1
        busy = {(o.site_id, o.id) for o in recorded.busy}
        retry_scheduled = False
        for result in batch:
            item, attempt, outcome = result.item, result.attempt, result.outcome
            key = (item.site_id, item.id)
            if key in busy:
                self._results.append(result)
                continue
            latency = recorded.done.get(key)
            if attempt.delivered:
                if latency is None:
                    DELIVERIES.labels("lost").inc()
                else:
                    DELIVERIES.labels("delivered").inc()
                    DELIVERY_LATENCY.observe(latency)
                continue
            retry_scheduled = retry_scheduled or (latency is not None and not result.dead)
            if attempt.local:
                log.error(
                    "webhooks: cannot sign for endpoint %r of site %d: %s (are FOOTFALL_PII_KEY"
                    " and FOOTFALL_PII_PREVIOUS_KEYS the same on every collector?)",
                    item.endpoint,
                    item.site_id,
                    attempt.error,
                )
                continue
            DELIVERIES.labels(
                "lost" if latency is None else "dead" if result.dead else "retry"
            ).inc()
            log.info(
                "webhooks: %s to endpoint %r of site %d failed (attempt %d): %s; %s",
                item.message_id,
                item.endpoint,
                item.site_id,
                item.attempts,
                attempt.error,
                "dead letter" if result.dead else f"next in {outcome.retry_in_s:.1f}s",
            )
        if retry_scheduled:
            self._wake.set()  # the loop learns when the retry falls due
        return RECORD_RETRY_S if busy else 0.0

    async def _attempt(self, item: outbox.Claimed) -> Attempt:
        try:
            secret = unseal(
                item.secret_sealed, item.secret_key_id, self._keyring, item.site_id, item.endpoint
            )
            key = message.secret_key(secret)
        except (SealError, ValueError) as exc:
            return Attempt(None, f"cannot sign: {exc}", local=True)
        payload = message.body(item.event_type, item.created_at, item.data)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._config.timeout_s):
                return await self._post(item.url, key, item.message_id, payload)
        except TimeoutError:
            return Attempt(None, f"no answer within {self._config.timeout_s:g}s")
        except httpx.HTTPError as exc:
            return Attempt(None, f"request failed: {type(exc).__name__} {_clean(str(exc))}")
        finally:
            ATTEMPT_SECONDS.observe(time.perf_counter() - started)

    async def _post(self, url: str, key: bytes, message_id: str, payload: bytes) -> Attempt:
        for _ in range(MAX_REDIRECTS + 1):
            headers = message.headers(key, message_id, int(time.time()), payload)
            request = self._client.build_request("POST", url, content=payload, headers=headers)
            response = await self._client.send(request, stream=True)
            try:
                status = response.status_code
                if 200 <= status < 300:
                    await _drain(response, DRAIN_BYTES)  # read, so the connection is reused
                    return Attempt(status)
                location = response.headers.get("location")
                if status in (307, 308) and location:
                    target = urljoin(url, location)
                    if _same_origin(url, target):
                        await _drain(response, DRAIN_BYTES)
                        url = target
                        continue
                if 300 <= status < 400:
                    return Attempt(
                        status,
                        f"HTTP {status}: redirect not followed (only 307/308 to the same"
                        " scheme, host and port are)",
                    )
                retry_after = parse_retry_after(
                    response.headers.get("retry-after"), datetime.now(UTC)
                )
                snippet = _clean((await _drain(response, DRAIN_BYTES))[:ERROR_BODY_BYTES])
                return Attempt(status, f"HTTP {status}: {snippet}".rstrip(": "), retry_after)
            finally:
                await response.aclose()
        return Attempt(None, f"more than {MAX_REDIRECTS} redirects")


def _quarter(bound: int) -> int:
    return max(1, bound // 4)


def _same_origin(a: str, b: str) -> bool:
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme, pa.hostname, pa.port) == (pb.scheme, pb.hostname, pb.port)


async def _drain(response: httpx.Response, limit: int) -> bytes:
    """Read an answer's body up to ``limit`` bytes. A body read to its end leaves the
    connection reusable; a longer one is not read further (its connection is closed)."""
    data = b""
    async for chunk in response.aiter_raw():
        data += chunk
        if len(data) >= limit:
            break
    return data


def _clean(text: str | bytes) -> str:
    """One line, no emails or phone numbers: it is stored and shown by the CLI."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return redact_text(" ".join(text.split()))[:ERROR_BODY_BYTES]
