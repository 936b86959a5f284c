"""docs/configuration.md lists every setting, docs/operations.md every metric."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import REGISTRY

from footfall.api import metrics  # noqa: F401  (registers the metrics)
from footfall.settings import Settings

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_every_setting_is_in_the_configuration_reference() -> None:
    text = (DOCS / "configuration.md").read_text()
    missing = [
        f"FOOTFALL_{name.upper()}"
        for name in Settings.model_fields
        if f"`FOOTFALL_{name.upper()}`" not in text
    ]
    if "`DATABASE_URL`" in text:
        missing = [m for m in missing if m != "FOOTFALL_DATABASE_URL"]
    assert missing == []


def test_every_metric_is_in_the_operations_guide() -> None:
    text = (DOCS / "operations.md").read_text()
    names = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in REGISTRY.collect()
        if family.name.startswith("footfall_")
    }
    documented = set(re.findall(r"`(footfall_[a-z_]+)", text))
    assert names and names <= documented, names - documented
