#!/usr/bin/env bash
# Mono: `wsdl` (the .NET Framework wsdl.exe clone) -> C# proxy, mcs, mono.
. "$(dirname "$0")/../lib.sh"
need wsdl mcs mono
cd "$BUILD_DIR"
step wsdl -nologo -namespace:EdxmlGatewayClient -out:EdxmlGateway.cs "$WSDL_URL"
if grep -q 'ParameterStyle=System.Web.Services.Protocols.SoapParameterStyle.Bare' EdxmlGateway.cs; then
    echo "NOTE: wsdl generated Bare (unwrapped) methods: the body parts are not named 'parameters'" >&2
fi
step mcs -nologo -r:System.Web.Services.dll -r:System.Xml.dll -out:client.exe EdxmlGateway.cs "$STACK_DIR/Client.cs"
step mono client.exe "$DOCUMENT"
