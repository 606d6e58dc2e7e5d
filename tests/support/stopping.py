"""A stop event for loops that wait between rounds (``certify watch``, the agent): no sleeping in tests."""

from __future__ import annotations

import threading


class StopAfterWaits(threading.Event):
    """Records each ``wait`` instead of sleeping, and is set by the ``waits``-th one."""

    def __init__(self, waits: int) -> None:
        super().__init__()
        self.waits = waits
        self.timeouts: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.timeouts.append(timeout)
        if len(self.timeouts) >= self.waits:
            self.set()
        return self.is_set()
