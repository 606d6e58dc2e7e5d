"""suds-community client proof: sendDocument with AuthHeader, then 'bad' -> typed WebFault."""

import base64
import sys

from suds import WebFault
from suds.client import Client


def main() -> int:
    wsdl = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8765/?wsdl"
    client = Client(wsdl, cache=None)
    auth = client.factory.create("AuthHeader")
    auth.agencyCode, auth.secret = "A1", "s"
    client.set_options(soapheaders=auth)
    # suds does not encode base64Binary itself: pass the base64 text.
    res = client.service.sendDocument(base64.b64encode(b"<doc/>").decode())
    print(f"ok documentId={res.documentId} recipients={','.join(res.recipients.string)}")
    try:
        client.service.sendDocument(base64.b64encode(b"bad").decode())
    except WebFault as e:
        # faultcode is the raw text with the server's prefix ("soap11env:Client.SchemaInvalid").
        print(f"fault code={e.fault.faultcode} message={e.fault.faultstring}")
        return 0 if str(e.fault.faultcode).rpartition(":")[2] == "Client.SchemaInvalid" else 1
    print("FAIL: no fault")
    return 1


if __name__ == "__main__":
    sys.exit(main())
