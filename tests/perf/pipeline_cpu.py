"""The pipeline's CPU per message, step by step: ``python -m tests.perf.pipeline_cpu``.

No server and no database: the configured pipeline (``app.build_pipeline``'s steps,
with a small GeoIP database written here and today's visitor salts in memory) run
over tracker-like batches of 20 (the benchmark's messages, ``tests/perf/bench.py``),
each batch a new request as the collector builds it: client-hint headers, an IP,
the browser's User-Agent, starlette's request headers, an empty consent-ledger view. Scenarios:

* ``browser``: a logged-in visitor on an ``implied`` site (every message has a userId);
* ``anonymous``: a site in consent mode ``anonymous`` (no ids kept, the visitor hash);
* ``guest``: like ``browser`` without a userId.

Printed: µs per message for the whole ``Pipeline.run`` (unwrapped, best of
``--repeat``; ``--size 1`` for single-message requests) and per part (limits, message id, validation, each step, ``to_row``,
the writer's JSON serialization of the row) from a run with a timer around each
part, whose own cost is measured and taken off. CPU time of this process only;
on a loaded machine compare figures from one sitting. ``--profile FILE`` writes a
cProfile of the unwrapped run.
"""

from __future__ import annotations

import argparse
import cProfile
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from starlette.datastructures import Headers

from footfall.pipeline import process
from footfall.pipeline.consent import LedgerView, consent_step
from footfall.pipeline.device import device_step
from footfall.pipeline.geo import GeoLookup, GeoStep
from footfall.pipeline.identity import IdentityHygiene
from footfall.pipeline.privacy import PiiKey, PrivacyPolicy, SaltRing, privacy_step
from footfall.pipeline.process import Pipeline
from footfall.pipeline.types import RequestContext, Site
from footfall.schemas.registry import SchemaRegistry
from footfall.storage import writer
from tests.perf.bench import UA, batch_templates, fill

IP = "81.2.69.160"
# What Chrome sends with a tracker's fetch (as starlette hands them on: a raw list).
HEADERS = [
    ("host", "collector.shop.example"),
    ("connection", "keep-alive"),
    ("content-length", "9000"),
    ("sec-ch-ua-platform", '"Windows"'),
    ("user-agent", UA),
    ("sec-ch-ua", '"Chromium";v="124", "Google Chrome";v="124", "Not-A.Brand";v="99"'),
    ("content-type", "application/json"),
    ("sec-ch-ua-mobile", "?0"),
    ("accept", "*/*"),
    ("origin", "https://shop.example"),
    ("sec-fetch-site", "same-site"),
    ("sec-fetch-mode", "cors"),
    ("sec-fetch-dest", "empty"),
    ("referer", "https://shop.example/"),
    ("accept-encoding", "gzip, deflate, br, zstd"),
    ("accept-language", "en-GB,en;q=0.9"),
]
SCENARIOS = ("browser", "anonymous", "guest")


def _geo_db(directory: Path) -> GeoLookup | None:
    try:
        from mmdb_writer import MMDBWriter
        from netaddr import IPSet
    except ImportError:  # a dev dependency: without it, no geo step figures
        return None
    london = {
        "country": {"iso_code": "GB", "names": {"en": "United Kingdom"}},
        "subdivisions": [{"iso_code": "ENG", "names": {"en": "England"}}],
        "city": {"names": {"en": "London"}},
        "location": {"latitude": 51.5142, "longitude": -0.0931, "time_zone": "Europe/London"},
    }
    city = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-City")
    city.insert_network(IPSet(["81.2.69.0/24"]), london)
    city.to_db_file(str(directory / "city.mmdb"))
    asn = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-ASN")
    asn.insert_network(
        IPSet(["81.2.69.0/24"]),
        {"autonomous_system_number": 20712, "autonomous_system_organization": "Andrews & Arnold"},
    )
    asn.to_db_file(str(directory / "asn.mmdb"))
    return GeoLookup.open(directory / "city.mmdb", directory / "asn.mmdb")


def build(geo: GeoLookup | None, now: datetime) -> Pipeline:
    """The pipeline as ``app.build_pipeline`` builds it (without settings)."""
    key = PiiKey("k1", b"pipeline-cpu-key-0123456789abcdef0123456789")
    policy = PrivacyPolicy()
    salts = SaltRing()
    today = now.date()
    salts.set(today, {today: b"s" * 32, today - timedelta(days=1): b"y" * 32})
    return Pipeline(
        registry=SchemaRegistry(None),
        pii_key=key,
        steps=[
            consent_step(key),
            IdentityHygiene(key),
            privacy_step(key, policy, salts=salts),
            device_step,
            GeoStep(geo),
        ],
        privacy=policy,
    )


def batches(scenario: str, count: int, size: int = 20) -> list[list[dict[str, Any]]]:
    """``count`` request bodies' messages (parsed JSON, as the http layer hands them on)."""
    templates = batch_templates()[:size]
    ts = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    out = []
    for n in range(count):
        base = uuid.uuid4().hex[:12]
        messages = [orjson.loads(fill(t, base, ts, f"v{n // 5}")) for t in templates]
        if scenario == "browser":
            for message in messages:
                message["userId"] = f"user-{n // 5}@example.org"
        out.append(messages)
    return out


def context(site: Site, now: datetime) -> RequestContext:
    """A request's context as api/ingest.py builds it for a browser's batch."""
    return RequestContext(
        site=site,
        received_at=now,
        ip=IP,
        user_agent=UA,
        headers=Headers(raw=[(k.encode(), v.encode("latin-1")) for k, v in HEADERS]),
        ledger=LedgerView(),
    )


