<?php
// PHP ext-soap (SoapClient in WSDL mode): the whole exchange story, as the three agencies.
// usage: php client.php WSDL_URL EDXML_FILE; agencies from INTEROP_{SENDER,HANDLER,REJECTER}_{CODE,SECRET}.
const NS = 'urn:edxml-gateway:soap:v1';

function check($ok, $what) {
    if (!$ok) { echo "FAIL: $what\n"; exit(1); }
    echo "ok $what\n";
}

function agency($wsdl, $role) {
    // SOAP_SINGLE_ELEMENT_ARRAYS: a one-item sequence stays an array (otherwise it becomes a scalar).
    $options = ['exceptions' => true, 'cache_wsdl' => WSDL_CACHE_NONE, 'features' => SOAP_SINGLE_ELEMENT_ARRAYS];
    if (getenv('INTEROP_CA_FILE')) {  // https through a proxy with its own CA: the WSDL and every call
        $options['stream_context'] = stream_context_create(['ssl' => [
            'cafile' => getenv('INTEROP_CA_FILE'), 'verify_peer' => true, 'verify_peer_name' => true]]);
    }
    if (getenv('INTEROP_ENDPOINT')) {
        $options['location'] = getenv('INTEROP_ENDPOINT');
    }
    $c = new SoapClient($wsdl, $options);
    $code = getenv("INTEROP_{$role}_CODE");
    $c->__setSoapHeaders([new SoapHeader(NS, 'AuthHeader', ['agencyCode' => $code, 'secret' => getenv("INTEROP_{$role}_SECRET")])]);
    return [$code, $c];
}

function pending($c, $docId) {
    $r = $c->getPendingDocuments(['maxItems' => 100])->getPendingDocumentsResult;
    return array_values(array_filter($r->PendingItem ?? [], fn($i) => $i->documentId === $docId));
}

[$wsdl, $path] = [$argv[1], $argv[2]];
$edxml = file_get_contents($path);
[$vpcpCode, $vpcp] = agency($wsdl, 'SENDER');
[$naCode, $na] = agency($wsdl, 'HANDLER');
[$cbCode, $cb] = agency($wsdl, 'REJECTER');

$receipt = $vpcp->sendDocument(['document' => $edxml])->sendDocumentResult;  // ext-soap does the base64
$docId = $receipt->documentId;
$recipients = $receipt->recipients->string;
sort($recipients);
$want = [$naCode, $cbCode];
sort($want);
check($recipients === $want, "sendDocument $docId recipients");

foreach ([$naCode => $na, $cbCode => $cb] as $code => $c) {
    $items = pending($c, $docId);
    check(count($items) === 1 && $items[0]->kind === 'document', "$code getPendingDocuments has the document");
    $got = $c->getDocument(['itemId' => $items[0]->itemId])->getDocumentResult;
    check($got->edxml === $edxml && $got->sha256 === hash('sha256', $edxml), "$code getDocument bytes");
    check($c->confirmReceived(['itemId' => $items[0]->itemId])->confirmReceivedResult === true, "$code confirmReceived");
}

foreach (['03', '04', '05', '06'] as $s) {
    $r = $na->updateStatus(['documentId' => $docId, 'statusCode' => $s,
                            'staff' => ['department' => 'Văn thư', 'staff' => 'A']])->updateStatusResult;
    check($r->statusCode === $s, "$naCode updateStatus $s");
}
$r = $cb->updateStatus(['documentId' => $docId, 'statusCode' => '02', 'description' => 'Gửi nhầm đơn vị'])->updateStatusResult;
check($r->statusCode === '02', "$cbCode updateStatus 02 with a reason");

$history = [];
foreach ($vpcp->getStatusHistory(['documentId' => $docId])->getStatusHistoryResult->StatusEntry ?? [] as $e) {
    $history[$e->recipientCode][] = $e->statusCode;
}
check($history == [$naCode => ['01', '03', '04', '05', '06'], $cbCode => ['01', '02']], 'getStatusHistory ' . json_encode($history));

$items = pending($vpcp, $docId);
$got = array_map(fn($i) => "$i->kind $i->statusFrom $i->statusCode", $items);
$want = ["status $cbCode 01", "status $cbCode 02"];
foreach (['01', '03', '04', '05', '06'] as $s) $want[] = "status $naCode $s";
sort($got);
sort($want);
check($got === $want, "$vpcpCode getPendingDocuments has the 7 status items");
$acked = 0;
foreach ($items as $i) $acked += $vpcp->confirmReceived(['itemId' => $i->itemId])->confirmReceivedResult === true;
check($acked === 7, "$vpcpCode confirmReceived x7");

try {
    $na->updateStatus(['documentId' => $docId, 'statusCode' => '04']);
    check(false, '04 after 06 raises a fault');
} catch (SoapFault $f) {
    // faultcode is the raw text with the server's prefix: compare the part after the last ':'.
    // $f->detail is the <detail> content as objects (GatewayFault typed from the WSDL).
    $code = substr(strrchr(':' . $f->faultcode, ':'), 1);
    $typed = $f->detail->GatewayFault->code ?? null;
    echo "fault code=$code detail.code=$typed message={$f->faultstring}\n";
    check($code === 'Client.IllegalTransition' && $typed === $code, 'typed fault');
}
echo "story passed\n";
