"""The content-addressed blob store: atomic install, dedup, streaming verify, safe names."""

from __future__ import annotations

import ctypes
import errno
import hashlib
import mmap
import os
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from support.blobs import blob_exists, stored_blobs

from gateway.store import blobs, blocking
from gateway.store.blobs import BlobStore


def test_writer_stores_under_its_hash(blob_store: BlobStore) -> None:
    with blob_store.writer() as w:
        w.write(b"hello ")
        w.write(memoryview(b"world"))
    expected = hashlib.sha256(b"hello world").hexdigest()
    assert (w.sha256, w.size) == (expected, 11)
    assert blob_store.path(expected) == blob_store.root / expected[:2] / expected
    assert blob_exists(blob_store, expected)
    with blob_store.open(expected) as f:
        assert f.read() == b"hello world"
    assert list(blob_store.tmp_dir.iterdir()) == []


def test_a_new_store_records_its_layout_and_an_older_store_keeps_two_levels(tmp_path: Path) -> None:
    new = BlobStore(tmp_path / "new")
    assert new.levels == 1
    assert (new.root / blobs.LAYOUT_FILE).read_text() == blobs.ONE_LEVEL + "\n"
    sha256, _ = new.put_bytes(b"one level")
    assert BlobStore(tmp_path / "new").path(sha256) == new.root / sha256[:2] / sha256
    assert list(stored_blobs(BlobStore(tmp_path / "new"))) == [sha256]

    legacy = tmp_path / "legacy"  # as versions before the layout file left a store
    content = b"stored by an earlier version"
    old_sha = hashlib.sha256(content).hexdigest()
    (legacy / old_sha[:2] / old_sha[2:4]).mkdir(parents=True)
    (legacy / old_sha[:2] / old_sha[2:4] / old_sha).write_bytes(content)
    store = BlobStore(legacy)
    assert store.levels == 2 and not (legacy / blobs.LAYOUT_FILE).exists()
    assert store.verify(old_sha)
    added, _ = store.put_bytes(b"added after the upgrade")
    assert store.path(added) == legacy / added[:2] / added[2:4] / added
    assert sorted(stored_blobs(store)) == sorted([old_sha, added])
    assert store.put_bytes(content) == (old_sha, len(content))  # still deduplicated against the old blob


def test_an_unknown_layout_is_refused(tmp_path: Path) -> None:
    tmp_path.joinpath(blobs.LAYOUT_FILE).write_text("ab/cd/ef/<sha256>\n")
    with pytest.raises(ValueError, match="layout this version does not know"):
        BlobStore(tmp_path)


def test_sha_is_unknown_until_the_block_ends(blob_store: BlobStore) -> None:
    with blob_store.writer() as w:
        w.write(b"x")
        with pytest.raises(RuntimeError):
            _ = w.sha256


def test_begin_then_commit_or_discard(blob_store: BlobStore) -> None:
    """The two-step writer the send path uses: readable at temp_path before commit, named only after it."""
    kept = blob_store.begin()
    kept.write(b"validated where it lies")
    kept.flush()
    assert kept.temp_path.read_bytes() == b"validated where it lies"
    with pytest.raises(RuntimeError, match="commit"):
        _ = kept.sha256
    sha256, size = kept.commit()
    assert (sha256, size) == (kept.sha256, kept.size) == (hashlib.sha256(b"validated where it lies").hexdigest(), 23)
    assert kept.commit() == (sha256, size)
    assert blob_store.size(sha256) == 23 and not kept.temp_path.exists()
    kept.discard()
    assert blob_store.verify(sha256)

    dropped = blob_store.begin()
    dropped.write(b"refused")
    dropped.discard()
    dropped.discard()
    assert not dropped.temp_path.exists()
    assert list(stored_blobs(blob_store)) == [sha256]


def test_a_small_staged_blob_stays_in_memory_and_is_stored_by_commit(blob_store: BlobStore) -> None:
    budget = blobs._Budget(100)
    staged = blobs.StagedBlob(blob_store, limit=50, budget=budget)
    staged.write(b"held ")
    staged.write(memoryview(b"in memory"))
    assert staged.in_memory and staged.source == bytearray(b"held in memory") and staged.size == 14
    assert budget.held == 14 and list(blob_store.tmp_dir.iterdir()) == []
    sha256 = hashlib.sha256(b"held in memory").hexdigest()
    assert staged.commit() == staged.commit() == (sha256, 14)
    assert budget.held == 0, "committing gives the bytes back"
    assert blob_store.verify(sha256) and list(blob_store.tmp_dir.iterdir()) == []
    staged.discard()
    assert blob_store.verify(sha256), "discard after commit leaves the blob"
    with pytest.raises(RuntimeError, match="committed or discarded"):
        _ = staged.source


