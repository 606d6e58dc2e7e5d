// Mono / .NET ASMX-style client proof (proxy from `wsdl`): sendDocument with AuthHeader,
// then a 'bad' document -> SoapException with the gateway's faultcode.
using System;
using System.Text;
using System.Web.Services.Protocols;
using EdxmlGatewayClient;

class Client {
    static int Main(string[] args) {
        var svc = new Svc();  // endpoint = the WSDL's soap:address
        svc.AuthHeaderValue = new AuthHeader { agencyCode = "A1", secret = "s" };
        var r = SendDocument(svc, Encoding.UTF8.GetBytes("<doc/>"));
        Console.WriteLine("ok documentId=" + r.documentId + " recipients=" + string.Join(",", r.recipients));
        try {
            SendDocument(svc, Encoding.UTF8.GetBytes("bad"));
            Console.WriteLine("FAIL: no fault");
            return 1;
        } catch (SoapException e) {
            Console.WriteLine("fault code=" + e.Code.Name + " ns=" + e.Code.Namespace + " message=" + e.Message);
            return e.Code.Name == "Client.SchemaInvalid" ? 0 : 1;
        }
    }

    // Wrapped WSDL (body part named "parameters") gives sendDocument(byte[]) -> SendReceipt;
    // a bare one gives sendDocument(sendDocument) -> sendDocumentResponse.
    static SendReceipt SendDocument(Svc svc, byte[] doc) {
#if WRAPPED
        return svc.sendDocument(doc);
#else
        return svc.sendDocument(new sendDocument { document = doc }).sendDocumentResult;
#endif
    }
}
