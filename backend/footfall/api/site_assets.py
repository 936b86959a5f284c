"""First-party assets: the tracker script, the demo page and its recent-events feed."""

from __future__ import annotations

import hashlib
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


@lru_cache(maxsize=1)
def _tracker_bytes() -> tuple[bytes, str]:
    data = tracker_file().read_bytes()
    return data, '"' + hashlib.sha256(data).hexdigest()[:16] + '"'


async def tracker_script(request: Request) -> Response:
    """Served at a path not named like a tracker (``FOOTFALL_TRACKER_PATH``), cacheable."""
    try:
        data, etag = _tracker_bytes()
    except FileNotFoundError:
        return Response("tracker not built: run `npm run build` in tracker_js/", 404)
    headers = {
        "Cache-Control": "public, max-age=3600, stale-while-revalidate=86400",
        "ETag": etag,
        "Access-Control-Allow-Origin": "*",
    }
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(data, media_type="application/javascript; charset=utf-8", headers=headers)


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


@router.get("/demo/api/events", include_in_schema=False)
async def demo_events(request: Request, limit: int = 25) -> Response:
    state = app_state(request)
    if not state.demo_write_key:
        return Response(status_code=404)
    rows = await recent_events(state.pool, DEMO_SITE, max(1, min(limit, 100)))
    return Response(orjson.dumps({"events": rows}), media_type="application/json")
