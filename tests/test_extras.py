"""A missing optional extra is named in one clear error, never a traceback deep in an import."""

from __future__ import annotations

import pytest

from gateway.extras import MissingExtra, require


def test_a_present_module_is_returned() -> None:
    assert require("json", "client", "Reading JSON").loads("[1]") == [1]


def test_a_missing_module_names_its_extra() -> None:
    with pytest.raises(MissingExtra, match=r"pip install 'edxml-gateway\[client\]'") as missing:
        require("zeep_not_installed_here", "client", "The agency commands")
    assert "The agency commands needs the optional 'client' extra" in str(missing.value)


def test_a_missing_dependency_of_a_present_module_is_not_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    def broken(name: str) -> object:
        raise ModuleNotFoundError("No module named 'something_else'", name="something_else")

    monkeypatch.setattr(importlib, "import_module", broken)
    with pytest.raises(ModuleNotFoundError, match="something_else"):
        require("zeep", "client", "The agency commands")
