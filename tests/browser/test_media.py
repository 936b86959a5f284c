"""Video Playback events on HTML5 media, with a WAV generated here (no codecs needed)."""

from __future__ import annotations

import io
import math
import struct
import wave

import pytest

pytestmark = pytest.mark.browser


def tone(seconds: float = 2.0, rate: int = 8000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(
            b"".join(
                struct.pack("<h", int(3000 * math.sin(i / 8))) for i in range(int(seconds * rate))
            )
        )
    return buf.getvalue()


def serve_media(route, data: bytes) -> None:
    """Answer Range requests (206), as a real file server does: without them nothing is seekable."""
    rng = route.request.headers.get("range")
    if not rng:
        route.fulfill(
            status=200, body=data, headers={"Content-Type": "audio/wav", "Accept-Ranges": "bytes"}
        )
        return
    start_s, _, end_s = rng.removeprefix("bytes=").partition("-")
    start, end = int(start_s or 0), int(end_s) if end_s else len(data) - 1
    route.fulfill(
        status=206,
        body=data[start : end + 1],
        headers={
            "Content-Type": "audio/wav",
            "Accept-Ranges": "bytes",
            "Content-Range": f"bytes {start}-{end}/{len(data)}",
        },
    )


@pytest.fixture
def media_site(site):
    data = tone()
    site.context.route(site.base + "/t/tone.wav", lambda route: serve_media(route, data))
    return site


def props(site, name):
    return [r["properties"] for r in site.named("Video " + name)]


def test_media_added_later_full_play_through(media_site):
    site = media_site
    page = site.open(
        "/t/media.html", init={"pageviews": False, "scroll": False, "engagement": False}
    )
    # Created after the tracker loaded: capturing listeners still see it.
    page.evaluate("""() => new Promise(done => {
        const a = document.createElement('audio')
        a.id = 'song'; a.title = 'Tone'; a.src = '/t/tone.wav'
        a.addEventListener('ended', () => setTimeout(done, 50))
        document.body.append(a)
        a.play()
    })""")
    site.wait_for("Video Playback Completed")
    site.settle()
    [started] = props(site, "Playback Started")
    assert (
        started["video_id"] == "song"
        and started["title"] == "Tone"
        and started["media_type"] == "audio"
    )
    assert started["src"] == site.base + "/t/tone.wav"
    # 'playing' is dispatched after playback began: on a loaded machine a few ms have played.
    assert started["position"] == pytest.approx(0, abs=0.05)
    assert started["total_length"] == 2 and started["percent"] == 0
    marks = props(site, "Progress")
    assert [m["percent"] for m in marks] == [10, 25, 50, 75, 90]
    assert all(m["position"] >= m["percent"] / 100 * 2 - 0.01 for m in marks)
    [done] = props(site, "Playback Completed")
    assert done["percent"] == 100 and done["position"] == 2
    assert not props(site, "Playback Paused")  # the pause that precedes 'ended' is not the user's


def test_pause_resume_seek_and_marks_once_per_play_through(media_site):
    site = media_site
    page = site.open(
        "/t/media2.html",
        '<video id="v" src="/t/tone.wav" aria-label="Clip"></video>',
        init={"pageviews": False, "scroll": False, "engagement": False},
    )
    page.evaluate("""async () => {
        const v = document.getElementById('v'), wait = ms => new Promise(r => setTimeout(r, ms))
        const seek = t => new Promise(r => { v.addEventListener('seeked', r, {once: true}); v.currentTime = t })
        await v.play(); await wait(700)          // past 25 %
        v.pause(); await wait(100)
        await seek(0.1); await seek(0.2)         // back and forth: no marks again
        await v.play(); await wait(500)
        await seek(1.5)                         // forward: marks up to 75 % are reached
        await new Promise(r => v.addEventListener('ended', r, {once: true}))
        await wait(50)
        await v.play()                          // a new play-through from the start
        await new Promise(r => v.addEventListener('ended', r, {once: true}))
    }""")
    site.wait_for("Video Playback Completed", 2)
    site.settle()
    # Two marks crossed by one seek share a timestamp, so compare as a multiset.
    assert sorted(m["percent"] for m in props(site, "Progress")) == sorted([10, 25, 50, 75, 90] * 2)
    assert len(props(site, "Playback Started")) == 2
    [paused] = props(site, "Playback Paused")
    assert (
        0.4 < paused["position"] < 1.2
        and paused["title"] == "Clip"
        and paused["media_type"] == "video"
    )
    resumed = props(site, "Playback Resumed")
    assert len(resumed) == 1 and resumed[0]["position"] == pytest.approx(0.2, abs=0.05)
    seeks = [s["position"] for s in props(site, "Playback Seek Completed")]
    assert seeks[:3] == [
        pytest.approx(0.1, abs=0.05),
        pytest.approx(0.2, abs=0.05),
        pytest.approx(1.5, abs=0.05),
    ]


def test_ignored_media_sends_nothing(media_site):
    site = media_site
    page = site.open(
        "/t/media3.html",
        '<div data-ff-ignore><audio id="a" src="/t/tone.wav"></audio></div>',
        init={"pageviews": False, "scroll": False, "engagement": False},
    )
    page.evaluate("document.getElementById('a').play()")
    page.wait_for_timeout(600)
    assert site.settle() == []
