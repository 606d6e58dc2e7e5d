'use strict';
// Node.js `soap`: the whole exchange story through the WSDL, as the three agencies.
// usage: node client.js WSDL_URL EDXML_FILE; agencies from INTEROP_{SENDER,HANDLER,REJECTER}_{CODE,SECRET}.
const crypto = require('crypto');
const fs = require('fs');
const soap = require('soap');

const NS = 'urn:edxml-gateway:soap:v1';

function check(ok, what) {
  if (!ok) { console.log(`FAIL: ${what}`); process.exit(1); }
  console.log(`ok ${what}`);
}

async function agency(wsdl, role) {
  const code = process.env[`INTEROP_${role}_CODE`];
  const client = await soap.createClientAsync(wsdl, { disableCache: true });
  client.addSoapHeader({ AuthHeader: { agencyCode: code, secret: process.env[`INTEROP_${role}_SECRET`] } }, '', 'gw', NS);
  return [code, client];
}

const list = (x) => (x == null ? [] : [].concat(x));  // one item comes back as an object, none as undefined

async function pending(client, docId) {
  const [res] = await client.getPendingDocumentsAsync({ maxItems: 100 });
  const r = res && res.getPendingDocumentsResult;
  return list(r && r.PendingItem).filter((i) => i.documentId === docId);
}

async function main() {
  let [wsdl, path] = process.argv.slice(2);
  if (wsdl.startsWith('file:')) wsdl = require('url').fileURLToPath(wsdl);  // soap wants a path, not a file: URL
  const edxml = fs.readFileSync(path);
  const [[vpcpCode, vpcp], [naCode, na], [cbCode, cb]] =
    await Promise.all(['SENDER', 'HANDLER', 'REJECTER'].map((r) => agency(wsdl, r)));

  // soap neither encodes nor decodes base64Binary: send and read base64 text.
  const [sent] = await vpcp.sendDocumentAsync({ document: edxml.toString('base64') });
  const receipt = sent.sendDocumentResult;
  const docId = receipt.documentId;
  check(list(receipt.recipients.string).sort().join() === [naCode, cbCode].sort().join(), `sendDocument ${docId} recipients`);

  for (const [code, c] of [[naCode, na], [cbCode, cb]]) {
    const items = await pending(c, docId);
    check(items.length === 1 && items[0].kind === 'document', `${code} getPendingDocuments has the document`);
    const [res] = await c.getDocumentAsync({ itemId: items[0].itemId });
    const data = Buffer.from(res.getDocumentResult.edxml, 'base64');
    const sha = crypto.createHash('sha256').update(data).digest('hex');
    check(data.equals(edxml) && res.getDocumentResult.sha256 === sha, `${code} getDocument bytes`);
    const [ack] = await c.confirmReceivedAsync({ itemId: items[0].itemId });
    check(ack.confirmReceivedResult === true, `${code} confirmReceived`);
  }

  for (const s of ['03', '04', '05', '06']) {
    const [r] = await na.updateStatusAsync({ documentId: docId, statusCode: s, staff: { department: 'Văn thư', staff: 'A' } });
    check(r.updateStatusResult.statusCode === s, `${naCode} updateStatus ${s}`);
  }
  const [rej] = await cb.updateStatusAsync({ documentId: docId, statusCode: '02', description: 'Gửi nhầm đơn vị' });
  check(rej.updateStatusResult.statusCode === '02', `${cbCode} updateStatus 02 with a reason`);

  const [h] = await vpcp.getStatusHistoryAsync({ documentId: docId });
  const history = {};
  for (const e of list(h.getStatusHistoryResult && h.getStatusHistoryResult.StatusEntry)) {
    (history[e.recipientCode] = history[e.recipientCode] || []).push(e.statusCode);
  }
  const want = { [naCode]: ['01', '03', '04', '05', '06'], [cbCode]: ['01', '02'] };
  check(JSON.stringify(history) === JSON.stringify(want), `getStatusHistory ${JSON.stringify(history)}`);

  const items = await pending(vpcp, docId);
  const got = items.map((i) => `${i.kind} ${i.statusFrom} ${i.statusCode}`).sort();
  const expected = [...want[naCode].map((s) => `status ${naCode} ${s}`), ...want[cbCode].map((s) => `status ${cbCode} ${s}`)].sort();
  check(got.join() === expected.join(), `${vpcpCode} getPendingDocuments has the 7 status items`);
  let acked = 0;
  for (const i of items) acked += (await vpcp.confirmReceivedAsync({ itemId: i.itemId }))[0].confirmReceivedResult === true;
  check(acked === 7, `${vpcpCode} confirmReceived x7`);

  try {
    await na.updateStatusAsync({ documentId: docId, statusCode: '04' });
    check(false, '04 after 06 raises a fault');
  } catch (err) {
    const f = err.root && err.root.Envelope && err.root.Envelope.Body && err.root.Envelope.Body.Fault;
    if (!f) throw err;
    // faultcode is the raw text with the server's prefix: compare the part after the last ':'.
    const code = String(f.faultcode).split(':').pop();
    const typed = f.detail && f.detail.GatewayFault && f.detail.GatewayFault.code;
    console.log(`fault code=${code} detail.code=${typed} message=${f.faultstring}`);
    check(code === 'Client.IllegalTransition' && typed === code, 'typed fault');
  }
  console.log('story passed');
}
main().catch((e) => { console.error('ERROR', (e && e.stack) || e); process.exit(2); });
