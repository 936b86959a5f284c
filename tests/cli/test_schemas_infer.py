"""``footfall schemas infer``: a draft schema from stored undeclared events, then strict (item 19)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx

from footfall.schemas.registry import check_dir
from tests.cli.test_cli import footfall
from tests.support import Collector


def _post(collector: Collector, key: str, messages: list[dict]) -> dict:
    response = httpx.post(
        collector.base_url + "/v1/batch", json={"batch": messages}, auth=(key, ""), timeout=30
    )
    assert response.status_code == 200
    return response.json()


def test_infer_writes_a_draft_that_makes_strictness_one_step_away(
    collector: Collector, tmp_path: Path
) -> None:
    name = f"infer-{uuid.uuid4().hex[:8]}"
    schema_dir = tmp_path / "schemas"
    _, key = collector.make_site(name=name, settings={"schema_dir": str(schema_dir)})
    examples = [
        {"type": "track", "event": "Plan Chosen", "anonymousId": f"v{i}",
         "properties": {"plan": ["free", "pro"][i % 2], "seats": i + 1, "note": f"n{i}"}}
        for i in range(24)
    ]  # fmt: skip
    examples[0]["properties"]["coupon"] = "SPRING"
    assert _post(collector, key, examples)["accepted"] == 24

    out = footfall("schemas", "infer", "Plan Chosen", "--site", name, dsn=collector.dsn).stdout
    path = schema_dir / "plan_chosen" / "1-0-0.json"
    assert f"wrote {path} from 24 examples" in out
    assert f"footfall sites configure {name} --strict" in out
    schema = json.loads(path.read_text())
    assert check_dir(schema_dir) == []
    assert schema["required"] == ["note", "plan", "seats"]
    assert schema["properties"]["plan"] == {"type": "string", "enum": ["free", "pro"]}
    assert schema["properties"]["seats"] == {"type": "integer"}
    assert schema["properties"]["coupon"] == {"type": "string"}

    again = footfall(
        "schemas", "infer", "Plan Chosen", "--site", name, dsn=collector.dsn, check=False
    )
    assert again.returncode == 1 and "exists" in again.stderr

    footfall("sites", "configure", name, "--strict", dsn=collector.dsn)
    # The draft is in force once the collector's background reload (0.1 s in tests)
    # saw the file, long before this subprocess returned: a message breaking it fails.
    good = {**examples[1], "messageId": str(uuid.uuid4())}
    bad = {**examples[1], "messageId": str(uuid.uuid4()), "properties": {"plan": "gold"}}
    body = _post(collector, key, [good, bad])
    assert body["accepted"] == 1
    assert body["failed"][0]["reason"] == "invalid_properties"


def test_infer_without_examples_says_so(collector: Collector) -> None:
    name = f"infer-{uuid.uuid4().hex[:8]}"
    collector.make_site(name=name)
    result = footfall(
        "schemas", "infer", "Nothing Yet", "--site", name, dsn=collector.dsn, check=False
    )
    assert result.returncode == 1
    assert "no stored undeclared 'Nothing Yet' events" in result.stderr


def test_infer_to_stdout(collector: Collector) -> None:
    name = f"infer-{uuid.uuid4().hex[:8]}"
    _, key = collector.make_site(name=name)
    _post(
        collector,
        key,
        [{"type": "track", "event": "Ping", "anonymousId": "a", "properties": {"n": 1}}],
    )
    out = footfall("schemas", "infer", "Ping", "--site", name, "--stdout", dsn=collector.dsn).stdout
    assert json.loads(out)["properties"] == {"n": {"type": "integer"}}
