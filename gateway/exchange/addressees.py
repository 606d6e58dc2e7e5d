"""The active agencies a worker's sends addressed, kept while the directory does not change.

Every send looks up its addressees (``_ADDRESSEES`` in gateway/exchange/service.py); on PostgreSQL
that is a round trip of its own, 0.1-0.5 ms of a worker's CPU plus the server's, a few percent of a
send (docs/performance.md, "Three round trips for most PostgreSQL sends"). The directory
changes seldom, and every change bumps the ``agencies_changed`` counter (database triggers,
migration 0009, docs/storage.md §5), which authentication reads in the statement it runs anyway. So the rows a worker
has read stay good for as long as the counter keeps the value it had when they were read.

The copy is only ever asked with the counter value one request's authentication saw. A request
that saw an older value than the copy's finds nothing here and reads the database, as does any
code not read yet; rows read under an older value than the copy's are not kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

AGENCIES_CHANGED = "agencies_changed"
"""The ``relay_state`` row the triggers of migration 0009 bump on every change of ``agencies``."""

Addressee = tuple[int, str, str | None]
"""``(agency id, code, home instance)`` of an active agency."""


class AddresseeCache:
    """Active agencies by code, valid for one value of the ``agencies_changed`` counter.

    The value and its rows are replaced together (one tuple), so a thread never sees rows of one
    value under another.
    """

    def __init__(self, limit: int = 100_000) -> None:
        self._limit = limit
        self._copy: tuple[int | None, dict[str, Addressee]] = (None, {})

    def lookup(self, changed: int | None, codes: Sequence[str]) -> list[Addressee] | None:
        """Each code's row, in order, if every one is known under ``changed``; otherwise None.

        None also when ``changed`` is None (the caller's authentication did not read the counter).
        """
        seen, active = self._copy
        if changed is None or changed != seen:
            return None
        try:
            return [active[code] for code in codes]
        except KeyError:
            return None

    def remember(self, changed: int | None, rows: Iterable[Addressee]) -> None:
        """Keep ``rows`` (read after the counter was ``changed``) unless the copy is newer."""
        seen, active = self._copy
        if changed is None or (seen is not None and changed < seen):
            return
        if changed != seen or len(active) >= self._limit:
            active = {}
        active.update((row[1], row) for row in rows)
        self._copy = (changed, active)
