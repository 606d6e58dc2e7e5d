"""zeep: the whole exchange story through the WSDL, as the three agencies.

usage: client.py WSDL_URL EDXML_FILE; agencies from INTEROP_{SENDER,HANDLER,REJECTER}_{CODE,SECRET}.
"""

import hashlib
import os
import sys
from pathlib import Path

import zeep
from requests import Session
from zeep.exceptions import Fault
from zeep.transports import Transport

NS = "urn:edxml-gateway:soap:v1"


def check(ok: bool, what: str) -> None:
    if not ok:
        print(f"FAIL: {what}")
        sys.exit(1)
    print(f"ok {what}")


def agency(wsdl: str, role: str):
    code, secret = os.environ[f"INTEROP_{role}_CODE"], os.environ[f"INTEROP_{role}_SECRET"]
    session = Session()
    if os.environ.get("INTEROP_CA_FILE"):  # https through a proxy with its own CA (tests/deploy/test_nginx.py)
        session.verify = os.environ["INTEROP_CA_FILE"]
        session.trust_env = False  # else REQUESTS_CA_BUNDLE from the environment replaces session.verify
    client = zeep.Client(wsdl, transport=Transport(session=session))
    client.set_default_soapheaders([client.get_element(f"{{{NS}}}AuthHeader")(agencyCode=code, secret=secret)])
    if os.environ.get("INTEROP_ENDPOINT"):
        return code, client.create_service(next(iter(client.wsdl.bindings)), os.environ["INTEROP_ENDPOINT"])
    return code, client.service


def main() -> int:
    wsdl, path = sys.argv[1], sys.argv[2]
    edxml = Path(path).read_bytes()
    (vpcp_code, vpcp), (na_code, na), (cb_code, cb) = (agency(wsdl, r) for r in ("SENDER", "HANDLER", "REJECTER"))

    receipt = vpcp.sendDocument(document=edxml)
    doc_id = receipt.documentId
    check(sorted(receipt.recipients.string) == sorted([na_code, cb_code]), f"sendDocument {doc_id} recipients")

    for code, svc in ((na_code, na), (cb_code, cb)):
        items = [i for i in svc.getPendingDocuments(maxItems=100) or [] if i.documentId == doc_id]
        check(len(items) == 1 and items[0].kind == "document", f"{code} getPendingDocuments has the document")
        got = svc.getDocument(itemId=items[0].itemId)
        check(got.edxml == edxml and got.sha256 == hashlib.sha256(edxml).hexdigest(), f"{code} getDocument bytes")
        check(svc.confirmReceived(itemId=items[0].itemId) is True, f"{code} confirmReceived")

    for status in ("03", "04", "05", "06"):
        r = na.updateStatus(documentId=doc_id, statusCode=status, staff={"department": "Văn thư", "staff": "A"})
        check(r.statusCode == status, f"{na_code} updateStatus {status}")
    r = cb.updateStatus(documentId=doc_id, statusCode="02", description="Gửi nhầm đơn vị")
    check(r.statusCode == "02", f"{cb_code} updateStatus 02 with a reason")

    history: dict[str, list[str]] = {}
    for entry in vpcp.getStatusHistory(documentId=doc_id) or []:
        history.setdefault(entry.recipientCode, []).append(entry.statusCode)
    check(history == {na_code: ["01", "03", "04", "05", "06"], cb_code: ["01", "02"]}, f"getStatusHistory {history}")

    items = [i for i in vpcp.getPendingDocuments(maxItems=100) or [] if i.documentId == doc_id]
    got = sorted((i.kind, i.statusFrom, i.statusCode) for i in items)
    want = sorted(
        [("status", na_code, s) for s in ("01", "03", "04", "05", "06")]
        + [("status", cb_code, "01"), ("status", cb_code, "02")]
    )
    check(got == want, f"{vpcp_code} getPendingDocuments has the 7 status items")
    check(all(vpcp.confirmReceived(itemId=i.itemId) is True for i in items), f"{vpcp_code} confirmReceived x7")

    try:
        na.updateStatus(documentId=doc_id, statusCode="04")
        check(False, "04 after 06 raises a fault")
    except Fault as f:
        # f.code is the raw faultcode with the server's prefix; f.detail the <detail> element.
        code = f.code.rpartition(":")[2]
        typed = f.detail.find(f"{{{NS}}}GatewayFault/{{{NS}}}code") if f.detail is not None else None
        print(f"fault code={code} detail.code={typed.text if typed is not None else None} message={f.message}")
        check(code == "Client.IllegalTransition" and typed is not None and typed.text == code, "typed fault")
    print("story passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
