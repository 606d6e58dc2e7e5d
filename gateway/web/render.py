"""The dashboard as one server-rendered HTML page, built from an :class:`~gateway.web.queries.Overview`.

Hand-written rendering keeps the page free of a template dependency; every value from the store
goes through :func:`_e` (``html.escape``), because agency names and subjects come from the
directory and from senders' edXML. The stylesheet is inline so the page is one request, and its
hash is published for the Content-Security-Policy so nothing else can style or script the page.
"""

from __future__ import annotations

import base64
import hashlib
import html
from collections.abc import Iterable
from datetime import date, datetime

from gateway import reports
from gateway.exchange.workflow import STATUS_NAMES
from gateway.web.queries import Bounded, FlightDocument, LevelGrades, Overview, Queues, RecipientRow

STYLE = """
body { font: 14px/1.4 system-ui, "Segoe UI", "Noto Sans", Arial, sans-serif; margin: 0; color: #1d2733;
       background: #f4f6f8; }
header { background: #8b1c1c; color: #fff; padding: 14px 24px; }
header h1 { margin: 0; font-size: 20px; }
header p { margin: 4px 0 0; opacity: .85; }
main { padding: 16px 24px 40px; }
section { background: #fff; border: 1px solid #d8dee4; border-radius: 6px; padding: 12px 16px; margin: 0 0 16px; }
h2 { font-size: 16px; margin: 0 0 10px; color: #8b1c1c; }
h3 { font-size: 14px; margin: 12px 0 6px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #e6eaee; vertical-align: top; }
th { background: #eef1f4; font-weight: 600; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 0 0 16px; }
.card { background: #fff; border: 1px solid #d8dee4; border-radius: 6px; padding: 10px 16px; min-width: 150px; }
.card .v { font-size: 26px; font-weight: 700; }
.card.alert .v { color: #b3261e; }
.chip { display: inline-block; border-radius: 10px; padding: 0 8px; font-size: 12px; background: #e6eaee;
        white-space: nowrap; }
.g-not-connected { background: #f8d7d5; } .g-connected { background: #fde9c8; }
.g-sends-and-receives { background: #dbe9fb; } .g-reports { background: #d4f0dc; }
.sandbox { background: #e4dcf5; }
.s-none { background: #fde9c8; } .s-final { background: #d4f0dc; } .s-02 { background: #f8d7d5; }
.more { color: #5b6773; font-style: italic; margin: 6px 0 0; }
.muted { color: #5b6773; }
code { font-size: 12px; }
.d { white-space: nowrap; }
"""
STYLE_HASH = "sha256-" + base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
"""The CSP source that allows exactly the inline stylesheet above."""

_GRADE_CLASS = {
    reports.NOT_CONNECTED: "g-not-connected",
    reports.CONNECTED: "g-connected",
    reports.SENDS_AND_RECEIVES: "g-sends-and-receives",
    reports.REPORTS_STATUS: "g-reports",
}


def _e(value: object) -> str:
    """Escape ``value`` for HTML text and attribute values."""
    return html.escape("" if value is None else str(value), quote=True)


def when(moment: datetime | None) -> str:
    """A moment in Vietnam time, the clock the agencies work by."""
    if moment is None:
        return "—"
    return moment.astimezone(reports.VIETNAM_TIME).strftime("%Y-%m-%d %H:%M") + " ICT"


def _day(day: date | None) -> str:
    return "—" if day is None else f'<span class="d">{day.isoformat()}</span>'


def _status(code: str | None) -> str:
    if code is None:
        return '<span class="chip s-none">not fetched</span>'
    kind = "s-final" if code == "06" else f"s-{_e(code)}"
    return f'<span class="chip {kind}">{_e(code)} {_e(STATUS_NAMES.get(code, "unknown"))}</span>'


