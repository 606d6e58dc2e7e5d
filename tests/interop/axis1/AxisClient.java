// Java Apache Axis 1.4 (JAX-RPC, stubs from WSDL2Java): the whole exchange story, as the three agencies.
// usage: java AxisClient EDXML_FILE; agencies from INTEROP_{SENDER,HANDLER,REJECTER}_{CODE,SECRET}.
import edxml.axis.*;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.security.MessageDigest;
import java.util.*;
import org.apache.axis.AxisFault;
import org.apache.axis.message.SOAPHeaderElement;

public class AxisClient {
    static final String NS = "urn:edxml-gateway:soap:v1";

    static void check(boolean ok, String what) {
        if (!ok) { System.out.println("FAIL: " + what); System.exit(1); }
        System.out.println("ok " + what);
    }

    static String code(String role) { return System.getenv("INTEROP_" + role + "_CODE"); }

    // One stub per agency. Axis 1 never binds SOAP headers to method parameters: set the element on the stub.
    static EdxmlGateway_PortType stub(String role) throws Exception {
        EdxmlGateway_BindingStub stub = (EdxmlGateway_BindingStub) new EdxmlGatewayServiceLocator().getEdxmlGateway();
        SOAPHeaderElement h = new SOAPHeaderElement(NS, "AuthHeader");  // endpoint = the WSDL's soap:address
        h.addChildElement("agencyCode", "", NS).addTextNode(code(role));
        h.addChildElement("secret", "", NS).addTextNode(System.getenv("INTEROP_" + role + "_SECRET"));
        stub.setHeader(h);
        return stub;
    }

    static List<PendingItem> pending(EdxmlGateway_PortType svc, String docId) throws Exception {
        List<PendingItem> mine = new ArrayList<>();
        PendingItem[] all = svc.getPendingDocuments(100);
        if (all != null) for (PendingItem i : all) if (i.getDocumentId().equals(docId)) mine.add(i);
        return mine;
    }

    public static void main(String[] args) throws Exception {
        byte[] edxml = Files.readAllBytes(Paths.get(args[0]));
        EdxmlGateway_PortType vpcp = stub("SENDER"), na = stub("HANDLER"), cb = stub("REJECTER");
        String vpcpCode = code("SENDER"), naCode = code("HANDLER"), cbCode = code("REJECTER");

        SendReceipt receipt = vpcp.sendDocument(edxml);
        String docId = receipt.getDocumentId();
        check(new TreeSet<>(Arrays.asList(receipt.getRecipients())).equals(new TreeSet<>(List.of(naCode, cbCode))),
              "sendDocument " + docId + " recipients");

        for (String role : List.of("HANDLER", "REJECTER")) {
            EdxmlGateway_PortType svc = role.equals("HANDLER") ? na : cb;
            List<PendingItem> items = pending(svc, docId);
            check(items.size() == 1 && items.get(0).getKind().equals("document"), code(role) + " getPendingDocuments has the document");
            FetchedDocument got = svc.getDocument(items.get(0).getItemId());
            StringBuilder sha = new StringBuilder();
            for (byte b : MessageDigest.getInstance("SHA-256").digest(edxml)) sha.append(String.format("%02x", b));
            check(Arrays.equals(got.getEdxml(), edxml) && got.getSha256().equals(sha.toString()), code(role) + " getDocument bytes");
            check(svc.confirmReceived(items.get(0).getItemId()), code(role) + " confirmReceived");
        }

        StaffInfo staff = new StaffInfo("Văn thư", "A", null, null);
        for (String s : List.of("03", "04", "05", "06")) {
            check(na.updateStatus(docId, s, null, staff).getStatusCode().equals(s), naCode + " updateStatus " + s);
        }
        check(cb.updateStatus(docId, "02", "Gửi nhầm đơn vị", null).getStatusCode().equals("02"), cbCode + " updateStatus 02 with a reason");

        Map<String, List<String>> history = new TreeMap<>();
        StatusEntry[] entries = vpcp.getStatusHistory(docId);
        if (entries != null) for (StatusEntry e : entries) {
            history.computeIfAbsent(e.getRecipientCode(), k -> new ArrayList<>()).add(e.getStatusCode());
        }
        Map<String, List<String>> want = new TreeMap<>(Map.of(naCode, List.of("01", "03", "04", "05", "06"), cbCode, List.of("01", "02")));
        check(history.equals(want), "getStatusHistory " + history);

        List<PendingItem> items = pending(vpcp, docId);
        List<String> got = new ArrayList<>(), expected = new ArrayList<>();
        for (PendingItem i : items) got.add(i.getKind() + " " + i.getStatusFrom() + " " + i.getStatusCode());
        want.forEach((who, codes) -> codes.forEach(c -> expected.add("status " + who + " " + c)));
        Collections.sort(got);
        Collections.sort(expected);
        check(got.equals(expected), vpcpCode + " getPendingDocuments has the 7 status items");
        int acked = 0;
        for (PendingItem i : items) if (vpcp.confirmReceived(i.getItemId())) acked++;
        check(acked == 7, vpcpCode + " confirmReceived x7");

        try {
            na.updateStatus(docId, "04", null, null);
            check(false, "04 after 06 raises a fault");
        } catch (GatewayFault f) {  // typed: WSDL2Java's class for the wsdl:fault (an AxisFault); message -> getMessage1()
            String code = f.getFaultCode().getLocalPart();
            System.out.println("fault code=" + code + " detail.code=" + f.getCode() + " message=" + f.getMessage1());
            check(code.equals("Client.IllegalTransition") && f.getCode().equals(code), "typed fault");
        } catch (AxisFault f) {  // a fault without the declared detail
            System.out.println("fault code=" + f.getFaultCode().getLocalPart() + " (untyped AxisFault) message=" + f.getFaultString());
            check(false, "typed fault");
        }
        System.out.println("story passed");
    }
}
