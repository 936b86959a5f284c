"""Schemathesis against the served ``/openapi.json`` (issue 9): no operation answers 5xx.

A collector of its own (admin API on, a site with an allowed origin) serves its
OpenAPI document; schemathesis generates requests for every operation from it —
the ingest bodies are described there (api/openapi.py) — and sends them over
real HTTP. Bounded and deterministic: a fixed number of examples per operation,
derandomized, so the run is the same in CI every time and stays within about
two minutes on a small machine.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import hypothesis
import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.support import ServerThread, collector_settings, make_site

ADMIN_TOKEN = "fuzz-admin-token-0123456789abcdef"
# Examples per operation: more for the /v1 API (what the internet sends), fewer
# for the admin API, so the run stays within about two minutes as the API grows
# (measured: 48 s of CPU for 16 operations on the 2-core development machine).
INGEST_EXAMPLES = 200
OTHER_EXAMPLES = 100


@pytest.fixture(scope="module")
def fuzz_server(database: str) -> Iterator[tuple[ServerThread, str]]:
    _, key = make_site(database, allowed_origins=["https://shop.example"], name="fuzz-site")
    settings = collector_settings(database, admin_token=ADMIN_TOKEN)
    server = ServerThread(settings).start()
    yield server, key
    server.stop()


def test_no_server_errors(fuzz_server: tuple[ServerThread, str]) -> None:
    server, key = fuzz_server
    schema = schemathesis.openapi.from_url(server.base_url + "/openapi.json")
    # A real write key (ingest) and the admin token (admin API), so generated
    # requests get past authentication and reach the handlers and the database.
    headers = {"X-Write-Key": key, "Authorization": f"Bearer {ADMIN_TOKEN}"}
    tested, errors = [], []
    for result in schema.get_all_operations():
        operation = result.ok()
        cases = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        )

        @hypothesis.settings(
            max_examples=INGEST_EXAMPLES if _public(operation.label) else OTHER_EXAMPLES,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(hypothesis.HealthCheck),
            phases=[hypothesis.Phase.generate],  # report the first failure, don't shrink
        )
        @hypothesis.given(case=cases)
        def run(case: schemathesis.Case) -> None:
            case.call_and_validate(
                base_url=server.base_url, headers=headers, checks=[not_a_server_error]
            )

        started = time.monotonic()
        try:
            run()
        except Exception as exc:  # collect every failing operation, then fail once
            errors.append(f"{operation.label}: {str(exc)[:2000]}")
        tested.append(operation.label)
        print(f"{operation.label}: {time.monotonic() - started:.1f} s")
    assert "POST /v1/{kind}" in tested and "GET /v1/pixel/{kind}" in tested
    assert not errors, "\n\n".join(errors)


def _public(label: str) -> bool:
    return label.split(" ", 1)[-1].startswith("/v1/")


def test_ingest_bodies_are_described(fuzz_server: tuple[ServerThread, str]) -> None:
    import httpx

    server, _ = fuzz_server
    spec = httpx.get(server.base_url + "/openapi.json").json()
    ingest = spec["paths"]["/v1/{kind}"]["post"]
    body = ingest["requestBody"]["content"]["application/json"]["schema"]
    titles = {option["title"] for option in body["oneOf"]}
    assert titles == {"Segment batch", "Segment message"}
    kinds = next(p for p in ingest["parameters"] if p["name"] == "kind")["schema"]["enum"]
    assert {"batch", "track", "t", "page", "identify", "alias", "group"} <= set(kinds)
    assert "writeKeyBasic" in spec["components"]["securitySchemes"]
