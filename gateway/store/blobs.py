"""Content-addressed blob store on the local filesystem: payloads are named by their sha256.

Layout: ``root/ab/<sha256>`` for blob ``ab...`` (256 shard directories), and ``root/tmp/`` for
writes in progress (same filesystem, so the final rename is atomic). Stores created before the
``layout`` file existed keep the two-level ``root/ab/cd/<sha256>`` they were written with: a new
directory cost 0.5-0.9 ms of CPU here, and a store with 65,536 shards pays it for most of its first
few hundred thousand blobs (docs/storage.md §4). A large blob is written to a temp file,
fsynced, renamed into place and its directory fsynced; a blob held in memory (incoming documents
of up to :data:`MEMORY_STAGING_LIMIT` among them) goes into an unnamed file, fsynced, then linked.
Either way, once :meth:`BlobStore.writer`, :meth:`BlobStore.put_bytes` or a commit returns, the
blob survives a crash.

Durability order (the caller's duty): write the blob first, commit the database row that names it
second. A crash in between leaves an unreferenced blob, which ``edxml-gateway blobs gc``
(:mod:`gateway.store.blob_gc`) removes once it is older than its grace period;
the reverse order could leave a committed row pointing at a missing blob. Never delete a blob that
a committed row might name (docs/storage.md, "Blob durability").

Identical content is stored once (dedup), which is safe because a blob never changes once written.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

from gateway.store import blocking

CHUNK_SIZE = 1024 * 1024
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_SHARD_RE = re.compile(r"[0-9a-f]{2}")
LAYOUT_FILE = "layout"
"""Names the store's layout; written when a store is created, absent from stores of earlier versions."""
ONE_LEVEL = "ab/<sha256>"
"""``LAYOUT_FILE``'s text for one level of shard directories."""
_NO_UNNAMED_FILES = frozenset({errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT, errno.EXDEV, errno.EPERM})
"""How a filesystem, a kernel or a missing /proc refuses ``O_TMPFILE`` or naming such a file through /proc."""
MEMORY_STAGING_LIMIT = 4 * 1024 * 1024
"""Largest blob :meth:`BlobStore.stage` keeps in memory; a larger one goes on in a staging file."""
MEMORY_STAGING_BUDGET = 16 * 1024 * 1024
"""Bytes all staged blobs of one process may hold in memory together; past it, new bytes go to files.

A gevent worker holds up to a thousand connections: without this bound a thousand small sends
would hold a thousand buffers."""


def check_sha256(sha256: str) -> str:
    """Return ``sha256`` if it is 64 lowercase hex digits, else raise ValueError.

    The name becomes a path, so anything else (``../``, separators, uppercase aliases) is refused.
    """
    if not _SHA256_RE.fullmatch(sha256):
        raise ValueError(f"not a sha256 hex digest: {sha256!r}")
    return sha256


def fsync_dir(path: Path) -> None:
    """Persist a directory entry change (a rename or a new subdirectory)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` so that ``path`` holds either nothing or all of it, durably, even after a crash."""
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.part")
    with open(temp, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temp, path)
    fsync_dir(path.parent)


def drop_cached_pages(fd: int) -> None:
    """Let the kernel reuse the page cache of a file that is now on disk (``POSIX_FADV_DONTNEED``).

    Writing a blob costs the copy into page cache pages, and pages the kernel has not handed out
    recently are dear on virtual machines that return free memory to their host: writing 1.36 MB
    into a new file cost 3.6 ms of CPU, and 0.3-0.5 ms when each file's pages were dropped once
    durable, so the next file reuses them (docs/storage.md, "Blob durability"). A blob is read
    again only when fetched; the read comes from disk if nothing else cached it. Only clean pages
    are dropped, so call it after ``fsync``.
    """
    if hasattr(os, "posix_fadvise"):
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


