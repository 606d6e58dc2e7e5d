"""The status workflow as a table: every (current status, recall state, new code) and what it gives.

Pure rules, no database: the whole table runs in milliseconds. Each cell names the rule that
refuses (the reason class) or ``ok``; the table is written out by hand from the README's
"Status workflow", not computed from the code under test.
"""

from __future__ import annotations

import pytest

from gateway.errors import Forbidden, IllegalTransition, InvalidStatus
from gateway.exchange import workflow
from gateway.exchange.workflow import Refusal, Status

CODES = ("01", "02", "03", "04", "05", "06", "13", "15", "16")
R = {
    "ok": None,
    "AT": Refusal.ARRIVED_TWICE,
    "RA": Refusal.REJECT_AFTER_ACCEPT,
    "NF": Refusal.NOT_FETCHED,
    "BW": Refusal.BACKWARDS,
    "FI": Refusal.FINAL,
    "SO": Refusal.SENDER_ONLY,
    "NR": Refusal.NO_RECALL_PENDING,
    "RG": Refusal.RECALL_AGREED,
}

# A recipient reporting ``new`` (columns) about its copy whose processing status is the row's key.
#                new:  01    02    03    04    05    06    13    15    16
NO_RECALL = {
    None: "             ok    ok    NF    NF    NF    NF    SO    NR    NR",
    "01": "             AT    ok    ok    ok    ok    ok    SO    NR    NR",
    "02": "             FI    FI    FI    FI    FI    FI    SO    NR    NR",
    "03": "             AT    RA    BW    ok    ok    ok    SO    NR    NR",
    "04": "             AT    RA    BW    BW    ok    ok    SO    NR    NR",
    "05": "             AT    RA    BW    BW    ok    ok    SO    NR    NR",
    "06": "             FI    FI    FI    FI    FI    FI    SO    NR    NR",
}
# The sender asked to take the document back (13) and awaits 15/16: processing may go on meanwhile.
RECALL_PENDING = {
    None: "             ok    ok    NF    NF    NF    NF    SO    ok    ok",
    "01": "             AT    ok    ok    ok    ok    ok    SO    ok    ok",
    "02": "             FI    FI    FI    FI    FI    FI    SO    ok    ok",
    "03": "             AT    RA    BW    ok    ok    ok    SO    ok    ok",
    "04": "             AT    RA    BW    BW    ok    ok    SO    ok    ok",
    "05": "             AT    RA    BW    BW    ok    ok    SO    ok    ok",
    "06": "             FI    FI    FI    FI    FI    FI    SO    ok    ok",
}
# The recipient agreed (15): its copy's processing has ended, and a recall is answered once.
RECALL_AGREED = {current: "       RG    RG    RG    RG    RG    RG    SO    NR    NR" for current in NO_RECALL}
# The recipient refused (16): processing goes on as if never asked, and a recall is answered once.
RECALL_REFUSED = NO_RECALL

TABLES = {None: NO_RECALL, "13": RECALL_PENDING, "15": RECALL_AGREED, "16": RECALL_REFUSED}
CELLS = [
    (recall, current, new, R[expected])
    for recall, table in TABLES.items()
    for current, row in table.items()
    for new, expected in zip(CODES, row.split(), strict=True)
]


def _status(code: str | None) -> Status | None:
    return Status(code) if code is not None else None


def test_the_table_covers_every_pair() -> None:
    processing = [None, "01", "02", "03", "04", "05", "06"]
    assert len(CELLS) == len(TABLES) * len(processing) * len(CODES) == 252
    assert {(r, c, n) for r, c, n, _ in CELLS} == {(r, c, n) for r in TABLES for c in processing for n in CODES}


@pytest.mark.parametrize(
    ("recall", "current", "new", "expected"),
    CELLS,
    ids=[f"recall{r or '-'}:{c or 'none'}->{n}" for r, c, n, _ in CELLS],
)
def test_recipient_transition(recall: str | None, current: str | None, new: str, expected: Refusal | None) -> None:
    assert workflow.refusal(_status(current), _status(recall), Status(new)) is expected
    if expected is None:
        workflow.check_transition(_status(current), _status(recall), Status(new))
    else:
        with pytest.raises(expected.error) as refused:
            workflow.check_transition(_status(current), _status(recall), Status(new))
        assert new in refused.value.message or expected in (Refusal.SENDER_ONLY, Refusal.RECALL_AGREED)


@pytest.mark.parametrize("new", CODES)
def test_the_sender_may_only_recall(new: str) -> None:
    expected = None if new == "13" else Refusal.RECIPIENT_ONLY
    assert workflow.refusal(None, None, Status(new), sender=True) is expected


def test_the_rules_that_used_to_go_unexercised() -> None:
    """02 after 03, 01 twice, 05 repeated, moving backwards: each with the message a clerk reads."""
    with pytest.raises(IllegalTransition, match=r"only be rejected \(02\) before it is accepted.*accepted \(03\)"):
        workflow.check_transition(Status.ACCEPTED, None, Status.REJECTED)
    with pytest.raises(IllegalTransition, match=r"Arrival \(01\) is already recorded"):
        workflow.check_transition(Status.ARRIVED, None, Status.ARRIVED)
    workflow.check_transition(Status.IN_PROGRESS, None, Status.IN_PROGRESS)
    with pytest.raises(IllegalTransition, match=r"cannot go back from in progress \(05\) to 04"):
        workflow.check_transition(Status.IN_PROGRESS, None, Status.ASSIGNED)


def test_role_rules_are_forbidden_and_workflow_rules_illegal() -> None:
    assert {r for r in Refusal if r.error is Forbidden} == {Refusal.SENDER_ONLY, Refusal.RECIPIENT_ONLY}
    assert all(r.error is IllegalTransition for r in Refusal if r.error is not Forbidden)


@pytest.mark.parametrize("code", ["99", "", None, "1", " 03 "])
def test_parse(code: str | None) -> None:
    if code == " 03 ":
        assert workflow.parse(code) is Status.ACCEPTED
        return
    with pytest.raises(InvalidStatus, match="01, 02, 03, 04, 05, 06, 13, 15, 16"):
        workflow.parse(code)


@pytest.mark.parametrize("code", list(Status))
def test_which_codes_need_a_reason(code: Status) -> None:
    if code in (Status.REJECTED, Status.RECALL_REFUSED):
        with pytest.raises(InvalidStatus, match="reason"):
            workflow.check_reason(code, None)
    else:
        workflow.check_reason(code, None)
    workflow.check_reason(code, "Sai thẩm quyền")


def test_status_names_are_for_humans() -> None:
    assert Status.IN_PROGRESS.label == "in progress" and workflow.status_name("05") == "in progress"
    assert workflow.status_name("99") == "unknown"
    assert set(workflow.STATUS_NAMES) == set(CODES)
