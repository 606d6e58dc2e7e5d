#!/usr/bin/env bash
# Mono: `wsdl` (the .NET Framework wsdl.exe clone) -> C# proxy, mcs, mono.
. "$(dirname "$0")/../lib.sh"
need wsdl mcs mono
cd "$BUILD_DIR"
SOURCE="$WSDL_URL"
if [ -n "${INTEROP_CA_FILE:-}" ]; then  # wsdl cannot be told which CA to trust: fetch the WSDL first
    need curl
    step curl -fsS --cacert "$INTEROP_CA_FILE" -o "$BUILD_DIR/service.wsdl" "$WSDL_URL"
    SOURCE="$BUILD_DIR/service.wsdl"
fi
step wsdl -nologo -namespace:EdxmlGatewayClient -out:EdxmlGateway.cs "$SOURCE"
if grep -q 'ParameterStyle=System.Web.Services.Protocols.SoapParameterStyle.Bare' EdxmlGateway.cs; then
    echo "NOTE: wsdl generated Bare (unwrapped) methods: the body parts are not named 'parameters'" >&2
fi
step mcs -nologo -r:System.Web.Services.dll -r:System.Xml.dll -out:client.exe EdxmlGateway.cs "$STACK_DIR/Client.cs"
step mono client.exe "$DOCUMENT"
