"""The agency side: send, pending, fetch, ack, status, history against a running gateway, over zeep.

These commands call the gateway over SOAP exactly as an agency's software would, so they double
as a smoke test of the published contract. A SOAP fault becomes :class:`SoapFault`, which the
command group prints as one line; transport problems end the command with a line saying what to check.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import mimetypes
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.table import Table
from rich.text import Text

from gateway import reports
from gateway.cli import ui
from gateway.client import AgencyClient, ClientError, Unreachable, items
from gateway.client import Fault as SoapFault
from gateway.store.evidence import json_default

NS = "urn:edxml-gateway:soap:v1"
DEFAULT_URL = "http://127.0.0.1:8080/soap"

F = TypeVar("F", bound=Callable[..., Any])


def client_options(func: F) -> F:
    """``--url``, ``--agency``, ``--secret`` with their environment variables."""
    func = click.option("--secret", envvar="EDXML_SECRET", help="Agency secret (env EDXML_SECRET).")(func)
    func = click.option("--agency", envvar="EDXML_AGENCY", help="Your agency code (env EDXML_AGENCY).")(func)
    func = click.option(
        "--url",
        envvar="EDXML_GATEWAY_URL",
        default=DEFAULT_URL,
        show_default=True,
        help="Gateway SOAP endpoint (env EDXML_GATEWAY_URL).",
    )(func)
    return func


class GatewayClient:
    """The agency client (:class:`gateway.client.AgencyClient`) as the commands use it.

    A fault leaves as :class:`SoapFault` (the command group prints it as one line); a gateway that
    cannot be reached ends the command with one line saying what to check.
    """

    def __init__(self, url: str, agency: str | None, secret: str | None) -> None:
        if not agency or not secret:
            ui.fail("error: give --agency and --secret (or set EDXML_AGENCY and EDXML_SECRET).")
        self.agency = agency
        self.url = url
        self.client = AgencyClient(url, agency, secret, timeout=30, operation_timeout=600)
        with _soap_errors():
            self.client.connect()

    def call(self, operation: str, **arguments: Any) -> Any:
        with _soap_errors():
            return self.client.call(operation, **arguments)

    def staff(self, **fields: str | None) -> Any:
        with _soap_errors():
            return self.client.staff(**fields)


@contextlib.contextmanager
def _soap_errors() -> Iterator[None]:
    """Transport problems and a missing client extra end the command with one line."""
    try:
        yield
    except Unreachable as error:
        ui.fail(f"error: {error}")
    except ClientError as error:
        if isinstance(error, SoapFault):
            raise
        ui.fail(f"error: {error}")


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--to", "recipients", multiple=True, help="Recipient agency code (repeatable); for non-.edxml files.")
@click.option("--subject", help="Subject of the new document (default: the file names).")
@click.option("--code-number", help="Số: document number (default: from the current time).")
@click.option("--code-notation", default="VBĐT", show_default=True, help="Ký hiệu: document notation.")
@client_options
def send(
    files: tuple[Path, ...],
    recipients: tuple[str, ...],
    subject: str | None,
    code_number: str | None,
    code_notation: str,
    url: str,
    agency: str | None,
    secret: str | None,
) -> None:
    """Send .edxml FILEs as they are; any other files go as attachments of one new edXML document."""
    edxml_files = [f for f in files if f.suffix.lower() == ".edxml"]
    attachments = [f for f in files if f.suffix.lower() != ".edxml"]
    if attachments and not recipients:
        raise click.UsageError("wrapping files in a new document needs at least one --to CODE")
    client = GatewayClient(url, agency, secret)
    assert agency is not None
    jobs: list[tuple[str, Callable[[], bytes]]] = [(str(f), f.read_bytes) for f in edxml_files]
    if attachments:
        document = _new_document(client, agency, attachments, recipients, subject, code_number, code_notation)
        jobs.append((", ".join(f.name for f in attachments), lambda: document))
    failures = 0
    console = ui.out()
    with ui.progress(ui.err()) as progress:
        task = progress.add_task("Sending", total=len(jobs), visible=len(jobs) > 1)
        for label, payload in jobs:
            try:
                receipt = client.call("sendDocument", document=payload())
            except SoapFault as fault:
                failures += 1
                progress.console.print(f"{label}: {fault}", markup=False, style="red")
            else:
                duplicate = " (already sent before: nothing new stored)" if receipt.duplicate else ""
                signer = getattr(receipt, "signer", None)
                duplicate += f"; signed by {signer}" if signer else ""
                console.print(
                    f"{label}: documentId {receipt.documentId} edxmlDocumentId {receipt.edxmlDocumentId} "
                    f"to {', '.join(items(receipt.recipients))}{duplicate}",
                    markup=False,
                )
            progress.advance(task)
    if failures:
        ui.fail(f"{failures} of {len(jobs)} documents were not sent." if len(jobs) > 1 else "Nothing was sent.")


def _new_document(
    client: GatewayClient,
    agency: str,
    files: Sequence[Path],
    recipients: Sequence[str],
    subject: str | None,
    code_number: str | None,
    code_notation: str,
) -> bytes:
    """A Công văn from ``agency`` carrying ``files``; names come from the gateway's directory."""
    from gateway.edxml import AttachmentSource, DocumentMessage, Organization, document_bytes

    names = {a.code: a.name for a in items(client.call("getAgencies", parentCode=None))}
    now = datetime.now(reports.VIETNAM_TIME)
    message = DocumentMessage(
        sender=Organization(agency, names.get(agency, agency)),
        recipients=tuple(Organization(code, names.get(code, code)) for code in recipients),
        code_number=code_number or now.strftime("%y%m%d%H%M%S"),
        code_notation=code_notation,
        promulgation_date=now.date(),
        type_code=1,
        type_name="Công văn",
        subject=subject or "Gửi tệp: " + ", ".join(f.name for f in files),
    )
    sources = [
        AttachmentSource(
            name=f.name, content_type=mimetypes.guess_type(f.name)[0] or "application/octet-stream", path=f
        )
        for f in files
    ]
    return document_bytes(message, sources, now=now.replace(tzinfo=None, microsecond=0))


