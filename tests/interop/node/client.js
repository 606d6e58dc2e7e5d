'use strict';
// Node.js `soap` client proof: sendDocument with AuthHeader, then 'bad' -> typed SOAP fault.
const soap = require('soap');

async function main() {
  let wsdl = process.argv[2] || 'http://127.0.0.1:8765/?wsdl';
  if (wsdl.startsWith('file:')) wsdl = require('url').fileURLToPath(wsdl);  // soap wants a path, not a file: URL
  const client = await soap.createClientAsync(wsdl, { disableCache: true });
  const NS = 'urn:edxml-gateway:soap:v1';
  client.addSoapHeader({ AuthHeader: { agencyCode: 'A1', secret: 's' } }, '', 'gw', NS);
  const [res] = await client.sendDocumentAsync({ document: Buffer.from('<doc/>').toString('base64') });
  const r = res.sendDocumentResult;
  console.log(`ok documentId=${r.documentId} recipients=${[].concat(r.recipients.string).join(',')}`);
  try {
    await client.sendDocumentAsync({ document: Buffer.from('bad').toString('base64') });
    console.log('FAIL: no fault');
    process.exitCode = 1;
  } catch (err) {
    const f = err.root && err.root.Envelope && err.root.Envelope.Body && err.root.Envelope.Body.Fault;
    if (!f) throw err;
    // faultcode is the raw QName text with the server's prefix, e.g. "soap11env:Client.SchemaInvalid".
    console.log(`fault code=${f.faultcode} message=${f.faultstring}`);
    if (String(f.faultcode).split(':').pop() !== 'Client.SchemaInvalid') process.exitCode = 1;
  }
}
main().catch((e) => { console.error('ERROR', e && e.stack || e); process.exitCode = 2; });
