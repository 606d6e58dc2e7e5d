"""XML-DSig signatures on edXML documents: verified against the operator's trusted certificates,
signer reported; unsigned documents refused only from agencies configured to sign.
"""

from __future__ import annotations

import base64
from copy import deepcopy
from pathlib import Path

import pytest
import zeep
from cryptography.hazmat.primitives import serialization
from lxml import etree
from sqlalchemy import update
from support.certificates import Authority
from support.letters import official_letter
from support.live import CAO_BANG, NGHE_AN, VPCP

from gateway.config import Settings
from gateway.edxml.signature import sign_document, verify_signature
from gateway.errors import SignatureInvalid
from gateway.store.models import Agency

DSIG = "http://www.w3.org/2000/09/xmldsig#"
QCVN = "http://www.mic.gov.vn/TBT/QCVN_102_2016"


def signed(edxml: bytes, key_pem: bytes, cert_pem: bytes) -> bytes:
    """``edxml`` signed as an agency's signing software does (the gateway's own signer, used by its sandbox)."""
    return sign_document(edxml, key_pem, cert_pem)


@pytest.fixture(scope="module")
def authority() -> Authority:
    return Authority("Root CA of the test exchange")


@pytest.fixture
def gateway_settings(tmp_path: Path, db_url: str, authority: Authority) -> Settings:
    bundle = tmp_path / "trusted.pem"
    bundle.write_bytes(authority.pem())
    return Settings(data_dir=tmp_path / "var", database_url=db_url, trusted_certs=bundle)


def fault_code(call, **kwargs) -> tuple[str, str]:
    with pytest.raises(zeep.exceptions.Fault) as caught:
        call(**kwargs)
    return caught.value.code.split(":", 1)[1], caught.value.message


def test_signed_document_is_verified_and_its_signer_reported(client_for, live_gateway, authority) -> None:
    key, cert = authority.issue("Nguyễn Văn A - Văn thư VPCP")
    receipt = client_for(VPCP).service.sendDocument(document=signed(official_letter(VPCP, [NGHE_AN]), key, cert))
    assert "Nguyễn Văn A - Văn thư VPCP" in receipt.signer
    item = client_for(NGHE_AN).service.getPendingDocuments()[0]
    assert item.signer == receipt.signer


def test_document_altered_after_signing_is_refused(client_for, live_gateway, authority) -> None:
    key, cert = authority.issue("Văn thư VPCP")
    document = signed(official_letter(VPCP, [NGHE_AN]), key, cert)
    altered = document.replace("triển khai".encode(), "hủy bỏ".encode())
    code, message = fault_code(client_for(VPCP).service.sendDocument, document=altered)
    assert code == "Client.SignatureInvalid" and "changed after it was signed" in message


def test_certificate_from_an_untrusted_authority_is_refused(client_for, live_gateway) -> None:
    key, cert = Authority("Someone else's CA").issue("Văn thư VPCP")
    code, message = fault_code(
        client_for(VPCP).service.sendDocument, document=signed(official_letter(VPCP, [NGHE_AN]), key, cert)
    )
    assert code == "Client.SignatureInvalid" and "not trusted" in message


def test_unsigned_documents_are_refused_only_where_signing_is_required(client_for, live_gateway, authority) -> None:
    with live_gateway.db.transaction() as session:
        session.execute(update(Agency).where(Agency.code == VPCP).values(require_signature=True))
    code, message = fault_code(client_for(VPCP).service.sendDocument, document=official_letter(VPCP, [NGHE_AN]))
    assert code == "Client.SignatureRequired" and VPCP in message
    key, cert = authority.issue("Văn thư VPCP")
    accepted = client_for(VPCP).service.sendDocument(document=signed(official_letter(VPCP, [NGHE_AN]), key, cert))
    assert accepted.signer is not None
    unsigned = client_for(NGHE_AN).service.sendDocument(document=official_letter(NGHE_AN, [CAO_BANG]))
    assert unsigned.signer is None and unsigned.duplicate is False


