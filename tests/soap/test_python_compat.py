"""Spyne imports on every supported Python (3.11-3.13) through gateway/soap/binding/compat.py.

Run under 3.12 or 3.13 (README, "Python version") these check the bridge itself; under 3.11 they
check that nothing is installed where nothing is needed.
"""

from __future__ import annotations

import collections.abc
import importlib
import subprocess
import sys

import pytest

from gateway.soap.binding import compat


def test_the_finder_is_installed_exactly_where_python_needs_it() -> None:
    installed = [finder for finder in sys.meta_path if isinstance(finder, compat.SixMovesFinder)]
    assert len(installed) == (1 if sys.version_info >= (3, 12) else 0)
    assert compat.install() is (sys.version_info >= (3, 12))
    assert len([f for f in sys.meta_path if isinstance(f, compat.SixMovesFinder)]) == len(installed), "idempotent"


def test_six_moves_resolve_to_the_standard_modules_with_their_own_specs() -> None:
    spec = collections.abc.__spec__
    moved = importlib.import_module("spyne.util.six.moves.collections_abc")
    assert moved is collections.abc
    assert collections.abc.__spec__ is spec, "the real module keeps its own spec, not six's alias"
    parse = importlib.import_module("spyne.util.six.moves.urllib.parse")
    assert parse.quote("a b") == "a%20b"


def test_a_fresh_interpreter_imports_spyne_through_the_binding() -> None:
    code = "import gateway.soap as s, spyne.server.wsgi, spyne.protocol.soap.soap11; print(sorted(s.OPERATIONS)[0])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "confirmReceived"


def test_the_finder_answers_for_six_moves_only_and_loads_through_six_on_any_python() -> None:
    """The bridge's own logic, exercised directly so that 3.11 runs it too (where Python never calls it)."""
    finder = compat.SixMovesFinder()
    assert finder.find_spec("collections.abc") is None, "names outside six's moves are not ours"
    assert finder.find_spec(f"{compat.SIX}.moves.no_such_move") is None, "six's importer does not know it"
    spec = finder.find_spec(f"{compat.SIX}.moves.collections_abc")
    assert spec is not None and spec.loader is not None and not spec.submodule_search_locations
    own = collections.abc.__spec__
    module = spec.loader.create_module(spec)
    assert module is collections.abc
    module.__spec__ = spec  # what the import system stamps on the module create_module returned
    spec.loader.exec_module(module)
    assert module.__spec__ is own, "the standard module gets its own spec back"
    package = finder.find_spec(f"{compat.SIX}.moves.urllib")
    assert package is not None and package.submodule_search_locations is not None


def test_install_puts_one_finder_on_the_meta_path_when_python_needs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "meta_path", [f for f in sys.meta_path if not isinstance(f, compat.SixMovesFinder)])
    monkeypatch.setattr(compat, "NEEDED", False)
    assert compat.install() is False and not any(isinstance(f, compat.SixMovesFinder) for f in sys.meta_path)
    monkeypatch.setattr(compat, "NEEDED", True)
    assert compat.install() is True and compat.install() is True
    assert sum(isinstance(f, compat.SixMovesFinder) for f in sys.meta_path) == 1
