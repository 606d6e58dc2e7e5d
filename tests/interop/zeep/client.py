"""zeep client proof: sendDocument with AuthHeader, then 'bad' -> typed SOAP fault."""

import sys

import zeep
from zeep.exceptions import Fault


def main() -> int:
    wsdl = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8765/?wsdl"
    client = zeep.Client(wsdl)
    auth = client.get_element("{urn:edxml-gateway:soap:v1}AuthHeader")(agencyCode="A1", secret="s")
    res = client.service.sendDocument(document=b"<doc/>", _soapheaders=[auth])
    print(f"ok documentId={res.documentId} recipients={','.join(res.recipients.string)}")
    try:
        client.service.sendDocument(document=b"bad", _soapheaders=[auth])
    except Fault as f:
        # f.code is the raw faultcode text with the server's prefix ("soap11env:Client.SchemaInvalid").
        print(f"fault code={f.code} message={f.message}")
        return 0 if str(f.code).rpartition(":")[2] == "Client.SchemaInvalid" else 1
    print("FAIL: no fault")
    return 1


if __name__ == "__main__":
    sys.exit(main())
