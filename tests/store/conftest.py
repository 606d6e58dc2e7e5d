"""Row factories for store tests: agencies and documents that queue items and audit rows refer to."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy import insert
from sqlalchemy.orm import Session

from gateway.store.models import Agency, Document, table_of

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)

MakeAgency = Callable[[Session, str], Agency]
MakeDocument = Callable[..., Document]


def add_agency(session: Session, code: str) -> Agency:
    agency = Agency(code=code, name=f"Cơ quan {code}", level=1, created_at=T0)
    session.add(agency)
    session.flush()
    return agency


INSERT_AGENCY = insert(table_of(Agency))
"""For ``Database.pipeline`` and ``Database.write_alone``, with :func:`agency_row`'s rows."""


def agency_row(code: str, level: int = 1) -> dict[str, Any]:
    """An agency as a plain row: every column whose default SQLAlchemy would compute is given."""
    flags = {"active": True, "require_signature": False, "test_code": False, "sandbox": False, "directory_version": 0}
    return {"code": code, "name": f"Cơ quan {code}", "level": level, "created_at": T0, **flags}


def add_document(
    session: Session, sender: Agency, edxml_document_id: str | None = None, sha256: str = "0" * 64
) -> Document:
    document = Document(
        id=str(uuid.uuid4()),
        sender_id=sender.id,
        edxml_document_id=edxml_document_id or f"{sender.code},{uuid.uuid4().hex}",
        code_number="12",
        code_notation="QĐ-UBND",
        subject="Về việc thử nghiệm trục liên thông",
        type_name="Quyết định",
        promulgation_date=date(2026, 11, 1),
        blob_sha256=sha256,
        size=1234,
        created_at=T0,
    )
    session.add(document)
    session.flush()
    return document


@pytest.fixture
def make_agency() -> MakeAgency:
    return add_agency


@pytest.fixture
def make_document() -> MakeDocument:
    return add_document
