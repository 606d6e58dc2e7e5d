<?php
// PHP ext-soap (SoapClient in WSDL mode): the exchange story across two provinces, each agency at its
// own gateway. Same calls as tests/interop/php/client.php, but the recipient's gateway is another
// instance, so what crosses the network is awaited (polling) instead of expected at once.
// usage: php federated_client.php SENDER_WSDL HANDLER_WSDL EDXML_FILE
// agencies from INTEROP_{SENDER,HANDLER}_{CODE,SECRET}.
const NS = 'urn:edxml-gateway:soap:v1';
const PATIENCE = 60;  // seconds to wait for something to cross the network

function check($ok, $what) {
    if (!$ok) { echo "FAIL: $what\n"; exit(1); }
    echo "ok $what\n";
}

function agency($wsdl, $role) {
    $c = new SoapClient($wsdl, ['exceptions' => true, 'cache_wsdl' => WSDL_CACHE_NONE,
                                'features' => SOAP_SINGLE_ELEMENT_ARRAYS]);
    $code = getenv("INTEROP_{$role}_CODE");
    $c->__setSoapHeaders([new SoapHeader(NS, 'AuthHeader', ['agencyCode' => $code, 'secret' => getenv("INTEROP_{$role}_SECRET")])]);
    return [$code, $c];
}

// Poll $probe until it returns something non-empty, or fail after PATIENCE seconds.
function await_($probe, $what) {
    $deadline = microtime(true) + PATIENCE;
    while (true) {
        $got = $probe();
        if ($got) return $got;
        if (microtime(true) > $deadline) { echo "FAIL: timed out waiting for $what\n"; exit(1); }
        usleep(200000);
    }
}

[$senderWsdl, $handlerWsdl, $path] = [$argv[1], $argv[2], $argv[3]];
$edxml = file_get_contents($path);
[$sCode, $sender] = agency($senderWsdl, 'SENDER');
[$hCode, $handler] = agency($handlerWsdl, 'HANDLER');

$receipt = $sender->sendDocument(['document' => $edxml])->sendDocumentResult;
$docId = $receipt->documentId;
check($receipt->recipients->string === [$hCode], "sendDocument $docId to $hCode");

// Leased items are hidden from the next call: keep every item seen.
$seen = [];
$item = await_(function () use ($handler, $receipt, &$seen) {
    foreach ($handler->getPendingDocuments(['maxItems' => 100])->getPendingDocumentsResult->PendingItem ?? [] as $i) {
        $seen[$i->itemId] = $i;
    }
    foreach ($seen as $i) if ($i->kind === 'document' && $i->edxmlDocumentId === $receipt->edxmlDocumentId) return $i;
    return null;
}, "the document at $hCode");
check($item->senderCode === $sCode, "$hCode getPendingDocuments has the document from $sCode");
$got = $handler->getDocument(['itemId' => $item->itemId])->getDocumentResult;
check($got->edxml === $edxml && $got->sha256 === hash('sha256', $edxml), "$hCode getDocument bytes");
check($handler->confirmReceived(['itemId' => $item->itemId])->confirmReceivedResult === true, "$hCode confirmReceived");

foreach (['03', '04', '05', '06'] as $s) {
    $r = $handler->updateStatus(['documentId' => $item->documentId, 'statusCode' => $s,
                                 'staff' => ['department' => 'Văn thư', 'staff' => 'B']])->updateStatusResult;
    check($r->statusCode === $s, "$hCode updateStatus $s");
}

$history = await_(function () use ($sender, $docId, $hCode) {
    $h = [];
    foreach ($sender->getStatusHistory(['documentId' => $docId])->getStatusHistoryResult->StatusEntry ?? [] as $e) {
        $h[$e->recipientCode][] = $e->statusCode;
    }
    return ($h[$hCode] ?? []) === ['01', '03', '04', '05', '06'] ? $h : null;
}, "$hCode's statuses in $sCode's history");
check(array_keys($history) === [$hCode], 'getStatusHistory ' . json_encode($history));

$statuses = [];
await_(function () use ($sender, $docId, &$statuses) {
    foreach ($sender->getPendingDocuments(['maxItems' => 100])->getPendingDocumentsResult->PendingItem ?? [] as $i) {
        if ($i->kind === 'status' && $i->documentId === $docId) $statuses[$i->itemId] = $i;
    }
    return count($statuses) >= 5;
}, "the status messages at $sCode");
$got = array_values(array_map(fn($i) => "$i->statusFrom $i->statusCode", $statuses));
sort($got);
check($got === array_map(fn($s) => "$hCode $s", ['01', '03', '04', '05', '06']), "$sCode getPendingDocuments has the 5 status items");
$acked = 0;
foreach ($statuses as $i) $acked += $sender->confirmReceived(['itemId' => $i->itemId])->confirmReceivedResult === true;
check($acked === 5, "$sCode confirmReceived x5");

try {
    $handler->updateStatus(['documentId' => $item->documentId, 'statusCode' => '04']);
    check(false, '04 after 06 raises a fault');
} catch (SoapFault $f) {
    $code = substr(strrchr(':' . $f->faultcode, ':'), 1);
    $typed = $f->detail->GatewayFault->code ?? null;
    echo "fault code=$code detail.code=$typed message={$f->faultstring}\n";
    check($code === 'Client.IllegalTransition' && $typed === $code, 'typed fault');
}
echo "story passed\n";
