"""The relay loop of one instance, and its SOAP client for the upstream's ``/relay`` endpoint.

A provincial instance pushes what goes up and pulls what comes down; the national instance
never opens a connection (it serves ``/relay`` and only sweeps abandoned leases here). One cycle:

1. register this instance's own agencies upstream (those changed since the last registration);
2. pull the directory from upstream (``getDirectory(since)``);
3. push due outbox consignments (custody moves on the answer; same id on retry);
4. pull consignments routed here (lease), fetch, store durably, acknowledge.

Every step is idempotent, so the process may be SIGKILLed at any moment and simply restarted;
docs/federation.md walks through each crash point.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gateway.client import items
from gateway.config import WSDL_DIR, Settings
from gateway.errors import GatewayError, UnknownRecipient
from gateway.exchange.service import utc_now
from gateway.extras import require
from gateway.federation import directory_sync, outbox, routing
from gateway.federation.model import ConsignmentHeader, DirectoryEntry
from gateway.federation.service import FederationService
from gateway.store.models import InboundConsignment, OutboxConsignment

log = logging.getLogger("gateway.relay")

RELAY_NS = "urn:edxml-gateway:relay:v1"
RELAY_WSDL = WSDL_DIR / "edxml-relay.wsdl"
BATCH = 20
HTTP_TIMEOUT = 120.0
PUSH_LEASE_SECONDS = HTTP_TIMEOUT * 2
PERMANENT_FAULTS = frozenset(
    {
        "Client.RelayLoop",
        "Client.MalformedEdxml",
        "Client.SchemaInvalid",
        "Client.InvalidEdxml",
        "Client.SenderMismatch",
        "Client.SignatureInvalid",
        "Client.MalformedRequest",
        "Client.TooLarge",
    }
)
"""Refusals a retry cannot change: the consignment fails at once instead of after every attempt."""


class PeerFault(Exception):
    """A SOAP fault from the peer, with its gateway code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class PeerUnreachable(Exception):
    """The peer did not answer (connection refused, timeout, HTTP error without a SOAP fault)."""


class RelayClient:
    """Calls a peer's ``/relay`` endpoint as ``instance_id`` (zeep, from the published WSDL)."""

    def __init__(self, base_url: str, instance_id: str, secret: str, timeout: float = HTTP_TIMEOUT) -> None:
        zeep = require("zeep", "client", "The relay to another gateway instance")

        self.url = base_url.rstrip("/") + "/relay"
        transport = zeep.Transport(timeout=timeout, operation_timeout=timeout)
        client = zeep.Client(str(RELAY_WSDL), transport=transport)
        client.set_default_soapheaders(
            [client.get_element(f"{{{RELAY_NS}}}PeerHeader")(instanceId=instance_id, secret=secret)]
        )
        self.service = client.create_service(f"{{{RELAY_NS}}}EdxmlGatewayRelay", self.url)

    def _call(self, operation: str, **arguments: Any) -> Any:
        requests = require("requests", "client", "The relay to another gateway instance")
        exceptions = require("zeep", "client", "The relay to another gateway instance").exceptions

        try:
            return getattr(self.service, operation)(**arguments)
        except exceptions.Fault as fault:
            raise PeerFault(str(fault.code or "").rsplit(":", 1)[-1], str(fault.message)) from None
        except (exceptions.TransportError, requests.RequestException, OSError) as error:
            raise PeerUnreachable(f"{self.url}: {error}") from None
        except exceptions.Error as error:
            raise PeerUnreachable(f"{self.url}: unexpected answer: {error}") from None

    def push(self, header: ConsignmentHeader, payload: bytes) -> tuple[str, bool]:
        receipt = self._call("pushConsignment", consignment=_wire(header), payload=payload)
        return str(receipt.consignmentId), bool(receipt.duplicate)

    def pull(self, max_items: int) -> list[ConsignmentHeader]:
        return [_header(h) for h in items(self._call("pullConsignments", maxItems=max_items))]

    def fetch(self, consignment_id: str) -> tuple[ConsignmentHeader, bytes]:
        fetched = self._call("fetchConsignment", consignmentId=consignment_id)
        return _header(fetched.header), bytes(fetched.payload or b"")

    def acknowledge(self, consignment_id: str) -> bool:
        return bool(self._call("acknowledgeConsignment", consignmentId=consignment_id))

    def register(self, entries: Sequence[DirectoryEntry]) -> int:
        wire = [
            {
                "code": e.code,
                "name": e.name,
                "level": e.level,
                "parentCode": e.parent_code,
                "active": e.active,
                "homeInstance": e.home_instance,
            }
            for e in entries
        ]
        return int(self._call("registerAgencies", agencies={"DirectoryEntry": wire}))

    def directory(self, since: int) -> tuple[int, list[DirectoryEntry]]:
        page = self._call("getDirectory", sinceVersion=since)
        entries = [
            DirectoryEntry(e.code, e.name, int(e.level), e.parentCode, bool(e.active), e.homeInstance)
            for e in items(page.entries)
        ]
        return int(page.version), entries


