"""``/leadership``: the leadership's view as one page, its trend chart drawn on the server as SVG.

No script, no external font or stylesheet: the chart is inline SVG with presentation attributes,
so the page passes the same strict Content-Security-Policy as the dashboard. Behind the operator
login; ``?from=YYYY-MM-DD&to=YYYY-MM-DD`` chooses the period (default: the last 30 Vietnam days).
"""

from __future__ import annotations

import html
import logging
import urllib.parse
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from gateway.exchange.workflow import STATUS_NAMES
from gateway.leadership import TREND_CODES, Handling, LeadershipView, TrendDay, leadership_view
from gateway.reports import LEVEL_NAMES, VIETNAM_TIME
from gateway.store.database import Database
from gateway.web.pages import refuse_unless_operator, reply_html, reply_text, security_headers

log = logging.getLogger("gateway.web")
StartResponse = Callable[..., Any]
MAX_DAYS = 366
AGENCY_ROWS = 500

STYLE = """
body { font: 14px/1.4 system-ui, "Segoe UI", "Noto Sans", Arial, sans-serif; margin: 0; color: #1d2733;
       background: #f4f6f8; }
header { background: #8b1c1c; color: #fff; padding: 14px 24px; }
header h1 { margin: 0; font-size: 20px; } header p { margin: 4px 0 0; opacity: .85; }
main { padding: 16px 24px 40px; }
section { background: #fff; border: 1px solid #d8dee4; border-radius: 6px; padding: 12px 16px; margin: 0 0 16px; }
h2 { font-size: 16px; margin: 0 0 10px; color: #8b1c1c; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #e6eaee; }
th { background: #eef1f4; } td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
.alert { color: #b3261e; font-weight: 700; } .more { color: #5b6773; font-style: italic; }
"""
_HEADERS = security_headers(STYLE)
SERIES_COLOURS = {"01": "#5b6773", "02": "#b3261e", "03": "#1f6fb2", "04": "#8a5a00", "05": "#7b3fa0", "06": "#1e6b34"}


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.0f}%"


def _hours(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f} h"


def _cells(h: Handling) -> str:
    overdue = f'<td class="n alert">{h.overdue}</td>' if h.overdue else f'<td class="n">{h.overdue}</td>'
    return (
        f'<td class="n">{h.received}</td><td class="n">{_share(h.completed_share)}</td>'
        f'<td class="n">{_share(h.on_time_share)}</td><td class="n">{_hours(h.median_hours_to_acceptance)}</td>'
        f'<td class="n">{_hours(h.median_hours_to_completion)}</td>{overdue}'
    )


_HEAD = (
    '<th class="n">received</th><th class="n">completed</th><th class="n">completed by DueDate</th>'
    '<th class="n">arrival → acceptance (median)</th><th class="n">arrival → completion (median)</th>'
    '<th class="n">overdue now</th>'
)


