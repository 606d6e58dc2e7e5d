#!/usr/bin/env bash
# Java JAX-WS RI (Debian 'jaxws' 2.3.0.2) on the machine's JDK: wsimport -> javac -> java.
# -XadditionalHeaders: the AuthHeader part lives in its own wsdl:message (which keeps the operation
# wrapper-style); without it wsimport drops the header from the method signature.  Override with
# INTEROP_WSIMPORT_OPTS (e.g. INTEROP_WSIMPORT_OPTS=" " to see what a plain `wsimport` gives).
. "$(dirname "$0")/../lib.sh"
need java javac /usr/share/jaxws/bin/wsimport.sh /usr/share/java/jaxws-rt.jar
. "$STACK_DIR/classpath.sh"
cd "$BUILD_DIR"
rm -rf gen classes && mkdir -p gen classes
# shellcheck disable=SC2086
step sh /usr/share/jaxws/bin/wsimport.sh -quiet -keep -Xnocompile ${INTEROP_WSIMPORT_OPTS:--XadditionalHeaders} -p edxml.client -d gen -s gen "$WSDL_URL"
step javac -nowarn -encoding UTF-8 -cp "$JAXWS_CP" -d classes $(find gen -name '*.java') "$STACK_DIR/Client.java" 2>&1 | grep -v '^Note:' || true
[ -f classes/Client.class ] || { echo "javac failed" >&2; exit 1; }
step java -Djava.util.logging.config.file=/dev/null -cp "classes:$JAXWS_CP" Client "$WSDL_URL" "$DOCUMENT" 2> >(grep -v -e 'FactoryFinder find' -e 'SAAJMetaFactory' >&2)