def _table(headers: Iterable[str], rows: Iterable[str], numeric: Iterable[int] = ()) -> str:
    numeric = set(numeric)
    head = "".join(f"<th{' class=n' if i in numeric else ''}>{_e(h)}</th>" for i, h in enumerate(headers))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _more(bounded: Bounded[object], what: str) -> str:
    if bounded.more <= 0:
        return ""
    return f'<p class="more" data-more="{bounded.more}">{bounded.more} more {_e(what)} not shown</p>'


def _card(ident: str, label: str, value: int, alert: bool = False) -> str:
    css = "card alert" if alert and value else "card"
    return f'<div class="{css}"><div class="v" id="{ident}">{value}</div><div>{_e(label)}</div></div>'


SANDBOX_MARK = "sandbox: test agency, not counted"


def _agency(code: str, name: str | None, sandboxes: frozenset[str] = frozenset()) -> str:
    """An agency's code and name; the sandbox of certification runs carries a mark no one can miss."""
    shown = f' <span lang="vi">{_e(name)}</span>' if name else ""
    mark = (
        f' <span class="chip sandbox" data-sandbox="{_e(code)}">{_e(SANDBOX_MARK)}</span>' if code in sandboxes else ""
    )
    return f"<code>{_e(code)}</code>{shown}{mark}"


def _grades(levels: list[LevelGrades]) -> str:
    headers = ["Level", *reports.GRADES, "Agencies"]
    rows = []
    for level in levels:
        cells = "".join(
            f'<td class="n" data-level="{level.level}" data-grade="{_e(g)}">{level.counts.get(g, 0)}</td>'
            for g in reports.GRADES
        )
        label = reports.LEVEL_NAMES.get(level.level, "")
        rows.append(f"<tr><td>{level.level} {_e(label)}</td>{cells}<td class=n>{level.agencies.total}</td></tr>")
    parts = [_table(headers, rows, numeric=range(1, len(headers)))]
    for level in levels:
        listing = [
            f'<tr data-agency="{_e(a.code)}"><td>{_agency(a.code, a.name)}{"" if a.active else " (disabled)"}</td>'
            f'<td><span class="chip {_GRADE_CLASS[a.grade]}" data-grade="{_e(a.grade)}">{_e(a.grade)}</span></td>'
            f"<td>{'yes' if a.sends else 'no'}</td><td>{'yes' if a.receives else 'no'}</td>"
            f"<td>{'yes' if a.reports_status else 'no'}</td></tr>"
            for a in level.agencies.items
        ]
        title = f"Level {level.level} {reports.LEVEL_NAMES.get(level.level, '')}".strip()
        parts.append(f"<h3>{_e(title)}</h3>")
        parts.append(_table(["Agency", "Grade", "Sends", "Receives", "Reports status"], listing))
        parts.append(_more(level.agencies, "agencies"))
    return "".join(parts)


def _recipient(row: RecipientRow, sandboxes: frozenset[str]) -> str:
    if row.delivery_state == "acked":
        queue = f"acknowledged {when(row.acked_at)}"
    elif row.delivery_state == "pending":
        queue = f"waiting in queue, leased {row.attempts}×" if row.attempts else "waiting in queue"
    else:
        queue = row.delivery_state or "—"
    recall = f' <span class="chip">recall {_e(row.recall_state)}</span>' if row.recall_state else ""
    return (
        f'<tr data-recipient="{_e(row.code)}" data-status="{_e(row.status or "")}">'
        f"<td>{_agency(row.code, row.name, sandboxes)}</td><td>{_status(row.status)}{recall}</td>"
        f"<td>{when(row.status_at)}</td><td>{_e(queue)}</td></tr>"
    )


def _flight_document(document: FlightDocument, sandboxes: frozenset[str]) -> str:
    rows = (_recipient(r, sandboxes) for r in document.recipients.items)
    recipients = _table(["Recipient", "Status", "Since", "Queue item"], rows)
    return (
        f'<tr data-document="{_e(document.document_id)}"><td><b>{_e(document.code)}</b><br>'
        f'<span lang="vi">{_e(document.subject)}</span></td>'
        f"<td>{_agency(document.sender_code, document.sender_name, sandboxes)}</td><td>{when(document.sent_at)}</td>"
        f"<td>{_day(document.due_date)}</td><td>{recipients}{_more(document.recipients, 'recipients')}</td></tr>"
    )


