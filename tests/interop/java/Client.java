// Java JAX-WS RI client proof (stubs from wsimport): sendDocument with AuthHeader,
// then a 'bad' document -> SOAPFaultException with the gateway's faultcode.
import edxml.client.*;
import java.nio.charset.StandardCharsets;
import javax.xml.namespace.QName;
import javax.xml.ws.soap.SOAPFaultException;

public class Client {
    public static void main(String[] args) throws Exception {
        Svc svc = new Svc(new java.net.URL(args[0]), new QName("urn:edxml-gateway:soap:v1", "Svc"));
        EdxmlGateway port = svc.getEdxmlGateway();  // endpoint = the WSDL's soap:address
        AuthHeader auth = new AuthHeader();
        auth.setAgencyCode("A1");
        auth.setSecret("s");
        // The header is a method parameter only when wsimport binds it (header part in the
        // input message, or -XadditionalHeaders for a header from another message).
        SendReceipt r = port.sendDocument("<doc/>".getBytes(StandardCharsets.UTF_8), auth);
        System.out.println("ok documentId=" + r.getDocumentId() + " recipients=" + String.join(",", r.getRecipients().getString()));
        try {
            port.sendDocument("bad".getBytes(StandardCharsets.UTF_8), auth);
            System.out.println("FAIL: no fault");
            System.exit(1);
        } catch (SOAPFaultException e) {  // not GatewayFault_Exception: the fault carries no <detail>
            String code = e.getFault().getFaultCodeAsQName().getLocalPart();
            System.out.println("fault code=" + code + " message=" + e.getFault().getFaultString());
            System.exit(code.equals("Client.SchemaInvalid") ? 0 : 1);
        } catch (GatewayFault_Exception e) {
            System.out.println("typed fault GatewayFault_Exception message=" + e.getMessage());
            System.exit(0);
        }
    }
}
