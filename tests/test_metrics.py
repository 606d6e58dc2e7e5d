"""``/metrics``: requests and faults counted after real SOAP calls, store gauges, gunicorn workers.

The single-process tests run a threaded gateway on SQLite and on PostgreSQL and call it with
zeep; the multiprocess test starts gunicorn with two workers as a subprocess, as ``serve`` does,
and checks the counters are summed over both and the store gauges are not.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import zeep.exceptions
from prometheus_client import CollectorRegistry, multiprocess, values
from prometheus_client.parser import text_string_to_metric_families
from support.queue_counts import pending_counts
from support.statements import counting
from web.web_support import (
    CAO_BANG,
    NGHE_AN,
    NS,
    VPCP,
    Live,
    http_get,
    letter,
    scripted_exchange,
    secret_of,
    seed_directory,
    serving,
    soap_client,
)

from gateway import metrics as gateway_metrics
from gateway.config import Settings
from gateway.metrics import StoreCollector, prepare_multiprocess_dir
from gateway.store.database import Database

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _samples(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _scrape(base: str) -> Samples:
    response = http_get(f"{base}/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    return _samples(response.text)


def _scrape_once_counted(
    base: str, operation: str, status: str, at_least: float = 1, attempts: int = 50
) -> tuple[Samples, int]:
    """Scrape after the server has counted the last request (``at_least`` of ``operation``/``status``).

    A request is counted when the server closes its response, which a server thread or gunicorn worker may do just
    after the client has read the last byte; so a scrape right behind it can miss that one count.
    Returns the samples and how many scrapes it took.
    """
    scrapes = 1
    samples = _scrape(base)
    while scrapes < attempts and (
        _value(samples, "gateway_http_requests_total", operation=operation, status=status) < at_least
    ):
        time.sleep(0.1)
        samples, scrapes = _scrape(base), scrapes + 1
    return samples, scrapes


def _post(url: str, body: bytes, action: str | None = None) -> int:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "text/xml; charset=utf-8"})
    if action is not None:
        request.add_header("SOAPAction", action)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as error:
        error.read()
        return int(error.code)


def _envelope(code: str, operation: str, inner: str = "") -> bytes:
    return (
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        f'xmlns:tns="{NS}"><soapenv:Header><tns:AuthHeader><tns:agencyCode>{code}</tns:agencyCode>'
        f"<tns:secret>{secret_of(code)}</tns:secret></tns:AuthHeader></soapenv:Header>"
        f"<soapenv:Body><tns:{operation}>{inner}</tns:{operation}></soapenv:Body></soapenv:Envelope>"
    ).encode()


@pytest.fixture
def live(tmp_path: Path, db_url: str) -> Iterator[Live]:
    """A gateway whose /metrics names agencies and reads the store on every scrape."""
    settings = Settings(
        data_dir=tmp_path / "var",
        database_url=db_url,
        lease_seconds=60,
        ack_overdue_hours=0,
        metrics_agency_labels=True,
        metrics_cache_seconds=0,
    )
    with serving(settings) as gateway:
        yield gateway


@pytest.fixture
def default_live(tmp_path: Path, sqlite_url: str) -> Iterator[Live]:
    """A gateway with the default metrics settings (no agency labels, 5 s store cache, no token)."""
    with serving(Settings(data_dir=tmp_path / "var", database_url=sqlite_url)) as gateway:
        yield gateway


def test_requests_and_faults_are_counted_by_operation_and_code(live: Live) -> None:
    scripted_exchange(live)
    nghe_an = live.client(NGHE_AN)
    with pytest.raises(zeep.exceptions.Fault) as not_found:
        nghe_an.service.getDocument(itemId="00000000-0000-0000-0000-000000000000")
    assert not_found.value.code.endswith("Client.NotFound")
    with pytest.raises(zeep.exceptions.Fault) as refused:
        live.client(VPCP, secret="wrong").service.getAgencies()
    assert refused.value.code.endswith("Client.AuthenticationFailed")
    soap = f"{live.base}/soap"
    assert _post(soap, b"<not-xml", action=None) == 500
    assert _post(soap, _envelope(VPCP, "getAgencies"), action=None) == 200, "named from the body"
    assert _post(soap, _envelope(VPCP, "getAgencies"), action='"urn:x#getStatusHistory"') == 500

    samples, scrapes = _scrape_once_counted(live.base, "getStatusHistory", "500")
    requests = "gateway_http_requests_total"
    for operation in ("sendDocument", "getPendingDocuments", "confirmReceived", "updateStatus"):
        assert _value(samples, requests, operation=operation, status="200") == 1, operation
    assert _value(samples, requests, operation="getDocument", status="200") == 1
    assert _value(samples, requests, operation="getDocument", status="500") == 1
    assert _value(samples, requests, operation="getAgencies", status="200") == 1
    assert _value(samples, requests, operation="getAgencies", status="500") == 1
    assert _value(samples, requests, operation="getStatusHistory", status="500") == 1
    assert _value(samples, requests, operation="unknown", status="500") == 1
    assert _value(samples, requests, operation="wsdl", status="200") >= 3, "each zeep client reads the WSDL"

    faults = "gateway_soap_faults_total"
    counted = {
        (dict(labels)["operation"], dict(labels)["code"]): value
        for (name, labels), value in samples.items()
        if name == faults
    }
    assert counted == {
        ("getDocument", "Client.NotFound"): 1,
        ("getAgencies", "Client.AuthenticationFailed"): 1,
        ("unknown", "Client.MalformedRequest"): 1,
        ("getStatusHistory", "Client.MalformedRequest"): 1,
    }
    latency = "gateway_request_duration_seconds"
    assert _value(samples, f"{latency}_count", operation="sendDocument") == 1
    assert _value(samples, f"{latency}_bucket", operation="sendDocument", le="+Inf") == 1
    assert _value(samples, f"{latency}_sum", operation="sendDocument") > 0

    again = _scrape(live.base)
    counted = _value(again, requests, operation="metrics", status="200")
    assert scrapes - 1 <= counted <= scrapes, "earlier scrapes are counted (the last one perhaps not yet closed)"


def test_store_gauges_are_what_the_store_holds(live: Live) -> None:
    scripted_exchange(live)
    samples = _scrape(live.base)
    with live.db.transaction() as session:
        pending = pending_counts(session)
    assert _value(samples, "gateway_store_up") == 1
    assert _value(samples, "gateway_recipient_copies", status="05") == 1
    assert _value(samples, "gateway_recipient_copies", status="none") == 1
    assert _value(samples, "gateway_queue_depth", agency=VPCP) == 2
    assert _value(samples, "gateway_queue_depth", agency=CAO_BANG) == 1
    assert _value(samples, "gateway_queue_depth_total") == sum(pending.values()) == 3
    assert _value(samples, "gateway_queue_agencies") == len(pending) == 2
    assert _value(samples, "gateway_documents_in_flight") == 1
    assert _value(samples, "gateway_copies_in_flight") == 2
    assert _value(samples, "gateway_overdue_copies") == 1, "Cao Bằng has not acknowledged, and 0 h are allowed"
    assert _value(samples, "gateway_failed_deliveries") == 0
    again = _scrape(live.base)
    assert _value(again, "gateway_queue_depth_total") == 3, "gauges are read afresh, never accumulated"


def test_only_the_deepest_queues_get_their_own_series(live: Live) -> None:
    scripted_exchange(live)
    collector = StoreCollector(live.db, ack_overdue_hours=0, top_queues=1, agency_labels=True)
    families = {f.name: f for f in collector.collect()}
    assert [(s.labels, s.value) for s in families["gateway_queue_depth"].samples] == [({"agency": VPCP}, 2)]
    assert families["gateway_queue_depth_total"].samples[0].value == 3


def test_an_unreachable_store_is_reported_not_raised(tmp_path: Path) -> None:
    db = Database("postgresql+psycopg://nobody@127.0.0.1:9/none?connect_timeout=2")
    try:
        families = list(StoreCollector(db, ack_overdue_hours=24).collect())
    finally:
        db.dispose()
    assert [(f.name, f.samples[0].value) for f in families][:1] == [("gateway_store_up", 0)]
    assert [f.name for f in families] == ["gateway_store_up", "gateway_store_gauges_age_seconds"]


# -- who may scrape, what it shows, what it costs -------------------------------------------------


def test_by_default_no_agency_is_named(default_live: Live) -> None:
    scripted_exchange(default_live)
    response = http_get(f"{default_live.base}/metrics")
    samples = _samples(response.text)
    assert _value(samples, "gateway_queue_depth_total") == 3
    assert not [name for name, _ in samples if name == "gateway_queue_depth"]
    for code in (VPCP, NGHE_AN, CAO_BANG):
        assert code not in response.text, f"{code} appears in /metrics"


def _authorization(base: str, value: str | None) -> int:
    """The status of a scrape sending ``value`` as Authorization (sent as UTF-8 bytes)."""
    request = urllib.request.Request(f"{base}/metrics")
    if value is not None:
        request.add_header("Authorization", value.encode().decode("latin-1"))
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            assert "gateway_http_requests_total" in response.read().decode()
            return int(response.status)
    except urllib.error.HTTPError as error:
        if error.code == 401:
            challenges = error.headers.get_all("WWW-Authenticate")
            assert {c.split()[0] for c in challenges} == {"Bearer", "Basic"}, challenges
        error.read()
        return int(error.code)


def test_a_metrics_token_is_required_when_set(tmp_path: Path, sqlite_url: str) -> None:
    settings = Settings(data_dir=tmp_path / "var", database_url=sqlite_url, metrics_token="scrape-Tôken-42")
    with serving(settings) as live:

        def basic(user: str, password: str) -> str:
            return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

        base = live.base
        assert _authorization(base, None) == 401
        assert _authorization(base, "Bearer scrape-Tôken-4") == 401
        assert _authorization(base, "Bearer scrape-Tôken-42x") == 401
        assert _authorization(base, basic("prometheus", "wrong")) == 401
        assert _authorization(base, "Basic not-base64!") == 401
        assert _authorization(base, "Digest scrape-Tôken-42") == 401
        assert _authorization(base, "Bearer scrape-Tôken-42") == 200
        assert _authorization(base, basic("prometheus", "scrape-Tôken-42")) == 200
        assert _authorization(base, basic("", "scrape-Tôken-42")) == 200, "any user name"
        assert http_get(f"{live.base}/health").status == 200, "only /metrics is behind the token"


def test_rapid_scrapes_read_the_store_once_per_interval(tmp_path: Path, sqlite_url: str) -> None:
    settings = Settings(data_dir=tmp_path / "var", database_url=sqlite_url, metrics_cache_seconds=60)
    with serving(settings) as live:
        scripted_exchange(live)
        with counting(live.app.gateway.db.engine) as statements:
            first = _scrape(live.base)
            one_reading = len(statements)
            assert one_reading > 0, "the first scrape reads the store"
            for _ in range(20):
                again = _scrape(live.base)
            assert len(statements) == one_reading, "20 more scrapes within the interval ran no statement"
            assert _value(again, "gateway_queue_depth_total") == _value(first, "gateway_queue_depth_total") == 3

            store = live.app.metrics.store
            assert store is not None
            real_clock = store.clock
            store.clock = lambda: real_clock() + 61
            later = _scrape(live.base)
            assert len(statements) == 2 * one_reading, "past the interval the store is read again, once"
            assert _value(later, "gateway_store_gauges_age_seconds") < 61, "a new reading, not the one of 61 s ago"


# -- multiprocess mode ----------------------------------------------------------------------------


def test_prepare_multiprocess_dir_wipes_the_last_run_and_exports_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(values, "ValueClass", values.ValueClass)
    monkeypatch.delenv(gateway_metrics.MULTIPROC_ENV, raising=False)
    chosen = tmp_path / "prom"
    chosen.mkdir()
    (chosen / "counter_12345.db").write_bytes(b"stale")
    (chosen / "README").write_text("kept")
    assert prepare_multiprocess_dir(chosen) == chosen
    assert os.environ[gateway_metrics.MULTIPROC_ENV] == str(chosen)
    assert sorted(p.name for p in chosen.iterdir()) == ["README"]
    assert getattr(values.ValueClass, "_multiprocess", False)

    from_env = tmp_path / "from-env"
    monkeypatch.setenv(gateway_metrics.MULTIPROC_ENV, str(from_env))
    assert prepare_multiprocess_dir(tmp_path / "ignored") == from_env
    assert from_env.is_dir() and not (tmp_path / "ignored").exists()


IMPORTED_FIRST = """
import os, sys
from pathlib import Path
import gateway.app  # what serve imports before it starts gunicorn: prometheus_client comes with it
from gateway.metrics import Metrics, prepare_multiprocess_dir
assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
prepare_multiprocess_dir(Path(sys.argv[1]))
if os.fork() == 0:  # a gunicorn worker
    Metrics().requests.labels("health", "200").inc(7)
    os._exit(0)
