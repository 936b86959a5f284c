"""One place per rule, no hidden state, no dead names (issue 9, items 23, 24, 25).

Static checks over the package source: each one names the rule it keeps.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import footfall

PACKAGE = Path(footfall.__file__).resolve().parent
SQL = re.compile(r"\b(SELECT|INSERT INTO|UPDATE \w+ SET|DELETE FROM|CREATE|ALTER|DROP)\b")
# (module, name) of module-level mutable state allowed to stay: none.
KNOWN_CACHES: set[tuple[str, str]] = set()


def _modules(*folders: str) -> list[tuple[str, ast.Module]]:
    roots = [PACKAGE / f for f in folders] if folders else [PACKAGE]
    found = []
    for root in roots:
        for path in sorted(root.rglob("*.py") if root.is_dir() else [root]):
            found.append((str(path.relative_to(PACKAGE)), ast.parse(path.read_text())))
    return found


def test_no_sql_in_the_http_and_cli_layers() -> None:
    offenders = []
    for name, tree in _modules("api", "cli"):
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and SQL.search(node.value)
            ):
                offenders.append(f"{name}:{node.lineno}: {node.value[:60]!r}")
            if isinstance(node, ast.Attribute) and node.attr in ("execute", "executemany"):
                offenders.append(f"{name}:{node.lineno}: .{node.attr}()")
    assert offenders == []


def test_shared_admin_helpers_are_defined_once() -> None:
    defined: dict[str, list[str]] = {}
    for name, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                defined.setdefault(node.name, []).append(name)
    for helper in ("_site_id", "_keyring", "_ensure_demo"):
        assert helper not in defined, (helper, defined.get(helper))
    assert defined["site_id"] == ["operations.py"]
    assert defined["keyring"] == ["operations.py"]
    assert defined["ensure_demo_site"] == ["storage/sites.py"]


def test_storage_does_not_run_the_pipeline() -> None:
    for name, tree in _modules("storage"):
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert node.module != "footfall.pipeline.process", name
                assert not node.module.startswith("footfall.app"), name


def test_the_demo_site_is_created_in_one_place() -> None:
    callers = [
        name
        for name, tree in _modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", getattr(node.func, "attr", None)) == "ensure_demo_site"
    ]
    assert callers == ["app.py"]


def test_no_module_level_mutable_caches() -> None:
    mutable = (ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp, ast.SetComp)
    factories = {"dict", "list", "set", "defaultdict", "OrderedDict", "deque"}
    offenders = []
    for name, tree in _modules():
        for node in tree.body:
            if isinstance(node, ast.Assign):
                targets, value = node.targets, node.value
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                targets, value = [node.target], node.value
            else:
                continue
            is_mutable = isinstance(value, mutable) or (
                isinstance(value, ast.Call) and getattr(value.func, "id", "") in factories
            )
            for target in targets:
                # UPPER_CASE names are constants by convention (never written to).
                if (
                    isinstance(target, ast.Name)
                    and is_mutable
                    and not target.id.isupper()
                    and not target.id.startswith("__")
                    and (name, target.id) not in KNOWN_CACHES
                ):
                    offenders.append(f"{name}: {target.id}")
    assert offenders == []


def test_the_cli_never_writes_the_environment() -> None:
    offenders = []
    for name, tree in _modules("cli"):
        for node in ast.walk(tree):
            target = None
            if isinstance(node, ast.Assign | ast.AugAssign | ast.Delete):
                targets = (
                    node.targets if isinstance(node, ast.Assign | ast.Delete) else [node.target]
                )
                for t in targets:
                    if isinstance(t, ast.Subscript) and ast.unparse(t.value) == "os.environ":
                        target = t
            if isinstance(node, ast.Call) and ast.unparse(node.func) in (
                "os.environ.update",
                "os.environ.setdefault",
                "os.putenv",
            ):
                target = node
            if target is not None:
                offenders.append(f"{name}:{node.lineno}")
    assert offenders == []


def test_class_names_are_unique() -> None:
    seen: dict[str, list[str]] = {}
    for name, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                seen.setdefault(node.name, []).append(name)
    assert {k: v for k, v in seen.items() if len(v) > 1} == {}


def test_docstrings_name_only_what_exists() -> None:
    defined = set()
    for _, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                defined.add(node.name)
            elif isinstance(node, ast.Assign):
                defined |= {t.id for t in node.targets if isinstance(t, ast.Name)}
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                defined.add(node.target.id)
    missing = []
    for name, tree in _modules():
        for node in ast.walk(tree):
            if not isinstance(
                node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef
            ):
                continue
            for ref in re.findall(
                r":(?:func|class|meth|data):`~?([\w.]+)`", ast.get_docstring(node) or ""
            ):
                if ref.split(".")[-1] not in defined:
                    missing.append(f"{name}: {ref}")
    assert missing == []


def test_policy_has_no_unread_consent_switches() -> None:
    """honor_gpc / honor_dnt are read by the consent step from the site settings (one place)."""
    from footfall.pipeline.privacy import Policy

    assert not {"honor_gpc", "honor_dnt"} & set(Policy.__dataclass_fields__)
