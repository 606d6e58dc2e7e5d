"""Certification runs: the sandbox agency plays the other side of an exchange and grades the agency.

A run is started by the operator (CLI, dashboard) or by the agency's own software (SOAP
``startCertification``). The sandbox then sends the script's test documents
(:mod:`gateway.certification.script`) through the exchange service, exactly as a real sender
would, and :meth:`Certifications.advance` moves the run on: it answers what the agency sends to
the sandbox (fetch, acknowledge, 03-06), recalls and updates once the agency fetched the
originals, decides every check from what the store shows, and ends the run when all checks are
decided or the deadline passed. ``advance`` is idempotent; ``edxml-gateway certify watch`` calls it
in a loop, and every read of a run calls it first.

The grade uses the words of the 2016 interconnection tests (mission.md): not connected,
connected, sends and receives, sends, receives and reports status.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.certification import script
from gateway.edxml import Organization, document_bytes, write_document
from gateway.edxml.signature import sign_document
from gateway.errors import CertificationInProgress, GatewayError, NotFound
from gateway.exchange.results import Caller
from gateway.exchange.service import ExchangeService
from gateway.reports import CONNECTED, NOT_CONNECTED, REPORTS_STATUS, SENDS_AND_RECEIVES
from gateway.store import audit
from gateway.store.models import (
    Agency,
    CertificationCheck,
    CertificationFault,
    CertificationRun,
    Delivery,
    Document,
    Recipient,
    StatusEvent,
)

log = logging.getLogger("gateway.certification")

PENDING, PASSED, FAILED, SKIPPED = "pending", "passed", "failed", "skipped"
DEFAULT_DURATION = timedelta(hours=2)
LARGE_ATTACHMENT_BYTES = 20 * 1024 * 1024
"""The large test attachment: tens of MB, like the scanned maps and records real traffic carries."""
RECALL_SENT = "recall-13-sent-at"
CLAIMED = "claimed"
"""A scripted step under way in some process (see :meth:`Certifications._once`)."""


@dataclass(frozen=True)
class CheckView:
    key: str
    title: str
    deadline: datetime
    state: str
    evidence: dict[str, Any]
    decided_at: datetime | None


@dataclass(frozen=True)
class FaultView:
    at: datetime
    operation: str
    code: str
    message: str


@dataclass(frozen=True)
class RunView:
    """A run as shown to people and programs; ``grade`` is provisional while the run is active."""

    run_id: str
    agency_code: str
    agency_name: str
    started_by: str
    started_at: datetime
    deadline: datetime
    finished_at: datetime | None
    grade: str
    checks: tuple[CheckView, ...]
    faults: tuple[FaultView, ...]

    @property
    def active(self) -> bool:
        return self.finished_at is None

    def counts(self) -> dict[str, int]:
        """Checks per state."""
        counts = dict.fromkeys((PASSED, FAILED, PENDING, SKIPPED), 0)
        for check in self.checks:
            counts[check.state] += 1
        return counts


def utc_now() -> datetime:
    return datetime.now(UTC)


class Certifications:
    """Starts, drives and reports certification runs; the sandbox acts through ``exchange``."""

    def __init__(
        self,
        exchange: ExchangeService,
        large_bytes: int = LARGE_ATTACHMENT_BYTES,
        clock: Callable[[], datetime] = utc_now,
        signing: tuple[bytes, bytes] | None = None,
    ) -> None:
        self.exchange = exchange
        self.db = exchange.db
        self.large_bytes = large_bytes
        self.clock = clock
        self.signing = signing
        """(key PEM, certificate PEM) the sandbox signs with; None: no signed test document."""

    @classmethod
    def from_settings(cls, exchange: ExchangeService) -> Certifications:
        """The runs of a gateway configured by ``exchange.settings`` (large attachment size, signing key)."""
        settings = exchange.settings
        signing = None
        if settings.sandbox_signing_key and settings.sandbox_signing_cert and settings.trusted_certs:
            signing = (settings.sandbox_signing_key.read_bytes(), settings.sandbox_signing_cert.read_bytes())
        return cls(exchange, large_bytes=settings.certify_large_bytes, signing=signing)

    # -- the sandbox ----------------------------------------------------------------------------

    def sandbox(self) -> Caller:
        """The sandbox agency (created in the directory on first use, marked ``sandbox``).

        Asked on every advance of every run, so it is looked up without the write lock first.
        """
        with self.db.transaction(readonly=True) as session:
            found = session.execute(
                select(Agency.id, Agency.code, Agency.name).where(Agency.code == script.SANDBOX_CODE)
            ).first()
        if found is not None:
            return Caller(found.id, found.code, found.name)
        with self.db.transaction() as session:
            agency = session.scalar(select(Agency).where(Agency.code == script.SANDBOX_CODE))
            if agency is None:
                agency = Agency(
                    code=script.SANDBOX_CODE,
                    name=script.SANDBOX_NAME,
                    level=1,
                    active=True,
                    test_code=True,
                    sandbox=True,
                    created_at=self.clock(),
                )
                session.add(agency)
                session.flush()
                audit.append(session, "operator", "sandbox_created", None, {"code": agency.code}, self.clock())
            return Caller(agency.id, agency.code, agency.name)

    # -- starting -------------------------------------------------------------------------------

    def start(self, agency_code: str, started_by: str, duration: timedelta = DEFAULT_DURATION) -> RunView:
        """Start a run for ``agency_code`` and send it the first test documents.

        Refused with :class:`CertificationInProgress` while another run of the agency is active.
        """
        sandbox = self.sandbox()
        now = self.clock()
        signed = self.signing is not None
        with self.db.transaction() as session:
            agency = session.scalar(
                select(Agency).where(Agency.code == agency_code, Agency.sandbox.is_(False)).with_for_update()
            )
            if agency is None or not agency.active:
                raise NotFound(f"No active agency {agency_code} in the directory to certify.")
            active = session.scalar(
                select(CertificationRun).where(
                    CertificationRun.agency_id == agency.id, CertificationRun.finished_at.is_(None)
                )
            )
            if active is not None:
                raise CertificationInProgress(
                    f"A certification run for {agency_code} is already active (run {active.id}, until "
                    f"{active.deadline:%Y-%m-%d %H:%M} UTC); follow it, or wait until it ends."
                )
            run = CertificationRun(
                id=str(uuid.uuid4()),
                agency_id=agency.id,
                started_by=started_by,
                started_at=now,
                deadline=now + duration,
                documents="{}",
            )
            session.add(run)
            for spec in script.checks(signed):
                session.add(
                    CertificationCheck(
                        run_id=run.id,
                        key=spec.key,
                        title=spec.title,
                        deadline=now + duration * spec.due,
                        state=PENDING,
                        evidence="{}",
                    )
                )
            audit.append(session, started_by, "certification_start", None, {"run": run.id, "agency": agency_code}, now)
            run_id, organization = run.id, Organization(agency.code, agency.name)
        roles = [role for role in script.INITIAL_ROLES if role != script.SIGNED or signed]
        documents = {role: self._send(sandbox, role, organization, run_id, now) for role in roles}
        with self.db.transaction() as session:
            session.get_one(CertificationRun, run_id).documents = json.dumps(documents)
        return self.view(run_id)

    def _send(self, sandbox: Caller, role: str, agency: Organization, run_id: str, started_at: datetime) -> str:
        """Send the test document for ``role``; return its gateway id.

        Documents are dated by the run's start, so the update can name the document it updates
        by rebuilding it (the script is deterministic for a run).
        """
        number = _run_number(run_id)
        original = None
        if role == script.UPDATE:
            original = script.document(script.ATTACHMENTS, agency, number, started_at, self.large_bytes).message
        test = script.document(role, agency, number, started_at, self.large_bytes, original)
        staged = self.exchange.begin_staging()
        stamp = started_at.replace(tzinfo=None, microsecond=0)
        try:
            if role == script.SIGNED and self.signing is not None:
                staged.write(
                    sign_document(document_bytes(test.message, list(test.attachments), now=stamp), *self.signing)
                )
            else:
                write_document(test.message, test.attachments, staged, now=stamp)
            staged.flush()
            return self.exchange.send_document(sandbox, staged).document_id
        finally:
            staged.discard()

    # -- driving --------------------------------------------------------------------------------

    def advance_active(self) -> int:
        """Advance every active run (what ``certify watch`` does each round); return how many."""
        with self.db.transaction(readonly=True) as session:
            ids = list(session.scalars(select(CertificationRun.id).where(CertificationRun.finished_at.is_(None))))
        for run_id in ids:
            self.advance(run_id)
        return len(ids)

    def advance(self, run_id: str) -> RunView:
        """Answer what waits for the sandbox, take the next scripted steps, decide checks, maybe finish."""
        sandbox = self.sandbox()
        self._answer_sandbox_inbox(sandbox)
        with self.db.transaction(readonly=True) as session:
            run = session.get(CertificationRun, run_id)
            if run is None:
                raise NotFound(f"No certification run {run_id}.")
            if run.finished_at is not None:
                return self._view(session, run)
            agency = Organization(run.agency.code, run.agency.name)
            agency_id, started_at = run.agency_id, run.started_at
            documents: dict[str, str] = json.loads(run.documents)
        now = self.clock()
        if documents and script.UPDATE not in documents and _fetched(self.db, documents[script.ATTACHMENTS], agency_id):
            self._once(run_id, script.UPDATE, lambda: self._send(sandbox, script.UPDATE, agency, run_id, started_at))
        if documents and RECALL_SENT not in documents and _fetched(self.db, documents[script.RECALL], agency_id):

            def recall() -> str:
                reason = "Thu hồi văn bản kiểm thử liên thông (kịch bản kiểm thử)."
                self.exchange.update_status(sandbox, documents[script.RECALL], "13", reason)
                return now.isoformat()

            self._once(run_id, RECALL_SENT, recall)
        with self.db.transaction() as session:
            run = _locked(session, run_id)
            self._decide(session, run, json.loads(run.documents), sandbox, now)
            return self._view(session, run)

    def _once(self, run_id: str, key: str, step: Callable[[], str]) -> None:
        """Take a scripted step exactly once, even when several processes advance the run at the same time.

        The step is claimed in the run's ``documents`` under a lock first; only the claimer takes it,
        then records what it produced (or releases the claim when it failed, for a later retry).
        """
        with self.db.transaction() as session:
            run = _locked(session, run_id)
            documents = json.loads(run.documents)
            if key in documents:
                return
            documents[key] = CLAIMED
            run.documents = json.dumps(documents)
        try:
            outcome: str | None = step()
        except Exception:
            outcome = None
            raise
        finally:
            with self.db.transaction() as session:
                run = _locked(session, run_id)
                documents = json.loads(run.documents)
                if outcome is None:
                    documents.pop(key, None)
                else:
                    documents[key] = outcome
                run.documents = json.dumps(documents)

    def _answer_sandbox_inbox(self, sandbox: Caller) -> None:
        """Fetch and acknowledge everything sent to the sandbox; answer each document with 03-06."""
        while items := self.exchange.pending(sandbox, 100):
            for item in items:
                try:
                    self.exchange.fetch(sandbox, item.item_id)
                    self.exchange.acknowledge(sandbox, item.item_id)
                    if item.kind == "document":
                        for code in script.PROCESSING_CODES:
                            self.exchange.update_status(sandbox, item.document_id, code, "Hộp cát kiểm thử đã xử lý.")
                except GatewayError as error:
                    log.warning("sandbox could not handle item %s: %s %s", item.item_id, error.code, error.message)

    def _decide(
        self, session: Session, run: CertificationRun, documents: dict[str, str], sandbox: Caller, now: datetime
    ) -> None:
        for check in run.checks:
            if check.state != PENDING:
                continue
            passed, evidence = self._evaluate(session, run, check.key, documents, sandbox)
            check.evidence = json.dumps(evidence, ensure_ascii=False, default=str)
            if passed:
                check.state, check.decided_at = PASSED, now
            elif now >= check.deadline:
                check.state, check.decided_at = FAILED, now
        if now >= run.deadline or all(check.state != PENDING for check in run.checks):
            for check in run.checks:
                if check.state == PENDING:
                    check.state, check.decided_at = FAILED, now
            run.finished_at = now
            run.grade = _grade(session, run)
            audit.append(
                session,
                "sandbox",
                "certification_end",
                None,
                {"run": run.id, "agency": run.agency.code, "grade": run.grade},
                now,
            )

    def _evaluate(
        self, session: Session, run: CertificationRun, key: str, documents: dict[str, str], sandbox: Caller
    ) -> tuple[bool, dict[str, Any]]:
        kind, _, role = key.partition(":")
        if kind == "receive":
            if documents.get(role, CLAIMED) == CLAIMED:
                return False, {"note": "not sent yet: it follows once the agency fetched the earlier document"}
            return _received(session, documents[role], run.agency_id)
        if kind == "status":
            return _reported(session, documents.get(role), run.agency_id, role)
        if key == "send":
            return _sent_to_sandbox(session, run, sandbox)
        return _status_messages(session, run, sandbox)

    # -- reading --------------------------------------------------------------------------------

    def view(self, run_id: str) -> RunView:
        """The run as it stands (advanced first, so a read never shows stale states)."""
        return self.advance(run_id)

    def runs(self, agency_code: str | None = None) -> list[RunView]:
        """Every run, newest first (one agency's with ``agency_code``)."""
        with self.db.transaction(readonly=True) as session:
            query = select(CertificationRun).order_by(CertificationRun.started_at.desc())
            if agency_code:
                query = query.join(Agency, Agency.id == CertificationRun.agency_id).where(Agency.code == agency_code)
            return [self._view(session, run) for run in session.scalars(query)]

    def record_fault(self, agency_code: str, operation: str, code: str, message: str) -> bool:
        """Keep a fault the agency provoked, if it has an active run; True when recorded.

        Called for every fault an agency is answered, so the (usual) case of no active run is settled
        by one read that takes no write lock.
        """
        active_run = (
            select(CertificationRun.id)
            .join(Agency, Agency.id == CertificationRun.agency_id)
            .where(Agency.code == agency_code, CertificationRun.finished_at.is_(None))
        )
        with self.db.transaction(readonly=True) as session:
            if session.scalar(active_run) is None:
                return False
        with self.db.transaction() as session:
            run_id = session.scalar(active_run)
            if run_id is None:
                return False
            session.add(
                CertificationFault(
                    run_id=run_id, at=self.clock(), operation=operation, code=code, message=message[:2000]
                )
            )
            return True

    def _view(self, session: Session, run: CertificationRun) -> RunView:
        faults = session.scalars(
            select(CertificationFault).where(CertificationFault.run_id == run.id).order_by(CertificationFault.id)
        )
        return RunView(
            run_id=run.id,
            agency_code=run.agency.code,
            agency_name=run.agency.name,
            started_by=run.started_by,
            started_at=run.started_at,
            deadline=run.deadline,
            finished_at=run.finished_at,
            grade=run.grade or _grade(session, run),
            checks=tuple(
                CheckView(c.key, c.title, c.deadline, c.state, json.loads(c.evidence), c.decided_at) for c in run.checks
            ),
            faults=tuple(FaultView(f.at, f.operation, f.code, f.message) for f in faults),
        )


def _locked(session: Session, run_id: str) -> CertificationRun:
    """The run, locked for this transaction (a row lock on PostgreSQL; SQLite's writer lock already holds)."""
    run = session.scalar(select(CertificationRun).where(CertificationRun.id == run_id).with_for_update())
    if run is None:
        raise NotFound(f"No certification run {run_id}.")
    return run


def _run_number(run_id: str) -> str:
    """A document number unique to the run (the sandbox's DocumentIds must not repeat across runs)."""
    return str(int(run_id.replace("-", "")[:10], 16) % 10**9)


def _fetched(db: Any, document_id: str, agency_id: int) -> bool:
    with db.transaction(readonly=True) as session:
        return (
            session.scalar(
                select(Delivery.fetched_at).where(
                    Delivery.document_id == document_id, Delivery.agency_id == agency_id, Delivery.kind == "document"
                )
            )
            is not None
        )


def _item_evidence(delivery: Delivery) -> dict[str, Any]:
    return {
        "item_id": delivery.id,
        "document_id": delivery.document_id,
        "state": delivery.state,
        "queued_at": delivery.created_at,
        "leased": delivery.attempts,
        "fetched_at": delivery.fetched_at,
        "acknowledged_at": delivery.acked_at,
    }


def _received(session: Session, document_id: str, agency_id: int) -> tuple[bool, dict[str, Any]]:
    delivery = session.scalar(
        select(Delivery).where(
            Delivery.document_id == document_id, Delivery.agency_id == agency_id, Delivery.kind == "document"
        )
    )
    if delivery is None:
        return False, {"document_id": document_id, "note": "no queue item for the agency"}
    evidence = _item_evidence(delivery)
    if delivery.fetched_at is None:
        evidence["note"] = "never fetched (getDocument)" if delivery.attempts else "never pulled (getPendingDocuments)"
    elif delivery.acked_at is None:
        evidence["note"] = "fetched but never acknowledged (confirmReceived)"
    return delivery.fetched_at is not None and delivery.acked_at is not None, evidence


def _events(session: Session, document_id: str, agency_id: int) -> list[StatusEvent]:
    return list(
        session.scalars(
            select(StatusEvent)
            .where(StatusEvent.document_id == document_id, StatusEvent.recipient_agency_id == agency_id)
            .order_by(StatusEvent.reported_at, StatusEvent.id)
        )
    )


def _reported(session: Session, document_id: str | None, agency_id: int, role: str) -> tuple[bool, dict[str, Any]]:
    if document_id is None:
        return False, {"note": "the test document was not sent"}
    events = _events(session, document_id, agency_id)
    own = [e for e in events if e.reporter_agency_id == agency_id]
    evidence: dict[str, Any] = {
        "document_id": document_id,
        "statuses": [{"code": e.code, "at": e.reported_at, "description": e.description} for e in own],
    }
    codes = [e.code for e in own if e.code != "01"]
    if role == script.REJECT:
        return any(e.code == "02" and e.description for e in own), evidence
    if role == script.RECALL:
        asked = any(e.code == "13" for e in events)
        evidence["recall_sent"] = asked
        return asked and any(code in ("15", "16") for code in codes), evidence
    progress = [code for code in codes if code in script.PROCESSING_CODES]
    expected = iter(progress)
    return all(code in expected for code in script.PROCESSING_CODES), evidence


def _sent_documents(session: Session, run: CertificationRun, sandbox: Caller) -> list[Document]:
    return list(
        session.scalars(
            select(Document)
            .join(Recipient, Recipient.document_id == Document.id)
            .where(
                Document.sender_id == run.agency_id,
                Recipient.agency_id == sandbox.agency_id,
                Document.created_at >= run.started_at,
            )
            .order_by(Document.created_at)
        )
    )


def _sent_to_sandbox(session: Session, run: CertificationRun, sandbox: Caller) -> tuple[bool, dict[str, Any]]:
    sent = _sent_documents(session, run, sandbox)
    evidence = {
        "documents": [
            {"document_id": d.id, "edxml_document_id": d.edxml_document_id, "sent_at": d.created_at} for d in sent
        ]
    }
    return bool(sent), evidence


def _status_messages(session: Session, run: CertificationRun, sandbox: Caller) -> tuple[bool, dict[str, Any]]:
    sent = _sent_documents(session, run, sandbox)
    if not sent:
        return False, {"note": "the agency has not sent a document to the sandbox yet"}
    items = list(
        session.scalars(
            select(Delivery)
            .where(
                Delivery.document_id.in_([d.id for d in sent]),
                Delivery.agency_id == run.agency_id,
                Delivery.kind == "status",
            )
            .order_by(Delivery.created_at)
        )
    )
    evidence = {"items": [_item_evidence(d) for d in items]}
    done = [d for d in items if d.acked_at is not None]
    return len(done) >= len(script.PROCESSING_CODES) and len(done) == len(items), evidence


def _grade(session: Session, run: CertificationRun) -> str:
    states = {check.key: check.state for check in run.checks}
    receives = all(state == PASSED for key, state in states.items() if key.startswith("receive:"))
    sends = states.get("send") == PASSED
    statuses = all(
        state in (PASSED, SKIPPED)
        for key, state in states.items()
        if key.startswith("status") or key == "status-messages"
    )
    if receives and sends:
        return REPORTS_STATUS if statuses else SENDS_AND_RECEIVES
    seen = session.scalar(
        select(Delivery.id)
        .where(Delivery.agency_id == run.agency_id, Delivery.attempts > 0, Delivery.created_at >= run.started_at)
        .limit(1)
    )
    faults = session.scalar(select(CertificationFault.id).where(CertificationFault.run_id == run.id).limit(1))
    return CONNECTED if seen or sends or faults else NOT_CONNECTED
