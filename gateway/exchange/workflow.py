"""The processing workflow of a received document, as rules on status codes (no storage, no I/O).

A recipient's copy moves forward only: 01 arrived → 03 accepted → 04 assigned → 05 in
progress → 06 completed, skipping steps allowed, 05 repeatable (progress reports). 02 rejects
the copy and, like 06, ends it; it is allowed only before acceptance. 13 is the sender asking to
take a document back; the recipient answers 15 (agreed: the copy is withdrawn, the workflow
ends) or 16 (refused: it goes on). Sources: QĐ 28/2018 Art. 9, NĐ 30/2020 Art. 18 and 21 (the
README's "Status workflow").

:func:`refusal` is the whole rule set as one pure function of the copy's state and the new
code; :func:`check_transition` turns its answer into the fault a client sees.
"""

from __future__ import annotations

from enum import Enum, StrEnum

from gateway.errors import ClientError, Forbidden, IllegalTransition, InvalidStatus


class Status(StrEnum):
    """The QCVN 102 status codes the gateway knows (values are the codes on the wire)."""

    ARRIVED = "01"
    REJECTED = "02"
    ACCEPTED = "03"
    ASSIGNED = "04"
    IN_PROGRESS = "05"
    COMPLETED = "06"
    RECALL_REQUESTED = "13"
    RECALL_AGREED = "15"
    RECALL_REFUSED = "16"

    @property
    def label(self) -> str:
        """Human name, for histories and faults."""
        return STATUS_NAMES[self]


STATUS_NAMES: dict[str, str] = {
    Status.ARRIVED: "arrived",
    Status.REJECTED: "rejected",
    Status.ACCEPTED: "accepted",
    Status.ASSIGNED: "assigned",
    Status.IN_PROGRESS: "in progress",
    Status.COMPLETED: "completed",
    Status.RECALL_REQUESTED: "recall requested",
    Status.RECALL_AGREED: "recall agreed",
    Status.RECALL_REFUSED: "recall refused",
}
"""Code → human name; keyed by ``Status`` members, which are equal to (and hash like) their codes."""

PROCESSING_CODES: tuple[Status, ...] = (
    Status.ARRIVED,
    Status.REJECTED,
    Status.ACCEPTED,
    Status.ASSIGNED,
    Status.IN_PROGRESS,
    Status.COMPLETED,
)
"""The codes that are a copy's processing status (``recipients.status``)."""
RECALL_ANSWERS: tuple[Status, ...] = (Status.RECALL_AGREED, Status.RECALL_REFUSED)
NEEDS_REASON: tuple[Status, ...] = (Status.REJECTED, Status.RECALL_REFUSED)
"""A rejection or a refused recall must say why (the sender has to act on it)."""

_RANK: dict[Status | None, int] = {
    None: 0,
    Status.ARRIVED: 1,
    Status.ACCEPTED: 2,
    Status.ASSIGNED: 3,
    Status.IN_PROGRESS: 4,
    Status.COMPLETED: 5,
}
_FINAL: tuple[Status, ...] = (Status.REJECTED, Status.COMPLETED)


class Refusal(Enum):
    """Why a status is refused: one member per rule (the reason class tests and clients can rely on)."""

    SENDER_ONLY = "only the sender recalls (13)"
    RECIPIENT_ONLY = "the sender may only recall (13)"
    RECALL_AGREED = "the recipient agreed to a recall (15): processing ended"
    FINAL = "the copy is rejected (02) or completed (06)"
    REJECT_AFTER_ACCEPT = "rejection (02) only before acceptance"
    ARRIVED_TWICE = "arrival (01) is recorded once"
    NOT_FETCHED = "processing statuses only after fetching"
    BACKWARDS = "statuses move forward only"
    NO_RECALL_PENDING = "15/16 answer a pending recall only"

    @property
    def error(self) -> type[ClientError]:
        """The fault class: a role rule is Forbidden, a workflow rule IllegalTransition."""
        return Forbidden if self in (Refusal.SENDER_ONLY, Refusal.RECIPIENT_ONLY) else IllegalTransition


