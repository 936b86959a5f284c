"""Clock-skew correction, timestamp parsing and message ids (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from footfall.pipeline.normalize import corrected_timestamp, message_id, parse_timestamp
from footfall.pipeline.validate import Invalid

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)


def test_skew_corrected_with_sent_at() -> None:
    # Client clock 1 h behind; event 5 s before sending.
    sent = NOW - timedelta(hours=1)
    original = sent - timedelta(seconds=5)
    assert corrected_timestamp(NOW, sent, original) == NOW - timedelta(seconds=5)


def test_without_sent_at_client_time_is_used_but_clamped() -> None:
    past = NOW - timedelta(days=2)
    assert corrected_timestamp(NOW, None, past) == past
    assert corrected_timestamp(NOW, None, NOW + timedelta(hours=3)) == NOW


def test_event_after_send_is_clamped_to_received() -> None:
    # originalTimestamp later than sentAt would put the event in the future.
    assert corrected_timestamp(NOW, NOW, NOW + timedelta(minutes=1)) == NOW


def test_missing_original_is_received_at() -> None:
    assert corrected_timestamp(NOW, NOW - timedelta(seconds=3), None) == NOW


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-22T12:00:00Z", NOW),
        ("2026-11-22T12:00:00.000Z", NOW),
        ("2026-11-22T13:00:00+01:00", NOW),
        ("2026-11-22T12:00:00", NOW),  # naive means UTC
    ],
)
def test_parse_timestamp(text: str, expected: datetime) -> None:
    assert parse_timestamp(text, "timestamp") == expected


@pytest.mark.parametrize("bad", ["yesterday", 1732276800, "2026-13-40T00:00:00Z", {"t": 1}])
def test_parse_timestamp_rejects(bad: object) -> None:
    with pytest.raises(Invalid) as caught:
        parse_timestamp(bad, "sentAt")
    assert caught.value.reason == "invalid_timestamp"
    assert caught.value.errors[0]["path"] == "/sentAt"


def test_message_id_prefers_client_id_else_stable_content_hash() -> None:
    assert message_id({"messageId": "m-1"}, 1) == "m-1"
    a = {"type": "track", "event": "X", "anonymousId": "a", "sentAt": "2026-01-01T00:00:00Z"}
    b = {**a, "sentAt": "2026-01-01T00:09:00Z"}  # a retry re-stamps sentAt only
    assert message_id(a, 1) == message_id(b, 1)
    assert message_id(a, 1) != message_id(a, 2)
    assert message_id(a, 1) != message_id({**a, "event": "Y"}, 1)
