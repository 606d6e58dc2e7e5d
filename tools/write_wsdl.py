"""Regenerate the published contract wsdl/edxml-gateway.wsdl from the SOAP service definition.

Run after any change to gateway/soap/binding/types.py or gateway/soap/binding/service.py, review the diff
(it is what every agency's stub generator sees), and commit it with the change:

    .venv/bin/python tools/write_wsdl.py
"""

from __future__ import annotations

from gateway.config import WSDL_DIR
from gateway.soap.binding import published_wsdl

PUBLISHED = WSDL_DIR / "edxml-gateway.wsdl"


def main() -> None:
    PUBLISHED.write_bytes(published_wsdl())
    print(f"wrote {PUBLISHED}")


if __name__ == "__main__":
    main()
