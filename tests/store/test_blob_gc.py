"""Blob garbage collection: only old blobs no row names go, never one a send is about to name.

The interleavings that matter (a send reusing a stored blob between the collector's scan and its
unlink, before or after the collector claims the file) are forced step by step; a last test runs
sends, fetches and collections in threads at once on both backends and checks every stored
document still verifies.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import ParamSpec, TypeVar

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select
from support.blobs import blob_exists
from support.staging import stage

from gateway.cli import main
from gateway.config import Settings
from gateway.edxml import DocumentMessage, Organization, document_bytes
from gateway.errors import Unavailable
from gateway.exchange.credentials import hash_secret
from gateway.exchange.service import ExchangeService
from gateway.store import audit, blob_gc
from gateway.store.blob_gc import Collector, CollectorBusy, GcReport, collect
from gateway.store.blobs import BlobStore
from gateway.store.database import Database
from gateway.store.models import Agency, AuditEntry, Credential, Document, StatusEvent

SENDER, RECIPIENT = "000.00.00.G22", "000.00.00.H41"
T0 = datetime(2026, 11, 20, 1, 30, tzinfo=UTC)
TWO_DAYS = 2 * 24 * 3600


def age(blobs: BlobStore, sha256: str, seconds: float = TWO_DAYS) -> None:
    """Pretend blob ``sha256`` was last written ``seconds`` ago."""
    then = time.time() - seconds
    os.utime(blobs.path(sha256), (then, then))


def orphan(blobs: BlobStore, data: bytes, *, old: bool = True) -> str:
    """A blob no row names, as a crash between its fsync and its row's commit leaves it."""
    sha256, _ = blobs.put_bytes(data)
    if old:
        age(blobs, sha256)
    return sha256


def letter(number: int) -> bytes:
    message = DocumentMessage(
        sender=Organization(SENDER, "Văn phòng Chính phủ"),
        recipients=(Organization(RECIPIENT, "UBND tỉnh Nghệ An"),),
        code_number=str(number),
        code_notation="VPCP-TTĐT",
        promulgation_date=date(2026, 11, 19),
        type_code=1,
        type_name="Công văn",
        subject=f"Thử nghiệm thu gom {number}",
        document_id=f"{SENDER},2026/11/19,{number}/VPCP-TTĐT",
    )
    return document_bytes(message)


@pytest.fixture
def service(database: Database, tmp_path: Path) -> ExchangeService:
    with database.transaction() as session:
        for code in (SENDER, RECIPIENT):
            agency = Agency(code=code, name=f"Cơ quan {code}", level=1, created_at=T0)
            session.add(agency)
            session.flush()
            session.add(Credential(agency_id=agency.id, secret_hash=hash_secret(f"s-{code}"), created_at=T0))
    settings = Settings(data_dir=tmp_path, database_url=str(database.url))
    return ExchangeService(database, BlobStore(tmp_path / "blobs"), settings)


def send(service: ExchangeService, data: bytes) -> str:
    caller = service.authenticate(SENDER, f"s-{SENDER}")
    return service.send_document(caller, stage(service, data)).document_id


P = ParamSpec("P")
R = TypeVar("R")


