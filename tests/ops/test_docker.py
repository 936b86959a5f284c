"""docker/: what can be checked without a Docker engine (none runs here).

The compose file parses and wires what it should; every file the Dockerfile
copies exists in the build context and is not excluded by .dockerignore; every
environment variable handed to the collector is a setting; the image installs
the package as CI does; and the build stage's install, done here from exactly
the files the Dockerfile copies, gives a wheel with the migrations and the
tracker in it.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml

from footfall.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"


PIP_WHEEL = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]


def _instructions() -> list[tuple[str, str]]:
    """The Dockerfile as (INSTRUCTION, arguments), continuation lines joined."""
    text = (DOCKER / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def _runtime_stage() -> list[tuple[str, str]]:
    instructions = _instructions()
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


def _compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def _ignored(path: str) -> bool:
    """Whether .dockerignore leaves ``path`` (relative, posix) out of the build context."""
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        candidates = prefixes
        if pattern.startswith("**/"):
            pattern = pattern[3:]
            candidates = [
                "/".join(parts[i : j + 1]) for i in range(len(parts)) for j in range(i, len(parts))
            ]
        if any(fnmatch.fnmatchcase(c, pattern) for c in candidates):
            ignored = not negate
    return ignored


def _copied_sources() -> list[str]:
    sources = []
    for word, args in _instructions():
        if word in ("COPY", "ADD") and "--from=" not in args:
            *srcs, _dest = shlex.split(args)
            sources += [s for s in srcs if not s.startswith("--")]
    return sources


def test_compose_parses_and_wires_the_services() -> None:
    compose = _compose()
    services = compose["services"]
    assert services["postgres"]["image"] == "postgres:16"
    collector = services["collector"]
    assert (DOCKER / collector["build"]["context"]).resolve() == ROOT
    assert (ROOT / collector["build"]["dockerfile"]).is_file()
    assert collector["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "postgres:5432" in collector["environment"]["DATABASE_URL"]
    geoip = services["geoipupdate"]
    assert geoip["profiles"] == ["geoip"]
    shared = {v.split(":")[0] for v in geoip["volumes"]} & {
        v.split(":")[0] for v in collector["volumes"]
    }
    assert shared == {"geoip"} and "geoip" in compose["volumes"]
    # The GeoIP paths .env.example suggests for the geoip profile are in the shared volume.
    geo_dir = next(v.split(":")[1] for v in collector["volumes"] if v.startswith("geoip:"))
    suggested = re.findall(
        r"^#\s+(FOOTFALL_GEOIP_\w+)=(\S+)$", (DOCKER / ".env.example").read_text(), re.M
    )
    assert {name for name, _ in suggested} == {
        name for name in collector["environment"] if name.startswith("FOOTFALL_GEOIP_")
    }
    assert all(path.startswith(geo_dir + "/") for _, path in suggested)
    # Docker stops with SIGTERM then SIGKILL: leave the collector its 30 s drain.
    assert int(collector["stop_grace_period"].rstrip("s")) > 30


def test_every_collector_variable_is_a_setting() -> None:
    fields = set(Settings.model_fields)
    env = dict(_compose()["services"]["collector"]["environment"])
    for word, args in _runtime_stage():
        if word == "ENV":
            env |= dict(pair.split("=", 1) for pair in shlex.split(args))
    names = [n for n in env if n.startswith("FOOTFALL_")]
    assert names
    unknown = [n for n in names if n.removeprefix("FOOTFALL_").lower() not in fields]
    assert unknown == []
    assert "DATABASE_URL" in env  # Settings.database_url's alias
    others = {n for n in env if not n.startswith("FOOTFALL_")} - {"DATABASE_URL"}
    assert others <= {"PATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"}


def test_every_interpolated_variable_is_in_env_example() -> None:
    text = (DOCKER / "compose.yaml").read_text()
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", text))
    example = {
        line.split("=", 1)[0]
        for line in (DOCKER / ".env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }
    assert used and used <= example, used - example


def test_every_copied_file_exists_and_is_in_the_context() -> None:
    sources = _copied_sources()
    assert {"pyproject.toml", "README.md", "backend", "migrations", "tracker_js/dist"} <= set(
        sources
    )
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not _ignored(source), f"{source} is excluded by .dockerignore"
    assert (ROOT / "tracker_js/dist/footfall.min.js").is_file()
    # pyproject packs these into the wheel: they must be what the image copies.
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    included = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    assert set(included) <= set(sources)


def test_image_runs_as_non_root_with_a_python_healthcheck() -> None:
    instructions = _instructions()
    stages = [args for word, args in instructions if word == "FROM"]
    assert len(stages) == 2 and all("${PYTHON_IMAGE}" in s for s in stages)
    base = next(a for w, a in instructions if w == "ARG" and a.startswith("PYTHON_IMAGE="))
    assert base == "PYTHON_IMAGE=python:3.11-slim"
    runtime = _runtime_stage()
    users = [args for word, args in runtime if word == "USER"]
    assert users and users[-1] not in ("root", "0")
    (check,) = [args for word, args in runtime if word == "HEALTHCHECK"]
    assert "python -c" in check and "/healthz" in check and "curl" not in check
    entry = [json_list(args) for word, args in runtime if word in ("ENTRYPOINT", "CMD")]
    assert entry[0] + entry[1] == ["footfall", "serve", "--host", "0.0.0.0"]


def json_list(args: str) -> list[str]:
    import json

    value = json.loads(args)
    assert isinstance(value, list)
    return value


def test_image_installs_the_package_as_ci_does() -> None:
    runs = " && ".join(args for word, args in _instructions() if word == "RUN")
    ci = (ROOT / ".ci" / "run").read_text()
    # Both: a virtualenv, then pip install of this pyproject (CI: editable, with dev extras).
    assert re.search(r"python3 -m venv \S+", runs) and re.search(r"python3 -m venv \S+", ci)
    assert re.search(r"/bin/pip install \.( |$)", runs)
    assert re.search(r"pip install (-q )?-e '\.\[dev\]'", ci)
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.11"


@pytest.mark.slow
def test_build_stage_gives_a_wheel_with_migrations_and_tracker(tmp_path: Path) -> None:
    """The build stage's install from exactly the copied files (offline: no isolation)."""
    pytest.importorskip("hatchling")
    context = tmp_path / "src"
    for source in _copied_sources():
        target = context / source
        target.parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / source).is_dir():
            shutil.copytree(
                ROOT / source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
            )
        else:
            shutil.copy2(ROOT / source, target)
    subprocess.run(
        [*PIP_WHEEL, "-w", str(tmp_path / "wheels"), str(context)],
        check=True,
        timeout=300,
    )
    (wheel,) = (tmp_path / "wheels").glob("footfall-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "footfall/_tracker/footfall.min.js" in names
    assert "footfall/_migrations/env.py" in names
    assert any(n.startswith("footfall/_migrations/versions/") and "1500" in n for n in names)
    assert "footfall/cli/main.py" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "footfall = footfall.cli.main:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
