"""Regenerate the published contracts wsdl/edxml-gateway.wsdl and wsdl/edxml-relay.wsdl.

Run after any change to gateway/soap/binding/ (types, service, relay), review the diff
(it is what every agency's stub generator sees), and commit it with the change:

    .venv/bin/python tools/write_wsdl.py
"""

from __future__ import annotations

from gateway.config import WSDL_DIR
from gateway.soap.binding import published_relay_wsdl, published_wsdl

PUBLISHED = WSDL_DIR / "edxml-gateway.wsdl"
RELAY_PUBLISHED = WSDL_DIR / "edxml-relay.wsdl"


def main() -> None:
    PUBLISHED.write_bytes(published_wsdl())
    print(f"wrote {PUBLISHED}")
    RELAY_PUBLISHED.write_bytes(published_relay_wsdl())
    print(f"wrote {RELAY_PUBLISHED}")


if __name__ == "__main__":
    main()
