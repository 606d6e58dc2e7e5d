"""Verification of the XML-DSig ``Signature`` an edXML document may carry (docs/edxml-profile.md §3.6).

Verification is by configuration: an operator who gives the gateway a bundle of trusted
certificates (CA or signer certificates, PEM) makes every signed document go through
signxml, which checks the digest of the whole document (``Reference URI=""``, enveloped), the
signature value, and that the signing certificate chains to the bundle. The signer is then
reported by its certificate subject.

Only signatures in the XML-DSig namespace can be checked: the VNPT SDK writes an unprefixed
``Signature`` in the QCVN namespace with dummy values, which is not an XML signature at all.
Verifying needs the whole document as one tree, so it costs memory in proportion to the
document (about 2-3x its size); that is why it is opt-in.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from lxml import etree
from signxml import InvalidInput, InvalidSignature, VerifyResult, XMLSigner, XMLVerifier
from signxml.exceptions import InvalidCertificate, InvalidDigest, SignXMLException

from gateway.edxml.ns import QCVN
from gateway.errors import SignatureInvalid

DSIG = "http://www.w3.org/2000/09/xmldsig#"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=True)


def verify_signature(source: Path | bytes | bytearray, trusted_certs: Path) -> str:
    """Verify the XML-DSig signature of a document (file or bytes) against ``trusted_certs``; return the signer.

    Raises SignatureInvalid, with a message a clerk can pass on, when there is no XML-DSig
    signature, the document was altered after signing, or the certificate is not trusted.
    """
    tree = etree.parse(str(source) if isinstance(source, Path) else io.BytesIO(source), _PARSER)
    signatures = tree.getroot().findall(f".//{{{DSIG}}}Signature")
    if not signatures:
        raise SignatureInvalid(
            "The document's Signature is not an XML-DSig signature (namespace "
            f"{DSIG}), so it cannot be verified. Sign the document with your agency's certificate."
        )
    if len(signatures) > 1:
        raise SignatureInvalid("The document carries more than one XML-DSig Signature; sign it exactly once.")
    try:
        result = XMLVerifier().verify(tree, ca_pem_file=str(trusted_certs))
    except InvalidDigest:
        raise SignatureInvalid(
            "The document was changed after it was signed (digest mismatch). Send the document exactly as signed."
        ) from None
    except InvalidCertificate as exc:
        raise SignatureInvalid(
            f"The signing certificate is not trusted by this gateway ({exc}). Sign with a certificate issued "
            "by a trusted authority, or ask the operator to add yours."
        ) from None
    except (InvalidSignature, InvalidInput, SignXMLException) as exc:
        raise SignatureInvalid(f"The document's signature does not verify: {exc}.") from None
    # verify() returns a list only when asked to expect several references; the default is one.
    verified = result[0] if isinstance(result, list) else result
    return _signer(verified)


def _signer(verified: VerifyResult) -> str:
    """Subject of the certificate in ``KeyInfo/X509Data`` whose key verified the signature.

    XML-DSig sets no order on the certificates of ``X509Data``: signing software may list the
    issuing CA first, and the first certificate is then not the signer's. signxml only verifies
    with a certificate found there, so one of them always holds ``verified.signature_key``.
    """
    path = f"{{{DSIG}}}KeyInfo/{{{DSIG}}}X509Data/{{{DSIG}}}X509Certificate"
    certificates = [
        x509.load_der_x509_certificate(base64.b64decode("".join((element.text or "").split())))
        for element in verified.signature_xml.iterfind(path)
    ]
    signing = max(certificates, key=lambda certificate: _public_pem(certificate) == verified.signature_key)
    return signing.subject.rfc4514_string()


def _public_pem(certificate: x509.Certificate) -> bytes:
    """The certificate's public key in the form signxml reports the verifying key."""
    return certificate.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


def sign_document(edxml: bytes, key_pem: bytes, cert_pem: bytes) -> bytes:
    """``edxml`` with an enveloped XML-DSig signature over the whole document, placed in ``edXMLHeader``.

    What an agency's signing software does (``Reference URI=""``, exclusive c14n, RSA-SHA256), used
    by the sandbox agency of certification runs; the signer's certificate travels in ``KeyInfo``.
    """
    root = etree.fromstring(edxml, _PARSER)
    header = root.find(f"{{{QCVN}}}edXMLEnvelope/{{{QCVN}}}edXMLHeader")
    if header is None:
        raise ValueError("not an edXML document: no edXMLEnvelope/edXMLHeader to hold the signature")
    etree.SubElement(header, f"{{{DSIG}}}Signature", Id="placeholder")
    signer = XMLSigner(c14n_algorithm="http://www.w3.org/2001/10/xml-exc-c14n#")
    signed = signer.sign(root, key=key_pem, cert=[cert_pem.decode("ascii")])
    return bytes(etree.tostring(signed, xml_declaration=True, encoding="UTF-8"))
