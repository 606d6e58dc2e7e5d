// Java Apache Axis 1.4 (JAX-RPC) client proof (stubs from WSDL2Java): sendDocument with
// AuthHeader, then a 'bad' document -> AxisFault with the gateway's faultcode.
import edxml.axis.*;
import org.apache.axis.AxisFault;
import org.apache.axis.message.SOAPHeaderElement;

public class AxisClient {
    public static void main(String[] args) throws Exception {
        // endpoint = the WSDL's soap:address
        EdxmlGateway_BindingStub stub = (EdxmlGateway_BindingStub) new SvcLocator().getEdxmlGateway();
        String ns = "urn:edxml-gateway:soap:v1";
        SOAPHeaderElement h = new SOAPHeaderElement(ns, "AuthHeader");  // Axis 1 never binds headers to parameters
        h.addChildElement("agencyCode", "", ns).addTextNode("A1");
        h.addChildElement("secret", "", ns).addTextNode("s");
        stub.setHeader(h);
        SendReceipt r = stub.sendDocument("<doc/>".getBytes("UTF-8"));
        System.out.println("ok documentId=" + r.getDocumentId() + " recipients=" + String.join(",", r.getRecipients()));
        try {
            stub.sendDocument("bad".getBytes("UTF-8"));
            System.out.println("FAIL: no fault");
            System.exit(1);
        } catch (AxisFault f) {
            String code = f.getFaultCode().getLocalPart();
            System.out.println("fault code=" + code + " message=" + f.getFaultString());
            System.exit(code.equals("Client.SchemaInvalid") ? 0 : 1);
        }
    }
}
