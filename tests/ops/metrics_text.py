"""Read values out of a collector's ``/metrics`` (Prometheus text format)."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families


def samples(base_url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = httpx.get(base_url + "/metrics", timeout=10).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(base_url: str, name: str, **labels: str) -> float:
    """The sum of ``name`` over the samples carrying ``labels`` (0 when none)."""
    wanted = set(labels.items())
    return sum(
        value
        for (sample_name, sample_labels), value in samples(base_url).items()
        if sample_name == name and wanted <= sample_labels
    )