def test_sdk_style_signature_cannot_be_verified(client_for, live_gateway) -> None:
    root = etree.fromstring(official_letter(VPCP, [NGHE_AN]))
    header = root.find(f"{{{QCVN}}}edXMLEnvelope/{{{QCVN}}}edXMLHeader")
    sdk_signature = etree.SubElement(header, f"{{{QCVN}}}Signature")
    etree.SubElement(sdk_signature, f"{{{QCVN}}}SignatureValue").text = "ZHVtbXk="
    code, message = fault_code(client_for(VPCP).service.sendDocument, document=etree.tostring(root))
    assert code == "Client.SignatureInvalid" and "not an XML-DSig signature" in message


def verified_signer(tmp_path: Path, document: bytes, authority: Authority) -> str:
    """``verify_signature`` on ``document`` with ``authority`` as the trusted bundle."""
    source, bundle = tmp_path / "signed.edxml", tmp_path / "trusted.pem"
    source.write_bytes(document)
    bundle.write_bytes(authority.pem())
    return verify_signature(source, bundle)


def _signature_of(root: etree._Element) -> etree._Element:
    signature = root.find(f".//{{{DSIG}}}Signature")
    assert signature is not None
    return signature


def test_a_document_signed_twice_is_refused(tmp_path: Path, authority: Authority) -> None:
    key, cert = authority.issue("Văn thư VPCP")
    root = etree.fromstring(signed(official_letter(VPCP, [NGHE_AN]), key, cert))
    signature = _signature_of(root)
    signature.addnext(deepcopy(signature))
    with pytest.raises(SignatureInvalid, match="more than one XML-DSig Signature; sign it exactly once"):
        verified_signer(tmp_path, etree.tostring(root), authority)


def test_a_damaged_signature_value_is_refused(tmp_path: Path, authority: Authority) -> None:
    key, cert = authority.issue("Văn thư VPCP")
    root = etree.fromstring(signed(official_letter(VPCP, [NGHE_AN]), key, cert))
    value = _signature_of(root).find(f"{{{DSIG}}}SignatureValue")
    assert value is not None and value.text is not None
    raw = bytearray(base64.b64decode(value.text))
    raw[10] ^= 0xFF
    value.text = base64.b64encode(bytes(raw)).decode("ascii")
    with pytest.raises(SignatureInvalid, match=r"The document's signature does not verify: .*verification failed"):
        verified_signer(tmp_path, etree.tostring(root), authority)


def test_signing_something_that_is_not_edxml_is_refused(authority: Authority) -> None:
    key, cert = authority.issue("Văn thư VPCP")
    with pytest.raises(ValueError, match="no edXMLEnvelope/edXMLHeader to hold the signature"):
        sign_document(b"<edXML xmlns='http://www.mic.gov.vn/TBT/QCVN_102_2016'/>", key, cert)


def test_the_signer_is_the_certificate_that_verified_even_when_the_ca_is_listed_first(
    tmp_path: Path, authority: Authority
) -> None:
    """XML-DSig sets no order on the certificates of X509Data; signing software may put the chain's root first."""
    key, cert = authority.issue("Trần Thị B - Văn thư VPCP")
    root = etree.fromstring(signed(official_letter(VPCP, [NGHE_AN]), key, cert))
    x509_data = _signature_of(root).find(f"{{{DSIG}}}KeyInfo/{{{DSIG}}}X509Data")
    assert x509_data is not None
    ca_der = authority.cert.public_bytes(serialization.Encoding.DER)
    x509_data.insert(0, etree.Element(f"{{{DSIG}}}X509Certificate"))
    x509_data[0].text = base64.b64encode(ca_der).decode("ascii")
    signer = verified_signer(tmp_path, etree.tostring(root), authority)
    assert "Trần Thị B - Văn thư VPCP" in signer and "Root CA" not in signer