def retrying(operation: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Call ``operation``, retrying Unavailable a few times as a client is told to.

    Six threads writing back to back can keep SQLite's single write lock from a waiter for longer
    than the busy timeout on a loaded machine; the answer is then Unavailable ("nothing was stored,
    please retry"), which is not what this module tests.
    """
    for _ in range(20):
        try:
            return operation(*args, **kwargs)
        except Unavailable:
            time.sleep(0.1)
    return operation(*args, **kwargs)


def blob_of(database: Database, document_id: str) -> str:
    with database.transaction(readonly=True) as session:
        return session.get_one(Document, document_id).blob_sha256


def test_only_old_blobs_no_row_names_are_freed_and_the_run_is_audited(
    service: ExchangeService, database: Database
) -> None:
    blobs = service.blobs
    kept_document = blob_of(database, send(service, letter(1)))
    age(blobs, kept_document)
    recipient = service.authenticate(RECIPIENT, f"s-{RECIPIENT}")
    (item,) = service.pending(recipient)
    service.fetch(recipient, item.item_id)  # records 01: a status message blob named by status_events
    with database.transaction(readonly=True) as session:
        kept_status = session.scalars(select(StatusEvent.blob_sha256)).one()
    assert kept_status is not None
    age(blobs, kept_status)
    old = [orphan(blobs, f"orphan {i}".encode()) for i in range(3)]
    young = orphan(blobs, b"written a minute ago", old=False)

    preview = collect(database, blobs, dry_run=True)
    assert (preview.freed_files, sorted(preview.freed)) == (3, sorted(old))
    assert all(blob_exists(blobs, sha) for sha in old), "a dry run removes nothing"

    report = collect(database, blobs)
    assert sorted(report.freed) == sorted(old)
    assert report.freed_bytes == sum(len(f"orphan {i}".encode()) for i in range(3))
    assert (report.scanned, report.referenced, report.young) == (6, 2, 1)
    assert {"documents.blob_sha256", "status_events.blob_sha256"} <= set(report.columns)
    assert not any(blob_exists(blobs, sha) for sha in old)
    assert blobs.verify(kept_document) and blobs.verify(kept_status) and blobs.verify(young)
    with database.transaction(readonly=True) as session:
        entry = session.scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(1)).one()
        assert audit.verify(session).ok
    assert entry.action == "blobs_gc"
    assert '"freed_files":3' in entry.detail.replace(" ", "")
    assert collect(database, blobs).freed_files == 0, "a second run finds nothing left"


def test_a_column_a_later_release_adds_is_honoured(database: Database, blob_store: BlobStore) -> None:
    sha = orphan(blob_store, b"relayed payload")
    with database.engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE future_archive (id INTEGER PRIMARY KEY, payload_sha256 VARCHAR(64))")
        connection.exec_driver_sql(f"INSERT INTO future_archive (id, payload_sha256) VALUES (1, '{sha}')")
    report = collect(database, blob_store)
    assert "future_archive.payload_sha256" in report.columns
    assert report.freed_files == 0 and blob_store.verify(sha)


def test_reusing_an_old_blob_refreshes_it_so_the_grace_period_protects_it(
    database: Database, blob_store: BlobStore
) -> None:
    sha = orphan(blob_store, b"the same document, sent again after a crash")
    assert blob_store.put_bytes(b"the same document, sent again after a crash")[0] == sha
    assert time.time() - blob_store.path(sha).stat().st_mtime < 60
    assert collect(database, blob_store).freed_files == 0
    assert blob_store.verify(sha)


def _insert_document(database: Database, sha256: str) -> None:
    with database.transaction() as session:
        agency = session.scalar(select(Agency).limit(1))
        if agency is None:
            agency = Agency(code=SENDER, name="Văn phòng Chính phủ", level=1, created_at=T0)
            session.add(agency)
            session.flush()
        session.add(
            Document(
                id=hashlib.md5(sha256.encode()).hexdigest(),
                sender_id=agency.id,
                edxml_document_id=sha256,
                code_number="1",
                code_notation="X",
                subject="s",
                type_name="t",
                promulgation_date=date(2026, 11, 1),
                blob_sha256=sha256,
                size=1,
                created_at=T0,
            )
        )


def test_a_send_reusing_a_candidate_between_scan_and_claim_keeps_it(database: Database, blob_store: BlobStore) -> None:
    data = b"orphan that a retried send is about to reuse"
    sha = orphan(blob_store, data)
    collector = Collector(database, blob_store)
    assert sha in collector.candidates(GcReport())
    blob_store.put_bytes(data)  # the send's dedup path: refreshes the blob, drops its own copy
    assert collector.reclaim(sha) is None, "refreshed after the scan: put back"
    _insert_document(database, sha)
    assert blob_store.verify(sha)


@pytest.mark.parametrize("committed_before_check", [True, False])
def test_a_send_arriving_after_the_claim_installs_its_own_copy(
    database: Database, blob_store: BlobStore, monkeypatch: pytest.MonkeyPatch, committed_before_check: bool
) -> None:
    data = b"orphan claimed by the collector while a send arrives"
    sha = orphan(blob_store, data)
    collector = Collector(database, blob_store)
    assert sha in collector.candidates(GcReport())
    real_rename = os.rename

    def rename_then_send(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        real_rename(src, dst)
        blob_store.put_bytes(data)  # finds no blob at its name: installs its own copy
        if committed_before_check:
            _insert_document(database, sha)

    monkeypatch.setattr(blob_gc.os, "rename", rename_then_send)
    collector.reclaim(sha)
    monkeypatch.undo()
    if not committed_before_check:
        _insert_document(database, sha)
    assert blob_store.verify(sha)
    assert list((blob_store.root / "quarantine").iterdir()) == []


def test_an_interrupted_collection_is_undone_by_the_next(database: Database, blob_store: BlobStore) -> None:
    sha = orphan(blob_store, b"named by a row; a collector died holding it")
    _insert_document(database, sha)
    quarantine = blob_store.root / "quarantine"
    quarantine.mkdir()
    os.rename(blob_store.path(sha), quarantine / sha)
    report = collect(database, blob_store)
    assert report.recovered == 1 and report.freed_files == 0
    assert blob_store.verify(sha)


def test_one_collector_at_a_time_per_blob_directory(database: Database, blob_store: BlobStore) -> None:
    with blob_gc.collector_lock(blob_store), pytest.raises(CollectorBusy, match="another `blobs gc` is running"):
        collect(database, blob_store)


def test_a_grace_period_under_an_hour_is_refused(database: Database, blob_store: BlobStore) -> None:
    with pytest.raises(ValueError, match="at least"):
        Collector(database, blob_store, timedelta(minutes=5))


def blobs_gc(database_url: str, blob_dir: Path, *args: str) -> Result:
    """``edxml-gateway blobs gc ARGS``, in-process, on ``database_url`` and the blobs under ``blob_dir``."""
    command = ["--database-url", database_url, "blobs", "gc", *args]
    return CliRunner().invoke(main, command, env={"GATEWAY_BLOB_DIR": str(blob_dir)})


def test_cli_reports_what_it_freed(database: Database, tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "cli-blobs")
    sha = orphan(blobs, b"x" * 1000)
    url = database.url.render_as_string(hide_password=False)
    dry = blobs_gc(url, blobs.root, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "Would free 1 blob file(s), 1,000 bytes" in dry.output and blob_exists(blobs, sha)
    done = blobs_gc(url, blobs.root, "--grace-hours", "49")
    assert done.exit_code == 0 and "Freed 0 blob file(s)" in done.output, "two days old, grace 49 h: kept"
    done = blobs_gc(url, blobs.root)
    assert "Freed 1 blob file(s), 1,000 bytes" in done.output and "audit log" in done.output
    assert "Put back" not in done.output, "nothing was left in quarantine"
    assert not blob_exists(blobs, sha)
    refused = blobs_gc(url, blobs.root, "--grace-hours", "0.1")
    assert refused.exit_code == 2 and "0.1" in refused.output


def test_cli_says_what_an_interrupted_collection_left_and_that_it_was_put_back(
    database: Database, blob_store: BlobStore
) -> None:
    sha = orphan(blob_store, b"named by a row; a collector died holding it")
    _insert_document(database, sha)
    (blob_store.root / "quarantine").mkdir()
    os.rename(blob_store.path(sha), blob_store.root / "quarantine" / sha)
    done = blobs_gc(database.url.render_as_string(hide_password=False), blob_store.root)
    assert done.exit_code == 0, done.output
    assert "Freed 0 blob file(s)" in done.output
    assert "Put back 1 blob(s) an interrupted collection had left in quarantine." in done.output
    assert blob_store.verify(sha)


def test_cli_refuses_while_another_collector_runs(database: Database, blob_store: BlobStore) -> None:
    sha = orphan(blob_store, b"an orphan the running collector will deal with")
    with blob_gc.collector_lock(blob_store):
        busy = blobs_gc(database.url.render_as_string(hide_password=False), blob_store.root)
    assert busy.exit_code == 1
    assert f"Error: another `blobs gc` is running on {blob_store.root}; try again when it ends" in busy.output
    assert blob_exists(blob_store, sha), "the refused run removed nothing"


def test_cli_refuses_a_store_that_was_never_migrated(db_url: str, blob_store: BlobStore) -> None:
    refused = blobs_gc(db_url, blob_store.root)
    assert refused.exit_code == 1
    assert "has no gateway tables yet; run `edxml-gateway db upgrade` first." in refused.output


def test_cli_refuses_a_blob_directory_that_does_not_exist(database: Database, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-blobs"
    refused = blobs_gc(database.url.render_as_string(hide_password=False), missing)
    assert refused.exit_code == 1
    assert f"Error: no blob directory at {missing} (GATEWAY_BLOB_DIR)" in refused.output
    assert not missing.exists(), "the collector does not create the directory it was pointed at"


@pytest.fixture
def aged_retries(service: ExchangeService) -> Iterator[tuple[list[bytes], list[str], list[str]]]:
    """Letters whose bytes already lie in the store as old orphans (a crash before their first commit),
    unrelated old orphans, and young orphans."""
    letters = [letter(n) for n in range(100, 160)]
    for data in letters[::2]:
        orphan(service.blobs, data)
    garbage = [orphan(service.blobs, os.urandom(2000)) for _ in range(20)]
    young = [orphan(service.blobs, os.urandom(2000), old=False) for _ in range(5)]
    yield letters, garbage, young


@pytest.mark.slow
def test_sends_fetches_and_collections_at_once_lose_nothing(
    service: ExchangeService, database: Database, aged_retries: tuple[list[bytes], list[str], list[str]]
) -> None:
    letters, garbage, young = aged_retries
    blobs = service.blobs
    recipient = service.authenticate(RECIPIENT, f"s-{RECIPIENT}")
    sent: list[str] = []
    errors: list[BaseException] = []
    reports: list[GcReport] = []
    done = threading.Event()

    def sender(part: list[bytes]) -> None:
        try:
            for data in part:
                sent.append(retrying(send, service, data))
                retrying(send, service, data)  # a resend: same (sender, DocumentId), stored once
        except BaseException as error:
            errors.append(error)

    def puller() -> None:
        try:
            while not done.is_set():
                for item in retrying(service.pending, recipient, 10):
                    retrying(service.fetch, recipient, item.item_id)
                    retrying(service.acknowledge, recipient, item.item_id)
        except BaseException as error:
            errors.append(error)

    def collector() -> None:
        # Back to back, as fast as the store allows, but not so fast that their audit entries alone keep
        # SQLite's single writer lock busy for the busy timeout (a real collector runs once a day).
        try:
            while not done.wait(0.05):
                with contextlib.suppress(CollectorBusy):
                    reports.append(collect(database, blobs))
        except BaseException as error:
            errors.append(error)

    senders = [threading.Thread(target=sender, args=(letters[i::3],)) for i in range(3)]
    others = [threading.Thread(target=puller), threading.Thread(target=collector), threading.Thread(target=collector)]
    for thread in senders + others:
        thread.start()
    for thread in senders:
        thread.join(120)
    done.set()
    for thread in others:
        thread.join(120)
    assert not errors, errors
    assert reports, "at least one collection ran during the sends"
    final = collect(database, blobs)
    with database.transaction(readonly=True) as session:
        documents = session.scalars(select(Document.blob_sha256)).all()
        statuses = session.scalars(select(StatusEvent.blob_sha256)).all()
        assert audit.verify(session).ok
    assert len(documents) == len(letters) == len(set(sent)), "one document per (sender, DocumentId)"
    assert all(blobs.verify(sha) for sha in documents), "every stored document still verifies"
    assert all(sha is not None and blobs.verify(sha) for sha in statuses)
    assert not any(blob_exists(blobs, sha) for sha in garbage), "unreferenced old blobs are gone"
    assert all(blob_exists(blobs, sha) for sha in young), "young orphans wait for their grace period"
    freed = {sha for report in reports for sha in report.freed} | set(final.freed)
    retried = {hashlib.sha256(data).hexdigest() for data in letters[::2]}
    assert set(garbage) <= freed <= set(garbage) | retried, "only unreferenced blobs were ever freed"
