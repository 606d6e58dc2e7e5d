#!/usr/bin/env bash
# Python zeep: no stub generation, the WSDL is parsed at run time.
. "$(dirname "$0")/../lib.sh"
PY="${INTEROP_PYTHON:-$REPO_DIR/.venv/bin/python}"
need "$PY"
"$PY" -c 'import zeep' 2>/dev/null || { echo "SKIP: python package zeep missing" >&2; exit 77; }
step "$PY" "$STACK_DIR/client.py" "$WSDL_URL" "$DOCUMENT"
