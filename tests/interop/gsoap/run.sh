#!/usr/bin/env bash
# gSOAP: wsdl2h -> annotated header, soapcpp2 -j -> C++ proxy, g++ with -lgsoap++.
. "$(dirname "$0")/../lib.sh"
need wsdl2h soapcpp2 g++ sha256sum /usr/include/stdsoap2.h
cd "$BUILD_DIR"
step wsdl2h -c++11 -n gw -o edxml.h "$WSDL_URL" >wsdl2h.log 2>&1 || { cat wsdl2h.log >&2; exit 1; }
if grep -q '#import "soap12.h"' edxml.h; then
    echo "NOTE: wsdl2h chose SOAP 1.2 envelopes (the WSDL declares the wsdl/soap12 namespace); a SOAP 1.1 server will reject them" >&2
fi
step soapcpp2 -j -C -L -x -I/usr/share/gsoap/import edxml.h >soapcpp2.log 2>&1 || { cat soapcpp2.log >&2; exit 1; }
step g++ -std=c++11 -O0 -w -o client "$STACK_DIR/client.cpp" soapC.cpp soapEdxmlGatewayProxy.cpp -I. -lgsoap++
step ./client "$DOCUMENT" "$(sha256sum "$DOCUMENT" | cut -d" " -f1)"
