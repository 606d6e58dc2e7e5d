"""XML-DSig signatures on edXML documents: verified against the operator's trusted certificates,
signer reported; unsigned documents refused only from agencies configured to sign.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import zeep
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree
from signxml import XMLSigner
from sqlalchemy import update
from support.letters import official_letter
from support.live import CAO_BANG, NGHE_AN, VPCP

from gateway.config import Settings
from gateway.store.models import Agency

DSIG = "http://www.w3.org/2000/09/xmldsig#"
QCVN = "http://www.mic.gov.vn/TBT/QCVN_102_2016"


class Authority:
    """A certificate authority issuing one signing certificate, as an agency's CA would."""

    def __init__(self, name: str) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = _certificate(subject, subject, self.key.public_key(), self.key, ca=True)

    def issue(self, common_name: str) -> tuple[bytes, bytes]:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        subject = x509.Name([
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Văn phòng Chính phủ"),
        ])
        cert = _certificate(subject, self.cert.subject, key.public_key(), self.key, ca=False)
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return key_pem, cert.public_bytes(serialization.Encoding.PEM)

    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


def _certificate(subject, issuer, public_key, signing_key, ca: bool) -> x509.Certificate:
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    else:
        builder = builder.add_extension(
            x509.KeyUsage(True, True, False, False, False, False, False, False, False), critical=True
        )
    return builder.sign(signing_key, hashes.SHA256())


def signed(edxml: bytes, key_pem: bytes, cert_pem: bytes) -> bytes:
    """``edxml`` with an enveloped XML-DSig signature over the whole document, in edXMLHeader."""
    root = etree.fromstring(edxml)
    header = root.find(f"{{{QCVN}}}edXMLEnvelope/{{{QCVN}}}edXMLHeader")
    etree.SubElement(header, f"{{{DSIG}}}Signature", Id="placeholder")
    signer = XMLSigner(c14n_algorithm="http://www.w3.org/2001/10/xml-exc-c14n#")
    return etree.tostring(signer.sign(root, key=key_pem, cert=[cert_pem]), xml_declaration=True, encoding="UTF-8")


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
