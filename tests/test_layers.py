"""The architecture's import rules (DESIGN.md), checked on the source text."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "medloop"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_import_rules(path: Path) -> None:
    relative = path.relative_to(PACKAGE)
    top = relative.parts[0]
    imports = _imports(path)
    roots = {name.split(".")[0] for name in imports}
    if top != "web":
        assert "fastapi" not in roots, "only medloop.web may import FastAPI"
    if top != "learning":
        assert not roots & {"torch", "monai"}, "only medloop.learning may import torch/MONAI"
    if top in {"aggregation", "annotation", "review", "ingest", "learning", "precision"}:
        assert "sqlalchemy" not in roots, "algorithms never touch the database"
        assert not any(n.startswith("medloop.store") for n in imports)
        assert not any(n.startswith("medloop.workflows") for n in imports)


def test_the_command_line_starts_without_the_heavy_libraries() -> None:
    """`medloop --help` and light commands import workflows on first use, so none of the
    libraries that take seconds to load is loaded just to list the commands."""
    heavy = ("torch", "monai", "sklearn", "sksurv", "scipy", "sqlalchemy", "fastapi")
    script = f"import sys, medloop.cli; print([m for m in {heavy!r} if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_every_workflows_name_resolves() -> None:
    from medloop import workflows

    for name, home in workflows._HOMES.items():
        module = importlib.import_module(f"medloop.workflows.{home}")
        assert getattr(workflows, name) is getattr(module, name)
    assert workflows.__all__ == sorted(workflows._HOMES)
    assert workflows.precision.__name__ == "medloop.workflows.precision"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        workflows.nope  # type: ignore[attr-defined]  # noqa: B018
