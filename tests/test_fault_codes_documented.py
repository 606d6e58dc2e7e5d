"""Every fault code the gateway can send is in README's fault-code table: the codes are a contract."""

from __future__ import annotations

import gc

import gateway.app  # noqa: F401  (imports every module that defines errors, as a running gateway does)
from gateway.config import REPO_ROOT
from gateway.errors import GatewayError, fault_codes


def _documented() -> set[str]:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("### Fault codes", 1)[1].split("\n## ", 1)[0]
    return {row.split("`")[1] for row in table.splitlines() if row.startswith("| `")}


def test_every_fault_code_is_documented() -> None:
    missing = sorted(fault_codes() - _documented())
    assert not missing, f"fault codes missing from README's table: {missing}"


def _define_probe() -> None:
    class Probe(GatewayError):
        code = "Client.ProbeOnlyInThisTest"

    assert "Client.ProbeOnlyInThisTest" in fault_codes()


def test_fault_codes_are_read_from_the_error_classes() -> None:
    assert {"Client.NotFound", "Client.TooLarge", "Server.Internal", "Server.Unavailable"} <= fault_codes()
    _define_probe()
    gc.collect()
    assert "Client.ProbeOnlyInThisTest" not in fault_codes(), "a class that is gone no longer counts"
