"""Spyne is imported only under gateway/soap/binding/, so replacing it means replacing that subpackage."""

from __future__ import annotations

import ast
from pathlib import Path

import gateway

PACKAGE = Path(gateway.__file__).resolve().parent
BINDING = PACKAGE / "soap" / "binding"


def _imported_modules(tree: ast.AST) -> set[str]:
    """Top-level names of every module ``tree`` imports, wherever the import statement sits."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in (
            "import_module",
            "__import__",
        ):
            found.update(
                arg.value.split(".")[0]
                for arg in node.args[:1]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str)
            )
    return found


def spyne_importers() -> list[str]:
    """Modules of the gateway package outside gateway/soap/binding/ that import spyne."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.is_relative_to(BINDING):
            continue
        if "spyne" in _imported_modules(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            offenders.append(str(path.relative_to(PACKAGE.parent)))
    return offenders


def test_only_the_binding_imports_spyne() -> None:
    assert spyne_importers() == [], "import Spyne only in gateway/soap/binding/ (README, The SOAP interface)"


def test_the_check_sees_every_form_of_import() -> None:
    for source in (
        "import spyne",
        "import spyne.const as c",
        "from spyne import Fault",
        "from spyne.protocol.soap import Soap11",
        "def f():\n    from spyne.model import Unicode\n",
        "import importlib\nimportlib.import_module('spyne.server')",
    ):
        assert "spyne" in _imported_modules(ast.parse(source)), source
    assert "spyne" not in _imported_modules(ast.parse("from gateway.soap.binding import OPERATIONS"))
    binding_files = sorted(p.name for p in BINDING.glob("*.py"))
    assert {"application.py", "service.py", "types.py"} <= set(binding_files)
