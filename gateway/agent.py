"""The reference agency client: a long-running program that connects a folder to the gateway.

An agency can run it as it is, next to document-management software that reads and writes
files, or read it before writing its own. Everything it does goes through the published SOAP
operations (:mod:`gateway.client`), exactly as any other agency software would.

Folders under the agent's directory::

    inbox/            documents received: <documentId>.edxml and <documentId>.json (what the
                      pending list said about it)
    status-messages/  status messages about documents the agency sent: <itemId>.edxml + .json
    outbox/           put .edxml files here to send them (write elsewhere, then rename into
                      outbox/, so the agent never sees half a file)
    sent/, failed/    where sent files go, with <name>.receipt.json or <name>.fault.txt
    report/           status changes to report: JSON files {"documentId", "statusCode",
                      "description"?, "staff"?, "department"?} (``edxml-gateway agent report``
                      writes them)
    reported/, report-failed/

Nothing is lost and nothing is duplicated across crashes, because every step is either
idempotent or checked before it is repeated:

* a received item is acknowledged only after its file is written, fsynced and renamed into
  place; if the agent dies before acknowledging, the lease runs out, the item comes back, the
  file is found already there with the same sha256, and only the acknowledgement is repeated;
* a file sent but not yet moved to sent/ is sent again on restart, and the gateway answers a
  resend of the same bytes with the first receipt (``duplicate``), so the recipient gets it once;
* a status report is renamed to ``*.sending`` before the call; one found on restart is first
  looked up in the document's history, and reported again only if the gateway has not got it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.client import AgencyClient, ClientError, Fault, Unreachable
from gateway.store.blobs import fsync_dir, write_atomically

log = logging.getLogger("gateway.agent")

SENDING = ".sending"
"""Suffix of a status report whose call may have reached the gateway before the agent stopped."""


@dataclass(frozen=True)
class Folders:
    """The agent's folder layout under ``root`` (see the module docstring)."""

    root: Path

    @property
    def inbox(self) -> Path:
        return self.root / "inbox"

    @property
    def status_messages(self) -> Path:
        return self.root / "status-messages"

    @property
    def outbox(self) -> Path:
        return self.root / "outbox"

    @property
    def sent(self) -> Path:
        return self.root / "sent"

    @property
    def failed(self) -> Path:
        return self.root / "failed"

    @property
    def report(self) -> Path:
        return self.root / "report"

    @property
    def reported(self) -> Path:
        return self.root / "reported"

    @property
    def report_failed(self) -> Path:
        return self.root / "report-failed"

    def create(self) -> None:
        for folder in (
            self.inbox,
            self.status_messages,
            self.outbox,
            self.sent,
            self.failed,
            self.report,
            self.reported,
            self.report_failed,
        ):
            folder.mkdir(parents=True, exist_ok=True)


def _move(path: Path, folder: Path) -> Path:
    """Rename ``path`` into ``folder`` under a name not taken yet; durable before returning."""
    target = folder / path.name
    if target.exists():
        target = folder / f"{path.stem}-{uuid.uuid4().hex[:8]}{path.suffix}"
    os.replace(path, target)
    fsync_dir(folder)
    fsync_dir(path.parent)
    return target


def _set_aside(path: Path, folder: Path, why: str) -> None:
    """Move a file the gateway refused (or that cannot be read) to ``folder`` with a note saying why."""
    moved = _move(path, folder)
    write_atomically(moved.with_name(moved.name + ".fault.txt"), why.encode("utf-8"))