@pytest.mark.parametrize("past", ["the blob's limit", "the process's budget"])
def test_a_staged_blob_moves_to_a_staging_file_past_its_limit_or_the_budget(blob_store: BlobStore, past: str) -> None:
    budget = blobs._Budget(1000 if past == "the blob's limit" else 12)
    others = blobs.StagedBlob(blob_store, limit=50, budget=budget)
    others.write(b"x" * 5)
    staged = blobs.StagedBlob(blob_store, limit=10 if past == "the blob's limit" else 50, budget=budget)
    staged.write(b"first ")
    assert staged.in_memory
    staged.write(b"then more")
    assert not staged.in_memory and budget.held == 5, "what was held moved to the file and was given back"
    staged.write(b", and the rest")
    staged.flush()
    assert isinstance(staged.source, Path) and staged.source.parent == blob_store.tmp_dir
    assert staged.source.read_bytes() == b"first then more, and the rest" and staged.size == 29
    sha256, size = staged.commit()
    assert (sha256, size) == (hashlib.sha256(b"first then more, and the rest").hexdigest(), 29)
    assert blob_store.verify(sha256) and list(blob_store.tmp_dir.iterdir()) == []
    others.discard()
    assert budget.held == 0


def test_a_discarded_or_dropped_staged_blob_gives_its_memory_back(blob_store: BlobStore) -> None:
    budget = blobs._Budget(100)
    discarded = blobs.StagedBlob(blob_store, limit=50, budget=budget)
    discarded.write(b"refused")
    dropped = blobs.StagedBlob(blob_store, limit=50, budget=budget)
    dropped.write(b"forgotten")
    assert budget.held == 16
    discarded.discard()
    discarded.discard()
    assert budget.held == 9
    del dropped  # never committed nor discarded: freeing it still gives the bytes back
    assert budget.held == 0
    spilled = blobs.StagedBlob(blob_store, limit=0, budget=budget)
    spilled.write(b"on disk")
    spilled.flush()
    path = spilled.source
    spilled.discard()
    assert isinstance(path, Path) and not path.exists()
    assert list(stored_blobs(blob_store)) == [] and budget.held == 0


def _same_shard(count: int) -> list[bytes]:
    """``count`` distinct contents whose names share one shard directory."""
    by_shard: dict[str, list[bytes]] = {}
    for number in range(100_000):
        content = f"content {number}".encode()
        found = by_shard.setdefault(hashlib.sha256(content).hexdigest()[:2], [])
        found.append(content)
        if len(found) == count:
            return found
    raise AssertionError("no shard got enough contents")


