"""An XML-DSig signature made by the sending agency still verifies at the last recipient, two hops away.

The relay carries the edXML file byte for byte (routing facts travel beside it), so an enveloped
signature over the whole document survives; every instance verifies it against the operator's
trusted certificates (GATEWAY_TRUSTED_CERTS) and the recipient checks it once more itself.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from harness import A_COMMUNE, B_DEPARTMENT, Inbox
from lxml import etree
from signxml import InvalidSignature, XMLSigner, XMLVerifier
from support.letters import official_letter

DSIG = "http://www.w3.org/2000/09/xmldsig#"
QCVN = "http://www.mic.gov.vn/TBT/QCVN_102_2016"
SIGNER = "Nguyễn Văn B - Văn thư UBND xã Nghi Phong"


def _certificate(
    subject: x509.Name, issuer: x509.Name, public_key: rsa.RSAPublicKey, key: rsa.RSAPrivateKey, ca: bool
) -> x509.Certificate:
    now = datetime.now(UTC)
    usage = (False, False, False, False, False, True, True, False, False) if ca else (True, True) + (False,) * 7
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(*usage), critical=True)
        .sign(key, hashes.SHA256())
    )


def make_authority(bundle: Path) -> tuple[bytes, bytes]:
    """A self-signed CA written to ``bundle``; returns (key, certificate) PEM of a signer it issued."""
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Root CA of the test network")])
    ca_cert = _certificate(ca_name, ca_name, ca_key.public_key(), ca_key, ca=True)
    bundle.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SIGNER)])
    cert = _certificate(subject, ca_name, key.public_key(), ca_key, ca=False)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def signed(edxml: bytes, key_pem: bytes, cert_pem: bytes) -> bytes:
    """``edxml`` with an enveloped XML-DSig signature over the whole document, in edXMLHeader."""
    root = etree.fromstring(edxml)
    header = root.find(f"{{{QCVN}}}edXMLEnvelope/{{{QCVN}}}edXMLHeader")
    etree.SubElement(header, f"{{{DSIG}}}Signature", Id="placeholder")
    signer = XMLSigner(c14n_algorithm="http://www.w3.org/2001/10/xml-exc-c14n#")
    return etree.tostring(signer.sign(root, key=key_pem, cert=[cert_pem]), xml_declaration=True, encoding="UTF-8")


def send_signed(make_network, tmp_path: Path) -> tuple[Path, bytes, Any, Any]:
    """A network whose instances trust one CA; A's commune sends a document signed by it to B's department.

    Returns (CA bundle, the signed file, the send receipt, B's pending item for it).
    """
    bundle = tmp_path / "trusted.pem"
    key, cert = make_authority(bundle)
    network = make_network(extra_env={"GATEWAY_TRUSTED_CERTS": str(bundle)})
    network.wait_for_directory()
    document = signed(official_letter(A_COMMUNE, [B_DEPARTMENT]), key, cert)
    receipt = network.client(A_COMMUNE).service.sendDocument(document=document)
    assert SIGNER in (receipt.signer or ""), receipt
    recipient = network.client(B_DEPARTMENT)
    (item,) = Inbox(recipient).wait_for(bool, 45, "the signed document at B's department")
    return bundle, document, receipt, (recipient, item)


def test_signature_of_the_sending_agency_verifies_at_the_last_recipient(make_network, tmp_path: Path) -> None:
    bundle, document, receipt, (recipient, item) = send_signed(make_network, tmp_path)
    assert item.signer == receipt.signer, (
        "B's gateway verified the signature and reports the signer, as for a local one"
    )
    fetched = recipient.service.getDocument(itemId=item.itemId).edxml
    assert fetched == document
    verified = XMLVerifier().verify(etree.fromstring(fetched), ca_pem_file=str(bundle))
    assert "triển khai kết nối liên thông" in etree.tostring(verified.signed_xml, encoding="unicode")
    altered = fetched.replace("triển khai".encode(), "hủy bỏ".encode())
    with pytest.raises(InvalidSignature):
        XMLVerifier().verify(etree.fromstring(altered), ca_pem_file=str(bundle))
