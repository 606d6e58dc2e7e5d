"""``/certification``: the operator's page of certification runs and the printable certificate.

``GET /certification`` lists the runs and offers a form to start one; ``POST`` starts it (same
origin only, with a token bound to the operator password, because a browser sends Basic
credentials to any page that asks); ``GET /certification?run=ID`` is the certificate of one run,
laid out to be printed. Behind the same operator login as ``/dashboard``.
"""

from __future__ import annotations

import html
import logging
import urllib.parse
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from gateway.certification import Certifications, RunView
from gateway.errors import GatewayError
from gateway.web.pages import (
    FormRefused,
    form_token,
    read_form,
    refuse_unless_operator,
    reply_html,
    reply_text,
    security_headers,
)

log = logging.getLogger("gateway.web")
StartResponse = Callable[..., Any]
START_PURPOSE = b"certification-start"

STYLE = """
body { font: 14px/1.45 system-ui, "Segoe UI", "Noto Sans", Arial, sans-serif; margin: 0; color: #1d2733;
       background: #f4f6f8; }
header { background: #8b1c1c; color: #fff; padding: 14px 24px; }
header h1 { margin: 0; font-size: 20px; }
main { padding: 16px 24px 40px; max-width: 1100px; }
section { background: #fff; border: 1px solid #d8dee4; border-radius: 6px; padding: 14px 18px; margin: 0 0 16px; }
h2 { font-size: 16px; margin: 0 0 10px; color: #8b1c1c; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid #e6eaee; vertical-align: top; }
th { background: #eef1f4; }
.grade { font-size: 22px; font-weight: 700; }
.passed { color: #1e6b34; font-weight: 600; } .failed { color: #b3261e; font-weight: 600; }
.pending, .skipped { color: #8a5a00; font-weight: 600; }
.ev { font-size: 12px; color: #5b6773; word-break: break-all; }
.seal { border: 3px double #8b1c1c; padding: 12px 18px; display: inline-block; }
@media print { header { background: none; color: #000; border-bottom: 2px solid #000; } body { background: #fff; }
  section { border: none; } form { display: none; } }
"""
_HEADERS = security_headers(STYLE, form_action=True)


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _when(moment: datetime | None) -> str:
    return "" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html><html lang="vi"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f"<style>{STYLE}</style></head><body><header><h1>{_e(title)}</h1></header><main>{body}</main></body></html>"
    )


def render_certificate(run: RunView) -> str:
    """The printable certificate of one run: grade, every check with its evidence, the faults."""
    rows = "".join(
        f'<tr><td><code>{_e(c.key)}</code></td><td>{_e(c.title)}</td><td class="{_e(c.state)}">{_e(c.state)}</td>'
        f"<td>{_e(_when(c.decided_at))}</td><td class=ev>{_e(_evidence(c.evidence))}</td></tr>"
        for c in run.checks
    )
    faults = (
        "".join(
            f"<tr><td>{_e(_when(f.at))}</td><td>{_e(f.operation)}</td><td><code>{_e(f.code)}</code></td>"
            f"<td>{_e(f.message)}</td></tr>"
            for f in run.faults
        )
        or '<tr><td colspan="4">No fault provoked.</td></tr>'
    )
    state = "in progress (provisional grade)" if run.active else f"ended {_when(run.finished_at)}"
    body = (
        f'<section><p class="seal">Agency <b id="agency">{_e(run.agency_code)}</b> — {_e(run.agency_name)}<br>'
        f'Grade: <span class="grade" id="grade">{_e(run.grade)}</span></p>'
        f"<p>Run <code>{_e(run.run_id)}</code>, started by {_e(run.started_by)} {_e(_when(run.started_at))}, "
        f"deadline {_e(_when(run.deadline))}, {_e(state)}.</p></section>"
        f"<section><h2>Checks</h2><table><tr><th>check</th><th>what</th><th>result</th><th>decided</th>"
        f"<th>evidence</th></tr>{rows}</table></section>"
        f"<section><h2>Faults provoked during the run</h2><table><tr><th>time</th><th>operation</th><th>code</th>"
        f"<th>message</th></tr>{faults}</table></section>"
    )
    return _page(f"Interconnection certificate — {run.agency_code}", body)


def _evidence(evidence: dict[str, Any]) -> str:
    return "; ".join(f"{key}: {value}" for key, value in evidence.items())


def render_runs(runs: list[RunView], token: str, message: str = "") -> str:
    """The list of runs with a form to start one."""
    rows = (
        "".join(
            f'<tr><td><a href="?run={_e(r.run_id)}">{_e(r.run_id)}</a></td><td>{_e(r.agency_code)}</td>'
            f"<td>{_e(_when(r.started_at))}</td><td>{'active' if r.active else 'finished'}</td>"
            f"<td>{_e(r.grade)}</td></tr>"
            for r in runs
        )
        or '<tr><td colspan="5">No run yet.</td></tr>'
    )
    notice = f"<p><b>{_e(message)}</b></p>" if message else ""
    body = (
        f'<section><h2>Start a run</h2>{notice}<form method="post"><input type="hidden" name="token" '
        f'value="{_e(token)}"><label>Agency code <input name="agency" required pattern="[0-9A-Z.]{{5,35}}"></label> '
        f'<label>minutes <input name="minutes" type="number" min="1" max="1440" value="120"></label> '
        f'<button type="submit">Start</button></form></section>'
        f"<section><h2>Runs</h2><table><tr><th>run</th><th>agency</th><th>started</th><th>state</th><th>grade</th></tr>"
        f"{rows}</table></section>"
    )
    return _page("Certification runs", body)


class CertificationPages:
    """WSGI callable for ``/certification`` (operator login as for the dashboard)."""

    def __init__(self, certifications: Certifications, password: str) -> None:
        self.certifications = certifications
        self.password = password

    def token(self) -> str:
        return form_token(self.password, START_PURPOSE)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        refusal = refuse_unless_operator(environ, start_response, self.password, _HEADERS)
        if refusal is not None:
            return refusal
        method = environ.get("REQUEST_METHOD", "GET")
        try:
            if method == "POST":
                return self._start(environ, start_response)
            if method not in ("GET", "HEAD"):
                return reply_text(
                    start_response, "405 Method Not Allowed", "GET or POST.", [("Allow", "GET, POST")], _HEADERS
                )
            query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
            run_id = query.get("run", [""])[0]
            page = (
                render_certificate(self.certifications.view(run_id))
                if run_id
                else render_runs(self.certifications.runs(), self.token())
            )
        except GatewayError as error:
            return reply_text(start_response, "404 Not Found", error.message, _HEADERS)
        return reply_html(start_response, page, _HEADERS, method == "HEAD")

    def _start(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            form = read_form(environ, self.password, START_PURPOSE, "Start runs from this gateway's own page.")
        except FormRefused as refused:
            return reply_text(start_response, refused.status, refused.message, _HEADERS)
        agency = form.get("agency", [""])[0].strip()
        try:
            minutes = min(max(int(form.get("minutes", ["120"])[0]), 1), 1440)
        except ValueError:
            minutes = 120
        try:
            run = self.certifications.start(agency, "operator (dashboard)", timedelta(minutes=minutes))
        except GatewayError as error:
            return reply_html(
                start_response, render_runs(self.certifications.runs(), self.token(), error.message), _HEADERS
            )
        start_response("303 See Other", [("Location", f"?run={run.run_id}"), ("Content-Length", "0"), *_HEADERS])
        return []
