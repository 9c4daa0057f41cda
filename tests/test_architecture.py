"""The package's stages import only stages below them (ARCHITECTURE.md), read from the source's own
relative imports, so a new module that imports upward, or a cycle between stages, fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import tinytrain_tflm

PACKAGE = Path(tinytrain_tflm.__file__).parent

# Bottom to top; a stage may import any stage before it, never one after it.
ORDER = [
    "errors",
    "capture",
    "frontend",
    "backend",
    "target",
    "plan",
    "passes",
    "options",
    "compiler",
    "runtime",
    "firmware",
    "fleet",
    "tools",
    "cli",
    "__init__",
]


def _stage(parts: tuple[str, ...]) -> str:
    """The stage of a module given by its path parts under the package ("plan", "memory" -> plan)."""
    return parts[0].removesuffix(".py")


def _imported_stages(path: Path) -> set[str]:
    parts = path.relative_to(PACKAGE).parts
    package = list(parts[:-1])
    stages = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom) or node.level == 0:
            continue
        base = package[: len(package) - (node.level - 1)]
        if node.module:
            stages.add(_stage((*base, *node.module.split("."))))
        else:
            stages.update(_stage((*base, alias.name)) for alias in node.names)
    return stages - {_stage(parts)}


def test_stages_are_the_packages_modules():
    found = {_stage(path.relative_to(PACKAGE).parts) for path in PACKAGE.rglob("*.py")}
    assert found == set(ORDER)


def test_every_import_goes_down_the_pipeline():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        stage = _stage(path.relative_to(PACKAGE).parts)
        for imported in _imported_stages(path):
            if ORDER.index(imported) > ORDER.index(stage):
                upward.append(f"{path.relative_to(PACKAGE)} ({stage}) imports {imported}")
    assert not upward


def _private_uses(path: Path) -> list[str]:
    """Where a module reaches into another of the package's modules for a private name: `from .x import _y`,
    or `x._y` where `x` was imported from the package."""
    tree = ast.parse(path.read_text())
    modules, found = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"line {node.lineno}: from {'.' * node.level}{node.module or ''} import {alias.name}")
                modules.add(alias.asname or alias.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
            if node.attr.startswith("_") and not node.attr.startswith("__"):
                found.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_modules_use_each_other_only_by_public_names():
    """A helper two modules need is public in one of them (firmware.build for device and arduino_tflm), so
    renaming a module's private helper never breaks another module."""
    private = [f"{path.relative_to(PACKAGE)} {use}" for path in sorted(PACKAGE.rglob("*.py")) for use in _private_uses(path)]
    assert not private
