"""Optional parts of the install (pyproject extras) and the one clear error when one is missing.

The base install is a SQLite-only gateway. PostgreSQL needs ``psycopg`` (extra ``postgres``); the
agency-side client commands need ``zeep`` (extra ``client``). Code that needs one of them asks
:func:`require` first, so an operator reads which extra to install instead of a traceback.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingExtra(ImportError):
    """A package of an optional extra is not installed."""


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtra` naming ``extra`` (``pip install 'edxml-gateway[extra]'``)."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name is None or error.name.split(".")[0] != module.split(".")[0]:
            raise
        raise MissingExtra(
            f"{purpose} needs the optional '{extra}' extra, which is not installed: "
            f"pip install 'edxml-gateway[{extra}]'"
        ) from None
