#!/usr/bin/env bash
# Node.js `soap` (npm): no stub generation, the WSDL is parsed at run time.
. "$(dirname "$0")/../lib.sh"
need node "$STACK_DIR/node_modules/soap/package.json"
step node "$STACK_DIR/client.js" "$WSDL_URL" "$DOCUMENT"