def _in_flight(overview: Overview) -> str:
    flight = overview.in_flight
    if not flight.documents.items:
        return '<p class="muted">No document is in flight.</p>'
    rows = (_flight_document(d, overview.sandboxes) for d in flight.documents.items)
    table = _table(["Document", "Sender", "Sent", "Due", "Recipients"], rows)
    return table + _more(flight.documents, "documents")


def _overdue(overview: Overview) -> str:
    if not overview.overdue.items:
        return '<p class="muted">Nothing is overdue.</p>'
    names = overview.names
    rows = (
        f'<tr data-overdue="{_e(c.document_id)}:{_e(c.recipient_code)}"><td><b>{_e(c.code)}</b><br>'
        f'<span lang="vi">{_e(c.subject)}</span></td>'
        f"<td>{_agency(c.sender_code, names.get(c.sender_code), overview.sandboxes)}</td>"
        f"<td>{_agency(c.recipient_code, names.get(c.recipient_code), overview.sandboxes)}</td>"
        f"<td>{_status(c.status)}</td><td>{_day(c.due_date)}</td>"
        f"<td>{when(c.unacknowledged_since) if c.unacknowledged_since else '—'}</td>"
        f"<td>{_e(', '.join(c.reasons))}</td></tr>"
        for c in overview.overdue.items
    )
    headers = ["Document", "Sender", "Recipient", "Status", "Due", "Queued, not acknowledged since", "Why"]
    return _table(headers, rows) + _more(overview.overdue, "overdue copies")


def _failed(overview: Overview) -> str:
    if not overview.failed.items:
        return '<p class="muted">No failed delivery.</p>'
    rows = (
        f'<tr data-failed="{_e(f.item_id)}">'
        f"<td>{_agency(f.agency_code, overview.names.get(f.agency_code), overview.sandboxes)}</td>"
        f"<td>{_e(f.kind)}</td><td><code>{_e(f.edxml_document_id)}</code></td><td>{_e(f.state)}</td>"
        f"<td class=n>{f.attempts}</td><td>{when(f.created_at)}</td><td>{_e(f.reason)}</td></tr>"
        for f in overview.failed.items
    )
    headers = ["Agency", "Kind", "edXML DocumentId", "State", "Leases", "Queued", "Why"]
    return _table(headers, rows, numeric=[4]) + _more(overview.failed, "failed deliveries")


def _queues(queues: Queues, sandboxes: frozenset[str]) -> str:
    if not queues.deepest.items:
        return '<p class="muted">Every queue is empty.</p>'
    rows = (
        f'<tr data-queue="{_e(q.code)}"><td>{_agency(q.code, q.name, sandboxes)}</td><td class=n>{q.pending}</td>'
        f"<td class=n>{q.leased}</td><td>{when(q.oldest)}</td></tr>"
        for q in queues.deepest.items
    )
    table = _table(["Agency", "Pending items", "Leased now", "Oldest item"], rows, numeric=[1, 2])
    return table + _more(queues.deepest, "agencies with pending items")


def _statuses(statuses: dict[str | None, int]) -> str:
    order = [None, *STATUS_NAMES]
    rows = (
        f'<tr><td>{_status(code)}</td><td class=n data-status-count="{_e(code or "none")}">{statuses[code]}</td></tr>'
        for code in order
        if statuses.get(code)
    )
    return _table(["Current status", "Copies"], rows, numeric=[1])


