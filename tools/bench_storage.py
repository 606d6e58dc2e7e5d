"""Where should edXML files live? Times the blob store against database BLOBs, in one run.

For each size, writes and reads the same payload through: the gateway's content-addressed
BlobStore (temp file, fsync, rename, directory fsync), a SQLite BLOB column (WAL,
synchronous=FULL, as the gateway configures SQLite), and a PostgreSQL bytea column (when a
server answers). Prints the best of N runs and each store's time as a ratio of the blob store's.

    .venv/bin/python tools/bench_storage.py [--sizes 1,20] [--runs 5] [--pg-url URL]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
from sqlalchemy import Column, Integer, LargeBinary, MetaData, Table, delete, insert, select

from gateway.store.blobs import BlobStore
from gateway.store.database import Database

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
metadata = MetaData()
payloads = Table("bench_payloads", metadata, Column("id", Integer, primary_key=True), Column("body", LargeBinary))


def best(runs: int, step: Callable[[], object]) -> float:
    """Fastest of ``runs`` calls, in milliseconds: the least disturbed by the rest of the machine."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        step()
        times.append((time.perf_counter() - started) * 1000)
    return min(times)


def blob_store(root: Path, data: bytes, runs: int) -> tuple[float, float]:
    store = BlobStore(root)
    source = root / "source.bin"
    source.write_bytes(data)
    shas: list[str] = []

    def write() -> None:
        for path in root.glob("??/??/*"):
            path.chmod(0o644)
            path.unlink()
        shas.append(store.put_file(source)[0])

    def read() -> None:
        with store.open(shas[-1]) as stream:
            while stream.read(1 << 20):
                pass

    return best(runs, write), best(runs, read)


def database(db: Database, data: bytes, runs: int) -> tuple[float, float]:
    metadata.create_all(db.engine)

    def write() -> None:
        with db.transaction() as session:
            session.execute(delete(payloads))
            session.execute(insert(payloads).values(id=1, body=data))

    def read() -> None:
        with db.transaction() as session:
            session.execute(select(payloads.c.body).where(payloads.c.id == 1)).scalar_one()

    try:
        return best(runs, write), best(runs, read)
    finally:
        metadata.drop_all(db.engine)


def postgres_reachable(url: str) -> bool:
    try:
        psycopg.connect(url.replace("+psycopg", ""), connect_timeout=3).close()
    except psycopg.OperationalError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,20", help="payload sizes in MB, comma-separated")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pg-url", default=os.environ.get("GATEWAY_TEST_PG_URL", PG_URL))
    args = parser.parse_args()
    with_pg = postgres_reachable(args.pg_url)
    print(f"{'size':>6} {'store':<22} {'write ms':>9} {'read ms':>8} {'write ×blob':>12}")
    for megabytes in (int(s) for s in args.sizes.split(",")):
        data = os.urandom(megabytes * 1024 * 1024)
        with tempfile.TemporaryDirectory() as tmp:
            results = {"blob store (fsync)": blob_store(Path(tmp) / "blobs", data, args.runs)}
            sqlite = Database(f"sqlite:///{tmp}/bench.sqlite3")
            results["SQLite BLOB"] = database(sqlite, data, args.runs)
            sqlite.dispose()
            if with_pg:
                pg = Database(args.pg_url)
                results["PostgreSQL bytea"] = database(pg, data, args.runs)
                pg.dispose()
        base = results["blob store (fsync)"][0]
        for name, (write_ms, read_ms) in results.items():
            print(f"{megabytes:>4}MB {name:<22} {write_ms:>9.1f} {read_ms:>8.1f} {write_ms / base:>11.1f}x")
    if not with_pg:
        print(f"(PostgreSQL not reachable at {args.pg_url}: bytea not measured)")


if __name__ == "__main__":
    main()