def _wire(header: ConsignmentHeader) -> dict[str, Any]:
    return {
        "consignmentId": header.consignment_id,
        "kind": header.kind,
        "originInstance": header.origin_instance,
        "originDocumentId": header.origin_document_id,
        "senderCode": header.sender_code,
        "recipients": {"string": list(header.recipients)},
        "payloadSha256": header.payload_sha256,
        "payloadSize": header.payload_size,
        "hopCount": header.hop_count,
        "path": {"string": list(header.path)},
        "statusCode": header.status_code,
        "recipientCode": header.recipient_code,
        "reporterCode": header.reporter_code,
        "reportedAt": header.reported_at,
        "description": header.description,
        "staffDepartment": header.staff_department,
        "staffName": header.staff_name,
    }


def _header(wire: Any) -> ConsignmentHeader:
    return ConsignmentHeader(
        consignment_id=wire.consignmentId,
        kind=wire.kind,
        origin_instance=wire.originInstance,
        origin_document_id=wire.originDocumentId,
        sender_code=wire.senderCode,
        recipients=tuple(items(wire.recipients)),
        payload_sha256=wire.payloadSha256,
        payload_size=int(wire.payloadSize),
        hop_count=int(wire.hopCount),
        path=tuple(items(wire.path)),
        status_code=wire.statusCode,
        recipient_code=wire.recipientCode,
        reporter_code=wire.reporterCode,
        reported_at=wire.reportedAt,
        description=wire.description,
        staff_department=wire.staffDepartment,
        staff_name=wire.staffName,
    )


@dataclass
class CycleReport:
    """What one relay cycle did (for logs and tests)."""

    registered: int = 0
    directory_changes: int = 0
    pushed: int = 0
    push_failures: int = 0
    pulled: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def busy(self) -> bool:
        return bool(self.pushed or self.pulled)