def trend_svg(days: list[TrendDay], width: int = 960, height: int = 280) -> str:
    """Documents sent per day as bars, statuses per day as lines; axis and legend as SVG text."""
    left, right, top, bottom = 48, 150, 16, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max([1, *(d.documents for d in days), *(max(d.statuses.values(), default=0) for d in days)])
    step = plot_w / max(len(days), 1)

    def y(value: int) -> float:
        return top + plot_h - value / peak * plot_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="trend" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="Documents and statuses per day">',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#1d2733"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#1d2733"/>',
        f'<text x="{left - 6}" y="{top + 4}" text-anchor="end" font-size="11" font-family="sans-serif">{peak}</text>',
        f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end" font-size="11" font-family="sans-serif">0</text>',
    ]
    for index, day in enumerate(days):
        x = left + index * step
        bar = day.documents / peak * plot_h
        parts.append(
            f'<rect class="documents" x="{x + step * 0.15:.1f}" y="{top + plot_h - bar:.1f}" '
            f'width="{step * 0.7:.1f}" height="{bar:.1f}" fill="#e8c4c4"><title>{day.day}: {day.documents} '
            f"documents</title></rect>"
        )
        if len(days) <= 31 or index % max(len(days) // 15, 1) == 0:
            parts.append(
                f'<text x="{x + step / 2:.1f}" y="{height - 18}" text-anchor="middle" font-size="10" '
                f'font-family="sans-serif">{day.day:%d/%m}</text>'
            )
    for rank, code in enumerate(TREND_CODES):
        points = " ".join(
            f"{left + i * step + step / 2:.1f},{y(d.statuses.get(code, 0)):.1f}" for i, d in enumerate(days)
        )
        colour = SERIES_COLOURS[code]
        parts.append(
            f'<polyline class="status-{code}" points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>'
        )
        legend_y = top + 14 + rank * 18
        parts.append(
            f'<line x1="{width - right + 12}" y1="{legend_y - 4}" x2="{width - right + 30}" y2="{legend_y - 4}" '
            f'stroke="{colour}" stroke-width="3"/><text x="{width - right + 36}" y="{legend_y}" font-size="11" '
            f'font-family="sans-serif">{code} {STATUS_NAMES[code]}</text>'
        )
    legend_y = top + 14 + len(TREND_CODES) * 18
    parts.append(
        f'<rect x="{width - right + 12}" y="{legend_y - 10}" width="18" height="10" fill="#e8c4c4"/>'
        f'<text x="{width - right + 36}" y="{legend_y}" font-size="11" font-family="sans-serif">documents sent</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def render(view: LeadershipView) -> str:
    """The whole page."""
    levels = (
        "".join(
            f'<tr data-level="{level}"><td>{_e(LEVEL_NAMES.get(level, level))}</td>{_cells(h)}</tr>'
            for level, h in view.levels.items()
        )
        or '<tr><td colspan="7">No document in this period.</td></tr>'
    )
    shown = view.agencies[:AGENCY_ROWS]
    agencies = "".join(
        f'<tr data-agency="{_e(a.code)}"><td><code>{_e(a.code)}</code> {_e(a.name)}</td><td>{a.level}</td>'
        f"{_cells(a.handling)}</tr>"
        for a in shown
    )
    more = (
        f'<p class="more">{len(view.agencies) - len(shown)} more agencies not shown (the CSV has all).</p>'
        if len(view.agencies) > len(shown)
        else ""
    )
    body = (
        f"<section><h2>By level</h2><table><tr><th>level</th>{_HEAD}</tr>{levels}</table></section>"
        f"<section><h2>Documents and statuses per day</h2>{trend_svg(view.trend)}</section>"
        f"<section><h2>By agency</h2><table><tr><th>agency</th><th>level</th>{_HEAD}</tr>{agencies}</table>"
        f"{more}</section>"
    )
    title = "How agencies handle the documents they receive"
    period = (
        f"Documents sent {view.first:%d/%m/%Y} – {view.last:%d/%m/%Y} (Vietnam time); overdue as of "
        f"{view.at.astimezone(VIETNAM_TIME):%d/%m/%Y %H:%M}"
    )
    return (
        f'<!DOCTYPE html><html lang="vi"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f"<style>{STYLE}</style></head><body><header><h1>{_e(title)}</h1><p>{_e(period)}</p></header>"
        f"<main>{body}</main></body></html>"
    )


def period(query: str, today: date) -> tuple[date, date]:
    """``from``/``to`` of the query string, or the last 30 days; at most :data:`MAX_DAYS` days."""
    values = urllib.parse.parse_qs(query)
    try:
        last = date.fromisoformat(values["to"][0]) if "to" in values else today
        first = date.fromisoformat(values["from"][0]) if "from" in values else last - timedelta(days=29)
    except ValueError as error:
        raise ValueError(f"dates are written YYYY-MM-DD ({error})") from None
    if first > last or (last - first).days >= MAX_DAYS:
        raise ValueError(f"choose a period of 1 to {MAX_DAYS} days, 'from' before 'to'")
    return first, last


class LeadershipPage:
    """WSGI callable for ``/leadership``."""

    def __init__(self, db: Database, password: str, clock: Callable[[], datetime] | None = None) -> None:
        self.db = db
        self.password = password
        self.clock = clock or (lambda: datetime.now(UTC))

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        refusal = refuse_unless_operator(environ, start_response, self.password, _HEADERS)
        if refusal is not None:
            return refusal
        now = self.clock()
        try:
            first, last = period(environ.get("QUERY_STRING", ""), now.astimezone(VIETNAM_TIME).date())
        except ValueError as error:
            return reply_text(start_response, "400 Bad Request", str(error), _HEADERS)
        try:
            with self.db.transaction(readonly=True) as session:
                page = render(leadership_view(session, first, last, now))
        except Exception:
            log.exception("leadership page failed")
            return reply_text(
                start_response, "503 Service Unavailable", "The store could not be read; retry.", _HEADERS
            )
        return reply_html(start_response, page, _HEADERS)
