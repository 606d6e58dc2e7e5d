"""Where a gunicorn worker's time goes during ``tools/bench.py --profile DIR``.

py-spy's raw output is one collapsed stack per line; a flame graph of it is hard to compare between
runs and backends. This folds the stacks into the handful of costs that decide what to change in
the gateway (staging the request, parsing the edXML, storing the blob, database work, Spyne's
forced garbage collections, waiting for a connection) and prints each as a share of the workers'
wall time. Idle samples are included (py-spy ``--idle``), so fsync and lock waits show up.

    .venv/bin/python tools/bench_profile.py /tmp/prof/sqlite-send-*.txt
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

IDLE = "waiting for a request (idle; includes sampling past the end of the phase)"
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    (IDLE, ("SyncWorker.wait (", "Hub.run (gevent/hub", "_run (gevent/hub")),
    ("Spyne MethodContext.close gc.collect()", ("MethodContext.close (",)),
    ("SQLite BEGIN IMMEDIATE (write-lock wait)", ("_on_begin (",)),
    ("stage_request: expat + base64 decode into staging (memory, or a file when large)", ("stage_request (",)),
    ("read_document: parse + validate edXML", ("read_document (", "read_status (")),
    (
        "blob store: copy + sha256 + fsync file and dirs",
        ("BlobStore.put_file (", "BlobStore.put_bytes (", "BlobWriter.commit ("),
    ),
    ("database: SQLAlchemy transactions", ("Database.transaction (", "Session.", "Connection.", "sqlalchemy/")),
    ("response: base64 of the fetched file", ("_chunks (streaming", "_chunks (gateway/soap/streaming")),
    ("reading the request body (gunicorn)", ("Body.read (", "Unreader.read (")),
    ("writing the response / closing (gunicorn)", ("write (gunicorn", "close_graceful (", "sendall")),
    ("Spyne parse/serialise of the slim envelope", ("spyne/",)),
]
"""First match wins, testing categories in this order against every frame of a stack."""


def categorise(stack: str) -> str:
    for name, markers in CATEGORIES:
        if any(marker in stack for marker in markers):
            return name
    return "other"


def summarise(paths: list[Path]) -> tuple[int, Counter[str], Counter[str]]:
    """Total samples, samples per category, and samples per leaf function (for the "other" hunt)."""
    total = 0
    categories: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for path in paths:
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            samples = int(count)
            total += samples
            categories[categorise(stack)] += samples
            leaves[re.sub(r":\d+\)$", ")", stack.rsplit(";", 1)[-1])] += samples
    return total, categories, leaves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path, help="py-spy raw files (one per worker)")
    parser.add_argument("--leaves", type=int, default=12, help="also list this many hottest leaf functions")
    args = parser.parse_args()
    total, categories, leaves = summarise(args.files)
    busy = total - categories[IDLE]
    print(f"{total} samples from {len(args.files)} worker(s); share of all samples, then of busy samples")
    for name, samples in categories.most_common():
        share_of_busy = "" if name == IDLE else f"{samples / busy:7.1%}"
        print(f"{samples / total:7.1%}{share_of_busy:>8}  {name}")
    print("hottest leaf functions:")
    for name, samples in leaves.most_common(args.leaves):
        print(f"{samples / total:7.1%}  {name}")


if __name__ == "__main__":
    main()
