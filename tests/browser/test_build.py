"""The committed tracker bundle is what the sources build to, and within the gzip budget."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

TRACKER = Path(__file__).resolve().parents[2] / "tracker_js"


@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed")
def test_dist_is_reproducible_and_within_budget():
    if not (TRACKER / "node_modules" / "esbuild").is_dir():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"], cwd=TRACKER, check=True, capture_output=True
        )
    result = subprocess.run(
        ["node", "build.mjs", "--check"], cwd=TRACKER, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "check ok" in result.stdout
