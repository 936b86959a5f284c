"""First-party assets: the tracker script, the demo page and its recent-events feed."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from footfall.state import app_state
from footfall.storage.sites import DEMO_SITE, recent_events

router = APIRouter()
PACKAGE_DIR = Path(__file__).resolve().parent.parent


def tracker_file() -> Path:
    """The built, minified tracker: inside the wheel, or ``tracker_js/dist`` of a checkout."""
    packaged = PACKAGE_DIR / "_tracker" / "footfall.min.js"
    if packaged.is_file():
        return packaged
    return PACKAGE_DIR.parent.parent / "tracker_js" / "dist" / "footfall.min.js"


# Precomputed at build time (tracker_js/build.mjs) next to the script, best first.
ENCODINGS = (("br", ".br"), ("gzip", ".gz"))


@dataclass(frozen=True, slots=True)
class TrackerFiles:
    """The script as built and its compressed variants, read once per process."""

    etag: str
    variants: dict[str, bytes]  # content-coding ("identity", "br", "gzip") -> bytes


def _read_tracker_files() -> TrackerFiles:
    path = tracker_file()
    variants = {"identity": path.read_bytes()}
    for coding, suffix in ENCODINGS:
        compressed = path.with_name(path.name + suffix)
        if compressed.is_file():
            variants[coding] = compressed.read_bytes()
    return TrackerFiles(hashlib.sha256(variants["identity"]).hexdigest()[:16], variants)


def _tracker_files(request: Request) -> TrackerFiles:
    """The app's copy, read on its first request for the script (per app, not per module:
    each app, like each test's collector, serves the files as they were when it started
    serving them)."""
    files: TrackerFiles | None = getattr(request.app.state, "tracker_files", None)
    if files is None:
        files = request.app.state.tracker_files = _read_tracker_files()
    return files


def accepted_codings(header: str | None) -> set[str]:
    """Content-codings an ``Accept-Encoding`` header accepts (``q=0`` refuses one)."""
    accepted = set()
    for item in (header or "").lower().split(","):
        coding, _, params = item.strip().partition(";")
        if not coding.strip():
            continue
        quality = params.strip().removeprefix("q=").strip() if "q=" in params else "1"
        try:
            if float(quality) > 0:
                accepted.add(coding.strip())
        except ValueError:
            continue
    return accepted


async def tracker_script(request: Request) -> Response:
    """Served at a path not named like a tracker (``FOOTFALL_TRACKER_PATH``), cacheable,
    brotli- or gzip-compressed as the client accepts."""
    try:
        files = _tracker_files(request)
    except FileNotFoundError:
        return Response("tracker not built: run `npm run build` in tracker_js/", 404)
    accepted = accepted_codings(request.headers.get("accept-encoding"))
    coding = next((c for c, _ in ENCODINGS if c in accepted and c in files.variants), "identity")
    # One ETag per representation: a cache must not answer a gzip request with brotli.
    etag = f'"{files.etag}-{coding}"' if coding != "identity" else f'"{files.etag}"'
    headers = {
        "Cache-Control": "public, max-age=3600, stale-while-revalidate=86400",
        "ETag": etag,
        "Vary": "Accept-Encoding",
        "Access-Control-Allow-Origin": "*",
    }
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    if coding != "identity":
        headers["Content-Encoding"] = coding
    return Response(
        files.variants[coding], media_type="application/javascript; charset=utf-8", headers=headers
    )


@router.get("/demo", include_in_schema=False)
async def demo_page(request: Request) -> Response:
    state = app_state(request)
    if not state.demo_write_key:
        return Response(status_code=404)
    html = (PACKAGE_DIR / "web" / "demo.html").read_text()
    html = html.replace("{{WRITE_KEY}}", state.demo_write_key).replace(
        "{{TRACKER_PATH}}", state.settings.tracker_path
    )
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})


@lru_cache(maxsize=1)
def _sample_wav(seconds: int = 30, rate: int = 8000) -> bytes:
    """A short generated tone, so the demo's media player needs no codec and no download."""
    import io
    import math
    import wave

    frames = bytes(
        int(128 + 60 * math.sin(2 * math.pi * (220 + 110 * (i // (rate * 5) % 3)) * i / rate))
        for i in range(seconds * rate)
    )
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(1)
        out.setframerate(rate)
        out.writeframes(frames)
    return buffer.getvalue()


@router.get("/demo/sample.wav", include_in_schema=False)
async def demo_media(request: Request) -> Response:
    if not app_state(request).demo_write_key:
        return Response(status_code=404)
    return Response(
        _sample_wav(), media_type="audio/wav", headers={"Cache-Control": "max-age=3600"}
    )


@router.get("/demo/api/events", include_in_schema=False)
async def demo_events(request: Request, limit: int = 25) -> Response:
    state = app_state(request)
    if not state.demo_write_key:
        return Response(status_code=404)
    rows = await recent_events(state.pool, DEMO_SITE, max(1, min(limit, 100)))
    return Response(orjson.dumps({"events": rows}), media_type="application/json")
