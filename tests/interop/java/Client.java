// Java JAX-WS RI (stubs from `wsimport -XadditionalHeaders`): the whole exchange story, as the three agencies.
// usage: java Client WSDL_URL EDXML_FILE; agencies from INTEROP_{SENDER,HANDLER,REJECTER}_{CODE,SECRET}.
import edxml.client.*;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.security.MessageDigest;
import java.util.*;
import javax.xml.ws.soap.SOAPFaultException;

public class Client {
    static void check(boolean ok, String what) {
        if (!ok) { System.out.println("FAIL: " + what); System.exit(1); }
        System.out.println("ok " + what);
    }

    static String code(String role) { return System.getenv("INTEROP_" + role + "_CODE"); }

    static AuthHeader auth(String role) {  // with -XadditionalHeaders the AuthHeader is a method parameter
        AuthHeader h = new AuthHeader();
        h.setAgencyCode(code(role));
        h.setSecret(System.getenv("INTEROP_" + role + "_SECRET"));
        return h;
    }

    static List<PendingItem> pending(EdxmlGateway port, AuthHeader auth, String docId) throws Exception {
        PendingItemArray all = port.getPendingDocuments(100, auth);
        List<PendingItem> mine = new ArrayList<>();
        if (all != null) for (PendingItem i : all.getPendingItem()) if (i.getDocumentId().equals(docId)) mine.add(i);
        return mine;
    }

    public static void main(String[] args) throws Exception {
        // The endpoint is the WSDL's soap:address.
        EdxmlGateway port = new EdxmlGatewayService(new java.net.URL(args[0])).getEdxmlGateway();
        byte[] edxml = Files.readAllBytes(Paths.get(args[1]));
        AuthHeader vpcp = auth("SENDER"), na = auth("HANDLER"), cb = auth("REJECTER");
        String naCode = na.getAgencyCode(), cbCode = cb.getAgencyCode();

        SendReceipt receipt = port.sendDocument(edxml, vpcp);
        String docId = receipt.getDocumentId();
        check(new TreeSet<>(receipt.getRecipients().getString()).equals(new TreeSet<>(List.of(naCode, cbCode))),
              "sendDocument " + docId + " recipients");

        for (AuthHeader r : List.of(na, cb)) {
            List<PendingItem> items = pending(port, r, docId);
            String who = r.getAgencyCode();
            check(items.size() == 1 && items.get(0).getKind().equals("document"), who + " getPendingDocuments has the document");
            FetchedDocument got = port.getDocument(items.get(0).getItemId(), r);
            StringBuilder sha = new StringBuilder();
            for (byte b : MessageDigest.getInstance("SHA-256").digest(edxml)) sha.append(String.format("%02x", b));
            check(Arrays.equals(got.getEdxml(), edxml) && got.getSha256().equals(sha.toString()), who + " getDocument bytes");
            check(port.confirmReceived(items.get(0).getItemId(), r), who + " confirmReceived");
        }

        StaffInfo staff = new StaffInfo();
        staff.setDepartment("Văn thư");
        staff.setStaff("A");
        for (String s : List.of("03", "04", "05", "06")) {
            check(port.updateStatus(docId, s, null, staff, na).getStatusCode().equals(s), naCode + " updateStatus " + s);
        }
        check(port.updateStatus(docId, "02", "Gửi nhầm đơn vị", null, cb).getStatusCode().equals("02"),
              cbCode + " updateStatus 02 with a reason");

        Map<String, List<String>> history = new TreeMap<>();
        StatusEntryArray entries = port.getStatusHistory(docId, vpcp);
        if (entries != null) for (StatusEntry e : entries.getStatusEntry()) {
            history.computeIfAbsent(e.getRecipientCode(), k -> new ArrayList<>()).add(e.getStatusCode());
        }
        Map<String, List<String>> want = new TreeMap<>(Map.of(naCode, List.of("01", "03", "04", "05", "06"), cbCode, List.of("01", "02")));
        check(history.equals(want), "getStatusHistory " + history);

        List<PendingItem> items = pending(port, vpcp, docId);
        List<String> got = new ArrayList<>(), expected = new ArrayList<>();
        for (PendingItem i : items) got.add(i.getKind() + " " + i.getStatusFrom() + " " + i.getStatusCode());
        want.forEach((who, codes) -> codes.forEach(c -> expected.add("status " + who + " " + c)));
        Collections.sort(got);
        Collections.sort(expected);
        check(got.equals(expected), vpcp.getAgencyCode() + " getPendingDocuments has the 7 status items");
        int acked = 0;
        for (PendingItem i : items) if (port.confirmReceived(i.getItemId(), vpcp)) acked++;
        check(acked == 7, vpcp.getAgencyCode() + " confirmReceived x7");

        try {
            port.updateStatus(docId, "04", null, null, na);
            check(false, "04 after 06 raises a fault");
        } catch (GatewayFault_Exception e) {  // typed: the wsdl:fault's detail element, bound by JAXB
            String code = e.getFaultInfo().getCode();
            System.out.println("fault code=" + code + " (GatewayFault_Exception) message=" + e.getFaultInfo().getMessage());
            check(code.equals("Client.IllegalTransition"), "typed fault");
        } catch (SOAPFaultException e) {  // a fault without the declared detail
            String code = e.getFault().getFaultCodeAsQName().getLocalPart();
            System.out.println("fault code=" + code + " (untyped SOAPFaultException) message=" + e.getFault().getFaultString());
            check(false, "typed fault");
        }
        System.out.println("story passed");
    }
}
