"""An unexpected failure answers ``Server.Internal`` with a reference the operator finds in the log,
and leaves the store as it was (README, fault codes: "Nothing was changed")."""

from __future__ import annotations

import base64
import logging
import re
from datetime import datetime
from typing import Any

import pytest
import requests
from lxml import etree
from sqlalchemy import func, select
from support.letters import official_letter
from support.live import NGHE_AN, NS, VPCP, LiveGateway, secret_of

from gateway.exchange import service as exchange_service
from gateway.exchange.service import ExchangeService
from gateway.store import audit
from gateway.store.database import Database
from gateway.store.models import AuditEntry, Delivery, Document, Recipient, StatusEvent

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
REFERENCE = re.compile(r"\(reference ([0-9a-f]{12})\)")


def call(gateway: LiveGateway, operation: str, inner: str = "", code: str = VPCP) -> tuple[int, etree._Element]:
    body = (
        f'<s:Envelope xmlns:s="{SOAP_ENV}" xmlns:g="{NS}"><s:Header><g:AuthHeader>'
        f"<g:agencyCode>{code}</g:agencyCode><g:secret>{secret_of(code)}</g:secret></g:AuthHeader></s:Header>"
        f"<s:Body><g:{operation}>{inner}</g:{operation}></s:Body></s:Envelope>"
    ).encode()
    response = requests.post(
        gateway.url,
        data=body,
        headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": operation},
        timeout=60,
    )
    return response.status_code, etree.fromstring(response.content)


def internal_fault(status: int, envelope: etree._Element) -> str:
    """The reference of a Server.Internal fault, after checking its whole shape."""
    assert status == 500
    fault = envelope.find(f"{{{SOAP_ENV}}}Body/{{{SOAP_ENV}}}Fault")
    assert fault is not None, etree.tostring(envelope)
    assert fault.findtext("faultcode").split(":", 1)[1] == "Server.Internal"
    assert fault.findtext(f"detail/{{{NS}}}GatewayFault/{{{NS}}}code") == "Server.Internal"
    message = fault.findtext("faultstring")
    assert "nothing was changed" in message
    match = REFERENCE.search(message)
    assert match is not None, message
    return match.group(1)


def logged_with(caplog: pytest.LogCaptureFixture, reference: str) -> logging.LogRecord:
    [record] = [r for r in caplog.records if r.name == "gateway.soap" and reference in r.getMessage()]
    return record


def store_rows(gateway: LiveGateway) -> tuple[int, ...]:
    with gateway.db.transaction() as session:
        return tuple(
            session.scalar(select(func.count()).select_from(model))
            for model in (Document, Recipient, Delivery, StatusEvent, AuditEntry)
        )


def stored_blobs(gateway: LiveGateway) -> int:
    blob_dir = gateway.settings.blob_dir
    assert blob_dir is not None
    files = (p.relative_to(blob_dir) for p in blob_dir.rglob("*") if p.is_file())
    return sum(1 for p in files if p.parts[0] not in ("staging", "tmp"))


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_unexpected_error_answers_server_internal_with_a_logged_reference(
    live_gateway: LiveGateway, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(self: ExchangeService, parent_code: str | None = None) -> list[object]:
        raise RuntimeError("directory table vanished: internals the client must not see")

    monkeypatch.setattr(ExchangeService, "agencies", broken)
    caplog.set_level(logging.INFO, logger="gateway.soap")
    status, envelope = call(live_gateway, "getAgencies")
    reference = internal_fault(status, envelope)
    assert b"vanished" not in etree.tostring(envelope), "the client gets a reference, not the exception"
    record = logged_with(caplog, reference)
    assert record.levelno == logging.ERROR and "getAgencies" in record.getMessage()
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)

    monkeypatch.undo()
    status, envelope = call(live_gateway, "getAgencies")
    assert status == 200, "the worker keeps serving"


def test_a_send_that_fails_mid_transaction_changes_nothing(
    live_gateway: LiveGateway, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    document = official_letter(VPCP, [NGHE_AN])
    payload = f"<g:document>{base64.b64encode(document).decode()}</g:document>"
    rows, blobs = store_rows(live_gateway), stored_blobs(live_gateway)

    written = exchange_service.audit.insert_then_append

    def fails_once_written(db: Database, inserts: Any, record: audit.Record, at: datetime) -> None:
        # A send's writes are one statement on PostgreSQL (audit.write_alone), so nothing of its own can
        # fail in between; a failure of the statement itself is the next test's. Here they are written
        # in a transaction, which fails right after them.
        with db.transaction() as session:
            written(db, session, inserts, [record], at)
            raise RuntimeError("disk full while writing the audit entry")

    # The document, recipient and queue rows and the audit entry are in the transaction when it fails.
    monkeypatch.setattr(exchange_service.audit, "write_alone", fails_once_written)
    caplog.set_level(logging.INFO, logger="gateway.soap")
    reference = internal_fault(*call(live_gateway, "sendDocument", payload))
    assert isinstance(logged_with(caplog, reference).exc_info[1], RuntimeError)
    assert store_rows(live_gateway) == rows, "the storing transaction was rolled back whole"
    status, pending = call(live_gateway, "getPendingDocuments", code=NGHE_AN)
    assert status == 200 and pending.find(f".//{{{NS}}}PendingItem") is None, "nothing was queued"

    monkeypatch.undo()
    retry_stores_once(live_gateway, payload, rows, blobs)


@pytest.mark.parametrize("db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_a_send_whose_audit_entry_the_database_refuses_changes_nothing(
    live_gateway: LiveGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL a send's rows and audit entry are one statement the server commits on its own:
    when the database refuses the entry (here, a hash check that fails, migration 0011), the
    statement writes nothing and nothing of the send is stored."""
    document = official_letter(VPCP, [NGHE_AN])
    payload = f"<g:document>{base64.b64encode(document).decode()}</g:document>"
    rows, blobs = store_rows(live_gateway), stored_blobs(live_gateway)
    call_of = exchange_service.audit._Prepared.call

    def wrong_probe(prepared: object) -> tuple[object, dict[str, object]]:
        statement, params = call_of(prepared)  # type: ignore[arg-type]
        return statement, {**params, "genesis_probe": "0" * 64}

    monkeypatch.setattr(exchange_service.audit._Prepared, "call", wrong_probe)
    internal_fault(*call(live_gateway, "sendDocument", payload))
    assert store_rows(live_gateway) == rows, "the statement wrote nothing"

    monkeypatch.undo()
    retry_stores_once(live_gateway, payload, rows, blobs)


def retry_stores_once(gateway: LiveGateway, payload: str, rows: tuple[int, ...], blobs: int) -> None:
    """The same send again, once the failure is gone: a new document (the failed one left none behind),
    its rows once, and its file once under the name the failed attempt may already have stored."""
    status, receipt = call(gateway, "sendDocument", payload)
    assert status == 200
    assert receipt.findtext(f".//{{{NS}}}duplicate") == "false", "the failed send left no document behind"
    assert store_rows(gateway)[:3] == (rows[0] + 1, rows[1] + 1, rows[2] + 1)
    assert stored_blobs(gateway) == blobs + 1, "the retry stored the file under the same name, once"
