#!/usr/bin/env bash
# Java Apache Axis 1.4 (Debian libaxis-java): WSDL2Java -> javac -> java.
. "$(dirname "$0")/../lib.sh"
need java javac /usr/share/java/axis.jar /usr/share/java/wsdl4j.jar
. "$INTEROP_DIR/java/classpath.sh"
cd "$BUILD_DIR"
rm -rf gen classes && mkdir -p gen classes
step java -cp "$AXIS_CP" org.apache.axis.wsdl.WSDL2Java -o gen -p edxml.axis "$WSDL_URL"
step javac -nowarn -encoding UTF-8 -cp "$AXIS_CP" -d classes $(find gen -name '*.java') "$STACK_DIR/AxisClient.java" 2>&1 | grep -v '^Note:' || true
[ -f classes/AxisClient.class ] || { echo "javac failed" >&2; exit 1; }
step java -cp "classes:$AXIS_CP" AxisClient "$DOCUMENT"
