// gSOAP C++ (wsdl2h + soapcpp2 -j proxy): the whole exchange story, as the three agencies.
// usage: ./client EDXML_FILE EDXML_SHA256; agencies from INTEROP_{SENDER,HANDLER,REJECTER}_{CODE,SECRET}.
// (The file's SHA-256 comes from run.sh's sha256sum, to keep the client free of a crypto library.)
#include "soapEdxmlGatewayProxy.h"
#include "EdxmlGateway.nsmap"
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <set>

struct Agency { std::string code, secret; };
static EdxmlGatewayProxy p(SOAP_C_UTFSTRING | SOAP_XML_STRICT);  // endpoint = the WSDL's soap:address

static void check(bool ok, const std::string &what) {
    if (!ok) { printf("FAIL: %s\n", what.c_str()); exit(1); }
    printf("ok %s\n", what.c_str());
}

static Agency agency(const char *role) {
    std::string r(role);
    return Agency{getenv(("INTEROP_" + r + "_CODE").c_str()), getenv(("INTEROP_" + r + "_SECRET").c_str())};
}

// gSOAP clears the SOAP header after each call: set the AuthHeader before every call.
// Any error other than the one fault we expect ends the run with gSOAP's own report.
static void as(const Agency &a) {
    soap_header(p.soap);
    p.soap->header->gw1__AuthHeader_ = soap_new_req_gw1__AuthHeader(p.soap, a.code, a.secret);
}
static void ok(int rc, const char *op) {
    if (rc != SOAP_OK) { printf("FAIL: %s\n", op); p.soap_stream_fault(std::cout); exit(1); }
}

static std::vector<gw1__PendingItem *> pending(const Agency &a, const std::string &docId) {
    gw1__getPendingDocuments req;
    gw1__getPendingDocumentsResponse res;
    int max = 100;
    req.maxItems = &max;
    as(a);
    ok(p.getPendingDocuments(&req, res), "getPendingDocuments");
    std::vector<gw1__PendingItem *> mine;
    if (res.getPendingDocumentsResult)
        for (gw1__PendingItem *i : res.getPendingDocumentsResult->PendingItem)
            if (i->documentId == docId) mine.push_back(i);
    return mine;
}

static bool confirm(const Agency &a, const std::string &itemId) {
    gw1__confirmReceived req;
    gw1__confirmReceivedResponse res;
    req.itemId = itemId;
    as(a);
    ok(p.confirmReceived(&req, res), "confirmReceived");
    return res.confirmReceivedResult;
}

static int update(const Agency &a, const std::string &docId, const char *status, const char *reason,
                  gw1__updateStatusResponse &res) {
    gw1__updateStatus req;
    req.documentId = docId;
    req.statusCode = status;
    if (reason) req.description = soap_new_std__string(p.soap), *req.description = reason;
    as(a);
    return p.updateStatus(&req, res);
}

