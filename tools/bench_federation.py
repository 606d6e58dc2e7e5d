"""What a second province costs: end-to-end sends/s and latency through a network of gateways.

The question: when a commune of province A sends to a department of province B, the document
crosses two hops (A -> national -> B: two relays, three stores). How many documents per second
get from the sender at A to the recipient at B (fetched and acknowledged there), compared with the
same sender and the same documents to a local recipient at A (target: ratio >= 0.5)? And how long
does one document take from the end of ``sendDocument`` at A until it shows in the recipient's
pending list at B (p50/p99), for a given relay interval?

The network is the one tests/federation runs (tests/federation/harness.py): three instances
(national, HA, HB), each ``edxml-gateway serve`` (development server) plus ``edxml-gateway relay``
as real processes, on SQLite (or PostgreSQL, one database per instance), all on this machine's
cores together with the client processes. Phases, in one run:

1. warm-up (excluded): one local and one remote document, drained;
2. local: ``--senders`` client processes send ``--documents`` documents from A's department to A's
   commune while one receiver process drains the commune's pending list (pull, fetch, ack);
   sends/s = documents / (last acknowledgement - first send);
3. remote: the same, from A's commune to B's department (the receiver talks to instance B);
4. latency, once the statuses 01 of the remote phase have flowed back (they share the relays'
   queues, so a burst of them delays new documents): ``--samples`` documents one per second from
   A's commune to B's department; the receiver polls B's pending list as fast as it answers;
   latency = first seen - send answered, with the moments national and B took custody.

Prints figures; asserts nothing.

    .venv/bin/python tools/bench_federation.py                         # SQLite, relay interval 0.2 s
    .venv/bin/python tools/bench_federation.py --backend postgres --documents 200 --relay-interval 0.05
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import make_url

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests" / "federation"), str(REPO / "tests")]

from harness import (  # noqa: E402 - the test harness is the network this bench measures
    A_COMMUNE,
    A_COMMUNE_2,
    A_DEPARTMENT,
    B_DEPARTMENT,
    HA,
    HB,
    NATIONAL,
    Network,
    build_network,
    start_network,
)
from support.letters import official_letter  # noqa: E402

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


# -- client processes --------------------------------------------------------------------------------


def _client(wsdl: str, code: str, secret: str) -> Any:
    import zeep
    from zeep.transports import Transport

    client = zeep.Client(wsdl, transport=Transport(timeout=60, operation_timeout=180))
    header = client.get_element("{urn:edxml-gateway:soap:v1}AuthHeader")(agencyCode=code, secret=secret)
    client.set_default_soapheaders([header])
    return client


def _sender(wsdl: str, code: str, secret: str, documents: list[bytes], start: Any, out: Queue) -> None:
    """Send each document; report (edxml DocumentId, send started, send answered) per document."""
    client = _client(wsdl, code, secret)
    start.wait()
    times = []
    for edxml in documents:
        began = time.time()
        receipt = client.service.sendDocument(document=edxml)
        times.append((receipt.edxmlDocumentId, began, time.time()))
    out.put(("sent", times))


def _receiver(wsdl: str, code: str, secret: str, expected: int, ack: bool, out: Queue, deadline: float) -> None:
    """Drain ``code``'s pending list until ``expected`` documents were seen (and, with ``ack``, fetched
    and acknowledged); report (DocumentId, first seen, acknowledged) per document."""
    client = _client(wsdl, code, secret)
    out.put(("ready", None))
    seen: dict[str, list[float]] = {}
    while len(seen) < expected and time.time() < deadline:
        items = client.service.getPendingDocuments(maxItems=100) or []
        now = time.time()
        for item in items:
            if item.kind != "document":
                continue
            seen.setdefault(item.edxmlDocumentId, [now, now])
            if ack:
                client.service.getDocument(itemId=item.itemId)
                client.service.confirmReceived(itemId=item.itemId)
                seen[item.edxmlDocumentId][1] = time.time()
    out.put(("received", {k: tuple(v) for k, v in seen.items()}))


# -- phases --------------------------------------------------------------------------------------------


def _letters(sender: str, recipient: str, count: int, attachment: int) -> list[bytes]:
    body = os.urandom(attachment)
    return [official_letter(sender, [recipient], number=uuid.uuid4().hex[:12], attachment=body) for _ in range(count)]


def throughput(network: Network, sender: str, recipient: str, documents: int, senders: int, size: int) -> dict:
    """Documents per second from ``sender`` until fetched+acknowledged by ``recipient`` (each at its home)."""
    ctx = multiprocessing.get_context("fork")
    out: Queue = ctx.Queue()
    start = ctx.Event()
    home_s, home_r = network.home_of(sender), network.home_of(recipient)
    letters = _letters(sender, recipient, documents, size)
    receiver = ctx.Process(
        target=_receiver,
        args=(f"{home_r.soap_url}?wsdl", recipient, home_r.secrets[recipient], documents, True, out, time.time() + 600),
    )
    receiver.start()
    assert out.get(timeout=60)[0] == "ready"
    workers = [
        ctx.Process(
            target=_sender,
            args=(f"{home_s.soap_url}?wsdl", sender, home_s.secrets[sender], letters[i::senders], start, out),
        )
        for i in range(senders)
    ]
    for worker in workers:
        worker.start()
    time.sleep(2)  # every client has built its zeep client and waits for the start
    start.set()
    sent: list[tuple[str, float, float]] = []
    received: dict[str, tuple[float, float]] = {}
    for _ in range(senders + 1):
        kind, value = out.get(timeout=900)
        if kind == "sent":
            sent.extend(value)
        else:
            received = value
    for process in (*workers, receiver):
        process.join()
    first = min(began for _, began, _ in sent)
    last_sent = max(answered for _, _, answered in sent)
    missing = len({d for d, _, _ in sent} - set(received))
    last_ack = max(acked for _, acked in received.values())
    return {
        "documents": documents,
        "edxml_bytes": len(letters[0]),
        "missing": missing,
        "send_only_per_s": documents / (last_sent - first),
        "end_to_end_per_s": documents / (last_ack - first),
    }


def latency(network: Network, sender: str, recipient: str, samples: int, size: int) -> dict[str, list[float]]:
    """Seconds from sendDocument answered at the sender's home until the document shows at the recipient's
    (``total``), and until each relaying hop took custody of it (``national``, ``HB``: its inbound row)."""
    ctx = multiprocessing.get_context("fork")
    out: Queue = ctx.Queue()
    home_s, home_r = network.home_of(sender), network.home_of(recipient)
    receiver = ctx.Process(
        target=_receiver,
        args=(f"{home_r.soap_url}?wsdl", recipient, home_r.secrets[recipient], samples, False, out, time.time() + 600),
    )
    receiver.start()
    assert out.get(timeout=60)[0] == "ready"
    client = home_s.client(sender)
    answered: dict[str, float] = {}
    letters = _letters(sender, recipient, samples, size)
    for edxml in letters:
        receipt = client.service.sendDocument(document=edxml)
        answered[receipt.edxmlDocumentId] = time.time()
        time.sleep(1.0)  # one at a time: let it cross before the next one
    _, received = out.get(timeout=600)
    receiver.join()
    result = {"total": sorted(received[d][0] - answered[d] for d in answered if d in received)}
    for hop in (NATIONAL, HB):
        custody = _custody_times(network[hop].database_url)
        result[hop] = sorted(custody[d] - answered[d] for d in answered if d in custody)
    return result


def _custody_times(database_url: str) -> dict[str, float]:
    """edXML DocumentId -> when this instance took custody of it (relay_inbound.received_at), as a timestamp."""
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT d.edxml_document_id, i.received_at FROM relay_inbound i "
                    "JOIN documents d ON d.id = i.local_document_id WHERE i.kind = 'document'"
                )
            ).all()
    finally:
        engine.dispose()
    times = {}
    for document_id, received_at in rows:
        at = received_at if isinstance(received_at, datetime) else datetime.fromisoformat(str(received_at))
        times[document_id] = (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()
    return times


def quiesce(network: Network, timeout: float = 600) -> float:
    """Wait until no instance has a consignment left to deliver (the 01 statuses of fetched documents
    flow back to the sender after a phase); seconds it took."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        left = sum(
            network[i].scalar("SELECT count(*) FROM relay_outbox WHERE state IN ('waiting', 'sending')")
            for i in (NATIONAL, HA, HB)
        )
        if not left:
            break
        time.sleep(0.2)
    return time.monotonic() - began


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


