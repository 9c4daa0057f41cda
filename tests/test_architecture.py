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
