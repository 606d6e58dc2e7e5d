"""Garbage collection of blobs no row names: what a crash between a blob's fsync and its row's commit leaves.

A blob may be removed only when no committed row names it and none is about to. The second half is
the hard part: a send whose content is already stored (dedup) does not write a new file, it relies
on the existing one, then commits a row naming it. Two rules make that safe without any lock on the
send path:

1. :meth:`gateway.store.blobs.BlobStore._install` refreshes the existing blob's mtime before it
   drops its own copy, and falls back to installing its copy when the blob has gone. So a blob a
   send relies on is always either fresh (younger than the grace period) or that send's own file.
2. The collector claims a candidate by *renaming* it into ``quarantine/`` (atomic), and only then
   re-reads its mtime and re-checks the database. A send that refreshed the blob before the
   rename shows up in the mtime (the collector puts the blob back); a send that comes after the
   rename finds no blob and installs its own copy. Either way its row names a file that exists.

The grace period (at least :data:`MIN_GRACE`) also covers fresh blobs whose rows have not
committed yet: a send installs its blob moments before committing. One collector runs at a time
per blob directory (an ``fcntl.flock`` on ``gc.lock``, which every node sharing the directory
sees); a collector that died mid-way leaves files in ``quarantine/``, and the next one puts them
back before anything else.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import ColumnClause, column, inspect, literal, select, table
from sqlalchemy.sql import Select

from gateway.store import audit
from gateway.store.blobs import BlobStore, check_sha256, fsync_dir
from gateway.store.database import Database

MIN_GRACE = timedelta(hours=1)
"""Shortest grace period accepted: far above the seconds between a blob's install and its row's commit."""
DEFAULT_GRACE = timedelta(hours=24)
QUARANTINE_DIR = "quarantine"
LOCK_FILE = "gc.lock"
AUDIT_ACTOR = "operator"
AUDIT_ACTION = "blobs_gc"
AUDIT_LISTED = 1000
"""The audit entry names at most this many freed blobs (the counts are always complete)."""
_REFERENCE_SUFFIX = "sha256"
"""Every column whose name ends with this names a blob (``blob_sha256`` today, any later ``*_sha256``).

Taken from the live schema rather than the models, so a table another release adds is honoured
without touching this module; counting a column that does not name blobs only keeps more files.
"""


class CollectorBusy(RuntimeError):
    """Another collector holds this blob directory's lock."""


@dataclass
class GcReport:
    """What one collection saw and did (``freed_*`` are what a dry run would free)."""

    scanned: int = 0
    referenced: int = 0
    young: int = 0
    freed_files: int = 0
    freed_bytes: int = 0
    spared: int = 0
    """Candidates a send started to use between the scan and the unlink: put back, not removed."""
    recovered: int = 0
    """Files a previous, interrupted collection left in quarantine and this one put back."""
    dry_run: bool = False
    columns: list[str] = field(default_factory=list)
    freed: list[str] = field(default_factory=list)


def reference_columns(db: Database) -> list[tuple[str, str]]:
    """``(table, column)`` of every column of the live schema that names blobs."""
    inspector = inspect(db.engine)
    found = []
    for table_name in sorted(inspector.get_table_names()):
        for info in inspector.get_columns(table_name):
            if str(info["name"]).lower().endswith(_REFERENCE_SUFFIX):
                found.append((table_name, str(info["name"])))
    return found


def _references(columns: list[tuple[str, str]], sha256: str | None = None) -> Iterator[Select[str]]:
    for table_name, column_name in columns:
        col: ColumnClause[str] = column(column_name)
        query = select(col).select_from(table(table_name, col))
        if sha256 is None:
            yield query.where(col.is_not(None)).distinct()
        else:
            yield query.where(col == literal(sha256)).limit(1)


@contextlib.contextmanager
def collector_lock(blobs: BlobStore) -> Iterator[None]:
    """Hold this blob directory's collector lock, or raise :class:`CollectorBusy`."""
    path = blobs.root / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CollectorBusy(f"another `blobs gc` is running on {blobs.root}; try again when it ends") from None
        yield
    finally:
        os.close(fd)


