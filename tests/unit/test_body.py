"""Body reading: size limits, bounded gzip inflation, JSON errors."""

from __future__ import annotations

import asyncio
import gzip
import zlib

import pytest

from footfall.api.body import parse_json, read_body
from footfall.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType


def _read(data: bytes, encoding: str | None, limit: int, chunk: int = 1000) -> bytes:
    async def chunks():
        for i in range(0, len(data), chunk):
            yield data[i : i + chunk]

    return asyncio.run(read_body(chunks(), encoding, limit))


def test_plain_and_gzip_and_deflate_round_trip() -> None:
    payload = b'{"batch": []}' * 100
    assert _read(payload, None, 10_000) == payload
    assert _read(gzip.compress(payload), "gzip", 10_000) == payload
    assert _read(zlib.compress(payload), "deflate", 10_000) == payload


def test_limit_counts_decompressed_bytes() -> None:
    payload = b"a" * 20_000
    with pytest.raises(PayloadTooLarge):
        _read(gzip.compress(payload), "gzip", 10_000)
    assert _read(gzip.compress(payload), "gzip", 20_000) == payload


def test_gzip_bomb_stops_at_the_limit() -> None:
    bomb = gzip.compress(b"\0" * (50 * 1024 * 1024))
    with pytest.raises(PayloadTooLarge):
        _read(bomb, "gzip", 500 * 1024, chunk=len(bomb))  # one chunk: inflated bounded anyway


def test_errors() -> None:
    with pytest.raises(PayloadTooLarge):
        _read(b"x" * 11, None, 10)
    with pytest.raises(BadRequest):
        _read(b"garbage", "gzip", 100)
    with pytest.raises(BadRequest):
        _read(gzip.compress(b"x" * 1000)[:-20], "gzip", 10_000)  # truncated
    with pytest.raises(UnsupportedMediaType):
        _read(b"{}", "br", 100)
    with pytest.raises(BadRequest):
        parse_json(b"{")
    with pytest.raises(BadRequest):
        parse_json(b"   ")
    assert parse_json(b'{"a": 1}') == {"a": 1}
