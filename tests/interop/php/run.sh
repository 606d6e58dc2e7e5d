#!/usr/bin/env bash
# PHP: SoapClient in WSDL mode (no stub generation step; the WSDL is read at run time).
. "$(dirname "$0")/../lib.sh"
need php
php -r 'exit(class_exists("SoapClient") ? 0 : 1);' || { echo "SKIP: php-soap missing" >&2; exit 77; }
step php -d soap.wsdl_cache_enabled=0 "$STACK_DIR/client.php" "$WSDL_URL" "$DOCUMENT"
