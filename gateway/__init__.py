"""edxml-gateway: exchange edXML (QCVN 102:2016/BTTTT) official documents between agencies over SOAP.

Request flow, one module per step:

    gateway.soap      SOAP 1.1 endpoint (Spyne), authentication header, faults, WSDL
    gateway.edxml     parse, normalise and validate edXML against xsd/, build status messages
    gateway.exchange  the domain: send, pending, fetch, acknowledge, status workflow, recall
    gateway.store     SQLAlchemy models, delivery queue, content-addressed blob store, audit chain
"""

__version__ = "0.1.0"
