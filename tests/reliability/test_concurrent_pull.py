"""Eight clients of one agency pulling at once never share a live lease; unacknowledged items come back.

About 200 documents are queued for Nghệ An; eight threads, each with its own zeep client, call
``getPendingDocuments(maxItems=5)`` in a loop and acknowledge what they get, except that the first
lease of every tenth item is deliberately left to expire (lease 2 s). Every grant is recorded
with the server's ``leaseExpiresAt``; two grants of one item must not overlap in server time.
Runs on SQLite and PostgreSQL against a threaded in-process gateway, and against
``serve --workers 2`` (gunicorn, two processes: the real-parallel case for SQLite).
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest
import zeep
from reliability_support import NGHE_AN, NS, VPCP, Agent, GatewayFactory, letter, threaded_gateway
from zeep.transports import Transport

from gateway.config import Settings

ITEMS = 200
CLIENTS = 8
LEASE_SECONDS = 2


@dataclass
class Grants:
    """Every lease handed out: item id -> [(leaseExpiresAt, attempts)], plus what was acknowledged."""

    leases: dict[str, list[tuple[datetime, int]]] = field(default_factory=lambda: defaultdict(list))
    acked: set[str] = field(default_factory=set)
    skipped: set[str] = field(default_factory=set)
    missing_edxml_id: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _queue_documents(agent: Agent, count: int) -> set[str]:
    def send(_: int) -> str:
        reply = agent.send(letter(VPCP, [NGHE_AN]))
        assert reply.fault_code is None, reply.fault_string
        return str(reply.find("documentId"))

    with ThreadPoolExecutor(4) as pool:
        return set(pool.map(send, range(count)))


def _client(url: str, secret: str) -> zeep.Client:
    client = zeep.Client(f"{url}?wsdl", transport=Transport(timeout=60, operation_timeout=60))
    client.set_default_soapheaders([client.get_element(f"{{{NS}}}AuthHeader")(agencyCode=NGHE_AN, secret=secret)])
    return client


def _puller(client: zeep.Client, expected: set[str], grants: Grants, deadline: float) -> None:
    while time.monotonic() < deadline:
        with grants.lock:
            if grants.acked >= expected:
                return
        items = client.service.getPendingDocuments(maxItems=5) or []
        if not items:
            time.sleep(0.1)
            continue
        for item in items:
            with grants.lock:
                grants.leases[item.documentId].append((item.leaseExpiresAt, item.attempts))
                if not item.edxmlDocumentId:
                    grants.missing_edxml_id.append(item.itemId)
                skip = hash(item.documentId) % 10 == 0 and item.documentId not in grants.skipped
                if skip:
                    grants.skipped.add(item.documentId)
            if not skip:
                assert client.service.confirmReceived(itemId=item.itemId) is True
                with grants.lock:
                    grants.acked.add(item.documentId)


def _run_pullers(url: str, secret: str, sender: Agent) -> Grants:
    expected = _queue_documents(sender, ITEMS)
    grants = Grants()
    clients = [_client(url, secret) for _ in range(CLIENTS)]
    deadline = time.monotonic() + 90
    with ThreadPoolExecutor(CLIENTS) as pool:
        for future in [pool.submit(_puller, c, expected, grants, deadline) for c in clients]:
            future.result()
    assert grants.acked == expected, f"{len(expected - grants.acked)} items never acknowledged"
    lease = timedelta(seconds=LEASE_SECONDS)
    for document_id, leases in grants.leases.items():
        ordered = sorted(leases)
        for (earlier, _), (later, _) in pairwise(ordered):
            assert later - lease >= earlier, f"{document_id} leased again at {later - lease} while leased to {earlier}"
        attempts = [a for _, a in ordered]
        assert attempts == list(range(1, len(ordered) + 1)), f"{document_id}: attempts {attempts}"
    assert not grants.missing_edxml_id, "items without the sender's DocumentId"
    assert grants.skipped, "some leases were left to expire"
    for document_id in grants.skipped:
        assert len(grants.leases[document_id]) >= 2, f"{document_id} did not come back after its lease expired"
    print(
        f"\n{len(expected)} items, {sum(len(v) for v in grants.leases.values())} leases, "
        f"{len(grants.skipped)} left to expire and redelivered"
    )
    return grants


@pytest.mark.slow
def test_parallel_pulls_threaded_gateway(tmp_path: Path, db_url: str) -> None:
    settings = Settings(data_dir=tmp_path / "var", database_url=db_url, lease_seconds=LEASE_SECONDS)
    with threaded_gateway(settings) as gateway:
        _run_pullers(gateway.url, gateway.secrets[NGHE_AN], gateway.agent(VPCP))


@pytest.mark.slow
def test_parallel_pulls_gunicorn_two_workers(tmp_path: Path, db_url: str, gateway_process: GatewayFactory) -> None:
    database_url = db_url if db_url.startswith("postgresql") else f"sqlite:///{tmp_path / 'var' / 'gw.sqlite3'}"
    gateway = gateway_process(workers=2, database_url=database_url, env={"GATEWAY_LEASE_SECONDS": str(LEASE_SECONDS)})
    _run_pullers(gateway.url, gateway.secrets[NGHE_AN], gateway.agent(VPCP))
