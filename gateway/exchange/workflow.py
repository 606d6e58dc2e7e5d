"""The processing workflow of a received document, as rules on status codes.

A recipient's copy moves forward only: 01 arrived → 03 accepted → 04 assigned → 05 in
progress → 06 completed, skipping steps allowed, 05 repeatable (progress reports). 02 rejects
the copy and, like 06, ends it. 13 is the sender asking to take a document back; the recipient
answers 15 (agreed: the copy is withdrawn, the workflow ends) or 16 (refused: it goes on).
Sources: ../shared/edxml-spec.md §4.2, QĐ 28/2018 Art. 9, NĐ 30/2020 Art. 18 and 21.
"""

from __future__ import annotations

from gateway.errors import IllegalTransition, InvalidStatus

STATUS_NAMES: dict[str, str] = {
    "01": "arrived",
    "02": "rejected",
    "03": "accepted",
    "04": "assigned",
    "05": "in progress",
    "06": "completed",
    "13": "recall requested",
    "15": "recall agreed",
    "16": "recall refused",
}

PROCESSING_CODES = ("01", "02", "03", "04", "05", "06")
RECALL_REQUEST = "13"
RECALL_ANSWERS = ("15", "16")
_RANK = {None: 0, "01": 1, "03": 2, "04": 3, "05": 4, "06": 5}
_FINAL = {"02": "rejected (02)", "06": "completed (06)"}


def status_name(code: str) -> str:
    """Human name of a status code, for histories and faults."""
    return STATUS_NAMES.get(code, "unknown")


def check_known(code: str) -> None:
    """Refuse codes outside the QCVN 102 list before anything else looks at them."""
    if code not in STATUS_NAMES:
        known = ", ".join(STATUS_NAMES)
        raise InvalidStatus(f"Status code '{code}' is not a QCVN 102 status code; use one of {known}.")


def check_recipient_transition(current: str | None, new: str, recalled: bool) -> None:
    """Raise IllegalTransition unless a recipient may move its copy from ``current`` to ``new``.

    ``current`` is the last processing code (None before the document was fetched);
    ``recalled`` is true once the recipient agreed (15) to a recall.
    """
    if recalled:
        raise IllegalTransition(
            "This document was recalled by its sender and you agreed (15); its processing has ended."
        )
    if current in _FINAL:
        raise IllegalTransition(
            f"The document is already {_FINAL[current]}; status {new} ({status_name(new)}) "
            "can no longer be reported."
        )
    if new == "02":
        if current not in (None, "01"):
            raise IllegalTransition(
                f"A document can only be rejected (02) before it is accepted; it is already "
                f"{status_name(current or '')} ({current})."
            )
        return
    if new == "01":
        if current is not None:
            raise IllegalTransition(f"Arrival (01) is already recorded; the document is {status_name(current)}.")
        return
    if current is None:
        raise IllegalTransition(
            f"Fetch the document (getDocument) before reporting {new} ({status_name(new)})."
        )
    if new == current == "05":
        return
    if _RANK[new] <= _RANK[current]:
        raise IllegalTransition(
            f"Status cannot go back from {current} ({status_name(current)}) to {new} ({status_name(new)})."
        )
