# Sourced: Debian's JAX-WS RI 2.3 runtime (packages jaxws/libjaxws-java) for JDK 11+,
# where javax.xml.ws / javax.xml.bind are no longer part of the JDK.
J=/usr/share/java
JAXWS_CP=""
for j in jaxws-rt jaxws-api jaxb-api jaxb-impl jaxb-core jaxb-runtime jws-api javax.xml.soap-api saaj-impl \
         streambuffer stax-ex metro-policy mimepull gmbal glassfish-management-api glassfish-pfl-basic \
         glassfish-pfl-tf javax.activation istack-commons-runtime FastInfoset geronimo-annotation-1.3-spec \
         woodstox-core stax2-api; do
    JAXWS_CP="$JAXWS_CP:$J/$j.jar"
done
JAXWS_CP="${JAXWS_CP#:}"
AXIS_CP="$J/axis.jar:$J/axis-jaxrpc.jar:$J/axis-saaj.jar:$J/commons-discovery.jar:$J/commons-logging.jar:$J/wsdl4j.jar:$J/javax.mail.jar:$J/javax.activation.jar"
