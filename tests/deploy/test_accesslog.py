"""The access log: one line per request with who, what, how it ended and how long; never content or secrets.

The unit tests drive :class:`gateway.accesslog.AccessLog` around a small WSGI app that sets the
environ keys of docs INTERFACES item 1 as the SOAP endpoint does. The live test sends a document
whose subject and attachment carry a unique marker, with a known secret (and a refused call with
a wrong secret), through ``serve --production`` (gunicorn, gevent worker), and reads everything
the server wrote: the request lines are there, the marker and the secrets are not.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from reliability.reliability_support import NGHE_AN, VPCP, Agent, GatewayProcess, post, send_envelope
from support.letters import letter_message

from gateway.accesslog import AccessLog
from gateway.edxml import AttachmentSource, document_bytes

LINE = re.compile(
    r"agency=(?P<agency>\S+) operation=(?P<operation>\S+) fault=(?P<fault>\S+) status=(?P<status>\d{3}) "
    r"duration_ms=(?P<duration>\d+\.\d) method=(?P<method>\S+) path=(?P<path>\S+) bytes_in=(?P<bytes_in>\S+) "
    r"bytes_out=(?P<bytes_out>\d+) client=(?P<client>\S+)$"
)


def soap_like(status: str, body: bytes, keys: dict[str, str]) -> Callable[..., Iterable[bytes]]:
    """A WSGI app that reads the request, sets the gateway's environ keys and answers ``body``."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        environ["wsgi.input"].read()
        environ.update(keys)
        start_response(status, [("Content-Length", str(len(body)))])
        return [body]

    return app


def call(app: Callable[..., Iterable[bytes]], body: bytes, path: str = "/soap") -> bytes:
    import io

    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "CONTENT_LENGTH": str(len(body)),
        "REMOTE_ADDR": "192.0.2.7",
        "HTTP_SOAPACTION": '"sendDocument"',
        "wsgi.input": io.BytesIO(body),
    }
    result = app(environ, lambda status, headers, exc_info=None: None)
    try:
        return b"".join(result)
    finally:
        getattr(result, "close", lambda: None)()


def test_one_line_with_the_callers_operation_fault_and_duration(caplog: pytest.LogCaptureFixture) -> None:
    keys = {"gateway.agency": VPCP, "gateway.operation": "updateStatus", "gateway.fault_code": "Client.Forbidden"}
    app = AccessLog(soap_like("500 Internal Server Error", b"<fault>secret-ANSWER</fault>", keys))
    with caplog.at_level(logging.INFO, logger="gateway.access"):
        assert call(app, b"<request>secret-REQUEST</request>") == b"<fault>secret-ANSWER</fault>"
    [record] = caplog.records
    fields = LINE.match(record.getMessage())
    assert fields, record.getMessage()
    assert fields["agency"] == VPCP and fields["operation"] == "updateStatus" and fields["fault"] == "Client.Forbidden"
    assert fields["status"] == "500" and fields["method"] == "POST" and fields["path"] == "/soap"
    assert fields["bytes_in"] == "33" and fields["bytes_out"] == "28" and fields["client"] == "192.0.2.7"
    assert "secret-" not in caplog.text


def test_absent_keys_and_hostile_paths_stay_one_token(caplog: pytest.LogCaptureFixture) -> None:
    app = AccessLog(soap_like("404 Not Found", b"no", {}))
    with caplog.at_level(logging.INFO, logger="gateway.access"):
        call(app, b"", path="/x y\nagency=forged")
    [record] = caplog.records
    fields = LINE.match(record.getMessage())
    assert fields, record.getMessage()
    assert fields["agency"] == fields["operation"] == fields["fault"] == "-"
    assert fields["path"] == "/x%20y%0Aagency%3Dforged" and "\n" not in record.getMessage()


def test_an_app_that_raises_is_logged_as_500(caplog: pytest.LogCaptureFixture) -> None:
    def broken(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        raise RuntimeError("boom")

    with caplog.at_level(logging.INFO, logger="gateway.access"), pytest.raises(RuntimeError):
        call(AccessLog(broken), b"")
    [record] = caplog.records
    assert " status=500 " in record.getMessage()


def test_a_served_gateway_logs_requests_but_no_content_or_secret(tmp_path: Path) -> None:
    marker = f"MARKER-{uuid.uuid4().hex}"
    wrong_secret = f"WRONG-{uuid.uuid4().hex}"
    gateway = GatewayProcess(tmp_path / "var", workers=1)
    gateway.start()
    try:
        secret = gateway.secrets[VPCP]
        message = dataclasses.replace(letter_message(VPCP, [NGHE_AN], uuid.uuid4().hex[:10]), subject=f"Về {marker}")
        edxml = document_bytes(message, [AttachmentSource("m.txt", "text/plain", data=marker.encode())])
        receipt = Agent(gateway.url, VPCP, secret).send(edxml)
        assert receipt.fault_code is None, receipt.fault_string
        refused = post(gateway.url, send_envelope(edxml, VPCP, wrong_secret), action="sendDocument")
        assert refused.fault_code == "Client.AuthenticationFailed"
    finally:
        gateway.stop()
    # serve --demo prints the demo secrets before the server starts; what the server logs comes after.
    log = gateway.log_path.read_text(errors="replace").partition("Listening at:")[2]
    assert log, "gunicorn did not start"
    lines = [LINE.search(line) for line in log.splitlines() if "gateway.access" in line]
    soap_posts = [m for m in lines if m and m["path"] == "/soap" and m["method"] == "POST"]
    assert [m["status"] for m in soap_posts] == ["200", "500"], log[-3000:]
    assert all(float(m["duration"]) > 0 for m in soap_posts)
    assert marker not in log, "document content reached the server's log"
    assert secret not in log and wrong_secret not in log, "a secret reached the server's log"
