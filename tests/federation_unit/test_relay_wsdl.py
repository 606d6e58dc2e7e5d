"""The published relay contract (wsdl/edxml-relay.wsdl) is what the /relay endpoint serves."""

from __future__ import annotations

from gateway.config import WSDL_DIR
from gateway.soap.binding.relay import RELAY_WSDL_LOCATION, published_relay_wsdl


def test_relay_wsdl_snapshot_matches_the_service() -> None:
    published = (WSDL_DIR / "edxml-relay.wsdl").read_bytes()
    assert published_relay_wsdl() == published, (
        "the relay service drifted from wsdl/edxml-relay.wsdl: run `.venv/bin/python tools/write_wsdl.py`, "
        "review the diff and commit it"
    )
    assert RELAY_WSDL_LOCATION.encode() in published
    for operation in (
        "pushConsignment",
        "pullConsignments",
        "fetchConsignment",
        "acknowledgeConsignment",
        "registerAgencies",
        "getDirectory",
    ):
        assert f'operation name="{operation}"'.encode() in published, operation
