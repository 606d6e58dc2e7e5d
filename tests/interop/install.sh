#!/usr/bin/env bash
# Install every SOAP stack used by the WSDL interop tests (tests/interop/).
#
# Safe in CI (tools/run-tests calls it before pytest):
# - idempotent: a stack whose tools are already present is not touched (about 2 s for all);
# - non-interactive: apt-get -y --no-install-recommends (sudo -n when not root), npm ci with
#   its cache under tests/interop/node/.npm-cache; every install is bounded by a timeout;
# - one stack failing never stops the others and never fails the run: the script prints one
#   "interop-install: <stack>: ok|FAILED|UNAVAILABLE" line per stack and exits 0. The
#   pytest wrapper then skips that stack with the reason. INTEROP_INSTALL_STRICT=1 makes a
#   FAILED install exit 1.
#
# Usage: bash tests/interop/install.sh [stack ...]
#   stacks: mono php gsoap node python java   (default: all)
set -u
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
PY="${INTEROP_PYTHON:-$REPO/.venv/bin/python}"
export DEBIAN_FRONTEND=noninteractive
export npm_config_cache="$HERE/node/.npm-cache"
INSTALL_TIMEOUT="${INTEROP_INSTALL_TIMEOUT:-900}"  # seconds per stack
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo -n"

declare -A RESULT
APT_UPDATED=0
HARD_FAIL=0

log() { printf 'interop-install: %s\n' "$*"; }

# dpkg -s says "Status: install ok installed" only for a fully installed package.
pkg_installed() { dpkg -s "$1" 2>/dev/null | grep -q '^Status: install ok installed'; }

apt_install() {  # apt_install pkg... ; installs only the missing ones
    local missing=() p
    for p in "$@"; do pkg_installed "$p" || missing+=("$p"); done
    [ "${#missing[@]}" -eq 0 ] && return 0
    if [ "$APT_UPDATED" -eq 0 ]; then
        timeout 300 $SUDO apt-get -o DPkg::Lock::Timeout=120 update -qq >/dev/null 2>&1 \
            || log "apt-get update failed (continuing with the old lists)"
        APT_UPDATED=1
    fi
    for p in "${missing[@]}"; do
        if ! apt-cache show "$p" >/dev/null 2>&1; then
            log "apt has no package '$p'"
            return 2  # unavailable
        fi
    done
    log "apt-get install ${missing[*]}"
    timeout "$INSTALL_TIMEOUT" $SUDO apt-get -o DPkg::Lock::Timeout=120 install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null || return 1
}

# run_stack NAME CHECK_FN INSTALL_FN: skip when CHECK_FN passes, else install and re-check.
run_stack() {
    local name="$1" check="$2" install="$3" t0 rc
    if "$check"; then RESULT[$name]="ok (already installed)"; return; fi
    t0=$(date +%s)
    "$install"; rc=$?
    if [ "$rc" -eq 2 ]; then
        RESULT[$name]="UNAVAILABLE (no package in the reachable registries)"
    elif [ "$rc" -eq 0 ] && "$check"; then
        RESULT[$name]="ok (installed in $(( $(date +%s) - t0 ))s)"
    else
        RESULT[$name]="FAILED (install rc=$rc after $(( $(date +%s) - t0 ))s)"
        HARD_FAIL=1
    fi
}

# --- Mono: wsdl (ASMX proxy generator), mcs, mono; System.Web.Services ---
check_mono() { command -v wsdl >/dev/null && command -v mcs >/dev/null && command -v mono >/dev/null && pkg_installed mono-devel; }
install_mono() { apt_install mono-devel; }

# --- PHP: php-cli + ext-soap ---
check_php() { command -v php >/dev/null && php -r 'exit(class_exists("SoapClient") ? 0 : 1);' 2>/dev/null; }
install_php() { apt_install php-cli php-soap; }

# --- gSOAP: wsdl2h + soapcpp2 + libgsoap++ and a C++ compiler ---
check_gsoap() { command -v wsdl2h >/dev/null && command -v soapcpp2 >/dev/null && command -v g++ >/dev/null && pkg_installed libgsoap-dev; }
install_gsoap() { apt_install gsoap libgsoap-dev g++; }

# --- Node.js `soap` (npm), node from the machine (>= 20.19 required by soap 1.13) ---
# soap 1.13 needs node >= 20.19
node_ok() { command -v node >/dev/null && node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a==20&&b>=19)?0:1)'; }
check_node() { node_ok && [ -f "$HERE/node/node_modules/soap/package.json" ]; }
install_node() {
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        apt_install nodejs npm || return $?
    fi
    node_ok || { log "node $(node --version 2>/dev/null) is older than 20.19 (soap 1.13 needs it)"; return 2; }
    (cd "$HERE/node" && timeout "$INSTALL_TIMEOUT" npm ci --no-audit --no-fund --loglevel=error)
}

# --- Python: zeep (project dependency) + suds-community, into the venv ---
check_python() { [ -x "$PY" ] && "$PY" -c 'import zeep, suds' 2>/dev/null; }
install_python() {
    [ -x "$PY" ] || { log "no python at $PY (set INTEROP_PYTHON)"; return 1; }
    timeout "$INSTALL_TIMEOUT" "$PY" -m pip install -q --disable-pip-version-check zeep suds-community
}

# --- Java: JAX-WS RI wsimport (Debian 'jaxws') and Axis 1.4 WSDL2Java (libaxis-java) on the JDK ---
check_java() {
    command -v javac >/dev/null && command -v java >/dev/null \
        && [ -f /usr/share/jaxws/bin/wsimport.sh ] && [ -f /usr/share/java/axis.jar ]
}
install_java() {
    local pk=(jaxws libaxis-java)
    command -v javac >/dev/null || pk+=(default-jdk-headless)
    apt_install "${pk[@]}"
}

ALL=(mono php gsoap node python java)
STACKS=("$@"); [ "${#STACKS[@]}" -eq 0 ] && STACKS=("${ALL[@]}")
for s in "${STACKS[@]}"; do
    case "$s" in
        mono|php|gsoap|node|python|java) run_stack "$s" "check_$s" "install_$s" ;;
        *) log "unknown stack '$s' (known: ${ALL[*]})"; HARD_FAIL=1 ;;
    esac
done
for s in "${STACKS[@]}"; do [ -n "${RESULT[$s]:-}" ] && log "$s: ${RESULT[$s]}"; done
[ "${INTEROP_INSTALL_STRICT:-0}" = 1 ] && exit "$HARD_FAIL"
exit 0