def _json(data: dict[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False, indent=2, default=str).encode("utf-8")


def queue_report(
    folders: Folders,
    document_id: str,
    code: str,
    description: str | None = None,
    staff: str | None = None,
    department: str | None = None,
) -> Path:
    """Drop a status report for the agent to make (what ``edxml-gateway agent report`` does)."""
    folders.create()
    name = f"{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}.json"
    path = folders.report / name
    report = {
        "documentId": document_id,
        "statusCode": code,
        "description": description,
        "staff": staff,
        "department": department,
    }
    write_atomically(path, _json(report))
    return path


@dataclass
class CycleResult:
    """What one pass did; the agent loops at once while there is work."""

    received: int = 0
    sent: int = 0
    reported: int = 0

    @property
    def busy(self) -> bool:
        return bool(self.received or self.sent or self.reported)


class Agent:
    """Polls the gateway, saves what arrives, sends the outbox and reports statuses, forever."""

    def __init__(self, client: AgencyClient, folders: Folders, interval: float = 30.0, batch: int = 20) -> None:
        self.client = client
        self.folders = folders
        self.interval = interval
        self.batch = batch
        folders.create()

    def run(self, stop: threading.Event, on_cycle: Callable[[CycleResult], None] | None = None) -> None:
        """Loop until ``stop`` is set; a gateway that is down is waited for, never fatal."""
        wait = self.interval
        while not stop.is_set():
            try:
                result = self.cycle()
            except Unreachable as error:
                log.warning("gateway unreachable, retrying in %.0f s: %s", wait, error)
                stop.wait(wait)
                wait = min(wait * 2, max(self.interval, 300.0))
                continue
            wait = self.interval
            if on_cycle is not None:
                on_cycle(result)
            if not result.busy:
                stop.wait(self.interval)

    def cycle(self) -> CycleResult:
        """One pass: receive, send, report. Raises :class:`Unreachable` when the gateway is down."""
        return CycleResult(received=self.receive(), sent=self.send_outbox(), reported=self.report_statuses())

    # -- receiving --------------------------------------------------------------------------------

    def receive(self) -> int:
        """Lease waiting items, save each safely, then acknowledge it. Returns how many were saved."""
        received = 0
        for item in self.client.pending(self.batch):
            try:
                fetched = self.client.fetch(item.itemId)
            except Fault as fault:
                log.warning("item %s not fetched: %s %s", item.itemId, fault.code, fault.message)
                continue
            if fetched.kind == "document":
                target = self.folders.inbox / f"{fetched.document_id}.edxml"
            else:
                target = self.folders.status_messages / f"{fetched.item_id}.edxml"
            if not _holds(target, fetched.edxml):
                write_atomically(target.with_suffix(".json"), _json(_describe(item)))
                write_atomically(target, fetched.edxml)
                log.info("saved %s %s to %s", fetched.kind, fetched.document_id, target)
            self.client.acknowledge(fetched.item_id)
            received += 1
        return received

    # -- sending ----------------------------------------------------------------------------------

    def send_outbox(self) -> int:
        """Send every complete .edxml file of outbox/; a refused one goes to failed/ with the fault."""
        sent = 0
        for path in sorted(self.folders.outbox.glob("*.edxml")):
            if path.name.startswith("."):
                continue
            try:
                receipt = self.client.send(path.read_bytes())
            except Fault as fault:
                _set_aside(path, self.folders.failed, f"{fault.code}\n{fault.message}\n")
                log.warning("refused %s: %s %s", path.name, fault.code, fault.message)
                continue
            moved = _move(path, self.folders.sent)
            write_atomically(moved.with_name(moved.name + ".receipt.json"), _json(_receipt(receipt)))
            log.info(
                "sent %s as document %s%s",
                path.name,
                receipt.documentId,
                " (already sent)" if receipt.duplicate else "",
            )
            sent += 1
        return sent

    # -- reporting --------------------------------------------------------------------------------

    def report_statuses(self) -> int:
        """Make the status reports of report/, oldest first."""
        reported = 0
        for path in sorted(self.folders.report.iterdir()):
            if path.name.startswith(".") or not path.name.endswith((".json", ".json" + SENDING)):
                continue
            try:
                request = json.loads(path.read_text(encoding="utf-8"))
                document_id, code = str(request["documentId"]), str(request["statusCode"])
            except (ValueError, KeyError, TypeError) as error:
                _set_aside(path, self.folders.report_failed, f"unreadable report: {error}\n")
                continue
            if path.name.endswith(SENDING):
                if self._already_reported(document_id, code, request.get("description"), path):
                    _move(path, self.folders.reported)
                    reported += 1
                    continue
            else:
                sending = path.with_name(path.name + SENDING)
                os.replace(path, sending)
                path = sending
            try:
                self.client.report(
                    document_id, code, request.get("description"), request.get("staff"), request.get("department")
                )
            except Fault as fault:
                _set_aside(path, self.folders.report_failed, f"{fault.code}\n{fault.message}\n")
                log.warning("status %s for %s refused: %s %s", code, document_id, fault.code, fault.message)
                continue
            _move(path, self.folders.reported)
            log.info("reported %s for %s", code, document_id)
            reported += 1
        return reported

    def _already_reported(self, document_id: str, code: str, description: str | None, marker: Path) -> bool:
        """Whether a report interrupted after its call reached the gateway was recorded there."""
        since = marker.stat().st_mtime - 300
        try:
            entries = self.client.history(document_id)
        except Fault:
            return False
        return any(
            entry.reportedBy == self.client.agency
            and entry.statusCode == code
            and (entry.description or None) == (description or None)
            and entry.reportedAt.timestamp() >= since
            for entry in entries
        )


def _holds(path: Path, data: bytes) -> bool:
    """True if ``path`` already holds exactly ``data`` (a resend of an item saved before a crash)."""
    try:
        return path.stat().st_size == len(data) and path.read_bytes() == data
    except FileNotFoundError:
        return False


def _describe(item: Any) -> dict[str, Any]:
    fields = (
        "itemId",
        "kind",
        "documentId",
        "edxmlDocumentId",
        "senderCode",
        "senderName",
        "code",
        "subject",
        "promulgationDate",
        "dueDate",
        "priority",
        "businessType",
        "statusCode",
        "statusFrom",
        "size",
        "queuedAt",
    )
    return {name: getattr(item, name, None) for name in fields}


def _receipt(receipt: Any) -> dict[str, Any]:
    from gateway.client import items

    return {
        "documentId": receipt.documentId,
        "edxmlDocumentId": receipt.edxmlDocumentId,
        "recipients": items(receipt.recipients),
        "duplicate": receipt.duplicate,
        "sentAt": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def run_agent(client: AgencyClient, folders: Folders, interval: float, stop: threading.Event) -> None:
    """Run until ``stop``; errors other than an unreachable gateway are logged and retried."""
    agent = Agent(client, folders, interval)
    while not stop.is_set():
        try:
            agent.run(stop)
        except ClientError as error:
            log.error("agent error, retrying in %.0f s: %s", interval, error)
            stop.wait(interval)
        except OSError as error:
            log.error("cannot use the agent's folders (%s); retrying in %.0f s", error, interval)
            stop.wait(interval)
