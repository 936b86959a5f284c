"""Reading a request body within limits: size, gzip (bounded while inflating), JSON."""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator
from typing import Any

import orjson

from footfall.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType


async def read_body(
    chunks: AsyncIterator[bytes], content_encoding: str | None, limit: int
) -> bytes:
    """The (decompressed) body, refusing with 413 as soon as it passes ``limit`` bytes.

    A gzip body is inflated chunk by chunk with ``max_length``, so a gzip bomb
    is stopped after ``limit`` bytes of output instead of being buffered.
    """
    encoding = (content_encoding or "identity").strip().lower()
    if encoding not in ("identity", "gzip", "deflate", "x-gzip"):
        raise UnsupportedMediaType(f"Content-Encoding {encoding!r} is not supported")
    inflater = None if encoding == "identity" else zlib.decompressobj(wbits=47)  # gzip or zlib
    out = bytearray()
    received = 0
    try:
        async for chunk in chunks:
            received += len(chunk)
            if received > limit:
                raise PayloadTooLarge(f"request body over {limit} bytes")
            if inflater is None:
                out += chunk
                continue
            data = chunk
            while data:
                out += inflater.decompress(data, limit + 1 - len(out))
                if len(out) > limit:
                    raise PayloadTooLarge(f"decompressed body over {limit} bytes")
                data = inflater.unconsumed_tail
        if inflater is not None:
            out += inflater.flush()
            if not inflater.eof:
                raise BadRequest("truncated compressed body")
    except zlib.error as exc:
        raise BadRequest(f"body is not valid {encoding}: {exc}") from exc
    if len(out) > limit:
        raise PayloadTooLarge(f"body over {limit} bytes")
    return bytes(out)


def parse_json(body: bytes) -> Any:
    """Parse JSON, answering 400 (never 500) on anything malformed."""
    if not body.strip():
        raise BadRequest("empty body")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"malformed JSON: {exc}") from exc
