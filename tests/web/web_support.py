"""A live gateway with an operator password, zeep clients, and the scripted exchange the
dashboard and metrics tests check their numbers against.

The exchange: VPCP sends one Công văn to Nghệ An and Cao Bằng; Nghệ An pulls it, fetches it
(01 arrived), acknowledges it and reports 05 (in progress); Cao Bằng does nothing. So one
document is in flight with two copies, Cao Bằng's copy sits unacknowledged in its queue, and
VPCP's queue holds the two status messages (01, 05) from Nghệ An.
"""

from __future__ import annotations

import base64
import contextlib
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime

import zeep
from support.live import secret_of, serving_store
from zeep.transports import Transport

from gateway.app import Router
from gateway.config import Settings
from gateway.edxml import AttachmentSource, DocumentMessage, Organization, document_bytes
from gateway.exchange.credentials import hash_secret
from gateway.store.database import Database
from gateway.store.models import Agency, Credential

NS = "urn:edxml-gateway:soap:v1"
PASSWORD = "mật-khẩu-vận-hành"
VPCP = "000.00.00.G22"
NGHE_AN = "000.00.00.H41"
CAO_BANG = "000.00.00.H14"
HAU_GIANG = "000.00.00.H30"
SO_TTTT = "000.00.05.H41"
DIRECTORY = [
    (VPCP, "Văn phòng Chính phủ", 1, None),
    (NGHE_AN, "Ủy ban nhân dân tỉnh Nghệ An", 1, None),
    (CAO_BANG, "Ủy ban nhân dân tỉnh Cao Bằng", 1, None),
    (HAU_GIANG, "Ủy ban nhân dân tỉnh Hậu Giang", 1, None),
    (SO_TTTT, "Sở Thông tin và Truyền thông Nghệ An", 2, NGHE_AN),
]
SUBJECT = "Về việc triển khai kết nối liên thông văn bản điện tử"


def seed_directory(db: Database) -> None:
    """The agencies above, each with a live credential (so each is at least "connected")."""
    now = datetime.now(UTC)
    with db.transaction() as session:
        for code, name, level, parent in DIRECTORY:
            agency = Agency(code=code, name=name, level=level, parent_code=parent, active=True, created_at=now)
            session.add(agency)
            session.flush()
            session.add(Credential(agency_id=agency.id, secret_hash=hash_secret(secret_of(code)), created_at=now))


@dataclass
class Live:
    """A gateway served on a free port: ``base`` is ``http://127.0.0.1:PORT``."""

    base: str
    settings: Settings
    db: Database
    app: Router

    @property
    def wsdl(self) -> str:
        return f"{self.base}/soap?wsdl"

    def client(self, code: str, secret: str | None = None) -> zeep.Client:
        """A zeep client authenticated as agency ``code``."""
        return soap_client(self.wsdl, code, secret)


def soap_client(wsdl: str, code: str, secret: str | None = None) -> zeep.Client:
    """A zeep client for the gateway at ``wsdl``, authenticated as agency ``code``."""
    client = zeep.Client(wsdl, transport=Transport(timeout=30, operation_timeout=60))
    header = client.get_element(f"{{{NS}}}AuthHeader")(agencyCode=code, secret=secret or secret_of(code))
    client.set_default_soapheaders([header])
    return client


@contextlib.contextmanager
def serving(settings: Settings) -> Iterator[Live]:
    """Migrate and seed a fresh store (the directory above), and serve ``create_app(settings)`` from a thread."""
    with serving_store(settings, seed_directory) as (base, db, app):
        yield Live(base, settings, db, app)


def letter(sender: str, recipients: list[str], number: str = "7816", due: date | None = None) -> bytes:
    """A Công văn with one PDF attachment; ``due`` None means no DueDate."""
    names = dict((code, name) for code, name, _, _ in DIRECTORY)
    message = DocumentMessage(
        sender=Organization(sender, names[sender]),
        recipients=tuple(Organization(code, names[code]) for code in recipients),
        code_number=number,
        code_notation="VPCP-TTĐT",
        promulgation_date=date(2026, 11, 20),
        type_code=1,
        type_name="Công văn",
        subject=SUBJECT,
        document_id=f"{sender},2026/11/20,{number}/VPCP-TTĐT",
        due_date=due,
    )
    return document_bytes(message, [AttachmentSource("cong-van.pdf", "application/pdf", data=b"%PDF-1.4 test\n")])


def scripted_exchange(live: Live, due: date | None = None) -> str:
    """Run the module docstring's exchange over SOAP; returns the gateway's document id."""
    vpcp, nghe_an = live.client(VPCP), live.client(NGHE_AN)
    receipt = vpcp.service.sendDocument(document=letter(VPCP, [NGHE_AN, CAO_BANG], due=due))
    [item] = nghe_an.service.getPendingDocuments()
    nghe_an.service.getDocument(itemId=item.itemId)
    nghe_an.service.confirmReceived(itemId=item.itemId)
    nghe_an.service.updateStatus(documentId=receipt.documentId, statusCode="05", description="Đang xử lý")
    return str(receipt.documentId)


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


def http_get(url: str, user: str | None = None, password: str | None = None) -> Response:
    """GET ``url`` (with Basic credentials when given) and return any status without raising."""
    request = urllib.request.Request(url)
    if user is not None and password is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return Response(response.status, dict(response.headers.items()), response.read())
    except urllib.error.HTTPError as error:
        return Response(error.code, dict(error.headers.items()), error.read())
