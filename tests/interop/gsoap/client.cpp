// gSOAP C++ client proof (wsdl2h + soapcpp2 -j proxy): sendDocument with AuthHeader,
// then a 'bad' document -> SOAP_FAULT with the gateway's faultcode.
#include "soapEdxmlGatewayProxy.h"
#include "EdxmlGateway.nsmap"
#include <cstdio>
#include <cstring>
#include <iostream>

static int call(EdxmlGatewayProxy &p, const char *doc, gw1__sendDocumentResponse &out) {
    soap_header(p.soap);  // (re)allocates SOAP_ENV__Header; gSOAP clears it after each call
    p.soap->header->gw1__AuthHeader_ = soap_new_req_gw1__AuthHeader(p.soap, "A1", "s");
    gw1__sendDocument req;
    req.soap_default(p.soap);
    req.document.__ptr = (unsigned char *)soap_strdup(p.soap, doc);
    req.document.__size = (int)strlen(doc);
    return p.sendDocument(&req, out);  // endpoint = the WSDL's soap:address
}

int main() {
    EdxmlGatewayProxy p(SOAP_XML_STRICT);
    gw1__sendDocumentResponse out;
    if (call(p, "<doc/>", out) != SOAP_OK || !out.sendDocumentResult) {
        p.soap_stream_fault(std::cerr);
        return 1;
    }
    printf("ok documentId=%s recipients=", out.sendDocumentResult->documentId.c_str());
    const std::vector<std::string> &rs = out.sendDocumentResult->recipients->string;
    for (size_t i = 0; i < rs.size(); ++i) printf("%s%s", i ? "," : "", rs[i].c_str());
    printf("\n");
    if (call(p, "bad", out) == SOAP_OK) { printf("FAIL: no fault\n"); return 1; }
    if (p.soap->error != SOAP_FAULT) { p.soap_stream_fault(std::cerr); return 1; }
    // SOAP 1.1: soap_fault_subcode() gives the faultcode QName with gSOAP's own prefix ("SOAP-ENV:...").
    const char *code = soap_fault_subcode(p.soap);
    const char *msg = soap_fault_string(p.soap);
    printf("fault code=%s message=%s\n", code ? code : "(none)", msg ? msg : "(none)");
    const char *local = code ? strrchr(code, ':') : NULL;
    return local && strcmp(local + 1, "Client.SchemaInvalid") == 0 ? 0 : 1;
}
