"""A site's broken schema file never fails a request (issue 9, item 10)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx

from tests.support import Collector


def test_a_broken_file_in_a_site_schema_dir_is_not_a_500(
    collector: Collector, tmp_path: Path
) -> None:
    schema_dir = tmp_path / "schemas"
    (schema_dir / "signed_up").mkdir(parents=True)
    (schema_dir / "signed_up" / "1-0-0.json").write_text(
        json.dumps({"type": "object", "required": ["plan"]})
    )
    (schema_dir / "half_written").mkdir()
    (schema_dir / "half_written" / "1-0-0.json").write_text('{"type": ')
    site_id, key = collector.make_site(settings={"schema_dir": str(schema_dir), "strict": True})
    batch = [
        {"type": "track", "event": "Signed Up", "anonymousId": "a", "messageId": str(uuid.uuid4()),
         "properties": {"plan": "pro"}},
        {"type": "track", "event": "Signed Up", "anonymousId": "a", "messageId": str(uuid.uuid4())},
        {"type": "track", "event": "Half Written", "anonymousId": "a", "messageId": str(uuid.uuid4())},
    ]  # fmt: skip
    for _ in range(2):  # and the second time, nothing is read again
        response = httpx.post(
            collector.base_url + "/v1/batch", json={"batch": batch}, auth=(key, "")
        )
        assert response.status_code == 200
        body = response.json()
        assert [f["reason"] for f in body["failed"]] == ["invalid_properties", "unknown_event"]
    assert len(collector.events(site_id)) == 1
