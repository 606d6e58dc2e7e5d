"""CPU time of one call, measured so that n-against-2n growth tests do not flake on a busy machine."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable


def _thread_cpu_seconds(run: Callable[[], object]) -> float:
    """The CPU time the calling thread spends in ``run()``, with the cyclic collector held off.

    Thread time, not process time: a server thread or a coverage tracer elsewhere in the pytest
    process must not be billed to the call under test (CI once saw a 2n/n ratio of 3.7 where the
    call itself grows 1.9x). Garbage left by earlier tests is collected first, and no collection
    runs inside the call: late in a full suite a collection walks a heap the call did not build,
    and it would be charged to whichever size happened to trigger it.
    """
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        started = time.thread_time()
        run()
        return time.thread_time() - started
    finally:
        if enabled:
            gc.enable()


def least_in_turns(small: Callable[[], float], large: Callable[[], float], rounds: int) -> tuple[float, float]:
    """The least of ``rounds`` measurements of each size, the two measured in turns.

    Taking turns puts both sizes under the same load: CI once saw 3.1 where the call grows 1.9x here
    in every run, when all rounds of one size were measured before any of the other's, so a burst
    of other work on the shared vCPUs could fall on one size only.
    """
    small_best = large_best = float("inf")
    for _ in range(rounds):
        small_best = min(small_best, small())
        large_best = min(large_best, large())
    return small_best, large_best


def cpu_growth(small: Callable[[], object], large: Callable[[], object], rounds: int = 7) -> float:
    """The least CPU time of ``large()`` over the least of ``small()`` (see :func:`least_in_turns`)."""
    small_best, large_best = least_in_turns(
        lambda: _thread_cpu_seconds(small), lambda: _thread_cpu_seconds(large), rounds
    )
    return large_best / small_best
