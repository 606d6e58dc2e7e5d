"""Every refusal is a SOAP Fault with a stable code and a message a clerk can act on, and stores nothing.

Runs once on SQLite and once on PostgreSQL, against a gateway whose size limit is 256 KiB.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import requests
import zeep
from lxml import etree
from sqlalchemy import func, select
from support.blobs import stored_blobs
from support.letters import official_letter
from support.live import CAO_BANG, DISABLED, HAU_GIANG, NGHE_AN, NS, VPCP, LiveGateway, secret_of

from gateway.config import Settings
from gateway.store.blobs import BlobStore
from gateway.store.models import AuditEntry, Delivery, Document, StatusEvent

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
LIMIT = 256 * 1024


@pytest.fixture
def gateway_settings(tmp_path: Path, db_url: str) -> Settings:
    return Settings(data_dir=tmp_path / "var", database_url=db_url, max_document_bytes=LIMIT)


def fault_of(call, *args, **kwargs) -> zeep.exceptions.Fault:
    with pytest.raises(zeep.exceptions.Fault) as caught:
        call(*args, **kwargs)
    fault = caught.value
    code = fault.code.split(":", 1)[1]
    detail_code = fault.detail.find(f"{{{NS}}}GatewayFault/{{{NS}}}code").text
    assert detail_code == code, "the fault detail repeats the fault code for typed stubs"
    return fault


def code_of(fault: zeep.exceptions.Fault) -> str:
    return fault.code.split(":", 1)[1]


def stored_counts(gateway: LiveGateway) -> tuple[int, ...]:
    with gateway.db.transaction() as session:
        counts = tuple(
            session.scalar(select(func.count()).select_from(model))
            for model in (Document, Delivery, StatusEvent, AuditEntry)
        )
    store = blob_store_of(gateway)
    blobs = sum(1 for _ in stored_blobs(store))
    staging = sum(1 for _ in store.tmp_dir.iterdir())  # where requests stage documents: a leftover is a leak
    return (*counts, blobs, staging)


def blob_store_of(gateway: LiveGateway) -> BlobStore:
    assert gateway.settings.blob_dir is not None
    return BlobStore(gateway.settings.blob_dir)


def test_stored_counts_sees_a_file_left_in_staging(live_gateway) -> None:
    """The counter every refusal test relies on must notice a staged file left behind."""
    before = stored_counts(live_gateway)
    staged = blob_store_of(live_gateway).begin()
    try:
        staged.write(b"<edXMLEnvelope/>")
        after = stored_counts(live_gateway)
    finally:
        staged.discard()
    assert after[-1] == before[-1] + 1 and after[:-1] == before[:-1]
    assert stored_counts(live_gateway) == before


def soap_request(operation: str, inner: str, code: str = VPCP, secret: str | None = None) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><s:Envelope xmlns:s="{SOAP_ENV}" xmlns:g="{NS}"><s:Header>'
        f"<g:AuthHeader><g:agencyCode>{code}</g:agencyCode><g:secret>{secret or secret_of(code)}</g:secret>"
        f"</g:AuthHeader></s:Header><s:Body><g:{operation}>{inner}</g:{operation}></s:Body></s:Envelope>"
    ).encode()


def post(gateway: LiveGateway, body: bytes, action: str = "") -> tuple[int, str, str]:
    response = requests.post(
        gateway.url, data=body, headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": action}, timeout=30
    )
    envelope = etree.fromstring(response.content)
    fault = envelope.find(f"{{{SOAP_ENV}}}Body/{{{SOAP_ENV}}}Fault")
    assert fault is not None, response.text
    return response.status_code, fault.findtext("faultcode").split(":", 1)[1], fault.findtext("faultstring")


# -- requests that are not proper SOAP ---------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b"this is not xml", soap_request("getAgencies", "").partition(b"<s:Body>")[0] + b"<s:Body>", b"\x00\xff\xfe"],
    ids=["text", "truncated", "binary"],
)
def test_malformed_requests_are_refused(live_gateway, body) -> None:
    before = stored_counts(live_gateway)
    status, code, message = post(live_gateway, body)
    assert (status, code) == (500, "Client.MalformedRequest")
    assert "well-formed" in message or "SOAP" in message
    assert stored_counts(live_gateway) == before


def test_unknown_operation_and_wrong_soap_action(live_gateway) -> None:
    assert post(live_gateway, soap_request("deleteEverything", ""))[1] == "Client.MalformedRequest"
    _status, code, message = post(live_gateway, soap_request("getPendingDocuments", ""), action="sendDocument")
    assert code == "Client.MalformedRequest" and "SOAPAction" in message


def test_request_not_matching_the_wsdl(live_gateway) -> None:
    _status, code, message = post(live_gateway, soap_request("getDocument", "<g:nonsense>1</g:nonsense>"))
    assert code == "Client.MalformedRequest" and "WSDL" in message


def test_oversize_body_gets_413_and_a_fault(live_gateway) -> None:
    before = stored_counts(live_gateway)
    big = official_letter(VPCP, [NGHE_AN], attachment=b"x" * (LIMIT + 1024))
    inner = f"<g:document>{base64.b64encode(big).decode()}</g:document>"
    status, code, message = post(live_gateway, soap_request("sendDocument", inner))
    assert (status, code) == (413, "Client.TooLarge")
    assert "MiB" in message
    assert stored_counts(live_gateway) == before


# -- credentials ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "secret"),
    [(VPCP, "wrong-secret"), ("000.00.00.H99", "whatever"), (DISABLED, None)],
    ids=["wrong-secret", "unknown-agency", "disabled-agency"],
)
def test_wrong_credentials(client_for, live_gateway, code, secret) -> None:
    fault = fault_of(client_for(code, secret).service.getPendingDocuments)
    assert code_of(fault) == "Client.AuthenticationFailed"
    assert "AuthHeader" in fault.message


def test_missing_credentials(live_gateway) -> None:
    body = soap_request("getPendingDocuments", "").replace(b"<s:Header>", b"<s:Header><x/>")
    body = body.split(b"<g:AuthHeader>")[0] + b"</s:Header>" + body.split(b"</s:Header>")[1]
    assert post(live_gateway, body)[1] == "Client.AuthenticationFailed"


def test_ws_security_username_token_authenticates(live_gateway) -> None:
    from zeep.wsse.username import UsernameToken

    client = zeep.Client(live_gateway.wsdl, wsse=UsernameToken(NGHE_AN, secret_of(NGHE_AN)))
    assert client.service.getPendingDocuments() == [] or client.service.getPendingDocuments() is None
    wrong = zeep.Client(live_gateway.wsdl, wsse=UsernameToken(NGHE_AN, "nope"))
    assert code_of(fault_of(wrong.service.getPendingDocuments)) == "Client.AuthenticationFailed"


# -- documents that cannot be accepted -----------------------------------------------------------


def test_edxml_that_is_not_xml(client_for, live_gateway) -> None:
    before = stored_counts(live_gateway)
    fault = fault_of(client_for(VPCP).service.sendDocument, document=b"%PDF-1.4 not an edxml file")
    assert code_of(fault) == "Client.MalformedEdxml"
    assert stored_counts(live_gateway) == before


def test_document_that_is_not_base64(live_gateway) -> None:
    _status, code, message = post(live_gateway, soap_request("sendDocument", "<g:document>@@not base64@@</g:document>"))
    assert code == "Client.MalformedEdxml" and "base64" in message


def test_schema_invalid_edxml_names_the_element_and_line(client_for, live_gateway) -> None:
    before = stored_counts(live_gateway)
    bad = official_letter(VPCP, [NGHE_AN]).replace(b"2026/11/20</", b"2026-11-20</", 1)
    fault = fault_of(client_for(VPCP).service.sendDocument, document=bad)
    assert code_of(fault) == "Client.SchemaInvalid"
    assert "PromulgationDate" in fault.message and "line" in fault.message
    assert stored_counts(live_gateway) == before


def test_unknown_and_disabled_recipients(client_for, live_gateway) -> None:
    before = stored_counts(live_gateway)
    for recipients in ([NGHE_AN, "000.00.00.H98"], [DISABLED]):
        fault = fault_of(client_for(VPCP).service.sendDocument, document=official_letter(VPCP, recipients))
        assert code_of(fault) == "Client.UnknownRecipient"
        assert recipients[-1] in fault.message
    assert stored_counts(live_gateway) == before, "a send with one bad recipient queues nothing for the good ones"


def test_sending_as_another_agency(client_for, live_gateway) -> None:
    fault = fault_of(client_for(NGHE_AN).service.sendDocument, document=official_letter(VPCP, [CAO_BANG]))
    assert code_of(fault) == "Client.SenderMismatch"
    assert VPCP in fault.message and NGHE_AN in fault.message


# -- other agencies' data and the workflow ----------------------------------------------------------


def test_other_agencies_items_and_documents_are_not_found(client_for, live_gateway) -> None:
    vpcp, nghe_an, hau_giang = client_for(VPCP), client_for(NGHE_AN), client_for(HAU_GIANG)
    document_id = vpcp.service.sendDocument(document=official_letter(VPCP, [NGHE_AN])).documentId
    item_id = nghe_an.service.getPendingDocuments()[0].itemId
    for call, kwargs in (
        (hau_giang.service.getDocument, {"itemId": item_id}),
        (hau_giang.service.confirmReceived, {"itemId": item_id}),
        (hau_giang.service.getStatusHistory, {"documentId": document_id}),
        (hau_giang.service.updateStatus, {"documentId": document_id, "statusCode": "03"}),
        (nghe_an.service.getDocument, {"itemId": "no-such-item"}),
    ):
        fault = fault_of(call, **kwargs)
        assert code_of(fault) == "Client.NotFound"
        assert "Ủy ban" not in fault.message and "Văn phòng" not in fault.message
    assert code_of(fault_of(vpcp.service.updateStatus, documentId=document_id, statusCode="03")) == "Client.Forbidden"
    assert code_of(fault_of(nghe_an.service.updateStatus, documentId=document_id, statusCode="13")) == (
        "Client.Forbidden"
    )


def test_illegal_transitions(client_for, live_gateway) -> None:
    vpcp, nghe_an = client_for(VPCP), client_for(NGHE_AN)
    document_id = vpcp.service.sendDocument(document=official_letter(VPCP, [NGHE_AN])).documentId
    early = fault_of(nghe_an.service.updateStatus, documentId=document_id, statusCode="04")
    assert code_of(early) == "Client.IllegalTransition" and "getDocument" in early.message
    nghe_an.service.getDocument(itemId=nghe_an.service.getPendingDocuments()[0].itemId)
    nghe_an.service.updateStatus(documentId=document_id, statusCode="03", description="Đã vào sổ")
    reject = fault_of(nghe_an.service.updateStatus, documentId=document_id, statusCode="02", description="x")
    assert code_of(reject) == "Client.IllegalTransition" and "before it is accepted" in reject.message
    nghe_an.service.updateStatus(documentId=document_id, statusCode="06", description="Hoàn thành")
    back = fault_of(nghe_an.service.updateStatus, documentId=document_id, statusCode="04")
    assert code_of(back) == "Client.IllegalTransition" and "06" in back.message
    unknown = fault_of(nghe_an.service.updateStatus, documentId=document_id, statusCode="99")
    assert code_of(unknown) == "Client.InvalidStatus" and "01" in unknown.message
    reasonless = fault_of(nghe_an.service.updateStatus, documentId=document_id, statusCode="16")
    assert code_of(reasonless) == "Client.InvalidStatus"
    history = [e.statusCode for e in vpcp.service.getStatusHistory(documentId=document_id)]
    assert history == ["01", "03", "06"], "refused updates leave no trace in the history"


def test_rejection_ends_the_workflow(client_for, live_gateway) -> None:
    vpcp, cao_bang = client_for(VPCP), client_for(CAO_BANG)
    document_id = vpcp.service.sendDocument(document=official_letter(VPCP, [CAO_BANG])).documentId
    cao_bang.service.getDocument(itemId=cao_bang.service.getPendingDocuments()[0].itemId)
    cao_bang.service.updateStatus(documentId=document_id, statusCode="02", description="Sai thẩm quyền")
    fault = fault_of(cao_bang.service.updateStatus, documentId=document_id, statusCode="03")
    assert code_of(fault) == "Client.IllegalTransition" and "rejected" in fault.message


def test_a_document_id_holds_one_document(client_for, live_gateway) -> None:
    """Issue 9.1: other bytes under a used DocumentId are refused, not answered "duplicate"."""
    vpcp, cao_bang = client_for(VPCP), client_for(CAO_BANG)
    edxml = official_letter(VPCP, [NGHE_AN])
    first = vpcp.service.sendDocument(document=edxml)
    before = stored_counts(live_gateway)
    other = official_letter(VPCP, [NGHE_AN, CAO_BANG], attachment=b"%PDF-1.4 the corrected letter\n")
    fault = fault_of(vpcp.service.sendDocument, document=other)
    assert code_of(fault) == "Client.DocumentIdConflict"
    assert first.documentId in fault.message and "Vietnam time" in fault.message
    assert stored_counts(live_gateway) == before
    assert cao_bang.service.getPendingDocuments() in (None, [])
    again = vpcp.service.sendDocument(document=edxml)
    assert (again.documentId, again.duplicate) == (first.documentId, True)
    assert stored_counts(live_gateway) == before
