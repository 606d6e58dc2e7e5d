"""Lets Spyne 2.14.0 import on Python 3.12 and 3.13 without changing or copying any of Spyne.

Spyne vendors an old ``six`` (``spyne.util.six``) whose ``six.moves`` modules come from a
meta-path importer that has only the pre-PEP 451 ``find_module``/``load_module`` methods.
Python 3.12 stopped calling ``find_module`` on meta-path entries, so ``spyne.util.six.moves``
(imported by Spyne's own modules) is not found. :class:`SixMovesFinder`, installed here on 3.12+
only, answers ``find_spec`` for those names by asking six's importer, and loads through it with
``create_module``/``exec_module``. The other 3.13 gap, the removed ``cgi`` module Spyne uses to
parse Content-Type, is filled by the ``legacy-cgi`` distribution (pyproject.toml).

This module must run before the first Spyne import: ``gateway/soap/binding/__init__.py``
imports it first, and every Spyne import lives under that package.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.abc import Loader, MetaPathFinder
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

SIX = "spyne.util.six"
"""The vendored six's module name; its moves are ``spyne.util.six.moves...``."""
NEEDED = sys.version_info >= (3, 12)
"""Python 3.12 removed the ``find_module`` fallback of the import system (PEP 451 is all it calls)."""


class _SixLoader(Loader):
    """PEP 451 loading through six's ``load_module``.

    ``load_module`` returns the module six prepared (often a standard module such as
    ``collections.abc`` behind a moved name) and registers it in ``sys.modules``. The import
    system then stamps ``__spec__`` on it, which would give the real standard module a spec
    named after six's alias; ``exec_module`` puts the module's own spec back.
    """

    def __init__(self, importer: Any) -> None:
        self.importer = importer
        self.own_specs: dict[str, ModuleSpec | None] = {}

    def create_module(self, spec: ModuleSpec) -> ModuleType:
        module: ModuleType = self.importer.load_module(spec.name)
        self.own_specs[spec.name] = getattr(module, "__spec__", None)
        return module

    def exec_module(self, module: ModuleType) -> None:
        spec = getattr(module, "__spec__", None)
        if spec is None:
            return
        own = self.own_specs.pop(spec.name, None)
        if own is not None:
            module.__spec__ = own


class SixMovesFinder(MetaPathFinder):
    """Finds ``spyne.util.six.moves...`` by asking six's legacy meta-path importer."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if not fullname.startswith(SIX + "."):
            return None
        for importer in list(sys.meta_path):
            if importer is self or hasattr(importer, "find_spec") or not hasattr(importer, "find_module"):
                continue
            found = importer.find_module(fullname, path)
            if found is not None:
                return ModuleSpec(fullname, _SixLoader(found), is_package=bool(found.is_package(fullname)))
        return None


def install() -> bool:
    """Put the finder on ``sys.meta_path`` where it is needed (3.12+), once; True when it is there."""
    if not NEEDED:
        return False
    if not any(isinstance(finder, SixMovesFinder) for finder in sys.meta_path):
        sys.meta_path.append(SixMovesFinder())
    return True


install()
