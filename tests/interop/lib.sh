# Sourced by <stack>/run.sh.  Usage inside run.sh:  . "$(dirname "$0")/../lib.sh"
# Contract of every <stack>/run.sh WSDL_URL BUILD_DIR (run.py sets the environment):
#   INTEROP_DOCUMENT                       the edXML file the sender sends (a fresh DocumentId per run)
#   INTEROP_{SENDER,HANDLER,REJECTER}_CODE / _SECRET   the three agencies (VPCP, Nghệ An, Cao Bằng)
#   INTEROP_CA_FILE (optional, zeep/PHP/Mono)  PEM CA to trust for an https WSDL and endpoint (a proxy's
#                                          self-signed test CA); the system's CAs otherwise
#   INTEROP_ENDPOINT (optional, zeep/PHP/Mono) SOAP endpoint to call instead of the WSDL's soap:address
#   generate stubs from WSDL_URL into BUILD_DIR, build, run the client (the whole story);
#   exit 0 = pass, 77 = stack not installed (skip), anything else = fail.
set -euo pipefail
STACK_DIR="$(cd "$(dirname "$0")" && pwd)"
INTEROP_DIR="$(cd "$STACK_DIR/.." && pwd)"
REPO_DIR="$(cd "$INTEROP_DIR/../.." && pwd)"
WSDL_URL="${1:?usage: run.sh WSDL_URL BUILD_DIR}"
BUILD_DIR="${2:?usage: run.sh WSDL_URL BUILD_DIR}"
DOCUMENT="${INTEROP_DOCUMENT:?set INTEROP_DOCUMENT (run.py does)}"
for v in INTEROP_{SENDER,HANDLER,REJECTER}_{CODE,SECRET}; do
    [ -n "${!v:-}" ] || { echo "set $v (run.py does)" >&2; exit 2; }
done
mkdir -p "$BUILD_DIR"

need() {  # need cmd-or-file ... : exit 77 (skip) when a tool is missing
    local t
    for t in "$@"; do
        if [[ "$t" == /* ]]; then [ -e "$t" ] && continue; else command -v "$t" >/dev/null && continue; fi
        echo "SKIP: '$t' not installed (run tests/interop/install.sh)" >&2
        exit 77
    done
}
step() { printf '+ %s\n' "$*" >&2; "$@"; }