class Relay:
    """The relay of one instance; :meth:`run` loops, :meth:`cycle` does one pass."""

    def __init__(
        self,
        federation: FederationService,
        client_factory: Callable[[], RelayClient] | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.federation = federation
        self.settings: Settings = federation.settings
        self.db = federation.db
        self.blobs = federation.blobs
        self.clock = clock
        self._client_factory = client_factory or self._default_client
        self._client: RelayClient | None = None
        self._recovered = False

    def _default_client(self) -> RelayClient:
        return RelayClient(self.settings.upstream_url, self.settings.instance_id, self.settings.upstream_secret)

    @property
    def client(self) -> RelayClient:
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    @property
    def upstream(self) -> str:
        with self.db.transaction(readonly=True) as session:
            return routing.upstream_id(session, self.settings)

    def run(self, stop: threading.Event, once: bool = False) -> None:
        """Cycle until ``stop`` is set; an idle cycle waits ``relay_interval`` seconds."""
        while not stop.is_set():
            try:
                report = self.cycle()
            except Exception:  # the database went away, a bug: log it, keep the relay alive, try again
                log.exception("relay cycle failed; retrying in %s s", self.settings.relay_interval)
                self._client = None
                if once:
                    raise
                stop.wait(max(self.settings.relay_interval, 1.0))
                continue
            for error in report.errors:
                log.warning("relay: %s", error)
            if once:
                return
            if not report.busy:
                stop.wait(self.settings.relay_interval)

    def cycle(self) -> CycleReport:
        report = CycleReport()
        if self.settings.role != "provincial":
            self._sweep(report)
            return report
        upstream = self.upstream
        if not self._recovered:
            with self.db.transaction() as session:
                recovered = outbox.recover_pushes(session, upstream)
            if recovered:
                log.info("relay: %d interrupted pushes back in line", recovered)
            self._recovered = True
        for step in (self._register, self._pull_directory, self._push, self._pull):
            try:
                step(report, upstream)
            except (PeerUnreachable, PeerFault, GatewayError) as error:
                report.errors.append(f"{step.__name__.strip('_')}: {error}")
        return report

    # -- directory ----------------------------------------------------------------------------

    def _register(self, report: CycleReport, upstream: str) -> None:
        with self.db.transaction(readonly=True) as session:
            since = directory_sync.read_counter(session, directory_sync.REGISTERED_VERSION)
            version, entries = directory_sync.own_changes(session, self.settings, since)
        if not entries:
            return
        report.registered += self.client.register(entries)
        with self.db.transaction() as session:
            directory_sync.set_counter(session, directory_sync.REGISTERED_VERSION, version)

    def _pull_directory(self, report: CycleReport, upstream: str = "") -> None:
        while True:
            with self.db.transaction(readonly=True) as session:
                since = directory_sync.read_counter(session, directory_sync.PULLED_VERSION)
            version, entries = self.client.directory(since)
            with self.db.transaction() as session:
                report.directory_changes += directory_sync.apply(session, self.settings, entries, self.clock())
                directory_sync.set_counter(session, directory_sync.PULLED_VERSION, version)
            if len(entries) < directory_sync.PAGE_SIZE or version <= since:
                return

    # -- push ---------------------------------------------------------------------------------

    def _push(self, report: CycleReport, upstream: str) -> None:
        while True:
            now = self.clock()
            with self.db.transaction() as session:
                rows = outbox.due_for_push(session, upstream, now, BATCH)
                for row in rows:
                    outbox.start_push(row, now, PUSH_LEASE_SECONDS)
                batch = [(outbox.header(r), r.blob_sha256) for r in rows]
            if not batch:
                return
            for header, sha256 in batch:
                self._push_one(report, header, sha256)
            if len(batch) < BATCH:
                return

    def _push_one(self, report: CycleReport, header: ConsignmentHeader, sha256: str) -> None:
        error: str | None = None
        permanent = False
        duplicate = False
        try:
            payload = self.blobs.path(sha256).read_bytes()
            _, duplicate = self.client.push(header, payload)
        except PeerFault as fault:
            error, permanent = str(fault), fault.code in PERMANENT_FAULTS
        except (PeerUnreachable, OSError) as failure:
            error = str(failure)
        now = self.clock()
        with self.db.transaction() as session:
            row = session.get_one(OutboxConsignment, header.consignment_id, with_for_update=True)
            if error is None:
                outbox.delivered(session, row, now, duplicate=duplicate)
                report.pushed += 1
                return
            report.push_failures += 1
            if permanent:
                outbox.fail(session, row, error, now, self.settings)
            else:
                outbox.retry_later(session, self.settings, row, error, now)
        report.errors.append(f"push {header.consignment_id}: {error}")

    # -- pull ---------------------------------------------------------------------------------

    def _pull(self, report: CycleReport, upstream: str) -> None:
        while True:
            headers = self.client.pull(BATCH)
            for listed in headers:
                self._take_one(report, upstream, listed.consignment_id)
            if len(headers) < BATCH:
                return

    def _take_one(self, report: CycleReport, upstream: str, consignment_id: str) -> None:
        with self.db.transaction(readonly=True) as session:
            seen = session.get(InboundConsignment, consignment_id) is not None
        if not seen:
            header, payload = self.client.fetch(consignment_id)
            for attempt in (1, 2):
                staged = self.blobs.begin()
                try:
                    staged.write(payload)
                    self.federation.receive(upstream, header, staged)
                    break
                except UnknownRecipient as error:
                    # The directory may lag the consignment by one cycle: sync it and try once more.
                    if attempt == 2:
                        report.errors.append(f"pull {consignment_id}: {error.message}")
                        return
                    self._pull_directory(report)
                except GatewayError as error:
                    report.errors.append(f"pull {consignment_id}: {error.code}: {error.message}")
                    return
                finally:
                    staged.discard()
        self.client.acknowledge(consignment_id)
        report.pulled += 1

    # -- national housekeeping ----------------------------------------------------------------

    def _sweep(self, report: CycleReport) -> None:
        """Fail consignments leased by a province too many times and never acknowledged."""
        from sqlalchemy import select

        now = self.clock()
        with self.db.transaction() as session:
            rows = session.scalars(
                select(OutboxConsignment)
                .where(
                    OutboxConsignment.state == outbox.SENDING,
                    OutboxConsignment.lease_until <= now,
                    OutboxConsignment.attempts >= self.settings.relay_max_attempts,
                )
                .with_for_update(skip_locked=True)
            )
            for row in rows:
                reason = f"leased {row.attempts} times by {row.next_hop} and never acknowledged"
                outbox.fail(session, row, reason, now, self.settings)
