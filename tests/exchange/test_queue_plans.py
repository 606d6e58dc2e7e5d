"""How the receiving calls find their queue items in a deep queue, on a table nobody has analysed.

SQLite never gathers statistics by itself, and PostgreSQL has none until ANALYZE (autovacuum runs it
only where it is on; the CI server has it off). Without them both planners once chose
``ix_deliveries_queue`` for statements that name their items by id, reading every pending item of
the agency to find the few named, and sorted every pending item before leasing ten
(docs/storage.md §2). The statement counts cannot see that: each call was still one statement.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from exchange_support import RECIPIENT, SENDER, T0, Callers
from sqlalchemy import insert
from support.letters import official_letter
from support.staging import stage
from support.statements import with_parameters

from gateway.exchange.service import ExchangeService
from gateway.store import queue
from gateway.store.models import Delivery

DEPTH = 3000
"""Pending items in the recipient's queue (and as many in another agency's): deep enough that a
planner believing the table small would still rather scan than look up, had it the choice."""


def plan(service: ExchangeService, statement: str, parameters: Any) -> str:
    """The plan the database would use for ``statement`` now, one line per step."""
    explain = "EXPLAIN " if service.db.dialect_name == "postgresql" else "EXPLAIN QUERY PLAN "
    with service.db.engine.connect() as connection:
        rows = connection.exec_driver_sql(explain + statement, parameters).all()
    return "\n".join(str(row[-1]) for row in rows)


def deep_queue(service: ExchangeService, callers: Callers) -> None:
    """One real document sent to the recipient, then ``DEPTH`` more copies of it queued behind it."""
    edxml = official_letter(SENDER, [RECIPIENT], number="1")
    document_id = service.send_document(callers.sender, stage(service, edxml)).document_id
    rows = [
        row
        for i in range(DEPTH)
        for row in queue.item_rows(
            [callers.recipient.agency_id, callers.third.agency_id],
            queue.KIND_DOCUMENT,
            document_id,
            T0 + timedelta(seconds=1, milliseconds=i),
        )
    ]
    with service.db.transaction() as session:
        session.execute(insert(Delivery), rows)


def test_items_named_by_id_are_found_by_key_and_a_lease_reads_no_more_than_it_takes(
    service: ExchangeService, callers: Callers
) -> None:
    deep_queue(service, callers)
    recipient = service.authenticate(RECIPIENT, f"s-{RECIPIENT}")
    with with_parameters(service.db.engine) as executed:
        items = [item.item_id for item in service.pending(recipient, 10)]
        service.fetch(recipient, items[0])
        service.fetch_many(recipient, items[1:])
        service.acknowledge(recipient, items[0])
        assert service.acknowledge_many(recipient, items) == 9
        assert service.acknowledge_many(recipient, items) == 0  # all acknowledged: their states are read
    assert len(items) == 10
    postgresql = service.db.dialect_name == "postgresql"
    primary_key = "deliveries_pkey" if postgresql else "sqlite_autoindex_deliveries_1"
    by_id = [(s, p) for s, p in executed if "deliveries.id IN (" in s or "deliveries.id = " in s]
    leases = [(s, p) for s, p in by_id if "ORDER BY deliveries.created_at" in s]
    named = [(s, p) for s, p in by_id if (s, p) not in leases and not s.startswith("INSERT")]
    assert len(leases) == 1 and len(named) >= 6, executed
    for statement, parameters in named:
        steps = plan(service, statement, parameters)
        assert primary_key in steps and "ix_deliveries_queue" not in steps, (statement, steps)
    steps = plan(service, *leases[0])
    assert "ix_deliveries_queue" in steps, steps
    assert ("Sort" not in steps) if postgresql else ("TEMP B-TREE" not in steps), steps
