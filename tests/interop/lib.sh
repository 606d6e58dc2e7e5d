# Sourced by <stack>/run.sh.  Usage inside run.sh:  . "$(dirname "$0")/../lib.sh"
# Contract of every <stack>/run.sh WSDL_URL BUILD_DIR:
#   generate stubs from WSDL_URL into BUILD_DIR, build, run the client;
#   exit 0 = pass, 77 = stack not installed (skip), anything else = fail.
set -euo pipefail
STACK_DIR="$(cd "$(dirname "$0")" && pwd)"
INTEROP_DIR="$(cd "$STACK_DIR/.." && pwd)"
REPO_DIR="$(cd "$INTEROP_DIR/../.." && pwd)"
WSDL_URL="${1:?usage: run.sh WSDL_URL BUILD_DIR}"
BUILD_DIR="${2:?usage: run.sh WSDL_URL BUILD_DIR}"
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