class Collector:
    """One collection over ``blobs`` against the rows of ``db``; see the module docstring for the protocol."""

    def __init__(
        self,
        db: Database,
        blobs: BlobStore,
        grace: timedelta = DEFAULT_GRACE,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if grace < MIN_GRACE:
            raise ValueError(f"the grace period must be at least {MIN_GRACE} (sends in flight rely on it)")
        self.db = db
        self.blobs = blobs
        self.grace = grace
        self.clock = clock
        self.quarantine = blobs.root / QUARANTINE_DIR
        self.columns = reference_columns(db)

    @property
    def cutoff(self) -> float:
        """Blobs modified before this instant (epoch seconds) are old enough to go if nothing names them."""
        return self.clock() - self.grace.total_seconds()

    def run(self, *, dry_run: bool = False) -> GcReport:
        """Collect under the directory's lock; audit what was freed (a dry run changes and audits nothing)."""
        with collector_lock(self.blobs):
            report = GcReport(dry_run=dry_run, columns=[f"{t}.{c}" for t, c in self.columns])
            if not dry_run:
                report.recovered = self.recover()
            candidates = self.candidates(report)
            for sha256, size in sorted(candidates.items()):
                if dry_run:
                    freed: int | None = size
                else:
                    freed = self.reclaim(sha256)
                if freed is None:
                    report.spared += 1
                    continue
                report.freed_files += 1
                report.freed_bytes += freed
                report.freed.append(sha256)
            if not dry_run:
                self._audit(report)
            return report

    def candidates(self, report: GcReport) -> dict[str, int]:
        """Blobs older than the grace period that no row names, with their sizes; counts the rest in ``report``."""
        cutoff = self.cutoff
        old: dict[str, int] = {}
        for sha256 in self.blobs.iter_blobs():
            report.scanned += 1
            with contextlib.suppress(FileNotFoundError):
                stat = self.blobs.path(sha256).stat()
                if stat.st_mtime < cutoff:
                    old[sha256] = stat.st_size
                else:
                    report.young += 1
        # Stream the references and strike them off: memory grows with the old blobs, not the rows.
        # PostgreSQL streams through a server-side cursor, which needs a transaction (not autocommit);
        # SQLite must not take the write lock for a long read.
        with self.db.transaction(readonly=self.db.dialect_name == "sqlite") as session:
            for query in _references(self.columns):
                for (sha256,) in session.execute(query.execution_options(yield_per=10_000)):
                    if old.pop(sha256, None) is not None:
                        report.referenced += 1
        return old

    def reclaim(self, sha256: str) -> int | None:
        """Remove one candidate unless a send started to rely on it; its size if removed, else None."""
        final = self.blobs.path(check_sha256(sha256))
        self.quarantine.mkdir(exist_ok=True)
        held = self.quarantine / sha256
        try:
            os.rename(final, held)
        except FileNotFoundError:
            return None
        stat = held.stat()
        if stat.st_mtime >= self.cutoff or self.is_referenced(sha256):
            self._put_back(held, final)
            return None
        held.unlink()
        return stat.st_size

    def is_referenced(self, sha256: str) -> bool:
        """Whether any committed row names ``sha256`` now."""
        with self.db.transaction(readonly=True) as session:
            return any(session.execute(query).first() is not None for query in _references(self.columns, sha256))

    def recover(self) -> int:
        """Put back what an interrupted collection left in quarantine (it may be named by a row by now)."""
        if not self.quarantine.is_dir():
            return 0
        recovered = 0
        for held in self.quarantine.iterdir():
            try:
                final = self.blobs.path(held.name)
            except ValueError:
                continue
            self._put_back(held, final)
            recovered += 1
        return recovered

    def _put_back(self, held: Path, final: Path) -> None:
        # A send may have installed the same content meanwhile; replacing it with identical bytes is harmless.
        self.blobs._make_dirs(final.parent)
        os.replace(held, final)
        fsync_dir(final.parent)

    def _audit(self, report: GcReport) -> None:
        detail = {
            "freed_files": report.freed_files,
            "freed_bytes": report.freed_bytes,
            "grace_hours": self.grace.total_seconds() / 3600,
            "spared": report.spared,
            "recovered": report.recovered,
            "freed": report.freed[:AUDIT_LISTED],
        }
        with self.db.transaction() as session:
            audit.append(session, AUDIT_ACTOR, AUDIT_ACTION, None, detail, datetime.now(UTC))


def collect(db: Database, blobs: BlobStore, grace: timedelta = DEFAULT_GRACE, *, dry_run: bool = False) -> GcReport:
    """Run one collection (see :class:`Collector`)."""
    return Collector(db, blobs, grace).run(dry_run=dry_run)
