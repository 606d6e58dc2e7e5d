"""suds-community: the whole exchange story through the WSDL, as the three agencies.

usage: client.py WSDL_URL EDXML_FILE; agencies from INTEROP_{SENDER,HANDLER,REJECTER}_{CODE,SECRET}.
"""

import base64
import hashlib
import os
import sys
from pathlib import Path

from suds import WebFault
from suds.client import Client


def check(ok: bool, what: str) -> None:
    if not ok:
        print(f"FAIL: {what}")
        sys.exit(1)
    print(f"ok {what}")


def agency(wsdl: str, role: str):
    client = Client(wsdl, cache=None)
    auth = client.factory.create("AuthHeader")
    auth.agencyCode, auth.secret = os.environ[f"INTEROP_{role}_CODE"], os.environ[f"INTEROP_{role}_SECRET"]
    client.set_options(soapheaders=auth)
    return auth.agencyCode, client.service


def pending(svc, doc_id: str) -> list:
    result = svc.getPendingDocuments(100)
    return [i for i in (result.PendingItem if result else []) if i.documentId == doc_id]


def main() -> int:
    wsdl, path = sys.argv[1], sys.argv[2]
    edxml = Path(path).read_bytes()
    (vpcp_code, vpcp), (na_code, na), (cb_code, cb) = (agency(wsdl, r) for r in ("SENDER", "HANDLER", "REJECTER"))

    # suds does not encode base64Binary itself (nor decode it): pass and read base64 text.
    receipt = vpcp.sendDocument(base64.b64encode(edxml).decode())
    doc_id = receipt.documentId
    check(sorted(receipt.recipients.string) == sorted([na_code, cb_code]), f"sendDocument {doc_id} recipients")

    for code, svc in ((na_code, na), (cb_code, cb)):
        items = pending(svc, doc_id)
        check(len(items) == 1 and items[0].kind == "document", f"{code} getPendingDocuments has the document")
        got = svc.getDocument(items[0].itemId)
        data = base64.b64decode(got.edxml)
        check(data == edxml and got.sha256 == hashlib.sha256(data).hexdigest(), f"{code} getDocument bytes")
        check(svc.confirmReceived(items[0].itemId) is True, f"{code} confirmReceived")

    for status in ("03", "04", "05", "06"):
        r = na.updateStatus(doc_id, status, staff={"department": "Văn thư", "staff": "A"})
        check(r.statusCode == status, f"{na_code} updateStatus {status}")
    r = cb.updateStatus(doc_id, "02", "Gửi nhầm đơn vị")
    check(r.statusCode == "02", f"{cb_code} updateStatus 02 with a reason")

    history: dict[str, list[str]] = {}
    result = vpcp.getStatusHistory(doc_id)
    for entry in result.StatusEntry if result else []:
        history.setdefault(entry.recipientCode, []).append(entry.statusCode)
    check(history == {na_code: ["01", "03", "04", "05", "06"], cb_code: ["01", "02"]}, f"getStatusHistory {history}")

    items = pending(vpcp, doc_id)
    got = sorted((i.kind, i.statusFrom, i.statusCode) for i in items)
    want = sorted(
        [("status", na_code, s) for s in ("01", "03", "04", "05", "06")]
        + [("status", cb_code, "01"), ("status", cb_code, "02")]
    )
    check(got == want, f"{vpcp_code} getPendingDocuments has the 7 status items")
    check(all(vpcp.confirmReceived(i.itemId) is True for i in items), f"{vpcp_code} confirmReceived x7")

    try:
        na.updateStatus(doc_id, "04")
        check(False, "04 after 06 raises a fault")
    except WebFault as e:
        # faultcode is the raw text with the server's prefix; detail.GatewayFault is typed from the WSDL.
        code = str(e.fault.faultcode).rpartition(":")[2]
        typed = e.fault.detail.GatewayFault.code if hasattr(e.fault, "detail") else None
        print(f"fault code={code} detail.code={typed} message={e.fault.faultstring}")
        check(code == "Client.IllegalTransition" and typed == code, "typed fault")
    print("story passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