int main(int argc, char **argv) {
    std::ifstream in(argv[1], std::ios::binary);
    std::string edxml((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::string sha = argv[2];
    Agency vpcp = agency("SENDER"), na = agency("HANDLER"), cb = agency("REJECTER");

    gw1__sendDocument send;
    gw1__sendDocumentResponse sent;
    send.document.__ptr = (unsigned char *)edxml.data();  // xsd:base64Binary: gSOAP encodes the bytes
    send.document.__size = (int)edxml.size();
    as(vpcp);
    ok(p.sendDocument(&send, sent), "sendDocument");
    std::string docId = sent.sendDocumentResult->documentId;
    const std::vector<std::string> &rs = sent.sendDocumentResult->recipients->string;
    check(std::set<std::string>(rs.begin(), rs.end()) == std::set<std::string>{na.code, cb.code},
          "sendDocument " + docId + " recipients");

    for (const Agency *a : {&na, &cb}) {
        std::vector<gw1__PendingItem *> items = pending(*a, docId);
        check(items.size() == 1 && items[0]->kind == "document", a->code + " getPendingDocuments has the document");
        gw1__getDocument get;
        gw1__getDocumentResponse got;
        get.itemId = items[0]->itemId;
        as(*a);
        ok(p.getDocument(&get, got), "getDocument");
        const xsd__base64Binary &b = got.getDocumentResult->edxml;
        check(std::string((char *)b.__ptr, b.__size) == edxml && got.getDocumentResult->sha256 == sha,
              a->code + " getDocument bytes");
        check(confirm(*a, items[0]->itemId), a->code + " confirmReceived");
    }

    for (const char *s : {"03", "04", "05", "06"}) {
        gw1__updateStatusResponse res;
        ok(update(na, docId, s, NULL, res), "updateStatus");
        check(res.updateStatusResult->statusCode == s, na.code + " updateStatus " + s);
    }
    gw1__updateStatusResponse rej;
    ok(update(cb, docId, "02", "Gửi nhầm đơn vị", rej), "updateStatus 02");
    check(rej.updateStatusResult->statusCode == "02", cb.code + " updateStatus 02 with a reason");

    gw1__getStatusHistory hreq;
    gw1__getStatusHistoryResponse hres;
    hreq.documentId = docId;
    as(vpcp);
    ok(p.getStatusHistory(&hreq, hres), "getStatusHistory");
    std::map<std::string, std::string> history;
    if (hres.getStatusHistoryResult)
        for (gw1__StatusEntry *e : hres.getStatusHistoryResult->StatusEntry)
            history[e->recipientCode] += (history[e->recipientCode].empty() ? "" : ",") + e->statusCode;
    std::string shown;
    for (auto &kv : history) shown += " " + kv.first + "=" + kv.second;
    check(history == std::map<std::string, std::string>{{na.code, "01,03,04,05,06"}, {cb.code, "01,02"}},
          "getStatusHistory" + shown);

    std::vector<gw1__PendingItem *> items = pending(vpcp, docId);
    std::multiset<std::string> got, want;
    for (gw1__PendingItem *i : items)
        got.insert(i->kind + " " + (i->statusFrom ? *i->statusFrom : "") + " " + (i->statusCode ? *i->statusCode : ""));
    for (const char *s : {"01", "03", "04", "05", "06"}) want.insert("status " + na.code + " " + s);
    for (const char *s : {"01", "02"}) want.insert("status " + cb.code + " " + s);
    check(got == want, vpcp.code + " getPendingDocuments has the 7 status items");
    int acked = 0;
    for (gw1__PendingItem *i : items) acked += confirm(vpcp, i->itemId);
    check(acked == 7, vpcp.code + " confirmReceived x7");

    gw1__updateStatusResponse res;
    int rc = update(na, docId, "04", NULL, res);
    if (rc != SOAP_FAULT) {  // SOAP_XML_STRICT refuses a Fault with elements it does not declare
        p.soap_stream_fault(std::cout);
        printf("NOTE: gSOAP could not read the fault (rc=%d); see tests/interop/NOTES.md\n", rc);
    }
    check(rc == SOAP_FAULT, "04 after 06 raises a fault");
    // SOAP 1.1: soap_fault_subcode() is the faultcode QName with gSOAP's own prefix ("SOAP-ENV:...");
    // the typed detail is soap->fault->detail->gw1__GatewayFault_.
    const char *code = soap_fault_subcode(p.soap);
    const char *local = code && strrchr(code, ':') ? strrchr(code, ':') + 1 : code;
    SOAP_ENV__Detail *d = p.soap->fault ? p.soap->fault->detail : NULL;
    gw1__GatewayFault *typed = d ? d->gw1__GatewayFault_ : NULL;
    printf("fault code=%s detail.code=%s message=%s\n", local ? local : "(none)",
           typed ? typed->code.c_str() : "(none)", soap_fault_string(p.soap));
    check(local && !strcmp(local, "Client.IllegalTransition") && typed && typed->code == local, "typed fault");
    printf("story passed\n");
    return 0;
}