def _text(value: object) -> Text:
    """A table cell holding an agency's text as it is (never read as rich markup); empty for a missing value."""
    return Text("" if value is None else str(value))


def _when(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(reports.VIETNAM_TIME).strftime("%Y-%m-%d %H:%M:%S")
    return "" if value is None else str(value)


def _emit_json(rows: list[dict[str, Any]]) -> None:
    click.echo(json.dumps(rows, ensure_ascii=False, indent=2, default=json_default))


@click.command()
@click.option("--max", "max_items", type=click.IntRange(min=1), help="At most N items.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@client_options
def pending(max_items: int | None, as_json: bool, url: str, agency: str | None, secret: str | None) -> None:
    """List (and lease) the documents and status messages waiting for your agency."""
    client = GatewayClient(url, agency, secret)
    pending_items = items(client.call("getPendingDocuments", maxItems=max_items))
    fields = (
        "itemId",
        "kind",
        "documentId",
        "senderCode",
        "code",
        "subject",
        "statusCode",
        "statusFrom",
        "size",
        "queuedAt",
        "dueDate",
        "attempts",
        "signer",
    )
    rows = [{f: getattr(i, f, None) for f in fields} for i in pending_items]
    if as_json:
        _emit_json(rows)
        return
    table = Table(title=f"{len(rows)} item(s) for {agency} (times in Vietnam time)")
    for column in ("item", "kind", "document", "from", "code", "subject", "status", "size", "queued"):
        table.add_column(column, no_wrap=column in ("item", "document"), overflow="fold")
    for row in rows:
        status = f"{row['statusCode']} from {row['statusFrom']}" if row["statusCode"] else ""
        table.add_row(
            _text(row["itemId"]),
            row["kind"],
            _text(row["documentId"]),
            _text(row["senderCode"]),
            _text(row["code"]),
            _text(row["subject"]),
            status,
            str(row["size"]),
            _when(row["queuedAt"]),
        )
    ui.out().print(table)


@click.command()
@click.argument("item_id")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the edXML (default: ITEM_ID.edxml; '-' for stdout).",
)
@client_options
def fetch(item_id: str, output: Path | None, url: str, agency: str | None, secret: str | None) -> None:
    """Download an item's edXML file (the first fetch of a document records status 01, arrived)."""
    client = GatewayClient(url, agency, secret)
    result = client.call("getDocument", itemId=item_id)
    data: bytes = result.edxml
    if hashlib.sha256(data).hexdigest() != result.sha256:
        ui.fail(f"error: the edXML received for item {item_id} does not match its sha256 {result.sha256}; fetch again.")
    if output is not None and str(output) == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    target = output or Path(f"{item_id}.edxml")
    target.write_bytes(data)
    ui.err().print(
        f"Wrote {target}: {result.kind} of document {result.documentId}, {len(data)} bytes, sha256 {result.sha256}",
        markup=False,
    )


@click.command()
@click.argument("item_id")
@client_options
def ack(item_id: str, url: str, agency: str | None, secret: str | None) -> None:
    """Confirm an item was received: it leaves your pending list for good."""
    GatewayClient(url, agency, secret).call("confirmReceived", itemId=item_id)
    ui.out().print(f"Acknowledged {item_id}.", markup=False)


@click.command()
@click.argument("document_id")
@click.argument("code")
@click.option("--description", help="What happened (e.g. who it was assigned to).")
@click.option("--staff", help="Name of the person who handled it.")
@click.option("--department", help="Their department.")
@client_options
def status(
    document_id: str,
    code: str,
    description: str | None,
    staff: str | None,
    department: str | None,
    url: str,
    agency: str | None,
    secret: str | None,
) -> None:
    """Report a processing status for a document: 02-06 as a recipient, 13 to recall as its sender."""
    client = GatewayClient(url, agency, secret)
    arguments: dict[str, Any] = {"documentId": document_id, "statusCode": code, "description": description}
    if staff or department:
        arguments["staff"] = client.staff(department=department, staff=staff)
    receipt = client.call("updateStatus", **arguments)
    ui.out().print(
        f"Recorded status {receipt.statusCode} for {receipt.documentId} at {_when(receipt.reportedAt)}; "
        f"notified {', '.join(items(receipt.notified))}.",
        markup=False,
    )


@click.command()
@click.argument("document_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@client_options
def history(document_id: str, as_json: bool, url: str, agency: str | None, secret: str | None) -> None:
    """Show every status of a document (per recipient for its sender)."""
    client = GatewayClient(url, agency, secret)
    entries = items(client.call("getStatusHistory", documentId=document_id))
    fields = (
        "recipientCode",
        "statusCode",
        "statusName",
        "reportedAt",
        "reportedBy",
        "description",
        "staffName",
        "staffDepartment",
    )
    rows = [{f: getattr(e, f, None) for f in fields} for e in entries]
    if as_json:
        _emit_json(rows)
        return
    table = Table(title=f"Status history of {document_id} (Vietnam time)")
    for column in ("recipient", "status", "when", "by", "description", "staff"):
        table.add_column(column)
    for row in rows:
        staff = " / ".join(v for v in (row["staffName"], row["staffDepartment"]) if v)
        table.add_row(
            _text(row["recipientCode"]),
            Text(f"{row['statusCode']} {row['statusName']}"),
            _when(row["reportedAt"]),
            _text(row["reportedBy"]),
            Text(row["description"] or ""),
            Text(staff),
        )
    ui.out().print(table)


COMMANDS = (send, pending, fetch, ack, status, history)