def _cpu_us() -> float:
    return time.process_time_ns() / 1000


class Parts:
    """Time spent per part, in µs of CPU, with the timer's own cost taken off."""

    def __init__(self) -> None:
        self.us: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.overhead = 0.0

    def add(self, name: str, us: float) -> None:
        self.us[name] = self.us.get(name, 0.0) + us - self.overhead
        self.calls[name] = self.calls.get(name, 0) + 1

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.thread_time_ns()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(name, (time.thread_time_ns() - start) / 1000)

        return timed


@contextmanager
def instrumented(pipeline: Pipeline, parts: Parts) -> Iterator[Pipeline]:
    """``pipeline`` with a timer around each part (module functions patched meanwhile)."""
    names = ["limits", "message_id", "validate", "to_row"]
    saved = {
        "limit_errors": process.limit_errors,
        "message_id": process.message_id,
        "validate": process.validate,
        "to_row": process.to_row,
        "orjson": process.orjson,
    }

    class _Orjson:
        @staticmethod
        def dumps(value: Any, *args: Any, **kwargs: Any) -> bytes:
            start = time.thread_time_ns()
            try:
                return orjson.dumps(value, *args, **kwargs)
            finally:
                parts.add("limits", (time.thread_time_ns() - start) / 1000)

    process.limit_errors = parts.wrap(names[0], saved["limit_errors"])  # type: ignore[assignment]
    process.message_id = parts.wrap(names[1], saved["message_id"])  # type: ignore[assignment]
    process.validate = parts.wrap(names[2], saved["validate"])  # type: ignore[assignment]
    process.to_row = parts.wrap(names[3], saved["to_row"])  # type: ignore[assignment]
    process.orjson = _Orjson  # type: ignore[assignment]
    step_names = ["consent", "identity_hygiene", "privacy", "device", "geo"]
    steps = [parts.wrap(n, s) for n, s in zip(step_names, pipeline.steps, strict=True)]
    try:
        yield replace(pipeline, steps=steps)
    finally:
        for name, value in saved.items():
            setattr(process, name, value)


def timer_overhead() -> float:
    parts = Parts()
    noop = parts.wrap("noop", lambda: None)
    for _ in range(20_000):
        noop()
    start = time.thread_time_ns()
    for _ in range(20_000):
        pass
    loop = (time.thread_time_ns() - start) / 1000 / 20_000
    return parts.us["noop"] / 20_000 - loop


def run_all(pipeline: Pipeline, site: Site, bodies: list[list[dict[str, Any]]]) -> int:
    rows = 0
    for messages in bodies:
        now = datetime.now(UTC)
        plan = pipeline.run(messages, context(site, now))
        assert not plan.failures and not plan.refused, (plan.failures[:1], plan.refused)
        rows += len(plan.rows)
    return rows


def measure(
    scenario: str, count: int, repeat: int, profile: Path | None, size: int = 20
) -> dict[str, float]:
    """µs per message: ``total`` (unwrapped), each part, and the writer's row values."""
    now = datetime.now(UTC)
    mode = "anonymous" if scenario == "anonymous" else "implied"
    site = Site(1, "bench", "wk", consent_mode=mode, settings={"allow_bots": False})
    with tempfile.TemporaryDirectory() as tmp:
        geo = _geo_db(Path(tmp))
        pipeline = build(geo, now)
        bodies = batches(scenario, count, size)
        messages = count * len(bodies[0])
        run_all(pipeline, site, bodies[: max(1, count // 10)])  # warm caches and imports
        best = float("inf")
        for _ in range(repeat):
            start = _cpu_us()
            run_all(pipeline, site, bodies)
            best = min(best, (_cpu_us() - start) / messages)
        if profile is not None:
            profiler = cProfile.Profile()
            profiler.enable()
            run_all(pipeline, site, bodies)
            profiler.disable()
            profiler.dump_stats(str(profile))
        parts = Parts()
        parts.overhead = timer_overhead()
        with instrumented(pipeline, parts) as timed:
            run_all(timed, site, bodies)
        plans = [pipeline.run(m, context(site, now)).rows for m in bodies]
        start = _cpu_us()
        for rows in plans:
            for row in rows:
                writer._event_values(row)
        values = (_cpu_us() - start) / messages
        if geo is not None:
            geo.close()
    figures = {"total": best}
    figures.update({name: us / messages for name, us in parts.us.items()})
    named = sum(us for us in parts.us.values()) / messages
    # The rest of Pipeline.run (loop, drafts, row columns): what the parts leave of the total.
    figures["other (loop, draft, row columns)"] = max(0.0, best - named)
    figures["writer _event_values (not in total)"] = values
    return figures


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=500, help="requests of 20 (500)")
    parser.add_argument("--repeat", type=int, default=3, help="unwrapped runs, best kept (3)")
    parser.add_argument("--scenario", action="append", choices=SCENARIOS, help="(all)")
    parser.add_argument("--size", type=int, default=20, help="messages per request (20)")
    parser.add_argument("--profile", type=Path, help="cProfile output (first scenario)")
    args = parser.parse_args(argv)
    results: dict[str, dict[str, float]] = {}
    for i, scenario in enumerate(args.scenario or SCENARIOS):
        results[scenario] = measure(
            scenario, args.batches, args.repeat, args.profile if i == 0 else None, args.size
        )
    names = list(next(iter(results.values())))
    print(f"{'µs per message':<38}" + "".join(f"{s:>11}" for s in results))
    for name in names:
        print(f"{name:<38}" + "".join(f"{r.get(name, 0.0):>11.1f}" for r in results.values()))
    return results


if __name__ == "__main__":
    main()
