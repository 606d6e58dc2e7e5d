// Mono / .NET ASMX-style proxy (from `wsdl`): the whole exchange story, as the three agencies.
// usage: mono client.exe EDXML_FILE; agencies from INTEROP_{SENDER,HANDLER,REJECTER}_{CODE,SECRET}.
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Net;
using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Web.Services.Protocols;
using System.Xml;
using EdxmlGatewayClient;

class Client {
    static void Check(bool ok, string what) {
        if (!ok) { Console.WriteLine("FAIL: " + what); Environment.Exit(1); }
        Console.WriteLine("ok " + what);
    }

    static string Code(string role) { return Environment.GetEnvironmentVariable("INTEROP_" + role + "_CODE"); }

    // One proxy per agency; the proxy sends AuthHeaderValue with every call.  Endpoint = the WSDL's soap:address.
    static EdxmlGatewayService Agency(string role) {
        var svc = new EdxmlGatewayService();
        svc.AuthHeaderValue = new AuthHeader { agencyCode = Code(role), secret = Environment.GetEnvironmentVariable("INTEROP_" + role + "_SECRET") };
        var endpoint = Environment.GetEnvironmentVariable("INTEROP_ENDPOINT");
        if (!string.IsNullOrEmpty(endpoint)) svc.Url = endpoint;
        return svc;
    }

    // INTEROP_CA_FILE: trust a server certificate that chains to this PEM CA (a proxy's own CA), with the
    // host name still checked; everything else keeps the system's validation.
    static void TrustCa() {
        var path = Environment.GetEnvironmentVariable("INTEROP_CA_FILE");
        if (string.IsNullOrEmpty(path)) return;
        var pem = File.ReadAllText(path);
        var begin = pem.IndexOf("-----BEGIN CERTIFICATE-----") + "-----BEGIN CERTIFICATE-----".Length;
        var ca = new X509Certificate2(Convert.FromBase64String(pem.Substring(begin, pem.IndexOf("-----END CERTIFICATE-----") - begin)));
        ServicePointManager.ServerCertificateValidationCallback = (sender, cert, chain, errors) => {
            if (errors == SslPolicyErrors.None) return true;
            if (errors != SslPolicyErrors.RemoteCertificateChainErrors || cert == null) return false;
            var own = new X509Chain();
            own.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
            own.ChainPolicy.VerificationFlags = X509VerificationFlags.AllowUnknownCertificateAuthority;
            own.ChainPolicy.ExtraStore.Add(ca);
            if (!own.Build(new X509Certificate2(cert))) return false;
            var root = own.ChainElements[own.ChainElements.Count - 1].Certificate;
            return root.Thumbprint == ca.Thumbprint;
        };
    }

    static List<PendingItem> Pending(EdxmlGatewayService svc, string docId) {
        // maxItems is optional (minOccurs=0): the proxy adds a maxItemsSpecified flag.
        return (svc.getPendingDocuments(100, true) ?? new PendingItem[0]).Where(i => i.documentId == docId).ToList();
    }

    static int Main(string[] args) {
        TrustCa();
        byte[] edxml = File.ReadAllBytes(args[0]);
        EdxmlGatewayService vpcp = Agency("SENDER"), na = Agency("HANDLER"), cb = Agency("REJECTER");
        string naCode = Code("HANDLER"), cbCode = Code("REJECTER");

        SendReceipt receipt = vpcp.sendDocument(edxml);
        string docId = receipt.documentId;
        Check(receipt.recipients.OrderBy(x => x).SequenceEqual(new[] { naCode, cbCode }.OrderBy(x => x)), "sendDocument " + docId + " recipients");

        foreach (var svc in new[] { na, cb }) {
            string who = svc.AuthHeaderValue.agencyCode;
            var items = Pending(svc, docId);
            Check(items.Count == 1 && items[0].kind == "document", who + " getPendingDocuments has the document");
            FetchedDocument got = svc.getDocument(items[0].itemId);
            string sha = BitConverter.ToString(SHA256.Create().ComputeHash(edxml)).Replace("-", "").ToLowerInvariant();
            Check(got.edxml.SequenceEqual(edxml) && got.sha256 == sha, who + " getDocument bytes");
            Check(svc.confirmReceived(items[0].itemId), who + " confirmReceived");
        }

        var staff = new StaffInfo { department = "Văn thư", staff = "A" };
        foreach (var s in new[] { "03", "04", "05", "06" }) {
            Check(na.updateStatus(docId, s, null, staff).statusCode == s, naCode + " updateStatus " + s);
        }
        Check(cb.updateStatus(docId, "02", "Gửi nhầm đơn vị", null).statusCode == "02", cbCode + " updateStatus 02 with a reason");

        var history = (vpcp.getStatusHistory(docId) ?? new StatusEntry[0])
            .GroupBy(e => e.recipientCode).ToDictionary(g => g.Key, g => string.Join(",", g.Select(e => e.statusCode)));
        string shown = string.Join(" ", history.OrderBy(kv => kv.Key).Select(kv => kv.Key + "=" + kv.Value));
        Check(history.Count == 2 && history.ContainsKey(naCode) && history[naCode] == "01,03,04,05,06"
              && history.ContainsKey(cbCode) && history[cbCode] == "01,02", "getStatusHistory " + shown);

        var statusItems = Pending(vpcp, docId);
        var got7 = statusItems.Select(i => i.kind + " " + i.statusFrom + " " + i.statusCode).OrderBy(x => x, StringComparer.Ordinal);
        var want7 = new[] { "01", "03", "04", "05", "06" }.Select(c => "status " + naCode + " " + c)
            .Concat(new[] { "01", "02" }.Select(c => "status " + cbCode + " " + c)).OrderBy(x => x, StringComparer.Ordinal);
        Check(got7.SequenceEqual(want7), vpcp.AuthHeaderValue.agencyCode + " getPendingDocuments has the 7 status items");
        Check(statusItems.Count(i => vpcp.confirmReceived(i.itemId)) == 7, vpcp.AuthHeaderValue.agencyCode + " confirmReceived x7");

        try {
            na.updateStatus(docId, "04", null, null);
            Check(false, "04 after 06 raises a fault");
        } catch (SoapException e) {
            // e.Code is the faultcode as an XmlQualifiedName (Name = the part after the prefix);
            // e.Detail the <detail> element, holding GatewayFault{code, message}.
            var ns = new XmlNamespaceManager(new NameTable());
            ns.AddNamespace("gw", "urn:edxml-gateway:soap:v1");
            XmlNode typed = e.Detail == null ? null : e.Detail.SelectSingleNode("gw:GatewayFault/gw:code", ns);
            string detailCode = typed == null ? null : typed.InnerText;
            Console.WriteLine("fault code=" + e.Code.Name + " detail.code=" + detailCode + " message=" + e.Message);
            Check(e.Code.Name == "Client.IllegalTransition" && detailCode == e.Code.Name, "typed fault");
        }
        Console.WriteLine("story passed");
        return 0;
    }
}
