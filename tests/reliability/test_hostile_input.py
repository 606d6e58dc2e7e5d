"""Hostile requests are refused with a documented SOAP fault, leak nothing, and leave the worker serving.

Every case (DTD and entity tricks, deep nesting, huge and numerous attributes, 200,000 elements, bad
encodings, truncation) runs against one live gunicorn worker (``serve --production --workers 1``), first as
the SOAP envelope itself and then, where it makes sense, as the edXML document inside a
``sendDocument``. After each, the *same* worker process must still accept a normal send and list
it as pending, and its peak RSS must stay within a few dozen MB of where it started: entity
expansion, huge attributes or deep nesting must not cost memory in proportion to the attack.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from reliability_support import (
    NGHE_AN,
    VPCP,
    GatewayProcess,
    assert_still_serves,
    envelope,
    letter,
    parse_reply,
    post,
    raw_http,
    reset_peak,
    send_envelope,
    split_http,
    vm_kib,
)

MAX_DOCUMENT = 24 * 1024 * 1024
MEMORY_BUDGET_KIB = 64 * 1024
"""Peak RSS a single hostile request may add to the worker (the 20 MB cases are the largest)."""

MARKER = "TOP-SECRET-7f3a9c"


@dataclass
class Target:
    """The shared gateway, the file an XXE would try to read, and an HTTP listener that must stay unvisited."""

    gateway: GatewayProcess
    secret_file: Path
    dtd_url: str
    dtd_hits: list[bytes]
    worker: int
    replies: list[bytes]

    def secret(self, code: str = VPCP) -> str:
        return self.gateway.secrets[code]


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    root = tmp_path_factory.mktemp("hostile")
    secret_file = root / "secret.txt"
    secret_file.write_text(f"{MARKER}\n")
    listener = socket.create_server(("127.0.0.1", 0))
    hits: list[bytes] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                hits.append(conn.recv(4096))

    threading.Thread(target=accept, daemon=True).start()
    gateway = GatewayProcess(root / "var", workers=1, env={"GATEWAY_MAX_DOCUMENT_BYTES": str(MAX_DOCUMENT)})
    gateway.start()
    try:
        assert_still_serves(gateway.url, gateway.secrets)
        worker = gateway.worker_pids()[0]
        dtd_url = f"http://127.0.0.1:{listener.getsockname()[1]}/evil.dtd"
        yield Target(gateway, secret_file, dtd_url, hits, worker, [])
    finally:
        gateway.stop()
        listener.close()


def _laughs(levels: int = 10) -> str:
    entities = ['<!ENTITY lol0 "lol">']
    entities += [f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, levels)]
    return "".join(entities)


def _attributes(count: int) -> bytes:
    return b" ".join(b'a%d="v"' % index for index in range(count))


def _with_doctype(document: bytes, subset: str, reference: str, where: bytes) -> bytes:
    """Put a DOCTYPE after the XML declaration of ``document`` and ``reference`` just after ``where``."""
    declaration, _, rest = document.partition(b"?>")
    root = rest.lstrip().split(b" ", 1)[0][1:].split(b">")[0].decode()
    doctype = f"<!DOCTYPE {root} {subset}>".encode()
    return declaration + b"?>" + doctype + rest.replace(where, where + reference.encode(), 1)


def hostile_variants(target: Target) -> dict[str, tuple[Callable[[bytes, bytes], bytes], str]]:
    """Attacks applicable to any XML document: name -> (transform(document, insertion point), edXML code)."""
    xxe = f'[<!ENTITY xxe SYSTEM "file://{target.secret_file}">]'
    quadratic = '[<!ENTITY a "' + "A" * 100_000 + '">]'
    return {
        "xxe-local-file": (lambda doc, at: _with_doctype(doc, xxe, "&xxe;", at), "Client.MalformedEdxml"),
        "xxe-parameter-entity": (
            lambda doc, at: _with_doctype(doc, f'[<!ENTITY % p SYSTEM "{target.dtd_url}"> %p;]', "", at),
            "Client.MalformedEdxml",
        ),
        "external-dtd": (
            lambda doc, at: _with_doctype(doc, f'SYSTEM "{target.dtd_url}"', "", at),
            "Client.MalformedEdxml",
        ),
        "billion-laughs": (lambda doc, at: _with_doctype(doc, f"[{_laughs()}]", "&lol9;", at), "Client.MalformedEdxml"),
        "quadratic-blowup": (
            lambda doc, at: _with_doctype(doc, quadratic, "&a;" * 20_000, at),
            "Client.MalformedEdxml",
        ),
        "deep-nesting-10000": (
            lambda doc, at: doc.replace(at, at + b"<x>" * 10_000 + b"</x>" * 10_000, 1),
            "Client.MalformedEdxml",
        ),
        "attribute-20MB": (
            lambda doc, at: doc.replace(at, at[:-1] + b' huge="' + b"A" * 20_000_000 + b'">', 1),
            "Client.MalformedEdxml",
        ),
        "attribute-flood-40000": (
            lambda doc, at: doc.replace(at, at[:-1] + b" " + _attributes(40_000) + b">", 1),
            "Client.MalformedEdxml",
        ),
        "elements-200000": (lambda doc, at: doc.replace(at, at + b"<x/>" * 200_000, 1), "Client.MalformedEdxml"),
        "invalid-utf8": (lambda doc, at: doc.replace(at, at + b"\xc3\x28\xff\xfe", 1), "Client.MalformedEdxml"),
        "declared-utf16-lie": (
            lambda doc, at: doc.replace(b'encoding="UTF-8"', b'encoding="UTF-16"', 1),
            "Client.MalformedEdxml",
        ),
        "unknown-encoding": (
            lambda doc, at: doc.replace(b'encoding="UTF-8"', b'encoding="x-no-such-encoding"', 1),
            "Client.MalformedEdxml",
        ),
        "truncated": (lambda doc, at: doc[: len(doc) // 2], "Client.MalformedEdxml"),
        "random-bytes": (lambda doc, at: os.urandom(4096), "Client.MalformedEdxml"),
        "empty": (lambda doc, at: b"", "Client.MalformedEdxml"),
    }


ENVELOPE_CODES = {
    "attribute-20MB": "Client.TooLarge",
}
"""Where the envelope-level answer differs from MalformedRequest: a 20 MB tag is refused for its size."""

CASES = [
    "xxe-local-file",
    "xxe-parameter-entity",
    "external-dtd",
    "billion-laughs",
    "quadratic-blowup",
    "deep-nesting-10000",
    "attribute-20MB",
    "attribute-flood-40000",
    "elements-200000",
    "invalid-utf8",
    "declared-utf16-lie",
    "unknown-encoding",
    "truncated",
    "random-bytes",
    "empty",
]


@pytest.fixture
def rss_base(target: Target) -> int:
    """The worker's RSS with its peak counter reset, just before the case's request."""
    reset_peak(target.worker)
    return vm_kib(target.worker, "VmRSS")


def check_aftermath(target: Target, reply_body: bytes, rss_base: int) -> None:
    """Nothing leaked, the request did not balloon the worker, and the same worker still serves."""
    growth = vm_kib(target.worker, "VmHWM") - rss_base
    print(f"worker peak RSS growth for this request: {growth / 1024:.1f} MiB")
    target.replies.append(reply_body)
    assert MARKER.encode() not in reply_body, "the XXE target file's content appeared in a response"
    assert target.gateway.worker_pids() == [target.worker], "the worker died and was replaced"
    assert not target.dtd_hits, f"the gateway fetched an external DTD/entity: {target.dtd_hits[:1]!r}"
    assert_still_serves(target.gateway.url, target.gateway.secrets)
    assert growth < MEMORY_BUDGET_KIB, f"worker peak RSS grew by {growth / 1024:.0f} MiB for one request"


@pytest.mark.parametrize("case", CASES)
def test_hostile_envelope_is_refused(target: Target, case: str, rss_base: int) -> None:
    transform, _ = hostile_variants(target)[case]
    valid = envelope("getPendingDocuments", "", NGHE_AN, target.secret(NGHE_AN))
    body = transform(valid, b"<s:Body>")
    reply = post(target.gateway.url, body, action="getPendingDocuments")
    assert reply.fault_code == ENVELOPE_CODES.get(case, "Client.MalformedRequest"), reply.fault_string
    check_aftermath(target, reply.body, rss_base)


@pytest.mark.parametrize("case", CASES)
def test_hostile_edxml_inside_send_document_is_refused(target: Target, case: str, rss_base: int) -> None:
    transform, code = hostile_variants(target)[case]
    edxml = transform(letter(VPCP, [NGHE_AN]), b"<edXML:MessageHeader>")
    reply = post(target.gateway.url, send_envelope(edxml, VPCP, target.secret()), action="sendDocument")
    assert reply.fault_code == code, reply.fault_string
    check_aftermath(target, reply.body, rss_base)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(lambda env: env.decode().replace("UTF-8", "UTF-16").encode("utf-16"), id="utf16-declared"),
        pytest.param(lambda env: env.decode().split("?>", 1)[1].encode("utf-16-le"), id="utf16-no-bom"),
        pytest.param(
            lambda env: env.replace(b"UTF-8", b"ISO-8859-1").replace(b"<s:Body>", b"<s:Body><!-- caf\xe9 -->"),
            id="latin1-declared",
        ),
        pytest.param(lambda env: env.replace(b"<s:Body>", b"<s:Body>\xc3\x28"), id="invalid-utf8"),
    ],
)
def test_non_utf8_envelopes_are_refused(target: Target, body: Callable[[bytes], bytes], rss_base: int) -> None:
    request = body(envelope("getPendingDocuments", "", NGHE_AN, target.secret(NGHE_AN)))
    reply = post(target.gateway.url, request, action="getPendingDocuments")
    assert reply.fault_code == "Client.MalformedRequest", reply.fault_string
    check_aftermath(target, reply.body, rss_base)


def test_truncated_body_is_refused(target: Target, rss_base: int) -> None:
    body = send_envelope(letter(VPCP, [NGHE_AN]), VPCP, target.secret())
    head = (
        f"POST /soap HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml; charset=utf-8\r\n"
        f'SOAPAction: "sendDocument"\r\nContent-Length: {len(body) + 5000}\r\nConnection: close\r\n\r\n'
    ).encode()
    status, payload = split_http(raw_http("127.0.0.1", target.gateway.port, head, body[: len(body) - 100]))
    reply = parse_reply(status, payload)
    assert reply.fault_code == "Client.MalformedRequest", reply.fault_string
    check_aftermath(target, payload, rss_base)


def test_wrong_soap_action_and_unknown_operation(target: Target, rss_base: int) -> None:
    valid = envelope("getPendingDocuments", "", NGHE_AN, target.secret(NGHE_AN))
    reply = post(target.gateway.url, valid, action="sendDocument")
    assert reply.fault_code == "Client.MalformedRequest" and "SOAPAction" in (reply.fault_string or "")
    check_aftermath(target, reply.body, rss_base)
    reply = post(target.gateway.url, envelope("dropTables", "", NGHE_AN, target.secret(NGHE_AN)))
    assert reply.fault_code == "Client.MalformedRequest"
    check_aftermath(target, reply.body, rss_base)


@pytest.mark.parametrize(
    "charset",
    ["iso-8859-1", "utf-16", "no-such-charset"],
)
def test_content_type_charset_does_not_break_or_corrupt(target: Target, charset: str, rss_base: int) -> None:
    """The XML is UTF-8 whatever the Content-Type claims; a lying charset must not crash the call."""
    body = envelope("getDocument", "<g:itemId>không-có</g:itemId>", NGHE_AN, target.secret(NGHE_AN))
    response = requests.post(
        target.gateway.url,
        data=body,
        headers={"Content-Type": f"text/xml; charset={charset}", "SOAPAction": '"getDocument"'},
        timeout=30,
    )
    reply = parse_reply(response.status_code, response.content)
    assert reply.fault_code in ("Client.NotFound", "Client.MalformedRequest"), reply.fault_string
    if reply.fault_code == "Client.NotFound":
        assert "không-có" in (reply.fault_string or ""), "the item id was decoded with the wrong charset"
    check_aftermath(target, reply.body, rss_base)


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_other_methods_get_a_soap_fault(target: Target, method: str) -> None:
    reply = post(target.gateway.url, envelope("getPendingDocuments"), method=method)
    assert reply.fault_code == "Client.MalformedRequest"


def test_other_methods_are_refused_and_the_worker_survives(target: Target, rss_base: int) -> None:
    for method in ("GET", "PUT", "DELETE", "PATCH"):
        response = requests.request(method, target.gateway.url, data=b"<x/>", timeout=30)
        assert response.status_code == 405, f"{method} /soap answered {response.status_code}"
    check_aftermath(target, b"", rss_base)


def test_no_response_ever_carried_the_secret_file(target: Target) -> None:
    assert target.replies, "runs after the other cases"
    assert not any(MARKER.encode() in body for body in target.replies)
    assert not target.dtd_hits
