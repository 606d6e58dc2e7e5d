"""The served WSDL is the published contract, and the contract keeps to WS-I Basic Profile 1.1."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from gateway.config import WSDL_DIR
from gateway.soap.binding import published_wsdl

PUBLISHED = WSDL_DIR / "edxml-gateway.wsdl"
WSDL = "http://schemas.xmlsoap.org/wsdl/"
SOAP = "http://schemas.xmlsoap.org/wsdl/soap/"
XS = "http://www.w3.org/2001/XMLSchema"
NS = {"wsdl": WSDL, "soap": SOAP, "xs": XS}
REGENERATE = "run `.venv/bin/python tools/write_wsdl.py`, review and commit wsdl/ with the change"


def test_generated_wsdl_matches_published_contract() -> None:
    assert published_wsdl() == PUBLISHED.read_bytes(), f"the SOAP service no longer matches {PUBLISHED}: {REGENERATE}"


@pytest.fixture(scope="module")
def contract() -> etree._Element:
    return etree.parse(str(Path(PUBLISHED))).getroot()


def test_document_literal_only(contract: etree._Element) -> None:
    binding = contract.find("wsdl:binding/soap:binding", NS)
    assert binding is not None and binding.get("style") == "document"
    uses = {body.get("use") for body in contract.iterfind(".//soap:body", NS)}
    assert uses == {"literal"}
    assert not contract.xpath("//*[@encodingStyle]")


def test_schema_is_qualified_and_choice_free(contract: etree._Element) -> None:
    schema = contract.find("wsdl:types/xs:schema", NS)
    assert schema is not None and schema.get("elementFormDefault") == "qualified"
    assert not contract.xpath("//xs:choice", namespaces=NS)


def test_each_operation_has_its_own_wrapper_and_soap_action(contract: etree._Element) -> None:
    operations = [op.get("name") for op in contract.iterfind("wsdl:portType/wsdl:operation", NS)]
    assert len(operations) == len(set(operations)) >= 7
    elements = {e.get("name") for e in contract.iterfind("wsdl:types/xs:schema/xs:element", NS)}
    for name in operations:
        assert name in elements and f"{name}Response" in elements
        message = contract.find(f"wsdl:message[@name='{name}']", NS)
        parts = message.findall("wsdl:part", NS)
        assert [(p.get("name"), p.get("element")) for p in parts] == [("parameters", f"tns:{name}")], (
            "wsdl.exe and Mono's wsdl recognise the wrapped style only for a single part named parameters"
        )
        action = contract.find(f"wsdl:binding/wsdl:operation[@name='{name}']/soap:operation", NS)
        assert action is not None and action.get("soapAction") == name


def test_no_soap12_declarations_and_no_stale_parameter_order(contract: etree._Element) -> None:
    text = PUBLISHED.read_text()
    assert "soap12" not in text, "gSOAP switches to SOAP 1.2 when it sees SOAP 1.2 namespaces declared"
    assert "parameterOrder" not in text, "Axis 1 WSDL2Java refuses a parameterOrder that names no part"


def test_every_operation_declares_the_gateway_fault(contract: etree._Element) -> None:
    for operation in contract.iterfind("wsdl:portType/wsdl:operation", NS):
        faults = operation.findall("wsdl:fault", NS)
        assert [f.get("name") for f in faults] == ["GatewayFault"], operation.get("name")
    fault_type = contract.find("wsdl:types/xs:schema/xs:complexType[@name='GatewayFault']", NS)
    assert [e.get("name") for e in fault_type.iterfind(".//xs:element", NS)] == ["code", "message"]