class BlobWriter:
    """A blob being written: hashed as it is written, readable at ``temp_path``, then committed or discarded.

    ``commit()`` makes it durable under its sha256 name (fsync, rename, directory fsync);
    ``discard()`` removes it. Written data can be read back from ``temp_path`` after ``flush()``,
    so a document can be validated where it lies and stored without being copied.
    """

    def __init__(self, file: BinaryIO, temp_path: Path, store: BlobStore) -> None:
        self._file = file
        self.temp_path = temp_path
        self._store = store
        self._hash = hashlib.sha256()
        self._size = 0
        self._sha256: str | None = None
        self._done = False

    def write(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data)
        self._file.write(view)
        self._hash.update(view)
        self._size += view.nbytes
        return view.nbytes

    def flush(self) -> None:
        """Make what was written readable through ``temp_path`` (not yet durable)."""
        self._file.flush()

    @property
    def source(self) -> Path:
        """Where what was written can be read (after :meth:`flush`): ``temp_path``."""
        return self.temp_path

    def commit(self) -> tuple[str, int]:
        """Store the blob durably under its sha256 name; return ``(sha256, size)``."""
        if not self._done:
            sha256 = self._finish()
            self._store._install(self.temp_path, sha256)
            self._done = True
        return self.sha256, self._size

    def discard(self) -> None:
        """Drop the blob unless it was committed; safe to call more than once."""
        if not self._done:
            self._abort()
            self._done = True

    @property
    def size(self) -> int:
        """Bytes written so far: the blob's size once :meth:`commit` (or the ``writer()`` block) has stored it."""
        return self._size

    @property
    def sha256(self) -> str:
        """The blob's name, known only once :meth:`commit` (or the end of a ``writer()`` block) has stored it."""
        if self._sha256 is None:
            raise RuntimeError("the blob is not stored yet: read sha256 after commit() or the writer() block")
        return self._sha256

    def _finish(self) -> str:
        self._file.flush()
        os.fsync(self._file.fileno())
        drop_cached_pages(self._file.fileno())
        self._file.close()
        self._sha256 = self._hash.hexdigest()
        return self._sha256

    def _abort(self) -> None:
        self._file.close()
        self.temp_path.unlink(missing_ok=True)


class _Budget:
    """Bytes the process's staged blobs hold in memory, against :data:`MEMORY_STAGING_BUDGET`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._lock = threading.RLock()
        """Reentrant: a staged blob the garbage collector frees inside :meth:`take` gives back from there."""

    def take(self, size: int) -> bool:
        with self._lock:
            if self.held + size > self.limit:
                return False
            self.held += size
            return True

    def give_back(self, size: int) -> None:
        with self._lock:
            self.held -= size


_BUDGET = _Budget(MEMORY_STAGING_BUDGET)


def memory_staged() -> int:
    """Bytes this process's staged blobs hold in memory now (0 when no request is in flight)."""
    return _BUDGET.held


class StagedBlob:
    """A blob being received: kept in memory while small, moved to a :class:`BlobWriter` once it is not.

    Most documents are far below :data:`MEMORY_STAGING_LIMIT`. Held in memory, a 1.36 MB send is
    parsed from the buffer and stored with one write into an unnamed file (:meth:`BlobStore.put_bytes`)
    instead of a temp file written, read back and renamed: 0.5-0.6 ms of CPU less per send in one
    process here (docs/performance.md, "Staging small documents in memory").
    Past the per-blob limit, or when the process's staged blobs together hold
    :data:`MEMORY_STAGING_BUDGET`, what was received moves to a staging file and the rest follows it
    there, so memory stays bounded for large documents and for many at once.
    """

    def __init__(self, store: BlobStore, limit: int = MEMORY_STAGING_LIMIT, budget: _Budget = _BUDGET) -> None:
        self._store = store
        self._limit = limit
        self._budget = budget
        self._data: bytearray | None = bytearray()
        self._file: BlobWriter | None = None
        self._result: tuple[str, int] | None = None

    @property
    def in_memory(self) -> bool:
        """Whether the blob is held in memory (not moved to a staging file)."""
        return self._data is not None

    @property
    def source(self) -> bytearray | Path:
        """What was received: the buffer, or the staging file's path (readable after :meth:`flush`)."""
        if self._file is not None:
            return self._file.source
        if self._data is None:
            raise RuntimeError("the staged blob was committed or discarded")
        return self._data

    @property
    def size(self) -> int:
        """Bytes received so far."""
        if self._file is not None:
            return self._file.size
        return len(self._data) if self._data is not None else 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._data is not None:
            size = len(self._data) + len(data)
            if size <= self._limit and self._budget.take(len(data)):
                self._data += data
                return len(data)
            self._move_to_file()
        if self._file is None:
            raise RuntimeError("the staged blob was committed or discarded")
        return self._file.write(data)

    def flush(self) -> None:
        """Make what was received readable through :attr:`source` (a no-op in memory)."""
        if self._file is not None:
            self._file.flush()

    def commit(self) -> tuple[str, int]:
        """Store the blob durably under its sha256 name; return ``(sha256, size)``."""
        if self._result is None:
            if self._file is not None:
                self._result = self._file.commit()
            elif self._data is not None:
                self._result = self._store.put_bytes(self._data)
                self._release()
            else:
                raise RuntimeError("the staged blob was discarded")
        return self._result

    def discard(self) -> None:
        """Drop the blob unless it was committed; safe to call more than once."""
        if self._result is not None:
            return
        if self._file is not None:
            self._file.discard()
        self._release()

    def __del__(self) -> None:
        # A blob dropped without commit or discard (a bug upstream) still gives its bytes back.
        self._release()

    def _move_to_file(self) -> None:
        writer = self._store.begin()
        try:
            if self._data:
                writer.write(self._data)
        except BaseException:
            writer.discard()
            raise
        self._file = writer
        self._release()

    def _release(self) -> None:
        if self._data is not None:
            self._budget.give_back(len(self._data))
            self._data = None


