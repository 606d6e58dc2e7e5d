"""How the store's blocking work meets the worker: connections that hold it, disk work that leaves it.

**Connections whose waits for PostgreSQL should block the worker instead of yielding it.** A gevent
worker normally waits for the database cooperatively: while one request waits, the worker's other
requests run. For a transaction that holds the audit chain's lock that is the wrong
trade. Every send, fetch, acknowledgement and status report appends to the chain, and each of them
queues on that lock while the holder's COMMIT waits for its worker to come back to it: measured,
the holder spent about a quarter of the time idle in its transaction (docs/performance.md, "PostgreSQL
sends wait on the audit chain's lock"). So from the append to the end of its transaction the
connection is *held*: the production worker's psycopg wait function (gateway/server.py) waits for it
without yielding, and the lock is released as soon as the server answers.

Blocking is safe because no lock wait in that section is unbounded: the append sets ``lock_timeout``
for the rest of its transaction (migration 0010), so a wait that only another request of the same
worker could end (it holds a lock and yielded) fails with :class:`gateway.errors.Unavailable` after
that timeout instead of freezing the worker. With it, backends waiting for the chain's lock fell
from 0.49 to 0.06 on average in the bench (docs/performance.md, 2026-12-06). This module only keeps
the marks; it knows nothing of gevent, and where no worker honours the marks (threads, the
development server), they change nothing.

**Disk work that leaves the worker.** An fsync blocks the whole gevent worker, every request it holds
included, for as long as the disk takes. :func:`off_worker` runs such work where the worker's
runner puts it: the production worker installs gevent's thread pool (:func:`run_off_worker_with`,
gateway/server.py), so the worker's other requests run meanwhile; elsewhere the work runs in place.
A hand-off costs about 80 µs of CPU here; handing off each send's one blob was measured to add worker
CPU and no sends, on a quiet disk and on a busy one, so only work that batches several blobs is
handed off (:meth:`gateway.store.blobs.BlobStore.put_many`; docs/performance.md, "A batch's 01 files").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.orm import Session

T = TypeVar("T")

_HELD: set[int] = set()
"""Socket descriptors of this process's held connections."""

_SESSION_KEY = "gateway.holds_worker"


def holds_worker(fileno: int) -> bool:
    """Whether waits on this connection socket should block the worker (see the module docstring)."""
    return fileno in _HELD


def hold_worker(session: Session) -> None:
    """Hold the worker while ``session``'s connection waits, until :func:`release` (end of its transaction)."""
    driver: Any = session.connection().connection.driver_connection
    fileno: int = driver.pgconn.socket
    _HELD.add(fileno)
    session.info[_SESSION_KEY] = fileno


def release(session: Session) -> None:
    """Undo :func:`hold_worker` for ``session``, if it held: called once its transaction has ended."""
    fileno = session.info.pop(_SESSION_KEY, None)
    if fileno is not None:
        _HELD.discard(fileno)


def _in_place(work: Callable[[], Any]) -> Any:
    return work()


_runner: Callable[[Callable[[], Any]], Any] = _in_place


def off_worker(work: Callable[[], T]) -> T:
    """Run ``work`` (blocking disk work) where the worker's runner puts it, and return its result."""
    result: T = _runner(work)
    return result


def run_off_worker_with(runner: Callable[[Callable[[], Any]], Any] | None) -> None:
    """Install how :func:`off_worker` runs work in this process (a thread pool's ``apply``); None: in place."""
    global _runner
    _runner = runner or _in_place