os.wait()
"""


def test_prepare_works_after_prometheus_client_was_imported(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != gateway_metrics.MULTIPROC_ENV}
    subprocess.run([sys.executable, "-c", IMPORTED_FIRST, str(tmp_path / "prom")], env=env, check=True, timeout=120)
    [written] = (tmp_path / "prom").glob("counter_*.db")
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, str(tmp_path / "prom"))
    assert registry.get_sample_value("gateway_http_requests_total", {"operation": "health", "status": "200"}) == 7, (
        written
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_healthy(base: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"gunicorn exited with {process.returncode}")
        try:
            if http_get(f"{base}/health").status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError("gunicorn did not answer /health in time")


STALE_COUNTS = """
from gateway.metrics import Metrics
Metrics().requests.labels("health", "200").inc(1000)
"""


@pytest.mark.slow
def test_two_gunicorn_workers_are_summed_and_the_store_is_counted_once(tmp_path: Path, sqlite_url: str) -> None:
    data_dir, prom = tmp_path / "var", tmp_path / "prom"
    prom.mkdir()
    env = {
        **os.environ,
        "GATEWAY_DATA_DIR": str(data_dir),
        "GATEWAY_DATABASE_URL": sqlite_url,
        "PROMETHEUS_MULTIPROC_DIR": str(prom),
    }
    subprocess.run([sys.executable, "-c", STALE_COUNTS], env=env, check=True, timeout=120)
    assert list(prom.glob("counter_*.db")), "a previous run left its counts behind"

    db = Database(sqlite_url)
    db.upgrade()
    seed_directory(db)
    db.dispose()
    port = _free_port()
    config = tmp_path / "gunicorn.conf.py"
    config.write_text(
        "from pathlib import Path\n"
        "from gateway.metrics import child_exit, prepare_multiprocess_dir\n"
        f"prepare_multiprocess_dir(Path({str(prom)!r}))\n"
        f"bind = '127.0.0.1:{port}'\n"
        "workers = 2\n"
        "worker_class = 'sync'\n",
        encoding="utf-8",
    )
    gunicorn = Path(sys.executable).with_name("gunicorn")
    process = subprocess.Popen(
        [str(gunicorn), "-c", str(config), "gateway.app:create_app()"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(base, process)
        soap_client(f"{base}/soap?wsdl", VPCP).service.sendDocument(document=letter(VPCP, [NGHE_AN, CAO_BANG]))

        calls = 200
        errors: list[BaseException] = []

        def hammer(count: int) -> None:
            try:
                for _ in range(count):
                    assert http_get(f"{base}/health").status == 200
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=hammer, args=(calls // 8,)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors

        pids = {p.stem.rsplit("_", 1)[1] for p in prom.glob("counter_*.db")}
        assert len(pids) >= 2, f"both workers served requests: {sorted(pids)}"
        first, _ = _scrape_once_counted(base, "health", "200", at_least=calls + 1)
        second = _scrape(base)
        health = _value(first, "gateway_http_requests_total", operation="health", status="200")
        assert health == calls + 1, "the hammering plus the poll that saw the gateway up; not the stale 1000"
        assert _value(first, "gateway_http_requests_total", operation="sendDocument", status="200") == 1
        assert _value(second, "gateway_http_requests_total", operation="metrics", status="200") >= 1
        for samples in (first, second):
            assert _value(samples, "gateway_queue_depth_total") == 2, "store gauges come once, from the scraper"
            assert _value(samples, "gateway_recipient_copies", status="none") == 2
            assert _value(samples, "gateway_store_up") == 1
    finally:
        process.terminate()
        try:
            _, stderr = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate()
    assert process.returncode == 0, stderr.decode(errors="replace")[-2000:]
