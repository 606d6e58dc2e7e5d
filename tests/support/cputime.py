"""CPU time of one call, measured so that n-against-2n growth tests do not flake on a busy machine."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable


def least_cpu_seconds(run: Callable[[], object], rounds: int = 5) -> float:
    """The least CPU time the calling thread spent in ``run()`` over a few rounds.

    Thread time, not process time: a server thread or a coverage tracer elsewhere in the pytest
    process must not be billed to the call under test (CI once saw a 2n/n ratio of 3.7 where the
    call itself grows 1.9x). Garbage left by earlier tests is collected before each round so that
    a collection it triggers is not charged to whichever size happens to run then.
    """
    best = float("inf")
    for _ in range(rounds):
        gc.collect()
        started = time.thread_time()
        run()
        best = min(best, time.thread_time() - started)
    return best
