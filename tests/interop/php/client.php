<?php
// PHP ext-soap client proof (SoapClient in WSDL mode): sendDocument with AuthHeader,
// then a 'bad' document -> SoapFault with the gateway's faultcode.
$wsdl = $argv[1] ?? 'http://127.0.0.1:8765/?wsdl';
$c = new SoapClient($wsdl, ['trace' => 1, 'exceptions' => true, 'cache_wsdl' => WSDL_CACHE_NONE]);
fwrite(STDERR, "functions: " . implode(' | ', $c->__getFunctions()) . "\n");
$c->__setSoapHeaders([new SoapHeader('urn:edxml-gateway:soap:v1', 'AuthHeader', ['agencyCode' => 'A1', 'secret' => 's'])]);
$r = $c->sendDocument(['document' => '<doc/>']);   // ext-soap base64-encodes base64Binary itself
$rec = $r->sendDocumentResult;
$list = $rec->recipients->string;
if (!is_array($list)) $list = [$list];               // one item comes back as a scalar (no SOAP_SINGLE_ELEMENT_ARRAYS)
echo "ok documentId={$rec->documentId} recipients=", implode(',', $list), "\n";
try {
    $c->sendDocument(['document' => 'bad']);
    echo "FAIL: no fault\n";
    exit(1);
} catch (SoapFault $f) {
    // faultcode is the raw QName text, with the *server's* prefix (e.g. "soap11env:Client.SchemaInvalid").
    echo "fault code={$f->faultcode} message={$f->faultstring}\n";
    $local = substr(strrchr(':' . $f->faultcode, ':'), 1);
    exit($local === 'Client.SchemaInvalid' ? 0 : 1);
}