def remove_stale_files(directory: Path, older_than: timedelta) -> int:
    """Delete files in ``directory`` not modified for ``older_than``; return how many.

    Temporary and staging files of requests cut short by a crash are never reused; this is how
    they go. The age bound keeps files of requests still in flight in other workers.
    """
    if not directory.is_dir():
        return 0
    cutoff = time.time() - older_than.total_seconds()
    removed = 0
    for path in directory.iterdir():
        with contextlib.suppress(FileNotFoundError):
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
    return removed


class BlobStore:
    """A directory of immutable blobs named by sha256."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.tmp_dir = self.root / "tmp"
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.levels = self._layout()
        """Shard levels: 1 (``ab/<sha256>``), or 2 (``ab/cd/<sha256>``) in a store older than its layout file."""
        self._unnamed_files = hasattr(os, "O_TMPFILE")
        """Whether :meth:`put_bytes` writes unnamed files (``O_TMPFILE``); cleared the first time one is refused."""

    def _layout(self) -> int:
        """Read the store's layout; a new store gets one level, recorded durably before any blob is stored.

        Several nodes creating one shared store at once all write the same file, so they agree.
        """
        marker = self.root / LAYOUT_FILE
        try:
            text = marker.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            if any(_is_shard(entry) for entry in self.root.iterdir()):
                return 2
            write_atomically(marker, (ONE_LEVEL + "\n").encode("utf-8"))
            return 1
        if text != ONE_LEVEL:
            raise ValueError(f"{marker} names a blob layout this version does not know: {text!r}")
        return 1

    def sweep_stale(self, older_than: timedelta) -> int:
        """Remove temp files of writes a crash interrupted (see :func:`remove_stale_files`)."""
        return remove_stale_files(self.tmp_dir, older_than)

    def path(self, sha256: str) -> Path:
        """Where blob ``sha256`` lives (whether or not it exists)."""
        check_sha256(sha256)
        if self.levels == 1:
            return self.root / sha256[:2] / sha256
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def size(self, sha256: str) -> int:
        """Size in bytes of stored blob ``sha256``; FileNotFoundError if it is not stored."""
        return self.path(sha256).stat().st_size

    @contextmanager
    def writer(self) -> Iterator[BlobWriter]:
        """Yield a file-like writer; on normal exit the blob is durable and named ``writer.sha256``.

        If the block raises, the partial temp file is removed and nothing is stored.
        """
        writer = self.begin()
        try:
            yield writer
            writer.commit()
        except BaseException:
            writer.discard()
            raise

    def stage(self) -> StagedBlob:
        """Start receiving a blob of unknown size, in memory while it is small (see :class:`StagedBlob`)."""
        return StagedBlob(self)

    def begin(self) -> BlobWriter:
        """Start a blob to be committed or discarded later (see :class:`BlobWriter`)."""
        fd, temp_name = tempfile.mkstemp(prefix="blob-", suffix=".part", dir=self.tmp_dir)
        return BlobWriter(os.fdopen(fd, "wb"), Path(temp_name), self)

    def put_bytes(self, data: bytes | bytearray) -> tuple[str, int]:
        """Store ``data``; return ``(sha256, size)``.

        The name is known before a byte is written, so content already stored is only touched (see
        :meth:`_install`). New content is written into an unnamed file in its shard directory
        (``O_TMPFILE``), fsynced, then linked under its name and the directory fsynced: no temp name,
        no rename, and nothing left behind by a crash. A status message is stored this way, for up
        to 0.4 ms of CPU less than through a temp file here (docs/storage.md §4). Where unnamed files
        are not supported, the temp-file path is used.
        """
        return self.put_many([data])[0]

    def put_many(self, contents: Sequence[bytes | bytearray]) -> list[tuple[str, int]]:
        """Store each of ``contents`` as :meth:`put_bytes` does; return their ``(sha256, size)`` in order.

        The new files are written and fsynced first, then all named, then each directory fsynced
        once: a crash leaves each either whole under its name or absent. When more than one is new
        (a ``getDocuments`` of new items stores a 01 status file for each), the writing leaves the
        worker in one hand-off (:func:`gateway.store.blocking.off_worker`): the fsyncs, two per
        file, would otherwise stop every request the worker holds (docs/performance.md, "A batch's
        01 files").
        """
        stored: list[tuple[str, int]] = []
        new: dict[str, bytes | bytearray] = {}
        for data in contents:
            sha256 = hashlib.sha256(data).hexdigest()
            stored.append((sha256, len(data)))
            if sha256 not in new and not _touch(self.path(sha256)):
                new[sha256] = data
        if len(new) > 1:
            blocking.off_worker(lambda: self._write_new(new))
        elif new:
            self._write_new(new)
        return stored

    def _write_new(self, new: dict[str, bytes | bytearray]) -> None:
        """Write content not yet stored (named by its sha256) durably: unnamed files where possible."""
        if self._unnamed_files:
            try:
                self._link_unnamed(new)
            except OSError as error:
                if error.errno not in _NO_UNNAMED_FILES:
                    raise
                self._unnamed_files = False
            else:
                return
        for data in new.values():
            with self.writer() as w:
                w.write(data)

    def _link_unnamed(self, new: dict[str, bytes | bytearray]) -> None:
        """Write and fsync each blob in an unnamed file of its directory, name them all, then fsync each directory."""
        directories: dict[Path, int] = {}
        files: list[tuple[int, int, str]] = []
        try:
            for sha256, data in new.items():
                final = self.path(sha256)
                directory = directories.get(final.parent)
                if directory is None:
                    self._make_dirs(final.parent)
                    directory = directories[final.parent] = os.open(final.parent, os.O_RDONLY | os.O_DIRECTORY)
                fd = os.open(".", os.O_TMPFILE | os.O_WRONLY, 0o444, dir_fd=directory)
                files.append((fd, directory, final.name))
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            for fd, _directory, _name in files:
                os.fsync(fd)
                drop_cached_pages(fd)
            for fd, directory, name in files:
                # linkat(AT_SYMLINK_FOLLOW) through /proc: the one way to name an O_TMPFILE file without privileges.
                with contextlib.suppress(FileExistsError):  # the same content, stored meanwhile by another writer
                    os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=directory, follow_symlinks=True)
            for directory in directories.values():
                os.fsync(directory)
        finally:
            for fd, _directory, _name in files:
                os.close(fd)
            for directory in directories.values():
                os.close(directory)

    def put_file(self, path: Path) -> tuple[str, int]:
        """Store a copy of the file at ``path``, streamed in chunks; return ``(sha256, size)``."""
        with open(path, "rb") as source, self.writer() as w:
            shutil.copyfileobj(source, w, CHUNK_SIZE)
        return w.sha256, w.size

    def open(self, sha256: str) -> BinaryIO:
        """Open blob ``sha256`` for reading; FileNotFoundError if it is not stored."""
        return open(self.path(sha256), "rb")

    def verify(self, sha256: str) -> bool:
        """True if the blob exists and its content still hashes to its name (read streaming)."""
        digest = hashlib.sha256()
        try:
            with self.open(sha256) as f:
                while chunk := f.read(CHUNK_SIZE):
                    digest.update(chunk)
        except FileNotFoundError:
            return False
        return digest.hexdigest() == sha256

    def iter_blobs(self) -> Iterator[str]:
        """Yield the sha256 of every stored blob (not temp files), in no particular order (for blob gc)."""
        shards = [(shard, shard.name) for shard in sorted(self.root.iterdir()) if _is_shard(shard)]
        for _level in range(1, self.levels):
            shards = [
                (inner, prefix + inner.name)
                for shard, prefix in shards
                for inner in sorted(shard.iterdir())
                if _is_shard(inner)
            ]
        for shard, prefix in shards:
            for entry in sorted(shard.iterdir()):
                name = entry.name
                if _SHA256_RE.fullmatch(name) and name.startswith(prefix):
                    yield name

    def _install(self, temp_path: Path, sha256: str) -> None:
        """Move a fsynced temp file to its final name, or drop it if that content is already stored.

        When the content is already stored, its mtime is refreshed first: the row about to name it
        has not committed yet, and the garbage collector (:mod:`gateway.store.blob_gc`) spares
        blobs touched within its grace period. If the blob vanished (collected) or cannot be
        touched, this copy is installed in its place instead.
        """
        final = self.path(sha256)
        if _touch(final):
            temp_path.unlink()
            return
        self._make_dirs(final.parent)
        os.chmod(temp_path, 0o444)
        os.replace(temp_path, final)
        fsync_dir(final.parent)

    def _make_dirs(self, directory: Path) -> None:
        """Create the shard directories, fsyncing each parent so the new entries are durable."""
        missing: list[Path] = []
        current = directory
        while not current.exists():
            missing.append(current)
            current = current.parent
        for new_dir in reversed(missing):
            new_dir.mkdir(exist_ok=True)
            fsync_dir(new_dir.parent)


def _touch(final: Path) -> bool:
    """Refresh a stored blob's mtime (the collector spares young blobs); False if it is absent or cannot be touched."""
    try:
        os.utime(final)
    except OSError:
        return False
    return True


def _is_shard(path: Path) -> bool:
    """Whether ``path`` is a shard directory (two hex digits), not ``tmp/`` or the collector's quarantine."""
    return _SHARD_RE.fullmatch(path.name) is not None and path.is_dir()
