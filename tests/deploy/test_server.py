"""gateway/server.py pieces that the slow-client tests do not reach directly.

The body deadline fails a read that blocks too long (gevent) and turns server read errors into the
same fault; psycopg imported before gevent's patching still waits cooperatively in a worker (a
PostgreSQL query does not stop the worker's other greenlets), except from an audit append to its
COMMIT, where the worker waits without yielding and a lock wait the worker itself would have to end
fails instead of freezing it; Prometheus multiprocess mode adds up the counts of all gevent workers.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import requests
from reliability.reliability_support import GatewayProcess
from support.postgres import libpq_dsn

from gateway.server import BodyDeadline, BodyTooSlow, _DeadlineInput, _gevent_guard


class _Blocking:
    """A body that never arrives: only the deadline can end a read of it."""

    def read(self, size: int = -1) -> bytes:
        from gevent.event import Event

        Event().wait()
        return b"never"


class _Broken:
    def read(self, size: int = -1) -> bytes:
        raise ConnectionResetError("reset by peer")


def test_a_read_that_blocks_past_the_deadline_fails_with_a_fault() -> None:
    body = _DeadlineInput(_Blocking(), 0.3, _gevent_guard)
    with pytest.raises(BodyTooSlow, match=r"did not arrive within 0.3 s"):
        body.read(10)
    assert BodyTooSlow.code == "Client.MalformedRequest"


def test_a_server_read_error_becomes_the_same_fault() -> None:
    with pytest.raises(BodyTooSlow, match="ConnectionResetError"):
        _DeadlineInput(_Broken(), 5, _gevent_guard).read()


def test_the_middleware_wraps_the_input_and_a_past_deadline_refuses_at_once() -> None:
    import io

    seen: dict[str, object] = {}

    def app(environ: dict[str, object], start_response: object) -> list[bytes]:
        seen["input"] = environ["wsgi.input"]
        return []

    BodyDeadline(app, 0)({"wsgi.input": io.BytesIO(b"x")}, None)
    with pytest.raises(BodyTooSlow):
        seen["input"].read()  # type: ignore[attr-defined]


def _in_patched_worker(body: str) -> list[str]:
    """Run ``body`` in a fresh interpreter that imported psycopg, then patched and chose waits as a worker does.

    ``ticks`` fills while the interpreter's hub runs (every 50 ms), so a wait that yields lets it
    grow and one that blocks the worker does not. Returns what ``body`` printed, split into words.
    """
    script = (
        textwrap.dedent(
            """
            import psycopg, time
            from gevent import monkey
            monkey.patch_all()
            import gevent
            from gateway.server import _prepare_patched_worker
            _prepare_patched_worker()
            ticks = []
            def ticker():
                while True:
                    ticks.append(time.monotonic())
                    gevent.sleep(0.05)
            runner = gevent.spawn(ticker)
            gevent.sleep(0.1)
            """
        )
        + textwrap.dedent(body)
        + "\nrunner.kill()\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_psycopg_imported_before_patching_waits_cooperatively(pg_url: str) -> None:
    """A 1 s query must let the ticker run: one request's query does not stop the worker's others."""
    dsn = libpq_dsn(pg_url)
    printed = _in_patched_worker(
        f"""
        with psycopg.connect({dsn!r}) as conn:
            before = len(ticks)
            conn.execute("SELECT pg_sleep(1)")
            print(len(ticks) - before)
        """
    )
    assert int(printed[-1]) >= 5, "the query blocked the whole worker"


def test_a_transaction_holding_the_audit_chain_blocks_its_worker_until_it_ends(pg_url: str) -> None:
    """From the append to COMMIT the worker waits without yielding (gateway/store/blocking.py).

    Before the append and in the next transaction its waits yield, as every other wait does.
    """
    printed = _in_patched_worker(
        f"""
        from datetime import UTC, datetime
        from sqlalchemy import text
        from gateway.store import audit
        from gateway.store.database import Database
        db = Database({pg_url!r})
        db.upgrade()
        def ticks_during(session, seconds):
            before = len(ticks)
            session.execute(text("SELECT pg_sleep(:s)"), {{"s": seconds}})
            return len(ticks) - before
        with db.transaction() as session:
            before_append = ticks_during(session, 1)
            audit.append(session, "op", "probe", None, {{}}, datetime.now(UTC))
            holding = ticks_during(session, 0.5)
        with db.transaction() as session:
            next_transaction = ticks_during(session, 1)
        print(before_append, holding, next_transaction)
        """
    )
    before_append, holding, next_transaction = map(int, printed[-3:])
    assert holding == 0, "the worker's other greenlets ran while the audit chain's lock was held"
    assert before_append >= 5 and next_transaction >= 5, "a wait outside the held section blocked the worker"


def test_a_request_of_the_same_worker_holding_the_chain_fails_the_wait_instead_of_freezing_it(pg_url: str) -> None:
    """A holder that yields (nothing should, but a future change might) and a second append in the same worker.

    The second append waits for the lock without yielding, so the holder cannot go on: only the
    append's ``lock_timeout`` (migration 0010) ends the wait, with "busy, retry". Without it the
    interpreter would never finish. The holder then commits, and the chain is whole.
    """
    printed = _in_patched_worker(
        f"""
        from datetime import UTC, datetime
        from gateway.errors import Unavailable
        from gateway.store import audit
        from gateway.store.database import Database
        from gateway.store.models import AuditEntry
        audit.APPEND_LOCK_WAIT_MS = 300
        db = Database({pg_url!r})
        db.upgrade()
        outcome = {{}}
        def holder():
            with db.transaction() as session:
                audit.append(session, "op", "holder", None, {{}}, datetime.now(UTC))
                gevent.sleep(0.5)
            outcome["holder"] = "committed"
        def waiter():
            try:
                with db.transaction() as session:
                    audit.append(session, "op", "waiter", None, {{}}, datetime.now(UTC))
                outcome["waiter"] = "committed"
            except Unavailable:
                outcome["waiter"] = "unavailable"
        gevent.joinall([gevent.spawn(holder), gevent.spawn(waiter)])
        with db.transaction() as session:
            audit.append(session, "op", "after", None, {{}}, datetime.now(UTC))
        with db.transaction() as session:
            actions = [entry.action for entry in session.query(AuditEntry).order_by(AuditEntry.id)]
            verified = audit.verify(session).ok
        print(outcome["holder"], outcome["waiter"], ",".join(actions), verified)
        """
    )
    assert printed[-4:] == ["committed", "unavailable", "holder,after", "True"], printed


def test_a_batch_of_new_blobs_is_written_off_the_worker_and_a_single_blob_in_place(tmp_path: Path) -> None:
    """A worker hands a batch's fsyncs to gevent's thread pool (gateway/store/blocking.py): its other
    requests run while the disk flushes. One blob stays in place: handing it off measured no gain.

    Every fsync here takes 0.2 s of real blocking, so the ticker (every 50 ms) shows which waits yield.
    """
    printed = _in_patched_worker(
        f"""
        import os
        from gevent import monkey as patching
        from gateway.store.blobs import BlobStore
        real_sleep, real_fsync = patching.get_original("time", "sleep"), os.fsync
        os.fsync = lambda fd: (real_sleep(0.2), real_fsync(fd))[1]
        store = BlobStore({str(tmp_path)!r})
        before = len(ticks)
        batch = store.put_many([b"first", b"second", b"third"])
        print(len(ticks) - before)
        before = len(ticks)
        single = store.put_bytes(b"alone")
        print(len(ticks) - before)
        print(all(store.verify(sha256) for sha256, _ in [*batch, single]))
        """
    )
    batch_ticks, single_ticks, verified = printed[-3:]
    assert int(batch_ticks) >= 5, "the batch's fsyncs blocked the whole worker"
    assert int(single_ticks) == 0, "a single blob was handed off (or the ticker measure is broken)"
    assert verified == "True"


def test_metrics_add_up_across_gevent_workers(tmp_path: Path) -> None:
    gateway = GatewayProcess(tmp_path / "var", workers=2)
    gateway.start()
    try:
        base = f"http://127.0.0.1:{gateway.port}"
        calls = 20
        for _ in range(calls):
            assert requests.get(f"{base}/health", timeout=10).status_code == 200
        text = requests.get(f"{base}/metrics", timeout=10).text
    finally:
        gateway.stop()
    counted = re.search(r'^gateway_http_requests_total\{operation="health",status="200"\} (\S+)$', text, re.M)
    assert counted, text[:2000]
    assert float(counted[1]) >= calls


def test_production_ignores_forwarded_scheme_headers_without_trusted_proxy(tmp_path: Path) -> None:
    """gunicorn's own trust of X-Forwarded-Proto from 127.0.0.1 is off: only GATEWAY_TRUSTED_PROXY reads it."""
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Ssl": "on", "X-Forwarded-Protocol": "ssl"}
    gateway = GatewayProcess(tmp_path / "var", workers=1, env={"GATEWAY_PUBLIC_URL": "", "GATEWAY_TRUSTED_PROXY": "0"})
    gateway.start()
    try:
        served = requests.get(f"{gateway.url}?wsdl", headers=forwarded, timeout=30)
    finally:
        gateway.stop()
    assert served.status_code == 200
    assert f'location="{gateway.url}"' in served.text, re.findall(r'location="[^"]*"', served.text)