# -- network ------------------------------------------------------------------------------------------


def database_urls(backend: str, root: Path) -> tuple[dict[str, str], list[str]]:
    instances = (NATIONAL, HA, HB)
    if backend == "sqlite":
        return {i: f"sqlite:///{root / 'network' / i / 'data' / 'gateway.sqlite3'}" for i in instances}, []
    base = make_url(os.environ.get("GATEWAY_TEST_PG_URL") or DEFAULT_PG_URL)
    admin = base.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    names = {i: f"gw_bench_fed_{i.lower()}_{uuid.uuid4().hex[:8]}" for i in instances}
    with psycopg.connect(admin, autocommit=True) as connection:
        for name in names.values():
            connection.execute(f'CREATE DATABASE "{name}"')
    urls = {
        i: base.set(drivername="postgresql+psycopg", database=n).render_as_string(hide_password=False)
        for i, n in names.items()
    }
    return urls, list(names.values())


def drop_databases(names: list[str]) -> None:
    if not names:
        return
    base = make_url(os.environ.get("GATEWAY_TEST_PG_URL") or DEFAULT_PG_URL)
    admin = base.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as connection:
        for name in names:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def describe_machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout
    load = os.getloadavg()
    return (
        f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, commit {commit.strip() or '?'}, "
        f"load average before the run {load[0]:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--documents", type=int, default=80, help="documents per throughput phase (default 80)")
    parser.add_argument("--senders", type=int, default=2, help="sending client processes (default 2)")
    parser.add_argument("--size", type=int, default=100_000, help="attachment bytes per document (default 100000)")
    parser.add_argument("--samples", type=int, default=20, help="documents for the latency phase (default 20)")
    parser.add_argument("--relay-interval", type=float, default=0.2, help="GATEWAY_RELAY_INTERVAL (default 0.2 s)")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-federation-"))
    urls, databases = database_urls(args.backend, root)
    network = build_network(root / "network", urls, {"GATEWAY_RELAY_INTERVAL": str(args.relay_interval)})
    print(f"machine: {describe_machine()}")
    print(f"backend {args.backend}, relay interval {args.relay_interval} s, {args.senders} sender processes")
    try:
        start_network(network)
        network.wait_for_directory(timeout=120)
        throughput(network, A_DEPARTMENT, A_COMMUNE_2, 2, 1, args.size)
        throughput(network, A_COMMUNE, B_DEPARTMENT, 2, 1, args.size)
        quiesce(network)
        local = throughput(network, A_DEPARTMENT, A_COMMUNE_2, args.documents, args.senders, args.size)
        remote = throughput(network, A_COMMUNE, B_DEPARTMENT, args.documents, args.senders, args.size)
        drained = quiesce(network)
        delays = latency(network, A_COMMUNE, B_DEPARTMENT, args.samples, args.size)
    except BaseException:
        print(network.logs(), file=sys.stderr)
        raise
    finally:
        network.stop()
        drop_databases(databases)
        shutil.rmtree(root, ignore_errors=True)

    print(f"document: {local['edxml_bytes']:,} bytes of edXML ({args.size:,}-byte attachment)")
    print(f"{'phase':<34}{'documents':>10}{'send only/s':>13}{'end to end/s':>14}{'missing':>9}")
    for name, figures in (("local  A dept -> A commune", local), ("remote A commune -> B dept (2 hops)", remote)):
        print(
            f"{name:<34}{figures['documents']:>10}{figures['send_only_per_s']:>13.1f}"
            f"{figures['end_to_end_per_s']:>14.1f}{figures['missing']:>9}"
        )
    print(f"after the remote phase, the {args.documents} statuses 01 flowing back to A took {drained:.1f} s more")
    ratio = remote["end_to_end_per_s"] / local["end_to_end_per_s"]
    print(f"ratio remote / local end to end: {ratio:.2f} (goal >= 0.5)")
    if delays["total"]:
        print(
            f"latency A sendDocument answered -> seen in B's pending list, {len(delays['total'])} of {args.samples} "
            f"documents sent one per second, relay interval {args.relay_interval} s (ms):"
        )
        for name, key in (
            ("national took custody", NATIONAL),
            ("B took custody", HB),
            ("in B's pending list", "total"),
        ):
            values = delays[key]
            print(
                f"  {name:<24} p50 {statistics.median(values) * 1000:6.0f}  p90 {percentile(values, 90) * 1000:6.0f}"
                f"  p99 {percentile(values, 99) * 1000:6.0f}  max {max(values) * 1000:6.0f}"
            )
    else:
        print("latency: no document reached B")


if __name__ == "__main__":
    main()