def _relay(overview: Overview, requeue_token: str | None = None) -> str:
    relay = overview.relay
    if relay is None:
        return '<p class="muted">No relay data.</p>'
    homes = ", ".join(f"{_e(home)}: {count}" for home, count in sorted(relay.homes.items()))
    parts = [f"<p>Agencies by home instance: {homes or 'none'}</p>"]
    if relay.hops:
        rows = (
            f'<tr data-hop="{_e(h.next_hop)}"><td>{_e(h.next_hop)}</td><td class=n>{h.waiting}</td>'
            f"<td class=n>{h.sending}</td><td class=n>{h.failed}</td><td class=n>{h.delivered}</td>"
            f"<td class=n>{h.oldest_waiting_seconds:.0f}</td></tr>"
            for h in relay.hops
        )
        headers = ["Next hop", "Waiting", "In flight", "Failed", "Delivered", "Oldest waiting (s)"]
        parts.append(_table(headers, rows, numeric=[1, 2, 3, 4, 5]))
    else:
        parts.append('<p class="muted">Nothing was ever relayed from this instance.</p>')
    if relay.failed:
        rows = (
            f'<tr data-consignment="{_e(c.id)}"><td><code>{_e(c.id)}</code></td><td>{_e(c.next_hop)}</td>'
            f"<td>{_e(c.kind)}</td><td class=n>{c.attempts}</td><td>{when(c.created_at)}</td>"
            f"<td>{_e(c.last_error or '')}</td><td>{_requeue_form(c.id, requeue_token)}</td></tr>"
            for c in relay.failed
        )
        headers = ["Failed consignment", "Next hop", "Kind", "Attempts", "Created", "Last error", ""]
        parts.append(_table(headers, rows, [3]))
        parts.append('<p class="muted">Or from the command line: <code>edxml-gateway relay requeue ID</code>.</p>')
    return "".join(parts)


def _requeue_form(consignment_id: str, token: str | None) -> str:
    """A button that puts a failed consignment back in line (POST /relay-requeue, audited)."""
    if token is None:
        return ""
    return (
        f'<form method="post" action="/relay-requeue"><input type="hidden" name="consignment" '
        f'value="{_e(consignment_id)}"><input type="hidden" name="token" value="{_e(token)}">'
        f'<button type="submit">Requeue</button></form>'
    )


def render(overview: Overview, requeue_token: str | None = None) -> str:
    """The whole page for ``overview``; ``requeue_token`` enables the requeue buttons of failed consignments."""
    flight = overview.in_flight
    cards = "".join(
        (
            _card("in-flight-documents", "documents in flight", flight.documents.total),
            _card("in-flight-copies", "recipient copies in flight", flight.copies),
            _card("overdue-total", "overdue copies", overview.overdue.total, alert=True),
            _card("failed-total", "failed deliveries", overview.failed.total, alert=True),
            _card("queue-total", "pending queue items", overview.queues.pending),
            _card("queue-agencies", "agencies with pending items", overview.queues.deepest.total),
        )
    )
    sections = (
        ("grades", "Agencies by level and connection grade", _grades(overview.levels)),
        ("in-flight", "Documents in flight (oldest first)", _in_flight(overview)),
        (
            "overdue",
            f"Overdue: past due date, or not acknowledged within {overview.ack_overdue_hours} h",
            _overdue(overview),
        ),
        ("failed", "Failed deliveries: withdrawn, or leased repeatedly and never acknowledged", _failed(overview)),
        ("queues", "Queue depth per agency (deepest first)", _queues(overview.queues, overview.sandboxes)),
        ("statuses", "Recipient copies by current status", _statuses(overview.statuses)),
        ("relay", "Relay to other gateway instances", _relay(overview, requeue_token)),
    )
    body = "".join(
        f'<section id="{ident}"><h2>{_e(title)}</h2>{content}</section>' for ident, title, content in sections
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta http-equiv="refresh" content="60">'
        f"<title>edxml-gateway monitoring</title><style>{STYLE}</style></head><body>"
        "<header><h1>edxml-gateway — document exchange monitoring</h1>"
        f'<p>As of <span id="as-of">{when(overview.now)}</span>; refreshes every minute</p></header>'
        f'<main><div class="cards">{cards}</div>{body}</main></body></html>'
    )