def _record_disk_events(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record each file fsync, directory fsync and naming (link or rename) the blob store makes, in order."""
    events: list[str] = []
    real_fsync, real_replace, real_link = os.fsync, os.replace, os.link

    def fsync(fd: int) -> None:
        events.append("fsync-dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "fsync-file")
        real_fsync(fd)

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        events.append("name")
        real_replace(src, dst)

    def link(src: str, dst: str, **options: object) -> None:
        events.append("name")
        real_link(src, dst, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(blobs.os, "fsync", fsync)
    monkeypatch.setattr(blobs.os, "replace", replace)
    monkeypatch.setattr(blobs.os, "link", link)
    return events


@pytest.mark.parametrize("unnamed", [True, False], ids=["O_TMPFILE and link", "temp file and rename"])
def test_fsyncs_file_and_directory_before_the_blob_is_visible(
    blob_store: BlobStore, monkeypatch: pytest.MonkeyPatch, unnamed: bool
) -> None:
    blob_store.path(hashlib.sha256(b"durable").hexdigest()).parent.mkdir()  # its shard's own fsyncs are not the point
    events = _record_disk_events(monkeypatch)
    monkeypatch.setattr(blob_store, "_unnamed_files", unnamed)
    sha256, _ = blob_store.put_bytes(b"durable")
    assert events == ["fsync-file", "name", "fsync-dir"]
    assert blob_store.path(sha256).read_bytes() == b"durable"
    assert list(blob_store.tmp_dir.iterdir()) == []


@pytest.mark.skipif(not hasattr(os, "O_TMPFILE"), reason="O_TMPFILE is a Linux flag this platform lacks")
def test_a_batch_is_fsynced_whole_before_any_name_and_each_directory_once(
    blob_store: BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash leaves each blob of a batch whole under its name or absent, and a shared shard is fsynced once."""

    def shard(content: bytes) -> Path:
        return blob_store.path(hashlib.sha256(content).hexdigest()).parent

    together = _same_shard(2)
    alone = next(c for c in (b"elsewhere", b"elsewhere too") if shard(c) != shard(together[0]))
    for content in (*together, alone):
        shard(content).mkdir(exist_ok=True)  # creating shards fsyncs their parent: not the point here
    events = _record_disk_events(monkeypatch)
    stored = blob_store.put_many([together[0], alone, together[1]])
    assert events == ["fsync-file"] * 3 + ["name"] * 3 + ["fsync-dir"] * 2
    assert [blob_store.path(sha256).read_bytes() for sha256, _ in stored] == [together[0], alone, together[1]]


def test_a_batch_answers_in_order_and_stores_each_content_once(blob_store: BlobStore) -> None:
    known, _ = blob_store.put_bytes(b"known")
    contents = [b"new", b"known", b"new", bytearray(b"other")]
    stored = blob_store.put_many(contents)
    assert stored == [(hashlib.sha256(c).hexdigest(), len(c)) for c in contents]
    assert sorted(stored_blobs(blob_store)) == sorted({sha256 for sha256, _ in stored} | {known})
    assert all(blob_store.verify(sha256) for sha256, _ in stored)
    assert list(blob_store.tmp_dir.iterdir()) == []


@pytest.mark.parametrize(
    ("already", "contents", "hand_offs"),
    [
        ([], [b"a", b"b", b"c"], 1),
        ([b"a"], [b"a", b"b"], 0),
        ([b"a", b"b"], [b"a", b"b"], 0),
        ([], [b"a", b"a"], 0),
    ],
    ids=["three new", "one new", "none new", "one new twice"],
)
def test_a_batch_leaves_the_worker_once_when_more_than_one_blob_is_new(
    blob_store: BlobStore, already: list[bytes], contents: list[bytes], hand_offs: int
) -> None:
    """Only a batch pays the hand-off (gateway/store/blocking.py): for one blob it measured no gain."""
    for content in already:
        blob_store.put_bytes(content)
    runs: list[object] = []

    def runner(work: Callable[[], object]) -> object:
        runs.append(work)
        return work()

    blocking.run_off_worker_with(runner)
    try:
        stored = blob_store.put_many(contents)
    finally:
        blocking.run_off_worker_with(None)
    assert len(runs) == hand_offs
    assert all(blob_store.verify(sha256) for sha256, _ in stored)


def test_a_batch_that_fails_midway_names_nothing_and_keeps_no_descriptor(
    blob_store: BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write
    writes: list[int] = []

    def full_on_the_second(fd: int, data: bytes) -> int:
        writes.append(fd)
        if len(writes) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    open_before = len(os.listdir("/proc/self/fd"))
    monkeypatch.setattr(blobs.os, "write", full_on_the_second)
    with pytest.raises(OSError, match="No space left"):
        blob_store.put_many([b"written", b"does not fit", b"never reached"])
    monkeypatch.undo()
    assert list(stored_blobs(blob_store)) == []
    assert len(os.listdir("/proc/self/fd")) == open_before


@pytest.mark.skipif(not hasattr(os, "O_TMPFILE"), reason="O_TMPFILE is a Linux flag this platform lacks")
def test_small_blobs_fall_back_to_temp_files_where_unnamed_files_are_refused(
    blob_store: BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = os.open
    refused: list[int] = []

    def no_tmpfile(path: str | os.PathLike[str], flags: int, *args: object, **options: object) -> int:
        if flags & os.O_TMPFILE == os.O_TMPFILE:
            refused.append(flags)
            raise OSError(errno.EOPNOTSUPP, "Operation not supported")
        return real_open(path, flags, *args, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(blobs.os, "open", no_tmpfile)
    first = blob_store.put_bytes(b"on a filesystem without O_TMPFILE")
    second = blob_store.put_bytes(b"and the next blob does not ask again")
    batch = blob_store.put_many([b"nor does a batch", b"of several"])
    assert len(refused) == 1
    assert all(blob_store.verify(sha256) for sha256, _ in [first, second, *batch])
    assert list(blob_store.tmp_dir.iterdir()) == []


def test_an_unexpected_error_of_an_unnamed_file_is_not_taken_for_a_refusal(
    blob_store: BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(blobs.os, "write", full)
    with pytest.raises(OSError, match="No space left"):
        blob_store.put_bytes(b"does not fit")
    assert list(stored_blobs(blob_store)) == []


def test_content_already_stored_is_touched_not_written_again(
    blob_store: BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    sha256, size = blob_store.put_bytes(b"stored once")
    os.utime(blob_store.path(sha256), (1_000_000_000, 1_000_000_000))
    monkeypatch.setattr(blobs.os, "fsync", lambda fd: pytest.fail("nothing new should be written"))
    assert blob_store.put_bytes(b"stored once") == (sha256, size)
    assert blob_store.path(sha256).stat().st_mtime > time.time() - 60


def test_identical_content_is_stored_once(blob_store: BlobStore) -> None:
    first = blob_store.put_bytes(b"same bytes")
    second = blob_store.put_bytes(b"same bytes")
    assert first == second
    assert list(stored_blobs(blob_store)) == [first[0]]
    assert list(blob_store.tmp_dir.iterdir()) == []


def test_failed_write_leaves_nothing(blob_store: BlobStore) -> None:
    with pytest.raises(OSError, match="client went away"), blob_store.writer() as w:
        w.write(b"partial")
        raise OSError("client went away")
    assert list(stored_blobs(blob_store)) == []
    assert list(blob_store.tmp_dir.iterdir()) == []


def test_put_file_streams_a_large_file(blob_store: BlobStore, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    chunk = os.urandom(256 * 1024)
    digest = hashlib.sha256()
    with open(source, "wb") as f:
        for _ in range(20):
            f.write(chunk)
            digest.update(chunk)
    sha256, size = blob_store.put_file(source)
    assert (sha256, size) == (digest.hexdigest(), 20 * len(chunk))
    assert blob_store.verify(sha256)


def test_verify_detects_corruption_and_absence(blob_store: BlobStore) -> None:
    sha256, _ = blob_store.put_bytes(b"original")
    assert blob_store.verify(sha256)
    path = blob_store.path(sha256)
    path.chmod(0o644)
    path.write_bytes(b"tampered")
    assert not blob_store.verify(sha256)
    assert not blob_store.verify("a" * 64)
    with pytest.raises(FileNotFoundError):
        blob_store.open("a" * 64)


@pytest.mark.parametrize(
    "bad", ["", "abc", "../" + "a" * 61, "A" * 64, "g" * 64, "a" * 63 + "/", "a" * 65, "a" * 64 + "\n"]
)
def test_rejects_names_that_are_not_sha256(blob_store: BlobStore, bad: str) -> None:
    for call in (blob_store.path, blob_store.size, blob_store.open, blob_store.verify):
        with pytest.raises(ValueError, match="not a sha256"):
            call(bad)


def test_stored_blobs_ignores_stray_files(blob_store: BlobStore) -> None:
    stored = {blob_store.put_bytes(bytes([i]))[0] for i in range(5)}
    (blob_store.root / "README").write_text("not a blob")
    (blob_store.tmp_dir / "blob-x.part").write_bytes(b"in progress")
    assert set(stored_blobs(blob_store)) == stored


def test_sweep_removes_only_stale_temp_files(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    stale, fresh = store.tmp_dir / "blob-stale.part", store.tmp_dir / "blob-fresh.part"
    stale.write_bytes(b"cut short by a crash")
    fresh.write_bytes(b"still being written")
    an_hour_ago = time.time() - 3700
    os.utime(stale, (an_hour_ago, an_hour_ago))
    sha, _ = store.put_bytes(b"kept")
    assert store.sweep_stale(timedelta(hours=1)) == 1
    assert not stale.exists() and fresh.exists() and store.verify(sha)


def _resident_fraction(path: Path) -> float:
    """How much of the file is in the page cache: mincore(2) over a private mapping of it (Linux)."""
    libc = ctypes.CDLL(None, use_errno=True)
    size = path.stat().st_size
    pages = -(-size // mmap.PAGESIZE)
    vector = (ctypes.c_ubyte * pages)()
    with open(path, "rb") as file, mmap.mmap(file.fileno(), size, access=mmap.ACCESS_COPY) as mapped:
        start = ctypes.c_char.from_buffer(mapped)
        try:
            if libc.mincore(ctypes.c_void_p(ctypes.addressof(start)), ctypes.c_size_t(size), vector) != 0:
                raise OSError(ctypes.get_errno(), "mincore failed")
        finally:
            del start
    return sum(byte & 1 for byte in vector) / pages


@pytest.mark.skipif(not hasattr(os, "posix_fadvise"), reason="posix_fadvise is a POSIX call this platform lacks")
def test_a_stored_blob_leaves_the_page_cache_and_reads_back_whole(blob_store: BlobStore, tmp_path: Path) -> None:
    """Once durable, a blob's pages are handed back (blobs.drop_cached_pages); its bytes are all still there."""
    data = os.urandom(4 * 1024 * 1024)
    plain = tmp_path / "plain"
    plain.write_bytes(data)
    assert _resident_fraction(plain) > 0.9  # a file just written is cached: the probe sees pages
    sha256, _ = blob_store.put_bytes(data)
    assert _resident_fraction(blob_store.path(sha256)) < 0.1
    with blob_store.open(sha256) as stored:
        assert stored.read() == data
