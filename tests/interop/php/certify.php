<?php
// Desk software scripted as a clerk would work, through PHP ext-soap stubs: start a certification
// run, send one document to the sandbox, then poll, fetch, acknowledge and act on each test document
// by its marker, until the run ends. usage: php certify.php WSDL_URL EDXML_FILE; agency from
// INTEROP_CODE / INTEROP_SECRET. Prints "grade: ..." and exits 0 when the run ended.
const NS = 'urn:edxml-gateway:soap:v1';

[$wsdl, $path] = [$argv[1], $argv[2]];
$c = new SoapClient($wsdl, ['exceptions' => true, 'cache_wsdl' => WSDL_CACHE_NONE,
                            'features' => SOAP_SINGLE_ELEMENT_ARRAYS]);
$c->__setSoapHeaders([new SoapHeader(NS, 'AuthHeader',
    ['agencyCode' => getenv('INTEROP_CODE'), 'secret' => getenv('INTEROP_SECRET')])]);

$run = $c->startCertification(['minutes' => 10])->startCertificationResult;
echo "run {$run->runId}\n";
$receipt = $c->sendDocument(['document' => file_get_contents($path)])->sendDocumentResult;
echo "sent {$receipt->documentId}\n";

for ($round = 0; $round < 120; $round++) {
    $items = $c->getPendingDocuments(['maxItems' => 50])->getPendingDocumentsResult->PendingItem ?? [];
    foreach ($items as $item) {
        $got = $c->getDocument(['itemId' => $item->itemId])->getDocumentResult;
        if ($got->sha256 !== hash('sha256', $got->edxml)) { echo "FAIL: damaged item {$item->itemId}\n"; exit(1); }
        $c->confirmReceived(['itemId' => $item->itemId]);
        $doc = $item->documentId;
        if ($item->kind === 'status' && ($item->statusCode ?? '') === '13') {
            $c->updateStatus(['documentId' => $doc, 'statusCode' => '15', 'description' => 'Đồng ý thu hồi']);
        } elseif ($item->kind === 'document' && str_starts_with($item->subject, '[EDXML-CERTIFY:REJECT]')) {
            $c->updateStatus(['documentId' => $doc, 'statusCode' => '02', 'description' => 'Gửi nhầm đơn vị']);
        } elseif ($item->kind === 'document' && (str_starts_with($item->subject, '[EDXML-CERTIFY:PROCESS]')
                                               || str_starts_with($item->subject, '[EDXML-CERTIFY:ATTACHMENTS]'))) {
            foreach (['03', '04', '05', '06'] as $s) {
                $c->updateStatus(['documentId' => $doc, 'statusCode' => $s,
                                  'staff' => ['department' => 'Văn thư', 'staff' => 'Lê Thị Mai']]);
            }
        }
        echo "handled {$item->kind} {$item->itemId}\n";
    }
    $state = $c->getCertification(['runId' => $run->runId])->getCertificationResult;
    if (!$state->active) {
        echo "grade: {$state->grade}\n";
        exit(0);
    }
    usleep(300000);
}
echo "FAIL: the run did not end\n";
exit(1);
