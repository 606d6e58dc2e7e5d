"""Attribute floods (issue 10.1): refused early with a clear fault, at a cost linear in their size.

One element with 110,000 attributes pinned a gunicorn worker for 120 s and 40,000 took 16 s: lxml's
cost for one element grows with the square of its attributes. Now every element passes the shared
guard (gateway/safexml.py) before anything is built from it, in the SOAP envelope and inside the
edXML alike. Doubling the flood must not much more than double the gateway's CPU time.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from security_support import (
    NGHE_AN,
    VPCP,
    Reply,
    Server,
    auth_header,
    envelope_parts,
    growth_ratio,
    post,
    send_document_body,
)
from support.letters import official_letter


def _attributes(count: int) -> bytes:
    return b" ".join(b'a%d="v"' % index for index in range(count))


def test_attribute_flood_in_the_envelope(server: Server) -> None:
    def make(count: int) -> Callable[[], Reply]:
        opening = b"<g:getPendingDocuments " + _attributes(count) + b">"
        head, tail = envelope_parts("getPendingDocuments", auth_header(NGHE_AN, server.secrets[NGHE_AN]), opening)
        body = head + tail

        def request() -> Reply:
            reply = post(server.url, body, "getPendingDocuments")
            assert reply.fault_code == "Client.MalformedRequest", reply
            assert "64 attributes" in reply.fault_string
            assert "line 1" in reply.fault_string
            return reply

        return request

    ratio = growth_ratio(server, make, 40_000, rounds=25)
    assert ratio < 3, f"doubling the attributes multiplied the gateway's CPU time by {ratio:.1f}"


def test_attribute_flood_inside_the_edxml(server: Server) -> None:
    letter = official_letter(VPCP, [NGHE_AN], uuid.uuid4().hex[:8])

    def make(count: int) -> Callable[[], Reply]:
        edxml = letter.replace(b"<edXML:MessageHeader>", b"<edXML:MessageHeader " + _attributes(count) + b">", 1)
        body = send_document_body(edxml, VPCP, server.secrets[VPCP])

        def request() -> Reply:
            reply = post(server.url, body, "sendDocument")
            assert reply.fault_code == "Client.MalformedEdxml", reply
            assert "64 attributes" in reply.fault_string and "line 5" in reply.fault_string
            return reply

        return request

    ratio = growth_ratio(server, make, 40_000, rounds=20)
    assert ratio < 3, f"doubling the attributes multiplied the gateway's CPU time by {ratio:.1f}"
    assert post(server.url, send_document_body(letter, VPCP, server.secrets[VPCP]), "sendDocument").fault_code is None
