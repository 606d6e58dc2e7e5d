"""gateway/server.py pieces that the slow-client tests do not reach directly.

The body deadline fails a read that blocks too long (gevent) and turns server read errors into the
same fault; psycopg imported before gevent's patching still waits cooperatively in a worker (a
PostgreSQL query does not stop the worker's other greenlets); Prometheus multiprocess mode adds
up the counts of all gevent workers.
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


def test_psycopg_imported_before_patching_waits_cooperatively(pg_url: str) -> None:
    """In a fresh interpreter: import psycopg, patch like a worker, then a 1 s query must let a ticker run."""
    from sqlalchemy import make_url

    dsn = make_url(pg_url).set(drivername="postgresql").render_as_string(hide_password=False)
    script = textwrap.dedent(
        f"""
        import psycopg, time
        from gevent import monkey
        monkey.patch_all()
        import gevent
        from gateway.server import _cooperative_psycopg
        _cooperative_psycopg()
        ticks = []
        def ticker():
            while True:
                ticks.append(time.monotonic())
                gevent.sleep(0.05)
        runner = gevent.spawn(ticker)
        with psycopg.connect({dsn!r}) as conn:
            conn.execute("SELECT pg_sleep(1)")
        runner.kill()
        print(len(ticks))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.split()[-1]) >= 5, "the query blocked the whole worker"


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
