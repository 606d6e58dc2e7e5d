"""What gateway/ imports and what pyproject.toml declares agree, base install against extras (issue 11.3).

Every third-party package imported anywhere under gateway/ must be declared: in the base
dependencies, or in an extra, in which case the import must be inside a function (never at
module level, so the base install still imports every module) and guarded: a
``try/except ModuleNotFoundError`` around it, or ``gateway.extras.require(module, extra, ...)``
naming the right extra. Conversely every base dependency and every package of the ``postgres``
and ``client`` extras must be used by gateway/ (``require()`` counts as a use).
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from dataclasses import dataclass
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

import gateway

PACKAGE = Path(gateway.__file__).resolve().parent
PYPROJECT = PACKAGE.parent / "pyproject.toml"
RUNTIME_EXTRAS = ("postgres", "client")
FOR_DEPENDENCIES = {"legacy-cgi": "Spyne imports cgi, which Python 3.13 removed (gateway/soap/binding/compat.py)"}
"""Base dependencies gateway/ does not import itself: what a dependency needs on some Python versions."""


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert match, requirement
    return normalise(match.group(0))


@dataclass(frozen=True)
class Import:
    module: str
    path: Path
    line: int
    top_level: bool
    guarded: bool


def _imports(path: Path) -> list[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: list[Import] = []

    def visit(node: ast.AST, in_function: bool, guarded: bool) -> None:
        for child in ast.iter_child_nodes(node):
            child_function = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            child_guarded = guarded
            if isinstance(child, ast.Try):
                caught = {ast.unparse(handler.type) for handler in child.handlers if handler.type is not None}
                child_guarded = guarded or bool(caught & {"ModuleNotFoundError", "ImportError"})
            if isinstance(child, ast.Import):
                for alias in child.names:
                    found.append(Import(alias.name, path, child.lineno, not in_function, guarded))
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                found.append(Import(child.module, path, child.lineno, not in_function, guarded))
            visit(child, child_function, child_guarded)

    visit(tree, False, False)
    return found


def gateway_imports() -> list[Import]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        found.extend(_imports(path))
    return [i for i in found if i.module.split(".")[0] not in sys.stdlib_module_names | {"gateway"}]


def required_extras() -> dict[str, str]:
    """Module -> extra named in every ``require("module", "extra", ...)`` call under gateway/."""
    calls: dict[str, str] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "require" and len(node.args) >= 2:
                module, extra = (ast.literal_eval(arg) for arg in node.args[:2])
                calls[module] = extra
    return calls


def distribution(module: str) -> str:
    names = packages_distributions().get(module.split(".")[0])
    assert names, f"{module} is imported by gateway/ but no installed distribution provides it"
    return normalise(names[0])


@pytest.fixture(scope="module")
def declared() -> tuple[set[str], dict[str, set[str]]]:
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    base = {requirement_name(r) for r in project["dependencies"]}
    extras = {name: {requirement_name(r) for r in reqs} for name, reqs in project["optional-dependencies"].items()}
    return base, extras


def test_every_imported_package_is_declared(declared: tuple[set[str], dict[str, set[str]]]) -> None:
    base, extras = declared
    problems = []
    for found in gateway_imports():
        dist = distribution(found.module)
        where = f"{found.path.relative_to(PACKAGE.parent)}:{found.line} imports {found.module} ({dist})"
        if dist in base:
            continue
        in_extras = [name for name in RUNTIME_EXTRAS if dist in extras.get(name, set())]
        if not in_extras:
            problems.append(f"{where}: not declared in the base dependencies or a runtime extra")
        elif found.top_level:
            problems.append(f"{where}: from extra {in_extras[0]!r} but imported at module level")
        elif not found.guarded:
            problems.append(f"{where}: from extra {in_extras[0]!r} without a ModuleNotFoundError guard")
    assert not problems, "\n".join(problems)


def test_require_names_the_extra_that_declares_the_package(
    declared: tuple[set[str], dict[str, set[str]]],
) -> None:
    _, extras = declared
    calls = required_extras()
    assert calls, "gateway/ asks for no extra with require(); the postgres driver check is gone"
    for module, extra in calls.items():
        assert extra in RUNTIME_EXTRAS, f"require({module!r}) names {extra!r}, not a runtime extra"
        assert normalise(module) in extras[extra], f"require({module!r}, {extra!r}): {extra} does not declare it"


def test_every_declared_package_is_used(declared: tuple[set[str], dict[str, set[str]]]) -> None:
    base, extras = declared
    used = {distribution(found.module) for found in gateway_imports()} | {normalise(m) for m in required_extras()}
    unused_base = base - used - set(FOR_DEPENDENCIES)
    assert not unused_base, f"base dependencies gateway/ never imports: {sorted(unused_base)}"
    for extra in RUNTIME_EXTRAS:
        unused = extras[extra] - used
        assert not unused, f"extra {extra!r} declares packages gateway/ never imports: {sorted(unused)}"


def test_the_test_extra_installs_the_runtime_extras(declared: tuple[set[str], dict[str, set[str]]]) -> None:
    _, extras = declared
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    self_reference = [r for r in project["optional-dependencies"]["test"] if requirement_name(r) == "edxml-gateway"]
    assert self_reference, "the test extra must pull in the runtime extras"
    assert all(extra in self_reference[0] for extra in RUNTIME_EXTRAS)
    assert "build" in extras["test"]
