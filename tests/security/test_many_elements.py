"""Many small elements (issue 10.2): refused at the element bounds, in bounded memory, for every shape.

A schema-valid 49.6 MB document of 3.1 million Place elements was stored after 42 s of CPU and 1.42 GB
of RSS growth, and an invalid 5 MB document of empty elements cost 572 MB and 14.5 s (every
validation error was located by an XPath query and a quadratic path). Now the edXML reader counts
elements against :data:`gateway.safexml.EDXML_LIMITS` (20,000 per document, 1,000 children per
element) before lxml builds them, and validation collects at most 50 issues, each located in
time proportional to its depth. The worker's peak RSS growth is measured for each request.
"""

from __future__ import annotations

import base64
import dataclasses
import uuid
from collections.abc import Callable, Iterator

import pytest
from security_support import NGHE_AN, VPCP, Server, StreamedBody, auth_header, envelope_parts, post
from support.cputime import cpu_growth
from support.letters import letter_message

from gateway.edxml import AttachmentSource, document_bytes, read_document
from gateway.edxml.validation import MAX_ISSUES
from gateway.errors import SchemaInvalid

MEMORY_BOUND_KIB = 64 * 1024
"""Peak RSS growth allowed for one refused many-element request, whatever its size (README "Limits")."""


def _letter_with_places(places: int) -> tuple[bytes, bytes, bytes]:
    """A Công văn whose ToPlaces holds ``places`` Place elements: (before, one Place, after)."""
    message = letter_message(VPCP, [NGHE_AN], uuid.uuid4().hex[:8])
    message = dataclasses.replace(message, to_places=("Các Bộ, cơ quan ngang Bộ",))
    document = document_bytes(message, [AttachmentSource("a.pdf", "application/pdf", data=b"%PDF-1.4")])
    place = b"<edXML:Place>C\xc3\xa1c B\xe1\xbb\x99, c\xc6\xa1 quan ngang B\xe1\xbb\x99</edXML:Place>"
    before, found, after = document.partition(place)
    assert found, "the writer's ToPlaces layout changed"
    return before, place, after


def _streamed_send(server: Server, before: bytes, element: bytes, count: int, after: bytes) -> StreamedBody:
    """``sendDocument`` of ``before + element * count + after``, base64-encoded on the fly."""
    head, tail = envelope_parts("sendDocument", auth_header(VPCP, server.secrets[VPCP]))
    head += b"<g:document>"
    tail = b"</g:document>" + tail
    block = element * (3 * 4096)
    size = len(before) + len(element) * count + len(after)

    def pieces() -> Iterator[bytes]:
        yield head
        carry = before
        remaining = count
        while remaining:
            take = min(remaining, 3 * 4096)
            carry += block[: take * len(element)]
            remaining -= take
            usable = len(carry) // 3 * 3
            yield base64.b64encode(carry[:usable])
            carry = carry[usable:]
        yield base64.b64encode(carry + after)
        yield tail

    return StreamedBody(pieces, len(head) + (size + 2) // 3 * 4 + len(tail))


def test_forty_megabytes_of_place_elements_are_refused_in_bounded_memory(server: Server) -> None:
    before, _place, after = _letter_with_places(1)
    place = b"<edXML:Place>x</edXML:Place>"
    count = 45_000_000 // len(place)
    body = _streamed_send(server, before, place, count, after)
    base = server.reset_peaks()
    reply = post(server.url, body, "sendDocument")
    growth = server.peak_growth_kib(base)
    size = len(before) + len(place) * count + len(after)
    print(f"\n{server.kind}: {size / 1e6:.1f} MB of {count:,} Place elements: peak RSS growth {growth / 1024:.1f} MiB")
    assert reply.fault_code == "Client.MalformedEdxml", reply
    assert "ToPlaces has more than 1,000 child elements" in reply.fault_string
    assert growth < MEMORY_BOUND_KIB, f"peak RSS grew by {growth / 1024:.0f} MiB"
    assert not any(server.staging_dir.glob("*")), "the staged document outlived the refusal"


@pytest.mark.parametrize(
    ("element", "words"),
    [(b"<a/>", "MessageHeader has more than 1,000 child elements"), (b"<b>" + b"<a/>" * 500 + b"</b>", "20,000")],
    ids=["siblings", "spread"],
)
def test_five_megabytes_of_empty_elements_are_refused_in_bounded_memory(
    server: Server, element: bytes, words: str
) -> None:
    before, place, after = _letter_with_places(1)
    document = before + place + after
    head, _, rest = document.partition(b"<edXML:MessageHeader>")
    count = 5_000_000 // len(element)
    body = _streamed_send(server, head + b"<edXML:MessageHeader>", element, count, rest)
    base = server.reset_peaks()
    reply = post(server.url, body, "sendDocument")
    growth = server.peak_growth_kib(base)
    print(f"\n{server.kind}: 5 MB of {element[:8]!r}...: peak RSS growth {growth / 1024:.1f} MiB")
    assert reply.fault_code == "Client.MalformedEdxml", reply
    assert words in reply.fault_string
    assert growth < MEMORY_BOUND_KIB, f"peak RSS grew by {growth / 1024:.0f} MiB"


def _invalid(recipients: int) -> bytes:
    """A document within the element bounds with ``recipients`` extra To elements, each with a bad OrganId."""
    before, place, after = _letter_with_places(1)
    bad = b"<edXML:To><edXML:OrganId>bad</edXML:OrganId><edXML:OrganName>x</edXML:OrganName></edXML:To>"
    return before.replace(b"</edXML:To>", b"</edXML:To>" + bad * recipients, 1) + place + after


def test_validation_errors_are_capped_and_cost_grows_linearly() -> None:
    """In-process: every bad To is an error; cost is linear in the document, and at most 50 are collected."""
    small, large = _invalid(450), _invalid(900)
    for data in (small, large):
        with pytest.raises(SchemaInvalid) as caught:
            read_document(data)
        assert len(caught.value.issues) == MAX_ISSUES  # type: ignore[attr-defined]
        assert f"at least {MAX_ISSUES} problems" in caught.value.message
        assert "To[2]/OrganId: OrganId 'bad' must be written as an agency code" in caught.value.message

    def refusal(data: bytes) -> Callable[[], None]:
        def refused() -> None:
            with pytest.raises(SchemaInvalid):
                read_document(data)

        return refused

    ratio = cpu_growth(refusal(small), refusal(large))
    print(f"\nCPU 2n/n for 450 vs 900 invalid recipients: {ratio:.2f}")
    assert ratio < 3
