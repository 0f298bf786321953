"""The package's layers (docs/architecture.md): no import points back up a layer, and
the two transports share the core instead of importing each other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "proxy"
#: Each sub-package's layer: a module may import from its own layer and the ones below.
LAYERS = {
    "http": 0,
    "observe": 1,
    "redis": 1,
    "tokens": 2,
    "session": 3,
    "callers": 3,
    "forward": 4,
    "web": 4,
}
#: Modules every layer may use: the error hierarchy and the settings.
SHARED = {"proxy.errors", "proxy.config"}


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.parent.name in LAYERS)


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name == "proxy" or name.startswith("proxy.")}


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_no_module_imports_from_a_layer_above_its_own(path: Path) -> None:
    layer = LAYERS[path.parent.name]
    # Anything outside the layers (app.py, serve.py, the emulator) is wiring, above all.
    above = sorted(
        name
        for name in _imports(path) - SHARED
        if LAYERS.get(name.partition(".")[2].partition(".")[0], len(LAYERS)) > layer
    )
    assert above == []


def test_the_package_uses_only_absolute_imports() -> None:
    relative = [
        str(path.relative_to(PACKAGE.parent))
        for path in sorted(PACKAGE.rglob("*.py"))
        if any(
            isinstance(node, ast.ImportFrom) and node.level
            for node in ast.walk(ast.parse(path.read_text()))
        )
    ]
    assert relative == []


def test_the_front_knows_nothing_of_the_forwarding_core() -> None:
    front = _imports(PACKAGE / "http" / "front.py")
    assert not {name for name in front if name.startswith(("proxy.forward", "proxy.web"))}


def test_the_two_transports_do_not_import_each_other() -> None:
    assert "proxy.forward.lane" not in _imports(PACKAGE / "forward" / "handler.py")
    assert "proxy.forward.handler" not in _imports(PACKAGE / "forward" / "lane.py")
