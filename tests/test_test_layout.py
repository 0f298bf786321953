"""The tests' own layout: each test module reads as a spec on its own. What tests share
lives in ``tests/helpers/``; no module imports a test module or ``conftest.py``."""

from __future__ import annotations

import ast
import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
#: A test module, or the conftest, as an import names it (or anything inside them).
FORBIDDEN = re.compile(r"tests\.(conftest|test_\w+)(\..+)?")


def _package(path: Path) -> str:
    """The dotted package ``path`` is in: ``tests``, ``tests.helpers``, ..."""
    return ".".join(path.relative_to(TESTS.parent).parent.parts)


def _imported(path: Path) -> list[tuple[int, str]]:
    """Every module ``path`` imports, as an absolute dotted name, with its line. From
    ``from package import name``, ``package.name`` too: ``name`` may be a module."""
    package = _package(path).split(".")
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.append((node.lineno, module))
            if not FORBIDDEN.fullmatch(module):
                found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def test_no_test_module_imports_another() -> None:
    offenders = [
        f"{path.relative_to(TESTS.parent)}:{line} imports {name}"
        for path in sorted(TESTS.rglob("*.py"))
        for line, name in _imported(path)
        if FORBIDDEN.fullmatch(name)
    ]
    assert offenders == []