def parse(code: str | None) -> Status:
    """The Status for a code a client sent, or InvalidStatus naming the known codes."""
    try:
        return Status((code or "").strip())
    except ValueError:
        known = ", ".join(Status)
        raise InvalidStatus(f"Status code '{code}' is not a QCVN 102 status code; use one of {known}.") from None


def status_name(code: str) -> str:
    """Human name of a status code, for histories and faults."""
    return STATUS_NAMES.get(code, "unknown")


def check_known(code: str) -> None:
    """Refuse codes outside the QCVN 102 list before anything else looks at them."""
    parse(code)


def check_reason(code: Status, description: str | None) -> None:
    """02 and 16 must carry their reason."""
    if code in NEEDS_REASON and not description:
        raise InvalidStatus(f"Status {code} ({code.label}) needs the reason in description.")


def refusal(current: Status | None, recall: Status | None, new: Status, *, sender: bool = False) -> Refusal | None:
    """The rule ``new`` breaks for a copy whose processing status is ``current``, or None if allowed.

    ``current`` is the copy's last processing code (None before it was fetched); ``recall`` the
    recall state of the copy (13 pending, 15 agreed, 16 refused, None never asked); ``sender``
    says whether the reporter is the document's sender, who may only recall (13).
    """
    if sender:
        return None if new == Status.RECALL_REQUESTED else Refusal.RECIPIENT_ONLY
    if new == Status.RECALL_REQUESTED:
        return Refusal.SENDER_ONLY
    if new in RECALL_ANSWERS:
        return None if recall == Status.RECALL_REQUESTED else Refusal.NO_RECALL_PENDING
    if recall == Status.RECALL_AGREED:
        return Refusal.RECALL_AGREED
    if current in _FINAL:
        return Refusal.FINAL
    if new == Status.REJECTED:
        return None if current in (None, Status.ARRIVED) else Refusal.REJECT_AFTER_ACCEPT
    if new == Status.ARRIVED:
        return None if current is None else Refusal.ARRIVED_TWICE
    if current is None:
        return Refusal.NOT_FETCHED
    if new == current == Status.IN_PROGRESS:
        return None
    return None if _RANK[new] > _RANK[current] else Refusal.BACKWARDS


def check_transition(current: Status | None, recall: Status | None, new: Status, *, sender: bool = False) -> None:
    """Raise the fault of :func:`refusal`'s rule, with a message a clerk can act on."""
    rule = refusal(current, recall, new, sender=sender)
    if rule is not None:
        raise rule.error(_explain(rule, current, new))


def _explain(rule: Refusal, current: Status | None, new: Status) -> str:
    was = f"{current.label} ({current})" if current else "not yet fetched"
    messages = {
        Refusal.SENDER_ONLY: "Only the sender of a document can recall it (13); as a recipient, answer a recall "
        "with 15 (agreed) or 16 (refused).",
        Refusal.RECIPIENT_ONLY: "You sent this document; recipients report its processing status. "
        "To take it back, report 13 (recall).",
        Refusal.NO_RECALL_PENDING: f"Status {new} answers a recall, update or replacement request, and none is "
        "pending for your copy of this document.",
        Refusal.RECALL_AGREED: "This document was recalled by its sender and you agreed (15); its processing "
        "has ended.",
        Refusal.FINAL: f"The document is already {was}; status {new} ({new.label}) can no longer be reported.",
        Refusal.REJECT_AFTER_ACCEPT: f"A document can only be rejected (02) before it is accepted; it is already "
        f"{was}.",
        Refusal.ARRIVED_TWICE: f"Arrival (01) is already recorded; the document is {was}.",
        Refusal.NOT_FETCHED: f"Fetch the document (getDocument) before reporting {new} ({new.label}).",
        Refusal.BACKWARDS: f"Status cannot go back from {was} to {new} ({new.label}).",
    }
    return messages[rule]
